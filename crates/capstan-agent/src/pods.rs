//! The pod manager: watches the pods bound to this node and keeps one worker per pod,
//! handing each the latest version of its pod. After the first full list, pods that exist on
//! disk but no longer in the API (deleted while the agent was down) get a worker that only
//! cleans up.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

use crate::worker::{PodWorker, Shared, parse_container_id};

pub async fn run(shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node_name));
    let mut stream = watcher::watcher(pods, config).boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut listing: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                listing.insert(uid.clone());
                if let Ok(mut names) = shared.pod_names.write() {
                    let key = format!(
                        "{}/{}",
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                        pod.metadata.name.as_deref().unwrap_or_default()
                    );
                    names.insert(key, uid.clone());
                }
                deliver(&shared, &mut workers, &uid, Some(pod));
            }
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    forget_name(&shared, &pod, &uid);
                    deliver(&shared, &mut workers, &uid, None);
                }
            }
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitDone) => {
                // Whatever runs here without a pod in the API is an orphan: clean it up.
                for uid in on_disk(&shared) {
                    if !listing.contains(&uid) {
                        deliver(&shared, &mut workers, &uid, None);
                    }
                }
                let gone: Vec<String> = workers
                    .keys()
                    .filter(|uid| !listing.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    deliver(&shared, &mut workers, &uid, None);
                }
            }
            Err(e) => tracing::warn!("watching the pods of node {}: {e}", shared.node_name),
        }
        workers.retain(|_, sender| !sender.is_closed());
    }
}

/// Drops a deleted pod's name, unless a new pod of that name has it already.
fn forget_name(shared: &Shared, pod: &Pod, uid: &str) {
    let key = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    if let Ok(mut names) = shared.pod_names.write()
        && names.get(&key).is_some_and(|known| known == uid)
    {
        names.remove(&key);
    }
}

/// Gives a worker its pod's latest version, starting the worker if there is none.
fn deliver(
    shared: &Arc<Shared>,
    workers: &mut HashMap<String, watch::Sender<Option<Pod>>>,
    uid: &str,
    pod: Option<Pod>,
) {
    if let Some(sender) = workers.get(uid)
        && !sender.is_closed()
    {
        let _ = sender.send(pod);
        return;
    }
    let (sender, receiver) = watch::channel(pod);
    let worker = PodWorker::new(Arc::clone(shared), uid);
    tokio::spawn(worker.run(receiver));
    workers.insert(uid.to_owned(), sender);
}

/// UIDs of the pods that have containers or files on this node.
fn on_disk(shared: &Shared) -> HashSet<String> {
    let mut uids: HashSet<String> = shared
        .runtime
        .list()
        .unwrap_or_default()
        .iter()
        .filter_map(|id| parse_container_id(id).map(|(uid, _, _)| uid.to_owned()))
        .collect();
    if let Ok(entries) = std::fs::read_dir(&shared.pods_dir) {
        uids.extend(
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok()),
        );
    }
    uids
}
