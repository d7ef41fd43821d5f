//! Pod networking, Services, cluster DNS and ingress on a cluster of three nodes, each in its
//! own network namespace (`capstan cluster up`). Traffic stays inside those namespaces.

use std::time::Duration;

use crate::harness::{Cluster, eventually};

/// A pod on `node` serving `text` over HTTP on port 8080 (busybox httpd).
fn web_pod(name: &str, node: &str, text: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{{labels}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: capstan.test/busybox:1
    command: [sh, -c, 'echo {text} > /tmp/index.html; exec httpd -f -v -p 8080 -h /tmp']
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
---
"
    )
}

/// A pod on `node` that only waits, to run clients from.
fn client_pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: capstan.test/busybox:1
    command: [sleep, '3600']
---
"
    )
}

/// An HTTP GET of `/` on `address:port` from inside pod `from` (busybox nc: its wget is
/// built statically and crashes resolving).
fn http_get(cluster: &Cluster, from: &str, address: &str, port: u16) -> String {
    let request =
        format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address} {port} | tail -n 1");
    let out = cluster.kubectl_output(&["exec", from, "--", "sh", "-c", &request]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_ready(cluster: &Cluster, pods: &[&str]) {
    for pod in pods {
        cluster.wait_for_pod(
            pod,
            "{.status.conditions[?(@.type==\"Ready\")].status}",
            "True",
            Duration::from_secs(60),
        );
    }
}

#[test]
fn pods_reach_each_other_across_nodes_by_their_own_addresses() {
    let cluster = Cluster::start_nodes(3);
    let manifests = [
        web_pod("web-1", "node-1", "one", "app: web"),
        web_pod("web-3", "node-3", "three", "app: web"),
        client_pod("client", "node-2"),
    ]
    .concat();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifests);
    wait_ready(&cluster, &["web-1", "web-3", "client"]);
    // Every pod has its own address in its node's range.
    let mut addresses = Vec::new();
    for (pod, node) in [
        ("web-1", "node-1"),
        ("web-3", "node-3"),
        ("client", "node-2"),
    ] {
        let ip = cluster.pod_field(pod, "{.status.podIP}");
        let range = cluster.kubectl(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"]);
        let prefix = range
            .rsplit_once(".0/24")
            .map(|(p, _)| p.to_string())
            .unwrap();
        assert!(
            ip.starts_with(&format!("{prefix}.")),
            "{pod} has {ip}, not in {range}"
        );
        assert_eq!(cluster.pod_field(pod, "{.status.podIPs[0].ip}"), ip);
        addresses.push(ip);
    }
    // The client on node-2 reaches both servers directly.
    assert_eq!(http_get(&cluster, "client", &addresses[0], 8080), "one");
    assert_eq!(http_get(&cluster, "client", &addresses[1], 8080), "three");
    // The server saw the client's own address (httpd -v logs it): no NAT between pods.
    let log = cluster.kubectl(&["logs", "web-1"]);
    assert!(log.contains(&addresses[2]), "web-1's log: {log}");
    // The pod's containers share localhost, and the pod sees its own address on eth0.
    let inside = cluster.kubectl(&[
        "exec", "client", "--", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(inside.contains(&format!("{}/24", addresses[2])), "{inside}");
    // Deleting a pod releases its address: a new pod on that node can get it again later,
    // and the old address no longer answers.
    cluster.kubectl(&["delete", "pod", "web-3", "--wait=true"]);
    assert!(
        eventually(Duration::from_secs(10), || http_get(
            &cluster,
            "client",
            &addresses[1],
            8080
        )
        .is_empty()),
        "the deleted pod's address still answers"
    );
}

/// A Deployment `name` of `replicas` busybox httpd pods answering their own pod name on
/// port 8080 (named `http`), ready once they listen.
fn web_deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: web
        image: capstan.test/busybox:1
        command: [sh, -c, 'hostname > /tmp/index.html; exec httpd -f -v -p 8080 -h /tmp']
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
---
"
    )
}

fn nslookup(cluster: &Cluster, from: &str, args: &[&str]) -> String {
    let mut command = vec!["exec", from, "--", "nslookup"];
    command.extend_from_slice(args);
    let out = cluster.kubectl_output(&command);
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn cluster_dns_answers_services_headless_services_srv_and_pods() {
    let cluster = Cluster::start_nodes(3);
    let manifests = [
        web_deployment("web", 3),
        client_pod("client", "node-2"),
        "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-direct}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
"
        .to_string(),
    ]
    .concat();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifests);
    cluster.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    wait_ready(&cluster, &["client"]);
    // The pod's resolv.conf is the one kubelet writes for ClusterFirst.
    assert_eq!(
        cluster.kubectl(&["exec", "client", "--", "cat", "/etc/resolv.conf"]),
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
    );
    let cluster_ip =
        cluster.kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    // The short name resolves through the search path to the cluster IP.
    let answer = nslookup(&cluster, "client", &["web"]);
    assert!(
        answer.contains("Name:\tweb.default.svc.cluster.local")
            && answer.contains(&format!("Address: {cluster_ip}")),
        "{answer}"
    );
    // A headless Service resolves to its ready pods' own addresses.
    let pod_ips: Vec<String> = cluster
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ])
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(pod_ips.len(), 3);
    let answer = nslookup(
        &cluster,
        "client",
        &["web-direct.default.svc.cluster.local"],
    );
    for ip in &pod_ips {
        assert!(
            answer.contains(&format!("Address: {ip}")),
            "{ip} missing: {answer}"
        );
    }
    // SRV for the named port.
    let answer = nslookup(
        &cluster,
        "client",
        &["-type=srv", "_http._tcp.web.default.svc.cluster.local"],
    );
    assert!(
        answer.contains("80 web.default.svc.cluster.local"),
        "{answer}"
    );
    // Pod names, and a name that does not exist.
    let dashed = pod_ips[0].replace('.', "-");
    let answer = nslookup(
        &cluster,
        "client",
        &[&format!("{dashed}.default.pod.cluster.local")],
    );
    assert!(
        answer.contains(&format!("Address: {}", pod_ips[0])),
        "{answer}"
    );
    let answer = nslookup(&cluster, "client", &["nothing.default.svc.cluster.local"]);
    assert!(answer.contains("NXDOMAIN"), "{answer}");
    // A Service created now is answered at once.
    cluster.kubectl(&["create", "service", "clusterip", "late", "--tcp=80:8080"]);
    let late_ip = cluster.kubectl(&["get", "service", "late", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(
        eventually(Duration::from_secs(5), || nslookup(
            &cluster,
            "client",
            &["late"]
        )
        .contains(&late_ip)),
        "the new Service never resolved"
    );
}
