//! OpenAPI: `kubectl explain` reads the v3 schemas at any depth, `kubectl apply` computes its
//! strategic merge patches from them without warnings, and `kind: List` manifests validate
//! against the protobuf v2 document.

use crate::harness::{Cluster, path_str};

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
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
        env:
        - name: MODE
          value: one
        - name: KEEP
          value: kept
        ports:
        - containerPort: 8080
";

#[test]
fn explain_describes_fields_at_any_depth() {
    let cluster = Cluster::start();
    let out = cluster.kubectl(&["explain", "deployment.spec.strategy.rollingUpdate"]);
    assert!(
        out.contains("FIELD: rollingUpdate <RollingUpdateDeployment>"),
        "{out}"
    );
    assert!(out.contains("maxSurge\t<IntOrString>"), "{out}");
    assert!(
        out.contains("The maximum number of pods that can be scheduled above the desired number"),
        "{out}"
    );
    assert!(out.contains("maxUnavailable\t<IntOrString>"), "{out}");
    assert!(
        out.contains("The maximum number of pods that can be unavailable during the update"),
        "{out}"
    );

    let out = cluster.kubectl(&["explain", "pods.spec.containers", "--recursive"]);
    for line in [
        "FIELD: containers <[]Container>",
        "  env\t<[]EnvVar>",
        "    name\t<string> -required-",
        "  resources\t<ResourceRequirements>",
        "    limits\t<map[string]Quantity>",
        "    failureThreshold\t<integer>",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }

    let out = cluster.kubectl(&["explain", "svc.spec.ports.targetPort"]);
    assert!(out.contains("FIELD: targetPort <IntOrString>"), "{out}");
}

#[test]
fn apply_patches_from_the_schema_without_warnings_and_keeps_other_list_elements() {
    let cluster = Cluster::start();
    let manifest = cluster.write_file("web.yaml", DEPLOYMENT);
    cluster.kubectl(&["apply", "-f", path_str(&manifest)]);

    let changed = DEPLOYMENT
        .replace("busybox:1.36", "busybox:1.37")
        .replace("value: one", "value: two");
    let changed = cluster.write_file("web2.yaml", &changed);
    let out = cluster.kubectl_output(&["apply", "-f", path_str(&changed)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.to_lowercase().contains("warning"), "{stderr}");
    assert_eq!(
        cluster.kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[*].value}",
        ]),
        "busybox:1.37 two kept"
    );

    // A strategy switch drops the server-defaulted rollingUpdate: the schema's retainKeys
    // makes kubectl send `$retainKeys`.
    let recreate = std::fs::read_to_string(&changed).unwrap().replace(
        "  replicas: 1\n",
        "  replicas: 1\n  strategy:\n    type: Recreate\n",
    );
    let recreate = cluster.write_file("web3.yaml", &recreate);
    let out = cluster.kubectl_output(&["apply", "-f", path_str(&recreate)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.to_lowercase().contains("warning"), "{stderr}");
    assert_eq!(
        cluster.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.strategy}"]),
        r#"{"type":"Recreate"}"#
    );
}

const LIST: &str = "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: listed
  data:
    colour: blue
- apiVersion: v1
  kind: Service
  metadata:
    name: listed
  spec:
    ports:
    - port: 80
      targetPort: 8080
";

#[test]
fn apply_of_a_kind_list_validates_each_item_against_openapi_v2() {
    let cluster = Cluster::start();
    let bad = LIST.replace("    - port: 80\n", "    - port: 80\n      bogus: 1\n");
    let bad = cluster.write_file("bad.yaml", &bad);
    let out = cluster.kubectl_output(&["apply", "-f", path_str(&bad)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"unknown field "bogus" in io.k8s.api.core.v1.ServicePort"#),
        "{stderr}"
    );

    let list = cluster.write_file("list.yaml", LIST);
    let out = cluster.kubectl(&["apply", "-f", path_str(&list)]);
    assert!(out.contains("configmap/listed created"), "{out}");
    assert!(out.contains("service/listed created"), "{out}");
    let changed = cluster.write_file("list2.yaml", &LIST.replace("blue", "green"));
    let out = cluster.kubectl(&["apply", "-f", path_str(&changed)]);
    assert!(out.contains("configmap/listed configured"), "{out}");
    assert!(out.contains("service/listed unchanged"), "{out}");
}

#[test]
fn documents_are_cacheable_by_hash_and_v2_is_served_as_json_too() {
    let cluster = Cluster::start();
    let (code, root) = cluster.curl(true, &[], "/openapi/v3");
    assert_eq!(code, 200);
    let root: serde_json::Value = serde_json::from_str(&root).unwrap();
    let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, headers) = cluster.curl(true, &["-D", "-", "-o", "/dev/null"], &url);
    assert_eq!(code, 200);
    let headers = headers.to_lowercase();
    assert!(
        headers.contains("cache-control: public, immutable"),
        "{headers}"
    );
    assert!(headers.contains("etag: \""), "{headers}");

    let (code, v2) = cluster.curl(true, &["-H", "Accept: application/json"], "/openapi/v2");
    assert_eq!(code, 200);
    let v2: serde_json::Value = serde_json::from_str(&v2).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    assert_eq!(
        v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"][0]["kind"],
        "Deployment"
    );
}
