//! Which pods back a Service, and on which ports: the decision the EndpointSlice controller and
//! the Endpoints controller share, in Kubernetes' words (`ShouldPodBeInEndpoints`,
//! `podutil.FindPort`, `ShouldSetHostname`).
//!
//! Both controllers also share [`PodServices`], the pod event handler that enqueues the
//! Services a pod change concerns — including the ones a pod stopped matching when its labels
//! changed, which the new object alone cannot tell.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::Store;

use crate::informers::SharedInformers;
use crate::namespace_index::NamespacedStore;
use crate::pod_cache::PodCache;
use crate::pods::is_ready;
use crate::runtime::{Change, ObjectKey, WorkQueue};

/// The label naming the Service of an EndpointSlice (`discovery.LabelServiceName`).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label set on the endpoints of headless Services (`v1.IsHeadlessService`).
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";

/// A Service port resolved for one pod: the `targetPort` as a number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedPort {
    /// The Service port's name (empty for a single unnamed port).
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// One pod backing a Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend<'a> {
    pub pod: &'a Pod,
    /// The pod's IPv4 address.
    pub ip: String,
    /// The pod's Ready condition is True.
    pub serving: bool,
    /// The pod is being deleted.
    pub terminating: bool,
    /// Traffic may go there: `publishNotReadyAddresses`, or serving and not terminating.
    pub ready: bool,
    /// `spec.hostname` when the pod's subdomain names the Service (StatefulSet pods).
    pub hostname: Option<String>,
    pub node_name: Option<String>,
    /// The Service's ports this pod resolves, in the Service's order.
    pub ports: Vec<ResolvedPort>,
}

impl Backend<'_> {
    /// The endpoint's `targetRef`: the pod by kind, namespace, name and uid.
    pub fn target_ref(&self) -> ObjectReference {
        ObjectReference {
            kind: Some("Pod".into()),
            namespace: self.pod.metadata.namespace.clone(),
            name: self.pod.metadata.name.clone(),
            uid: self.pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }
    }
}

/// The Service's selector, when it has one that selects pods. A missing or empty selector
/// means the Service's endpoints are managed by someone else (Kubernetes reads an empty map as
/// none: it does not survive the API's protobuf round trip).
pub fn selector(service: &Service) -> Option<&std::collections::BTreeMap<String, String>> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Does this controller pair manage endpoints for the Service? Not for Services without a
/// selector, ExternalName Services, or Services being deleted.
pub fn is_managed(service: &Service) -> bool {
    let external_name = service
        .spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_some_and(|t| t == "ExternalName");
    selector(service).is_some() && !external_name && service.metadata.deletion_timestamp.is_none()
}

/// Does `service` select `pod`? Same namespace and every selector label equal.
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = selector(service) else {
        return false;
    };
    if service.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Is the Service headless (`clusterIP: None`, or no cluster IP)?
pub fn is_headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_none_or(|ip| ip.is_empty() || ip == "None")
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The pod's IPv4 address, from `status.podIPs` or `status.podIP`.
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let is_v4 = |ip: &str| ip.parse::<std::net::Ipv4Addr>().is_ok();
    status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .chain(status.pod_ip.as_deref())
        .find(|ip| is_v4(ip))
        .map(String::from)
}

/// Kubernetes' `ShouldPodBeInEndpoints`: the pod has an IP, has not finished (Succeeded or
/// Failed), and is not terminating unless terminating pods are included.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if matches!(phase(pod), "Succeeded" | "Failed") {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    pod_ipv4(pod).is_some()
}

/// Kubernetes' `podutil.FindPort`: a numeric `targetPort` as is (unset means the Service
/// port), a named one looked up in the pod's container ports (init containers included, for
/// sidecars) with the same protocol. `None` when the pod has no such port.
pub fn resolve_port(pod: &Pod, service_port: &ServicePort) -> Option<i32> {
    let protocol = service_port.protocol.as_deref().unwrap_or("TCP");
    match &service_port.target_port {
        None | Some(IntOrString::Int(0)) => Some(service_port.port),
        Some(IntOrString::Int(port)) => Some(*port),
        Some(IntOrString::String(name)) => {
            if let Ok(number) = name.parse::<i32>() {
                return Some(number);
            }
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// Kubernetes' `ShouldSetHostname`: the pod names a hostname and its subdomain is the
/// Service, in the same namespace.
pub fn hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace)
        .then(|| hostname.to_string())
}

/// The pods of `pods` that back `service`, sorted by pod name. `include_terminating` keeps
/// pods being deleted (EndpointSlices carry them with `terminating: true`; Endpoints only under
/// `publishNotReadyAddresses`).
pub fn backends<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
    include_terminating: bool,
) -> Vec<Backend<'a>> {
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let mut backends: Vec<Backend<'a>> = pods
        .into_iter()
        .filter(|pod| selects(service, pod) && should_be_in_endpoints(pod, include_terminating))
        .filter_map(|pod| {
            let ip = pod_ipv4(pod)?;
            let serving = is_ready(pod);
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|service_port| {
                    Some(ResolvedPort {
                        name: service_port.name.clone().unwrap_or_default(),
                        port: resolve_port(pod, service_port)?,
                        protocol: service_port
                            .protocol
                            .clone()
                            .unwrap_or_else(|| "TCP".into()),
                        app_protocol: service_port.app_protocol.clone(),
                    })
                })
                .collect();
            Some(Backend {
                pod,
                ip,
                serving,
                terminating,
                ready: publish_not_ready || (serving && !terminating),
                hostname: hostname(pod, service),
                node_name: pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .filter(|n| !n.is_empty()),
                ports,
            })
        })
        .collect();
    backends.sort_by(|a, b| a.pod.metadata.name.cmp(&b.pod.metadata.name));
    backends
}

/// Registers what both controllers decide from on the shared informers: every Service (each
/// change re-syncs it; a deleted one takes its endpoints along) and every Pod (re-syncing the
/// Services that select it, through [`PodServices`]). Returns the two caches.
pub fn watch_services_and_pods(
    informers: &mut SharedInformers,
    queue: &WorkQueue<ObjectKey>,
) -> (Store<Service>, PodCache) {
    let services = {
        let queue = queue.clone();
        informers.on_namespaced(move |c: Change<'_, Service>| queue.add(ObjectKey::of(c.object())))
    };
    let pods = {
        let queue = queue.clone();
        let services = services.clone();
        let mut handler = PodServices::default();
        informers.on_pods(move |c| handler.pod_changed(c, &services, &queue))
    };
    ((*services).clone(), pods)
}

/// The pod event handler both controllers use: enqueues every Service that selects the pod now
/// and every Service that selected it at its previous event (its labels may have changed, or it
/// is gone). Remembers, per pod, the Services it was last enqueued for.
#[derive(Debug, Default)]
pub struct PodServices {
    last: HashMap<ObjectKey, Vec<ObjectKey>>,
}

impl PodServices {
    pub fn pod_changed(
        &mut self,
        change: Change<'_, Pod>,
        services: &NamespacedStore<Service>,
        queue: &WorkQueue<ObjectKey>,
    ) {
        let pod = change.object();
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let pod_key = ObjectKey::of(pod);
        let now: Vec<ObjectKey> = match change {
            Change::Deleted(_) => Vec::new(),
            Change::Applied(_) => services
                .in_namespace(namespace)
                .iter()
                .filter(|service| selects(service, pod))
                .map(|service| ObjectKey::of(&**service))
                .collect(),
        };
        let before = if now.is_empty() {
            self.last.remove(&pod_key)
        } else {
            self.last.insert(pod_key, now.clone())
        };
        for key in before.into_iter().flatten().chain(now) {
            queue.add(key);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use std::collections::BTreeMap;

    /// A Service `web` selecting `app=web` with `ports` as (name, port, targetPort).
    pub(crate) fn service(ports: &[(&str, i32, IntOrString)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("uid-web".into()),
                labels: Some(BTreeMap::from([("team".into(), "a".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "web".into())])),
                cluster_ip: Some("10.43.0.10".into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, port, target)| ServicePort {
                            name: Some(name.to_string()).filter(|n| !n.is_empty()),
                            port: *port,
                            target_port: Some(target.clone()),
                            protocol: Some("TCP".into()),
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    /// A running pod `name` labelled `app=web` on node-1 with `ip`, ready or not, whose one
    /// container exposes `http` on `http_port`.
    pub(crate) fn pod(name: &str, ip: Option<&str>, ready: bool, http_port: i32) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                containers: vec![Container {
                    name: "app".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: http_port,
                        protocol: Some("TCP".into()),
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: ip.map(String::from),
                pod_ips: ip.map(|ip| vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    pub(crate) fn terminating(mut pod: Pod) -> Pod {
        pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        pod
    }

    fn summary(backends: &[Backend<'_>]) -> Vec<String> {
        backends
            .iter()
            .map(|b| {
                let ports: Vec<String> = b
                    .ports
                    .iter()
                    .map(|p| format!("{}:{}", p.name, p.port))
                    .collect();
                format!(
                    "{} {} ready={} serving={} terminating={} ports=[{}]",
                    b.pod.metadata.name.as_deref().unwrap_or(""),
                    b.ip,
                    b.ready,
                    b.serving,
                    b.terminating,
                    ports.join(",")
                )
            })
            .collect()
    }

    #[test]
    fn backends_follow_kubernetes_rules_for_inclusion_readiness_and_ports() {
        let named = || service(&[("http", 80, IntOrString::String("http".into()))]);
        let mut succeeded = pod("done", Some("10.42.0.9"), false, 8080);
        succeeded.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut other_labels = pod("other", Some("10.42.0.8"), true, 8080);
        other_labels.metadata.labels = None;
        let mut publishing = named();
        publishing
            .spec
            .as_mut()
            .unwrap()
            .publish_not_ready_addresses = Some(true);
        // (case, service, pods, include terminating, expected)
        type Case = (&'static str, Service, Vec<Pod>, bool, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            (
                "a named targetPort resolves per pod; pods without an IP, finished or unselected are left out",
                named(),
                vec![
                    pod("a", Some("10.42.0.5"), true, 8080),
                    pod("b", Some("10.42.0.6"), false, 9090),
                    pod("c", None, true, 8080),
                    succeeded.clone(),
                    other_labels.clone(),
                ],
                false,
                vec![
                    "a 10.42.0.5 ready=true serving=true terminating=false ports=[http:8080]",
                    "b 10.42.0.6 ready=false serving=false terminating=false ports=[http:9090]",
                ],
            ),
            (
                "a numeric targetPort is used as is; a named one the pod lacks drops that port",
                service(&[
                    ("http", 80, IntOrString::Int(8080)),
                    ("metrics", 9100, IntOrString::String("metrics".into())),
                ]),
                vec![pod("a", Some("10.42.0.5"), true, 7000)],
                false,
                vec!["a 10.42.0.5 ready=true serving=true terminating=false ports=[http:8080]"],
            ),
            (
                "terminating pods are kept only when asked, and are never ready",
                named(),
                vec![terminating(pod("a", Some("10.42.0.5"), true, 8080))],
                true,
                vec!["a 10.42.0.5 ready=false serving=true terminating=true ports=[http:8080]"],
            ),
            (
                "terminating pods are left out otherwise",
                named(),
                vec![terminating(pod("a", Some("10.42.0.5"), true, 8080))],
                false,
                vec![],
            ),
            (
                "publishNotReadyAddresses makes every pod ready",
                publishing,
                vec![pod("a", Some("10.42.0.5"), false, 8080)],
                false,
                vec!["a 10.42.0.5 ready=true serving=false terminating=false ports=[http:8080]"],
            ),
        ];
        for (case, service, pods, include_terminating, expected) in cases {
            let got = backends(&service, &pods, include_terminating);
            assert_eq!(summary(&got), expected, "{case}");
        }
    }

    #[test]
    fn the_hostname_is_set_only_when_the_subdomain_names_the_service() {
        let service = service(&[("", 80, IntOrString::Int(80))]);
        let cases = [
            (Some("web-0"), Some("web"), Some("web-0")),
            (Some("web-0"), Some("other"), None),
            (None, Some("web"), None),
            (Some("web-0"), None, None),
        ];
        for (name, subdomain, expected) in cases {
            let mut pod = pod("web-0", Some("10.42.0.5"), true, 80);
            let spec = pod.spec.as_mut().unwrap();
            spec.hostname = name.map(String::from);
            spec.subdomain = subdomain.map(String::from);
            assert_eq!(
                hostname(&pod, &service).as_deref(),
                expected,
                "{name:?}.{subdomain:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_pod_whose_labels_change_enqueues_the_service_it_left() {
        let mut writer = crate::namespace_index::NamespacedWriter::<Service>::default();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(service(&[])));
        let services = writer.as_reader();
        let queue = WorkQueue::new();
        let mut handler = PodServices::default();
        let web = ObjectKey::new("default", "web");

        let mut pod = pod("a", Some("10.42.0.5"), true, 80);
        handler.pod_changed(Change::Applied(&pod), &services, &queue);
        assert_eq!(queue.next().await, web);
        queue.done(&web);

        pod.metadata.labels = None;
        handler.pod_changed(Change::Applied(&pod), &services, &queue);
        assert_eq!(queue.next().await, web, "the service it left");
        queue.done(&web);

        handler.pod_changed(Change::Deleted(&pod), &services, &queue);
        assert!(queue.is_empty(), "nothing selected it any more");
    }
}
