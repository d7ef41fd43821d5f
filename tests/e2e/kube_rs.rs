//! kube-rs, the Rust Kubernetes client (the one capstan's agent uses), drives capstan with the
//! kubeconfig the server wrote: lists, creates, merge and strategic merge patches, and watches
//! through both `Api::watch` and kube-runtime's `watcher` (list, then watch from its version).

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::WatchParams;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::json;

use crate::harness::Cluster;

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn kube_rs_lists_creates_patches_and_watches_pods_and_deployments() {
    // The watch counts only the test's own writes: no scheduler or controller adds events.
    let cluster = Cluster::start_with(&["--disable-controller-manager", "--disable-scheduler"]);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(DEADLINE, drive(&cluster))
                .await
                .expect("kube-rs took longer than 30 s")
        });
}

async fn client(cluster: &Cluster) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn drive(cluster: &Cluster) {
    let client = client(cluster).await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );
    pods(client.clone()).await;
    deployments(client).await;
}

async fn pods(client: kube::Client) {
    let pods: Api<Pod> = Api::default_namespaced(client);
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // kube-runtime's watcher: LIST, then WATCH from the list's resourceVersion.
    let mut events = watcher(pods.clone(), watcher::Config::default()).boxed();
    loop {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::InitDone => break,
            watcher::Event::Init => {}
            other => panic!("an empty namespace listed {other:?}"),
        }
    }

    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "kube-rs", "labels": {"app": "kube-rs"}},
        "spec": {"containers": [
            {"name": "main", "image": "busybox", "command": ["sleep", "3600"]},
            {"name": "side", "image": "busybox", "command": ["sleep", "3600"]},
        ]},
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("kube-rs"));
    assert!(created.metadata.uid.is_some());
    assert_eq!(
        created.spec.as_ref().unwrap().restart_policy.as_deref(),
        Some("Always"),
        "defaults applied"
    );

    let merged = pods
        .patch(
            "kube-rs",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "merge"}}})),
        )
        .await
        .unwrap();
    let labels = merged.metadata.labels.clone().unwrap();
    assert_eq!(labels["app"], "kube-rs");
    assert_eq!(labels["tier"], "merge");

    // Strategic merge: containers merge by name, so `side` stays and `main` changes image.
    let strategic = pods
        .patch(
            "kube-rs",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}}),
            ),
        )
        .await
        .unwrap();
    let containers = strategic.spec.clone().unwrap().containers;
    let images: Vec<_> = containers
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(images, [("main", "busybox:2"), ("side", "busybox")]);

    let selected = pods
        .list(&ListParams::default().labels("tier=merge"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
    assert!(
        pods.list(&ListParams::default().labels("tier=other"))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // The watcher saw the create and both patches, in order, then sees the delete.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::Apply(pod) => seen.push(pod.metadata.resource_version.unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected =
        [&created, &merged, &strategic].map(|p| p.metadata.resource_version.clone().unwrap());
    assert_eq!(seen, expected);

    pods.delete("kube-rs", &DeleteParams::default())
        .await
        .unwrap();
    loop {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::Delete(pod) => {
                assert_eq!(pod.metadata.name.as_deref(), Some("kube-rs"));
                break;
            }
            watcher::Event::Apply(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn deployments(client: kube::Client) {
    let deployments: Api<Deployment> = Api::default_namespaced(client);
    let list = deployments.list(&ListParams::default()).await.unwrap();
    assert!(list.items.is_empty());
    let from = list.metadata.resource_version.unwrap();

    // A plain watch from the list's version.
    let mut stream = deployments
        .watch(&WatchParams::default().timeout(60), &from)
        .await
        .unwrap()
        .boxed();

    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "httpd", "image": "busybox"}]},
            },
        },
    }))
    .unwrap();
    let created = deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(
        spec.strategy.as_ref().unwrap().type_.as_deref(),
        Some("RollingUpdate"),
        "defaults applied"
    );

    let scaled = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.as_ref().unwrap().replicas, Some(3));
    assert!(scaled.metadata.generation > created.metadata.generation);

    let sidecar = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "busybox", "command": ["sleep", "3600"]},
    ]}}}});
    let patched = deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(sidecar))
        .await
        .unwrap();
    let mut names: Vec<_> = patched
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["httpd", "sidecar"], "strategic merge keeps httpd");

    deployments
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();

    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(d) => kinds.push(("ADDED", d.metadata.resource_version)),
            WatchEvent::Modified(d) => kinds.push(("MODIFIED", d.metadata.resource_version)),
            WatchEvent::Deleted(d) => kinds.push(("DELETED", d.metadata.resource_version)),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    let names: Vec<_> = kinds.iter().map(|(k, _)| *k).collect();
    assert_eq!(names, ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]);
    assert_eq!(kinds[0].1, created.metadata.resource_version);
    assert_eq!(kinds[1].1, scaled.metadata.resource_version);
    assert_eq!(kinds[2].1, patched.metadata.resource_version);
}
