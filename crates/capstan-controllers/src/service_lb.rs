//! The load-balancer status of `type: LoadBalancer` Services, as k3s's ServiceLB answers them
//! on clusters without a cloud: the Service is reachable on every Ready node, so its
//! `status.loadBalancer.ingress` lists the InternalIP of each Ready node (sorted, without
//! duplicates) with `ipMode: VIP`, kept current as nodes come, go or change readiness, and
//! cleared when the Service stops being a LoadBalancer.
//!
//! Services with a `spec.loadBalancerClass` belong to another load-balancer implementation and
//! are never touched (Kubernetes' service controller leaves them alone the same way). The
//! status is written through the status subresource.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use kube::runtime::reflector::Store;

use crate::actions::{ActionError, Actions};
use crate::informers::SharedInformers;
use crate::runtime::{Action, Change, ObjectKey, Reconciler, WorkQueue};

/// `ipMode` of the ingress points: traffic to them is handled as if sent to the Service's
/// virtual IP (the node's service proxy answers it).
pub const IP_MODE_VIP: &str = "VIP";

/// Why a reconcile of a Service failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("writing the load-balancer status of service {service}: {source}")]
pub struct ServiceLbError {
    pub service: ObjectKey,
    pub source: ActionError,
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The ingress points of LoadBalancer Services: the InternalIP of every Ready node, sorted and
/// deduplicated.
pub fn node_ingress<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<LoadBalancerIngress> {
    let mut ips: Vec<String> = nodes
        .into_iter()
        .filter(|node| is_ready(node))
        .flat_map(|node| {
            node.status
                .as_ref()
                .and_then(|s| s.addresses.clone())
                .unwrap_or_default()
        })
        .filter(|address| address.type_ == "InternalIP" && !address.address.is_empty())
        .map(|address| address.address)
        .collect();
    ips.sort_by_key(|ip| {
        // Numeric order for IPv4 (10.0.0.9 before 10.0.0.10), text order otherwise.
        (ip.parse::<std::net::IpAddr>().ok(), ip.clone())
    });
    ips.dedup();
    ips.into_iter()
        .map(|ip| LoadBalancerIngress {
            ip: Some(ip),
            ip_mode: Some(IP_MODE_VIP.into()),
            ..LoadBalancerIngress::default()
        })
        .collect()
}

/// Does this controller answer the Service? LoadBalancers without a class.
fn has_foreign_class(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_class.as_deref())
        .is_some_and(|class| !class.is_empty())
}

fn is_load_balancer(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// The ingress list to write for `service`, or `None` when its status is already right or not
/// ours to write.
pub fn decide(
    service: &Service,
    ingress: &[LoadBalancerIngress],
) -> Option<Vec<LoadBalancerIngress>> {
    if has_foreign_class(service) {
        return None;
    }
    let current = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    let desired = if is_load_balancer(service) {
        ingress.to_vec()
    } else {
        Vec::new()
    };
    (current != desired).then_some(desired)
}

/// The ServiceLB status controller: its caches and effects.
pub struct ServiceLbController<A> {
    pub services: Store<Service>,
    pub nodes: Store<Node>,
    pub actions: A,
}

impl<A: Actions> Reconciler for ServiceLbController<A> {
    type Error = ServiceLbError;

    fn name(&self) -> &'static str {
        "service-lb-controller"
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, ServiceLbError> {
        let Some(service) = self.services.get(&key.object_ref()) else {
            return Ok(Action::AwaitChange);
        };
        let nodes = self.nodes.state();
        let ingress = node_ingress(nodes.iter().map(|n| &**n));
        let Some(desired) = decide(&service, &ingress) else {
            return Ok(Action::AwaitChange);
        };
        match self
            .actions
            .patch_service_load_balancer_ingress(&service, &desired)
            .await
        {
            Ok(()) | Err(ActionError::NotFound(_)) => Ok(Action::AwaitChange),
            Err(source) => Err(ServiceLbError {
                service: key.clone(),
                source,
            }),
        }
    }
}

/// Event handler for Services: every change re-syncs the Service.
pub fn service_changed(change: Change<'_, Service>, queue: &WorkQueue<ObjectKey>) {
    queue.add(ObjectKey::of(change.object()));
}

/// Event handler for nodes: a node coming, going or changing readiness or address changes
/// every LoadBalancer Service's ingress. Unchanged results are not written, so frequent node
/// status updates cost a comparison each.
pub fn node_changed(
    _change: Change<'_, Node>,
    services: &Store<Service>,
    queue: &WorkQueue<ObjectKey>,
) {
    for service in services.state() {
        if is_load_balancer(&service) && !has_foreign_class(&service) {
            queue.add(ObjectKey::of(&*service));
        }
    }
}

/// Registers the controller on the shared informers (Services, Nodes) and returns it, to be
/// polled once their caches are filled; runs until dropped.
pub fn run(
    informers: &mut SharedInformers,
    client: kube::Client,
) -> impl Future<Output = ()> + use<> {
    let queue = WorkQueue::new();
    let services = {
        let queue = queue.clone();
        informers.on(move |c| service_changed(c, &queue))
    };
    let nodes = {
        let queue = queue.clone();
        let services = services.clone();
        informers.on(move |c| node_changed(c, &services, &queue))
    };
    async move {
        // Services seen before the nodes were cached are looked at again with every node known.
        for service in services.state() {
            queue.add(ObjectKey::of(&*service));
        }
        let controller = Arc::new(ServiceLbController {
            services,
            nodes,
            actions: crate::actions::KubeActions::new(client),
        });
        crate::runtime::run_workers(controller, queue, 1).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::RecordingActions;
    use k8s_openapi::api::core::v1::{
        LoadBalancerStatus, NodeAddress, NodeCondition, NodeStatus, ServiceSpec, ServiceStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    fn node(name: &str, ready: &str, addresses: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..NodeCondition::default()
                }]),
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(kind, address)| NodeAddress {
                            type_: kind.to_string(),
                            address: address.to_string(),
                        })
                        .collect(),
                ),
                ..NodeStatus::default()
            }),
        }
    }

    fn service(type_: &str, class: Option<&str>, ingress: &[&str]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                load_balancer_class: class.map(String::from),
                ..ServiceSpec::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(
                        ingress
                            .iter()
                            .map(|ip| LoadBalancerIngress {
                                ip: Some(ip.to_string()),
                                ip_mode: Some(IP_MODE_VIP.into()),
                                ..LoadBalancerIngress::default()
                            })
                            .collect(),
                    ),
                }),
                conditions: None,
            }),
        }
    }

    #[tokio::test]
    async fn load_balancer_services_list_the_internal_ips_of_ready_nodes() {
        let nodes = vec![
            node(
                "b",
                "True",
                &[("InternalIP", "10.0.0.10"), ("Hostname", "b")],
            ),
            node(
                "a",
                "True",
                &[("InternalIP", "10.0.0.9"), ("ExternalIP", "1.2.3.4")],
            ),
            node("c", "False", &[("InternalIP", "10.0.0.11")]),
            node("d", "Unknown", &[("InternalIP", "10.0.0.12")]),
            node("e", "True", &[("InternalIP", "10.0.0.9")]),
        ];
        // (case, service, expected actions)
        let cases = [
            (
                "a new LoadBalancer gets every Ready node, sorted and deduplicated",
                service("LoadBalancer", None, &[]),
                vec!["set loadBalancer ingress of service web to [10.0.0.9,10.0.0.10]"],
            ),
            (
                "a current status is not written",
                service("LoadBalancer", None, &["10.0.0.9", "10.0.0.10"]),
                vec![],
            ),
            (
                "a node gone is removed",
                service(
                    "LoadBalancer",
                    None,
                    &["10.0.0.9", "10.0.0.10", "10.0.0.11"],
                ),
                vec!["set loadBalancer ingress of service web to [10.0.0.9,10.0.0.10]"],
            ),
            (
                "a Service that stopped being a LoadBalancer is cleared",
                service("ClusterIP", None, &["10.0.0.9"]),
                vec!["set loadBalancer ingress of service web to []"],
            ),
            (
                "a ClusterIP Service without status is left alone",
                service("ClusterIP", None, &[]),
                vec![],
            ),
            (
                "another implementation's class is left alone",
                service("LoadBalancer", Some("example.com/lb"), &[]),
                vec![],
            ),
        ];
        for (case, service, expected) in cases {
            let mut services = Writer::<Service>::default();
            services.apply_watcher_event(&Event::Apply(service));
            let mut node_writer = Writer::<Node>::default();
            for n in &nodes {
                node_writer.apply_watcher_event(&Event::Apply(n.clone()));
            }
            let controller = ServiceLbController {
                services: services.as_reader(),
                nodes: node_writer.as_reader(),
                actions: RecordingActions::new(),
            };
            let result = controller
                .reconcile(&ObjectKey::new("default", "web"))
                .await;
            assert!(result.is_ok(), "{case}: {result:?}");
            assert_eq!(controller.actions.summaries(), expected, "{case}");
        }
    }

    #[test]
    fn ingress_points_are_in_vip_mode() {
        let ingress = node_ingress(&[node("a", "True", &[("InternalIP", "10.0.0.9")])]);
        assert_eq!(
            serde_json::to_value(&ingress).unwrap(),
            serde_json::json!([{"ip": "10.0.0.9", "ipMode": "VIP"}])
        );
    }

    #[tokio::test]
    async fn a_node_change_enqueues_only_our_load_balancers() {
        let mut services = Writer::<Service>::default();
        services.apply_watcher_event(&Event::Apply(service("LoadBalancer", None, &[])));
        let mut other = service("LoadBalancer", Some("example.com/lb"), &[]);
        other.metadata.name = Some("other".into());
        services.apply_watcher_event(&Event::Apply(other));
        let mut plain = service("ClusterIP", None, &[]);
        plain.metadata.name = Some("plain".into());
        services.apply_watcher_event(&Event::Apply(plain));
        let queue = WorkQueue::new();
        let n = node("a", "False", &[]);
        node_changed(Change::Applied(&n), &services.as_reader(), &queue);
        assert_eq!(queue.next().await, ObjectKey::new("default", "web"));
        assert!(queue.is_empty());
    }
}
