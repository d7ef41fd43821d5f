//! A runtime that only pretends: containers are entries in memory that start at once, run
//! until stopped, and leave nothing on the machine. Hollow nodes (`capstan sim`) run on it, so
//! that thousands of simulated nodes load the control plane as real ones would without
//! running a process per container — kubemark's fake runtime.
//!
//! It keeps the real runtime's vocabulary ([`ContainerState`], [`Started`], [`Exited`]), so the
//! agent's status code reads its containers exactly as it reads real ones.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ContainerState;
use crate::shim::{Exited, Started};

/// The exit code a stopped fake container reports: killed by SIGTERM, as a process without a
/// handler for it ends (128 + 15).
const STOPPED_EXIT_CODE: i32 = 143;
const SIGTERM: i32 = 15;

/// Containers by runtime id.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    containers: Mutex<HashMap<String, ContainerState>>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts container `id` now. Starting one that runs already returns its start.
    pub fn start(&self, id: &str) -> Started {
        let mut containers = self.containers.lock().expect("fake runtime lock");
        if let Some(ContainerState::Running(started)) = containers.get(id) {
            return started.clone();
        }
        let started = Started {
            shim_pid: 0,
            pid: 0,
            started_at: jiff::Timestamp::now(),
        };
        containers.insert(id.to_owned(), ContainerState::Running(started.clone()));
        started
    }

    /// The container's state, `None` if there is no such container.
    pub fn state(&self, id: &str) -> Option<ContainerState> {
        let containers = self.containers.lock().expect("fake runtime lock");
        containers.get(id).cloned()
    }

    /// Stops a running container as SIGTERM would; a stopped or unknown one is left as it is.
    pub fn stop(&self, id: &str) {
        let mut containers = self.containers.lock().expect("fake runtime lock");
        if let Some(state) = containers.get_mut(id)
            && let ContainerState::Running(started) = state
        {
            *state = ContainerState::Exited {
                started: Some(started.clone()),
                exit: Exited {
                    exit_code: STOPPED_EXIT_CODE,
                    signal: Some(SIGTERM),
                    oom_killed: false,
                    finished_at: jiff::Timestamp::now(),
                },
            };
        }
    }

    /// Forgets the container.
    pub fn remove(&self, id: &str) {
        self.containers
            .lock()
            .expect("fake runtime lock")
            .remove(id);
    }

    /// Removes every container whose id starts with `prefix` (a pod's), returning how many.
    pub fn remove_prefixed(&self, prefix: &str) -> usize {
        let mut containers = self.containers.lock().expect("fake runtime lock");
        let before = containers.len();
        containers.retain(|id, _| !id.starts_with(prefix));
        before - containers.len()
    }

    /// How many containers exist, running or not.
    pub fn len(&self) -> usize {
        self.containers.lock().expect("fake runtime lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_runs_from_start_until_stopped_and_is_gone_once_removed() {
        let runtime = FakeRuntime::new();
        assert_eq!(runtime.state("a"), None);
        let started = runtime.start("a");
        assert_eq!(
            runtime.state("a"),
            Some(ContainerState::Running(started.clone()))
        );
        // Starting again is the same container, not a new start.
        assert_eq!(runtime.start("a"), started);

        runtime.stop("a");
        match runtime.state("a") {
            Some(ContainerState::Exited {
                started: Some(s),
                exit,
            }) => {
                assert_eq!(s, started);
                assert_eq!(exit.exit_code, 143);
                assert_eq!(exit.signal, Some(15));
            }
            other => panic!("not exited: {other:?}"),
        }
        runtime.remove("a");
        assert!(runtime.is_empty());
    }

    #[test]
    fn a_pods_containers_are_removed_together() {
        let runtime = FakeRuntime::new();
        runtime.start("pod1-app-0");
        runtime.start("pod1-sidecar-0");
        runtime.start("pod2-app-0");
        assert_eq!(runtime.remove_prefixed("pod1-"), 2);
        assert_eq!(runtime.len(), 1);
        assert!(runtime.state("pod2-app-0").is_some());
    }
}
