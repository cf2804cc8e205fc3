#!/usr/bin/env bash
# Sets up and runs the demo (the README's first quick-start command): a search service
# warms up for seconds, checkpoints itself with CRIU, and is restored in milliseconds;
# beside it, the same index loaded with serde + bincode and mapped as an rkyv archive.
# The headline of scripts/bench.sh at one size (the 268 MB image), 3 runs of each.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== the coordination protocol (simulate engine, no image)"
cargo run --locked --release --example coordination
echo
echo "== a real checkpoint and restore with CRIU, against the hand-written alternatives"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
BENCH_OUT="$out" BENCH_PLOT=0 ./scripts/bench.sh 3 300000
