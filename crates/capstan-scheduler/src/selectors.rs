//! Label and node selectors compiled once per pod for the hot path.
//!
//! `capstan_api::selector::LabelSelector` parses and matches against JSON label maps, which is
//! right for the API server; the scheduler matches typed `BTreeMap<String, String>` labels
//! millions of times per second, so it compiles the typed `metav1.LabelSelector` and
//! `NodeSelectorTerm` objects into these small, hashable forms (hashable so the snapshot can key
//! its per-selector pod counters by them). Invalid operators compile to "matches nothing", which
//! is what Kubernetes' conversion error leads the scheduler to do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// How one requirement relates a label to its values (`metav1` and `NodeSelectorOperator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// The label is an integer greater than the (single, integer) value; node selectors only.
    Gt,
    /// The label is an integer less than the (single, integer) value; node selectors only.
    Lt,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: SelectorOperator,
    pub values: Vec<String>,
}

impl Requirement {
    fn compile(key: &str, operator: &str, values: Option<&Vec<String>>) -> Option<Requirement> {
        let values = values.cloned().unwrap_or_default();
        let operator = match operator {
            "In" => SelectorOperator::In,
            "NotIn" => SelectorOperator::NotIn,
            "Exists" => SelectorOperator::Exists,
            "DoesNotExist" => SelectorOperator::DoesNotExist,
            "Gt" => SelectorOperator::Gt,
            "Lt" => SelectorOperator::Lt,
            _ => return None,
        };
        let count_ok = match operator {
            SelectorOperator::In | SelectorOperator::NotIn => !values.is_empty(),
            SelectorOperator::Exists | SelectorOperator::DoesNotExist => values.is_empty(),
            SelectorOperator::Gt | SelectorOperator::Lt => {
                values.len() == 1 && values[0].parse::<i64>().is_ok()
            }
        };
        count_ok.then(|| Requirement {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    /// Kubernetes' `Requirement.Matches` for one value of the label, `None` when unset.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match (self.operator, value) {
            (SelectorOperator::In, Some(v)) => self.values.iter().any(|x| x == v),
            (SelectorOperator::In, None) => false,
            (SelectorOperator::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (SelectorOperator::NotIn, None) => true,
            (SelectorOperator::Exists, v) => v.is_some(),
            (SelectorOperator::DoesNotExist, v) => v.is_none(),
            (SelectorOperator::Gt | SelectorOperator::Lt, None) => false,
            (operator, Some(v)) => {
                let (Ok(actual), Some(Ok(bound))) = (
                    v.parse::<i64>(),
                    self.values.first().map(|b| b.parse::<i64>()),
                ) else {
                    return false;
                };
                if operator == SelectorOperator::Gt {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.key).map(String::as_str))
    }
}

/// A compiled `metav1.LabelSelector` over pod labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodSelector {
    requirements: Vec<Requirement>,
    /// A nil selector, or one that failed to compile: Kubernetes matches nothing then.
    matches_nothing: bool,
}

impl PodSelector {
    /// From an optional `metav1.LabelSelector`: `None` matches nothing, `{}` everything.
    pub fn compile(selector: Option<&LabelSelector>) -> PodSelector {
        let Some(selector) = selector else {
            return PodSelector::nothing();
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: key.clone(),
                operator: SelectorOperator::In,
                values: vec![value.clone()],
            });
        }
        for expression in selector.match_expressions.iter().flatten() {
            // Gt/Lt are not valid in a metav1.LabelSelector.
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" | "Exists" | "DoesNotExist" => Requirement::compile(
                    &expression.key,
                    &expression.operator,
                    expression.values.as_ref(),
                ),
                _ => None,
            };
            match requirement {
                Some(requirement) => requirements.push(requirement),
                None => return PodSelector::nothing(),
            }
        }
        // A canonical order makes equal selectors hash equally however they were written.
        requirements.sort_by(|a, b| a.key.cmp(&b.key).then(a.values.cmp(&b.values)));
        PodSelector {
            requirements,
            matches_nothing: false,
        }
    }

    pub fn nothing() -> PodSelector {
        PodSelector {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    /// Adds `key In (value)` for `matchLabelKeys`: the selector then only counts pods of the same
    /// revision or group as the incoming pod.
    pub fn require_equal(&mut self, key: &str, value: &str) {
        self.requirements.push(Requirement {
            key: key.to_owned(),
            operator: SelectorOperator::In,
            values: vec![value.to_owned()],
        });
        self.requirements
            .sort_by(|a, b| a.key.cmp(&b.key).then(a.values.cmp(&b.values)));
    }

    /// Adds `key NotIn (value)` for `mismatchLabelKeys`.
    pub fn require_different(&mut self, key: &str, value: &str) {
        self.requirements.push(Requirement {
            key: key.to_owned(),
            operator: SelectorOperator::NotIn,
            values: vec![value.to_owned()],
        });
        self.requirements
            .sort_by(|a, b| a.key.cmp(&b.key).then(a.values.cmp(&b.values)));
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// One compiled `NodeSelectorTerm`: its expressions and fields must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeTerm {
    expressions: Vec<Requirement>,
    /// `matchFields`: only `metadata.name` is a valid field.
    name_fields: Vec<Requirement>,
    /// Empty terms, and terms with an invalid requirement, match no node.
    matches_nothing: bool,
}

impl NodeTerm {
    pub fn compile(term: &NodeSelectorTerm) -> NodeTerm {
        let compile_all = |list: Option<&Vec<NodeSelectorRequirement>>, fields: bool| {
            list.into_iter()
                .flatten()
                .map(|r| {
                    if fields && r.key != "metadata.name" {
                        return None;
                    }
                    Requirement::compile(&r.key, &r.operator, r.values.as_ref())
                })
                .collect::<Option<Vec<_>>>()
        };
        let expressions = compile_all(term.match_expressions.as_ref(), false);
        let name_fields = compile_all(term.match_fields.as_ref(), true);
        match (expressions, name_fields) {
            (Some(expressions), Some(name_fields)) => NodeTerm {
                matches_nothing: expressions.is_empty() && name_fields.is_empty(),
                expressions,
                name_fields,
            },
            _ => NodeTerm {
                expressions: Vec::new(),
                name_fields: Vec::new(),
                matches_nothing: true,
            },
        }
    }

    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        !self.matches_nothing
            && self.expressions.iter().all(|r| r.matches(labels))
            && self
                .name_fields
                .iter()
                .all(|r| r.matches_value(Some(node_name)))
    }
}

/// What a pod requires of a node's labels: its `nodeSelector` and its required node affinity
/// (terms ORed). Used by NodeAffinity's filter and by PodTopologySpread's
/// `nodeAffinityPolicy: Honor`, so it is hashable to key the spread counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NodeRequirement {
    pub node_selector: Vec<(String, String)>,
    /// `None`: no required node affinity. `Some(empty)`: matches no node (Kubernetes treats an
    /// empty `nodeSelectorTerms` list as matching nothing).
    pub required_terms: Option<Vec<NodeTerm>>,
}

impl NodeRequirement {
    /// The pod's `nodeSelector` and required node affinity, compiled.
    pub fn of(spec: &PodSpec) -> NodeRequirement {
        NodeRequirement {
            node_selector: spec
                .node_selector
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            required_terms: spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|n| {
                    n.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|s| {
                    s.node_selector_terms
                        .iter()
                        .map(NodeTerm::compile)
                        .collect()
                }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.required_terms.is_none()
    }

    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|actual| actual == v))
            && self
                .required_terms
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| t.matches(node_name, labels)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn node_requirements_match_as_kubernetes_operators_do() {
        let node = labels(&[("zone", "a"), ("cores", "8")]);
        let term = |key: &str, op: &str, values: &[&str]| NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_fields: None,
        };
        let cases = [
            (term("zone", "In", &["a", "b"]), true),
            (term("zone", "NotIn", &["a"]), false),
            (term("missing", "NotIn", &["a"]), true),
            (term("zone", "Exists", &[]), true),
            (term("zone", "DoesNotExist", &[]), false),
            (term("cores", "Gt", &["4"]), true),
            (term("cores", "Lt", &["4"]), false),
            (term("zone", "Gt", &["4"]), false),
            (term("cores", "Gt", &["x"]), false),
            (term("zone", "Bogus", &["a"]), false),
            (NodeSelectorTerm::default(), false),
        ];
        for (term, want) in cases {
            assert_eq!(
                NodeTerm::compile(&term).matches("n1", &node),
                want,
                "{term:?}"
            );
        }
        let by_name = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec!["n1".into()]),
            }]),
        };
        assert!(NodeTerm::compile(&by_name).matches("n1", &node));
        assert!(!NodeTerm::compile(&by_name).matches("n2", &node));
    }

    #[test]
    fn nil_pod_selector_matches_nothing_and_empty_matches_everything() {
        let pod = labels(&[("app", "web")]);
        assert!(!PodSelector::compile(None).matches(&pod));
        assert!(PodSelector::compile(Some(&LabelSelector::default())).matches(&pod));
        let selector = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
        };
        assert!(PodSelector::compile(Some(&selector)).matches(&pod));
        assert!(!PodSelector::compile(Some(&selector)).matches(&labels(&[("app", "db")])));
    }
}
