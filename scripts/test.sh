#!/usr/bin/env bash
# Runs every check and test of capstan: formatting, lints, unit tests, and the end-to-end tests
# that drive the installed kubectl against a real `capstan server`. This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
