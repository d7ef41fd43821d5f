//! Events about pods, as kubelet records them (`source.component: kubelet`), through the API.
//! Recording is best effort: a failed write is logged and never stops the pod.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    node: String,
}

/// Normal or Warning, as Kubernetes types events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl Recorder {
    pub fn new(client: Client, node: &str) -> Self {
        Recorder {
            client,
            node: node.to_owned(),
        }
    }

    /// Records an event about `pod`, or one of its containers when `field_path` is
    /// `spec.containers{name}` (kubelet's way of naming the container).
    pub async fn record(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        kind: EventType,
        reason: &str,
        message: String,
    ) {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let name = meta.name.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let time = crate::status::format_time(now);
        let event = json!({
            "metadata": {"name": format!("{name}.{:x}", now.as_nanosecond()), "namespace": namespace},
            "involvedObject": {
                "kind": "Pod", "apiVersion": "v1", "namespace": namespace, "name": name,
                "uid": meta.uid, "resourceVersion": meta.resource_version, "fieldPath": field_path,
            },
            "reason": reason,
            "message": message,
            "type": match kind { EventType::Normal => "Normal", EventType::Warning => "Warning" },
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
            "firstTimestamp": time,
            "lastTimestamp": time,
            "count": 1,
        });
        let Ok(event) = serde_json::from_value::<Event>(event) else {
            return;
        };
        // Written in the background: a pod never waits for its events.
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        tokio::spawn(async move {
            if let Err(e) = events.create(&PostParams::default(), &event).await {
                tracing::debug!(
                    "recording event {reason} for pod {namespace}/{name}: {e}",
                    reason = event.reason.unwrap_or_default()
                );
            }
        });
    }
}

/// kubelet's field path for a container: `spec.containers{name}` or `spec.initContainers{name}`.
pub fn container_field_path(init: bool, name: &str) -> Option<String> {
    Some(if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    })
}
