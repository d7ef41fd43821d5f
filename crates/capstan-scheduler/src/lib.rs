//! capstan's scheduler, in kube-scheduler's shape: pods waiting for a node go through a
//! priority queue, are checked against a snapshot of the nodes by filter plugins, ranked by
//! score plugins, and bound through the `pods/binding` subresource.
//!
//! - [`snapshot`], [`pod_info`], [`resources`], [`selectors`]: the cluster as the plugins see
//!   it, parsed once and updated incrementally, with the pods nominated to nodes by preemption.
//! - [`disruption_budget`]: PodDisruptionBudgets as preemption weighs them.
//! - [`framework`]: the extension-point traits and [`framework::Status`].
//! - [`plugins`]: the default plugins and the [`plugins::Profile`] that wires them.
//! - [`schedule`]: one cycle, [`schedule::Scheduler::schedule_one`], and [`schedule::FitError`].
//! - [`queue`]: activeQ, backoffQ and the unschedulable pods.
//! - [`run`]: the runner that watches the API, and the [`run::ApiActions`] effects trait.

pub mod disruption_budget;
pub mod framework;
pub mod plugins;
pub mod pod_info;
pub mod queue;
pub mod resources;
pub mod run;
pub mod schedule;
pub mod selectors;
pub mod snapshot;

#[cfg(test)]
mod testing;
