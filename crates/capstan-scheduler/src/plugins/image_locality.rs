//! ImageLocality: prefers nodes that already have the pod's images, weighted by image size and
//! by how widely the image is spread (an image on every node says nothing about this node), as
//! kube-scheduler's `scaledImageScore` does, so that pulls are avoided without piling pods
//! onto the one node that happens to have an image.

use crate::framework::{Cycle, MAX_NODE_SCORE, Plugin, Score, Status};
use crate::snapshot::NodeInfo;

pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
/// Below this much image data present, the score is 0 (small images pull fast anyway).
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container: at or above this much present, the score is 100.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

pub struct ImageLocality;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl Score for ImageLocality {
    fn pre_score(&self, cycle: &mut Cycle<'_>, _feasible: &[usize]) -> Status {
        if cycle.pod.images.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }

    fn score(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> i64 {
        let total_nodes = cycle.snapshot.node_count().max(1) as f64;
        let sum: i64 = cycle
            .pod
            .images
            .iter()
            .filter_map(|image| {
                let size = *node.images.get(image)?;
                let spread = f64::from(cycle.snapshot.image_node_count(image)) / total_nodes;
                Some((size as f64 * spread) as i64)
            })
            .sum();
        let max_threshold = MAX_CONTAINER_THRESHOLD * cycle.pod.images.len() as i64;
        let clamped = sum.clamp(MIN_THRESHOLD, max_threshold);
        MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, run_score, snapshot};

    #[test]
    fn nodes_with_large_images_present_score_higher() {
        let gb = 1000 * MB;
        let mut snapshot = snapshot(
            vec![
                node("has-big")
                    .image("big:1", gb + MIN_THRESHOLD)
                    .image("small:1", MB)
                    .build(),
                node("has-small").image("small:1", MB).build(),
                node("bare").build(),
            ],
            vec![],
        );
        let big = pod("p").image("big:1").info();
        let scores = run_score(&ImageLocality, &mut snapshot, &big);
        // One node in three has it: the size counts a third.
        assert!(scores[0] > 30 && scores[0] < 40, "{scores:?}");
        assert_eq!(&scores[1..], &[0, 0]);
        let untagged = pod("p").image("big").info();
        assert_eq!(untagged.images, vec!["big:latest"]);
    }
}
