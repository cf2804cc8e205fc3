#!/usr/bin/env bash
# Cold start versus restore of examples/search_service.rs, side by side (needs root).
# Usage: scripts/bench.sh [RESTORES]   — prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-criu.sh
cargo build --locked --release -p crac-cli
cargo build --locked --release --example search_service --example restore_bench
image="${TMPDIR:-/tmp}/crac-bench-image"
./target/release/examples/restore_bench ./target/release/examples/search_service ./target/release/crac "$image" "${1:-5}"
rm -rf "$image"
