#!/usr/bin/env bash
# What clients see of periodic checkpoints (needs root): examples/axum_service.rs under
# `crac run --every N` with a bounded load on 127.0.0.1 — half the requests on new
# connections, half on kept-alive ones — reporting failed requests, p50/p99/max latency
# (outside checkpoints and during them) and each checkpoint's freeze time (CRIU's
# `frozen_time`, from the image's `stats-dump`). Not part of CI.
#
# Usage: scripts/bench-load.sh [RATE [SECONDS [EVERY]]]
#   RATE     requests per second (default 100)
#   SECONDS  how long the load lasts (default 60)
#   EVERY    crac run --every (default 5)
# Environment:
#   BENCH_PROFILE  release (default) or debug: which build is measured
#   BENCH_WORK     the image, redis and logs while it runs, removed at the end
#                  (default ${TMPDIR:-/tmp}/crac-bench-load)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-100}
seconds=${2:-60}
every=${3:-5}
profile=${BENCH_PROFILE:-release}
work=${BENCH_WORK:-${TMPDIR:-/tmp}/crac-bench-load}
target=${CARGO_TARGET_DIR:-target}/$profile
flag=$([ "$profile" = release ] && echo --release || true)

./scripts/install-criu.sh >&2
./scripts/install-servers.sh >&2
cargo build --locked $flag -p crac-cli
cargo build --locked $flag --features axum --example axum_service
rm -rf "$work" && mkdir -p "$work"
redis_port=16399
port=18090
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
"$target/crac" run --every "$every" --image "$work/image" \
    --env "REDIS_URL=redis://127.0.0.1:$redis_port/" --env "ADDR=127.0.0.1:$port" \
    --env CACHE_MB=100 -- "$target/examples/axum_service" 2>"$work/service.log" &
service=$!
cleanup() {
    kill -TERM "$service" 2>/dev/null && wait "$service" 2>/dev/null || true
    kill "$(cat "$work/redis.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
load_before=$(cut -d' ' -f1 /proc/loadavg)
python3 scripts/bench-load-client.py "$port" "$rate" "$seconds" "$work/image"
load_after=$(cut -d' ' -f1 /proc/loadavg)
criu=${CRAC_CRIU:-$(command -v criu || echo /usr/local/sbin/criu)}
echo
echo "Measured $(date -u +%F) with \`scripts/bench-load.sh $rate $seconds $every\` ($profile):" \
    "$(nproc) CPUs, Linux $(uname -r), CRIU $("$criu" --version | sed -n 's/^Version: //p');" \
    "load average $load_before at the start, $load_after at the end."
echo "periodic checkpoints that failed: $(grep -c "periodic checkpoint failed" "$work/service.log")"
grep -A4 "periodic checkpoint failed" "$work/service.log" | head -20 || true
