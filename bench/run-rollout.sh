#!/usr/bin/env bash
# Builds capstan, rollout-bench and the test image, then runs the rollout benchmark three times
# (as root: it runs real containers), writing bench/results/rollout-bench-run{1,2,3}.json (the
# figures bench/README.md records).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p capstan -p capstan-bench
bash scripts/build-test-images.sh target/test-images >/dev/null
mkdir -p bench/results
for run in 1 2 3; do
    target/release/rollout-bench --json "bench/results/rollout-bench-run$run.json" "$@"
done
