//! The `Recreate` strategy (Kubernetes' `deployment/recreate.go`): scale every old ReplicaSet to
//! zero, wait until none of their pods is left running (terminating pods still count: two
//! versions must never run together), then create or scale up the new ReplicaSet.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;

use super::sync::{active, actual_replica_count, deployment_complete};
use super::*;

/// Kubernetes' `oldPodsRunning`: do old ReplicaSets still report pods, or does any pod they
/// control still run (not Succeeded or Failed)?
pub fn old_pods_running(
    new_rs: Option<&ReplicaSet>,
    old_rss: &[ReplicaSet],
    pods: &[&Pod],
) -> bool {
    if actual_replica_count(old_rss) > 0 {
        return true;
    }
    let new_uid = new_rs.and_then(|rs| rs.metadata.uid.as_deref());
    let old_uids: Vec<&str> = old_rss
        .iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    pods.iter().any(|pod| {
        let Some(owner) = controller_of(&pod.metadata) else {
            return false;
        };
        if Some(owner.uid.as_str()) == new_uid || !old_uids.contains(&owner.uid.as_str()) {
            return false;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        !matches!(phase, Some("Succeeded") | Some("Failed"))
    })
}

impl<A: Actions> sync::Syncer<'_, A> {
    /// Kubernetes' `rolloutRecreate`.
    pub(crate) async fn rollout_recreate(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
        pods: &[&Pod],
    ) -> Result<Action, SyncError> {
        // The new ReplicaSet is not created yet, so nothing scales up before old pods are gone.
        let (mut new_rs, mut old_rss) = self.new_and_old_replica_sets(d, rs_list, false).await?;
        let mut all = old_rss.clone();
        all.extend(new_rs.clone());

        let mut scaled_down = false;
        for rs in active(&old_rss) {
            scaled_down |= self.scale_and_record(&rs, 0, d).await?.0;
        }
        if scaled_down {
            return self.sync_rollout_status(&all, new_rs.as_ref(), d).await;
        }
        if old_pods_running(new_rs.as_ref(), &old_rss, pods) {
            return self.sync_rollout_status(&all, new_rs.as_ref(), d).await;
        }
        if new_rs.is_none() {
            (new_rs, old_rss) = self.new_and_old_replica_sets(d, rs_list, true).await?;
            all = old_rss.clone();
            all.extend(new_rs.clone());
        }
        if let Some(rs) = &new_rs {
            self.scale_and_record(rs, deployment_replicas(d), d).await?;
        }
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(&old_rss, d).await?;
        }
        self.sync_rollout_status(&all, new_rs.as_ref(), d).await
    }
}
