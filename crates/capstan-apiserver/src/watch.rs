//! Watches as Kubernetes serves them: optional initial ADDED events for the current state,
//! replay from a resourceVersion, selector filtering that turns "stopped matching" into DELETED,
//! periodic bookmarks, and a timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use capstan_api::ResourceInfo;
use capstan_api::object;
use capstan_api::selector::{FieldSelector, LabelSelector};
use capstan_store::{Event, EventType, Revision, Watch};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::{Registry, decode_stored};

/// How often an idle watch that allows bookmarks gets one (Kubernetes sends them about once a
/// minute; sooner lets clients resume from a fresher revision).
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

/// The default watch length when the client gives no `timeoutSeconds` (kube-apiserver's
/// `--min-request-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// What a watch asks for.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `None` or 0: start with the current state as ADDED events.
    pub resource_version: Option<Revision>,
    pub timeout: Duration,
    pub allow_bookmarks: bool,
    /// `sendInitialEvents=true`: initial ADDED events, then a bookmark marking their end.
    pub send_initial_events: bool,
}

/// One event to send: its type and object.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub event_type: &'static str,
    object: EventObject,
}

#[derive(Debug, Clone)]
enum EventObject {
    /// Made for this watcher alone (initial events, bookmarks, converted versions).
    Owned(Value),
    /// Decoded once for every watcher of the same store event.
    Shared(Arc<DecodedEvent>),
}

/// A store event decoded once for all its watchers, with its JSON lines encoded on first use.
#[derive(Debug)]
struct DecodedEvent {
    /// The object after the change (for a delete: the last state, at the delete's revision).
    object: Option<Value>,
    prev: Option<Value>,
    /// `{"type":…,"object":…}\n` for each event type, as plain JSON.
    lines: [std::sync::OnceLock<Bytes>; 3],
}

const EVENT_TYPES: [&str; 3] = ["ADDED", "MODIFIED", "DELETED"];

impl DecodedEvent {
    fn new(event: &Event) -> Self {
        let mut object = decode_stored(&event.kv).ok();
        if event.event_type == EventType::Delete
            && let Some(o) = object.as_mut()
        {
            object::set_meta(o, "resourceVersion", json!(event.revision.to_string()));
        }
        DecodedEvent {
            object,
            prev: event.prev.as_ref().and_then(|kv| decode_stored(kv).ok()),
            lines: Default::default(),
        }
    }
}

fn encode_line(event_type: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

impl WatchEvent {
    fn owned(event_type: &'static str, object: Value) -> Self {
        WatchEvent {
            event_type,
            object: EventObject::Owned(object),
        }
    }

    pub fn object(&self) -> &Value {
        match &self.object {
            EventObject::Owned(o) => o,
            EventObject::Shared(d) => d.object.as_ref().unwrap_or(&Value::Null),
        }
    }

    /// The event as one line of plain JSON. A shared event is encoded once per type for all
    /// the watchers that send it.
    pub fn json_line(&self) -> Bytes {
        match &self.object {
            EventObject::Owned(o) => encode_line(self.event_type, o),
            EventObject::Shared(d) => {
                match EVENT_TYPES.iter().position(|t| *t == self.event_type) {
                    Some(i) => d.lines[i]
                        .get_or_init(|| encode_line(self.event_type, self.object()))
                        .clone(),
                    None => encode_line(self.event_type, self.object()),
                }
            }
        }
    }
}

/// A running watch of one resource.
pub struct ResourceWatch {
    resource: &'static ResourceInfo,
    options: WatchOptions,
    initial: std::collections::VecDeque<WatchEvent>,
    watch: Watch,
    /// The revision of the last event this watch has seen (delivered or filtered out).
    last_revision: Revision,
    deadline: tokio::time::Instant,
    next_bookmark: tokio::time::Instant,
}

impl ResourceWatch {
    pub fn start(
        registry: &Registry,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        options: WatchOptions,
    ) -> Result<Self, ApiError> {
        let store = registry.store();
        let prefix = resource.storage_list_prefix(namespace);
        let mut initial = std::collections::VecDeque::new();
        let from = match options.resource_version {
            Some(rv) if rv > 0 && !options.send_initial_events => rv,
            _ => {
                let list = store.list(&prefix, None, 0)?;
                for kv in &list.items {
                    let object = decode_stored(kv)?;
                    if matches(resource, &options, &object) {
                        initial.push_back(WatchEvent::owned(
                            "ADDED",
                            crate::conversion::to_version(resource, object),
                        ));
                    }
                }
                if options.send_initial_events && options.allow_bookmarks {
                    initial.push_back(bookmark(resource, list.revision, true));
                }
                list.revision
            }
        };
        let watch = store.watch(&prefix, from)?;
        let now = tokio::time::Instant::now();
        Ok(ResourceWatch {
            resource,
            initial,
            watch,
            last_revision: from,
            deadline: now + options.timeout,
            next_bookmark: now + BOOKMARK_INTERVAL,
            options,
        })
    }

    /// The next event to send, or `None` when the watch is over (timeout, or the store cut it
    /// off because the client read too slowly).
    pub async fn next(&mut self) -> Option<WatchEvent> {
        if let Some(event) = self.initial.pop_front() {
            return Some(event);
        }
        loop {
            tokio::select! {
                event = self.watch.next() => {
                    let event = event?;
                    self.last_revision = event.revision;
                    if let Some(out) = self.classify(&event) {
                        return Some(out);
                    }
                }
                _ = tokio::time::sleep_until(self.next_bookmark), if self.options.allow_bookmarks => {
                    self.next_bookmark = tokio::time::Instant::now() + BOOKMARK_INTERVAL;
                    return Some(bookmark(self.resource, self.last_revision, false));
                }
                _ = tokio::time::sleep_until(self.deadline) => return None,
            }
        }
    }

    /// The next event if one is ready now, without waiting (to batch a backlog into one write).
    pub fn try_next(&mut self) -> Option<WatchEvent> {
        if let Some(event) = self.initial.pop_front() {
            return Some(event);
        }
        while let Some(event) = self.watch.try_next() {
            self.last_revision = event.revision;
            if let Some(out) = self.classify(&event) {
                return Some(out);
            }
        }
        None
    }

    /// The event a client filtering with this watch's selectors sees for `event`, if any.
    fn classify(&self, event: &Arc<Event>) -> Option<WatchEvent> {
        let decoded = event.derived.get_or_init(|| DecodedEvent::new(event))?;
        let object = decoded.object.as_ref()?;
        let prev_matched = decoded
            .prev
            .as_ref()
            .is_some_and(|prev| matches(self.resource, &self.options, prev));
        let (event_type, now_matches) = match event.event_type {
            EventType::Delete => ("DELETED", false),
            EventType::Put => {
                let m = matches(self.resource, &self.options, object);
                (if prev_matched { "MODIFIED" } else { "ADDED" }, m)
            }
        };
        let event_type = match (prev_matched, now_matches) {
            (_, true) => event_type,
            (true, false) => "DELETED",
            (false, false) => return None,
        };
        if crate::conversion::converts(self.resource) {
            let converted = crate::conversion::to_version(self.resource, object.clone());
            return Some(WatchEvent::owned(event_type, converted));
        }
        Some(WatchEvent {
            event_type,
            object: EventObject::Shared(decoded),
        })
    }
}

fn matches(resource: &ResourceInfo, options: &WatchOptions, object: &Value) -> bool {
    options.labels.matches(object::labels(object)) && options.fields.matches(resource, object)
}

/// A BOOKMARK event: only the kind and the resourceVersion the client may resume from.
fn bookmark(resource: &ResourceInfo, revision: Revision, initial_events_end: bool) -> WatchEvent {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    WatchEvent::owned(
        "BOOKMARK",
        json!({"kind": resource.kind, "apiVersion": resource.api_version(), "metadata": metadata}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::WriteOptions;
    use capstan_api::resource::find;
    use capstan_store::KvStore;

    fn options(labels: &str, rv: Option<Revision>) -> WatchOptions {
        WatchOptions {
            labels: LabelSelector::parse(labels).unwrap(),
            fields: FieldSelector::default(),
            resource_version: rv,
            timeout: Duration::from_secs(60),
            allow_bookmarks: true,
            send_initial_events: false,
        }
    }

    async fn setup() -> Registry {
        let registry = Registry::new(Arc::new(KvStore::memory()));
        let ns = find("", "v1", "namespaces").unwrap();
        registry
            .ensure(ns, json!({"metadata": {"name": "default"}}))
            .await
            .unwrap();
        registry
    }

    fn cm(name: &str, tier: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"tier": tier}}})
    }

    #[tokio::test]
    async fn watch_without_a_version_starts_with_the_current_state() {
        let registry = setup().await;
        let cms = find("", "v1", "configmaps").unwrap();
        registry
            .create(
                cms,
                Some("default"),
                cm("a", "web"),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        let mut watch =
            ResourceWatch::start(&registry, cms, Some("default"), options("", None)).unwrap();
        let first = watch.next().await.unwrap();
        assert_eq!(
            (first.event_type, &first.object()["metadata"]["name"]),
            ("ADDED", &json!("a"))
        );
        registry
            .create(
                cms,
                Some("default"),
                cm("b", "web"),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        let second = watch.next().await.unwrap();
        assert_eq!(
            (second.event_type, &second.object()["metadata"]["name"]),
            ("ADDED", &json!("b"))
        );
    }

    #[tokio::test]
    async fn an_object_leaving_the_selector_is_deleted_for_the_watcher() {
        let registry = setup().await;
        let cms = find("", "v1", "configmaps").unwrap();
        let created = registry
            .create(
                cms,
                Some("default"),
                cm("a", "web"),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        let rv: Revision = created.object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let mut watch = ResourceWatch::start(
            &registry,
            cms,
            Some("default"),
            options("tier=web", Some(rv)),
        )
        .unwrap();
        registry
            .update(
                cms,
                Some("default"),
                "a",
                None,
                cm("a", "db"),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        registry
            .update(
                cms,
                Some("default"),
                "a",
                None,
                cm("a", "web"),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(watch.next().await.unwrap().event_type, "DELETED");
        assert_eq!(watch.next().await.unwrap().event_type, "ADDED");
    }

    #[tokio::test]
    async fn watchers_of_one_event_share_its_decoding_and_encoding() {
        let registry = setup().await;
        let cms = find("", "v1", "configmaps").unwrap();
        let mut a =
            ResourceWatch::start(&registry, cms, Some("default"), options("", Some(1))).unwrap();
        let mut b = ResourceWatch::start(&registry, cms, None, options("", Some(1))).unwrap();
        registry
            .create(
                cms,
                Some("default"),
                cm("a", "web"),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        let (from_a, from_b) = (a.next().await.unwrap(), b.next().await.unwrap());
        let (line_a, line_b) = (from_a.json_line(), from_b.json_line());
        assert_eq!(line_a.as_ptr(), line_b.as_ptr(), "encoded once, shared");
        let parsed: Value = serde_json::from_slice(&line_a).unwrap();
        assert_eq!(parsed["type"], "ADDED");
        assert_eq!(parsed["object"]["metadata"]["name"], "a");
        assert!(line_a.ends_with(b"\n"));
    }

    #[tokio::test]
    async fn watch_from_a_compacted_version_is_expired() {
        let registry = setup().await;
        let cms = find("", "v1", "configmaps").unwrap();
        registry
            .create(
                cms,
                Some("default"),
                cm("a", "web"),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        registry.store().compact(2).unwrap();
        let err = ResourceWatch::start(&registry, cms, Some("default"), options("", Some(1)))
            .err()
            .unwrap();
        assert_eq!(err.status_code().as_u16(), 410);
        assert_eq!(err.to_string(), "too old resource version: 1 (2)");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_watches_get_bookmarks_and_end_at_their_timeout() {
        let registry = setup().await;
        let cms = find("", "v1", "configmaps").unwrap();
        let mut opts = options("", Some(1));
        opts.timeout = BOOKMARK_INTERVAL + Duration::from_secs(1);
        let mut watch = ResourceWatch::start(&registry, cms, Some("default"), opts).unwrap();
        let bookmark = watch.next().await.unwrap();
        assert_eq!(bookmark.event_type, "BOOKMARK");
        assert_eq!(bookmark.object()["metadata"]["resourceVersion"], "1");
        assert!(watch.next().await.is_none());
    }
}
