//! PodDisruptionBudgets as preemption sees them: which pods a budget covers and how many more
//! of them may go (`status.disruptionsAllowed`), parsed once when the watch delivers the
//! budget. Preemption prefers victims whose eviction keeps every budget, and nodes whose
//! victims break the fewest budgets, but still preempts when every choice breaks one, as
//! kube-scheduler does: a budget guards voluntary disruptions, and preemption by a more
//! important pod is only asked to respect it where it can.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::pod_info::PodInfo;
use crate::selectors::PodSelector;

/// One PodDisruptionBudget, reduced to what preemption reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisruptionBudget {
    pub namespace: String,
    pub name: String,
    pub selector: PodSelector,
    /// `status.disruptionsAllowed`: how many covered pods may still be evicted.
    pub disruptions_allowed: i32,
    /// `status.disruptedPods`: names of pods whose eviction the API server already counted
    /// against the budget; evicting them again costs nothing more.
    pub disrupted_pods: HashSet<String>,
}

impl DisruptionBudget {
    /// Parses a budget; `None` for a budget that covers no pod. kube-scheduler treats a nil or
    /// empty selector as matching nothing (unlike the eviction API, where `{}` matches all), and
    /// an invalid selector likewise.
    pub fn new(pdb: &PodDisruptionBudget) -> Option<DisruptionBudget> {
        let selector = pdb.spec.as_ref()?.selector.as_ref()?;
        let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty());
        if empty {
            return None;
        }
        let status = pdb.status.as_ref();
        Some(DisruptionBudget {
            namespace: pdb
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pdb.metadata.name.clone().unwrap_or_default(),
            selector: PodSelector::compile(Some(selector)),
            disruptions_allowed: status.map_or(0, |s| s.disruptions_allowed),
            disrupted_pods: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default(),
        })
    }

    /// `namespace/name`, the key the snapshot knows the budget by.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn covers(&self, pod: &PodInfo) -> bool {
        self.namespace == pod.namespace && self.selector.matches(&pod.labels)
    }
}

/// Splits `pods` (most important first) into those whose eviction, in that order, would
/// violate a budget and those that would not (kube-scheduler's `filterPodsWithPDBViolation`).
/// Each budget's allowance is spent by the covered pods in order; a pod already among its
/// `disruptedPods` spends nothing. Both halves keep the input order.
pub fn split_by_violation<'b>(
    pods: Vec<Arc<PodInfo>>,
    budgets: impl IntoIterator<Item = &'b DisruptionBudget>,
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowances: Vec<(&DisruptionBudget, i32)> = budgets
        .into_iter()
        .map(|b| (b, b.disruptions_allowed))
        .collect();
    if allowances.is_empty() {
        return (Vec::new(), pods);
    }
    let mut violating = Vec::new();
    let mut non_violating = Vec::new();
    for pod in pods {
        let mut violates = false;
        // A pod without labels matches no (non-empty) selector.
        if !pod.labels.is_empty() {
            for (budget, allowed) in &mut allowances {
                if !budget.covers(&pod) || budget.disrupted_pods.contains(&pod.name) {
                    continue;
                }
                *allowed -= 1;
                if *allowed < 0 {
                    violates = true;
                }
            }
        }
        if violates {
            violating.push(pod);
        } else {
            non_violating.push(pod);
        }
    }
    (violating, non_violating)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{budget, pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    #[test]
    fn budgets_with_no_selector_cover_nothing() {
        let mut nil = budget("nil", "a", 0, &[]);
        nil.spec.as_mut().unwrap().selector = None;
        let mut empty = budget("empty", "a", 0, &[]);
        empty.spec.as_mut().unwrap().selector = Some(LabelSelector::default());
        assert!(DisruptionBudget::new(&nil).is_none());
        assert!(DisruptionBudget::new(&empty).is_none());
        assert!(DisruptionBudget::new(&budget("a", "a", 0, &[])).is_some());
    }

    #[test]
    fn violations_spend_each_budget_in_victim_order() {
        struct Case {
            name: &'static str,
            budgets: Vec<PodDisruptionBudget>,
            /// (pod name, app label, namespace)
            pods: Vec<(&'static str, &'static str, &'static str)>,
            violating: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "no budgets: nothing violates",
                budgets: vec![],
                pods: vec![("p1", "a", "default"), ("p2", "a", "default")],
                violating: vec![],
            },
            Case {
                name: "one allowed: the second covered pod violates",
                budgets: vec![budget("b", "a", 1, &[])],
                pods: vec![
                    ("p1", "a", "default"),
                    ("p2", "a", "default"),
                    ("p3", "other", "default"),
                ],
                violating: vec!["p2"],
            },
            Case {
                name: "none allowed: every covered pod violates",
                budgets: vec![budget("b", "a", 0, &[])],
                pods: vec![("p1", "a", "default"), ("p2", "a", "default")],
                violating: vec!["p1", "p2"],
            },
            Case {
                name: "already disrupted pods are not counted again",
                budgets: vec![budget("b", "a", 1, &["p1"])],
                pods: vec![("p1", "a", "default"), ("p2", "a", "default")],
                violating: vec![],
            },
            Case {
                name: "budgets only cover their own namespace",
                budgets: vec![budget("b", "a", 0, &[])],
                pods: vec![("p1", "a", "other-ns"), ("p2", "", "default")],
                violating: vec![],
            },
            Case {
                name: "a pod violates if any of its budgets is spent",
                budgets: vec![budget("wide", "a", 5, &[]), budget("tight", "a", 0, &[])],
                pods: vec![("p1", "a", "default")],
                violating: vec!["p1"],
            },
        ];
        for case in cases {
            let budgets: Vec<DisruptionBudget> = case
                .budgets
                .iter()
                .filter_map(DisruptionBudget::new)
                .collect();
            let pods: Vec<Arc<PodInfo>> = case
                .pods
                .iter()
                .map(|(name, app, namespace)| {
                    let builder = pod(name).namespace(namespace);
                    if app.is_empty() {
                        builder.info()
                    } else {
                        builder.label("app", app).info()
                    }
                })
                .collect();
            let total = pods.len();
            let (violating, non_violating) = split_by_violation(pods, &budgets);
            let names: Vec<&str> = violating.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, case.violating, "{}", case.name);
            assert_eq!(
                violating.len() + non_violating.len(),
                total,
                "{}",
                case.name
            );
        }
    }
}
