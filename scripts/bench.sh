#!/usr/bin/env bash
# Every way to get examples/search_service.rs answering, side by side in one run (needs
# root): cold start, full restore, lazy restore, serde + bincode load, rkyv mmap, full
# restore of a mapped heap (crac::MappedHeap) — each to its first answer and to a checksum
# of the whole index, a first request reading pages all over the index, eight concurrent
# copies, the checkpoint with the mapped heap off and on, and a second checkpoint of a
# restored copy after it changed 1% of its documents, at several corpus sizes.
#
# Usage: scripts/bench.sh [RUNS [DOCS...]]
#   RUNS  starts of each kind per size (default 5)
#   DOCS  corpus sizes, in documents (default 38000 300000 1200000: images of about
#         50 MB, 268 MB and 1 GB; eight copies of the largest need about 9 GB of memory)
# Environment:
#   BENCH_OUT   where results.md (the table), latency.tsv and restore-latency.png go
#               (default docs/bench)
#   BENCH_WORK  images and index files while it runs, removed at the end
#               (default ${TMPDIR:-/tmp}/crac-bench)
#   BENCH_PLOT  0: no plot (no gnuplot needed)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
sizes=("${@:2}")
[ ${#sizes[@]} -gt 0 ] || sizes=(38000 300000 1200000)
out=${BENCH_OUT:-docs/bench}
work=${BENCH_WORK:-${TMPDIR:-/tmp}/crac-bench}
target=${CARGO_TARGET_DIR:-target}

./scripts/install-criu.sh >&2
cargo build --locked --release -p crac-cli
cargo build --locked --release --example search_service --example restore_bench
# sealed heap segments are immutable where the file system allows: the flag goes first
trap '[ ! -e "$work" ] || chattr -R -i "$work" 2>/dev/null; rm -rf "$work"' EXIT
load_before=$(cut -d' ' -f1 /proc/loadavg)
"$target/release/examples/restore_bench" "$target/release/examples/search_service" \
    "$target/release/crac" "$work" "$out" "$runs" "${sizes[@]}"
load_after=$(cut -d' ' -f1 /proc/loadavg)

# The conditions, above the table: a figure means little without them.
criu=${CRAC_CRIU:-$(command -v criu || echo /usr/local/sbin/criu)}
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
memory=$(awk '/^MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo)
conditions="Measured $(date -u +%F) with \`scripts/bench.sh $runs ${sizes[*]}\`: $(nproc) CPUs ($cpu),\
 $memory, Linux $(uname -r), CRIU $("$criu" --version | sed -n 's/^Version: //p');\
 load average $load_before at the start, $load_after at the end."
echo "$conditions"
{ echo "$conditions"; echo; cat "$out/results.md"; } > "$out/results.md.new"
mv "$out/results.md.new" "$out/results.md"

# The plot: first-answer latency against image size, for everything but the cold start.
[ "${BENCH_PLOT:-1}" != 0 ] || exit 0
if ! command -v gnuplot >/dev/null; then
    echo "installing gnuplot for the plot..." >&2
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y gnuplot-nox; } >/dev/null \
        || { echo "no gnuplot: the plot was not drawn ($out/latency.tsv has its data)" >&2; exit 0; }
fi
gnuplot <<EOF
set terminal pngcairo size 900,560 font ",11"
set output "$out/restore-latency.png"
set title "search service: start → first answer (median, bars min–max of $runs)"
set xlabel "image size (MB)"
set ylabel "time to first answer (ms)"
set logscale xy
set grid
set key top left reverse Left box opaque
set autoscale xfix
set offsets graph 0.1, graph 0.1, 0, 0
set yrange [1:*]
set format y "%g"
plot "$out/latency.tsv" using 1:2:3:4 with yerrorlines lw 2 pt 7 title "full restore (crac restore)", \
     "" using 1:5:6:7 with yerrorlines lw 2 pt 5 title "lazy restore (crac restore --lazy)", \
     "" using 1:8:9:10 with yerrorlines lw 2 pt 9 title "serde + bincode load", \
     "" using 1:11:12:13 with yerrorlines lw 2 pt 13 title "rkyv archive, mmap (zero-copy)", \
     "" using 1:14:15:16 with yerrorlines lw 2 pt 11 lc rgb "#c0392b" title "mapped-heap restore (crac::MappedHeap)", \
     25 with lines dt 2 lc "gray" title "goal (issues 9, 16): 25 ms"
EOF
echo "wrote $out/results.md, $out/latency.tsv and $out/restore-latency.png" >&2
