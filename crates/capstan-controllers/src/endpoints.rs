//! The Endpoints controller, as kube-controller-manager's: the legacy `core/v1` Endpoints
//! object of the same name as each Service with a selector, listing its pods' addresses in
//! `subsets` — ready ones in `addresses`, the others in `notReadyAddresses` — grouped by the
//! ports they resolve (`endpoints.RepackSubsets`). Its labels are the Service's, plus
//! `service.kubernetes.io/headless` for a headless Service, as Kubernetes sets them. A deleted
//! Service's Endpoints are deleted.
//!
//! Which pods and ports come from [`crate::service_backends`], shared with the EndpointSlice
//! controller. Terminating pods are left out unless the Service publishes not-ready addresses.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;

use crate::actions::{ActionError, Actions, EventRecord};
use crate::informers::SharedInformers;
use crate::pod_cache::PodCache;
use crate::runtime::{Action, Change, ObjectKey, Reconciler, WorkQueue};
use crate::service_backends::{
    Backend, LABEL_HEADLESS, ResolvedPort, backends, is_headless, is_managed,
    watch_services_and_pods,
};

/// The events' `source.component`, as Kubernetes names the controller.
pub const COMPONENT: &str = "endpoint-controller";
/// `--concurrent-endpoint-syncs` default.
pub const DEFAULT_WORKERS: usize = 5;
/// The Warning event when an Endpoints object cannot be created.
pub const FAILED_TO_CREATE_ENDPOINT: &str = "FailedToCreateEndpoint";
/// The Warning event when an Endpoints object cannot be updated.
pub const FAILED_TO_UPDATE_ENDPOINT: &str = "FailedToUpdateEndpoint";

/// Why a reconcile of a Service failed; the key is retried with backoff (a conflict or an
/// AlreadyExists means the cache was behind, and the retry reads fresher state).
#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    #[error("creating endpoints {0}: {1}")]
    Create(ObjectKey, ActionError),
    #[error("updating endpoints {0}: {1}")]
    Update(ObjectKey, ActionError),
    #[error("deleting endpoints {0}: {1}")]
    Delete(ObjectKey, ActionError),
}

fn address(backend: &Backend<'_>) -> EndpointAddress {
    EndpointAddress {
        ip: backend.ip.clone(),
        hostname: backend.hostname.clone(),
        node_name: backend.node_name.clone(),
        target_ref: Some(backend.target_ref()),
    }
}

fn endpoint_port(port: &ResolvedPort) -> EndpointPort {
    EndpointPort {
        name: Some(port.name.clone()).filter(|n| !n.is_empty()),
        port: port.port,
        protocol: Some(port.protocol.clone()),
        app_protocol: port.app_protocol.clone(),
    }
}

/// The subsets of the Service's Endpoints: each backing pod with the ports it resolves, repacked
/// so that pods with the same ports share a subset; addresses sorted by IP, as
/// `RepackSubsets` leaves them. A pod that resolves none of the Service's ports is left out,
/// except for a headless Service without ports.
pub fn subsets(service: &Service, backends: &[Backend<'_>]) -> Vec<EndpointSubset> {
    let headless_without_ports = service
        .spec
        .as_ref()
        .is_some_and(|s| s.ports.as_ref().is_none_or(Vec::is_empty))
        && service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    let mut grouped: BTreeMap<Vec<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for backend in backends {
        if backend.ports.is_empty() && !headless_without_ports {
            continue;
        }
        let mut ports = backend.ports.clone();
        ports.sort();
        let (ready, not_ready) = grouped.entry(ports).or_default();
        if backend.ready {
            ready.push(address(backend));
        } else {
            not_ready.push(address(backend));
        }
    }
    grouped
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: Some(ready).filter(|a| !a.is_empty()),
                not_ready_addresses: Some(not_ready).filter(|a| !a.is_empty()),
                ports: Some(ports.iter().map(endpoint_port).collect::<Vec<_>>())
                    .filter(|p| !p.is_empty()),
            }
        })
        .collect()
}

/// The labels of the Service's Endpoints: the Service's own, plus the headless marker.
fn endpoints_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if is_headless(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    } else {
        labels.remove(LABEL_HEADLESS);
    }
    labels
}

/// What to write for `service`, given its current Endpoints: `None` when they are current.
pub fn desired_endpoints(
    service: &Service,
    backends: &[Backend<'_>],
    current: Option<&Endpoints>,
) -> Option<Endpoints> {
    let subsets = subsets(service, backends);
    let labels = endpoints_labels(service);
    let current_subsets = current.map(|c| c.subsets.clone().unwrap_or_default());
    let current_labels = current.map(|c| c.metadata.labels.clone().unwrap_or_default());
    if current_subsets.as_ref() == Some(&subsets) && current_labels.as_ref() == Some(&labels) {
        return None;
    }
    let mut endpoints = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        subsets: None,
    });
    endpoints.metadata.labels = Some(labels);
    endpoints.subsets = Some(subsets).filter(|s| !s.is_empty());
    Some(endpoints)
}

/// The Endpoints controller: its caches and effects.
pub struct EndpointsController<A> {
    pub services: Store<Service>,
    pub pods: PodCache,
    pub endpoints: Store<Endpoints>,
    pub actions: A,
}

impl<A: Actions> Reconciler for EndpointsController<A> {
    type Error = EndpointsError;

    fn name(&self) -> &'static str {
        COMPONENT
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, EndpointsError> {
        let current = self.endpoints.get(&key.object_ref());
        let Some(service) = self.services.get(&key.object_ref()) else {
            // The Service is gone: so are its Endpoints.
            if current.is_some() {
                match self
                    .actions
                    .delete_endpoints(&key.namespace, &key.name)
                    .await
                {
                    Ok(()) | Err(ActionError::NotFound(_)) => {}
                    Err(error) => return Err(EndpointsError::Delete(key.clone(), error)),
                }
            }
            return Ok(Action::AwaitChange);
        };
        if !is_managed(&service) {
            return Ok(Action::AwaitChange);
        }
        let pods: Vec<Arc<Pod>> = self.pods.in_namespace(&key.namespace);
        let include_terminating = service
            .spec
            .as_ref()
            .and_then(|s| s.publish_not_ready_addresses)
            == Some(true);
        let backends = backends(&service, pods.iter().map(|p| &**p), include_terminating);
        let Some(endpoints) = desired_endpoints(&service, &backends, current.as_deref()) else {
            return Ok(Action::AwaitChange);
        };
        let (namespace, name) = (&key.namespace, &key.name);
        if current.is_none() {
            if let Err(error) = self.actions.create_endpoints(namespace, &endpoints).await {
                if !matches!(error, ActionError::AlreadyExists(_)) {
                    self.actions.record_event(EventRecord::warning(
                        COMPONENT,
                        &endpoints,
                        FAILED_TO_CREATE_ENDPOINT,
                        format!(
                            "Failed to create endpoint for service {namespace}/{name}: {error}"
                        ),
                    ));
                }
                return Err(EndpointsError::Create(key.clone(), error));
            }
        } else if let Err(error) = self.actions.update_endpoints(&endpoints).await {
            if !matches!(error, ActionError::Conflict(_)) {
                self.actions.record_event(EventRecord::warning(
                    COMPONENT,
                    &endpoints,
                    FAILED_TO_UPDATE_ENDPOINT,
                    format!("Failed to update endpoint {namespace}/{name}: {error}"),
                ));
            }
            return Err(EndpointsError::Update(key.clone(), error));
        }
        Ok(Action::AwaitChange)
    }
}

/// Event handler for Endpoints: only a deletion re-syncs the Service of that name (its
/// Endpoints come back), as in Kubernetes. Endpoints written by others are not watched for:
/// Endpoints created before their Service must not be deleted as leftovers.
pub fn endpoints_changed(change: Change<'_, Endpoints>, queue: &WorkQueue<ObjectKey>) {
    if let Change::Deleted(endpoints) = change {
        queue.add(ObjectKey::of(endpoints));
    }
}

/// The annotation of Endpoints used as leader-election locks, which have no Service and are
/// never leftovers (`resourcelock.LeaderElectionRecordAnnotationKey`).
pub const LEADER_ELECTION_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// The Endpoints whose Service may be gone, queued once at start (`checkLeftoverEndpoints`):
/// those of Services deleted while the controller was down are deleted then.
pub fn leftover_keys(endpoints: &Store<Endpoints>) -> Vec<ObjectKey> {
    endpoints
        .state()
        .iter()
        .filter(|e| {
            e.metadata
                .annotations
                .as_ref()
                .is_none_or(|a| !a.contains_key(LEADER_ELECTION_ANNOTATION))
        })
        .map(|e| ObjectKey::of(&**e))
        .collect()
}

/// Registers the controller on the shared informers (Services, Pods, Endpoints) and returns it,
/// to be polled once their caches are filled; runs until dropped.
pub fn run(
    informers: &mut SharedInformers,
    client: kube::Client,
    workers: usize,
) -> impl Future<Output = ()> + use<> {
    let queue = WorkQueue::new();
    let (services, pods) = watch_services_and_pods(informers, &queue);
    let endpoints = {
        let queue = queue.clone();
        informers.on(move |c| endpoints_changed(c, &queue))
    };
    async move {
        for key in leftover_keys(&endpoints) {
            queue.add(key);
        }
        let controller = Arc::new(EndpointsController {
            services,
            pods,
            endpoints,
            actions: crate::actions::KubeActions::new(client),
        });
        crate::runtime::run_workers(controller, queue, workers).await;
    }
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

    fn controller(
        services: &[Service],
        pods: &[Pod],
        endpoints: &[Endpoints],
    ) -> EndpointsController<RecordingActions> {
        let mut s = Writer::<Service>::default();
        let mut p = PodCacheWriter::default();
        let mut e = Writer::<Endpoints>::default();
        services
            .iter()
            .for_each(|x| s.apply_watcher_event(&Event::Apply(x.clone())));
        pods.iter()
            .for_each(|x| p.apply_watcher_event(&Event::Apply(x.clone())));
        endpoints
            .iter()
            .for_each(|x| e.apply_watcher_event(&Event::Apply(x.clone())));
        EndpointsController {
            services: s.as_reader(),
            pods: p.as_reader(),
            endpoints: e.as_reader(),
            actions: RecordingActions::new(),
        }
    }

    /// The Endpoints the controller would create for `pods` of `service`, as stored.
    fn current(service: &Service, pods: &[Pod]) -> Endpoints {
        let mut endpoints =
            desired_endpoints(service, &backends(service, pods, false), None).unwrap();
        endpoints.metadata.resource_version = Some("1".into());
        endpoints
    }

    #[tokio::test]
    async fn endpoints_follow_the_pods_of_the_service() {
        let a = pod("a", Some("10.42.0.5"), true, 8080);
        let b = pod("b", Some("10.42.0.6"), true, 8080);
        let unready_b = pod("b", Some("10.42.0.6"), false, 8080);
        let mut publishing = http_service();
        publishing
            .spec
            .as_mut()
            .unwrap()
            .publish_not_ready_addresses = Some(true);
        let mut no_selector = http_service();
        no_selector.spec.as_mut().unwrap().selector = None;
        let mut headless = service(&[]);
        headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        // (case, services, pods, existing endpoints, expected actions)
        type Case = (
            &'static str,
            Vec<Service>,
            Vec<Pod>,
            Vec<Endpoints>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "ready and unready pods go to addresses and notReadyAddresses",
                vec![http_service()],
                vec![unready_b.clone(), a.clone()],
                vec![],
                vec![
                    "create endpoints web subsets=[ports=[http:8080/TCP] addresses=[10.42.0.5] notReady=[10.42.0.6]]",
                ],
            ),
            (
                "pods whose named port differs get their own subset",
                vec![http_service()],
                vec![a.clone(), pod("c", Some("10.42.0.7"), true, 9090)],
                vec![],
                vec![
                    "create endpoints web subsets=[ports=[http:8080/TCP] addresses=[10.42.0.5] notReady=[]; ports=[http:9090/TCP] addresses=[10.42.0.7] notReady=[]]",
                ],
            ),
            (
                "current endpoints are not written",
                vec![http_service()],
                vec![a.clone(), b.clone()],
                vec![current(&http_service(), &[a.clone(), b.clone()])],
                vec![],
            ),
            (
                "a readiness change updates them",
                vec![http_service()],
                vec![a.clone(), unready_b.clone()],
                vec![current(&http_service(), &[a.clone(), b.clone()])],
                vec![
                    "update endpoints web subsets=[ports=[http:8080/TCP] addresses=[10.42.0.5] notReady=[10.42.0.6]]",
                ],
            ),
            (
                "terminating pods are left out",
                vec![http_service()],
                vec![a.clone(), terminating(b.clone())],
                vec![current(&http_service(), &[a.clone(), b.clone()])],
                vec![
                    "update endpoints web subsets=[ports=[http:8080/TCP] addresses=[10.42.0.5] notReady=[]]",
                ],
            ),
            (
                "publishNotReadyAddresses puts every pod, terminating ones too, in addresses",
                vec![publishing.clone()],
                vec![unready_b.clone(), terminating(a.clone())],
                vec![],
                vec![
                    "create endpoints web subsets=[ports=[http:8080/TCP] addresses=[10.42.0.5,10.42.0.6] notReady=[]]",
                ],
            ),
            (
                "a headless service without ports lists addresses alone",
                vec![headless],
                vec![a.clone()],
                vec![],
                vec!["create endpoints web subsets=[ports=[] addresses=[10.42.0.5] notReady=[]]"],
            ),
            (
                "a service without pods gets empty endpoints",
                vec![http_service()],
                vec![],
                vec![],
                vec!["create endpoints web subsets=[]"],
            ),
            (
                "a service without a selector is left alone",
                vec![no_selector],
                vec![a.clone()],
                vec![],
                vec![],
            ),
            (
                "a deleted service's endpoints are deleted",
                vec![],
                vec![a.clone()],
                vec![current(&http_service(), std::slice::from_ref(&a))],
                vec!["delete endpoints web"],
            ),
        ];
        for (case, services, pods, endpoints, expected) in cases {
            let controller = controller(&services, &pods, &endpoints);
            let result = controller
                .reconcile(&ObjectKey::new("default", "web"))
                .await;
            assert!(result.is_ok(), "{case}: {result:?}");
            assert_eq!(controller.actions.summaries(), expected, "{case}");
        }
    }

    #[tokio::test]
    async fn created_endpoints_carry_labels_and_address_references() {
        let mut stateful = pod("web-0", Some("10.42.0.5"), true, 8080);
        let spec = stateful.spec.as_mut().unwrap();
        spec.hostname = Some("web-0".into());
        spec.subdomain = Some("web".into());
        let mut headless = http_service();
        headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let controller = controller(&[headless], &[stateful], &[]);
        controller
            .reconcile(&ObjectKey::new("default", "web"))
            .await
            .unwrap();
        let Recorded::CreateEndpoints(endpoints) = &controller.actions.recorded()[0] else {
            panic!("endpoints are created");
        };
        let expected = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"team": "a", "service.kubernetes.io/headless": ""},
            },
            "subsets": [{
                "addresses": [{
                    "ip": "10.42.0.5",
                    "hostname": "web-0",
                    "nodeName": "node-1",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0", "uid": "uid-web-0"},
                }],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }],
        });
        assert_eq!(serde_json::to_value(&**endpoints).unwrap(), expected);
    }

    #[tokio::test]
    async fn only_deleted_endpoints_and_leftovers_at_start_are_queued() {
        let queue = WorkQueue::new();
        let a = pod("a", Some("10.42.0.5"), true, 8080);
        let mine = current(&http_service(), std::slice::from_ref(&a));
        endpoints_changed(Change::Applied(&mine), &queue);
        assert!(
            queue.is_empty(),
            "endpoints written by anyone are not judged"
        );
        endpoints_changed(Change::Deleted(&mine), &queue);
        assert_eq!(queue.next().await, ObjectKey::new("default", "web"));

        let mut lock = mine.clone();
        lock.metadata.name = Some("lock".into());
        lock.metadata.annotations = Some(BTreeMap::from([(
            LEADER_ELECTION_ANNOTATION.to_string(),
            "{}".to_string(),
        )]));
        let controller = controller(&[], &[], &[mine, lock]);
        assert_eq!(
            leftover_keys(&controller.endpoints),
            [ObjectKey::new("default", "web")],
            "leader-election locks are never leftovers"
        );
    }

    #[tokio::test]
    async fn a_refused_update_is_a_warning_event_but_a_conflict_is_not() {
        let a = pod("a", Some("10.42.0.5"), false, 8080);
        let existing = current(&http_service(), &[pod("a", Some("10.42.0.5"), true, 8080)]);
        let controller = controller(&[http_service()], &[a], &[existing]);
        let key = ObjectKey::new("default", "web");
        controller
            .actions
            .fail("update endpoints", ActionError::Conflict("stale".into()));
        controller
            .actions
            .fail("update endpoints", ActionError::Failed("forbidden".into()));
        assert!(controller.reconcile(&key).await.is_err());
        assert!(controller.actions.events().is_empty());
        assert!(controller.reconcile(&key).await.is_err());
        assert_eq!(
            controller.actions.events(),
            ["Warning FailedToUpdateEndpoint Failed to update endpoint default/web: forbidden"]
        );
    }
}
