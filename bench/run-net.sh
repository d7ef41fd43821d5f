#!/usr/bin/env bash
# Network throughput on this machine (issue 6): pod to pod across two nodes, and pod to a
# Service (cluster IP, DNAT by the service proxy's nftables rules), each against two baselines
# measured in the same round: a plain veth pair between two network namespaces, and the nodes'
# own path (node-1 to node-2 over the cluster's wire, without the pod network).
#
# A two-node cluster is started with `capstan cluster up` (release build); iperf3 from the
# host runs inside the pods' network namespaces (nsenter), so the data path is the pods' own:
# veth, bridge, routes between nodes, and the proxy's rules. Three rounds; each prints one JSON
# line, then the medians and ratios. Run as root:
#
#   bash bench/run-net.sh            # 3 rounds of 5 s per measurement
#   SECONDS_PER_RUN=10 bash bench/run-net.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${SECONDS_PER_RUN:-5}
command -v iperf3 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null
bash scripts/install-deps.sh
cargo build --release --locked -p capstan
bash scripts/build-test-images.sh target/test-images >/dev/null

work=$(mktemp -d /tmp/capstan-net-bench.XXXXXX)
name=netbench$$
up_pid=
cleanup() {
    [ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
    target/release/capstan cluster down --name "$name" --dir "$work/cluster" || true
    ip netns del "$name-a" 2>/dev/null || true
    ip netns del "$name-b" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

target/release/capstan cluster up --nodes 2 --name "$name" --dir "$work/cluster" --api-port 0 \
    --image target/test-images/capstan-test-busybox.tar \
    "--node-arg=--eviction-hard=memory.available<100Mi,nodefs.available<1Gi" \
    >"$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 300); do grep -q "kubeconfig written" "$work/up.log" 2>/dev/null && break; sleep 0.1; done
export KUBECONFIG=$work/cluster/kubeconfig
kubectl wait --for=condition=Ready node --all --timeout=60s >/dev/null

kubectl apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: iperf}}
spec:
  nodeName: node-2
  containers: [{name: c, image: capstan.test/busybox:1, command: [sleep, "36000"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  containers: [{name: c, image: capstan.test/busybox:1, command: [sleep, "36000"]}]
---
apiVersion: v1
kind: Service
metadata: {name: iperf}
spec:
  selector: {app: iperf}
  ports: [{port: 5201}]
EOF
kubectl wait --for=condition=Ready pod/server pod/client --timeout=60s >/dev/null
server_uid=$(kubectl get pod server -o jsonpath='{.metadata.uid}')
client_uid=$(kubectl get pod client -o jsonpath='{.metadata.uid}')
server_ip=$(kubectl get pod server -o jsonpath='{.status.podIP}')
service_ip=$(kubectl get service iperf -o jsonpath='{.spec.clusterIP}')
server_ns=$work/cluster/node-2/pods/$server_uid/ns/net
client_ns=$work/cluster/node-1/agent/pods/$client_uid/ns/net

# The baseline: one veth pair between two namespaces, nothing else on the path.
ip netns add "$name-a"
ip netns add "$name-b"
ip -n "$name-a" link add eth0 type veth peer name eth0 netns "$name-b"
ip -n "$name-a" addr add 192.168.77.1/24 dev eth0
ip -n "$name-b" addr add 192.168.77.2/24 dev eth0
ip -n "$name-a" link set eth0 up
ip -n "$name-b" link set eth0 up

ip netns exec "$name-b" iperf3 -s -D >/dev/null
# The nodes' own path: node-1 to node-2 over the cluster's wire, no pod network on it.
node1_ns=/run/netns/capstan-$name-node-1
node2_ns=/run/netns/capstan-$name-node-2
nsenter --net="$node2_ns" iperf3 -s -D -B 172.30.0.12 >/dev/null
sleep 0.5

# Gbit/s of one iperf3 run of the client command given.
gbits() {
    "$@" iperf3 -t "$seconds" -J 2>/dev/null |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))'
}

results=()
for round in 1 2 3; do
    # The pod's server answers one client per start (-1), so it is started before each run.
    nsenter --net="$server_ns" iperf3 -s -D -1 >/dev/null 2>&1
    sleep 0.3
    pod_to_pod=$(gbits nsenter --net="$client_ns" iperf3 -c "$server_ip" | tail -1)
    nsenter --net="$server_ns" iperf3 -s -D -1 >/dev/null 2>&1
    sleep 0.3
    pod_to_service=$(gbits nsenter --net="$client_ns" iperf3 -c "$service_ip" | tail -1)
    veth=$(gbits ip netns exec "$name-a" iperf3 -c 192.168.77.2 | tail -1)
    node_to_node=$(gbits nsenter --net="$node1_ns" iperf3 -c 172.30.0.12 | tail -1)
    line="{\"round\":$round,\"veth_gbps\":$veth,\"node_to_node_gbps\":$node_to_node,\"pod_to_pod_gbps\":$pod_to_pod,\"pod_to_service_gbps\":$pod_to_service}"
    echo "$line"
    results+=("$line")
done

printf '%s\n' "${results[@]}" | python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin]
med = {k: statistics.median(r[k] for r in rows) for k in ("veth_gbps", "node_to_node_gbps", "pod_to_pod_gbps", "pod_to_service_gbps")}
ratios = {
    "pod_to_pod_vs_veth": statistics.median(r["pod_to_pod_gbps"] / r["veth_gbps"] for r in rows),
    "pod_to_service_vs_veth": statistics.median(r["pod_to_service_gbps"] / r["veth_gbps"] for r in rows),
    "pod_to_pod_vs_node_to_node": statistics.median(r["pod_to_pod_gbps"] / r["node_to_node_gbps"] for r in rows),
    "pod_to_service_vs_node_to_node": statistics.median(r["pod_to_service_gbps"] / r["node_to_node_gbps"] for r in rows),
}
print(json.dumps({"median": med, "median_ratio_in_round": {k: round(v, 3) for k, v in ratios.items()}}))
'
