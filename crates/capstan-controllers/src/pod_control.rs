//! Creating and deleting a controller's pods (Kubernetes' `PodControl` and the slow-start
//! batching of `slowStartBatch`): each outcome becomes an event on the owner in Kubernetes'
//! words, and every pod asked for is remembered in the owner's expectations so that the next
//! sync waits for the cache to show it.

use futures_util::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;

use crate::actions::{ActionError, Actions, EventRecord};
use crate::expectations::Expectations;
use crate::runtime::ObjectKey;

/// The first slow-start batch (Kubernetes' `SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH_SIZE: usize = 1;

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// Creates `pods` for `owner` in batches of 1, 2, 4, … so that a broken template costs one
/// failed create, not hundreds. Stops at the first batch with a failure and returns its message.
pub async fn create_pods<A: Actions, K: Resource<DynamicType = ()>>(
    actions: &A,
    component: &'static str,
    owner: &K,
    pods: &[Pod],
    expectations: &Expectations,
    now: Timestamp,
) -> Result<(), String> {
    let key = ObjectKey::of(owner);
    let namespace = key.namespace.as_str();
    let mut remaining = pods;
    let mut batch = remaining.len().min(SLOW_START_INITIAL_BATCH_SIZE);
    while batch > 0 {
        let (now_creating, rest) = remaining.split_at(batch);
        let results = join_all(
            now_creating
                .iter()
                .map(|pod| actions.create_pod(namespace, pod)),
        )
        .await;
        let mut created = Vec::new();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(pod) => {
                    actions.record_event(EventRecord::normal(
                        component,
                        owner,
                        "SuccessfulCreate",
                        format!("Created pod: {}", name(&pod)),
                    ));
                    created.extend(pod.metadata.uid);
                }
                Err(error) => {
                    actions.record_event(EventRecord::warning(
                        component,
                        owner,
                        "FailedCreate",
                        format!("Error creating: {error}"),
                    ));
                    first_error.get_or_insert(error);
                }
            }
        }
        expectations.expect_creations(&key, created, now);
        if let Some(error) = first_error {
            // The rest of the slow start is skipped: the same failure would repeat.
            return Err(error.to_string());
        }
        remaining = rest;
        batch = (2 * batch).min(remaining.len());
    }
    Ok(())
}

/// Deletes `victims` of `owner` at once. A pod already gone counts as deleted; the first other
/// failure's message is returned after every deletion was tried.
pub async fn delete_pods<A: Actions, K: Resource<DynamicType = ()>>(
    actions: &A,
    component: &'static str,
    owner: &K,
    victims: &[&Pod],
    expectations: &Expectations,
    now: Timestamp,
) -> Result<(), String> {
    let key = ObjectKey::of(owner);
    let results = join_all(victims.iter().map(|pod| {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        actions.delete_pod(&key.namespace, name(pod), uid)
    }))
    .await;
    let mut deleted = Vec::new();
    let mut first_error = None;
    for (pod, result) in victims.iter().zip(results) {
        match result {
            Ok(()) => {
                actions.record_event(EventRecord::normal(
                    component,
                    owner,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", name(pod)),
                ));
                deleted.extend(pod.metadata.uid.clone());
            }
            Err(ActionError::NotFound(_)) => {}
            Err(error) => {
                actions.record_event(EventRecord::warning(
                    component,
                    owner,
                    "FailedDelete",
                    format!("Error deleting: {error}"),
                ));
                first_error.get_or_insert(error);
            }
        }
    }
    expectations.expect_deletions(&key, deleted, now);
    match first_error {
        Some(error) => Err(error.to_string()),
        None => Ok(()),
    }
}
