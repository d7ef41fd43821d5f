//! capstan's controllers, in kube-runtime's shape: each watches its objects, queues their keys,
//! and reconciles one key at a time from a cache — deciding purely, acting through the API.
//!
//! - [`runtime`]: the shape every controller shares (stores, work queue, retry backoff, workers).
//! - [`actions`]: the effects trait, its kube implementation and the recording fake for tests.
//! - [`ownership`], [`pods`], [`expectations`]: controller references and claiming, what a pod's
//!   state means to its controller, and what has been asked but not yet seen.
//! - [`replicaset`], [`deployment`], [`job`], [`cronjob`], [`daemonset`], [`statefulset`]: the
//!   workload controllers, with [`history`] for the template revisions of the last two;
//!   [`gc`], [`node_lifecycle`]: the garbage collector and the node lifecycle controller.
//! - [`node_ipam`]: gives each node its pod subnet (`spec.podCIDR`) from the cluster CIDR.
//! - [`endpointslice`], [`endpoints`]: the pods behind each Service, as EndpointSlices and as
//!   legacy Endpoints, both deciding from [`service_backends`]; [`service_lb`]: the
//!   load-balancer status of `type: LoadBalancer` Services, as k3s's ServiceLB.
//! - [`disruption`]: keeps PodDisruptionBudget status current for the eviction API.
//!
//! [`run`] starts every controller of the crate against a client.

pub mod actions;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod gc;
pub mod history;
pub mod intstr;
pub mod job;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod ownership;
pub mod pod_control;
pub mod pods;
pub mod replicaset;
pub mod runtime;
pub mod service_backends;
pub mod service_lb;
pub mod statefulset;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;

use crate::actions::KubeActions;
use crate::expectations::Expectations;
use crate::runtime::{WorkQueue, run_workers, watch_into_store};

/// How the controllers run. The defaults are Kubernetes' kube-controller-manager defaults.
#[derive(Debug, Clone)]
pub struct ControllersConfig {
    /// Keys reconciled at once by the ReplicaSet controller (`--concurrent-replicaset-syncs`).
    pub replica_set_workers: usize,
    /// Keys reconciled at once by the Deployment controller (`--concurrent-deployment-syncs`).
    pub deployment_workers: usize,
    /// Keys reconciled at once by the Job controller (`--concurrent-job-syncs`).
    pub job_workers: usize,
    /// Keys reconciled at once by the CronJob controller (`--concurrent-cron-job-syncs`).
    pub cron_job_workers: usize,
    /// Keys reconciled at once by the DaemonSet controller (`--concurrent-daemonset-syncs`).
    pub daemon_set_workers: usize,
    /// Keys reconciled at once by the StatefulSet controller (`--concurrent-statefulset-syncs`).
    pub stateful_set_workers: usize,
    pub node_lifecycle: node_lifecycle::NodeLifecycleConfig,
    /// The IPv4 network node pod subnets are cut from (`--cluster-cidr`, k3s's `10.42.0.0/16`).
    /// `None` turns node IPAM off (kube-controller-manager's `--allocate-node-cidrs=false`).
    pub cluster_cidr: Option<String>,
    /// The prefix length of each node's pod subnet (`--node-cidr-mask-size`, 24).
    pub node_cidr_mask_size: u8,
    /// Services synced at once by the EndpointSlice controller
    /// (`--concurrent-service-endpoint-syncs`).
    pub endpoint_slice_workers: usize,
    /// Endpoints in one EndpointSlice at most (`--max-endpoints-per-slice`).
    pub max_endpoints_per_slice: usize,
    /// Services synced at once by the Endpoints controller (`--concurrent-endpoint-syncs`).
    pub endpoints_workers: usize,
    /// Whether `type: LoadBalancer` Services get the Ready nodes' addresses as their
    /// load-balancer status (k3s's ServiceLB; `--disable=servicelb` turns it off).
    pub service_lb: bool,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        ControllersConfig {
            replica_set_workers: 5,
            deployment_workers: 5,
            job_workers: 5,
            cron_job_workers: 5,
            daemon_set_workers: 2,
            stateful_set_workers: 5,
            node_lifecycle: node_lifecycle::NodeLifecycleConfig::default(),
            cluster_cidr: Some(node_ipam::DEFAULT_CLUSTER_CIDR.to_string()),
            node_cidr_mask_size: node_ipam::DEFAULT_NODE_CIDR_MASK_SIZE,
            endpoint_slice_workers: endpointslice::DEFAULT_WORKERS,
            max_endpoints_per_slice: endpointslice::DEFAULT_MAX_ENDPOINTS_PER_SLICE,
            endpoints_workers: endpoints::DEFAULT_WORKERS,
            service_lb: true,
        }
    }
}

/// Why the controllers stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A watch ended before its first list: the API is unreachable or refused the watch.
    /// Restarting the controllers may help.
    #[error("the {0} cache never became ready")]
    CacheNotReady(&'static str),
    /// `cluster_cidr` or `node_cidr_mask_size` cannot be used. Fix the configuration.
    #[error(transparent)]
    InvalidNodeCidrs(#[from] node_ipam::CidrConfigError),
}

/// Starts every controller of this crate and runs them until the future is dropped (or a cache
/// cannot be filled). Each controller waits for its caches' first list before reconciling, so it
/// never decides from a partial view.
pub async fn run(client: kube::Client, config: ControllersConfig) -> Result<(), RunError> {
    // Bad flags fail before anything starts.
    let node_cidrs = config
        .cluster_cidr
        .as_deref()
        .map(|cidr| node_ipam::CidrSet::new(cidr, config.node_cidr_mask_size))
        .transpose()?;
    let actions = KubeActions::new(client.clone());
    let all = watcher::Config::default();

    // ReplicaSet controller: ReplicaSets and their pods.
    let rs_queue = WorkQueue::new();
    let rs_expectations = Arc::new(Expectations::new());
    let (rs_store, rs_watch) = {
        let queue = rs_queue.clone();
        watch_into_store(
            Api::<ReplicaSet>::all(client.clone()),
            all.clone(),
            move |change| replicaset::replica_set_changed(change, &queue),
        )
    };
    let (rs_pod_store, rs_pod_watch) = {
        let queue = rs_queue.clone();
        let replica_sets = rs_store.clone();
        let expectations = rs_expectations.clone();
        watch_into_store(
            Api::<Pod>::all(client.clone()),
            all.clone(),
            move |change| replicaset::pod_changed(change, &replica_sets, &expectations, &queue),
        )
    };

    // Deployment controller: Deployments, their ReplicaSets, and pods (for Recreate, which waits
    // for old pods to be gone).
    let d_queue = WorkQueue::new();
    let (d_store, d_watch) = {
        let queue = d_queue.clone();
        watch_into_store(
            Api::<Deployment>::all(client.clone()),
            all.clone(),
            move |change| deployment::deployment_changed(change, &queue),
        )
    };
    let (d_rs_store, d_rs_watch) = {
        let queue = d_queue.clone();
        let deployments = d_store.clone();
        watch_into_store(
            Api::<ReplicaSet>::all(client.clone()),
            all.clone(),
            move |change| deployment::replica_set_changed(change, &deployments, &queue),
        )
    };
    let (d_pod_store, d_pod_watch) = {
        let queue = d_queue.clone();
        let deployments = d_store.clone();
        let replica_sets = d_rs_store.clone();
        watch_into_store(
            Api::<Pod>::all(client.clone()),
            all.clone(),
            move |change| deployment::pod_changed(change, &replica_sets, &deployments, &queue),
        )
    };

    // Job controller: Jobs and their pods.
    let job_queue = WorkQueue::new();
    let job_expectations = Arc::new(Expectations::new());
    let (job_store, job_watch) = {
        let queue = job_queue.clone();
        watch_into_store(
            Api::<Job>::all(client.clone()),
            all.clone(),
            move |change| job::job_changed(change, &queue),
        )
    };
    let (job_pod_store, job_pod_watch) = {
        let queue = job_queue.clone();
        let jobs = job_store.clone();
        let expectations = job_expectations.clone();
        watch_into_store(
            Api::<Pod>::all(client.clone()),
            all.clone(),
            move |change| job::pod_changed(change, &jobs, &expectations, &queue),
        )
    };

    // CronJob controller: CronJobs and their Jobs.
    let cj_queue = WorkQueue::new();
    let (cj_store, cj_watch) = {
        let queue = cj_queue.clone();
        watch_into_store(
            Api::<CronJob>::all(client.clone()),
            all.clone(),
            move |change| cronjob::cron_job_changed(change, &queue),
        )
    };
    let (cj_job_store, cj_job_watch) = {
        let queue = cj_queue.clone();
        watch_into_store(Api::<Job>::all(client.clone()), all, move |change| {
            cronjob::job_changed(change, &queue)
        })
    };
    let watches = [
        rs_watch,
        rs_pod_watch,
        d_watch,
        d_rs_watch,
        d_pod_watch,
        job_watch,
        job_pod_watch,
        cj_watch,
        cj_job_watch,
    ];
    let _abort_watches = runtime::AbortOnDrop::new(&watches);

    for (name, ready) in [
        ("ReplicaSet", rs_store.wait_until_ready().await),
        ("Pod", rs_pod_store.wait_until_ready().await),
        ("Deployment", d_store.wait_until_ready().await),
        ("ReplicaSet", d_rs_store.wait_until_ready().await),
        ("Pod", d_pod_store.wait_until_ready().await),
        ("Job", job_store.wait_until_ready().await),
        ("Pod", job_pod_store.wait_until_ready().await),
        ("CronJob", cj_store.wait_until_ready().await),
        ("Job", cj_job_store.wait_until_ready().await),
    ] {
        ready.map_err(|_| RunError::CacheNotReady(name))?;
    }

    let replica_sets = Arc::new(replicaset::ReplicaSetController {
        replica_sets: rs_store,
        pods: rs_pod_store,
        actions: actions.clone(),
        expectations: rs_expectations,
    });
    let deployments = Arc::new(deployment::DeploymentController {
        deployments: d_store,
        replica_sets: d_rs_store,
        pods: d_pod_store,
        actions: actions.clone(),
    });
    let jobs = Arc::new(job::JobController {
        jobs: job_store,
        pods: job_pod_store,
        actions: actions.clone(),
        expectations: job_expectations,
    });
    let cron_jobs = Arc::new(cronjob::CronJobController {
        cron_jobs: cj_store,
        jobs: cj_job_store,
        actions,
    });
    tokio::join!(
        run_workers(replica_sets, rs_queue, config.replica_set_workers),
        run_workers(deployments, d_queue, config.deployment_workers),
        run_workers(jobs, job_queue, config.job_workers),
        run_workers(cron_jobs, cj_queue, config.cron_job_workers),
        daemonset::run(client.clone(), config.daemon_set_workers),
        statefulset::run(client.clone(), config.stateful_set_workers),
        gc::run(client.clone()),
        disruption::run(client.clone()),
        node_lifecycle::run(client.clone(), config.node_lifecycle),
        endpointslice::run(
            client.clone(),
            config.endpoint_slice_workers,
            config.max_endpoints_per_slice,
        ),
        endpoints::run(client.clone(), config.endpoints_workers),
        {
            let client = client.clone();
            async move {
                if config.service_lb {
                    service_lb::run(client).await;
                }
            }
        },
        async {
            if let Some(set) = node_cidrs {
                node_ipam::run(client, set).await;
            }
        },
    );
    Ok(())
}
