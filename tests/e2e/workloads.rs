//! What a pod spec asks of its containers, checked inside real containers on the built-in node:
//! init containers, environment, volumes, security contexts and resources, each as kubelet and
//! containerd would give them. Needs root (and cgroup v1 controllers for the resource checks).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Cluster, eventually};

const IMAGE: &str = "capstan.test/busybox:1";
const START: Duration = Duration::from_secs(30);

fn apply(cluster: &Cluster, manifest: &str) {
    cluster.kubectl_stdin(&["apply", "-f", "-"], manifest);
}

fn wait_for_phase(cluster: &Cluster, pod: &str, phase: &str) {
    cluster.wait_for_pod(pod, "{.status.phase}", phase, START);
}

/// Runs `script` with `sh -c` in `container` of `pod`; returns whether it succeeded and its
/// output (stdout, then stderr).
fn exec(cluster: &Cluster, pod: &str, container: &str, script: &str) -> (bool, String) {
    let output = cluster.kubectl_output(&["exec", pod, "-c", container, "--", "sh", "-c", script]);
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Runs `script` in the container and returns its output, asserting it succeeded.
fn exec_ok(cluster: &Cluster, pod: &str, container: &str, script: &str) -> String {
    let (ok, text) = exec(cluster, pod, container, script);
    assert!(ok, "{pod}/{container}: `{script}` failed: {text}");
    text
}

/// Polls `script` in the container until its output is `want` (within 15 s: configMap, secret
/// and downwardAPI volumes are refreshed every 5 s).
fn wait_for_output(cluster: &Cluster, pod: &str, container: &str, script: &str, want: &str) {
    let mut last = String::new();
    let ok = eventually(Duration::from_secs(15), || {
        last = exec(cluster, pod, container, script).1;
        last == want
    });
    assert!(
        ok,
        "{pod}/{container}: `{script}` printed {last:?}, not {want:?}"
    );
}

fn logs(cluster: &Cluster, pod: &str, container: &str) -> String {
    cluster.kubectl(&["logs", pod, "-c", container])
}

/// A pod on the test node whose container `main` runs `script` once (restartPolicy Never);
/// `container` and `spec` fields are laid over the defaults.
fn one_shot_pod(name: &str, script: &str, container: Value, spec: Value) -> Value {
    let mut main = json!({"name": "main", "image": IMAGE, "command": ["sh", "-c", script]});
    merge(&mut main, container);
    let mut pod_spec = json!({"nodeName": "e2e-node", "restartPolicy": "Never", "containers": []});
    merge(&mut pod_spec, spec);
    pod_spec["containers"] = json!([main]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec})
}

fn merge(into: &mut Value, fields: Value) {
    if let Value::Object(fields) = fields {
        for (key, value) in fields {
            into[key] = value;
        }
    }
}

/// Creates `pods` in one request.
fn create_all(cluster: &Cluster, pods: Vec<Value>) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": pods});
    cluster.kubectl_stdin(&["create", "-f", "-"], &list.to_string());
}

/// `NAME=value` lines as a map (a value may hold `=`).
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// Container fields holding just a securityContext.
fn context(security_context: Value) -> Value {
    json!({"securityContext": security_context})
}

/// The effective capabilities of this process, as `/proc/self/status` shows them: what a
/// privileged container gets on this machine (containerd gives privileged containers the
/// capabilities of its own process, and the node agent has the same as the test).
fn own_capabilities() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Init containers

#[test]
fn init_containers_run_in_order_before_the_main_container_sharing_an_empty_dir() {
    let cluster = Cluster::start_with_node();
    apply(
        &cluster,
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: initialized
spec:
  nodeName: e2e-node
  volumes:
  - name: work
    emptyDir: {}
  initContainers:
  - name: init-1
    image: capstan.test/busybox:1
    command: ["sh", "-c", "echo first > /work/log"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: init-2
    image: capstan.test/busybox:1
    command: ["sh", "-c", "echo second >> /work/log"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "cat /work/log; exec sleep 3600"]
    volumeMounts: [{name: work, mountPath: /work}]
---
apiVersion: v1
kind: Pod
metadata:
  name: init-fails
spec:
  nodeName: e2e-node
  restartPolicy: Never
  initContainers:
  - name: init
    image: capstan.test/busybox:1
    command: ["sh", "-c", "echo failing; exit 7"]
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "echo main ran"]
"#,
    );

    wait_for_phase(&cluster, "initialized", "Running");
    assert!(
        eventually(Duration::from_secs(10), || logs(
            &cluster,
            "initialized",
            "main"
        ) == "first\nsecond\n"),
        "main saw: {:?}",
        logs(&cluster, "initialized", "main")
    );
    let init_path = |field: &str| {
        cluster.pod_field(
            "initialized",
            &format!("{{.status.initContainerStatuses[*].{field}}}"),
        )
    };
    assert_eq!(init_path("name"), "init-1 init-2");
    assert_eq!(init_path("state.terminated.reason"), "Completed Completed");
    assert_eq!(init_path("state.terminated.exitCode"), "0 0");
    // The second started only once the first had finished.
    let finished_first = cluster.pod_field(
        "initialized",
        "{.status.initContainerStatuses[0].state.terminated.finishedAt}",
    );
    let started_second = cluster.pod_field(
        "initialized",
        "{.status.initContainerStatuses[1].state.terminated.startedAt}",
    );
    assert!(
        finished_first <= started_second,
        "{finished_first} > {started_second}"
    );
    assert_eq!(
        cluster.pod_field(
            "initialized",
            "{.status.conditions[?(@.type==\"Initialized\")].status}"
        ),
        "True"
    );

    // A failed init container under restartPolicy Never fails the pod; main never starts.
    wait_for_phase(&cluster, "init-fails", "Failed");
    let status = |path: &str| cluster.pod_field("init-fails", path);
    assert_eq!(
        status("{.status.initContainerStatuses[0].state.terminated.exitCode}"),
        "7"
    );
    assert_eq!(
        status("{.status.initContainerStatuses[0].state.terminated.reason}"),
        "Error"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        status("{.status.containerStatuses[0].state.waiting.reason}"),
        "PodInitializing"
    );
    assert_eq!(status("{.status.containerStatuses[0].containerID}"), "");
    let uid = status("{.metadata.uid}");
    let containers = std::fs::read_dir(cluster.data_dir().join("agent/containers")).unwrap();
    let started: Vec<String> = containers
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|id| id.starts_with(&uid))
        .collect();
    assert_eq!(started, [format!("{uid}-init-0")]);
}

// ---------------------------------------------------------------------------------------------
// Environment

#[test]
fn environment_variables_come_from_values_objects_the_downward_api_and_resources() {
    let cluster = Cluster::start_with_node();
    apply(
        &cluster,
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
  size: large
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  user: admin
  password: s3cret
---
apiVersion: v1
kind: Pod
metadata:
  name: env
  labels:
    x: ex
spec:
  nodeName: e2e-node
  restartPolicy: Never
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "echo \"$(MESSAGE) in $0\"; env"]
    args: ["$(COLOR)"]
    resources:
      limits:
        memory: 64Mi
      requests:
        cpu: 250m
    envFrom:
    - prefix: CFG_
      configMapRef:
        name: settings
    - secretRef:
        name: creds
    env:
    - name: GREETING
      value: hello
    - name: MESSAGE
      value: $(GREETING) world
    - name: ESCAPED
      value: $$(GREETING)
    - name: UNDEFINED
      value: $(NOT_DEFINED) and $(DEFINED_LATER)
    - name: DEFINED_LATER
      value: late
    - name: COLOR
      valueFrom:
        configMapKeyRef: {name: settings, key: color}
    - name: PASSWORD
      valueFrom:
        secretKeyRef: {name: creds, key: password}
    - name: POD_NAME
      valueFrom:
        fieldRef: {fieldPath: metadata.name}
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef: {fieldPath: metadata.namespace}
    - name: POD_UID
      valueFrom:
        fieldRef: {fieldPath: metadata.uid}
    - name: NODE_NAME
      valueFrom:
        fieldRef: {fieldPath: spec.nodeName}
    - name: HOST_IP
      valueFrom:
        fieldRef: {fieldPath: status.hostIP}
    - name: LABEL_X
      valueFrom:
        fieldRef: {fieldPath: "metadata.labels['x']"}
    - name: MEMORY_LIMIT_MI
      valueFrom:
        resourceFieldRef: {resource: limits.memory, divisor: 1Mi}
    - name: CPU_REQUEST_M
      valueFrom:
        resourceFieldRef: {resource: requests.cpu, divisor: 1m}
"#,
    );
    wait_for_phase(&cluster, "env", "Succeeded");
    let output = logs(&cluster, "env", "main");
    let (first, rest) = output.split_once('\n').unwrap();
    // $(VAR) is expanded in command and args alike.
    assert_eq!(first, "hello world in blue");
    let env = parse_env(rest);
    let uid = cluster.pod_field("env", "{.metadata.uid}");
    let host_ip = cluster.pod_field("env", "{.status.hostIP}");
    assert!(!host_ip.is_empty());
    let expected = [
        ("GREETING", "hello"),
        ("MESSAGE", "hello world"),
        ("ESCAPED", "$(GREETING)"),
        ("UNDEFINED", "$(NOT_DEFINED) and $(DEFINED_LATER)"),
        ("DEFINED_LATER", "late"),
        ("COLOR", "blue"),
        ("PASSWORD", "s3cret"),
        ("POD_NAME", "env"),
        ("POD_NAMESPACE", "default"),
        ("POD_UID", &uid),
        ("NODE_NAME", "e2e-node"),
        ("HOST_IP", &host_ip),
        ("LABEL_X", "ex"),
        ("MEMORY_LIMIT_MI", "64"),
        ("CPU_REQUEST_M", "250"),
        ("CFG_color", "blue"),
        ("CFG_size", "large"),
        ("user", "admin"),
        ("password", "s3cret"),
        // The image's own variable is kept.
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
    ];
    for (name, value) in expected {
        assert_eq!(
            env.get(name).map(String::as_str),
            Some(value),
            "{name} in {env:#?}"
        );
    }
}

#[test]
fn a_missing_config_map_holds_the_container_until_it_is_created() {
    let cluster = Cluster::start_with_node();
    apply(
        &cluster,
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: needs-config
spec:
  nodeName: e2e-node
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "echo got $WANTED; exec sleep 3600"]
    env:
    - name: WANTED
      valueFrom:
        configMapKeyRef: {name: nope, key: value}
"#,
    );
    cluster.wait_for_pod(
        "needs-config",
        "{.status.containerStatuses[0].state.waiting.reason}",
        "CreateContainerConfigError",
        START,
    );
    assert_eq!(
        cluster.pod_field(
            "needs-config",
            "{.status.containerStatuses[0].state.waiting.message}"
        ),
        "configmap \"nope\" not found"
    );
    assert_eq!(
        cluster.pod_field("needs-config", "{.status.phase}"),
        "Pending"
    );

    cluster.kubectl(&[
        "create",
        "configmap",
        "nope",
        "--from-literal=value=at last",
    ]);
    wait_for_phase(&cluster, "needs-config", "Running");
    assert!(
        eventually(Duration::from_secs(10), || logs(
            &cluster,
            "needs-config",
            "main"
        ) == "got at last\n"),
        "{}",
        logs(&cluster, "needs-config", "main")
    );
}

// ---------------------------------------------------------------------------------------------
// Volumes

#[test]
fn empty_dir_host_path_and_read_only_mounts_behave_as_on_kubelet() {
    let cluster = Cluster::start_with_node();
    let host_dir = cluster.dir.path().join("host/made-for-the-pod");
    apply(
        &cluster,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: scratch
spec:
  nodeName: e2e-node
  volumes:
  - name: shared
    emptyDir: {{}}
  - name: cache
    emptyDir:
      medium: Memory
      sizeLimit: 16Mi
  - name: host
    hostPath:
      path: {host}
      type: DirectoryOrCreate
  containers:
  - name: writer
    image: capstan.test/busybox:1
    command: ["sh", "-c", "echo from writer > /shared/note; echo from the pod > /host/file; exec sleep 3600"]
    volumeMounts:
    - {{name: shared, mountPath: /shared}}
    - {{name: cache, mountPath: /cache}}
    - {{name: host, mountPath: /host}}
  - name: reader
    image: capstan.test/busybox:1
    command: ["sh", "-c", "exec sleep 3600"]
    volumeMounts:
    - {{name: shared, mountPath: /shared, readOnly: true}}
"#,
            host = host_dir.display()
        ),
    );
    wait_for_phase(&cluster, "scratch", "Running");

    // The disk emptyDir is one directory for both containers.
    wait_for_output(
        &cluster,
        "scratch",
        "reader",
        "cat /shared/note",
        "from writer\n",
    );
    let mounts = exec_ok(&cluster, "scratch", "writer", "cat /proc/mounts");
    let shared = mounts
        .lines()
        .find(|line| line.split(' ').nth(1) == Some("/shared"))
        .unwrap_or_else(|| panic!("/shared is not mounted:\n{mounts}"));
    assert!(!shared.starts_with("tmpfs "), "{shared}");

    // The memory emptyDir is a tmpfs of its sizeLimit.
    let cache = mounts
        .lines()
        .find(|line| line.split(' ').nth(1) == Some("/cache"))
        .unwrap_or_else(|| panic!("/cache is not mounted:\n{mounts}"));
    assert!(cache.starts_with("tmpfs /cache tmpfs rw,"), "{cache}");
    assert!(cache.contains(",size=16384k"), "{cache}");
    let (filled, text) = exec(
        &cluster,
        "scratch",
        "writer",
        "dd if=/dev/zero of=/cache/big bs=1M count=20",
    );
    assert!(!filled, "20 MB fit a 16 MiB volume");
    assert!(text.contains("No space left on device"), "{text}");

    // hostPath DirectoryOrCreate made the directory on the node; the container's file is there.
    assert!(
        eventually(Duration::from_secs(10), || std::fs::read_to_string(
            host_dir.join("file")
        )
        .is_ok_and(|text| text == "from the pod\n")),
        "the pod's file never reached {}",
        host_dir.display()
    );

    // A readOnly volumeMount refuses writes, and only in the container that asked for it.
    let (written, text) = exec(&cluster, "scratch", "reader", "touch /shared/from-reader");
    assert!(!written);
    assert!(text.contains("Read-only file system"), "{text}");
    exec_ok(&cluster, "scratch", "writer", "touch /shared/from-writer");
}

#[test]
fn config_map_secret_downward_api_and_projected_volumes_show_their_objects() {
    let cluster = Cluster::start_with_node();
    apply(
        &cluster,
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  color: blue
  app.conf: "mode=fast\n"
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
data:
  password: czNjcmV0
"#,
    );
    // Created, not applied: `kubectl apply` would add its own annotation.
    cluster.kubectl_stdin(
        &["create", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: files
  labels:
    app: web
    tier: front
  annotations:
    note: hello
spec:
  nodeName: e2e-node
  volumes:
  - name: config
    configMap:
      name: app-config
      items:
      - {key: color, path: settings/color, mode: 384}
  - name: whole-config
    configMap:
      name: app-config
  - name: secret
    secret:
      secretName: app-secret
      defaultMode: 256
  - name: podinfo
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
  - name: all-in-one
    projected:
      sources:
      - configMap:
          name: app-config
          items: [{key: color, path: color}]
      - secret:
          name: app-secret
      - downwardAPI:
          items: [{path: name, fieldRef: {fieldPath: metadata.name}}]
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "exec sleep 3600"]
    volumeMounts:
    - {name: config, mountPath: /config}
    - {name: secret, mountPath: /secret}
    - {name: podinfo, mountPath: /podinfo}
    - {name: all-in-one, mountPath: /projected}
    - {name: whole-config, mountPath: /etc/app.conf, subPath: app.conf}
"#,
    );
    wait_for_phase(&cluster, "files", "Running");
    let run = |script: &str| exec_ok(&cluster, "files", "main", script);

    // configMap: only the listed key, at its path, with its mode; the volume is read-only.
    assert_eq!(run("ls /config"), "settings\n");
    assert_eq!(run("cat /config/settings/color"), "blue");
    assert_eq!(run("stat -L -c %a /config/settings/color"), "600\n");
    let (written, text) = exec(&cluster, "files", "main", "touch /config/new");
    assert!(!written && text.contains("Read-only file system"), "{text}");

    // secret: decoded, with defaultMode through the ..data symlink.
    assert_eq!(run("cat /secret/password"), "s3cret");
    assert_eq!(run("stat -L -c %a /secret/password"), "400\n");
    assert!(run("readlink /secret/password").starts_with("..data/"));

    // downwardAPI: labels and annotations as sorted key="value" lines.
    assert_eq!(run("cat /podinfo/labels"), "app=\"web\"\ntier=\"front\"");
    assert_eq!(run("cat /podinfo/annotations"), "note=\"hello\"");

    // projected: the three sources in one directory.
    assert_eq!(
        run("cat /projected/color; echo; cat /projected/password; echo; cat /projected/name"),
        "blue\ns3cret\nfiles"
    );

    // subPath: one key of the ConfigMap as a single file.
    assert_eq!(
        run("test -f /etc/app.conf && cat /etc/app.conf"),
        "mode=fast\n"
    );

    // Changes reach the running container: the ConfigMap's into its volumes, the pod's labels
    // into the downwardAPI file.
    cluster.kubectl(&[
        "patch",
        "configmap",
        "app-config",
        "-p",
        r#"{"data":{"color":"green"}}"#,
    ]);
    cluster.kubectl(&["label", "pod", "files", "tier=back", "--overwrite"]);
    wait_for_output(
        &cluster,
        "files",
        "main",
        "cat /config/settings/color",
        "green",
    );
    wait_for_output(&cluster, "files", "main", "cat /projected/color", "green");
    wait_for_output(
        &cluster,
        "files",
        "main",
        "cat /podinfo/labels",
        "app=\"web\"\ntier=\"back\"",
    );
}

// ---------------------------------------------------------------------------------------------
// Security context

#[test]
fn security_contexts_set_users_capabilities_privileges_and_seccomp() {
    let cluster = Cluster::start_with_node();
    let status = "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status";
    let unshare = "unshare -n true 2>/dev/null && echo allowed || echo refused";
    let privileged_caps = own_capabilities();
    // (pod, container fields, pod spec fields, script, expected output)
    let cases: Vec<(&str, Value, Value, &str, String)> = vec![
        (
            "run-as-user-and-group",
            context(json!({"runAsUser": 1000, "runAsGroup": 3000})),
            json!({}),
            "id -u; id -g",
            "1000\n3000\n".into(),
        ),
        (
            "run-as-user-takes-its-group-from-the-image",
            context(json!({"runAsUser": 1000})),
            json!({}),
            "id -u; id -g",
            "1000\n1000\n".into(),
        ),
        (
            "run-as-user-from-the-pod",
            json!({}),
            json!({"securityContext": {"runAsUser": 65534, "runAsGroup": 65534}}),
            "id -un; id -g",
            "nobody\n65534\n".into(),
        ),
        (
            "image-user-is-root",
            json!({}),
            json!({}),
            "id -u; id -g",
            "0\n0\n".into(),
        ),
        (
            "run-as-non-root-with-a-user",
            context(json!({"runAsNonRoot": true, "runAsUser": 1000})),
            json!({}),
            "id -u",
            "1000\n".into(),
        ),
        (
            "read-only-root",
            json!({
                "securityContext": {"readOnlyRootFilesystem": true},
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }),
            json!({"volumes": [{"name": "scratch", "emptyDir": {}}]}),
            "touch /x 2>&1 || echo refused; touch /scratch/x && echo writable",
            "touch: /x: Read-only file system\nrefused\nwritable\n".into(),
        ),
        (
            "default-capabilities",
            json!({}),
            json!({}),
            status,
            "CapEff:\t00000000a80425fb\nNoNewPrivs:\t0\nSeccomp:\t0\n".into(),
        ),
        (
            "drop-all",
            context(json!({"capabilities": {"drop": ["ALL"]}})),
            json!({}),
            status,
            "CapEff:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\n".into(),
        ),
        (
            "add-net-admin",
            // bit 12 on top of the defaults
            context(json!({"capabilities": {"add": ["NET_ADMIN"]}})),
            json!({}),
            status,
            "CapEff:\t00000000a80435fb\nNoNewPrivs:\t0\nSeccomp:\t0\n".into(),
        ),
        (
            "privileged",
            context(json!({"privileged": true})),
            json!({}),
            status,
            format!("CapEff:\t{privileged_caps}\nNoNewPrivs:\t0\nSeccomp:\t0\n"),
        ),
        (
            "no-privilege-escalation",
            context(json!({"allowPrivilegeEscalation": false})),
            json!({}),
            status,
            "CapEff:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t0\n".into(),
        ),
        (
            "runtime-default-seccomp",
            context(json!({
                "capabilities": {"add": ["SYS_ADMIN"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            })),
            json!({}),
            unshare,
            "refused\n".into(),
        ),
        (
            "runtime-default-seccomp-from-the-pod",
            context(json!({"capabilities": {"add": ["SYS_ADMIN"]}})),
            json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}),
            "unshare -n true 2>/dev/null && echo allowed || echo refused; grep Seccomp: /proc/self/status",
            "refused\nSeccomp:\t2\n".into(),
        ),
        (
            "unconfined-seccomp",
            context(json!({
                "capabilities": {"add": ["SYS_ADMIN"]},
                "seccompProfile": {"type": "Unconfined"},
            })),
            json!({}),
            unshare,
            "allowed\n".into(),
        ),
    ];
    let mut pods: Vec<Value> = cases
        .iter()
        .map(|(name, container, spec, script, _)| {
            one_shot_pod(name, script, container.clone(), spec.clone())
        })
        .collect();
    pods.push(one_shot_pod(
        "run-as-non-root-as-root",
        "id -u",
        context(json!({"runAsNonRoot": true})),
        json!({}),
    ));
    create_all(&cluster, pods);

    for (name, _, _, _, want) in &cases {
        wait_for_phase(&cluster, name, "Succeeded");
        assert_eq!(&logs(&cluster, name, "main"), want, "pod {name}");
    }
    // runAsNonRoot with an image that runs as root: the container is never created.
    cluster.wait_for_pod(
        "run-as-non-root-as-root",
        "{.status.containerStatuses[0].state.waiting.reason}",
        "CreateContainerConfigError",
        START,
    );
    let message = cluster.pod_field(
        "run-as-non-root-as-root",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        message.contains("container has runAsNonRoot and image will run as root"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Resources

/// A file of the container's cgroup in one v1 controller's hierarchy.
fn cgroup_file(cluster: &Cluster, pod: &str, controller: &str, file: &str) -> String {
    let uid = cluster.pod_field(pod, "{.metadata.uid}");
    let path = format!("/sys/fs/cgroup/{controller}/capstan/pod{uid}/{uid}-main-0/{file}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn cpu_and_memory_limits_become_cgroup_limits_and_set_the_qos_class() {
    let cluster = Cluster::start_with_node();
    apply(
        &cluster,
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: guaranteed
spec:
  nodeName: e2e-node
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "exec sleep 3600"]
    resources:
      limits: {cpu: 500m, memory: 64Mi}
      requests: {cpu: 500m, memory: 64Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: burstable
spec:
  nodeName: e2e-node
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "exec sleep 3600"]
    resources:
      requests: {cpu: 250m}
"#,
    );
    wait_for_phase(&cluster, "guaranteed", "Running");
    wait_for_phase(&cluster, "burstable", "Running");

    assert_eq!(
        cluster.pod_field("guaranteed", "{.status.qosClass}"),
        "Guaranteed"
    );
    let guaranteed = |controller, file| cgroup_file(&cluster, "guaranteed", controller, file);
    assert_eq!(guaranteed("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(guaranteed("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(guaranteed("cpu", "cpu.shares"), "512");
    assert_eq!(guaranteed("memory", "memory.limit_in_bytes"), "67108864");

    // A request without a limit weighs the CPU shares but sets no quota.
    assert_eq!(
        cluster.pod_field("burstable", "{.status.qosClass}"),
        "Burstable"
    );
    let burstable = |controller, file| cgroup_file(&cluster, "burstable", controller, file);
    assert_eq!(burstable("cpu", "cpu.cfs_quota_us"), "-1");
    assert_eq!(burstable("cpu", "cpu.shares"), "256");
}
