//! What every rollout strategy shares (Kubernetes' `deployment/sync.go` and the parts of
//! `deployment/util` it uses): finding the new ReplicaSet (the one whose template equals the
//! Deployment's, ignoring `pod-template-hash`) and creating it, revision and replica
//! annotations, scaling — proportionally across ReplicaSets when a Deployment is resized in the
//! middle of a rollout — the status counts, and cleaning up old ReplicaSets beyond
//! `revisionHistoryLimit`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::progress::{get_condition, has_progress_deadline, new_condition, set_condition};
use super::rolling::{max_surge, max_unavailable, new_rs_new_replicas};
use super::*;

/// The effects and clock of one sync: Kubernetes' `DeploymentController` methods hang off it.
pub struct Syncer<'a, A> {
    pub actions: &'a A,
    pub now: Timestamp,
    /// Every cached ReplicaSet of the namespace, owned or not: a create refused as
    /// AlreadyExists is explained by whichever holds the name.
    pub namespace_replica_sets: &'a [&'a ReplicaSet],
}

/// Kubernetes' `controller.ComputeHash`: FNV-32a of the template (its canonical JSON here, where
/// Kubernetes hashes Go's struct dump) and of the collision count, rendered with
/// `rand.SafeEncodeString` (digits mapped onto consonants and digits that spell no words).
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    crate::history::safe_hash(
        &serde_json::to_vec(template).unwrap_or_default(),
        collision_count,
    )
}

fn without_hash_label(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(meta) = template.metadata.as_mut()
        && let Some(labels) = meta.labels.as_mut()
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
        if labels.is_empty() {
            meta.labels = None;
        }
    }
    template
}

/// Kubernetes' `EqualIgnoreHash`: are the templates equal apart from `pod-template-hash`?
///
/// Compared as Go compares structs, where an absent field and its zero value are the same:
/// a template that came in as protobuf carries `stdin: false` and `generation: 0`, while the
/// same template written back by a Go client (`kubectl rollout undo`) omits them.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let json =
        |t: &PodTemplateSpec| serde_json::to_value(without_hash_label(t)).unwrap_or_default();
    crate::history::equal_as_go(&json(a), &json(b))
}

fn template_of(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

fn creation(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Oldest first, by name among equals (Kubernetes' `ReplicaSetsByCreationTimestamp`).
pub fn sort_by_creation(rss: &mut [ReplicaSet]) {
    rss.sort_by(|a, b| {
        creation(a)
            .cmp(&creation(b))
            .then_with(|| name(&a.metadata).cmp(name(&b.metadata)))
    });
}

/// The ReplicaSet whose template is the Deployment's; the oldest if several are.
pub fn find_new_replica_set(d: &Deployment, rs_list: &[ReplicaSet]) -> Option<ReplicaSet> {
    let template = template_of(d);
    let mut sorted = rs_list.to_vec();
    sort_by_creation(&mut sorted);
    sorted.into_iter().find(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, &template))
    })
}

/// Every ReplicaSet but the new one.
pub fn find_old_replica_sets(d: &Deployment, rs_list: &[ReplicaSet]) -> Vec<ReplicaSet> {
    let new_uid = find_new_replica_set(d, rs_list).and_then(|rs| rs.metadata.uid);
    rs_list
        .iter()
        .filter(|rs| rs.metadata.uid != new_uid || new_uid.is_none())
        .cloned()
        .collect()
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The ReplicaSet's revision; unparsable revisions count as none.
pub fn revision(rs: &ReplicaSet) -> Option<i64> {
    annotation(&rs.metadata, REVISION_ANNOTATION)?.parse().ok()
}

pub fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter().filter_map(revision).max().unwrap_or(0)
}

/// Active ReplicaSets: those asked to run pods.
pub fn active(rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    rss.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .cloned()
        .collect()
}

pub fn replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter().map(rs_replicas).fold(0i32, i32::saturating_add)
}

pub fn actual_replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter().map(rs_actual).fold(0i32, i32::saturating_add)
}

pub fn available_replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter().map(rs_available).fold(0i32, i32::saturating_add)
}

pub fn ready_replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter()
        .map(|rs| rs_status_count(rs, |s| s.ready_replicas))
        .fold(0i32, i32::saturating_add)
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key)?.parse().ok()
}

/// Annotations a Deployment never copies to its ReplicaSets.
fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        "kubectl.kubernetes.io/last-applied-configuration"
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | ROLLBACK_TO_ANNOTATION
    )
}

/// Copies the Deployment's annotations (`kubernetes.io/change-cause` among them) onto the
/// ReplicaSet; true if that changed anything.
fn copy_deployment_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (key, value) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(key) || annotations.get(key) == Some(value) {
            continue;
        }
        annotations.insert(key.clone(), value.clone());
        changed = true;
    }
    changed
}

/// Sets `desired-replicas` and `max-replicas`; true if they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [
        (DESIRED_REPLICAS_ANNOTATION, desired),
        (MAX_REPLICAS_ANNOTATION, max),
    ] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    int_annotation(rs, DESIRED_REPLICAS_ANNOTATION) != Some(desired)
        || int_annotation(rs, MAX_REPLICAS_ANNOTATION) != Some(max)
}

/// Kubernetes' `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises the
/// revision to `new_revision` (remembering the old one in `revision-history` when a rollback
/// revives an old ReplicaSet), and for a ReplicaSet about to be created sets the replica
/// annotations. True if anything changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = copy_deployment_annotations(d, rs);
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_revision = match old.as_deref() {
        None | Some("") => 0,
        Some(text) => match text.parse::<i64>() {
            Ok(revision) => revision,
            Err(_) => return false,
        },
    };
    if old_revision < new_revision {
        annotations.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations
                .get(REVISION_HISTORY_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY_ANNOTATION.into(), old);
            } else {
                let mut revisions: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REVISION_HISTORY_LENGTH && start < revisions.len() {
                    total -= revisions[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REVISION_HISTORY_LENGTH {
                    revisions = revisions.split_off(start);
                    revisions.push(&old);
                    annotations.insert(REVISION_HISTORY_ANNOTATION.into(), revisions.join(","));
                }
            }
        }
    }
    if !exists {
        let desired = deployment_replicas(d);
        changed |= set_replicas_annotations(rs, desired, desired.saturating_add(max_surge(d)));
    }
    changed
}

/// Sets the Deployment's revision annotation; true if it changed.
pub fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let annotations = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if annotations.get(REVISION_ANNOTATION).map(String::as_str) == Some(revision) {
        return false;
    }
    annotations.insert(REVISION_ANNOTATION.into(), revision.into());
    true
}

/// Kubernetes' `IsSaturated`: the ReplicaSet runs all of the Deployment's replicas, available.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else {
        return false;
    };
    let desired = deployment_replicas(d);
    int_annotation(rs, DESIRED_REPLICAS_ANNOTATION) == Some(desired)
        && rs_replicas(rs) == desired
        && rs_available(rs) == desired
}

/// Kubernetes' `DeploymentComplete`: every replica updated, available, and nothing old left.
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = deployment_replicas(d);
    status.updated_replicas.unwrap_or(0) == desired
        && status.replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) == desired
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// Go's `omitempty`: zero counts and empty lists are absent, so statuses compare as stored.
pub fn normalized(status: &DeploymentStatus) -> DeploymentStatus {
    DeploymentStatus {
        available_replicas: status.available_replicas.filter(|n| *n != 0),
        collision_count: status.collision_count,
        conditions: status.conditions.clone().filter(|c| !c.is_empty()),
        observed_generation: status.observed_generation.filter(|n| *n != 0),
        ready_replicas: status.ready_replicas.filter(|n| *n != 0),
        replicas: status.replicas.filter(|n| *n != 0),
        terminating_replicas: status.terminating_replicas,
        unavailable_replicas: status.unavailable_replicas.filter(|n| *n != 0),
        updated_replicas: status.updated_replicas.filter(|n| *n != 0),
    }
}

/// Kubernetes' `calculateStatus`: the counts `kubectl rollout status` reads, and the Available
/// condition.
pub fn calculate_status(
    all_rss: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available = available_replica_count(all_rss);
    let total = replica_count(all_rss);
    let unavailable = (total - available).max(0);
    let current = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nonzero(actual_replica_count(all_rss)),
        updated_replicas: nonzero(new_rs.map_or(0, rs_actual)),
        ready_replicas: nonzero(ready_replica_count(all_rss)),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero(unavailable),
        collision_count: current.collision_count,
        conditions: current.conditions.clone(),
        terminating_replicas: None,
    };
    let condition = if available >= deployment_replicas(d) - max_unavailable(d) {
        new_condition(
            reasons::AVAILABLE,
            "True",
            reasons::MINIMUM_REPLICAS_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            reasons::AVAILABLE,
            "False",
            reasons::MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, condition);
    normalized(&status)
}

/// The ReplicaSet sorted by revision, oldest first (Kubernetes' `ReplicaSetsByRevision`).
fn sort_by_revision(rss: &mut [ReplicaSet]) {
    rss.sort_by(|a, b| {
        revision(a)
            .unwrap_or(0)
            .cmp(&revision(b).unwrap_or(0))
            .then_with(|| creation(a).cmp(&creation(b)))
            .then_with(|| name(&a.metadata).cmp(name(&b.metadata)))
    });
}

impl<A: Actions> Syncer<'_, A> {
    /// Writes the Deployment's status; first its metadata when the revision annotation changed
    /// (the status subresource keeps metadata as stored). Keeps `d` at the stored
    /// resourceVersion so later writes of the same sync do not conflict with this one.
    pub(crate) async fn write_deployment(
        &self,
        d: &mut Deployment,
        metadata_changed: bool,
    ) -> Result<(), SyncError> {
        let d_name = name(&d.metadata).to_string();
        if metadata_changed {
            let stored = self
                .actions
                .update_deployment(d)
                .await
                .map_err(api_error(format!("updating deployment {d_name}")))?;
            d.metadata = stored.metadata;
        }
        let stored = self
            .actions
            .update_deployment_status(d)
            .await
            .map_err(api_error(format!("updating status of deployment {d_name}")))?;
        d.metadata.resource_version = stored.metadata.resource_version;
        Ok(())
    }

    /// Kubernetes' `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (created when asked
    /// and missing) and all old ones.
    pub(crate) async fn new_and_old_replica_sets(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
        create_if_missing: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), SyncError> {
        let old = find_old_replica_sets(d, rs_list);
        let new = self
            .get_new_replica_set(d, rs_list, &old, create_if_missing)
            .await?;
        Ok((new, old))
    }

    /// Kubernetes' `getNewReplicaSet`.
    async fn get_new_replica_set(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
        old_rss: &[ReplicaSet],
        create_if_missing: bool,
    ) -> Result<Option<ReplicaSet>, SyncError> {
        let new_revision = max_revision(old_rss) + 1;
        let min_ready_seconds = d.spec.as_ref().and_then(|s| s.min_ready_seconds);

        if let Some(existing) = find_new_replica_set(d, rs_list) {
            let mut rs = existing.clone();
            let annotations_updated =
                set_new_replica_set_annotations(d, &mut rs, new_revision, true);
            let rs_spec = rs.spec.get_or_insert_with(Default::default);
            let min_ready_needs_update =
                rs_spec.min_ready_seconds.unwrap_or(0) != min_ready_seconds.unwrap_or(0);
            if annotations_updated || min_ready_needs_update {
                rs_spec.min_ready_seconds = min_ready_seconds;
                let stored = self
                    .actions
                    .update_replica_set(&rs)
                    .await
                    .map_err(api_error(format!(
                        "updating replica set {}",
                        name(&rs.metadata)
                    )))?;
                return Ok(Some(stored));
            }
            let rs_revision = annotation(&rs.metadata, REVISION_ANNOTATION)
                .unwrap_or_default()
                .to_string();
            let metadata_changed = set_deployment_revision(d, &rs_revision);
            let mut needs_update = metadata_changed;
            if has_progress_deadline(d)
                && get_condition(d.status.as_ref(), reasons::PROGRESSING).is_none()
            {
                let condition = new_condition(
                    reasons::PROGRESSING,
                    "True",
                    reasons::FOUND_NEW_RS,
                    format!("Found new replica set \"{}\"", name(&rs.metadata)),
                    self.now,
                );
                set_condition(d.status.get_or_insert_with(Default::default), condition);
                needs_update = true;
            }
            if needs_update {
                self.write_deployment(d, metadata_changed).await?;
            }
            return Ok(Some(rs));
        }
        if !create_if_missing {
            return Ok(None);
        }

        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = template_of(d);
        let hash = compute_hash(&template, collision_count);
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector: LabelSelector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let rs_name = format!("{}-{hash}", name(&d.metadata));
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                // Deterministic, so that a repeated create is refused instead of duplicated.
                name: Some(rs_name.clone()),
                namespace: d.metadata.namespace.clone(),
                owner_references: Some(vec![controller_ref(&*d)]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let mut all = old_rss.to_vec();
        all.push(new_rs.clone());
        let replicas = new_rs_new_replicas(d, &all, &new_rs)?;
        set_rs_replicas(&mut new_rs, replicas);
        set_new_replica_set_annotations(d, &mut new_rs, new_revision, false);

        let namespace = d.metadata.namespace.clone().unwrap_or_default();
        let created = match self.actions.create_replica_set(&namespace, &new_rs).await {
            Ok(created) => created,
            Err(ActionError::AlreadyExists(_)) => {
                // A slow cache or a hash collision: the cached ReplicaSet of that name tells.
                let Some(existing) = self
                    .namespace_replica_sets
                    .iter()
                    .find(|rs| name(&rs.metadata) == rs_name)
                else {
                    return Err(SyncError::NotCachedYet(rs_name));
                };
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &template_of(d)));
                if ours && same {
                    return Ok(Some((*existing).clone()));
                }
                let status = d.status.get_or_insert_with(Default::default);
                status.collision_count =
                    Some(status.collision_count.unwrap_or(0).saturating_add(1));
                self.write_deployment(d, false).await?;
                return Err(SyncError::HashCollision(rs_name));
            }
            Err(error) => {
                let message = format!("Failed to create new replica set \"{rs_name}\": {error}");
                if has_progress_deadline(d) {
                    let condition = new_condition(
                        reasons::PROGRESSING,
                        "False",
                        reasons::FAILED_RS_CREATE,
                        message.clone(),
                        self.now,
                    );
                    set_condition(d.status.get_or_insert_with(Default::default), condition);
                    // The create failure is the error worth reporting; a failed status write
                    // adds nothing.
                    let _ = self.write_deployment(d, false).await;
                }
                self.actions.record_event(EventRecord::warning(
                    CONTROLLER_NAME,
                    &*d,
                    reasons::FAILED_RS_CREATE,
                    message,
                ));
                return Err(api_error(format!("creating replica set {rs_name}"))(error));
            }
        };
        if replicas > 0 {
            self.actions.record_event(EventRecord::normal(
                CONTROLLER_NAME,
                &*d,
                reasons::SCALING_REPLICA_SET,
                format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
            ));
        }
        let metadata_changed = set_deployment_revision(d, &new_revision.to_string());
        if has_progress_deadline(d) {
            let condition = new_condition(
                reasons::PROGRESSING,
                "True",
                reasons::NEW_RS_CREATED,
                format!("Created new replica set \"{rs_name}\""),
                self.now,
            );
            set_condition(d.status.get_or_insert_with(Default::default), condition);
            self.write_deployment(d, metadata_changed).await?;
        } else if metadata_changed {
            self.write_deployment(d, true).await?;
        }
        Ok(Some(created))
    }

    /// Kubernetes' `scaleReplicaSetAndRecordEvent`: scales if the size differs. Returns whether
    /// it scaled and the ReplicaSet as it now is.
    pub(crate) async fn scale_and_record(
        &self,
        rs: &ReplicaSet,
        new_scale: i32,
        d: &Deployment,
    ) -> Result<(bool, ReplicaSet), SyncError> {
        if rs_replicas(rs) == new_scale {
            return Ok((false, rs.clone()));
        }
        let direction = if rs_replicas(rs) < new_scale {
            "up"
        } else {
            "down"
        };
        self.scale_replica_set(rs, new_scale, d, direction).await
    }

    /// Kubernetes' `scaleReplicaSet`: writes the size and the replica annotations, and records
    /// `ScalingReplicaSet` when the size changed.
    pub(crate) async fn scale_replica_set(
        &self,
        rs: &ReplicaSet,
        new_scale: i32,
        d: &Deployment,
        direction: &str,
    ) -> Result<(bool, ReplicaSet), SyncError> {
        let desired = deployment_replicas(d);
        let max = desired.saturating_add(max_surge(d));
        let size_needs_update = rs_replicas(rs) != new_scale;
        if !size_needs_update && !replicas_annotations_need_update(rs, desired, max) {
            return Ok((false, rs.clone()));
        }
        let old_scale = rs_replicas(rs);
        let mut updated = rs.clone();
        set_rs_replicas(&mut updated, new_scale);
        set_replicas_annotations(&mut updated, desired, max);
        let rs_name = name(&rs.metadata).to_string();
        let stored = self
            .actions
            .update_replica_set(&updated)
            .await
            .map_err(api_error(format!("scaling replica set {rs_name}")))?;
        if size_needs_update {
            self.actions.record_event(EventRecord::normal(
                CONTROLLER_NAME,
                d,
                reasons::SCALING_REPLICA_SET,
                format!("Scaled {direction} replica set {rs_name} from {old_scale} to {new_scale}"),
            ));
        }
        Ok((size_needs_update, stored))
    }

    /// Kubernetes' `scale`: resizes ReplicaSets when the Deployment's replicas changed —
    /// everything to the only active one, old ones to zero once the new one is saturated, and
    /// proportionally (largest first) in the middle of a rolling update.
    pub(crate) async fn scale(
        &self,
        d: &Deployment,
        new_rs: Option<&ReplicaSet>,
        old_rss: &[ReplicaSet],
    ) -> Result<(), SyncError> {
        let desired = deployment_replicas(d);
        if let Some(rs) = find_active_or_latest(new_rs, old_rss) {
            if rs_replicas(&rs) == desired {
                return Ok(());
            }
            self.scale_and_record(&rs, desired, d).await?;
            return Ok(());
        }
        if is_saturated(d, new_rs) {
            for old in active(old_rss) {
                self.scale_and_record(&old, 0, d).await?;
            }
            return Ok(());
        }
        if strategy_type(d) != "RollingUpdate" {
            return Ok(());
        }
        let mut all: Vec<ReplicaSet> = old_rss.to_vec();
        all.extend(new_rs.cloned());
        let mut all = active(&all);
        let current = replica_count(&all);
        let allowed = if desired > 0 {
            desired.saturating_add(max_surge(d))
        } else {
            0
        };
        let to_add = allowed - current;
        let direction = match to_add {
            n if n > 0 => {
                // Larger first; newer first among equals when scaling up.
                all.sort_by(|a, b| {
                    rs_replicas(b)
                        .cmp(&rs_replicas(a))
                        .then_with(|| creation(b).cmp(&creation(a)))
                });
                "up"
            }
            n if n < 0 => {
                // Larger first; older first among equals when scaling down.
                all.sort_by(|a, b| {
                    rs_replicas(b)
                        .cmp(&rs_replicas(a))
                        .then_with(|| creation(a).cmp(&creation(b)))
                });
                "down"
            }
            _ => "",
        };
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(all.len());
        for rs in &all {
            if to_add != 0 {
                let proportion = proportion(rs, d, to_add, added);
                sizes.push(rs_replicas(rs) + proportion);
                added += proportion;
            } else {
                sizes.push(rs_replicas(rs));
            }
        }
        for (index, rs) in all.iter().enumerate() {
            if index == 0 && to_add != 0 {
                // Leftovers from rounding go to the largest ReplicaSet.
                sizes[0] = (sizes[0] + to_add - added).max(0);
            }
            self.scale_replica_set(rs, sizes[index], d, direction)
                .await?;
        }
        Ok(())
    }

    /// Kubernetes' `sync`: scaling and status only, for paused Deployments and scaling events.
    pub(crate) async fn sync(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
    ) -> Result<Action, SyncError> {
        let (new_rs, old_rss) = self.new_and_old_replica_sets(d, rs_list, false).await?;
        self.scale(d, new_rs.as_ref(), &old_rss).await?;
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        if paused && rollback::rollback_to(d).is_none() {
            self.cleanup_deployment(&old_rss, d).await?;
        }
        let mut all = old_rss;
        all.extend(new_rs.clone());
        self.sync_deployment_status(&all, new_rs.as_ref(), d).await
    }

    /// Kubernetes' `syncStatusOnly`, for Deployments being deleted.
    pub(crate) async fn sync_status_only(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
    ) -> Result<Action, SyncError> {
        let (new_rs, old_rss) = self.new_and_old_replica_sets(d, rs_list, false).await?;
        let mut all = old_rss;
        all.extend(new_rs.clone());
        self.sync_deployment_status(&all, new_rs.as_ref(), d).await
    }

    /// Kubernetes' `syncDeploymentStatus`: writes the counts when they changed.
    pub(crate) async fn sync_deployment_status(
        &self,
        all_rss: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
        d: &mut Deployment,
    ) -> Result<Action, SyncError> {
        let status = calculate_status(all_rss, new_rs, d, self.now);
        if normalized(&d.status.clone().unwrap_or_default()) == status {
            return Ok(Action::AwaitChange);
        }
        d.status = Some(status);
        self.write_deployment(d, false).await?;
        Ok(Action::AwaitChange)
    }

    /// Kubernetes' `isScalingEvent`: did `spec.replicas` change since the active ReplicaSets
    /// were last sized? (Their `desired-replicas` annotation remembers.)
    pub(crate) async fn is_scaling_event(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
    ) -> Result<bool, SyncError> {
        let (new_rs, old_rss) = self.new_and_old_replica_sets(d, rs_list, false).await?;
        let mut all = old_rss;
        all.extend(new_rs);
        let desired = deployment_replicas(d);
        Ok(active(&all)
            .iter()
            .filter_map(|rs| int_annotation(rs, DESIRED_REPLICAS_ANNOTATION))
            .any(|annotated| annotated != desired))
    }

    /// Kubernetes' `checkPausedConditions`: an Unknown Progressing condition while paused, so
    /// the pause does not count against the progress deadline.
    pub(crate) async fn check_paused_conditions(
        &self,
        d: &mut Deployment,
    ) -> Result<(), SyncError> {
        if !has_progress_deadline(d) {
            return Ok(());
        }
        let condition = get_condition(d.status.as_ref(), reasons::PROGRESSING);
        if condition.is_some_and(|c| c.reason.as_deref() == Some(reasons::TIMED_OUT)) {
            return Ok(());
        }
        let paused_condition_exists =
            condition.is_some_and(|c| c.reason.as_deref() == Some(reasons::PAUSED));
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let condition = if paused && !paused_condition_exists {
            new_condition(
                reasons::PROGRESSING,
                "Unknown",
                reasons::PAUSED,
                "Deployment is paused".into(),
                self.now,
            )
        } else if !paused && paused_condition_exists {
            new_condition(
                reasons::PROGRESSING,
                "Unknown",
                reasons::RESUMED,
                "Deployment is resumed".into(),
                self.now,
            )
        } else {
            return Ok(());
        };
        set_condition(d.status.get_or_insert_with(Default::default), condition);
        self.write_deployment(d, false).await
    }

    /// Kubernetes' `cleanupDeployment`: deletes the oldest old ReplicaSets beyond
    /// `revisionHistoryLimit`, only those fully scaled down and settled.
    pub(crate) async fn cleanup_deployment(
        &self,
        old_rss: &[ReplicaSet],
        d: &Deployment,
    ) -> Result<(), SyncError> {
        let Some(limit) = d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .filter(|l| *l != i32::MAX)
        else {
            return Ok(());
        };
        let mut cleanable: Vec<ReplicaSet> = old_rss
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .cloned()
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit.max(0));
        if excess <= 0 {
            return Ok(());
        }
        sort_by_revision(&mut cleanable);
        for rs in cleanable.iter().take(excess as usize) {
            let settled = rs.metadata.generation.unwrap_or(0)
                <= rs
                    .status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .unwrap_or(0);
            if rs_actual(rs) != 0 || rs_replicas(rs) != 0 || !settled {
                continue;
            }
            let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
            let uid = rs.metadata.uid.as_deref().unwrap_or_default();
            match self
                .actions
                .delete_replica_set(namespace, name(&rs.metadata), uid)
                .await
            {
                Ok(()) | Err(ActionError::NotFound(_)) => {}
                Err(source) => {
                    return Err(api_error(format!(
                        "deleting replica set {}",
                        name(&rs.metadata)
                    ))(source));
                }
            }
        }
        Ok(())
    }
}

/// Kubernetes' `FindActiveOrLatest`: the only active ReplicaSet, or the newest if none is
/// active; `None` when several are.
pub fn find_active_or_latest(
    new_rs: Option<&ReplicaSet>,
    old_rss: &[ReplicaSet],
) -> Option<ReplicaSet> {
    if new_rs.is_none() && old_rss.is_empty() {
        return None;
    }
    let mut olds = old_rss.to_vec();
    sort_by_creation(&mut olds);
    olds.reverse();
    let mut all = olds.clone();
    all.extend(new_rs.cloned());
    let active = active(&all);
    match active.len() {
        0 => new_rs.cloned().or_else(|| olds.first().cloned()),
        1 => active.into_iter().next(),
        _ => None,
    }
}

/// Kubernetes' `GetProportion`: the share of `to_add` this ReplicaSet takes, bounded by what is
/// left.
fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Kubernetes' `getReplicaSetFraction`: the ReplicaSet's size scaled by how much the
/// Deployment's `replicas + maxSurge` changed since it was sized (its `max-replicas`).
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let desired = deployment_replicas(d);
    if desired == 0 {
        return -rs_replicas(rs);
    }
    let max_now = desired.saturating_add(max_surge(d));
    let max_before = match int_annotation(rs, MAX_REPLICAS_ANNOTATION).filter(|n| *n != 0) {
        Some(max) => max,
        None => {
            let replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if replicas == 0 {
                return 0;
            }
            replicas
        }
    };
    let scaled = f64::from(rs_replicas(rs)) * f64::from(max_now) / f64::from(max_before);
    // Go's math.Round: halves away from zero.
    (scaled.round() as i32) - rs_replicas(rs)
}
