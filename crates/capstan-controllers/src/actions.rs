//! The effects controllers have on the cluster, behind one trait: [`Actions`]. Controllers decide
//! from cached snapshots and act only through it, so that tests run the same decisions against
//! [`RecordingActions`] and assert the exact list of actions, while the binary runs them against
//! the API with [`KubeActions`].
//!
//! Writes that depend on what the controller read carry the `resourceVersion` it read (updates)
//! or the `uid` (deletes, ownership patches), so a decision taken from a stale cache fails with a
//! conflict and is retried from fresher state rather than applied blindly.

use std::future::Future;
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Endpoints, Event, EventSource, LoadBalancerIngress, Node, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::{Api, Resource};
use serde_json::json;

/// Why an action failed. Variants follow the API's status reasons that change what a controller
/// does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The object is gone (404). Usually fine: someone else already did what we wanted.
    #[error("not found: {0}")]
    NotFound(String),
    /// The name is taken (409 AlreadyExists). The cache was slow, or a name collided.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The object changed since it was read (409 Conflict, or a failed uid precondition).
    /// Retrying from fresher state helps.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else: refused (invalid, forbidden, quota) or the API was unreachable. A retry
    /// helps only if the cause goes away.
    #[error("{0}")]
    Failed(String),
}

impl From<kube::Error> for ActionError {
    fn from(error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) => match (status.code, status.reason.as_str()) {
                (404, _) => ActionError::NotFound(status.message.clone()),
                (409, "AlreadyExists") => ActionError::AlreadyExists(status.message.clone()),
                (409, _) => ActionError::Conflict(status.message.clone()),
                _ => ActionError::Failed(status.message.clone()),
            },
            _ => ActionError::Failed(error.to_string()),
        }
    }
}

/// An event about an object, in `kubectl describe`'s words: `Normal ScalingReplicaSet Scaled up
/// replica set web-5d8f from 0 to 3`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub involved: ObjectReference,
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
    /// The writing controller (`deployment-controller`), the event's `source.component`.
    pub component: &'static str,
}

impl EventRecord {
    pub fn normal<K: Resource<DynamicType = ()>>(
        component: &'static str,
        object: &K,
        reason: &'static str,
        message: String,
    ) -> Self {
        EventRecord {
            involved: object_reference(object),
            type_: "Normal",
            reason,
            message,
            component,
        }
    }

    pub fn warning<K: Resource<DynamicType = ()>>(
        component: &'static str,
        object: &K,
        reason: &'static str,
        message: String,
    ) -> Self {
        EventRecord {
            type_: "Warning",
            ..EventRecord::normal(component, object, reason, message)
        }
    }
}

/// The `involvedObject` reference of an object.
pub fn object_reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

/// Every effect the workload controllers have. Methods are cancel-safe in the sense that a
/// cancelled call either happened or did not; none is retried internally.
pub trait Actions: Send + Sync + 'static {
    /// Creates a pod (named by `generateName`); returns it as stored, with its uid.
    fn create_pod(
        &self,
        namespace: &str,
        pod: &Pod,
    ) -> impl Future<Output = Result<Pod, ActionError>> + Send;

    /// Deletes the pod `name` if it still has `uid`. Not idempotent in outcome (a second call
    /// answers NotFound), which callers treat as success.
    fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Replaces the `ownerReferences` of the pod `name` if it still has `uid` and
    /// `resourceVersion` (adoption and release).
    fn patch_pod_owner_references(
        &self,
        pod: &Pod,
        owner_references: &[OwnerReference],
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Creates a ReplicaSet with a fixed name; AlreadyExists when the name is taken.
    fn create_replica_set(
        &self,
        namespace: &str,
        replica_set: &ReplicaSet,
    ) -> impl Future<Output = Result<ReplicaSet, ActionError>> + Send;

    /// Writes `spec.replicas`, `spec.minReadySeconds` and `metadata.annotations` of a
    /// ReplicaSet, guarded by its `resourceVersion`; returns it as stored.
    fn update_replica_set(
        &self,
        replica_set: &ReplicaSet,
    ) -> impl Future<Output = Result<ReplicaSet, ActionError>> + Send;

    /// Writes the status of a ReplicaSet (the status subresource), guarded by its
    /// `resourceVersion`.
    fn update_replica_set_status(
        &self,
        replica_set: &ReplicaSet,
    ) -> impl Future<Output = Result<ReplicaSet, ActionError>> + Send;

    /// Deletes a ReplicaSet if it still has `uid`.
    fn delete_replica_set(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Replaces the `ownerReferences` of a ReplicaSet (adoption and release by a Deployment).
    fn patch_replica_set_owner_references(
        &self,
        replica_set: &ReplicaSet,
        owner_references: &[OwnerReference],
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Writes the metadata annotations and spec of a Deployment (revision annotation,
    /// rollback), guarded by its `resourceVersion`; returns it as stored.
    fn update_deployment(
        &self,
        deployment: &Deployment,
    ) -> impl Future<Output = Result<Deployment, ActionError>> + Send;

    /// Writes the status of a Deployment, guarded by its `resourceVersion`.
    fn update_deployment_status(
        &self,
        deployment: &Deployment,
    ) -> impl Future<Output = Result<Deployment, ActionError>> + Send;

    /// Writes the status of a Job, guarded by its `resourceVersion`; returns it as stored.
    fn update_job_status(&self, job: &Job)
    -> impl Future<Output = Result<Job, ActionError>> + Send;

    /// Creates a Job with a fixed name (a CronJob's); AlreadyExists when the name is taken.
    fn create_job(
        &self,
        namespace: &str,
        job: &Job,
    ) -> impl Future<Output = Result<Job, ActionError>> + Send;

    /// Deletes a Job if it still has `uid`, with background propagation: the garbage collector
    /// deletes its pods afterwards (TTL-after-finished, CronJob history and Replace).
    fn delete_job(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Writes the status of a CronJob, guarded by its `resourceVersion`.
    fn update_cron_job_status(
        &self,
        cron_job: &CronJob,
    ) -> impl Future<Output = Result<CronJob, ActionError>> + Send;

    /// Writes the status of a PodDisruptionBudget (the status subresource), guarded by its
    /// `resourceVersion` so that an allowance the eviction API took meanwhile is never
    /// overwritten: that write answers Conflict and the budget is recomputed.
    fn update_pod_disruption_budget_status(
        &self,
        budget: &PodDisruptionBudget,
    ) -> impl Future<Output = Result<PodDisruptionBudget, ActionError>> + Send;

    /// Writes the status of a DaemonSet, guarded by its `resourceVersion`.
    fn update_daemon_set_status(
        &self,
        daemon_set: &DaemonSet,
    ) -> impl Future<Output = Result<DaemonSet, ActionError>> + Send;

    /// Writes the status of a StatefulSet, guarded by its `resourceVersion`.
    fn update_stateful_set_status(
        &self,
        stateful_set: &StatefulSet,
    ) -> impl Future<Output = Result<StatefulSet, ActionError>> + Send;

    /// Creates a ControllerRevision with a fixed name (a DaemonSet's or StatefulSet's template
    /// history); AlreadyExists when the name is taken.
    fn create_controller_revision(
        &self,
        namespace: &str,
        revision: &ControllerRevision,
    ) -> impl Future<Output = Result<ControllerRevision, ActionError>> + Send;

    /// Writes a ControllerRevision's `revision` number (a rollback to an earlier template makes
    /// its revision the newest), guarded by its `resourceVersion`.
    fn update_controller_revision(
        &self,
        revision: &ControllerRevision,
    ) -> impl Future<Output = Result<ControllerRevision, ActionError>> + Send;

    /// Deletes a ControllerRevision if it still has `uid` (history beyond
    /// `revisionHistoryLimit`).
    fn delete_controller_revision(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Sets `spec.podCIDR` and `spec.podCIDRs` of a node that has none, guarded by its uid and
    /// `resourceVersion`: the API refuses to change a podCIDR once set, and a node that gained
    /// one meanwhile answers Conflict.
    fn patch_node_pod_cidr(
        &self,
        node: &Node,
        cidr: &str,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Creates an EndpointSlice (named by `generateName`); returns it as stored.
    fn create_endpoint_slice(
        &self,
        namespace: &str,
        slice: &EndpointSlice,
    ) -> impl Future<Output = Result<EndpointSlice, ActionError>> + Send;

    /// Replaces an EndpointSlice, guarded by its `resourceVersion`.
    fn update_endpoint_slice(
        &self,
        slice: &EndpointSlice,
    ) -> impl Future<Output = Result<EndpointSlice, ActionError>> + Send;

    /// Deletes an EndpointSlice if it still has `uid`; NotFound when already gone.
    fn delete_endpoint_slice(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Creates an Endpoints object with the Service's name; AlreadyExists when it exists.
    fn create_endpoints(
        &self,
        namespace: &str,
        endpoints: &Endpoints,
    ) -> impl Future<Output = Result<Endpoints, ActionError>> + Send;

    /// Replaces an Endpoints object, guarded by its `resourceVersion`.
    fn update_endpoints(
        &self,
        endpoints: &Endpoints,
    ) -> impl Future<Output = Result<Endpoints, ActionError>> + Send;

    /// Deletes the Endpoints object of a deleted Service; NotFound when already gone.
    fn delete_endpoints(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Sets `status.loadBalancer.ingress` of a Service through the status subresource (an empty
    /// list clears it). Idempotent: the whole list is written.
    fn patch_service_load_balancer_ingress(
        &self,
        service: &Service,
        ingress: &[LoadBalancerIngress],
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// Records an event. Best effort and never blocks the reconcile: a lost event changes no
    /// decision.
    fn record_event(&self, event: EventRecord);
}

/// [`Actions`] against the API server through a kube client.
#[derive(Clone)]
pub struct KubeActions {
    client: kube::Client,
    /// Every controller's events pass one spam filter, as they share one recorder in
    /// kube-controller-manager.
    spam_filter: std::sync::Arc<crate::event_filter::SpamFilter>,
}

impl KubeActions {
    pub fn new(client: kube::Client) -> Self {
        KubeActions {
            client,
            spam_filter: Default::default(),
        }
    }

    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(
        &self,
        namespace: &str,
    ) -> Api<K> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Replaces `object`'s status, guarded by the resourceVersion it carries.
    async fn replace_status<K>(&self, object: &K) -> Result<K, ActionError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Ok(self
            .api::<K>(namespace_of(object))
            .replace_status(name_of(object), &PostParams::default(), object)
            .await?)
    }
}

fn namespace_of<K: Resource>(object: &K) -> &str {
    object.meta().namespace.as_deref().unwrap_or_default()
}

fn name_of<K: Resource>(object: &K) -> &str {
    object.meta().name.as_deref().unwrap_or_default()
}

fn delete_with_uid(uid: &str) -> DeleteParams {
    DeleteParams::default().preconditions(Preconditions {
        uid: Some(uid.to_string()),
        resource_version: None,
    })
}

/// A merge patch that replaces `ownerReferences` and fails unless the object still has the uid
/// and resourceVersion the decision was made from.
fn owner_references_patch(
    meta: &ObjectMeta,
    owner_references: &[OwnerReference],
) -> serde_json::Value {
    json!({
        "metadata": {
            "uid": meta.uid,
            "resourceVersion": meta.resource_version,
            "ownerReferences": owner_references,
        }
    })
}

impl Actions for KubeActions {
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod, ActionError> {
        Ok(self
            .api::<Pod>(namespace)
            .create(&PostParams::default(), pod)
            .await?)
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ActionError> {
        self.api::<Pod>(namespace)
            .delete(name, &delete_with_uid(uid))
            .await?;
        Ok(())
    }

    async fn patch_pod_owner_references(
        &self,
        pod: &Pod,
        owner_references: &[OwnerReference],
    ) -> Result<(), ActionError> {
        let patch = owner_references_patch(&pod.metadata, owner_references);
        self.api::<Pod>(namespace_of(pod))
            .patch(name_of(pod), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    async fn create_replica_set(
        &self,
        namespace: &str,
        replica_set: &ReplicaSet,
    ) -> Result<ReplicaSet, ActionError> {
        Ok(self
            .api::<ReplicaSet>(namespace)
            .create(&PostParams::default(), replica_set)
            .await?)
    }

    async fn update_replica_set(
        &self,
        replica_set: &ReplicaSet,
    ) -> Result<ReplicaSet, ActionError> {
        let api = self.api::<ReplicaSet>(namespace_of(replica_set));
        Ok(api
            .replace(name_of(replica_set), &PostParams::default(), replica_set)
            .await?)
    }

    async fn update_replica_set_status(
        &self,
        replica_set: &ReplicaSet,
    ) -> Result<ReplicaSet, ActionError> {
        self.replace_status(replica_set).await
    }

    async fn delete_replica_set(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<(), ActionError> {
        self.api::<ReplicaSet>(namespace)
            .delete(name, &delete_with_uid(uid))
            .await?;
        Ok(())
    }

    async fn patch_replica_set_owner_references(
        &self,
        replica_set: &ReplicaSet,
        owner_references: &[OwnerReference],
    ) -> Result<(), ActionError> {
        let patch = owner_references_patch(&replica_set.metadata, owner_references);
        self.api::<ReplicaSet>(namespace_of(replica_set))
            .patch(
                name_of(replica_set),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    async fn update_deployment(&self, deployment: &Deployment) -> Result<Deployment, ActionError> {
        let api = self.api::<Deployment>(namespace_of(deployment));
        Ok(api
            .replace(name_of(deployment), &PostParams::default(), deployment)
            .await?)
    }

    async fn update_deployment_status(
        &self,
        deployment: &Deployment,
    ) -> Result<Deployment, ActionError> {
        self.replace_status(deployment).await
    }

    async fn update_job_status(&self, job: &Job) -> Result<Job, ActionError> {
        self.replace_status(job).await
    }

    async fn create_job(&self, namespace: &str, job: &Job) -> Result<Job, ActionError> {
        Ok(self
            .api::<Job>(namespace)
            .create(&PostParams::default(), job)
            .await?)
    }

    async fn delete_job(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ActionError> {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..delete_with_uid(uid)
        };
        self.api::<Job>(namespace).delete(name, &params).await?;
        Ok(())
    }

    async fn update_cron_job_status(&self, cron_job: &CronJob) -> Result<CronJob, ActionError> {
        self.replace_status(cron_job).await
    }

    async fn update_pod_disruption_budget_status(
        &self,
        budget: &PodDisruptionBudget,
    ) -> Result<PodDisruptionBudget, ActionError> {
        self.replace_status(budget).await
    }

    async fn update_daemon_set_status(
        &self,
        daemon_set: &DaemonSet,
    ) -> Result<DaemonSet, ActionError> {
        self.replace_status(daemon_set).await
    }

    async fn update_stateful_set_status(
        &self,
        stateful_set: &StatefulSet,
    ) -> Result<StatefulSet, ActionError> {
        self.replace_status(stateful_set).await
    }

    async fn create_controller_revision(
        &self,
        namespace: &str,
        revision: &ControllerRevision,
    ) -> Result<ControllerRevision, ActionError> {
        Ok(self
            .api::<ControllerRevision>(namespace)
            .create(&PostParams::default(), revision)
            .await?)
    }

    async fn update_controller_revision(
        &self,
        revision: &ControllerRevision,
    ) -> Result<ControllerRevision, ActionError> {
        Ok(self
            .api::<ControllerRevision>(namespace_of(revision))
            .replace(name_of(revision), &PostParams::default(), revision)
            .await?)
    }

    async fn delete_controller_revision(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<(), ActionError> {
        self.api::<ControllerRevision>(namespace)
            .delete(name, &delete_with_uid(uid))
            .await?;
        Ok(())
    }

    async fn patch_node_pod_cidr(&self, node: &Node, cidr: &str) -> Result<(), ActionError> {
        let patch = json!({
            "metadata": {
                "uid": node.metadata.uid,
                "resourceVersion": node.metadata.resource_version,
            },
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        });
        Api::<Node>::all(self.client.clone())
            .patch(
                name_of(node),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    async fn create_endpoint_slice(
        &self,
        namespace: &str,
        slice: &EndpointSlice,
    ) -> Result<EndpointSlice, ActionError> {
        Ok(self
            .api::<EndpointSlice>(namespace)
            .create(&PostParams::default(), slice)
            .await?)
    }

    async fn update_endpoint_slice(
        &self,
        slice: &EndpointSlice,
    ) -> Result<EndpointSlice, ActionError> {
        Ok(self
            .api::<EndpointSlice>(namespace_of(slice))
            .replace(name_of(slice), &PostParams::default(), slice)
            .await?)
    }

    async fn delete_endpoint_slice(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<(), ActionError> {
        self.api::<EndpointSlice>(namespace)
            .delete(name, &delete_with_uid(uid))
            .await?;
        Ok(())
    }

    async fn create_endpoints(
        &self,
        namespace: &str,
        endpoints: &Endpoints,
    ) -> Result<Endpoints, ActionError> {
        Ok(self
            .api::<Endpoints>(namespace)
            .create(&PostParams::default(), endpoints)
            .await?)
    }

    async fn update_endpoints(&self, endpoints: &Endpoints) -> Result<Endpoints, ActionError> {
        Ok(self
            .api::<Endpoints>(namespace_of(endpoints))
            .replace(name_of(endpoints), &PostParams::default(), endpoints)
            .await?)
    }

    async fn delete_endpoints(&self, namespace: &str, name: &str) -> Result<(), ActionError> {
        self.api::<Endpoints>(namespace)
            .delete(name, &DeleteParams::default())
            .await?;
        Ok(())
    }

    async fn patch_service_load_balancer_ingress(
        &self,
        service: &Service,
        ingress: &[LoadBalancerIngress],
    ) -> Result<(), ActionError> {
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        self.api::<Service>(namespace_of(service))
            .patch_status(
                name_of(service),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    fn record_event(&self, record: EventRecord) {
        let involved = &record.involved;
        let spam_key = [
            record.component,
            involved.kind.as_deref().unwrap_or_default(),
            involved.namespace.as_deref().unwrap_or_default(),
            involved.name.as_deref().unwrap_or_default(),
            involved.uid.as_deref().unwrap_or_default(),
            involved.api_version.as_deref().unwrap_or_default(),
            record.type_,
        ]
        .join("/");
        if !self.spam_filter.allow(&spam_key, std::time::Instant::now()) {
            return;
        }
        let namespace = record
            .involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                // client-go's recorder names events `<object>.<unix nanoseconds in hex>`.
                name: Some(format!(
                    "{}.{:x}",
                    record.involved.name.as_deref().unwrap_or("unknown"),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            involved_object: record.involved,
            reason: Some(record.reason.into()),
            message: Some(record.message),
            type_: Some(record.type_.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some(record.component.into()),
                host: None,
            }),
            reporting_component: Some(record.component.into()),
            ..Event::default()
        };
        // Events are written in the background so a slow event write never delays a rollout.
        tokio::spawn(async move {
            if let Err(error) = api.create(&PostParams::default(), &event).await {
                tracing::debug!("could not record event: {error}");
            }
        });
    }
}

/// One action as [`RecordingActions`] saw it, with the full object written.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    CreatePod(Pod),
    DeletePod {
        namespace: String,
        name: String,
    },
    PatchPodOwnerReferences {
        name: String,
        owner_references: Vec<OwnerReference>,
    },
    CreateReplicaSet(ReplicaSet),
    UpdateReplicaSet(ReplicaSet),
    UpdateReplicaSetStatus(ReplicaSet),
    DeleteReplicaSet {
        namespace: String,
        name: String,
    },
    PatchReplicaSetOwnerReferences {
        name: String,
        owner_references: Vec<OwnerReference>,
    },
    UpdateDeployment(Deployment),
    UpdateDeploymentStatus(Deployment),
    UpdatePodDisruptionBudgetStatus(PodDisruptionBudget),
    UpdateJobStatus(Box<Job>),
    CreateJob(Box<Job>),
    DeleteJob {
        namespace: String,
        name: String,
    },
    UpdateCronJobStatus(Box<CronJob>),
    UpdateDaemonSetStatus(Box<DaemonSet>),
    UpdateStatefulSetStatus(Box<StatefulSet>),
    CreateControllerRevision(Box<ControllerRevision>),
    UpdateControllerRevision(Box<ControllerRevision>),
    DeleteControllerRevision {
        namespace: String,
        name: String,
    },
    PatchNodePodCidr {
        name: String,
        cidr: String,
    },
    CreateEndpointSlice(Box<EndpointSlice>),
    UpdateEndpointSlice(Box<EndpointSlice>),
    DeleteEndpointSlice {
        namespace: String,
        name: String,
    },
    CreateEndpoints(Box<Endpoints>),
    UpdateEndpoints(Box<Endpoints>),
    DeleteEndpoints {
        namespace: String,
        name: String,
    },
    PatchServiceLoadBalancerIngress {
        name: String,
        ingress: Vec<LoadBalancerIngress>,
    },
}

impl Recorded {
    /// A one-line summary for tests to compare against (`create pod web-`, `scale replicaset
    /// web-abc to 3`), omitting what a test rarely cares about.
    pub fn summary(&self) -> String {
        fn owners(refs: &[OwnerReference]) -> String {
            refs.iter()
                .map(|r| format!("{}/{}", r.kind, r.name))
                .collect::<Vec<_>>()
                .join(",")
        }
        match self {
            Recorded::CreatePod(pod) => {
                // Pods with a fixed name (a StatefulSet's) are summarised by it.
                format!(
                    "create pod {}",
                    pod.metadata
                        .name
                        .as_deref()
                        .or(pod.metadata.generate_name.as_deref())
                        .unwrap_or_default()
                )
            }
            Recorded::DeletePod { name, .. } => format!("delete pod {name}"),
            Recorded::PatchPodOwnerReferences {
                name,
                owner_references,
            } => {
                format!("set owners of pod {name} to [{}]", owners(owner_references))
            }
            Recorded::CreateReplicaSet(rs) => format!(
                "create replicaset {} with {} replicas",
                name_of(rs),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
            ),
            Recorded::UpdateReplicaSet(rs) => format!(
                "update replicaset {} to {} replicas",
                name_of(rs),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
            ),
            Recorded::UpdateReplicaSetStatus(rs) => {
                let status = rs.status.clone().unwrap_or_default();
                format!(
                    "update replicaset {} status: replicas={} fullyLabeled={} ready={} available={} observedGeneration={}",
                    name_of(rs),
                    status.replicas,
                    status.fully_labeled_replicas.unwrap_or(0),
                    status.ready_replicas.unwrap_or(0),
                    status.available_replicas.unwrap_or(0),
                    status.observed_generation.unwrap_or(0)
                )
            }
            Recorded::DeleteReplicaSet { name, .. } => format!("delete replicaset {name}"),
            Recorded::PatchReplicaSetOwnerReferences {
                name,
                owner_references,
            } => {
                format!(
                    "set owners of replicaset {name} to [{}]",
                    owners(owner_references)
                )
            }
            Recorded::UpdatePodDisruptionBudgetStatus(budget) => {
                let status = budget.status.clone().unwrap_or_default();
                let disrupted: Vec<&str> = status
                    .disrupted_pods
                    .iter()
                    .flatten()
                    .map(|(name, _)| name.as_str())
                    .collect();
                let condition = status
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "DisruptionAllowed")
                    .map(|c| format!("{}/{}", c.status, c.reason))
                    .unwrap_or_default();
                format!(
                    "update poddisruptionbudget {} status: expected={} desired={} current={} allowed={} disrupted=[{}] observedGeneration={} DisruptionAllowed={}",
                    name_of(budget),
                    status.expected_pods,
                    status.desired_healthy,
                    status.current_healthy,
                    status.disruptions_allowed,
                    disrupted.join(","),
                    status.observed_generation.unwrap_or(0),
                    condition
                )
            }
            Recorded::UpdateDeployment(d) => format!("update deployment {}", name_of(d)),
            Recorded::UpdateDeploymentStatus(d) => {
                let status = d.status.clone().unwrap_or_default();
                format!(
                    "update deployment {} status: replicas={} updated={} ready={} available={} unavailable={} observedGeneration={}",
                    name_of(d),
                    status.replicas.unwrap_or(0),
                    status.updated_replicas.unwrap_or(0),
                    status.ready_replicas.unwrap_or(0),
                    status.available_replicas.unwrap_or(0),
                    status.unavailable_replicas.unwrap_or(0),
                    status.observed_generation.unwrap_or(0)
                )
            }
            Recorded::UpdateJobStatus(job) => {
                let status = job.status.clone().unwrap_or_default();
                let conditions: Vec<String> = status
                    .conditions
                    .iter()
                    .flatten()
                    .filter(|c| c.status == "True")
                    .map(|c| match &c.reason {
                        Some(reason) => format!("{}({reason})", c.type_),
                        None => c.type_.clone(),
                    })
                    .collect();
                format!(
                    "update job {} status: active={} ready={} succeeded={} failed={} conditions=[{}]",
                    name_of(&**job),
                    status.active.unwrap_or(0),
                    status.ready.unwrap_or(0),
                    status.succeeded.unwrap_or(0),
                    status.failed.unwrap_or(0),
                    conditions.join(",")
                )
            }
            Recorded::CreateJob(job) => format!("create job {}", name_of(&**job)),
            Recorded::DeleteJob { name, .. } => format!("delete job {name}"),
            Recorded::UpdateCronJobStatus(cron_job) => {
                let status = cron_job.status.clone().unwrap_or_default();
                let active: Vec<&str> = status
                    .active
                    .iter()
                    .flatten()
                    .filter_map(|r| r.name.as_deref())
                    .collect();
                format!(
                    "update cronjob {} status: active=[{}] lastSchedule={} lastSuccessful={}",
                    name_of(&**cron_job),
                    active.join(","),
                    status
                        .last_schedule_time
                        .map_or("-".to_string(), |t| t.0.to_string()),
                    status
                        .last_successful_time
                        .map_or("-".to_string(), |t| t.0.to_string()),
                )
            }
            Recorded::UpdateDaemonSetStatus(daemon_set) => {
                let status = daemon_set.status.clone().unwrap_or_default();
                format!(
                    "update daemonset {} status: desired={} current={} ready={} updated={} available={} misscheduled={} observedGeneration={}",
                    name_of(&**daemon_set),
                    status.desired_number_scheduled,
                    status.current_number_scheduled,
                    status.number_ready,
                    status.updated_number_scheduled.unwrap_or(0),
                    status.number_available.unwrap_or(0),
                    status.number_misscheduled,
                    status.observed_generation.unwrap_or(0)
                )
            }
            Recorded::UpdateStatefulSetStatus(stateful_set) => {
                let status = stateful_set.status.clone().unwrap_or_default();
                format!(
                    "update statefulset {} status: replicas={} ready={} current={} updated={} available={} currentRevision={} updateRevision={} observedGeneration={}",
                    name_of(&**stateful_set),
                    status.replicas,
                    status.ready_replicas.unwrap_or(0),
                    status.current_replicas.unwrap_or(0),
                    status.updated_replicas.unwrap_or(0),
                    status.available_replicas.unwrap_or(0),
                    status.current_revision.as_deref().unwrap_or("-"),
                    status.update_revision.as_deref().unwrap_or("-"),
                    status.observed_generation.unwrap_or(0)
                )
            }
            Recorded::CreateControllerRevision(revision) => format!(
                "create controllerrevision {} revision {}",
                name_of(&**revision),
                revision.revision
            ),
            Recorded::UpdateControllerRevision(revision) => format!(
                "update controllerrevision {} to revision {}",
                name_of(&**revision),
                revision.revision
            ),
            Recorded::DeleteControllerRevision { name, .. } => {
                format!("delete controllerrevision {name}")
            }
            Recorded::PatchNodePodCidr { name, cidr } => {
                format!("set podCIDR of node {name} to {cidr}")
            }
            Recorded::CreateEndpointSlice(slice) => format!(
                "create endpointslice {} {}",
                slice
                    .metadata
                    .name
                    .as_deref()
                    .or(slice.metadata.generate_name.as_deref())
                    .unwrap_or_default(),
                endpoint_slice_summary(slice)
            ),
            Recorded::UpdateEndpointSlice(slice) => format!(
                "update endpointslice {} {}",
                name_of(&**slice),
                endpoint_slice_summary(slice)
            ),
            Recorded::DeleteEndpointSlice { name, .. } => format!("delete endpointslice {name}"),
            Recorded::CreateEndpoints(endpoints) => format!(
                "create endpoints {} {}",
                name_of(&**endpoints),
                endpoints_summary(endpoints)
            ),
            Recorded::UpdateEndpoints(endpoints) => format!(
                "update endpoints {} {}",
                name_of(&**endpoints),
                endpoints_summary(endpoints)
            ),
            Recorded::DeleteEndpoints { name, .. } => format!("delete endpoints {name}"),
            Recorded::PatchServiceLoadBalancerIngress { name, ingress } => {
                let ips: Vec<&str> = ingress.iter().filter_map(|i| i.ip.as_deref()).collect();
                format!(
                    "set loadBalancer ingress of service {name} to [{}]",
                    ips.join(",")
                )
            }
        }
    }
}

/// `ports=[http:8080/TCP] endpoints=[10.42.0.5 ready,10.42.0.6 terminating]`: what a test of
/// an EndpointSlice usually asserts on.
fn endpoint_slice_summary(slice: &EndpointSlice) -> String {
    let ports: Vec<String> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| {
            format!(
                "{}:{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.port.unwrap_or(0),
                p.protocol.as_deref().unwrap_or("TCP")
            )
        })
        .collect();
    let endpoints: Vec<String> = slice
        .endpoints
        .iter()
        .map(|e| {
            let conditions = e.conditions.clone().unwrap_or_default();
            let state = if conditions.terminating == Some(true) {
                "terminating"
            } else if conditions.ready == Some(true) {
                "ready"
            } else {
                "notready"
            };
            format!("{} {state}", e.addresses.join("+"))
        })
        .collect();
    format!(
        "ports=[{}] endpoints=[{}]",
        ports.join(","),
        endpoints.join(",")
    )
}

/// `ports=[http:8080/TCP] addresses=[10.42.0.5] notReady=[10.42.0.6]`, subset by subset.
fn endpoints_summary(endpoints: &Endpoints) -> String {
    let subsets: Vec<String> = endpoints
        .subsets
        .iter()
        .flatten()
        .map(|subset| {
            let ips = |list: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
                list.iter()
                    .flatten()
                    .map(|a| a.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let ports: Vec<String> = subset
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}:{}/{}",
                        p.name.as_deref().unwrap_or(""),
                        p.port,
                        p.protocol.as_deref().unwrap_or("TCP")
                    )
                })
                .collect();
            format!(
                "ports=[{}] addresses=[{}] notReady=[{}]",
                ports.join(","),
                ips(&subset.addresses),
                ips(&subset.not_ready_addresses)
            )
        })
        .collect();
    format!("subsets=[{}]", subsets.join("; "))
}

/// A recording fake of [`Actions`] for tests: every call is recorded in order and succeeds
/// unless a failure was planted with [`RecordingActions::fail`]. Created pods get names
/// `<generateName><n>` and uids `uid-<generateName><n>`.
#[derive(Default)]
pub struct RecordingActions {
    recorded: Mutex<Vec<Recorded>>,
    events: Mutex<Vec<EventRecord>>,
    /// Planted failures: (summary prefix, matching actions still to let through, error).
    failures: Mutex<Vec<(String, usize, ActionError)>>,
    created: Mutex<u32>,
}

impl RecordingActions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next action whose summary starts with `prefix` fail with `error`. Plant it
    /// several times to fail several actions.
    pub fn fail(&self, prefix: &str, error: ActionError) {
        self.fail_nth(prefix, 1, error);
    }

    /// Makes the `n`th (from 1) next action whose summary starts with `prefix` fail with `error`.
    pub fn fail_nth(&self, prefix: &str, n: usize, error: ActionError) {
        lock(&self.failures).push((prefix.to_string(), n.saturating_sub(1), error));
    }

    /// Every action so far, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        lock(&self.recorded).clone()
    }

    /// The summaries of every action so far, in order.
    pub fn summaries(&self) -> Vec<String> {
        lock(&self.recorded).iter().map(Recorded::summary).collect()
    }

    /// Every event so far, as `<type> <reason> <message>`.
    pub fn events(&self) -> Vec<String> {
        lock(&self.events)
            .iter()
            .map(|e| format!("{} {} {}", e.type_, e.reason, e.message))
            .collect()
    }

    fn record(&self, action: Recorded) -> Result<(), ActionError> {
        let summary = action.summary();
        lock(&self.recorded).push(action);
        let mut failures = lock(&self.failures);
        let Some(index) = failures
            .iter()
            .position(|(prefix, _, _)| summary.starts_with(prefix.as_str()))
        else {
            return Ok(());
        };
        if failures[index].1 > 0 {
            failures[index].1 -= 1;
            return Ok(());
        }
        Err(failures.remove(index).2)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Actions for RecordingActions {
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod, ActionError> {
        self.record(Recorded::CreatePod(pod.clone()))?;
        let n = {
            let mut created = lock(&self.created);
            *created += 1;
            *created
        };
        let mut stored = pod.clone();
        let name = match &pod.metadata.name {
            Some(name) => name.clone(),
            None => format!(
                "{}{n}",
                pod.metadata.generate_name.as_deref().unwrap_or_default()
            ),
        };
        stored.metadata.uid = Some(format!("uid-{name}"));
        stored.metadata.name = Some(name);
        stored.metadata.namespace = Some(namespace.to_string());
        Ok(stored)
    }

    async fn delete_pod(&self, namespace: &str, name: &str, _uid: &str) -> Result<(), ActionError> {
        self.record(Recorded::DeletePod {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    async fn patch_pod_owner_references(
        &self,
        pod: &Pod,
        owner_references: &[OwnerReference],
    ) -> Result<(), ActionError> {
        self.record(Recorded::PatchPodOwnerReferences {
            name: name_of(pod).into(),
            owner_references: owner_references.to_vec(),
        })
    }

    async fn create_replica_set(
        &self,
        _namespace: &str,
        replica_set: &ReplicaSet,
    ) -> Result<ReplicaSet, ActionError> {
        self.record(Recorded::CreateReplicaSet(replica_set.clone()))?;
        let mut stored = replica_set.clone();
        stored.metadata.uid = Some(format!("uid-{}", name_of(replica_set)));
        Ok(stored)
    }

    async fn update_replica_set(
        &self,
        replica_set: &ReplicaSet,
    ) -> Result<ReplicaSet, ActionError> {
        self.record(Recorded::UpdateReplicaSet(replica_set.clone()))?;
        Ok(replica_set.clone())
    }

    async fn update_replica_set_status(
        &self,
        replica_set: &ReplicaSet,
    ) -> Result<ReplicaSet, ActionError> {
        self.record(Recorded::UpdateReplicaSetStatus(replica_set.clone()))?;
        Ok(replica_set.clone())
    }

    async fn delete_replica_set(
        &self,
        namespace: &str,
        name: &str,
        _uid: &str,
    ) -> Result<(), ActionError> {
        self.record(Recorded::DeleteReplicaSet {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    async fn patch_replica_set_owner_references(
        &self,
        replica_set: &ReplicaSet,
        owner_references: &[OwnerReference],
    ) -> Result<(), ActionError> {
        self.record(Recorded::PatchReplicaSetOwnerReferences {
            name: name_of(replica_set).into(),
            owner_references: owner_references.to_vec(),
        })
    }

    async fn update_deployment(&self, deployment: &Deployment) -> Result<Deployment, ActionError> {
        self.record(Recorded::UpdateDeployment(deployment.clone()))?;
        Ok(deployment.clone())
    }

    async fn update_deployment_status(
        &self,
        deployment: &Deployment,
    ) -> Result<Deployment, ActionError> {
        self.record(Recorded::UpdateDeploymentStatus(deployment.clone()))?;
        Ok(deployment.clone())
    }

    async fn update_job_status(&self, job: &Job) -> Result<Job, ActionError> {
        self.record(Recorded::UpdateJobStatus(Box::new(job.clone())))?;
        Ok(job.clone())
    }

    async fn create_job(&self, _namespace: &str, job: &Job) -> Result<Job, ActionError> {
        self.record(Recorded::CreateJob(Box::new(job.clone())))?;
        let mut stored = job.clone();
        stored.metadata.uid = Some(format!("uid-{}", name_of(job)));
        Ok(stored)
    }

    async fn delete_job(&self, namespace: &str, name: &str, _uid: &str) -> Result<(), ActionError> {
        self.record(Recorded::DeleteJob {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    async fn update_cron_job_status(&self, cron_job: &CronJob) -> Result<CronJob, ActionError> {
        self.record(Recorded::UpdateCronJobStatus(Box::new(cron_job.clone())))?;
        Ok(cron_job.clone())
    }

    async fn update_pod_disruption_budget_status(
        &self,
        budget: &PodDisruptionBudget,
    ) -> Result<PodDisruptionBudget, ActionError> {
        self.record(Recorded::UpdatePodDisruptionBudgetStatus(budget.clone()))?;
        Ok(budget.clone())
    }

    async fn update_daemon_set_status(
        &self,
        daemon_set: &DaemonSet,
    ) -> Result<DaemonSet, ActionError> {
        self.record(Recorded::UpdateDaemonSetStatus(Box::new(
            daemon_set.clone(),
        )))?;
        Ok(daemon_set.clone())
    }

    async fn update_stateful_set_status(
        &self,
        stateful_set: &StatefulSet,
    ) -> Result<StatefulSet, ActionError> {
        self.record(Recorded::UpdateStatefulSetStatus(Box::new(
            stateful_set.clone(),
        )))?;
        Ok(stateful_set.clone())
    }

    async fn create_controller_revision(
        &self,
        namespace: &str,
        revision: &ControllerRevision,
    ) -> Result<ControllerRevision, ActionError> {
        self.record(Recorded::CreateControllerRevision(Box::new(
            revision.clone(),
        )))?;
        let mut stored = revision.clone();
        stored.metadata.uid = Some(format!("uid-{}", name_of(revision)));
        stored.metadata.namespace = Some(namespace.to_string());
        Ok(stored)
    }

    async fn update_controller_revision(
        &self,
        revision: &ControllerRevision,
    ) -> Result<ControllerRevision, ActionError> {
        self.record(Recorded::UpdateControllerRevision(Box::new(
            revision.clone(),
        )))?;
        Ok(revision.clone())
    }

    async fn delete_controller_revision(
        &self,
        namespace: &str,
        name: &str,
        _uid: &str,
    ) -> Result<(), ActionError> {
        self.record(Recorded::DeleteControllerRevision {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    async fn patch_node_pod_cidr(&self, node: &Node, cidr: &str) -> Result<(), ActionError> {
        self.record(Recorded::PatchNodePodCidr {
            name: name_of(node).into(),
            cidr: cidr.into(),
        })
    }

    async fn create_endpoint_slice(
        &self,
        namespace: &str,
        slice: &EndpointSlice,
    ) -> Result<EndpointSlice, ActionError> {
        self.record(Recorded::CreateEndpointSlice(Box::new(slice.clone())))?;
        let n = {
            let mut created = lock(&self.created);
            *created += 1;
            *created
        };
        let mut stored = slice.clone();
        let name = match &slice.metadata.name {
            Some(name) => name.clone(),
            None => format!(
                "{}{n}",
                slice.metadata.generate_name.as_deref().unwrap_or_default()
            ),
        };
        stored.metadata.uid = Some(format!("uid-{name}"));
        stored.metadata.name = Some(name);
        stored.metadata.namespace = Some(namespace.to_string());
        Ok(stored)
    }

    async fn update_endpoint_slice(
        &self,
        slice: &EndpointSlice,
    ) -> Result<EndpointSlice, ActionError> {
        self.record(Recorded::UpdateEndpointSlice(Box::new(slice.clone())))?;
        Ok(slice.clone())
    }

    async fn delete_endpoint_slice(
        &self,
        namespace: &str,
        name: &str,
        _uid: &str,
    ) -> Result<(), ActionError> {
        self.record(Recorded::DeleteEndpointSlice {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    async fn create_endpoints(
        &self,
        namespace: &str,
        endpoints: &Endpoints,
    ) -> Result<Endpoints, ActionError> {
        self.record(Recorded::CreateEndpoints(Box::new(endpoints.clone())))?;
        let mut stored = endpoints.clone();
        stored.metadata.namespace = Some(namespace.to_string());
        Ok(stored)
    }

    async fn update_endpoints(&self, endpoints: &Endpoints) -> Result<Endpoints, ActionError> {
        self.record(Recorded::UpdateEndpoints(Box::new(endpoints.clone())))?;
        Ok(endpoints.clone())
    }

    async fn delete_endpoints(&self, namespace: &str, name: &str) -> Result<(), ActionError> {
        self.record(Recorded::DeleteEndpoints {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    async fn patch_service_load_balancer_ingress(
        &self,
        service: &Service,
        ingress: &[LoadBalancerIngress],
    ) -> Result<(), ActionError> {
        self.record(Recorded::PatchServiceLoadBalancerIngress {
            name: name_of(service).into(),
            ingress: ingress.to_vec(),
        })
    }

    fn record_event(&self, event: EventRecord) {
        lock(&self.events).push(event);
    }
}
