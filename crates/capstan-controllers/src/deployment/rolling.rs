//! The `RollingUpdate` strategy (Kubernetes' `deployment/rolling.go`): scale the new ReplicaSet
//! up while the total stays within `replicas + maxSurge`, and old ones down while the available
//! pods stay at least `replicas - maxUnavailable`. Unhealthy old replicas go first, since
//! removing them costs no availability. `maxSurge` rounds up and `maxUnavailable` down, and when
//! both come to zero `maxUnavailable` becomes 1 so the rollout can move.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::sync::{
    active, available_replica_count, deployment_complete, replica_count, sort_by_creation,
};
use super::*;

/// Kubernetes' `GetScaledValueFromIntOrPercent`, failing as an invalid strategy.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, SyncError> {
    crate::intstr::scaled_value(value, total, round_up).map_err(SyncError::InvalidStrategy)
}

/// Kubernetes' `ResolveFenceposts`: (maxSurge, maxUnavailable) for `desired` replicas.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), SyncError> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        // Validation refuses explicit zeros for both, but percentages can round down to zero;
        // one unavailable pod lets the rollout move even when surge is impossible (quota).
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> Result<(i32, i32), SyncError> {
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        rolling.and_then(|r| r.max_surge.as_ref()),
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        deployment_replicas(d),
    )
}

/// Kubernetes' `MaxSurge`: 0 unless rolling (and 0 for values validation would refuse).
pub fn max_surge(d: &Deployment) -> i32 {
    if strategy_type(d) != "RollingUpdate" {
        return 0;
    }
    fenceposts(d).map_or(0, |(surge, _)| surge)
}

/// Kubernetes' `MaxUnavailable`: 0 unless rolling or when scaled to zero, at most `replicas`.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let desired = deployment_replicas(d);
    if strategy_type(d) != "RollingUpdate" || desired == 0 {
        return 0;
    }
    fenceposts(d).map_or(0, |(_, unavailable)| unavailable.min(desired))
}

/// Kubernetes' `NewRSNewReplicas`: how large the new ReplicaSet may be now.
pub fn new_rs_new_replicas(
    d: &Deployment,
    all_rss: &[ReplicaSet],
    new_rs: &ReplicaSet,
) -> Result<i32, SyncError> {
    let desired = deployment_replicas(d);
    match strategy_type(d) {
        "RollingUpdate" => {
            let (surge, _) = fenceposts(d)?;
            let current = replica_count(all_rss);
            let max_total = desired.saturating_add(surge);
            if current >= max_total {
                return Ok(rs_replicas(new_rs));
            }
            let scale_up = (max_total - current).min(desired - rs_replicas(new_rs));
            Ok(rs_replicas(new_rs) + scale_up)
        }
        "Recreate" => Ok(desired),
        other => Err(SyncError::InvalidStrategy(format!(
            "deployment type {other} isn't supported"
        ))),
    }
}

impl<A: Actions> sync::Syncer<'_, A> {
    /// Kubernetes' `rolloutRolling`: one step of a rolling update, then the status.
    pub(crate) async fn rollout_rolling(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
    ) -> Result<Action, SyncError> {
        let (new_rs, old_rss) = self.new_and_old_replica_sets(d, rs_list, true).await?;
        let mut all = old_rss.clone();
        all.extend(new_rs.clone());
        let Some(new_rs) = new_rs else {
            return self.sync_rollout_status(&all, None, d).await;
        };

        if self.reconcile_new_replica_set(&all, &new_rs, d).await? {
            return self.sync_rollout_status(&all, Some(&new_rs), d).await;
        }
        if self
            .reconcile_old_replica_sets(&all, active(&old_rss), &new_rs, d)
            .await?
        {
            return self.sync_rollout_status(&all, Some(&new_rs), d).await;
        }
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(&old_rss, d).await?;
        }
        self.sync_rollout_status(&all, Some(&new_rs), d).await
    }

    /// Kubernetes' `reconcileNewReplicaSet`: scale the new ReplicaSet toward `replicas` within
    /// the surge. True if it scaled.
    async fn reconcile_new_replica_set(
        &self,
        all_rss: &[ReplicaSet],
        new_rs: &ReplicaSet,
        d: &Deployment,
    ) -> Result<bool, SyncError> {
        let desired = deployment_replicas(d);
        let current = rs_replicas(new_rs);
        if current == desired {
            return Ok(false);
        }
        let target = if current > desired {
            desired
        } else {
            new_rs_new_replicas(d, all_rss, new_rs)?
        };
        Ok(self.scale_and_record(new_rs, target, d).await?.0)
    }

    /// Kubernetes' `reconcileOldReplicaSets`: scale old ReplicaSets down as far as availability
    /// allows. True if anything scaled.
    async fn reconcile_old_replica_sets(
        &self,
        all_rss: &[ReplicaSet],
        mut old_rss: Vec<ReplicaSet>,
        new_rs: &ReplicaSet,
        d: &Deployment,
    ) -> Result<bool, SyncError> {
        if replica_count(&old_rss) == 0 {
            return Ok(false);
        }
        let all_pods = replica_count(all_rss);
        let min_available = deployment_replicas(d) - max_unavailable(d);
        let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
        // Pods that may go: everything above the minimum, less the new pods not yet available
        // (they count toward the total but serve nobody).
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self
            .cleanup_unhealthy_replicas(&mut old_rss, d, max_scaled_down)
            .await?;
        let mut all = old_rss.clone();
        all.push(new_rs.clone());
        let scaled = self
            .scale_down_old_replica_sets_for_rolling_update(&all, &mut old_rss, d)
            .await?;
        Ok(cleaned + scaled > 0)
    }

    /// Kubernetes' `cleanupUnhealthyReplicas`: old replicas that are not available go first,
    /// oldest ReplicaSet first. Returns how many were scaled away.
    async fn cleanup_unhealthy_replicas(
        &self,
        old_rss: &mut [ReplicaSet],
        d: &Deployment,
        max_cleanup: i32,
    ) -> Result<i32, SyncError> {
        sort_by_creation(old_rss);
        let mut total = 0;
        for rs in old_rss.iter_mut() {
            if total >= max_cleanup {
                break;
            }
            let replicas = rs_replicas(rs);
            if replicas == 0 || replicas == rs_available(rs) {
                continue;
            }
            let count = (max_cleanup - total).min(replicas - rs_available(rs));
            if count <= 0 {
                continue;
            }
            let (_, updated) = self.scale_and_record(rs, replicas - count, d).await?;
            *rs = updated;
            total += count;
        }
        Ok(total)
    }

    /// Kubernetes' `scaleDownOldReplicaSetsForRollingUpdate`: scale old ReplicaSets down, oldest
    /// first, by as many pods as are available above `replicas - maxUnavailable`.
    async fn scale_down_old_replica_sets_for_rolling_update(
        &self,
        all_rss: &[ReplicaSet],
        old_rss: &mut [ReplicaSet],
        d: &Deployment,
    ) -> Result<i32, SyncError> {
        let min_available = deployment_replicas(d) - max_unavailable(d);
        // A ReplicaSet's status lags its last scale-down: until its controller has deleted the
        // pods and written status again, it still counts them available. Kubernetes sums the
        // statuses as they are, so for that moment the same pods can be scaled away twice and
        // availability dips below `replicas - maxUnavailable`; a fast cluster hits that moment
        // often. Counting at most `spec.replicas` of each ReplicaSet — what it will have once
        // its controller catches up — closes the window.
        let available = all_rss
            .iter()
            .map(|rs| available_replica_count(std::slice::from_ref(rs)).min(rs_replicas(rs)))
            .fold(0i32, i32::saturating_add);
        if available <= min_available {
            return Ok(0);
        }
        sort_by_creation(old_rss);
        let budget = available - min_available;
        let mut total = 0;
        for rs in old_rss.iter_mut() {
            if total >= budget {
                break;
            }
            let replicas = rs_replicas(rs);
            if replicas == 0 {
                continue;
            }
            let count = replicas.min(budget - total);
            let (_, updated) = self.scale_and_record(rs, replicas - count, d).await?;
            *rs = updated;
            total += count;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let int = IntOrString::Int;
        let percent = |s: &str| IntOrString::String(s.into());
        let cases = [
            (percent("25%"), percent("25%"), 10, Ok((3, 2))),
            (percent("25%"), percent("25%"), 1, Ok((1, 0))),
            (int(10), int(0), 100, Ok((10, 0))),
            (percent("0%"), percent("10%"), 5, Ok((0, 1))),
            (int(0), int(0), 3, Ok((0, 1))),
            (percent("100%"), percent("100%"), 7, Ok((7, 7))),
        ];
        for (surge, unavailable, desired, expected) in cases {
            let got = resolve_fenceposts(Some(&surge), Some(&unavailable), desired)
                .map_err(|e| e.to_string());
            assert_eq!(got, expected, "{surge:?} {unavailable:?} of {desired}");
        }
    }

    #[test]
    fn a_malformed_percentage_is_an_error_not_a_panic() {
        for text in ["25", "%", "x%", "99999999999999999999%"] {
            let value = IntOrString::String(text.into());
            assert!(scaled_value(&value, 10, true).is_err(), "{text}");
        }
        let huge = IntOrString::String("2147483647%".into());
        assert_eq!(scaled_value(&huge, i32::MAX, true).ok(), Some(i32::MAX));
    }
}
