//! kubectl's typed commands post protobuf bodies (`application/vnd.kubernetes.protobuf`):
//! `create <kind>`, `run`, `autoscale`. Each must create the object that was asked for.

use crate::harness::Cluster;

fn get(cluster: &Cluster, what: &[&str], jsonpath: &str) -> String {
    let template = format!("jsonpath={jsonpath}");
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend(["-o", template.as_str()]);
    cluster.kubectl(&args)
}

#[test]
fn kubectl_create_run_and_autoscale_post_protobuf_that_capstan_decodes() {
    let cluster = Cluster::start();

    // -v=8 logs the request headers: the body really is protobuf.
    let out = cluster.kubectl_output(&["create", "namespace", "team", "-v=8"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "create namespace: {log}");
    assert!(
        log.contains("application/vnd.kubernetes.protobuf"),
        "kubectl did not send protobuf:\n{log}"
    );
    assert_eq!(
        get(&cluster, &["namespace", "team"], "{.status.phase}"),
        "Active"
    );

    for args in [
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox:1.36",
            "--replicas=2",
        ][..],
        &["create", "configmap", "c", "--from-literal=a=b"],
        &["create", "secret", "generic", "s", "--from-literal=p=q"],
        &["create", "service", "clusterip", "svc", "--tcp=80:8080"],
        &["create", "job", "j", "--image=busybox"],
        &[
            "create",
            "cronjob",
            "cj",
            "--image=busybox",
            "--schedule=*/5 * * * *",
        ],
        &["run", "p", "--image=busybox"],
        &[
            "autoscale",
            "deployment",
            "web",
            "--min=1",
            "--max=3",
            "--cpu-percent=80",
        ],
    ] {
        cluster.kubectl(args);
    }

    assert_eq!(
        get(&cluster, &["deployment", "web"], "{.spec.replicas}"),
        "2"
    );
    assert_eq!(
        get(
            &cluster,
            &["deployment", "web"],
            "{.spec.template.spec.containers[0].image}"
        ),
        "busybox:1.36"
    );
    assert_eq!(
        get(
            &cluster,
            &["deployment", "web"],
            "{.spec.selector.matchLabels.app}"
        ),
        "web"
    );
    // Defaulting saw kubectl's empty strings as unset, as Kubernetes does.
    assert_eq!(
        get(&cluster, &["deployment", "web"], "{.spec.strategy.type}"),
        "RollingUpdate"
    );
    assert_eq!(get(&cluster, &["configmap", "c"], "{.data.a}"), "b");
    // Secret data travels as raw bytes in protobuf and is base64 in JSON.
    assert_eq!(get(&cluster, &["secret", "s"], "{.data.p}"), "cQ==");
    assert_eq!(
        get(&cluster, &["service", "svc"], "{.spec.ports[0].port}"),
        "80"
    );
    assert_eq!(
        get(&cluster, &["service", "svc"], "{.spec.ports[0].targetPort}"),
        "8080"
    );
    assert_eq!(
        get(&cluster, &["service", "svc"], "{.spec.type}"),
        "ClusterIP"
    );
    assert_eq!(
        get(
            &cluster,
            &["job", "j"],
            "{.spec.template.spec.containers[0].image}"
        ),
        "busybox"
    );
    assert_eq!(
        get(&cluster, &["cronjob", "cj"], "{.spec.schedule}"),
        "*/5 * * * *"
    );
    assert_eq!(
        get(&cluster, &["pod", "p"], "{.spec.containers[0].image}"),
        "busybox"
    );
    assert_eq!(
        get(
            &cluster,
            &["hpa", "web"],
            "{.spec.scaleTargetRef.name} {.spec.minReplicas} {.spec.maxReplicas}"
        ),
        "web 1 3"
    );
    let utilization = get(
        &cluster,
        &["hpa", "web"],
        "{.spec.metrics[0].resource.target.averageUtilization}",
    );
    assert_eq!(utilization, "80");
}

#[test]
fn a_client_that_accepts_only_protobuf_is_answered_in_protobuf() {
    let cluster = Cluster::start();
    cluster.kubectl(&["create", "secret", "generic", "s", "--from-literal=p=q"]);
    let accept = ["-H", "Accept: application/vnd.kubernetes.protobuf"];
    for path in [
        "/api/v1/namespaces/default/secrets/s",
        "/api/v1/namespaces/default/secrets",
    ] {
        let (code, body) = cluster.curl(true, &accept, path);
        assert_eq!(code, 200, "{path}: {body}");
        assert!(body.starts_with("k8s\0"), "{path}: {body:?}");
        assert!(body.contains("Secret"), "{path}: {body:?}");
    }
    // A malformed protobuf body is a 400, not a crash.
    let body = cluster.write_file("bad.pb", "k8s\0\u{a}\u{ff}");
    let data = format!("@{}", crate::harness::path_str(&body));
    let (code, answer) = cluster.curl(
        true,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/vnd.kubernetes.protobuf",
            "--data-binary",
            &data,
        ],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("protobuf"), "{answer}");
}
