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
    # Every path answers the text (as the 404 page), so that ingress paths need no files.
    command: [sh, -c, 'echo {text} > /tmp/index.html; echo E404:/tmp/index.html > /tmp/httpd.conf; exec httpd -f -v -p 8080 -h /tmp -c /tmp/httpd.conf']
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

/// The pod name answering a GET of `address:port` from pod `from`, or "" on failure.
fn who_answers(cluster: &Cluster, from: &str, address: &str, port: u16) -> String {
    http_get(cluster, from, address, port)
}

/// An HTTP GET of `address:port` from the LAN namespace: a machine outside the cluster on the
/// nodes' network.
fn http_get_from_lan(cluster: &Cluster, address: &str, port: u16) -> String {
    let out = cluster
        .lan_command("sh")
        .args([
            "-c",
            &format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {address} {port} | tail -n 1"
            ),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const SPREAD_WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 0
      # One replica per node, so that the Service balances across nodes.
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: web
        image: capstan.test/busybox:1
        command: [sh, -c, 'hostname > /tmp/index.html; touch /tmp/ready; exec httpd -f -p 8080 -h /tmp']
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          exec: {command: [test, -f, /tmp/ready]}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 8081, targetPort: 8080}]
";

#[test]
fn services_balance_over_ready_pods_on_every_node_and_answer_node_ports() {
    let cluster = Cluster::start_nodes(3);
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &[SPREAD_WEB, "---\n", &client_pod("client", "node-2")].concat(),
    );
    cluster.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    wait_ready(&cluster, &["client"]);
    let pods: Vec<String> = cluster
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
        ])
        .lines()
        .map(str::to_owned)
        .collect();
    let nodes: std::collections::BTreeSet<&str> = pods
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(nodes.len(), 3, "one replica per node: {pods:?}");
    let names: std::collections::BTreeSet<String> = pods
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();

    // The cluster IP, by name through cluster DNS, balances over the pods of all three nodes.
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..60 {
        answered.insert(who_answers(&cluster, "client", "web", 80));
        if answered.is_superset(&names) {
            break;
        }
    }
    assert!(
        answered.is_superset(&names),
        "answers {answered:?}, pods {names:?}"
    );

    // The NodePort answers on every node's address, from outside the cluster.
    let node_port = cluster.kubectl(&[
        "get",
        "service",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let node_port: u16 = node_port.parse().unwrap();
    assert!((30000..=32767).contains(&node_port));
    for node_ip in ["172.30.0.11", "172.30.0.12", "172.30.0.13"] {
        let answer = http_get_from_lan(&cluster, node_ip, node_port);
        assert!(
            names.contains(&answer),
            "{node_ip}:{node_port} answered {answer:?}"
        );
    }

    // A LoadBalancer Service is answered on the nodes' addresses, as k3s's ServiceLB does.
    assert!(
        eventually(Duration::from_secs(10), || cluster.kubectl(&[
            "get",
            "service",
            "web-lb",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}"
        ]) == "172.30.0.11 172.30.0.12 172.30.0.13"),
        "{}",
        cluster.kubectl(&["get", "service", "web-lb", "-o", "yaml"])
    );
    let answer = http_get_from_lan(&cluster, "172.30.0.13", 8081);
    assert!(
        names.contains(&answer),
        "the load balancer answered {answer:?}"
    );

    // A pod that stops being ready leaves the endpoints and gets no new connections.
    let (gone, _) = pods[0].split_once(' ').unwrap();
    cluster.kubectl(&["exec", gone, "--", "rm", "/tmp/ready"]);
    let slice_addresses = || {
        cluster.kubectl(&[
            "get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o",
            "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.targetRef.name} {end}",
        ])
    };
    assert!(
        eventually(Duration::from_secs(5), || !slice_addresses().contains(gone)),
        "{gone} is still a ready endpoint: {}",
        slice_addresses()
    );
    for _ in 0..20 {
        let answer = who_answers(&cluster, "client", "web", 80);
        assert_ne!(answer, gone, "the unready pod still got a connection");
        assert!(!answer.is_empty(), "the Service stopped answering");
    }
    // Ready again, it is back.
    cluster.kubectl(&["exec", gone, "--", "touch", "/tmp/ready"]);
    assert!(
        eventually(Duration::from_secs(10), || who_answers(
            &cluster, "client", "web", 80
        ) == gone),
        "the pod never got traffic again"
    );
}

/// Whether pod `from` gets an answer from `address:port` within 2 s.
fn reaches(cluster: &Cluster, from: &str, address: &str, port: u16) -> bool {
    !http_get(cluster, from, address, port).is_empty()
}

#[test]
fn network_policies_block_and_then_allow_traffic() {
    let cluster = Cluster::start_nodes(3);
    let manifests = [
        web_pod("db", "node-1", "db", "app: db"),
        client_pod("frontend", "node-2").replace(
            "name: frontend\n",
            "name: frontend\n  labels: {role: frontend}\n",
        ),
        client_pod("other", "node-3"),
        client_pod("neighbour", "node-1"),
    ]
    .concat();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifests);
    wait_ready(&cluster, &["db", "frontend", "other", "neighbour"]);
    let db = cluster.pod_field("db", "{.status.podIP}");
    // Without policies every pod reaches every pod.
    for client in ["frontend", "other", "neighbour"] {
        assert!(
            reaches(&cluster, client, &db, 8080),
            "{client} does not reach db"
        );
    }
    // Default deny for db's ingress: nobody gets in, from other nodes or its own.
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
",
    );
    for client in ["frontend", "other", "neighbour"] {
        assert!(
            eventually(Duration::from_secs(5), || !reaches(
                &cluster, client, &db, 8080
            )),
            "{client} still reaches db through a default deny"
        );
    }
    // The node itself still probes db: it stays Ready.
    assert_eq!(
        cluster.pod_field("db", "{.status.conditions[?(@.type==\"Ready\")].status}"),
        "True"
    );
    // Allowing pods labelled role=frontend on the named port lets only that one in.
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-frontend}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: frontend}}}]
    ports: [{port: http}]
",
    );
    assert!(
        eventually(Duration::from_secs(5), || reaches(
            &cluster, "frontend", &db, 8080
        )),
        "the allowed pod never got through"
    );
    assert!(
        !reaches(&cluster, "other", &db, 8080),
        "a pod without the label got through"
    );
    assert!(
        !reaches(&cluster, "neighbour", &db, 8080),
        "a pod without the label got through"
    );
    // Egress: the frontend may talk only to db; other pods are then out of its reach.
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &[
            web_pod("web", "node-3", "web", "app: web"),
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: frontend-egress}
spec:
  podSelector: {matchLabels: {role: frontend}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
"
            .to_string(),
        ]
        .concat(),
    );
    wait_ready(&cluster, &["web"]);
    let web = cluster.pod_field("web", "{.status.podIP}");
    assert!(
        eventually(Duration::from_secs(5), || !reaches(
            &cluster, "frontend", &web, 8080
        )),
        "egress to a pod outside the policy was not blocked"
    );
    assert!(
        reaches(&cluster, "frontend", &db, 8080),
        "egress to db was blocked"
    );
    assert!(
        reaches(&cluster, "other", &web, 8080),
        "a pod without policies lost its egress"
    );
    // Without the policies, everything flows again.
    cluster.kubectl(&["delete", "networkpolicy", "--all"]);
    assert!(
        eventually(Duration::from_secs(5), || reaches(
            &cluster, "other", &db, 8080
        ) && reaches(
            &cluster, "frontend", &web, 8080
        )),
        "traffic did not come back once the policies were deleted"
    );
}

/// curl from the LAN namespace (outside the cluster): `extra` flags, then the URL; returns
/// the body, or "" on failure.
fn curl_from_lan(cluster: &Cluster, extra: &[&str], url: &str) -> String {
    let out = cluster
        .lan_command("curl")
        .args(["-sS", "--max-time", "3"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn ingress_routes_by_host_and_path_with_tls_from_a_secret() {
    let cluster = Cluster::start_nodes(3);
    let services = "apiVersion: v1
kind: Service
metadata: {name: shop}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{name: web, port: 8000, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: fallback}
spec:
  selector: {app: fallback}
  ports: [{port: 80, targetPort: 8080}]
";
    let manifests = [
        web_pod("shop", "node-1", "shop", "app: shop"),
        web_pod("api", "node-2", "api", "app: api"),
        web_pod("fallback", "node-3", "fallback", "app: fallback"),
        services.to_string(),
    ]
    .concat();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifests);
    wait_ready(&cluster, &["shop", "api", "fallback"]);
    // A certificate for shop.example.test, in a TLS Secret.
    let key = cluster.dir.path().join("tls.key");
    let cert = cluster.dir.path().join("tls.crt");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=shop.example.test",
        ])
        .args(["-addext", "subjectAltName=DNS:shop.example.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    cluster.kubectl(&[
        "create",
        "secret",
        "tls",
        "shop-tls",
        &format!("--cert={}", cert.display()),
        &format!("--key={}", key.display()),
    ]);
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  defaultBackend:
    service: {name: fallback, port: {number: 80}}
  tls: [{hosts: [shop.example.test], secretName: shop-tls}]
  rules:
  - host: shop.example.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: shop, port: {name: http}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 8000}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: api, port: {name: web}}}}
",
    );
    // The default IngressClass is capstan's.
    assert_eq!(
        cluster.kubectl(&[
            "get",
            "ingressclass",
            "capstan",
            "-o",
            "jsonpath={.spec.controller}"
        ]),
        "capstan.dev/ingress"
    );
    let host = ["-H", "Host: shop.example.test"];
    assert!(
        eventually(Duration::from_secs(10), || curl_from_lan(
            &cluster,
            &host,
            "http://172.30.0.11/"
        ) == "shop"),
        "the ingress never routed to shop: {:?}",
        curl_from_lan(
            &cluster,
            &["-i", "-H", "Host: shop.example.test"],
            "http://172.30.0.11/"
        )
    );
    // Every node serves it; the longest prefix wins; Prefix matches whole path elements.
    for node in ["172.30.0.11", "172.30.0.12", "172.30.0.13"] {
        assert_eq!(
            curl_from_lan(&cluster, &host, &format!("http://{node}/api/orders")),
            "api",
            "{node}"
        );
    }
    assert_eq!(
        curl_from_lan(&cluster, &host, "http://172.30.0.12/apiary"),
        "shop"
    );
    assert_eq!(
        curl_from_lan(&cluster, &host, "http://172.30.0.12/exact"),
        "api"
    );
    assert_eq!(
        curl_from_lan(&cluster, &host, "http://172.30.0.12/exact/more"),
        "shop"
    );
    // Another host falls to the default backend.
    assert_eq!(
        curl_from_lan(&cluster, &["-H", "Host: other.test"], "http://172.30.0.13/"),
        "fallback"
    );
    // HTTPS with the Secret's certificate, chosen by SNI.
    let resolve = "shop.example.test:443:172.30.0.13";
    let cacert = cert.display().to_string();
    assert_eq!(
        curl_from_lan(
            &cluster,
            &["--resolve", resolve, "--cacert", &cacert],
            "https://shop.example.test/api"
        ),
        "api"
    );
    // An update applies while the proxy keeps serving: /api moves to the fallback.
    cluster.kubectl(&[
        "patch", "ingress", "shop", "--type=json", "-p",
        r#"[{"op": "replace", "path": "/spec/rules/0/http/paths/1/backend/service", "value": {"name": "fallback", "port": {"number": 80}}}]"#,
    ]);
    assert!(
        eventually(Duration::from_secs(5), || curl_from_lan(
            &cluster,
            &host,
            "http://172.30.0.11/api"
        ) == "fallback"),
        "the update never applied"
    );
}
