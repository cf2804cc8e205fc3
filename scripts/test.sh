#!/usr/bin/env bash
# Sets up and runs every test: the README's second quick-start command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "build"
cargo build --workspace --all-targets --locked
step "tests (unit, integration, compile-fail snapshots, doc tests)"
cargo test --workspace --locked
step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "format"
cargo fmt --all -- --check
step "all checks passed"
