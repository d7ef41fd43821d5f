"""Drives capstan with the Python Kubernetes client: list, create, patch and watch pods and
deployments. Exits non-zero (an AssertionError or an ApiException) on any difference from what
Kubernetes answers."""

import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config()
core = client.CoreV1Api()
apps = client.AppsV1Api()
ns = "default"

namespaces = [n.metadata.name for n in core.list_namespace().items]
assert "kube-system" in namespaces, namespaces

pod = client.V1Pod(
    metadata=client.V1ObjectMeta(name="py-pod", labels={"app": "py"}),
    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]),
)
created = core.create_namespaced_pod(ns, pod)
assert created.metadata.uid, created
assert created.status.phase == "Pending", created.status
assert created.spec.restart_policy == "Always"

pods = core.list_namespaced_pod(ns, label_selector="app=py")
assert [p.metadata.name for p in pods.items] == ["py-pod"]
list_rv = pods.metadata.resource_version

patched = core.patch_namespaced_pod("py-pod", ns, {"metadata": {"labels": {"stage": "patched"}}})
assert patched.metadata.labels == {"app": "py", "stage": "patched"}, patched.metadata.labels

events = []
for event in watch.Watch().stream(
    core.list_namespaced_pod, ns, resource_version=list_rv, timeout_seconds=2
):
    events.append((event["type"], event["object"].metadata.name))
assert ("MODIFIED", "py-pod") in events, events

try:
    core.create_namespaced_pod(ns, pod)
    raise AssertionError("creating a pod twice must fail")
except ApiException as e:
    assert e.status == 409, e

deployment = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="py-web"),
    spec=client.V1DeploymentSpec(
        replicas=1,
        selector=client.V1LabelSelector(match_labels={"app": "py-web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "py-web"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="busybox:1.36")]),
        ),
    ),
)
apps.create_namespaced_deployment(ns, deployment)
apps.patch_namespaced_deployment_scale("py-web", ns, {"spec": {"replicas": 4}})
got = apps.read_namespaced_deployment("py-web", ns)
assert got.spec.replicas == 4, got.spec
assert got.metadata.generation == 2, got.metadata
assert got.spec.strategy.rolling_update.max_surge == "25%"
names = [d.metadata.name for d in apps.list_deployment_for_all_namespaces().items]
assert "py-web" in names, names

apps.delete_namespaced_deployment("py-web", ns)
core.delete_namespaced_pod("py-pod", ns)
try:
    core.read_namespaced_pod("py-pod", ns)
    raise AssertionError("the pod must be gone")
except ApiException as e:
    assert e.status == 404, e

print("python client: ok")
sys.exit(0)
