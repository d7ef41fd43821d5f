//! Strategic merge patch, case by case. Expected results follow what Kubernetes 1.33 returns
//! for the same original and patch (several cases are Kubernetes' own `patch_test.go` ones,
//! restated on real kinds).

use serde_json::{Value, json};

use super::{PatchError, strategic_merge_patch};

fn patched(kind: &str, original: &Value, patch: &Value) -> Value {
    strategic_merge_patch(kind, original, patch)
        .unwrap_or_else(|e| panic!("patch {patch} of {kind} {original} failed: {e}"))
}

fn refused(kind: &str, original: &Value, patch: &Value) -> String {
    match strategic_merge_patch(kind, original, patch) {
        Ok(result) => panic!("patch {patch} of {kind} was accepted: {result}"),
        Err(PatchError::Invalid(message)) => message,
    }
}

/// One patch and its expected result.
struct Case {
    name: &'static str,
    kind: &'static str,
    original: Value,
    patch: Value,
    expected: Value,
}

fn run(cases: Vec<Case>) {
    for case in cases {
        let result = patched(case.kind, &case.original, &case.patch);
        assert_eq!(result, case.expected, "{}", case.name);
    }
}

/// The names of the elements of a merged list, in order.
fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| match &item[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers, "restartPolicy": "Always"}
            }
        }
    })
}

fn containers_of(object: &Value) -> &Value {
    &object["spec"]["template"]["spec"]["containers"]
}

#[test]
fn maps_merge_recursively_and_null_deletes_keys() {
    let original =
        json!({"metadata": {"name": "cfg", "labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}});
    run(vec![
        Case {
            name: "a label is added, another changed, the rest kept",
            kind: "ConfigMap",
            original: original.clone(),
            patch: json!({"metadata": {"labels": {"b": "3", "c": "4"}}}),
            expected: json!({"metadata": {"name": "cfg", "labels": {"a": "1", "b": "3", "c": "4"}},
                "data": {"k": "v"}}),
        },
        Case {
            name: "null deletes a key",
            kind: "ConfigMap",
            original: original.clone(),
            patch: json!({"metadata": {"labels": {"a": null}}, "data": null}),
            expected: json!({"metadata": {"name": "cfg", "labels": {"b": "2"}}}),
        },
        Case {
            name: "null for a key that is not there changes nothing",
            kind: "ConfigMap",
            original: original.clone(),
            patch: json!({"metadata": {"annotations": null}}),
            expected: original.clone(),
        },
        Case {
            name: "a value of another type replaces the old one",
            kind: "ConfigMap",
            original: original.clone(),
            patch: json!({"data": "flat"}),
            expected: json!({"metadata": {"name": "cfg", "labels": {"a": "1", "b": "2"}},
                "data": "flat"}),
        },
        Case {
            name: "an empty patch changes nothing",
            kind: "ConfigMap",
            original: original.clone(),
            patch: json!({}),
            expected: original,
        },
    ]);
}

#[test]
fn containers_merge_by_name_and_keep_unpatched_fields() {
    let original = deployment(json!([
        {"name": "web", "image": "nginx:1.26",
         "ports": [{"containerPort": 80, "protocol": "TCP"}],
         "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"},
        {"name": "log", "image": "busybox", "args": ["tail", "-f"]}
    ]));
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:1.27", "imagePullPolicy": null}
    ]}}}});
    let result = patched("Deployment", &original, &patch);
    assert_eq!(
        containers_of(&result),
        &json!([
            {"name": "web", "image": "nginx:1.27",
             "ports": [{"containerPort": 80, "protocol": "TCP"}],
             "terminationMessagePath": "/dev/termination-log"},
            {"name": "log", "image": "busybox", "args": ["tail", "-f"]}
        ])
    );
    assert_eq!(
        result["spec"]["replicas"], 2,
        "fields outside the patch stay"
    );
}

#[test]
fn merge_key_depends_on_where_the_list_is() {
    run(vec![
        Case {
            name: "container ports merge by containerPort",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "name": "http"},
                {"containerPort": 443, "name": "https"}]}]}}),
            patch: json!({"spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 443, "hostPort": 8443}]}]}}),
            expected: json!({"spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "name": "http"},
                {"containerPort": 443, "name": "https", "hostPort": 8443}]}]}}),
        },
        Case {
            name: "service ports merge by port",
            kind: "Service",
            original: json!({"spec": {"ports": [
                {"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}}),
            patch: json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            expected: json!({"spec": {"ports": [
                {"port": 80, "targetPort": 9090}, {"port": 443, "targetPort": 8443}]}}),
        },
        Case {
            name: "env, volumeMounts and volumeDevices merge by name, mountPath and devicePath",
            kind: "Pod",
            original: json!({"spec": {"initContainers": [{"name": "init",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "volumeDevices": [{"name": "raw", "devicePath": "/dev/xvda"}]}]}}),
            patch: json!({"spec": {"initContainers": [{"name": "init",
                "env": [{"name": "B", "value": "3"}],
                "volumeMounts": [{"mountPath": "/data", "readOnly": true}],
                "volumeDevices": [{"devicePath": "/dev/xvda", "name": "raw2"}]}]}}),
            expected: json!({"spec": {"initContainers": [{"name": "init",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}],
                "volumeDevices": [{"name": "raw2", "devicePath": "/dev/xvda"}]}]}}),
        },
        Case {
            name: "volumes, imagePullSecrets, hostAliases, topologySpreadConstraints have keys",
            kind: "Pod",
            original: json!({"spec": {
                "volumes": [{"name": "a", "emptyDir": {}}],
                "imagePullSecrets": [{"name": "reg"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}]}}),
            patch: json!({"spec": {
                "volumes": [{"name": "b", "emptyDir": {}}],
                "imagePullSecrets": [{"name": "reg2"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]}}),
            expected: json!({"spec": {
                "volumes": [{"name": "b", "emptyDir": {}}, {"name": "a", "emptyDir": {}}],
                "imagePullSecrets": [{"name": "reg2"}, {"name": "reg"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
                "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]}}),
        },
        Case {
            name: "pod conditions merge by type",
            kind: "Pod",
            original: json!({"status": {"conditions": [{"type": "Ready", "status": "False"},
                {"type": "Initialized", "status": "True"}]}}),
            patch: json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            expected: json!({"status": {"conditions": [{"type": "Ready", "status": "True"},
                {"type": "Initialized", "status": "True"}]}}),
        },
        Case {
            name: "node conditions and addresses merge by type, podCIDRs as a set",
            kind: "Node",
            original: json!({"spec": {"podCIDRs": ["10.244.0.0/24"]}, "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "addresses": [
                    {"type": "InternalIP", "address": "10.0.0.5"},
                    {"type": "Hostname", "address": "n1"}]}}),
            patch: json!({"spec": {"podCIDRs": ["fd00::/64"]}, "status": {
                "conditions": [{"type": "Ready", "lastHeartbeatTime": "2025-06-01T12:00:00Z"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.6"}]}}),
            expected: json!({"spec": {"podCIDRs": ["fd00::/64", "10.244.0.0/24"]}, "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "lastHeartbeatTime": "2025-06-01T12:00:00Z"}],
                "addresses": [
                    {"type": "InternalIP", "address": "10.0.0.6"},
                    {"type": "Hostname", "address": "n1"}]}}),
        },
        Case {
            name: "ownerReferences merge by uid",
            kind: "ReplicaSet",
            original: json!({"metadata": {"ownerReferences": [
                {"uid": "u1", "kind": "Deployment", "name": "web"}]}}),
            patch: json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": true}]}}),
            expected: json!({"metadata": {"ownerReferences": [
                {"uid": "u1", "kind": "Deployment", "name": "web", "controller": true}]}}),
        },
        Case {
            name: "a CronJob's pod template is two levels down",
            kind: "CronJob",
            original: json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}}}}),
            patch: json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "b", "image": "z"}]}}}}}}),
            expected: json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "x"}, {"name": "b", "image": "z"}]}}}}}}),
        },
        Case {
            name: "a PodTemplate's pod spec sits under template",
            kind: "PodTemplate",
            original: json!({"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}),
            patch: json!({"template": {"spec": {"containers": [{"name": "a", "image": "y"}]}}}),
            expected: json!({"template": {"spec": {"containers": [{"name": "a", "image": "y"}]}}}),
        },
        Case {
            name: "job conditions merge by type",
            kind: "Job",
            original: json!({"status": {"conditions": [{"type": "Complete", "status": "False"}]}}),
            patch: json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}),
            expected: json!({"status": {"conditions": [{"type": "Failed", "status": "True"},
                {"type": "Complete", "status": "False"}]}}),
        },
    ]);
}

#[test]
fn lists_without_a_patch_strategy_are_replaced() {
    run(vec![
        Case {
            name: "tolerations are atomic",
            kind: "Pod",
            original: json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}}),
            patch: json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
            expected: json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
        },
        Case {
            name: "container args and envFrom are atomic",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "c", "args": ["a", "b"],
                "envFrom": [{"configMapRef": {"name": "x"}}]}]}}),
            patch: json!({"spec": {"containers": [{"name": "c", "args": ["c"],
                "envFrom": [{"secretRef": {"name": "y"}}]}]}}),
            expected: json!({"spec": {"containers": [{"name": "c", "args": ["c"],
                "envFrom": [{"secretRef": {"name": "y"}}]}]}}),
        },
        Case {
            name: "node taints are atomic",
            kind: "Node",
            original: json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}),
            patch: json!({"spec": {"taints": []}}),
            expected: json!({"spec": {"taints": []}}),
        },
        Case {
            name: "role rules are atomic",
            kind: "Role",
            original: json!({"rules": [{"verbs": ["get"], "resources": ["pods"]}]}),
            patch: json!({"rules": [{"verbs": ["list"], "resources": ["pods"]}]}),
            expected: json!({"rules": [{"verbs": ["list"], "resources": ["pods"]}]}),
        },
        Case {
            name: "endpoint slice endpoints are atomic",
            kind: "EndpointSlice",
            original: json!({"endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]}),
            patch: json!({"endpoints": [{"addresses": ["10.0.0.2"]}]}),
            expected: json!({"endpoints": [{"addresses": ["10.0.0.2"]}], "ports": [{"port": 80}]}),
        },
        Case {
            name: "lists of kinds the tables do not know are replaced, finalizers still merge",
            kind: "Widget",
            original: json!({"metadata": {"finalizers": ["a"]},
                             "spec": {"items": [{"name": "x"}]}}),
            patch: json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "y"}]}}),
            expected: json!({"metadata": {"finalizers": ["b", "a"]},
                "spec": {"items": [{"name": "y"}]}}),
        },
    ]);
}

#[test]
fn new_elements_go_before_the_server_elements_that_follow_them() {
    // Kubernetes keeps the patch's order and slots the server-only elements back in by their
    // old neighbours; an element the server did not have yet therefore comes first.
    let cases = [
        (json!(["a", "b"]), json!(["c"]), vec!["c", "a", "b"]),
        (
            json!(["1", "2", "3"]),
            json!(["3", "1"]),
            vec!["2", "3", "1"],
        ),
        (
            json!(["a", "b", "c"]),
            json!(["b", "d"]),
            vec!["a", "b", "d", "c"],
        ),
    ];
    for (original, patch, expected) in cases {
        let to_containers = |names: &Value| -> Value {
            names
                .as_array()
                .unwrap()
                .iter()
                .map(|n| json!({"name": n}))
                .collect()
        };
        let result = patched(
            "Pod",
            &json!({"spec": {"containers": to_containers(&original)}}),
            &json!({"spec": {"containers": to_containers(&patch)}}),
        );
        assert_eq!(
            names(&result["spec"]["containers"], "name"),
            expected,
            "{original} + {patch}"
        );
    }
}

#[test]
fn set_element_order_reorders_merged_list() {
    let original = deployment(
        json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}, {"name": "c"}]),
    );
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "d"}, {"name": "a"}, {"name": "b"}],
        "containers": [{"name": "d", "image": "4"}, {"name": "a", "image": "one"}]
    }}}});
    let result = patched("Deployment", &original, &patch);
    assert_eq!(
        containers_of(&result),
        &json!([{"name": "c"}, {"name": "d", "image": "4"}, {"name": "a", "image": "one"},
            {"name": "b", "image": "2"}])
    );

    // Kubernetes' "add map and delete map from merging list": the server-only element lands
    // where Kubernetes puts it, between the kept and the added ones.
    let original = json!({"spec": {"containers": [
        {"name": "1"}, {"name": "2", "image": "b"}, {"name": "4", "image": "c"}]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
        "containers": [{"name": "3"}, {"name": "1", "$patch": "delete"}]
    }});
    let result = patched("Pod", &original, &patch);
    assert_eq!(
        names(&result["spec"]["containers"], "name"),
        ["2", "4", "3"]
    );

    // For lists of primitives the order list holds the values themselves.
    let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let patch = json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}});
    assert_eq!(
        patched("Pod", &original, &patch),
        json!({"metadata": {"finalizers": ["c", "a", "b"]}})
    );
}

#[test]
fn patch_delete_directive_removes_list_element() {
    let original = json!({"spec": {"containers": [
        {"name": "a"}, {"name": "b"}, {"name": "a", "image": "dup"}]}});
    run(vec![
        Case {
            name: "every element with the key goes",
            kind: "Pod",
            original: original.clone(),
            patch: json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            expected: json!({"spec": {"containers": [{"name": "b"}]}}),
        },
        Case {
            name: "deleting an element that is not there changes nothing",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            patch: json!({"spec": {"containers": [{"name": "z", "$patch": "delete"}]}}),
            expected: json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
        },
        Case {
            name: "elements sharing a key end up side by side, as in Kubernetes",
            kind: "Pod",
            original: original.clone(),
            patch: json!({"spec": {"containers": [{"name": "z", "$patch": "delete"}]}}),
            expected: json!({"spec": {"containers": [{"name": "a"}, {"name": "a", "image": "dup"},
                {"name": "b"}]}}),
        },
        Case {
            name: "delete and add in one patch",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            patch: json!({"spec": {"containers": [
                {"name": "c"}, {"name": "a", "$patch": "delete"}]}}),
            expected: json!({"spec": {"containers": [{"name": "c"}, {"name": "b"}]}}),
        },
    ]);
}

#[test]
fn patch_replace_directive_replaces_a_list_or_a_map() {
    run(vec![
        Case {
            name: "a replace element makes the rest of the patch list the whole list",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}}),
            patch: json!({"spec": {"containers": [
                {"$patch": "replace"}, {"name": "c", "image": "y"}]}}),
            expected: json!({"spec": {"containers": [{"name": "c", "image": "y"}]}}),
        },
        Case {
            name: "a replace element alone empties the list",
            kind: "Service",
            original: json!({"spec": {"ports": [{"port": 80}]}}),
            patch: json!({"spec": {"ports": [{"$patch": "replace"}]}}),
            expected: json!({"spec": {"ports": []}}),
        },
        Case {
            name: "a map with replace drops the keys the patch does not give",
            kind: "ConfigMap",
            original: json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}),
            patch: json!({"data": {"$patch": "replace", "c": "3"}}),
            expected: json!({"metadata": {"name": "c"}, "data": {"c": "3"}}),
        },
        Case {
            name: "replace on a map the original lacks creates it",
            kind: "Pod",
            original: json!({"spec": {}}),
            patch: json!({"spec": {"securityContext": {"$patch": "replace", "runAsUser": 1000}}}),
            expected: json!({"spec": {"securityContext": {"runAsUser": 1000}}}),
        },
    ]);
}

#[test]
fn patch_delete_directive_on_a_map_leaves_it_empty() {
    run(vec![
        Case {
            name: "an existing map is emptied, as Kubernetes does",
            kind: "Pod",
            original: json!({"metadata": {"labels": {"a": "1"}, "name": "p"}}),
            patch: json!({"metadata": {"labels": {"$patch": "delete"}}}),
            expected: json!({"metadata": {"labels": {}, "name": "p"}}),
        },
        Case {
            name: "a map the original lacks is not created",
            kind: "Pod",
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"metadata": {"labels": {"$patch": "delete"}}}),
            expected: json!({"metadata": {"name": "p"}}),
        },
    ]);
}

#[test]
fn unknown_patch_directives_are_refused_with_kubernetes_wording() {
    let original = json!({"spec": {"containers": [{"name": "a"}]}});
    let cases = [
        (
            json!({"spec": {"$patch": "explode"}}),
            "unknown patch type: explode in map: map[$patch:explode]",
        ),
        (
            json!({"spec": {"containers": [{"name": "a", "$patch": "explode"}]}}),
            "unknown patch type: explode in map: map[$patch:explode name:a]",
        ),
        // Kubernetes reserves `merge` but never implemented it as a patch directive.
        (
            json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
            "merging lists cannot yet be specified in the patch",
        ),
        (
            json!({"spec": {"$patch": "merge"}}),
            "unknown patch type: merge in map: map[$patch:merge]",
        ),
        (
            json!({"spec": {"initContainers": [{"name": "i", "$patch": "merge"}]}}),
            "merging lists cannot yet be specified in the patch",
        ),
    ];
    for (patch, message) in cases {
        assert_eq!(refused("Pod", &original, &patch), message, "{patch}");
    }
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list_removes_values() {
    run(vec![
        Case {
            name: "new finalizers join, duplicates do not",
            kind: "Namespace",
            original: json!({"metadata": {"finalizers": ["a", "b"]}}),
            patch: json!({"metadata": {"finalizers": ["b", "c"]}}),
            expected: json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        },
        Case {
            name: "deleteFromPrimitiveList removes the listed values",
            kind: "Namespace",
            original: json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "z"]}}),
            expected: json!({"metadata": {"finalizers": ["a", "c"]}}),
        },
        Case {
            name: "deleting from a missing list does not create it",
            kind: "Namespace",
            original: json!({"metadata": {"name": "n"}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            expected: json!({"metadata": {"name": "n"}}),
        },
        Case {
            name: "deleting works on lists without a merge strategy too",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "c", "args": ["-a", "-b"]}]}}),
            patch: json!({"spec": {"containers": [{"name": "c",
                "$deleteFromPrimitiveList/args": ["-a"]}]}}),
            expected: json!({"spec": {"containers": [{"name": "c", "args": ["-b"]}]}}),
        },
        Case {
            name: "kubectl apply replaces a finalizer with an order list, additions and deletions",
            kind: "ConfigMap",
            original: json!({"metadata": {"finalizers": ["a", "b"]}}),
            patch: json!({"metadata": {
                "$setElementOrder/finalizers": ["c", "a"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
                "finalizers": ["c"]}}),
            expected: json!({"metadata": {"finalizers": ["c", "a"]}}),
        },
    ]);
}

#[test]
fn retain_keys_clears_fields_the_list_does_not_name() {
    run(vec![
        Case {
            name: "switching a deployment to Recreate drops rollingUpdate",
            kind: "Deployment",
            original: json!({"spec": {"strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%"}}}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            expected: json!({"spec": {"strategy": {"type": "Recreate"}}}),
        },
        Case {
            name: "switching a volume's source drops the old source",
            kind: "Pod",
            original: json!({"spec": {"volumes": [
                {"name": "data", "emptyDir": {}}, {"name": "keep", "emptyDir": {}}]}}),
            patch: json!({"spec": {"volumes": [
                {"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cfg"}}
            ]}}),
            expected: json!({"spec": {"volumes": [{"name": "data", "configMap": {"name": "cfg"}},
                {"name": "keep", "emptyDir": {}}]}}),
        },
        Case {
            name: "nulls and parallel lists need not be retained",
            kind: "Deployment",
            original: json!({"spec": {"strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1}}}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null}}}),
            expected: json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
        },
    ]);
}

#[test]
fn malformed_patches_are_refused_with_kubernetes_wording() {
    let pod = json!({
        "metadata": {"finalizers": ["a"]},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]}
    });
    let cases = [
        (
            json!({"spec": {"securityContext": {"$retainKeys": ["runAsUser"], "runAsGroup": 1}}}),
            "invalid patch format of retainKeys",
        ),
        (
            json!({"spec": {"$retainKeys": "containers"}}),
            "invalid patch format of retainKeys",
        ),
        (
            json!({"spec": {"containers": [{"image": "x"}]}}),
            "map: map[image:x] does not contain declared merge key: name",
        ),
        (
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            "map: map[$patch:delete] does not contain declared merge key: name",
        ),
        (
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b"}, {"name": "a"}]}}),
            "The order in patch list:\n[map[name:b] map[name:a]]\n \
             doesn't match $setElementOrder list:\n[map[name:a] map[name:b]]\n",
        ),
        (
            json!({"spec": {"$setElementOrder/containers": "a"}}),
            "expected a []interface {}, but received a string",
        ),
        (
            json!({"spec": {"$setElementOrderX/containers": []}}),
            "invalid patch format of setElementOrder list",
        ),
        (
            json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
            "invalid patch format of primitive list",
        ),
        (
            json!({"metadata": {"finalizers": [["a"]]}}),
            "list element types are not identical: [[a] [[a]]]",
        ),
        (
            json!({"metadata": {"finalizers": [1]}}),
            "list element types are not identical: [[a] [1]]",
        ),
        (
            json!({"metadata": {"finalizers": [{"name": "x"}]}}),
            "list element types are not identical: [[a] [map[name:x]]]",
        ),
        (
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [{"a": 1}]}, "spec": {}}),
            "list element types are not identical: [[a] [map[a:1]]]",
        ),
    ];
    for (patch, message) in cases {
        assert_eq!(refused("Pod", &pod, &patch), message, "{patch}");
    }
    assert_eq!(
        refused(
            "Pod",
            &json!({"metadata": {"finalizers": []}}),
            &json!({"metadata": {"finalizers": [["a"]]}})
        ),
        "lists of lists are not supported"
    );
    assert_eq!(
        refused("Pod", &pod, &json!(["not", "an", "object"])),
        "invalid JSON document"
    );
}

#[test]
fn merging_into_a_missing_field_creates_it_and_consumes_directives() {
    run(vec![
        Case {
            name: "a missing list is created from the patch, its directives consumed",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "a"}]}}),
            patch: json!({"spec": {"initContainers": [
                {"name": "gone", "$patch": "delete"},
                {"name": "init", "image": "busybox", "command": null,
                 "env": [{"name": "A", "value": "1"}]}
            ]}}),
            expected: json!({"spec": {"containers": [{"name": "a"}], "initContainers": [
                {"name": "init", "image": "busybox", "env": [{"name": "A", "value": "1"}]}
            ]}}),
        },
        Case {
            name: "a missing object is created with its nulls dropped and lists ordered",
            kind: "Pod",
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"spec": {
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                "containers": [{"name": "b", "image": null}, {"name": "a"}],
                "nodeName": null}}),
            expected: json!({"metadata": {"name": "p"},
                             "spec": {"containers": [{"name": "b"}, {"name": "a"}]}}),
        },
        Case {
            name: "a null field is replaced by the patch value",
            kind: "Deployment",
            original: json!({"spec": {"strategy": null}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            expected: json!({"spec": {"strategy": {"type": "Recreate"}}}),
        },
        Case {
            name: "duplicates in a new list are kept, as Kubernetes keeps them",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "a"}]}}),
            patch: json!({"spec": {"containers": [{"name": "a", "env": [
                {"name": "X", "value": "1"}, {"name": "X", "value": "2"}]}]}}),
            expected: json!({"spec": {"containers": [{"name": "a", "env": [
                {"name": "X", "value": "1"}, {"name": "X", "value": "2"}]}]}}),
        },
    ]);
}

#[test]
fn merging_into_a_null_original_creates_the_object() {
    let result = patched(
        "ConfigMap",
        &Value::Null,
        &json!({"data": {"a": "1", "b": null}}),
    );
    assert_eq!(result, json!({"data": {"a": "1"}}));
}

#[test]
fn the_original_is_never_modified() {
    let original = deployment(json!([{"name": "a", "image": "x"}, {"name": "b"}]));
    let before = original.clone();
    let patch = json!({
        "metadata": {"labels": null},
        "spec": {"template": {"spec": {"containers": [
            {"name": "b", "$patch": "delete"}, {"name": "a", "image": "y"}]}}}
    });
    let result = patched("Deployment", &original, &patch);
    assert_eq!(original, before);
    assert_ne!(result, before);
}

#[test]
fn pod_disruption_budget_selector_is_replaced_not_merged() {
    let original = json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "front"}}}});
    let patch = json!({"spec": {"selector": {"matchLabels": {"app": "api"}}}});
    assert_eq!(
        patched("PodDisruptionBudget", &original, &patch),
        json!({"spec": {"selector": {"matchLabels": {"app": "api"}}}})
    );
    // The same patch merges into a Deployment's selector, which has no strategy.
    assert_eq!(
        patched("Deployment", &original, &patch),
        json!({"spec": {"selector": {"matchLabels": {"app": "api", "tier": "front"}}}})
    );
}

/// The live Deployment kubectl patches in the kubectl tests: what the server stored after
/// `kubectl apply` of a manifest with one container and two env vars.
fn live_web_deployment() -> Value {
    let mut live = deployment(json!([{
        "name": "web",
        "image": "nginx:1.26",
        "env": [{"name": "MODE", "value": "prod"}, {"name": "LEVEL", "value": "info"}],
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent"
    }]));
    live["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"});
    live
}

#[test]
fn kubectl_apply_patch_changes_image_and_one_env_var() {
    // What kubectl 1.33 sends for `kubectl apply -f web.yaml` after the manifest's image and
    // the value of LEVEL changed (client-side apply: a three-way strategic merge patch).
    let patch = json!({
        "metadata": {"annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}],
            "containers": [{
                "$setElementOrder/env": [{"name": "MODE"}, {"name": "LEVEL"}],
                "env": [{"name": "LEVEL", "value": "debug"}],
                "image": "nginx:1.27",
                "name": "web"
            }]
        }}}
    });
    let result = patched("Deployment", &live_web_deployment(), &patch);
    let mut expected = live_web_deployment();
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!("{\"new\":true}\n");
    let container = &mut expected["spec"]["template"]["spec"]["containers"][0];
    container["image"] = json!("nginx:1.27");
    container["env"][1]["value"] = json!("debug");
    assert_eq!(result, expected);
}

#[test]
fn kubectl_apply_patch_removes_an_env_var_and_adds_a_container() {
    // kubectl lists deletions after the other elements of a patch list.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [
            {
                "$setElementOrder/env": [{"name": "MODE"}],
                "env": [{"$patch": "delete", "name": "LEVEL"}],
                "name": "web"
            },
            {"image": "busybox", "name": "sidecar"}
        ]
    }}}});
    let result = patched("Deployment", &live_web_deployment(), &patch);
    let containers = containers_of(&result);
    assert_eq!(names(containers, "name"), ["web", "sidecar"]);
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "MODE", "value": "prod"}])
    );
    assert_eq!(containers[0]["image"], "nginx:1.26");
    assert_eq!(
        containers[1],
        json!({"image": "busybox", "name": "sidecar"})
    );
}

#[test]
fn kubectl_rollout_restart_adds_the_restarted_at_annotation() {
    // `kubectl rollout restart deployment/web` (kubectl 1.33) sends exactly this body.
    let restart = |at: &str| {
        json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": at}}}}})
    };
    let live = live_web_deployment();
    let once = patched("Deployment", &live, &restart("2025-06-01T12:00:00Z"));
    assert_eq!(
        once["spec"]["template"]["metadata"],
        json!({"labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-06-01T12:00:00Z"}})
    );
    let mut unchanged = once.clone();
    unchanged["spec"]["template"]["metadata"]
        .as_object_mut()
        .unwrap()
        .shift_remove("annotations");
    assert_eq!(unchanged, live, "nothing else changes");

    let twice = patched("Deployment", &once, &restart("2025-06-02T08:30:00Z"));
    assert_eq!(
        twice["spec"]["template"]["metadata"]["annotations"],
        json!({"kubectl.kubernetes.io/restartedAt": "2025-06-02T08:30:00Z"})
    );
}

#[test]
fn kubectl_set_image_and_rollout_pause_patches_apply() {
    let live = live_web_deployment();
    let set_image = json!({"spec": {"template": {"spec": {"containers": [
        {"image": "nginx:1.28", "name": "web"}]}}}});
    let result = patched("Deployment", &live, &set_image);
    assert_eq!(containers_of(&result)[0]["image"], "nginx:1.28");
    assert_eq!(
        containers_of(&result)[0]["env"],
        containers_of(&live)[0]["env"]
    );

    let paused = patched("Deployment", &live, &json!({"spec": {"paused": true}}));
    assert_eq!(paused["spec"]["paused"], true);
    let resumed = patched("Deployment", &paused, &json!({"spec": {"paused": null}}));
    assert_eq!(resumed, live);
}

/// A small deterministic generator, so the property test needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn container_patches_keep_their_promises_and_applying_twice_changes_nothing_more() {
    const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..500 {
        let original: Vec<&str> = NAMES
            .iter()
            .copied()
            .filter(|_| rng.below(2) == 0)
            .collect();
        let live = json!({"spec": {"containers": original.iter()
            .map(|n| json!({"name": n, "image": "old", "keep": n}))
            .collect::<Vec<_>>()}});

        let mut changed = Vec::new();
        let mut deleted = Vec::new();
        for name in NAMES {
            match rng.below(3) {
                0 => changed.push(name),
                1 if original.contains(&name) => deleted.push(name),
                _ => {}
            }
        }
        // The order kubectl would send: every surviving container, shuffled.
        let mut order: Vec<&str> = original
            .iter()
            .chain(&changed)
            .copied()
            .filter(|n| !deleted.contains(n))
            .collect();
        order.sort_unstable();
        order.dedup();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        changed.sort_by_key(|n| order.iter().position(|o| o == n));
        let with_order = rng.below(2) == 0;

        let mut patch_list: Vec<Value> = changed
            .iter()
            .map(|n| json!({"name": n, "image": "new"}))
            .collect();
        patch_list.extend(
            deleted
                .iter()
                .map(|n| json!({"name": n, "$patch": "delete"})),
        );
        let mut spec = json!({"containers": patch_list});
        if with_order {
            spec["$setElementOrder/containers"] =
                order.iter().map(|n| json!({"name": n})).collect();
        }
        let patch = json!({"spec": spec});

        let once = patched("Pod", &live, &patch);
        let containers = &once["spec"]["containers"];
        let mut got = names(containers, "name");
        if with_order {
            assert_eq!(got, order, "{patch} on {live}");
        }
        for container in containers.as_array().unwrap() {
            let name = container["name"].as_str().unwrap();
            let image = if changed.contains(&name) {
                "new"
            } else {
                "old"
            };
            assert_eq!(container["image"], image, "{name} in {once}");
            if original.contains(&name) {
                assert_eq!(container["keep"], name, "unpatched fields stay: {once}");
            }
        }
        got.sort();
        let mut expected = order.clone();
        expected.sort_unstable();
        assert_eq!(got, expected, "{patch} on {live}");

        let twice = patched("Pod", &once, &patch);
        assert_eq!(twice, once, "{patch} applied twice on {live}");
    }
}
