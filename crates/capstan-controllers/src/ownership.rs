//! Controller references: which object controls which (`ownerReferences` with `controller:
//! true`), and the claim rules by which a controller adopts orphans that match its selector and
//! releases objects that stopped matching — Kubernetes' `ControllerRefManager`.
//!
//! Claiming is decided purely here ([`plan_claim`]); the caller performs the adoptions and
//! releases through its actions, because pods and ReplicaSets are patched differently.

use std::collections::BTreeMap;

use capstan_api::selector::LabelSelector;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{self as metav1, ObjectMeta, OwnerReference};
use kube::Resource;
use kube::runtime::reflector::Store;
use serde_json::{Map, Value};

use crate::actions::{ActionError, Actions};
use crate::expectations::Expectations;
use crate::runtime::{Change, ObjectKey, WorkQueue};

/// The owner reference with `controller: true`, if any (Kubernetes' `GetControllerOf`).
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// The controller reference an owner puts on the objects it creates or adopts
/// (`metav1.NewControllerRef`): `controller` and `blockOwnerDeletion` set, so that foreground
/// deletion of the owner waits for them.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The labels of an object in the form the selector matcher reads.
pub fn labels_value(labels: Option<&BTreeMap<String, String>>) -> Option<Map<String, Value>> {
    labels.map(|labels| {
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()
    })
}

/// The selector of a `metav1.LabelSelector` as Kubernetes' `LabelSelectorAsSelector` builds it.
/// An invalid selector is an error the controller reports without retrying (validation should
/// have refused it).
pub fn selector_of(selector: Option<&metav1::LabelSelector>) -> Result<LabelSelector, String> {
    let value = match selector {
        None => Value::Null,
        Some(selector) => serde_json::to_value(selector).map_err(|e| e.to_string())?,
    };
    LabelSelector::from_label_selector(&value).map_err(|e| e.to_string())
}

/// Do the object's labels satisfy the selector?
pub fn selects(selector: &LabelSelector, meta: &ObjectMeta) -> bool {
    selector.matches(labels_value(meta.labels.as_ref()).as_ref())
}

/// What a controller must do to own exactly the objects it should.
#[derive(Debug)]
pub struct ClaimPlan<'a, T> {
    /// Already controlled by the owner and still selected.
    pub owned: Vec<&'a T>,
    /// Orphans the owner selects: adopt them (add the controller reference).
    pub adopt: Vec<&'a T>,
    /// Controlled by the owner but no longer selected: release them (drop the reference).
    pub release: Vec<&'a T>,
}

/// Kubernetes' `ClaimObject` rules: an object controlled by someone else is never touched; one
/// controlled by `owner_uid` is kept while selected and released otherwise (unless the owner is
/// being deleted, when nothing changes hands); an orphan is adopted when selected, unless the
/// owner or the orphan is being deleted.
pub fn plan_claim<'a, T: Resource + 'a>(
    owner_uid: &str,
    owner_deleting: bool,
    selector: &LabelSelector,
    candidates: impl IntoIterator<Item = &'a T>,
) -> ClaimPlan<'a, T> {
    let mut plan = ClaimPlan {
        owned: Vec::new(),
        adopt: Vec::new(),
        release: Vec::new(),
    };
    for candidate in candidates {
        let meta = candidate.meta();
        let controller = controller_of(meta);
        // Someone else's: never touched, and not worth matching the selector against (a
        // Deployment's candidates are every ReplicaSet of its namespace).
        if controller.is_some_and(|reference| reference.uid != owner_uid) {
            continue;
        }
        let matches = selects(selector, meta);
        match controller {
            Some(_) if matches => plan.owned.push(candidate),
            Some(_) if owner_deleting => {}
            Some(_) => plan.release.push(candidate),
            None if owner_deleting || !matches || meta.deletion_timestamp.is_some() => {}
            None => plan.adopt.push(candidate),
        }
    }
    plan
}

/// Carries out a claim on pods: adopts `adopt` and releases `release` through `actions`, in that
/// order. Returns `owned` with the pods adopted; a pod gone meanwhile is skipped (the next sync
/// sees it as it is now), and the first other failure stops the claim.
pub async fn claim_pods<'a, A: Actions, K: Resource<DynamicType = ()>>(
    actions: &A,
    owner: &K,
    mut owned: Vec<&'a Pod>,
    adopt: impl IntoIterator<Item = &'a Pod>,
    release: impl IntoIterator<Item = &'a Pod>,
) -> Result<Vec<&'a Pod>, ActionError> {
    let owner_uid = owner.meta().uid.as_deref().unwrap_or_default();
    for pod in adopt {
        let references = with_controller_ref(&pod.metadata, controller_ref(owner));
        match actions.patch_pod_owner_references(pod, &references).await {
            Ok(()) => owned.push(pod),
            Err(ActionError::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    for pod in release {
        let references = without_owner(&pod.metadata, owner_uid);
        match actions.patch_pod_owner_references(pod, &references).await {
            Ok(()) | Err(ActionError::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(owned)
}

/// The owner references of `meta` with the owner's controller reference added (adoption).
pub fn with_controller_ref(meta: &ObjectMeta, reference: OwnerReference) -> Vec<OwnerReference> {
    let mut references: Vec<OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != reference.uid)
        .cloned()
        .collect();
    references.push(reference);
    references
}

/// The owner references of `meta` without the owner's (release).
pub fn without_owner(meta: &ObjectMeta, owner_uid: &str) -> Vec<OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect()
}

/// The pod event handler of a controller that owns pods: marks the pod's creation as observed,
/// then reconciles the owner of `kind` (in API group `group`) that controls the pod, or, for a
/// live orphan, every owner in its namespace whose selector would adopt it.
pub fn enqueue_pod_owner<K: Resource<DynamicType = ()> + Clone>(
    change: Change<'_, Pod>,
    group: &str,
    owners: &Store<K>,
    selector: impl Fn(&K) -> Result<LabelSelector, String>,
    expectations: &Expectations,
    queue: &WorkQueue<ObjectKey>,
) {
    let pod = change.object();
    if let Some(uid) = pod.metadata.uid.as_deref() {
        expectations.observe(uid);
    }
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    match controller_of(&pod.metadata) {
        Some(reference) => {
            if reference.kind == K::kind(&()) && reference.api_version.starts_with(group) {
                queue.add(ObjectKey::new(namespace, reference.name.clone()));
            }
        }
        None => {
            if matches!(change, Change::Deleted(_)) || pod.metadata.deletion_timestamp.is_some() {
                return;
            }
            for owner in owners.state() {
                if owner.meta().namespace.as_deref() == Some(namespace.as_str())
                    && selector(&owner).is_ok_and(|s| selects(&s, &pod.metadata))
                {
                    queue.add(ObjectKey::of(&*owner));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(name: &str, app: &str, controller: Option<&str>, deleting: bool) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.labels = Some(BTreeMap::from([("app".into(), app.into())]));
        pod.metadata.owner_references = controller.map(|uid| {
            vec![OwnerReference {
                uid: uid.into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]
        });
        if deleting {
            pod.metadata.deletion_timestamp = Some(metav1::Time(jiff::Timestamp::UNIX_EPOCH));
        }
        pod
    }

    fn names<T: Resource>(objects: &[&T]) -> Vec<String> {
        objects
            .iter()
            .map(|o| o.meta().name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn claim_adopts_matching_orphans_and_releases_owned_objects_that_stopped_matching() {
        let selector = LabelSelector::parse("app=web").unwrap();
        let pods = [
            pod("mine", "web", Some("rs"), false),
            pod("relabelled", "db", Some("rs"), false),
            pod("orphan", "web", None, false),
            pod("orphan-other-app", "db", None, false),
            pod("orphan-terminating", "web", None, true),
            pod("someone-elses", "web", Some("other"), false),
        ];
        let plan = plan_claim("rs", false, &selector, &pods);
        assert_eq!(names(&plan.owned), ["mine"]);
        assert_eq!(names(&plan.adopt), ["orphan"]);
        assert_eq!(names(&plan.release), ["relabelled"]);
    }

    #[test]
    fn claim_by_a_deleting_owner_neither_adopts_nor_releases() {
        let selector = LabelSelector::parse("app=web").unwrap();
        let pods = [
            pod("mine", "web", Some("rs"), false),
            pod("relabelled", "db", Some("rs"), false),
            pod("orphan", "web", None, false),
        ];
        let plan = plan_claim("rs", true, &selector, &pods);
        assert_eq!(names(&plan.owned), ["mine"]);
        assert!(plan.adopt.is_empty());
        assert!(plan.release.is_empty());
    }

    #[test]
    fn a_missing_selector_selects_nothing() {
        let selector = selector_of(None).unwrap();
        assert!(!selects(&selector, &pod("p", "web", None, false).metadata));
    }
}
