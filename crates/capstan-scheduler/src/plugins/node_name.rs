//! NodeName: a pod that names its node in `spec.nodeName` fits only there. The scheduler only
//! sees such pods when the named node does not fit or is unknown, so this mostly explains why.

use crate::framework::{Cycle, Filter, Plugin, Status};
use crate::snapshot::NodeInfo;

pub const NAME: &str = "NodeName";
pub const REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl Filter for NodeName {
    fn filter(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> Status {
        match &cycle.pod.node_name {
            Some(wanted) if *wanted != node.name => Status::unresolvable(REASON),
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node, pod, run_plain_filter, snapshot};

    #[test]
    fn a_pod_naming_a_node_fits_only_that_node() {
        let snapshot = snapshot(vec![node("n1").build(), node("n2").build()], vec![]);
        let cases = [
            (
                "no node name fits anywhere",
                pod("p").info(),
                "n2",
                Code::Success,
            ),
            (
                "the named node fits",
                pod("p").node_name("n1").info(),
                "n1",
                Code::Success,
            ),
            (
                "another node does not",
                pod("p").node_name("n1").info(),
                "n2",
                Code::UnschedulableAndUnresolvable,
            ),
        ];
        for (name, pod, node, want) in cases {
            let status = run_plain_filter(&NodeName, &snapshot, &pod, node);
            assert_eq!(status.code, want, "{name}");
            if want != Code::Success {
                assert_eq!(status.reasons, vec![REASON], "{name}");
            }
        }
    }
}
