#!/usr/bin/env bash
# Restore → first answer of examples/search_service in each mode, side by side: root,
# rootless (an ordinary user through a user namespace, `criu restore --unprivileged`)
# and restore-only (root with only CHECKPOINT_RESTORE, SETUID, SETGID and SETPCAP, `crac`
# as PID 1 of a PID namespace: a restore-only container without the container). Run as
# root: it takes one image in each mode, then restores each RUNS times, one at a time,
# and times from `crac restore`'s start to the first answer to `search`.
#
# Usage: scripts/bench-rootless.sh [RUNS [USER]]
#   RUNS  restores in each mode (default 10)
#   USER  the ordinary user (default crac-e2e-attacker, which the e2e suite makes)
# Environment: SEARCH_DOCS (default 38000: a 50 MB image), BENCH_WORK (default
#   ${TMPDIR:-/tmp}/crac-bench-rootless, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
user=${2:-crac-e2e-attacker}
export SEARCH_DOCS=${SEARCH_DOCS:-38000}
work=${BENCH_WORK:-${TMPDIR:-/tmp}/crac-bench-rootless}
target=${CARGO_TARGET_DIR:-target}
cargo build --locked --release -p crac-cli >&2
cargo build --locked --release --example search_service >&2
crac=$(realpath "$target/release/crac")
service=$(realpath "$target/release/examples/search_service")
# The service's mapped-heap segments are sealed immutable (chattr +i) as root.
remove() { [ ! -e "$1" ] || chattr -R -i "$1" 2>/dev/null; rm -rf "$1"; }
remove "$work"
mkdir -p "$work/root" "$work/rootless" "$work/restore-only"
chown "$user" "$work/rootless"
chmod 700 "$work/root" "$work/rootless" "$work/restore-only"
# The user's runtime directory, on a tmpfs as systemd-logind's /run/user/UID: CRIU keeps
# its kernel probe there unprivileged, as it does in /run/crac-criu for root.
runtime=$(mktemp -d /dev/shm/crac-bench-runtime.XXXXXX)
chown "$user" "$runtime"
trap 'remove "$work"; rm -rf "$runtime"' EXIT

# `as MODE CMD...`: CMD as root, as root restricted to restoring (PID 1 of a PID
# namespace with four capabilities), or as the user with a home of its own in the work dir;
# exec'd, so that a command started in the background is `$!` itself.
as() {
    local mode=$1
    shift
    if [ "$mode" = root ]; then
        exec "$@"
    elif [ "$mode" = restore-only ]; then
        exec unshare --pid --fork --mount-proc --kill-child \
            setpriv --bounding-set -all,+checkpoint_restore,+setuid,+setgid,+setpcap \
            --inh-caps -all "$@"
    else
        exec setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups \
            env -i PATH="$PATH" HOME="$work/rootless" XDG_RUNTIME_DIR="$runtime" SEARCH_DOCS="$SEARCH_DOCS" "$@"
    fi
}

port=7900
for mode in root rootless restore-only; do
    port=$((port + 1))
    image="$work/$mode/image"
    # The service checkpoints itself once warm, as PID 2 of its namespace under
    # `crac __init` (what `crac run` starts; rootless, inside a user namespace too).
    if [ "$mode" != rootless ]; then
        # restore-only: the service keeps no capability its restorer lacks
        # (`crac run --drop-capabilities`)
        CRAC_DROP_CAPABILITIES=$([ "$mode" = restore-only ] && echo 1 || echo 0) \
            CRAC_CHECKPOINT_TO=$image unshare --pid --fork --mount-proc --kill-child \
            "$crac" __init -- "$service" "127.0.0.1:$port" </dev/null >/dev/null 2>&1 || true
    else
        (as rootless "$crac" key init >/dev/null)
        key=$(as rootless "$crac" key show | cut -d' ' -f2)
        (as rootless CRAC_CHECKPOINT_TO="$image" CRAC_USER_NAMESPACE=rootless \
            CRAC_IMAGE_KEY="$key" unshare --user --map-root-user --pid --fork \
            --mount-proc --kill-child "$crac" __init -- "$service" "127.0.0.1:$port" \
            </dev/null >/dev/null 2>&1) || true
    fi
    [ -f "$image/crac-manifest" ] || { echo "no $mode image" >&2; exit 1; }
    times=()
    for _ in $(seq "$runs"); do
        start=$(date +%s%N)
        (as "$mode" "$crac" restore "$image" </dev/null >/dev/null 2>>"$work/$mode/err") &
        times+=("$(./scripts/first-answer.py "$port" "$start")")
        # `unshare --fork` ignores SIGINT while it waits: restore-only's `crac` is its child
        if [ "$mode" = restore-only ]; then pkill -INT -P $! 2>/dev/null || true; fi
        kill -INT $! 2>/dev/null || true
        wait $! 2>/dev/null || true
        # the copy's PIDs and port are free again before the next one
        sleep 0.3
    done
    sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
    echo "$mode: restore → first answer, ms: median $median (all: $sorted)"
done
