#!/usr/bin/env bash
# Sets up and runs the demo (the README's first quick-start command): a search service
# warms up for seconds, checkpoints itself with CRIU, and is restored in milliseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== the coordination protocol (simulate engine, no image)"
cargo run --locked --release --example coordination
echo
echo "== a real checkpoint and restore with CRIU"
exec ./scripts/bench.sh 5
