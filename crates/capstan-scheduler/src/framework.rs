//! The scheduling framework's extension points as narrow traits, and what flows between them:
//! [`Status`] (a [`Code`] and reasons, never a bare bool), [`CycleState`] (per-cycle data keyed
//! by type, so plugins cannot collide on string keys) and [`Cycle`] (the pod, the snapshot and
//! the state of one scheduling attempt).
//!
//! The contracts follow kube-scheduler: a PreFilter may reject the pod for every node or answer
//! `Skip` to have its Filter skipped; Filters run per node and must not mutate anything; Scores
//! return a raw number that `normalize` maps into `0..=MAX_NODE_SCORE`, then the profile weight
//! multiplies it; PostFilter runs only when no node fits; Reserve and Bind run after a node is
//! chosen.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::pod_info::PodInfo;
use crate::snapshot::{NodeInfo, Snapshot};

/// The highest score a plugin gives a node after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// The outcome class of an extension point (kube-scheduler's `framework.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Success,
    /// The pod does not fit now; preempting pods might change that.
    Unschedulable,
    /// The pod does not fit and preemption cannot help (labels, taints, node name).
    UnschedulableAndUnresolvable,
    /// The plugin has nothing to do for this pod; its later extension points are skipped.
    Skip,
    /// Something went wrong inside the plugin; the pod is retried with backoff.
    Error,
}

/// A plugin's verdict with the reasons shown to users (`kubectl describe pod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<Cow<'static, str>>,
    /// The plugin that produced a failure, for the queue's "which events can help" logic.
    pub plugin: &'static str,
}

impl Status {
    pub const fn success() -> Status {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    pub const fn skip() -> Status {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    pub fn new(code: Code, reason: impl Into<Cow<'static, str>>) -> Status {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }

    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Unschedulable, reason)
    }

    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, reason)
    }

    pub fn error(message: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Error, message)
    }

    pub fn with_plugin(mut self, plugin: &'static str) -> Status {
        self.plugin = plugin;
        self
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// The reasons joined as kube-scheduler's `Status.Message()` does.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

/// Per-cycle data shared between a plugin's extension points, keyed by its Rust type. A
/// handful of entries at most, so a vector beats a hash map.
#[derive(Default)]
pub struct CycleState {
    entries: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
}

impl CycleState {
    /// Stores `value`, replacing an earlier value of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        match self.entries.iter_mut().find(|(t, _)| *t == id) {
            Some(entry) => entry.1 = Box::new(value),
            None => self.entries.push((id, Box::new(value))),
        }
    }

    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.entries
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref::<T>())
    }
}

/// One scheduling attempt of one pod.
pub struct Cycle<'a> {
    pub pod: &'a PodInfo,
    pub snapshot: &'a Snapshot,
    pub state: CycleState,
}

impl<'a> Cycle<'a> {
    pub fn new(pod: &'a PodInfo, snapshot: &'a Snapshot) -> Cycle<'a> {
        Cycle {
            pod,
            snapshot,
            state: CycleState::default(),
        }
    }
}

pub trait Plugin: Send + Sync {
    /// The plugin's name as kube-scheduler spells it (`NodeResourcesFit`).
    fn name(&self) -> &'static str;
}

pub trait PreFilter: Plugin {
    /// Computes per-pod state once before nodes are filtered. `Unschedulable*` rejects the pod
    /// on every node; `Skip` skips this plugin's Filter for the cycle.
    fn pre_filter(&self, cycle: &mut Cycle<'_>) -> Status;
}

pub trait Filter: Plugin {
    /// Does the pod fit `node`? Pure: called for many nodes, possibly on a copy of a node with
    /// pods removed (preemption's what-if), so it must read the node only from `node`.
    fn filter(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> Status;
}

/// The per-node outcome of filtering, for diagnosis and preemption.
#[derive(Debug, Clone, Default)]
pub struct NodeStatuses {
    /// Failed nodes by node index, with the first failing filter's status.
    pub failed: Vec<(usize, Status)>,
}

impl NodeStatuses {
    pub fn get(&self, node_index: usize) -> Option<&Status> {
        self.failed
            .iter()
            .find(|(i, _)| *i == node_index)
            .map(|(_, s)| s)
    }
}

/// What preemption decided: the pod should go to `node` once `victims` are gone.
#[derive(Debug, Clone)]
pub struct Nomination {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

/// Runs the profile's filters on one node; preemption uses it for its what-if checks.
pub type FilterRunner<'r> = dyn Fn(&Cycle<'_>, &NodeInfo) -> Status + 'r;

pub trait PostFilter: Plugin {
    /// Tries to make the pod schedulable after no node fitted (preemption). `Err` carries a
    /// status whose message goes into the FitError: `Unschedulable` when the pod may not
    /// preempt now (a nomination it has stands), `UnschedulableAndUnresolvable` when no node
    /// would fit it even after preemption (a nomination it has is dropped).
    fn post_filter(
        &self,
        cycle: &Cycle<'_>,
        statuses: &NodeStatuses,
        run_filters: &FilterRunner<'_>,
    ) -> Result<Nomination, Status>;
}

pub trait Score: Plugin {
    /// Per-pod preparation before scoring the feasible nodes; `Skip` leaves this plugin out.
    fn pre_score(&self, _cycle: &mut Cycle<'_>, _feasible: &[usize]) -> Status {
        Status::success()
    }

    /// A raw score for one feasible node.
    fn score(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> i64;

    /// Maps raw scores (one per feasible node, in order) into `0..=MAX_NODE_SCORE`. The default
    /// is for plugins whose raw scores are already in range.
    fn normalize(&self, _cycle: &Cycle<'_>, _scores: &mut [i64]) {}
}

pub trait Reserve: Plugin {
    /// Claims what the pod needs on `node` before binding. Not idempotent: every successful
    /// `reserve` is paired with exactly one `unreserve` if the pod is not bound after all.
    fn reserve(&self, pod: &PodInfo, node: &str) -> Status;

    /// Undoes `reserve`; must not fail.
    fn unreserve(&self, pod: &PodInfo, node: &str);
}

pub type BindFuture<'a> = Pin<Box<dyn Future<Output = Status> + Send + 'a>>;

pub trait Bind: Plugin {
    /// Binds the pod to `node` through the API. `Skip` passes to the next binder; any other
    /// failure makes the scheduler forget the assumption and retry the pod with backoff.
    /// Cancel-safe: a dropped future leaves at most a bind whose result the watch reports.
    fn bind<'a>(&'a self, pod: &'a PodInfo, node: &'a str) -> BindFuture<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_state_is_keyed_by_type() {
        struct Counts(u32);
        struct Other(&'static str);
        let mut state = CycleState::default();
        state.insert(Counts(1));
        state.insert(Other("x"));
        state.insert(Counts(2));
        assert_eq!(state.get::<Counts>().map(|c| c.0), Some(2));
        assert_eq!(state.get::<Other>().map(|o| o.0), Some("x"));
        assert!(state.get::<u8>().is_none());
    }
}
