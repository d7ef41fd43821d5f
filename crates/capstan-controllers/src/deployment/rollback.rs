//! The legacy rollback request (Kubernetes' `deployment/rollback.go`): the
//! `deprecated.deployment.rollback.to` annotation, which is what `spec.rollbackTo` of
//! extensions/v1beta1 became. The controller copies the template of the ReplicaSet with that
//! revision (0: the previous one) into the Deployment and clears the request; the rollout then
//! proceeds as for any template change. `kubectl rollout undo` does the same on the client side
//! and needs nothing here.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::sync::{equal_ignore_hash, revision};
use super::*;

/// The requested revision, if a rollback is asked for (unparsable requests count as 0, the
/// previous revision, as Kubernetes' `getRollbackTo` reads them).
pub fn rollback_to(d: &Deployment) -> Option<i64> {
    let value = d
        .metadata
        .annotations
        .as_ref()?
        .get(ROLLBACK_TO_ANNOTATION)?;
    Some(value.parse().unwrap_or(0))
}

/// The revision before the newest (Kubernetes' `LastRevision`).
fn last_revision(rss: &[ReplicaSet]) -> i64 {
    let (mut max, mut second) = (0, 0);
    for revision in rss.iter().filter_map(revision) {
        if revision >= max {
            second = max;
            max = revision;
        } else if revision > second {
            second = revision;
        }
    }
    second
}

impl<A: Actions> sync::Syncer<'_, A> {
    /// Kubernetes' `rollback`: not re-entrant — the request is cleared in the same write that
    /// changes the template.
    pub(crate) async fn rollback(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
    ) -> Result<Action, SyncError> {
        let mut target = rollback_to(d).unwrap_or(0);
        if target == 0 {
            target = last_revision(rs_list);
            if target == 0 {
                self.actions.record_event(EventRecord::warning(
                    CONTROLLER_NAME,
                    &*d,
                    reasons::ROLLBACK_REVISION_NOT_FOUND,
                    "Unable to find last revision.".into(),
                ));
                return self.clear_rollback_to(d).await;
            }
        }
        let Some(rs) = rs_list.iter().find(|rs| revision(rs) == Some(target)) else {
            self.actions.record_event(EventRecord::warning(
                CONTROLLER_NAME,
                &*d,
                reasons::ROLLBACK_REVISION_NOT_FOUND,
                "Unable to find the revision to rollback to.".into(),
            ));
            return self.clear_rollback_to(d).await;
        };
        let mut template = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        let current = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        if equal_ignore_hash(&template, &current) {
            self.actions.record_event(EventRecord::warning(
                CONTROLLER_NAME,
                &*d,
                reasons::ROLLBACK_TEMPLATE_UNCHANGED,
                format!(
                    "The rollback revision contains the same template as current deployment \"{}\"",
                    name(&d.metadata)
                ),
            ));
            return self.clear_rollback_to(d).await;
        }
        if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        if let Some(spec) = d.spec.as_mut() {
            spec.template = template;
        }
        self.actions.record_event(EventRecord::normal(
            CONTROLLER_NAME,
            &*d,
            reasons::DEPLOYMENT_ROLLBACK,
            format!(
                "Rolled back deployment \"{}\" to revision {target}",
                name(&d.metadata)
            ),
        ));
        self.clear_rollback_to(d).await
    }

    async fn clear_rollback_to(&self, d: &mut Deployment) -> Result<Action, SyncError> {
        if let Some(annotations) = d.metadata.annotations.as_mut() {
            annotations.remove(ROLLBACK_TO_ANNOTATION);
        }
        let stored = self
            .actions
            .update_deployment(d)
            .await
            .map_err(api_error(format!(
                "updating deployment {}",
                name(&d.metadata)
            )))?;
        d.metadata = stored.metadata;
        Ok(Action::AwaitChange)
    }
}
