#!/usr/bin/env python3
"""Writes the seed inputs in seeds/<target>/: realistic objects and patches, each prefixed with
the byte that picks its kind (the kind's index in capstan_api::resource::RESOURCES)."""
import json, os, re

HERE = os.path.dirname(os.path.abspath(__file__))
source = open(os.path.join(HERE, "../crates/capstan-api/src/resource.rs")).read()
body = source[source.index("pub static RESOURCES"):]
body = body[: body.index("\n];")]
kinds = re.findall(r'resource\(\s*"[^"]*",\s*"[^"]*",\s*"([A-Za-z]+)"', body)
index = {kind: i for i, kind in enumerate(kinds)}

container = {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "name": "http"}],
             "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}
pod_spec = {"containers": [container, {"name": "side", "image": "busybox"}],
            "volumes": [{"name": "data", "emptyDir": {}}], "tolerations": [{"key": "k", "operator": "Exists"}]}
meta = {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "b"}, "finalizers": ["x/y"]}
objects = {
    "Pod": {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec},
    "Deployment": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}},
    "Service": {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
        "type": "NodePort", "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}},
    "ConfigMap": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"},
                  "binaryData": {"b": "aGk="}},
    "Job": {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {
        "backoffLimit": 2, "template": {"spec": dict(pod_spec, restartPolicy="Never")}}},
    "Namespace": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}},
}
patches = {
    "patch_json": [b'[{"op":"add","path":"/metadata/labels/x","value":"1"},{"op":"remove","path":"/metadata/annotations"},{"op":"test","path":"/kind","value":"Pod"},{"op":"move","from":"/metadata/labels","path":"/metadata/annotations"},{"op":"copy","from":"/spec","path":"/status"},{"op":"replace","path":"/spec/replicas","value":5}]'],
    "patch_merge": [b'{"metadata":{"labels":{"app":null,"x":"1"}},"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"only"}]}}}}'],
    "patch_strategic": [
        b'{"spec":{"containers":[{"name":"web","image":"nginx:2"},{"name":"new","image":"b"}],"$setElementOrder/containers":[{"name":"new"},{"name":"web"}]}}',
        b'{"spec":{"template":{"spec":{"containers":[{"name":"side","$patch":"delete"}]}}},"metadata":{"finalizers":["z"],"$deleteFromPrimitiveList/finalizers":["x/y"]}}',
        b'{"spec":{"ports":[{"port":80,"nodePort":30080}],"$retainKeys":["ports"]},"metadata":{"labels":{"$patch":"replace","b":"c"}}}',
    ],
}

def write(target, name, data):
    os.makedirs(os.path.join(HERE, "seeds", target), exist_ok=True)
    with open(os.path.join(HERE, "seeds", target, name), "wb") as f:
        f.write(data)

for kind, obj in objects.items():
    k = bytes([index[kind]])
    write("decode_json", kind, k + json.dumps(obj).encode())
    yaml = "\n".join(f"{key}: {json.dumps(value)}" for key, value in obj.items())
    write("decode_yaml", kind, k + yaml.encode())
    for target, bodies in patches.items():
        for i, patch in enumerate(bodies):
            write(target, f"{kind}-{i}", k + json.dumps(obj).encode() + b"\xff" + patch)
print(f"{len(kinds)} kinds; seeds written")
