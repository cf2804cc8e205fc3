#!/usr/bin/env bash
# Sets up and runs the demo: the README's first quick-start command.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --locked --release --example coordination
