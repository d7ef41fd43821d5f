//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take no new pods, unless the pod
//! tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint (DaemonSet pods do).

use k8s_openapi::api::core::v1::Taint;

use crate::framework::{Cycle, Filter, Plugin, Status};
use crate::snapshot::{NodeInfo, tolerates};

pub const NAME: &str = "NodeUnschedulable";
pub const REASON: &str = "node(s) were unschedulable";
pub const UNSCHEDULABLE_TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl Filter for NodeUnschedulable {
    fn filter(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let taint = Taint {
            key: UNSCHEDULABLE_TAINT_KEY.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if cycle.pod.tolerations.iter().any(|t| tolerates(t, &taint)) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node, pod, run_plain_filter, snapshot};

    #[test]
    fn cordoned_nodes_refuse_pods_that_do_not_tolerate_it() {
        let snapshot = snapshot(
            vec![
                node("open").build(),
                node("cordoned").unschedulable().build(),
            ],
            vec![],
        );
        let cases = [
            (
                "an open node takes any pod",
                pod("p").info(),
                "open",
                Code::Success,
            ),
            (
                "a cordoned node refuses a plain pod",
                pod("p").info(),
                "cordoned",
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "a cordoned node takes a pod tolerating the taint",
                pod("p")
                    .toleration(UNSCHEDULABLE_TAINT_KEY, "Exists", "", "NoSchedule")
                    .info(),
                "cordoned",
                Code::Success,
            ),
            (
                "a toleration of every taint counts",
                pod("p").toleration("", "Exists", "", "").info(),
                "cordoned",
                Code::Success,
            ),
        ];
        for (name, pod, node, want) in cases {
            let status = run_plain_filter(&NodeUnschedulable, &snapshot, &pod, node);
            assert_eq!(status.code, want, "{name}");
            if want != Code::Success {
                assert_eq!(status.reasons, vec![REASON]);
            }
        }
    }
}
