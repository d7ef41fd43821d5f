#!/usr/bin/env bash
# Starts a single-node capstan cluster on this machine: installs build dependencies, builds the
# release binary, runs `capstan server` (control plane and this machine's node agent) in the
# background with its data in /var/lib/capstan (override with CAPSTAN_DATA_DIR), and imports
# the locally built busybox test image. Prints how to point kubectl at it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --locked -p capstan

data_dir=${CAPSTAN_DATA_DIR:-/var/lib/capstan}
log=${CAPSTAN_LOG_FILE:-$data_dir/server.log}
mkdir -p "$data_dir"
if [ -f "$data_dir/server.pid" ] && kill -0 "$(cat "$data_dir/server.pid")" 2>/dev/null; then
    echo "capstan server is already running (pid $(cat "$data_dir/server.pid"))"
else
    nohup target/release/capstan server --data-dir "$data_dir" >"$log" 2>&1 &
    echo $! >"$data_dir/server.pid"
    for _ in $(seq 100); do
        [ -f "$data_dir/kubeconfig" ] && grep -q "listening" "$log" && break
        sleep 0.1
    done
    grep "listening" "$log" || { cat "$log"; exit 1; }
fi
# The test image (busybox, built locally: nothing is downloaded) for a first pod.
bash scripts/build-test-images.sh target/test-images >/dev/null
target/release/capstan image --data-dir "$data_dir" import target/test-images/capstan-test-busybox.tar
echo
echo "Use it with:  export KUBECONFIG=$data_dir/kubeconfig; kubectl get nodes"
echo "Stop it with: kill \$(cat $data_dir/server.pid)"
