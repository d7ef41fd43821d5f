//! TaintToleration: a node's `NoSchedule` and `NoExecute` taints keep off every pod that does
//! not tolerate them; `PreferNoSchedule` taints only lower the node's score, by how many of them
//! the pod does not tolerate.

use std::borrow::Cow;

use crate::framework::{Cycle, Filter, Plugin, Score, Status};
use crate::plugins::node_affinity::default_normalize;
use crate::snapshot::{NodeInfo, tolerates};

pub const NAME: &str = "TaintToleration";

/// kube-scheduler's reason, naming the first untolerated taint.
pub fn untolerated_taint_reason(key: &str, value: &str) -> String {
    format!("node(s) had untolerated taint {{{key}: {value}}}")
}

pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl Filter for TaintToleration {
    fn filter(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> Status {
        let untolerated = node.taints.iter().find(|taint| {
            (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                && !cycle.pod.tolerations.iter().any(|t| tolerates(t, taint))
        });
        match untolerated {
            None => Status::success(),
            Some(taint) => Status::unresolvable(Cow::Owned(untolerated_taint_reason(
                &taint.key,
                taint.value.as_deref().unwrap_or(""),
            ))),
        }
    }
}

impl Score for TaintToleration {
    fn score(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> i64 {
        node.taints
            .iter()
            .filter(|taint| taint.effect == "PreferNoSchedule")
            .filter(|taint| {
                // Only tolerations that apply to PreferNoSchedule (or to every effect) count.
                !cycle.pod.tolerations.iter().any(|t| {
                    matches!(
                        t.effect.as_deref(),
                        None | Some("") | Some("PreferNoSchedule")
                    ) && tolerates(t, taint)
                })
            })
            .count() as i64
    }

    fn normalize(&self, _cycle: &Cycle<'_>, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node, pod, run_plain_filter, run_score, snapshot};

    #[test]
    fn untolerated_hard_taints_keep_pods_off() {
        let snapshot = snapshot(
            vec![
                node("plain").build(),
                node("control")
                    .taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")
                    .build(),
                node("gpu").taint("gpu", "true", "NoExecute").build(),
                node("soft")
                    .taint("spot", "yes", "PreferNoSchedule")
                    .build(),
            ],
            vec![],
        );
        let cases = [
            (
                "an untainted node takes anything",
                pod("p").info(),
                "plain",
                Ok(()),
            ),
            (
                "an untolerated NoSchedule taint refuses",
                pod("p").info(),
                "control",
                Err("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
            ),
            (
                "an untolerated NoExecute taint refuses",
                pod("p").info(),
                "gpu",
                Err("node(s) had untolerated taint {gpu: true}"),
            ),
            (
                "an Equal toleration with the value fits",
                pod("p")
                    .toleration("gpu", "Equal", "true", "NoExecute")
                    .info(),
                "gpu",
                Ok(()),
            ),
            (
                "an Equal toleration with another value does not",
                pod("p").toleration("gpu", "Equal", "false", "").info(),
                "gpu",
                Err("node(s) had untolerated taint {gpu: true}"),
            ),
            (
                "a toleration for another effect does not",
                pod("p")
                    .toleration("gpu", "Exists", "", "NoSchedule")
                    .info(),
                "gpu",
                Err("node(s) had untolerated taint {gpu: true}"),
            ),
            (
                "PreferNoSchedule never refuses",
                pod("p").info(),
                "soft",
                Ok(()),
            ),
        ];
        for (name, pod, node, want) in cases {
            let status = run_plain_filter(&TaintToleration, &snapshot, &pod, node);
            match want {
                Ok(()) => assert!(status.is_success(), "{name}: {status:?}"),
                Err(reason) => {
                    assert_eq!(status.code, Code::UnschedulableAndUnresolvable, "{name}");
                    assert_eq!(status.reasons, vec![reason], "{name}");
                }
            }
        }
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score_unless_tolerated() {
        let mut snapshot = snapshot(
            vec![
                node("clean").build(),
                node("one").taint("spot", "yes", "PreferNoSchedule").build(),
                node("two")
                    .taint("spot", "yes", "PreferNoSchedule")
                    .taint("old", "", "PreferNoSchedule")
                    .build(),
            ],
            vec![],
        );
        assert_eq!(
            run_score(&TaintToleration, &mut snapshot, &pod("p").info()),
            vec![100, 50, 0]
        );
        let tolerant = pod("p")
            .toleration("spot", "Exists", "", "PreferNoSchedule")
            .info();
        assert_eq!(
            run_score(&TaintToleration, &mut snapshot, &tolerant),
            vec![100, 100, 0]
        );
    }
}
