#!/usr/bin/env bash
# Builds capstan and api-bench in release mode and runs the API benchmark three times, writing
# bench/results/api-bench-run{1,2,3}.json (the figures bench/README.md records).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p capstan -p capstan-bench
mkdir -p bench/results
for run in 1 2 3; do
    target/release/api-bench --json "bench/results/api-bench-run$run.json" "$@"
done
