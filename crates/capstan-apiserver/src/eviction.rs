//! `pods/<name>/eviction`: deleting a pod unless a PodDisruptionBudget forbids it, as
//! kube-apiserver's `EvictionREST` does (`pkg/registry/core/pod/storage/eviction.go`).
//!
//! The steps, in Kubernetes' order:
//! 1. A pod that has already ended (Succeeded, Failed), has not started (Pending) or is being
//!    deleted disrupts nothing more: it is deleted without looking at budgets.
//! 2. Otherwise the budgets of its namespace whose selector matches it are found; more than one
//!    is answered with a 500 Status, none lets the eviction through.
//! 3. With one budget, an unready pod may go without using up the budget when the budget is
//!    met anyway (or its `unhealthyPodEvictionPolicy` is `AlwaysAllow`); any other pod needs
//!    `status.disruptionsAllowed > 0` in a budget the disruption controller has caught up with
//!    (`status.observedGeneration` ≥ `metadata.generation`), else 429. The allowance is taken by
//!    a compare-and-swap of the budget's status, which also records the pod in
//!    `status.disruptedPods` so that the controller does not count it as healthy meanwhile.
//! 4. The pod gets the `DisruptionTarget` condition and is deleted with the Eviction's
//!    `deleteOptions` (its grace period, preconditions and dry run).

use capstan_api::object;
use capstan_api::resource::{self, ResourceInfo, Subresource};
use capstan_api::selector::LabelSelector;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::registry::{DeleteOptions, ListOptions, Registry, WriteOptions};

/// The cause reason of a refusal by a budget (`policyv1.DisruptionBudgetCause`).
pub const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionBudget";

/// The message of every 429 an eviction answers.
pub const VIOLATES_BUDGET: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// The message of the 500 Status for a pod that several budgets select.
pub const MULTIPLE_BUDGETS: &str = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

/// Kubernetes' `MaxDisruptedPodSize`: evictions the disruption controller has not confirmed yet.
const MAX_DISRUPTED_POD_SIZE: usize = 2000;

/// How often a step that lost a race is tried again (Kubernetes' `EvictionsRetry` has 20 steps).
const RETRIES: usize = 20;

/// How an eviction that raised no error ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The pod was deleted (or marked for deletion): answered 201 with a Success Status.
    Evicted,
    /// Several budgets select the pod: answered with a Failure Status of code 500.
    MultipleBudgets,
}

impl Outcome {
    /// The HTTP code and `metav1.Status` body of this outcome, as kube-apiserver answers it.
    pub fn status(self) -> (u16, Value) {
        match self {
            Outcome::Evicted => (
                201,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ),
            Outcome::MultipleBudgets => (
                500,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": MULTIPLE_BUDGETS, "code": 500}),
            ),
        }
    }
}

fn pods() -> &'static ResourceInfo {
    resource::find("", "v1", "pods").expect("pods are registered")
}

fn budgets() -> &'static ResourceInfo {
    resource::find("policy", "v1", "poddisruptionbudgets").expect("budgets are registered")
}

/// `canIgnorePDB`: a pod that has ended, has not started or is going already.
pub fn can_ignore_budget(pod: &Value) -> bool {
    matches!(
        object::str_at(pod, "/status/phase"),
        Some("Succeeded" | "Failed" | "Pending")
    ) || object::is_terminating(pod)
}

/// `shouldEnforceResourceVersion`: deleting a pod that has not ended is pinned to the version
/// that was judged, so that it cannot become ready (and protected) in between unnoticed.
fn should_enforce_resource_version(pod: &Value) -> bool {
    !matches!(
        object::str_at(pod, "/status/phase"),
        Some("Succeeded" | "Failed")
    ) && !object::is_terminating(pod)
}

/// `IsPodReady`: the pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Does `budget` protect `pod`? A budget whose selector is missing, empty or invalid protects
/// nothing (Kubernetes: "it should match nothing, not everything").
pub fn budget_selects(budget: &Value, pod: &Value) -> bool {
    let Some(selector) = budget.pointer("/spec/selector") else {
        return false;
    };
    match LabelSelector::from_label_selector(selector) {
        Ok(selector) => !selector.is_empty() && selector.matches(object::labels(pod)),
        Err(_) => false,
    }
}

fn integer(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn budget_name(budget: &Value) -> &str {
    object::name(budget).unwrap_or_default()
}

/// `createTooManyRequestsError`: the budget's status lags behind its spec.
fn still_processing(name: &str) -> ApiError {
    ApiError::TooManyRequests {
        message: VIOLATES_BUDGET.into(),
        retry_after_seconds: 10,
        causes: vec![(
            DISRUPTION_BUDGET_CAUSE.into(),
            format!("The disruption budget {name} is still being processed by the server."),
        )],
    }
}

fn budget_forbidden(name: &str, reason: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "poddisruptionbudget.policy {name:?} is forbidden: {reason}"
    ))
}

/// `checkAndDecrement`: the budget with one disruption taken for `pod_name` at `now`, or why
/// it allows none.
pub fn take_disruption(budget: &Value, pod_name: &str, now: &str) -> Result<Value, ApiError> {
    let name = budget_name(budget);
    if integer(budget, "/status/observedGeneration") < integer(budget, "/metadata/generation") {
        return Err(still_processing(name));
    }
    let allowed = integer(budget, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(budget_forbidden(
            name,
            "pdb disruptions allowed is negative",
        ));
    }
    let disrupted = budget
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    if disrupted > MAX_DISRUPTED_POD_SIZE {
        return Err(budget_forbidden(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(ApiError::TooManyRequests {
            message: VIOLATES_BUDGET.into(),
            retry_after_seconds: 0,
            causes: vec![(
                DISRUPTION_BUDGET_CAUSE.into(),
                format!(
                    "The disruption budget {name} needs {} healthy pods and has {} currently",
                    integer(budget, "/status/desiredHealthy"),
                    integer(budget, "/status/currentHealthy"),
                ),
            )],
        });
    }
    let mut budget = budget.clone();
    let status = object::object_field_mut(&mut budget, "status");
    status.insert("disruptionsAllowed".into(), json!(allowed - 1));
    if allowed - 1 == 0 {
        let observed_generation = status
            .get("observedGeneration")
            .cloned()
            .unwrap_or(json!(0));
        set_condition(
            status,
            json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                   "message": "", "observedGeneration": observed_generation}),
            now,
        );
    }
    let disrupted_pods = status.entry("disruptedPods").or_insert_with(|| json!({}));
    if !disrupted_pods.is_object() {
        *disrupted_pods = json!({});
    }
    if let Some(map) = disrupted_pods.as_object_mut() {
        map.insert(pod_name.to_string(), json!(now));
    }
    Ok(budget)
}

/// `meta.SetStatusCondition`: replaces the condition of the same type, keeping its transition
/// time unless the status changes.
fn set_condition(status: &mut Map<String, Value>, mut condition: Value, now: &str) {
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    match list.iter_mut().find(|c| c["type"] == condition["type"]) {
        Some(existing) => {
            let transition = if existing["status"] == condition["status"] {
                existing
                    .get("lastTransitionTime")
                    .cloned()
                    .unwrap_or(json!(now))
            } else {
                json!(now)
            };
            condition["lastTransitionTime"] = transition;
            *existing = condition;
        }
        None => {
            condition["lastTransitionTime"] = json!(now);
            list.push(condition);
        }
    }
}

/// Evicts pod `name` of `namespace` with the Eviction's delete options (dry run included).
pub async fn evict(
    registry: &Registry,
    namespace: &str,
    name: &str,
    options: DeleteOptions,
) -> Result<Outcome, ApiError> {
    // 1. Pods whose eviction disrupts nothing more go at once; a lost race is retried unless
    // the client pinned a resourceVersion itself.
    let client_pinned = options.precondition_resource_version.is_some();
    let mut attempts = 0;
    let pod = loop {
        attempts += 1;
        let pod = registry.get(pods(), Some(namespace), name)?;
        if !can_ignore_budget(&pod) {
            break pod;
        }
        let mut delete_options = options.clone();
        if should_enforce_resource_version(&pod) && !client_pinned {
            delete_options.precondition_resource_version =
                object::resource_version(&pod).map(str::to_string);
        }
        match mark_and_delete(registry, namespace, name, delete_options).await {
            Ok(()) => return Ok(Outcome::Evicted),
            Err(ApiError::Conflict { .. }) if !client_pinned && attempts < RETRIES => continue,
            Err(e) => return Err(e),
        }
    };

    // 2. The budgets that protect the pod.
    let page = registry.list(budgets(), Some(namespace), &ListOptions::default())?;
    let matching: Vec<&Value> = page
        .items
        .iter()
        .filter(|b| budget_selects(b, &pod))
        .collect();
    if matching.len() > 1 {
        return Ok(Outcome::MultipleBudgets);
    }

    // 3. Take one disruption from the budget, unless the pod is unready and may go for free.
    let mut pinned_by_us = false;
    let mut budget_name_taken = String::new();
    if let Some(budget) = matching.first() {
        let budget_name_str = budget_name(budget).to_string();
        budget_name_taken = budget_name_str.clone();
        let unhealthy_goes_free = !is_pod_ready(&pod)
            && (budget.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow"))
                || (integer(budget, "/status/currentHealthy")
                    >= integer(budget, "/status/desiredHealthy")
                    && integer(budget, "/status/desiredHealthy") > 0));
        if unhealthy_goes_free {
            pinned_by_us = true;
        } else {
            let now = object::format_time(jiff::Timestamp::now());
            let write = WriteOptions {
                dry_run: options.dry_run,
                ..WriteOptions::default()
            };
            // A compare-and-swap of the status: a budget changed meanwhile is read again and
            // judged again.
            registry
                .update_with(
                    budgets(),
                    Some(namespace),
                    &budget_name_str,
                    Some(Subresource::Status),
                    write,
                    |current| Ok((take_disruption(current, name, &now)?, Vec::new())),
                )
                .await?;
        }
    }

    // 4. Delete the pod.
    let mut delete_options = options.clone();
    if pinned_by_us && !client_pinned {
        delete_options.precondition_resource_version =
            object::resource_version(&pod).map(str::to_string);
    }
    match mark_and_delete(registry, namespace, name, delete_options).await {
        Ok(()) => Ok(Outcome::Evicted),
        // The unready pod changed since it was judged (it may be ready now): let the client
        // try again.
        Err(ApiError::Conflict { .. }) if pinned_by_us && !client_pinned => {
            Err(still_processing(&budget_name_taken))
        }
        Err(e) => Err(e),
    }
}

/// `addConditionAndDeletePod`: the pod gets `DisruptionTarget` (unless dry run), then is
/// deleted with `options`, whose resourceVersion precondition follows the condition's write.
async fn mark_and_delete(
    registry: &Registry,
    namespace: &str,
    name: &str,
    mut options: DeleteOptions,
) -> Result<(), ApiError> {
    if !options.dry_run {
        let uid = options.precondition_uid.clone();
        let resource_version = options.precondition_resource_version.clone();
        let now = object::format_time(jiff::Timestamp::now());
        let written = registry
            .update_with(
                pods(),
                Some(namespace),
                name,
                Some(Subresource::Status),
                WriteOptions::default(),
                |current| {
                    let actual_uid = object::uid(current).unwrap_or_default();
                    if let Some(uid) = uid.as_deref().filter(|u| !u.is_empty())
                        && uid != actual_uid
                    {
                        return Err(ApiError::Conflict {
                            group: String::new(),
                            resource: "Pod".into(),
                            name: name.to_string(),
                            detail: format!(
                                "the UID in the precondition ({uid}) does not match the UID in record ({actual_uid}). The object might have been deleted and then recreated"
                            ),
                        });
                    }
                    let mut pod = current.clone();
                    // A resourceVersion precondition pins this write: a pod changed since
                    // answers 409.
                    if let Some(rv) = resource_version.as_deref().filter(|r| !r.is_empty()) {
                        object::set_meta(&mut pod, "resourceVersion", json!(rv));
                    }
                    let status = object::object_field_mut(&mut pod, "status");
                    set_pod_condition(
                        status,
                        json!({"type": "DisruptionTarget", "status": "True",
                               "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}),
                        &now,
                    );
                    Ok((pod, Vec::new()))
                },
            )
            .await?;
        if options.precondition_resource_version.is_some() {
            options.precondition_resource_version =
                object::resource_version(&written.object).map(str::to_string);
        }
    }
    registry
        .delete(pods(), Some(namespace), name, &options)
        .await
        .map(|_| ())
}

/// `podutil.UpdatePodCondition`: the condition replaces the one of its type; its transition
/// time moves only when its status does.
fn set_pod_condition(status: &mut Map<String, Value>, mut condition: Value, now: &str) {
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    condition["lastProbeTime"] = Value::Null;
    match list.iter_mut().find(|c| c["type"] == condition["type"]) {
        Some(existing) => {
            condition["lastTransitionTime"] = if existing["status"] == condition["status"] {
                existing
                    .get("lastTransitionTime")
                    .cloned()
                    .unwrap_or(json!(now))
            } else {
                json!(now)
            };
            *existing = condition;
        }
        None => {
            condition["lastTransitionTime"] = json!(now);
            list.push(condition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::WriteOptions;
    use capstan_store::KvStore;
    use std::sync::Arc;

    const NS: &str = "default";

    async fn registry() -> Registry {
        let r = Registry::new(Arc::new(KvStore::memory()));
        let namespaces = resource::find("", "v1", "namespaces").unwrap();
        r.ensure(
            namespaces,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        )
        .await
        .unwrap();
        r
    }

    /// A pod in `phase`, ready or not, labelled `app=web`.
    async fn pod(r: &Registry, name: &str, phase: &str, ready: bool) {
        let body = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        r.create(pods(), Some(NS), body, WriteOptions::default())
            .await
            .unwrap();
        let status = json!({"phase": phase, "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}
        ]});
        r.update_with(
            pods(),
            Some(NS),
            name,
            Some(Subresource::Status),
            WriteOptions::default(),
            |current| {
                let mut p = current.clone();
                p["status"] = status.clone();
                Ok((p, Vec::new()))
            },
        )
        .await
        .unwrap();
    }

    /// A budget over `app=web` whose controller reported `status`.
    async fn budget(r: &Registry, name: &str, status: Value) {
        let body = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
        r.create(budgets(), Some(NS), body, WriteOptions::default())
            .await
            .unwrap();
        r.update_with(
            budgets(),
            Some(NS),
            name,
            Some(Subresource::Status),
            WriteOptions::default(),
            |current| {
                let mut b = current.clone();
                b["status"] = status.clone();
                Ok((b, Vec::new()))
            },
        )
        .await
        .unwrap();
    }

    fn exists(r: &Registry, name: &str) -> bool {
        r.get(pods(), Some(NS), name).is_ok()
    }

    #[tokio::test]
    async fn a_running_pod_without_a_budget_is_evicted() {
        let r = registry().await;
        pod(&r, "web-1", "Running", true).await;
        let outcome = evict(&r, NS, "web-1", DeleteOptions::default()).await;
        assert_eq!(outcome, Ok(Outcome::Evicted));
        assert!(!exists(&r, "web-1"));
        assert_eq!(Outcome::Evicted.status().0, 201);
    }

    #[tokio::test]
    async fn a_budget_that_allows_a_disruption_gives_it_up_for_the_pod() {
        let r = registry().await;
        pod(&r, "web-1", "Running", true).await;
        budget(
            &r,
            "web",
            json!({"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2}),
        )
        .await;
        assert_eq!(
            evict(&r, NS, "web-1", DeleteOptions::default()).await,
            Ok(Outcome::Evicted)
        );
        assert!(!exists(&r, "web-1"));
        let b = r.get(budgets(), Some(NS), "web").unwrap();
        assert_eq!(b["status"]["disruptionsAllowed"], 0);
        assert!(b["status"]["disruptedPods"]["web-1"].is_string());
        assert_eq!(b["status"]["conditions"][0]["type"], "DisruptionAllowed");
        assert_eq!(b["status"]["conditions"][0]["status"], "False");
    }

    #[tokio::test]
    async fn a_budget_with_no_disruptions_left_refuses_with_429_and_changes_nothing() {
        let r = registry().await;
        pod(&r, "web-1", "Running", true).await;
        budget(
            &r,
            "web",
            json!({"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}),
        )
        .await;
        let before = r.get(budgets(), Some(NS), "web").unwrap();
        let err = evict(&r, NS, "web-1", DeleteOptions::default())
            .await
            .unwrap_err();
        let status = err.to_status();
        assert_eq!(status["code"], 429);
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["message"], VIOLATES_BUDGET);
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason": "DisruptionBudget", "message": "The disruption budget web needs 1 healthy pods and has 1 currently"}])
        );
        assert!(exists(&r, "web-1"));
        assert_eq!(r.get(budgets(), Some(NS), "web").unwrap(), before);
    }

    #[tokio::test]
    async fn a_budget_the_controller_has_not_seen_yet_refuses_with_retry_after() {
        let r = registry().await;
        pod(&r, "web-1", "Running", true).await;
        budget(&r, "web", json!({"disruptionsAllowed": 5})).await;
        let err = evict(&r, NS, "web-1", DeleteOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.retry_after_seconds(), Some(10));
        assert_eq!(
            err.to_status()["details"]["causes"][0]["message"],
            "The disruption budget web is still being processed by the server."
        );
        assert!(exists(&r, "web-1"));
    }

    #[tokio::test]
    async fn pending_and_finished_pods_go_whatever_the_budget() {
        let r = registry().await;
        budget(
            &r,
            "web",
            json!({"observedGeneration": 1, "disruptionsAllowed": 0}),
        )
        .await;
        for (name, phase) in [
            ("pending", "Pending"),
            ("done", "Succeeded"),
            ("failed", "Failed"),
        ] {
            pod(&r, name, phase, false).await;
            assert_eq!(
                evict(&r, NS, name, DeleteOptions::default()).await,
                Ok(Outcome::Evicted),
                "{phase}"
            );
            assert!(!exists(&r, name), "{phase}");
        }
    }

    #[tokio::test]
    async fn an_unready_pod_goes_free_when_the_budget_is_met() {
        let r = registry().await;
        pod(&r, "web-1", "Running", false).await;
        budget(
            &r,
            "web",
            json!({"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2}),
        )
        .await;
        assert_eq!(
            evict(&r, NS, "web-1", DeleteOptions::default()).await,
            Ok(Outcome::Evicted)
        );
        let b = r.get(budgets(), Some(NS), "web").unwrap();
        assert_eq!(b["status"]["disruptionsAllowed"], 0);
        assert!(b["status"].get("disruptedPods").is_none());
    }

    #[tokio::test]
    async fn two_budgets_over_one_pod_answer_500() {
        let r = registry().await;
        pod(&r, "web-1", "Running", true).await;
        let allowing = json!({"observedGeneration": 1, "disruptionsAllowed": 1});
        budget(&r, "a", allowing.clone()).await;
        budget(&r, "b", allowing).await;
        let outcome = evict(&r, NS, "web-1", DeleteOptions::default())
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::MultipleBudgets);
        let (code, status) = outcome.status();
        assert_eq!((code, &status["message"]), (500, &json!(MULTIPLE_BUDGETS)));
        assert!(exists(&r, "web-1"));
    }

    #[tokio::test]
    async fn an_unknown_pod_is_not_found() {
        let r = registry().await;
        let err = evict(&r, NS, "nope", DeleteOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "pods \"nope\" not found");
    }

    #[tokio::test]
    async fn a_dry_run_takes_nothing_and_deletes_nothing() {
        let r = registry().await;
        pod(&r, "web-1", "Running", true).await;
        budget(
            &r,
            "web",
            json!({"observedGeneration": 1, "disruptionsAllowed": 1}),
        )
        .await;
        let options = DeleteOptions {
            dry_run: true,
            ..DeleteOptions::default()
        };
        assert_eq!(evict(&r, NS, "web-1", options).await, Ok(Outcome::Evicted));
        assert!(exists(&r, "web-1"));
        let b = r.get(budgets(), Some(NS), "web").unwrap();
        assert_eq!(b["status"]["disruptionsAllowed"], 1);
    }

    #[test]
    fn budgets_with_empty_or_missing_selectors_protect_nothing() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        let cases = [
            (json!({"spec": {}}), false),
            (json!({"spec": {"selector": {}}}), false),
            (
                json!({"spec": {"selector": {"matchLabels": {"app": "db"}}}}),
                false,
            ),
            (
                json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}}),
                true,
            ),
            (
                json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]}}}),
                true,
            ),
        ];
        for (budget, want) in cases {
            assert_eq!(budget_selects(&budget, &pod), want, "{budget}");
        }
    }

    #[test]
    fn a_negative_allowance_is_forbidden() {
        let budget = json!({"metadata": {"name": "web", "generation": 1},
                            "status": {"observedGeneration": 1, "disruptionsAllowed": -1}});
        let err = take_disruption(&budget, "p", "2025-01-01T00:00:00Z").unwrap_err();
        assert_eq!(
            err.to_string(),
            "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"
        );
    }
}
