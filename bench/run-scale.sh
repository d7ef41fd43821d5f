#!/usr/bin/env bash
# Builds capstan and scale-bench, runs the scale benchmark with 100, 1,000 and 5,000 hollow
# nodes (30 pods per node: 3,000, 30,000 and 150,000 pods), writing
# bench/results/scale-<nodes>.json, then rewrites the scale table in bench/README.md and the
# plot bench/scale.png from those files. SCALE_SIZES="100 1000" runs other sizes; the table
# and plot show every bench/results/scale-*.json there is.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p capstan -p capstan-bench
mkdir -p bench/results
for nodes in ${SCALE_SIZES:-100 1000 5000}; do
    target/release/scale-bench --nodes "$nodes" --json "bench/results/scale-$nodes.json" "$@"
done
# The plot needs matplotlib, from PyPI into a virtualenv of its own.
venv=target/bench-venv
if ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet matplotlib
fi
"$venv/bin/python" bench/scale_report.py
