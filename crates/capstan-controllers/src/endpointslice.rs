//! The EndpointSlice controller, as kube-controller-manager's: for every Service with a
//! selector, `discovery.k8s.io/v1` EndpointSlices (named `<service>-<random>`) list the pods
//! that back it, one endpoint per pod with its readiness, and the Service's ports resolved for
//! those pods. Pods whose ports resolve differently (a named `targetPort` that differs between
//! pod versions) go to different slices; a slice holds at most `--max-endpoints-per-slice`
//! endpoints. A Service with no endpoints keeps one empty placeholder slice, as Kubernetes'.
//!
//! Slices are updated in place when possible: an endpoint stays in the slice it is in, new ones
//! fill slices with room before a new slice is created, and a slice left empty is deleted. A
//! deleted Service's slices go with it through their owner reference (the garbage collector).
//!
//! The plan ([`plan`]) is pure. The reconciler remembers what it wrote until its cache shows
//! it ([`SliceTracker`]): a slice just created must not be created twice by a reconcile that
//! runs before the watch delivers it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;

use crate::actions::{ActionError, Actions};
use crate::informers::SharedInformers;
use crate::ownership::controller_ref;
use crate::pod_cache::PodCache;
use crate::runtime::{Action, Change, ObjectKey, Reconciler, WorkQueue};
use crate::service_backends::{
    Backend, LABEL_HEADLESS, LABEL_SERVICE_NAME, ResolvedPort, backends, is_headless, is_managed,
    watch_services_and_pods,
};

/// The label naming the controller that manages a slice (`discovery.LabelManagedBy`).
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`LABEL_MANAGED_BY`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// `--max-endpoints-per-slice` default.
pub const DEFAULT_MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// `--concurrent-service-endpoint-syncs` default.
pub const DEFAULT_WORKERS: usize = 5;

/// Why a reconcile of a Service failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum EndpointSliceError {
    #[error("creating an EndpointSlice for service {service}: {source}")]
    Create {
        service: ObjectKey,
        source: ActionError,
    },
    /// A conflict means the cache was behind; the retry reads fresher state.
    #[error("updating EndpointSlice {slice}: {source}")]
    Update { slice: String, source: ActionError },
    #[error("deleting EndpointSlice {slice}: {source}")]
    Delete { slice: String, source: ActionError },
}

/// One write the plan asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum SliceChange {
    Create(EndpointSlice),
    Update(EndpointSlice),
    Delete { name: String, uid: String },
}

/// The ports of a slice as the grouping key.
type PortKey = Vec<ResolvedPort>;

fn port_key(slice: &EndpointSlice) -> PortKey {
    slice
        .ports
        .iter()
        .flatten()
        .map(|p| ResolvedPort {
            name: p.name.clone().unwrap_or_default(),
            port: p.port.unwrap_or(0),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

fn endpoint_ports(ports: &[ResolvedPort]) -> Vec<EndpointPort> {
    ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone()),
            port: Some(p.port),
            protocol: Some(p.protocol.clone()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

/// The endpoint of one backing pod (`podToEndpoint`).
pub fn endpoint(backend: &Backend<'_>) -> Endpoint {
    Endpoint {
        addresses: vec![backend.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(backend.ready),
            serving: Some(backend.serving),
            terminating: Some(backend.terminating),
        }),
        hostname: backend.hostname.clone(),
        node_name: backend.node_name.clone(),
        target_ref: Some(backend.target_ref()),
        ..Endpoint::default()
    }
}

/// Which pod an endpoint stands for: its targetRef uid, else its address.
fn endpoint_identity(endpoint: &Endpoint) -> String {
    endpoint
        .target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_else(|| endpoint.addresses.join(","))
}

/// The labels of the Service's slices: the Service's own (minus the reserved ones), the
/// Service name, the manager, and the headless marker when it has no cluster IP.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != LABEL_SERVICE_NAME && k != LABEL_MANAGED_BY && k != LABEL_HEADLESS)
        .collect();
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    if is_headless(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels
}

/// A new slice of `service` for `ports` (`newEndpointSlice`), named by the API server.
fn new_slice(service: &Service, ports: &[ResolvedPort], endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                service.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: service.metadata.namespace.clone(),
            labels: Some(slice_labels(service)),
            owner_references: Some(vec![controller_ref(service)]),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(endpoint_ports(ports)),
    }
}

/// An existing slice with the desired labels, owner and endpoints; `None` when it already has
/// them.
fn updated_slice(
    service: &Service,
    existing: &EndpointSlice,
    endpoints: Vec<Endpoint>,
) -> Option<EndpointSlice> {
    let labels = Some(slice_labels(service));
    let owners = Some(vec![controller_ref(service)]);
    if existing.endpoints == endpoints
        && existing.metadata.labels == labels
        && existing.metadata.owner_references == owners
    {
        return None;
    }
    let mut slice = existing.clone();
    slice.metadata.labels = labels;
    slice.metadata.owner_references = owners;
    slice.endpoints = endpoints;
    Some(slice)
}

fn is_placeholder(slice: &EndpointSlice) -> bool {
    slice.endpoints.is_empty() && slice.ports.as_ref().is_none_or(Vec::is_empty)
}

/// The writes that bring `existing` (the Service's slices) to the pods in `backends`, as
/// Kubernetes' reconciler: endpoints stay where they are, gaps are filled before new slices
/// are made, empty slices are deleted, and a Service without endpoints keeps one placeholder.
pub fn plan(
    service: &Service,
    backends: &[Backend<'_>],
    existing: &[EndpointSlice],
    max_endpoints_per_slice: usize,
) -> Vec<SliceChange> {
    let max = max_endpoints_per_slice.max(1);
    // The desired endpoints, grouped by the ports their pod resolves.
    let mut desired: BTreeMap<PortKey, Vec<Endpoint>> = BTreeMap::new();
    for backend in backends {
        desired
            .entry(backend.ports.clone())
            .or_default()
            .push(endpoint(backend));
    }
    let mut existing: Vec<&EndpointSlice> = existing.iter().collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut changes = Vec::new();
    let mut deletes: Vec<&EndpointSlice> = Vec::new();
    let mut kept_any = false;
    let mut unused: Vec<&EndpointSlice> = Vec::new();
    for slice in &existing {
        if slice.address_type != "IPv4" || !desired.contains_key(&port_key(slice)) {
            unused.push(slice);
        }
    }
    for (ports, endpoints) in &desired {
        let mut wanted: HashMap<String, &Endpoint> = endpoints
            .iter()
            .map(|e| (endpoint_identity(e), e))
            .collect();
        let slices: Vec<&EndpointSlice> = existing
            .iter()
            .copied()
            .filter(|s| s.address_type == "IPv4" && &port_key(s) == ports)
            .collect();
        // Endpoints still wanted stay in their slice, at their newest state.
        let mut contents: Vec<Vec<Endpoint>> = slices
            .iter()
            .map(|slice| {
                slice
                    .endpoints
                    .iter()
                    .filter_map(|e| wanted.remove(&endpoint_identity(e)).cloned())
                    .collect()
            })
            .collect();
        // New endpoints fill slices with room first, in the order of the pods.
        let mut new: Vec<Endpoint> = endpoints
            .iter()
            .filter(|e| wanted.contains_key(&endpoint_identity(e)))
            .cloned()
            .collect();
        for content in &mut contents {
            let room = max.saturating_sub(content.len()).min(new.len());
            content.extend(new.drain(..room));
        }
        for (slice, content) in slices.iter().zip(contents) {
            if content.is_empty() {
                deletes.push(slice);
            } else {
                kept_any = true;
                if let Some(updated) = updated_slice(service, slice, content) {
                    changes.push(SliceChange::Update(updated));
                }
            }
        }
        for chunk in new.chunks(max) {
            changes.push(SliceChange::Create(new_slice(
                service,
                ports,
                chunk.to_vec(),
            )));
        }
    }
    deletes.extend(unused);
    let creates = changes.iter().any(|c| matches!(c, SliceChange::Create(_)));
    if !kept_any && !creates {
        // No endpoints at all: one placeholder slice remains, so that consumers see the
        // Service has been processed (Kubernetes' placeholder).
        match deletes.iter().position(|s| is_placeholder(s)) {
            Some(index) => {
                let placeholder = deletes.remove(index);
                if let Some(updated) = updated_slice(service, placeholder, Vec::new()) {
                    changes.push(SliceChange::Update(updated));
                }
            }
            None => {
                let mut placeholder = new_slice(service, &[], Vec::new());
                placeholder.ports = None;
                changes.push(SliceChange::Create(placeholder));
            }
        }
    }
    for slice in deletes {
        changes.push(SliceChange::Delete {
            name: slice.metadata.name.clone().unwrap_or_default(),
            uid: slice.metadata.uid.clone().unwrap_or_default(),
        });
    }
    changes
}

/// Is `slice` one of this controller's slices of `service`?
fn belongs_to(slice: &EndpointSlice, namespace: &str, service: &str) -> bool {
    let labels = slice.metadata.labels.as_ref();
    slice.metadata.namespace.as_deref() == Some(namespace)
        && labels
            .and_then(|l| l.get(LABEL_SERVICE_NAME))
            .map(String::as_str)
            == Some(service)
        && labels
            .and_then(|l| l.get(LABEL_MANAGED_BY))
            .map(String::as_str)
            == Some(CONTROLLER_NAME)
}

/// What the controller wrote and its cache may not show yet, per Service (Kubernetes'
/// `EndpointSliceTracker`): slices created, replaced (by the resourceVersion they replaced),
/// and deleted. Each entry is dropped once the cache has caught up.
#[derive(Debug, Default)]
pub struct SliceTracker {
    services: HashMap<ObjectKey, Written>,
}

#[derive(Debug, Default)]
struct Written {
    created: Vec<EndpointSlice>,
    /// Slice name → (the resourceVersion the write replaced, the slice as written).
    replaced: HashMap<String, (Option<String>, EndpointSlice)>,
    deleted: HashSet<String>,
}

impl SliceTracker {
    /// The Service's slices: the cached ones corrected by what was written since.
    pub fn view(&mut self, service: &ObjectKey, cached: Vec<EndpointSlice>) -> Vec<EndpointSlice> {
        let Some(written) = self.services.get_mut(service) else {
            return cached;
        };
        let cached_names: HashSet<String> = cached
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        written.deleted.retain(|name| cached_names.contains(name));
        written.created.retain(|s| {
            s.metadata
                .name
                .as_ref()
                .is_some_and(|name| !cached_names.contains(name))
        });
        let mut view = Vec::new();
        for slice in cached {
            let name = slice.metadata.name.clone().unwrap_or_default();
            if written.deleted.contains(&name) {
                continue;
            }
            match written.replaced.get(&name) {
                Some((old, newer)) if *old == slice.metadata.resource_version => {
                    view.push(newer.clone())
                }
                Some(_) => {
                    written.replaced.remove(&name);
                    view.push(slice);
                }
                None => view.push(slice),
            }
        }
        view.extend(written.created.iter().cloned());
        if written.created.is_empty() && written.replaced.is_empty() && written.deleted.is_empty() {
            self.services.remove(service);
        }
        view
    }

    fn entry(&mut self, service: &ObjectKey) -> &mut Written {
        self.services.entry(service.clone()).or_default()
    }

    pub fn created(&mut self, service: &ObjectKey, slice: EndpointSlice) {
        self.entry(service).created.push(slice);
    }

    pub fn replaced(&mut self, service: &ObjectKey, old: &EndpointSlice, new: EndpointSlice) {
        let name = new.metadata.name.clone().unwrap_or_default();
        let entry = self.entry(service);
        // Replacing a slice created moments ago: keep treating it as created.
        if let Some(created) = entry
            .created
            .iter_mut()
            .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
        {
            *created = new;
            return;
        }
        entry
            .replaced
            .insert(name, (old.metadata.resource_version.clone(), new));
    }

    pub fn deleted(&mut self, service: &ObjectKey, name: &str) {
        let entry = self.entry(service);
        entry
            .created
            .retain(|s| s.metadata.name.as_deref() != Some(name));
        entry.replaced.remove(name);
        entry.deleted.insert(name.to_string());
    }

    /// Forgets a deleted Service.
    pub fn forget(&mut self, service: &ObjectKey) {
        self.services.remove(service);
    }
}

/// The EndpointSlice controller: its caches, what it wrote, and its effects.
pub struct EndpointSliceController<A> {
    pub services: Store<Service>,
    pub pods: PodCache,
    pub slices: Store<EndpointSlice>,
    pub tracker: Mutex<SliceTracker>,
    pub max_endpoints_per_slice: usize,
    pub actions: A,
}

impl<A> EndpointSliceController<A> {
    fn tracker(&self) -> std::sync::MutexGuard<'_, SliceTracker> {
        self.tracker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<A: Actions> Reconciler for EndpointSliceController<A> {
    type Error = EndpointSliceError;

    fn name(&self) -> &'static str {
        "endpointslice-controller"
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, EndpointSliceError> {
        let Some(service) = self.services.get(&key.object_ref()) else {
            // The garbage collector deletes the slices through their owner reference.
            self.tracker().forget(key);
            return Ok(Action::AwaitChange);
        };
        if !is_managed(&service) {
            return Ok(Action::AwaitChange);
        }
        let pods: Vec<Arc<Pod>> = self.pods.in_namespace(&key.namespace);
        let backends = backends(&service, pods.iter().map(|p| &**p), true);
        let cached: Vec<EndpointSlice> = self
            .slices
            .state()
            .iter()
            .filter(|s| belongs_to(s, &key.namespace, &key.name))
            .map(|s| (**s).clone())
            .collect();
        let existing = self.tracker().view(key, cached);
        let by_name: HashMap<String, &EndpointSlice> = existing
            .iter()
            .filter_map(|s| Some((s.metadata.name.clone()?, s)))
            .collect();
        for change in plan(&service, &backends, &existing, self.max_endpoints_per_slice) {
            match change {
                SliceChange::Create(slice) => {
                    let stored = self
                        .actions
                        .create_endpoint_slice(&key.namespace, &slice)
                        .await
                        .map_err(|source| EndpointSliceError::Create {
                            service: key.clone(),
                            source,
                        })?;
                    self.tracker().created(key, stored);
                }
                SliceChange::Update(slice) => {
                    let name = slice.metadata.name.clone().unwrap_or_default();
                    let stored =
                        self.actions
                            .update_endpoint_slice(&slice)
                            .await
                            .map_err(|source| EndpointSliceError::Update {
                                slice: name.clone(),
                                source,
                            })?;
                    if let Some(old) = by_name.get(&name) {
                        self.tracker().replaced(key, old, stored);
                    }
                }
                SliceChange::Delete { name, uid } => {
                    match self
                        .actions
                        .delete_endpoint_slice(&key.namespace, &name, &uid)
                        .await
                    {
                        Ok(()) | Err(ActionError::NotFound(_)) => {
                            self.tracker().deleted(key, &name)
                        }
                        Err(source) => {
                            return Err(EndpointSliceError::Delete {
                                slice: name,
                                source,
                            });
                        }
                    }
                }
            }
        }
        Ok(Action::AwaitChange)
    }
}

/// Event handler for slices: a change to one of ours (by someone else, or our own write
/// arriving) re-syncs its Service, so a slice deleted by hand comes back.
pub fn slice_changed(change: Change<'_, EndpointSlice>, queue: &WorkQueue<ObjectKey>) {
    let slice = change.object();
    let labels = slice.metadata.labels.as_ref();
    if labels
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .map(String::as_str)
        != Some(CONTROLLER_NAME)
    {
        return;
    }
    if let Some(service) = labels.and_then(|l| l.get(LABEL_SERVICE_NAME)) {
        queue.add(ObjectKey::new(
            slice.metadata.namespace.clone().unwrap_or_default(),
            service.clone(),
        ));
    }
}

/// Registers the controller on the shared informers (Services, Pods, EndpointSlices) and
/// returns it, to be polled once their caches are filled; runs until dropped.
pub fn run(
    informers: &mut SharedInformers,
    client: kube::Client,
    workers: usize,
    max_endpoints_per_slice: usize,
) -> impl Future<Output = ()> + use<> {
    let queue = WorkQueue::new();
    let (services, pods) = watch_services_and_pods(informers, &queue);
    let slices = {
        let queue = queue.clone();
        informers.on(move |c| slice_changed(c, &queue))
    };
    let controller = Arc::new(EndpointSliceController {
        services,
        pods,
        slices,
        tracker: Mutex::new(SliceTracker::default()),
        max_endpoints_per_slice,
        actions: crate::actions::KubeActions::new(client),
    });
    crate::runtime::run_workers(controller, queue, workers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{Recorded, RecordingActions};
    use crate::pod_cache::PodCacheWriter;
    use crate::service_backends::tests::{pod, service, terminating};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    fn http_service() -> Service {
        service(&[("http", 80, IntOrString::String("http".into()))])
    }

    /// An existing slice of `web` named `name` with these pods' endpoints and `http:<port>`.
    fn slice(name: &str, port: i32, pods: &[Pod]) -> EndpointSlice {
        let service = http_service();
        let backends = backends(&service, pods, true);
        let mut slice = new_slice(
            &service,
            &[ResolvedPort {
                name: "http".into(),
                port,
                protocol: "TCP".into(),
                app_protocol: None,
            }],
            backends.iter().map(endpoint).collect(),
        );
        slice.metadata.name = Some(name.into());
        slice.metadata.uid = Some(format!("uid-{name}"));
        slice.metadata.resource_version = Some("1".into());
        slice
    }

    struct Fixture {
        controller: EndpointSliceController<RecordingActions>,
        pods: PodCacheWriter,
    }

    fn fixture(
        services: &[Service],
        pods: &[Pod],
        slices: &[EndpointSlice],
        max: usize,
    ) -> Fixture {
        let mut service_writer = Writer::<Service>::default();
        let mut pod_writer = PodCacheWriter::default();
        let mut slice_writer = Writer::<EndpointSlice>::default();
        for s in services {
            service_writer.apply_watcher_event(&Event::Apply(s.clone()));
        }
        for p in pods {
            pod_writer.apply_watcher_event(&Event::Apply(p.clone()));
        }
        for s in slices {
            slice_writer.apply_watcher_event(&Event::Apply(s.clone()));
        }
        Fixture {
            controller: EndpointSliceController {
                services: service_writer.as_reader(),
                pods: pod_writer.as_reader(),
                slices: slice_writer.as_reader(),
                tracker: Mutex::new(SliceTracker::default()),
                max_endpoints_per_slice: max,
                actions: RecordingActions::new(),
            },
            pods: pod_writer,
        }
    }

    fn web() -> ObjectKey {
        ObjectKey::new("default", "web")
    }

    #[tokio::test]
    async fn slices_follow_the_pods_of_the_service() {
        let ready_a = pod("a", Some("10.42.0.5"), true, 8080);
        let ready_b = pod("b", Some("10.42.0.6"), true, 8080);
        let unready_b = pod("b", Some("10.42.0.6"), false, 8080);
        let mut headless = http_service();
        headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let mut no_selector = http_service();
        no_selector.spec.as_mut().unwrap().selector = None;
        // (case, service, pods, existing slices, max per slice, expected actions)
        type Case = (
            &'static str,
            Service,
            Vec<Pod>,
            Vec<EndpointSlice>,
            usize,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a new service gets a slice of its pods",
                http_service(),
                vec![ready_a.clone(), unready_b.clone()],
                vec![],
                100,
                vec![
                    "create endpointslice web- ports=[http:8080/TCP] endpoints=[10.42.0.5 ready,10.42.0.6 notready]",
                ],
            ),
            (
                "an up-to-date slice is left alone",
                http_service(),
                vec![ready_a.clone(), ready_b.clone()],
                vec![slice(
                    "web-abcde",
                    8080,
                    &[ready_a.clone(), ready_b.clone()],
                )],
                100,
                vec![],
            ),
            (
                "a readiness change updates the slice in place",
                http_service(),
                vec![ready_a.clone(), unready_b.clone()],
                vec![slice(
                    "web-abcde",
                    8080,
                    &[ready_a.clone(), ready_b.clone()],
                )],
                100,
                vec![
                    "update endpointslice web-abcde ports=[http:8080/TCP] endpoints=[10.42.0.5 ready,10.42.0.6 notready]",
                ],
            ),
            (
                "a terminating pod stays, marked terminating",
                http_service(),
                vec![ready_a.clone(), terminating(ready_b.clone())],
                vec![slice(
                    "web-abcde",
                    8080,
                    &[ready_a.clone(), ready_b.clone()],
                )],
                100,
                vec![
                    "update endpointslice web-abcde ports=[http:8080/TCP] endpoints=[10.42.0.5 ready,10.42.0.6 terminating]",
                ],
            ),
            (
                "pods whose named port resolves differently go to another slice",
                http_service(),
                vec![ready_a.clone(), pod("c", Some("10.42.0.7"), true, 9090)],
                vec![slice("web-abcde", 8080, std::slice::from_ref(&ready_a))],
                100,
                vec!["create endpointslice web- ports=[http:9090/TCP] endpoints=[10.42.0.7 ready]"],
            ),
            (
                "new endpoints fill slices with room, then new slices of at most the maximum",
                http_service(),
                (0..5)
                    .map(|i| {
                        pod(
                            &format!("p{i}"),
                            Some(&format!("10.42.0.{}", 10 + i)),
                            true,
                            8080,
                        )
                    })
                    .collect(),
                vec![slice(
                    "web-abcde",
                    8080,
                    &[pod("p0", Some("10.42.0.10"), true, 8080)],
                )],
                2,
                vec![
                    "update endpointslice web-abcde ports=[http:8080/TCP] endpoints=[10.42.0.10 ready,10.42.0.11 ready]",
                    "create endpointslice web- ports=[http:8080/TCP] endpoints=[10.42.0.12 ready,10.42.0.13 ready]",
                    "create endpointslice web- ports=[http:8080/TCP] endpoints=[10.42.0.14 ready]",
                ],
            ),
            (
                "a slice left empty is deleted",
                http_service(),
                vec![ready_a.clone()],
                vec![
                    slice("web-aaaaa", 8080, std::slice::from_ref(&ready_a)),
                    slice("web-bbbbb", 8080, std::slice::from_ref(&ready_b)),
                ],
                100,
                vec!["delete endpointslice web-bbbbb"],
            ),
            (
                "a service without pods gets one placeholder slice",
                http_service(),
                vec![],
                vec![],
                100,
                vec!["create endpointslice web- ports=[] endpoints=[]"],
            ),
            (
                "the last pod gone replaces the slices with a placeholder",
                http_service(),
                vec![],
                vec![slice("web-abcde", 8080, std::slice::from_ref(&ready_a))],
                100,
                vec![
                    "create endpointslice web- ports=[] endpoints=[]",
                    "delete endpointslice web-abcde",
                ],
            ),
            (
                "a service without a selector is left to its user",
                no_selector,
                vec![ready_a.clone()],
                vec![],
                100,
                vec![],
            ),
        ];
        for (case, service, pods, slices, max, expected) in cases {
            let f = fixture(&[service], &pods, &slices, max);
            let result = f.controller.reconcile(&web()).await;
            assert!(result.is_ok(), "{case}: {result:?}");
            assert_eq!(f.controller.actions.summaries(), expected, "{case}");
        }
        let f = fixture(&[headless], std::slice::from_ref(&ready_a), &[], 100);
        f.controller.reconcile(&web()).await.unwrap();
        let Recorded::CreateEndpointSlice(slice) = &f.controller.actions.recorded()[0] else {
            panic!("a slice is created");
        };
        assert_eq!(
            slice.metadata.labels.as_ref().unwrap().get(LABEL_HEADLESS),
            Some(&String::new()),
            "a headless service's slices say so"
        );
    }

    #[tokio::test]
    async fn a_created_slice_has_kubernetes_metadata_and_endpoint_fields() {
        let mut stateful = pod("web-0", Some("10.42.0.5"), true, 8080);
        let spec = stateful.spec.as_mut().unwrap();
        spec.hostname = Some("web-0".into());
        spec.subdomain = Some("web".into());
        let f = fixture(&[http_service()], &[stateful], &[], 100);
        f.controller.reconcile(&web()).await.unwrap();
        let Recorded::CreateEndpointSlice(slice) = &f.controller.actions.recorded()[0] else {
            panic!("a slice is created");
        };
        let expected = serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": "web-",
                "namespace": "default",
                "labels": {
                    "team": "a",
                    "kubernetes.io/service-name": "web",
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
                "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Service", "name": "web", "uid": "uid-web",
                    "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "addressType": "IPv4",
            "endpoints": [{
                "addresses": ["10.42.0.5"],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "hostname": "web-0",
                "nodeName": "node-1",
                "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0", "uid": "uid-web-0"},
            }],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        });
        assert_eq!(serde_json::to_value(&**slice).unwrap(), expected);
    }

    #[tokio::test]
    async fn a_slice_created_but_not_yet_cached_is_not_created_twice() {
        let a = pod("a", Some("10.42.0.5"), true, 8080);
        let mut f = fixture(&[http_service()], std::slice::from_ref(&a), &[], 100);
        f.controller.reconcile(&web()).await.unwrap();
        // The pod turns unready before the watch delivers the new slice.
        f.pods
            .apply_watcher_event(&Event::Apply(pod("a", Some("10.42.0.5"), false, 8080)));
        f.controller.reconcile(&web()).await.unwrap();
        assert_eq!(
            f.controller.actions.summaries(),
            [
                "create endpointslice web- ports=[http:8080/TCP] endpoints=[10.42.0.5 ready]",
                "update endpointslice web-1 ports=[http:8080/TCP] endpoints=[10.42.0.5 notready]",
            ]
        );
        // A deleted slice still cached is not updated again.
        f.pods.apply_watcher_event(&Event::Delete(a));
        f.controller.reconcile(&web()).await.unwrap();
        f.controller.reconcile(&web()).await.unwrap();
        assert_eq!(
            f.controller.actions.summaries()[2..],
            [
                "create endpointslice web- ports=[] endpoints=[]",
                "delete endpointslice web-1",
            ]
        );
    }

    #[tokio::test]
    async fn slice_events_enqueue_only_our_slices_services() {
        let queue = WorkQueue::new();
        let mut foreign = slice("web-abcde", 8080, &[]);
        foreign
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_MANAGED_BY.into(), "someone-else".into());
        slice_changed(Change::Deleted(&foreign), &queue);
        assert!(queue.is_empty());
        slice_changed(Change::Deleted(&slice("web-abcde", 8080, &[])), &queue);
        assert_eq!(queue.next().await, web());
    }
}
