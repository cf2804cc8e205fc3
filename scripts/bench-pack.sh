#!/usr/bin/env bash
# `crac pack` and `crac unpack` against `zstd -T2` on the same files, in one run (needs
# root): the search service's image (examples/search_service.rs, checkpointed as
# scripts/bench.sh does) packed at zstd levels 1, 2 (the default) and 3, then unpacked as
# on another host (its heap store moved away meanwhile, so unpacking places the
# segments); tar | zstd -T2 and zstd -d | tar on the same files (the image directory and
# its heap store) beside them. Page cache warm for all (the image was just written);
# figures in MB/s of image, and the packed size against the image's. Then `crac restore
# FILE` to the first answer, the first time on a host and later, against `crac unpack`
# followed by `crac restore DIR`, and `crac restore DIR` alone.
#
# Usage: scripts/bench-pack.sh [DOCS [RUNS]]
#   DOCS  corpus size in documents (default 300000: an image of about 268 MB)
#   RUNS  runs of each, the median reported (default 3)
# Environment:
#   BENCH_WORK  the image and packed files while it runs, removed at the end
#               (default ${TMPDIR:-/tmp}/crac-bench-pack)
set -euo pipefail
cd "$(dirname "$0")/.."
docs=${1:-300000}
runs=${2:-3}
work=${BENCH_WORK:-${TMPDIR:-/tmp}/crac-bench-pack}
target=${CARGO_TARGET_DIR:-target}
crac=$target/release/crac

./scripts/install-criu.sh >&2
command -v zstd >/dev/null || { apt-get update && apt-get install -y zstd; } >&2
cargo build --locked --release -p crac-cli
cargo build --locked --release --example search_service
rm -rf "$work"
mkdir -p "$work"
# sealed segments are immutable
trap 'chattr -R -i "$work" 2>/dev/null; rm -rf "$work"' EXIT
image=$work/image
store=$work/image.heap

# As `crac run` does: PID 2 of its own namespace; the service checkpoints when ready.
CRAC_CHECKPOINT_TO=$image SEARCH_DOCS=$docs \
    unshare --pid --fork --mount-proc --kill-child \
    "$crac" __init -- "$target/release/examples/search_service" 127.0.0.1:17879 \
    >/dev/null 2>"$work/checkpoint.log" || true
[ -f "$image/crac-manifest" ] || { cat "$work/checkpoint.log" >&2; exit 1; }
bytes=$(awk '$1 == "file" || $1 == "segment" { n += $2 } END { print n }' "$image/crac-manifest")

now() { date +%s%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# MB/s of image for a time in ns
rate() { awk -v b="$bytes" -v ns="$1" 'BEGIN { printf "%.0f", b / 1e6 / (ns / 1e9) }'; }
ratio() { awk -v b="$bytes" -v p="$1" 'BEGIN { printf "%.2f", p / b }'; }

# Unpacking as on another host: the heap store moved away, and what unpacking placed there
# removed after.
away() { mv "$store" "$work/store.away"; }
back() { chattr -R -i "$store" 2>/dev/null; rm -rf "$store"; mv "$work/store.away" "$store"; }

row() { # name, pack command, unpack command, packed file, untimed before/after unpacking
    local packs=() unpacks=() t
    for _ in $(seq "$runs"); do
        rm -rf "$work/out" "$4"
        t=$(now); eval "$2" >/dev/null 2>&1; packs+=($(( $(now) - t )))
        eval "${5:-}"
        t=$(now); eval "$3" >/dev/null 2>&1; unpacks+=($(( $(now) - t )))
        eval "${6:-}"
    done
    [ -f "$work/out/crac-manifest" ] || [ -f "$work/out/image/crac-manifest" ] ||
        { echo "$1: unpacking failed" >&2; exit 1; }
    local size pack unpack
    size=$(stat -c %s "$4")
    pack=$(printf '%s\n' "${packs[@]}" | median)
    unpack=$(printf '%s\n' "${unpacks[@]}" | median)
    printf '| %s | %.0f MB (%s×) | %s MB/s (%.2f s) | %s MB/s (%.2f s) |\n' "$1" \
        "$(awk -v s="$size" 'BEGIN { print s / 1e6 }')" "$(ratio "$size")" \
        "$(rate "$pack")" "$(awk -v t="$pack" 'BEGIN { print t / 1e9 }')" \
        "$(rate "$unpack")" "$(awk -v t="$unpack" 'BEGIN { print t / 1e9 }')"
}

echo "Measured $(date -u +%F) with \`scripts/bench-pack.sh $docs $runs\`: $(nproc) CPUs,\
 Linux $(uname -r), load average $(cut -d' ' -f1 /proc/loadavg); image $(( bytes / 1000000 )) MB,\
 medians of $runs."
echo
echo "| | packed | pack | unpack |"
echo "|---|---|---|---|"
for level in 1 2 3; do
    row "\`crac pack --level $level\` / \`crac unpack\`" \
        "'$crac' pack '$image' -o '$work/image.crac' --level $level" \
        "'$crac' unpack '$work/image.crac' -o '$work/out'" "$work/image.crac" away back
done
for level in 1 2 3; do
    row "\`tar \\| zstd -$level -T2\` / \`zstd -d \\| tar\`" \
        "tar -C '$work' -cf - image image.heap | zstd -$level -T2 -q -o '$work/image.tar.zst'" \
        "mkdir '$work/out' && zstd -d -q -c '$work/image.tar.zst' | tar -C '$work/out' -xf -" \
        "$work/image.tar.zst" "" "chattr -R -i '$work/out' 2>/dev/null"
done

# `crac restore FILE` against `crac restore DIR`, from the start to the service's first
# answer: the first restore of the file on a host (an empty image cache, the heap store
# moved away as on another host) against unpacking and then restoring the directory,
# and a later one (the cache filled) against the directory.
first_answer() { # ms from starting `crac ARGS` to the first answer; the copy then stopped
    local start pid ms
    start=$(now)
    "$crac" "$@" </dev/null >/dev/null 2>>"$work/restore.log" &
    pid=$!
    ms=$(./scripts/first-answer.py 17879 "$start")
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    sleep 0.3 # the copy's port free again
    echo "$ms"
}
chattr -R -i "$work/out" 2>/dev/null; rm -rf "$work/out" # the rows' last unpacking
"$crac" pack "$image" -o "$work/image.crac" >/dev/null 2>&1
dir=() first=() unpack=() later=()
for i in $(seq "$runs"); do
    dir+=("$(first_answer restore "$image")")
    away
    t=$(now)
    "$crac" unpack "$work/image.crac" -o "$work/out" >/dev/null 2>>"$work/restore.log" ||
        { cat "$work/restore.log" >&2; exit 1; }
    unpack+=($(( ($(now) - t) / 1000000 )))
    chattr -R -i "$work/out" 2>/dev/null; rm -rf "$work/out"; back
    away
    first+=("$(CRAC_IMAGE_CACHE=$work/cache-$i first_answer restore "$work/image.crac")")
    back
done
for _ in $(seq "$runs"); do
    later+=("$(CRAC_IMAGE_CACHE=$work/cache-1 first_answer restore "$work/image.crac")")
done
ms() { printf '%s\n' "$@" | median; }
echo
echo "| restore → first answer (medians, ms) | |"
echo "|---|---|"
echo "| \`crac restore DIR\` | $(ms "${dir[@]}") |"
echo "| \`crac unpack\` + \`crac restore DIR\` | $(( $(ms "${unpack[@]}") + $(ms "${dir[@]}") )) |"
echo "| \`crac restore FILE\`, first on this host (empty cache) | $(ms "${first[@]}") |"
echo "| \`crac restore FILE\`, later (the cache filled) | $(ms "${later[@]}") |"
