//! kubectl against capstan server: everything issue #2 lists, with the outputs a Kubernetes
//! user expects.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Cluster, eventually, path_str};

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: httpd
        image: busybox:1.36
        command: [httpd, -f, -p, \"8080\"]
        env:
        - name: MODE
          value: one
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    tier: config
data:
  colour: blue
";

fn lines(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn api_resources_lists_served_kinds_with_short_names() {
    let cluster = Cluster::start();
    let out = cluster.kubectl(&["api-resources"]);
    let rows = lines(&out);
    assert_eq!(
        rows[0],
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    let find = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
    };
    assert_eq!(find("pods"), ["pods", "po", "v1", "true", "Pod"]);
    assert_eq!(
        find("deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(find("nodes"), ["nodes", "no", "v1", "false", "Node"]);
    assert_eq!(
        find("horizontalpodautoscalers"),
        [
            "horizontalpodautoscalers",
            "hpa",
            "autoscaling/v2",
            "true",
            "HorizontalPodAutoscaler"
        ]
    );
    for name in [
        "clusterroles",
        "storageclasses",
        "leases",
        "endpointslices",
        "ingresses",
        "cronjobs",
        "networkpolicies",
    ] {
        find(name);
    }
    // Every served resource lists, with its Table, in all namespaces.
    for row in &rows[1..] {
        let name = &row[0];
        if name == "bindings" {
            continue; // create-only
        }
        let out = cluster.kubectl_output(&["get", name, "-A"]);
        assert!(
            out.status.success(),
            "kubectl get {name} -A: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for probe in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(cluster.curl(false, &[], probe), (200, "ok".to_string()));
    }
}

#[test]
fn create_then_get_in_every_output_format() {
    // The printed status columns are the stored ones, with no controller changing them.
    let cluster = Cluster::start_with(&["--disable-controller-manager"]);
    let manifest = cluster.write_file("app.yaml", DEPLOYMENT);
    let out = cluster.kubectl(&["create", "-f", path_str(&manifest)]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    assert!(out.contains("service/web created"), "{out}");
    assert!(out.contains("configmap/settings created"), "{out}");

    let rows = lines(&cluster.kubectl(&["get", "deployments"]));
    assert_eq!(rows[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(rows[1][..4], ["web", "0/2", "0", "0"]);

    let rows = lines(&cluster.kubectl(&["get", "deploy", "-o", "wide"]));
    assert_eq!(
        rows[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(rows[1][5..], ["httpd", "busybox:1.36", "app=web"]);

    let rows = lines(&cluster.kubectl(&["get", "svc", "web"]));
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(rows[1][1], "ClusterIP");
    assert_eq!(rows[1][4], "80/TCP");
    assert!(
        rows[1][2].starts_with("10."),
        "a cluster IP from 10.43.0.0/16: {:?}",
        rows[1]
    );
    let kubernetes = cluster.kubectl(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(kubernetes, "10.43.0.1");

    let yaml = cluster.kubectl(&["get", "deployment", "web", "-o", "yaml"]);
    for expected in [
        "kind: Deployment",
        "uid:",
        "resourceVersion:",
        "creationTimestamp:",
        "generation: 1",
        "maxSurge: 25%",
        "revisionHistoryLimit: 10",
        "imagePullPolicy: IfNotPresent",
    ] {
        assert!(yaml.contains(expected), "{expected} missing from\n{yaml}");
    }

    let json: serde_json::Value =
        serde_json::from_str(&cluster.kubectl(&["get", "configmaps", "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "List");
    let names: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"settings"), "{names:?}");

    let colour = cluster.kubectl(&["get", "cm", "settings", "-o", "jsonpath={.data.colour}"]);
    assert_eq!(colour, "blue");

    let rows = lines(&cluster.kubectl(&["get", "cm", "settings", "--show-labels"]));
    assert_eq!(rows[0], ["NAME", "DATA", "AGE", "LABELS"]);
    assert_eq!(rows[1][3], "tier=config");

    let rows = lines(&cluster.kubectl(&["get", "namespaces"]));
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    assert!(rows[1..].iter().all(|r| r[1] == "Active"));

    let rows = lines(&cluster.kubectl(&["get", "cm", "-A"]));
    assert_eq!(rows[0], ["NAMESPACE", "NAME", "DATA", "AGE"]);
    assert!(rows.iter().any(|r| r[..2] == ["default", "settings"]));

    let out = cluster.kubectl(&["get", "cm", "-l", "tier=config", "-o", "name"]);
    assert_eq!(out.trim(), "configmap/settings");
    let out = cluster.kubectl(&["get", "cm", "-l", "tier notin (config)", "-o", "name"]);
    assert!(!out.contains("settings"), "{out}");
    let out = cluster.kubectl(&["get", "cm", "-l", "!tier", "-o", "name"]);
    assert!(!out.contains("settings"), "{out}");

    let out = cluster.kubectl(&["get", "all"]);
    assert!(out.contains("service/web"), "{out}");
    assert!(out.contains("deployment.apps/web"), "{out}");
}

#[test]
fn get_watch_prints_changes_as_they_happen() {
    let cluster = Cluster::start();
    let mut watch = cluster
        .kubectl_command(&["get", "configmaps", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give the watch time to list and start watching before the writes.
    std::thread::sleep(Duration::from_secs(2));
    cluster.kubectl_stdin(&["create", "-f", "-"], "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"watched\"},\"data\":{\"a\":\"1\"}}");
    cluster.kubectl(&["label", "cm", "watched", "seen=yes"]);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while seen
        .iter()
        .filter(|l: &&String| l.starts_with("watched"))
        .count()
        < 2
        && std::time::Instant::now() < deadline
    {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        seen.iter().filter(|l| l.starts_with("watched")).count() >= 2,
        "watch printed {seen:?}"
    );
}

#[test]
fn apply_twice_diff_edit_patch_label_annotate_scale() {
    let cluster = Cluster::start();
    let manifest = cluster.write_file("app.yaml", DEPLOYMENT);
    let out = cluster.kubectl(&["apply", "-f", path_str(&manifest)]);
    assert!(out.contains("deployment.apps/web created"), "{out}");

    let changed = DEPLOYMENT
        .replace("busybox:1.36", "busybox:1.37")
        .replace("value: one", "value: two");
    let changed_path = cluster.write_file("app2.yaml", &changed);
    let diff = cluster.kubectl_output(&["diff", "-f", path_str(&changed_path)]);
    let diff_text = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "diff exits 1 when there are changes: {diff_text} {}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        diff_text.contains("+        image: busybox:1.37"),
        "{diff_text}"
    );

    let out = cluster.kubectl(&["apply", "-f", path_str(&changed_path)]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    let image = cluster.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].value} {.metadata.generation}"]);
    assert_eq!(image, "busybox:1.37 two 2");

    // edit: an EDITOR script rewrites the replica count.
    let editor = cluster.write_file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/replicas: 2/replicas: 4/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = cluster
        .kubectl_command(&["edit", "deployment", "web"])
        .env("EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "edit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cluster.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );

    // patch: strategic merge keeps the other env vars; merge and json patch.
    cluster.kubectl(&["patch", "deployment", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"httpd","env":[{"name":"EXTRA","value":"x"}]}]}}}}"#]);
    let env = cluster.kubectl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[*].name}",
    ]);
    assert_eq!(env, "EXTRA MODE");
    cluster.kubectl(&[
        "patch",
        "cm",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"size":"large"}}"#,
    ]);
    cluster.kubectl(&[
        "patch",
        "cm",
        "settings",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/data/colour","value":"green"}]"#,
    ]);
    assert_eq!(
        cluster.kubectl(&[
            "get",
            "cm",
            "settings",
            "-o",
            "jsonpath={.data.colour} {.data.size}"
        ]),
        "green large"
    );

    cluster.kubectl(&["label", "cm", "settings", "team=blue"]);
    cluster.kubectl(&["annotate", "cm", "settings", "note=hello"]);
    let out = cluster.kubectl(&[
        "get",
        "cm",
        "settings",
        "-o",
        "jsonpath={.metadata.labels.team} {.metadata.annotations.note}",
    ]);
    assert_eq!(out, "blue hello");
    let overwrite = cluster.kubectl_output(&["label", "cm", "settings", "team=red"]);
    assert!(
        !overwrite.status.success(),
        "label without --overwrite must refuse to change a value"
    );

    let out = cluster.kubectl(&["scale", "deployment", "web", "--replicas=3"]);
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    assert_eq!(
        cluster.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    let out = cluster.kubectl(&[
        "scale",
        "deployment",
        "web",
        "--current-replicas=3",
        "--replicas=5",
    ]);
    assert!(out.contains("scaled"), "{out}");
    assert_eq!(
        cluster.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );

    // wait: for a field to reach a value, and for a deletion.
    cluster.kubectl(&[
        "wait",
        "--for=jsonpath={.spec.replicas}=5",
        "deployment/web",
        "--timeout=10s",
    ]);
}

#[test]
fn delete_with_and_without_finalizers_and_wait_for_delete() {
    let cluster = Cluster::start();
    cluster.kubectl_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"plain"}}"#,
    );
    let out = cluster.kubectl(&["delete", "configmap", "plain"]);
    assert_eq!(out.trim(), "configmap \"plain\" deleted");
    let gone = cluster.kubectl_output(&["get", "cm", "plain"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("configmaps \"plain\" not found"));

    cluster.kubectl_stdin(&["create", "-f", "-"], r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"held","finalizers":["example.com/hold"]}}"#);
    let out = cluster.kubectl(&["delete", "cm", "held", "--wait=false"]);
    assert!(out.contains("deleted"), "{out}");
    let ts = cluster.kubectl(&[
        "get",
        "cm",
        "held",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(!ts.is_empty(), "a held object is only marked");
    let mut waiter = cluster
        .kubectl_command(&["wait", "--for=delete", "cm/held", "--timeout=20s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    cluster.kubectl(&[
        "patch",
        "cm",
        "held",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(
        waiter.wait().unwrap().success(),
        "kubectl wait --for=delete returns once the object is gone"
    );

    // Namespace deletion empties the namespace.
    cluster.kubectl_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team"}}"#,
    );
    cluster.kubectl_stdin(
        &["create", "-n", "team", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"inside"}}"#,
    );
    cluster.kubectl(&["delete", "namespace", "team", "--timeout=20s"]);
    assert!(eventually(Duration::from_secs(10), || !cluster
        .kubectl_output(&["get", "ns", "team"])
        .status
        .success()));
}

#[test]
fn objects_revisions_and_certificates_survive_a_restart() {
    let mut cluster = Cluster::start();
    let manifest = cluster.write_file("app.yaml", DEPLOYMENT);
    cluster.kubectl(&["apply", "-f", path_str(&manifest)]);
    let before = cluster.kubectl(&["get", "deploy,svc,cm", "-o", "jsonpath={range .items[*]}{.metadata.name}/{.metadata.uid}/{.metadata.resourceVersion} {end}"]);
    let kubeconfig = std::fs::read_to_string(cluster.kubeconfig()).unwrap();
    cluster.restart();
    assert_eq!(
        std::fs::read_to_string(cluster.kubeconfig()).unwrap(),
        kubeconfig,
        "certificates are kept"
    );
    let after = cluster.kubectl(&["get", "deploy,svc,cm", "-o", "jsonpath={range .items[*]}{.metadata.name}/{.metadata.uid}/{.metadata.resourceVersion} {end}"]);
    assert_eq!(before, after);
    // New writes continue the revision sequence.
    cluster.kubectl(&["label", "cm", "settings", "after=restart"]);
    let rv: i64 = cluster
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    let max_before: i64 = before
        .split_whitespace()
        .map(|s| s.rsplit('/').next().unwrap().parse::<i64>().unwrap())
        .max()
        .unwrap();
    assert!(rv > max_before);
}

#[test]
fn bad_input_gets_kubernetes_errors_and_changes_nothing() {
    let cluster = Cluster::start();
    let invalid = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"Bad_Name"},"spec":{"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"app":"y"}},"spec":{"containers":[{"name":"c"}]}}}}"#;
    let out = cluster.kubectl_stdin_output(&["create", "-f", "-"], invalid);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // kubectl rewrites a 422 with causes as one bullet per field error.
    assert!(
        stderr.contains("The Deployment \"Bad_Name\" is invalid"),
        "{stderr}"
    );
    assert!(
        stderr.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("spec.template.spec.containers[0].image: Required value"),
        "{stderr}"
    );

    let unknown =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"colour":"red"}"#;
    let out = cluster.kubectl_stdin_output(&["create", "-f", "-"], unknown);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown field \"colour\""), "{stderr}");
    assert!(
        !cluster.kubectl_output(&["get", "cm", "c"]).status.success(),
        "nothing was stored"
    );

    // Raw HTTP: malformed JSON, oversized bodies, missing credentials, bearer tokens.
    let (code, body) = cluster.curl(
        true,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            "{\"kind\":",
        ],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"kind\":\"Status\""), "{body}");
    let big = cluster.write_file("big.json", &format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"x\":\"{}\"}}}}", "a".repeat(4 * 1024 * 1024)));
    let (code, _) = cluster.post_file(&big, "/api/v1/namespaces/default/configmaps");
    assert_eq!(code, 413);
    let large = cluster.write_file("large.json", &format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"large\"}},\"data\":{{\"x\":\"{}\"}}}}", "a".repeat(2 * 1024 * 1024)));
    let (code, body) = cluster.post_file(&large, "/api/v1/namespaces/default/configmaps");
    // A ConfigMap's data is limited to 1 MiB by validation, as in Kubernetes.
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("Too long"), "{body}");
    // Any other object over 1.5 MiB is refused by the store limit.
    let huge_template = cluster.write_file(
        "template.json",
        &format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"PodTemplate\",\"metadata\":{{\"name\":\"huge\"}},\"template\":{{\"spec\":{{\"containers\":[{{\"name\":\"c\",\"image\":\"i\",\"args\":[\"{}\"]}}]}}}}}}",
            "a".repeat(2 * 1024 * 1024)
        ),
    );
    let (code, body) = cluster.post_file(&huge_template, "/api/v1/namespaces/default/podtemplates");
    assert_eq!(code, 413, "{body}");
    assert!(
        !cluster
            .kubectl_output(&["get", "podtemplate", "huge"])
            .status
            .success()
    );
    let nested = cluster.write_file(
        "nested.json",
        &format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    );
    let (code, _) = cluster.post_file(&nested, "/api/v1/namespaces/default/configmaps");
    assert_eq!(code, 400);

    let (code, body) = cluster.curl(false, &[], "/api/v1/namespaces");
    assert_eq!(code, 401);
    assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    let tokens = std::fs::read_to_string(cluster.data_dir().join("tokens.csv")).unwrap();
    let token = tokens.lines().next().unwrap().split(',').next().unwrap();
    let (code, _) = cluster.curl(
        false,
        &["-H", &format!("Authorization: Bearer {token}")],
        "/api/v1/namespaces",
    );
    assert_eq!(code, 200);
    let (code, _) = cluster.curl(
        false,
        &["-H", "Authorization: Bearer wrong"],
        "/api/v1/namespaces",
    );
    assert_eq!(code, 401);
    let (code, body) = cluster.curl(false, &[], "/version");
    assert_eq!(code, 200);
    assert!(body.contains("\"minor\":\"33\""), "{body}");
}

#[test]
fn pod_binding_and_logs_follow_kubernetes() {
    let cluster = Cluster::start();
    cluster.kubectl_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#,
    );
    let rows = lines(&cluster.kubectl(&["get", "pod", "p"]));
    assert_eq!(rows[1][..4], ["p", "0/1", "Pending", "0"]);
    // A pod on no node has an empty log; a wrong container name is refused.
    assert_eq!(cluster.kubectl(&["logs", "p"]), "");
    let wrong = cluster.kubectl_output(&["logs", "p", "-c", "nope"]);
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("container nope is not valid for pod p")
    );

    let binding = cluster.write_file(
        "binding.json",
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"n1"}}"#,
    );
    let (code, body) = cluster.post_file(&binding, "/api/v1/namespaces/default/pods/p/binding");
    assert_eq!(code, 201, "{body}");
    let node = cluster.kubectl(&[
        "get",
        "pod",
        "p",
        "-o",
        "jsonpath={.spec.nodeName} {.status.conditions[0].type}",
    ]);
    assert_eq!(node, "n1 PodScheduled");
    let (code, body) = cluster.post_file(&binding, "/api/v1/namespaces/default/bindings");
    assert_eq!(code, 409, "a bound pod is not bound again: {body}");
    let nodes = cluster.kubectl(&[
        "get",
        "pods",
        "--field-selector",
        "spec.nodeName=n1",
        "-o",
        "name",
    ]);
    assert_eq!(nodes.trim(), "pod/p");
}

#[test]
fn raw_watches_replay_time_out_bookmark_and_expire_after_compaction() {
    let cluster = Cluster::start_with(&["--compaction-interval", "1"]);
    let cm = |name: &str| {
        cluster.write_file(
            &format!("{name}.json"),
            &format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#),
        )
    };
    let (code, created) = cluster.post_file(&cm("first"), "/api/v1/namespaces/default/configmaps");
    assert_eq!(code, 201);
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let rv: i64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    cluster.post_file(&cm("second"), "/api/v1/namespaces/default/configmaps");

    // Replay from a resourceVersion, then the stream ends at timeoutSeconds.
    let (code, body) = cluster.curl(
        true,
        &["--max-time", "10"],
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1"
        ),
    );
    assert_eq!(code, 200);
    let events: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "second");

    // sendInitialEvents: the current state, then a bookmark that marks its end.
    let (_, body) = cluster.curl(
        true,
        &["--max-time", "10"],
        "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
    );
    let events: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[..3], ["ADDED", "ADDED", "BOOKMARK"], "{body}");
    assert_eq!(
        events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // After two compactions the first revision is gone: 410 Gone.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    cluster.post_file(&cm("third"), "/api/v1/namespaces/default/configmaps");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (code, body) = cluster.curl(
        true,
        &["--max-time", "10"],
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"),
    );
    assert_eq!(code, 410, "{body}");
    assert!(body.contains("too old resource version"), "{body}");
    assert!(body.contains("\"reason\":\"Expired\""), "{body}");
}

#[test]
fn field_validation_levels_and_server_dry_run() {
    let cluster = Cluster::start();
    let unknown =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"warned"},"colour":"red"}"#;
    // Warn: stored without the unknown field, and kubectl prints the server's warning.
    let out = cluster.kubectl_stdin_output(&["create", "--validate=warn", "-f", "-"], unknown);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: unknown field \"colour\""),
        "{stderr}"
    );
    let stored = cluster.kubectl(&["get", "cm", "warned", "-o", "json"]);
    assert!(!stored.contains("colour"), "{stored}");
    // Ignore: stored, nothing said.
    let ignored = unknown.replace("warned", "ignored");
    let out = cluster.kubectl_stdin_output(&["create", "--validate=false", "-f", "-"], &ignored);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Warning"));
    // dry-run=server: validated and defaulted by the server, never stored.
    let out = cluster.kubectl_stdin(
        &["create", "--dry-run=server", "-o", "jsonpath={.spec.restartPolicy}", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"dry"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#,
    );
    assert_eq!(out, "Always", "the answer is defaulted");
    assert!(
        !cluster
            .kubectl_output(&["get", "pod", "dry"])
            .status
            .success(),
        "nothing was stored"
    );
    let bad = cluster.kubectl_stdin_output(
        &["create", "--dry-run=server", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"dry"},"spec":{"containers":[{"name":"c"}]}}"#,
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("spec.containers[0].image: Required value")
    );
}
