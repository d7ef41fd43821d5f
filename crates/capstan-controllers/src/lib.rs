//! capstan's controllers, in kube-runtime's shape: each watches its objects, queues their keys,
//! and reconciles one key at a time from a cache — deciding purely, acting through the API.
//!
//! - [`runtime`]: the shape every controller shares (informers, work queue, retry backoff,
//!   workers); [`informers`]: one watch and one cache per kind, shared by every controller;
//!   [`pod_cache`]: the shared pod cache's indexes (by namespace, controller, node).
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
pub mod event_filter;
pub mod expectations;
pub mod gc;
pub mod history;
pub mod informers;
pub mod intstr;
pub mod job;
pub mod namespace_index;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod ownership;
pub mod pod_cache;
pub mod pod_control;
pub mod pods;
pub mod replicaset;
pub mod runtime;
pub mod service_backends;
pub mod service_lb;
pub mod statefulset;

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;

use crate::actions::KubeActions;
use crate::expectations::Expectations;
use crate::informers::SharedInformers;
use crate::runtime::{WorkQueue, run_workers};

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

impl From<runtime::CacheNotReady> for RunError {
    fn from(error: runtime::CacheNotReady) -> Self {
        RunError::CacheNotReady(error.0)
    }
}

/// Starts every controller of this crate and runs them until the future is dropped (or a cache
/// cannot be filled). The controllers share one watch and one cache per kind
/// ([`informers::SharedInformers`]): each registers its event handlers and takes its caches,
/// then the watches start together, and no controller reconciles before every cache has its
/// first list, so none decides from a partial view.
pub async fn run(client: kube::Client, config: ControllersConfig) -> Result<(), RunError> {
    // Bad flags fail before anything starts.
    let node_cidrs = config
        .cluster_cidr
        .as_deref()
        .map(|cidr| node_ipam::CidrSet::new(cidr, config.node_cidr_mask_size))
        .transpose()?;
    let actions = KubeActions::new(client.clone());
    let mut informers = SharedInformers::new(client.clone());

    // ReplicaSet controller: ReplicaSets and their pods.
    let rs_queue = WorkQueue::new();
    let rs_expectations = Arc::new(Expectations::new());
    let replica_sets = {
        let queue = rs_queue.clone();
        informers.on_namespaced(move |change| replicaset::replica_set_changed(change, &queue))
    };
    {
        let queue = rs_queue.clone();
        let replica_sets = replica_sets.clone();
        let expectations = rs_expectations.clone();
        informers.on_pods(move |change| {
            replicaset::pod_changed(change, &replica_sets, &expectations, &queue)
        });
    }

    // Deployment controller: Deployments, their ReplicaSets, and pods (for Recreate, which waits
    // for old pods to be gone).
    let d_queue = WorkQueue::new();
    let deployments = {
        let queue = d_queue.clone();
        informers.on(move |change| deployment::deployment_changed(change, &queue))
    };
    {
        let queue = d_queue.clone();
        let deployments = deployments.clone();
        informers.on(move |change| deployment::replica_set_changed(change, &deployments, &queue));
    }
    {
        let queue = d_queue.clone();
        let deployments = deployments.clone();
        let replica_sets = replica_sets.clone();
        informers.on_pods(move |change| {
            deployment::pod_changed(change, &replica_sets, &deployments, &queue)
        });
    }

    // Job controller: Jobs and their pods.
    let job_queue = WorkQueue::new();
    let job_expectations = Arc::new(Expectations::new());
    let jobs = {
        let queue = job_queue.clone();
        informers.on(move |change| job::job_changed(change, &queue))
    };
    {
        let queue = job_queue.clone();
        let jobs = jobs.clone();
        let expectations = job_expectations.clone();
        informers.on_pods(move |change| job::pod_changed(change, &jobs, &expectations, &queue));
    }

    // CronJob controller: CronJobs and their Jobs.
    let cj_queue = WorkQueue::new();
    let cron_jobs = {
        let queue = cj_queue.clone();
        informers.on(move |change| cronjob::cron_job_changed(change, &queue))
    };
    {
        let queue = cj_queue.clone();
        informers.on::<Job>(move |change| cronjob::job_changed(change, &queue));
    }

    let pods = informers.pods();
    let replica_set_controller = Arc::new(replicaset::ReplicaSetController {
        replica_sets: (*replica_sets).clone(),
        pods: pods.clone(),
        actions: actions.clone(),
        expectations: rs_expectations,
    });
    let deployment_controller = Arc::new(deployment::DeploymentController {
        deployments,
        replica_sets,
        pods: pods.clone(),
        actions: actions.clone(),
    });
    let job_controller = Arc::new(job::JobController {
        jobs: jobs.clone(),
        pods,
        actions: actions.clone(),
        expectations: job_expectations,
    });
    let cron_job_controller = Arc::new(cronjob::CronJobController {
        cron_jobs,
        jobs,
        actions,
    });
    let daemon_sets = daemonset::run(&mut informers, client.clone(), config.daemon_set_workers);
    let stateful_sets =
        statefulset::run(&mut informers, client.clone(), config.stateful_set_workers);
    let disruption = disruption::run(&mut informers, client.clone());
    let node_lifecycle = node_lifecycle::run(&mut informers, client.clone(), config.node_lifecycle);
    let endpoint_slices = endpointslice::run(
        &mut informers,
        client.clone(),
        config.endpoint_slice_workers,
        config.max_endpoints_per_slice,
    );
    let endpoints = endpoints::run(&mut informers, client.clone(), config.endpoints_workers);
    let service_lb = config
        .service_lb
        .then(|| service_lb::run(&mut informers, client.clone()));
    let node_ipam = node_cidrs.map(|set| node_ipam::run(&mut informers, client.clone(), set));

    let _running = informers.start().await?;
    tokio::join!(
        run_workers(replica_set_controller, rs_queue, config.replica_set_workers),
        run_workers(deployment_controller, d_queue, config.deployment_workers),
        run_workers(job_controller, job_queue, config.job_workers),
        run_workers(cron_job_controller, cj_queue, config.cron_job_workers),
        daemon_sets,
        stateful_sets,
        // The collector watches only metadata, of every kind it knows: its own watches.
        gc::run(client),
        disruption,
        node_lifecycle,
        endpoint_slices,
        endpoints,
        async {
            if let Some(service_lb) = service_lb {
                service_lb.await;
            }
        },
        async {
            if let Some(node_ipam) = node_ipam {
                node_ipam.await;
            }
        },
    );
    Ok(())
}
