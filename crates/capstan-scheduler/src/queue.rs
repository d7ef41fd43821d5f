//! The scheduling queue, as kube-scheduler's `PriorityQueue`: pods to try now (activeQ,
//! highest `spec.priority` first, then oldest), pods waiting out a backoff after a failed
//! attempt (backoffQ: 1 s doubling per attempt up to 10 s), and pods no node fits
//! (unschedulable), which wait for a cluster event that may help them — a node added or
//! changed, a pod deleted — and are flushed back anyway after 5 minutes, in case an event was
//! missed or mattered in a way the event table does not know.
//!
//! Time comes from `tokio::time::Instant`, so tests drive it with paused virtual time; the
//! queue itself never sleeps: [`SchedulingQueue::next_wakeup`] says when the runner should look
//! again.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::pod_info::PodInfo;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
pub const UNSCHEDULABLE_FLUSH_INTERVAL: Duration = Duration::from_secs(300);

/// A change in the cluster that may let unschedulable pods fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdded,
    /// Labels, taints, allocatable or `spec.unschedulable` changed.
    NodeUpdated,
    NodeDeleted,
    /// A pod was bound or assumed onto a node (affinity and spreading may now be met).
    AssignedPodAdded,
    /// An assigned pod changed labels.
    AssignedPodUpdated,
    /// An assigned pod went away, freeing resources and lifting anti-affinity.
    AssignedPodDeleted,
}

/// Could `event` help a pod that `plugin` refused? (kube-scheduler's `EventsToRegister`.)
/// Unknown plugins answer yes: a needless retry is cheaper than a pod stuck for 5 minutes.
pub fn event_may_help(plugin: &str, event: ClusterEvent) -> bool {
    use ClusterEvent::*;
    match plugin {
        "NodeResourcesFit" => matches!(event, NodeAdded | NodeUpdated | AssignedPodDeleted),
        "NodeAffinity" | "TaintToleration" | "NodeUnschedulable" | "NodeName" => {
            matches!(event, NodeAdded | NodeUpdated)
        }
        "PodTopologySpread" | "InterPodAffinity" => true,
        _ => true,
    }
}

/// A pod in the queue, with its scheduling history.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// Failed attempts so far; sets the backoff.
    pub attempts: u32,
    /// When the pod first entered the queue (for latency metrics).
    pub first_enqueued: Instant,
    /// Plugins that refused it in the last attempt.
    pub unschedulable_plugins: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff {
        until: Instant,
    },
    Unschedulable {
        since: Instant,
    },
    /// Popped and being scheduled; `cycle` is when it was popped.
    InFlight {
        cycle: u64,
    },
}

struct Entry {
    pod: QueuedPod,
    place: Place,
    /// Distinguishes heap entries of this pod's current stay from stale ones.
    generation: u64,
    last_failure: Option<Instant>,
}

/// activeQ order: higher priority, then earlier arrival.
#[derive(PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    arrival: Reverse<u64>,
    key: String,
    generation: u64,
}

impl Ord for ActiveKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.priority, &self.arrival).cmp(&(other.priority, &other.arrival))
    }
}

impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    sequence: u64,
    /// Incremented on every pop: a scheduling cycle number.
    cycle: u64,
    /// The cycle during which the last cluster event arrived.
    last_event_cycle: u64,
}

/// `1 s × 2^(attempts−1)`, at most 10 s.
pub fn backoff_duration(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

impl SchedulingQueue {
    pub fn new() -> SchedulingQueue {
        SchedulingQueue::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    fn activate(&mut self, key: &str) {
        let generation = self.next_sequence();
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.place = Place::Active;
        entry.generation = generation;
        self.active.push(ActiveKey {
            priority: entry.pod.info.priority,
            arrival: Reverse(generation),
            key: key.to_owned(),
            generation,
        });
    }

    fn back_off_until(&mut self, key: &str, until: Instant) {
        let generation = self.next_sequence();
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.place = Place::Backoff { until };
        entry.generation = generation;
        self.backoff
            .push(Reverse((until, generation, key.to_owned())));
    }

    /// A pending pod appeared or changed. New pods go to activeQ; a changed pod waiting as
    /// unschedulable is retried (its spec may now fit); an in-flight pod keeps its cycle.
    pub fn add_or_update(&mut self, info: Arc<PodInfo>) {
        let key = info.key();
        match self.entries.get_mut(&key) {
            Some(entry) => {
                // Only a change the pod asked for may make it fit; the status patches the
                // scheduler itself writes (condition, nominated node) must not wake it, or every
                // failure would echo back as a retry (kube-scheduler's `isPodUpdated`).
                let (old, new) = (&entry.pod.info.pod, &info.pod);
                let may_help = old.spec != new.spec
                    || old.metadata.labels != new.metadata.labels
                    || old.metadata.annotations != new.metadata.annotations;
                entry.pod.info = info;
                if may_help && let Place::Unschedulable { .. } = entry.place {
                    self.activate(&key);
                }
            }
            None => {
                self.entries.insert(
                    key.clone(),
                    Entry {
                        pod: QueuedPod {
                            info,
                            attempts: 0,
                            first_enqueued: Instant::now(),
                            unschedulable_plugins: Vec::new(),
                        },
                        place: Place::Active,
                        generation: 0,
                        last_failure: None,
                    },
                );
                self.activate(&key);
            }
        }
    }

    /// The pod was deleted, or bound by someone else: forget it wherever it is.
    pub fn delete(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Moves due backoffs to activeQ and flushes pods unschedulable for too long.
    fn flush(&mut self, now: Instant) {
        while let Some(Reverse((until, generation, key))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.generation == generation)
            {
                self.activate(&key);
            }
        }
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                matches!(e.place, Place::Unschedulable { since }
                    if now.duration_since(since) >= UNSCHEDULABLE_FLUSH_INTERVAL)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.move_to_active_or_backoff(&key, now);
        }
    }

    /// Pops the next pod to schedule, if any is due. The pod stays known (in flight) until
    /// one of the `done_*` methods reports the attempt's outcome.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush(now);
        while let Some(top) = self.active.pop() {
            let Some(entry) = self.entries.get_mut(&top.key) else {
                continue;
            };
            if entry.generation != top.generation || entry.place != Place::Active {
                continue;
            }
            self.cycle += 1;
            entry.place = Place::InFlight { cycle: self.cycle };
            return Some(entry.pod.clone());
        }
        None
    }

    /// When the runner should call [`SchedulingQueue::pop`] again if nothing else happens:
    /// the earliest backoff expiry or unschedulable flush.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let backoff = self.backoff.peek().map(|Reverse((until, _, _))| *until);
        let flush = self
            .entries
            .values()
            .filter_map(|e| match e.place {
                Place::Unschedulable { since } => Some(since + UNSCHEDULABLE_FLUSH_INTERVAL),
                _ => None,
            })
            .min();
        match (backoff, flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a pod popped now would be available immediately.
    pub fn has_active(&self) -> bool {
        self.entries.values().any(|e| e.place == Place::Active)
    }

    /// The pod was bound (or handed to the binder): it leaves the queue.
    pub fn done_scheduled(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// No node fitted. The pod waits for a helpful event, unless one already arrived while it
    /// was being scheduled: then it only backs off.
    pub fn done_unschedulable(&mut self, key: &str, plugins: Vec<&'static str>, now: Instant) {
        let last_event_cycle = self.last_event_cycle;
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let popped_cycle = match entry.place {
            Place::InFlight { cycle } => cycle,
            _ => return,
        };
        entry.pod.attempts += 1;
        entry.pod.unschedulable_plugins = plugins;
        entry.last_failure = Some(now);
        if last_event_cycle >= popped_cycle {
            let until = now + backoff_duration(entry.pod.attempts);
            self.back_off_until(key, until);
        } else {
            entry.place = Place::Unschedulable { since: now };
        }
    }

    /// The attempt failed for another reason (plugin error, bind failure): back off and retry.
    pub fn done_error(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.pod.attempts += 1;
        entry.last_failure = Some(now);
        let until = now + backoff_duration(entry.pod.attempts);
        self.back_off_until(key, until);
    }

    fn move_to_active_or_backoff(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let until = entry
            .last_failure
            .map(|at| at + backoff_duration(entry.pod.attempts));
        match until {
            Some(until) if until > now => self.back_off_until(key, until),
            _ => self.activate(key),
        }
    }

    /// A cluster event: unschedulable pods that `event` may help move on (to backoffQ if still
    /// backing off, else activeQ); pods in flight will back off instead of parking.
    pub fn on_cluster_event(&mut self, event: ClusterEvent, now: Instant) {
        self.last_event_cycle = self.cycle;
        let helped: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.place, Place::Unschedulable { .. }))
            .filter(|(_, e)| {
                e.pod.unschedulable_plugins.is_empty()
                    || e.pod
                        .unschedulable_plugins
                        .iter()
                        .any(|p| event_may_help(p, event))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in helped {
            self.move_to_active_or_backoff(&key, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pod;

    fn names(queue: &mut SchedulingQueue) -> Vec<String> {
        let mut popped = Vec::new();
        while let Some(p) = queue.pop(Instant::now()) {
            popped.push(p.info.name.clone());
        }
        popped
    }

    #[tokio::test(start_paused = true)]
    async fn active_pods_pop_by_priority_then_arrival() {
        let mut queue = SchedulingQueue::new();
        queue.add_or_update(pod("low-1").priority(1).info());
        queue.add_or_update(pod("high").priority(100).info());
        queue.add_or_update(pod("low-2").priority(1).info());
        queue.add_or_update(pod("none").info());
        assert_eq!(names(&mut queue), vec!["high", "low-1", "low-2", "none"]);
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_ten() {
        let seconds: Vec<u64> = (1..=6).map(|a| backoff_duration(a).as_secs()).collect();
        assert_eq!(seconds, vec![1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_pods_return_after_their_backoff() {
        let mut queue = SchedulingQueue::new();
        queue.add_or_update(pod("p").info());
        for (attempt, wait) in [(1, 1), (2, 2), (3, 4)] {
            let popped = queue.pop(Instant::now()).expect("due");
            assert_eq!(popped.attempts, attempt - 1);
            queue.done_error("default/p", Instant::now());
            assert!(queue.pop(Instant::now()).is_none(), "backing off");
            assert_eq!(
                queue.next_wakeup(),
                Some(Instant::now() + Duration::from_secs(wait))
            );
            tokio::time::advance(Duration::from_millis(wait * 1000 - 1)).await;
            assert!(queue.pop(Instant::now()).is_none(), "still backing off");
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert!(queue.pop(Instant::now()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_wait_for_a_helpful_event() {
        let mut queue = SchedulingQueue::new();
        queue.add_or_update(pod("p").info());
        queue.pop(Instant::now()).unwrap();
        queue.done_unschedulable("default/p", vec!["NodeAffinity"], Instant::now());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(queue.pop(Instant::now()).is_none());
        // A pod deletion frees resources but does not change labels: no help.
        queue.on_cluster_event(ClusterEvent::AssignedPodDeleted, Instant::now());
        assert!(queue.pop(Instant::now()).is_none());
        queue.on_cluster_event(ClusterEvent::NodeAdded, Instant::now());
        assert_eq!(queue.pop(Instant::now()).unwrap().info.name, "p");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_moved_soon_after_failing_still_serves_its_backoff() {
        let mut queue = SchedulingQueue::new();
        queue.add_or_update(pod("p").info());
        queue.pop(Instant::now()).unwrap();
        queue.done_unschedulable("default/p", vec!["NodeResourcesFit"], Instant::now());
        queue.on_cluster_event(ClusterEvent::NodeAdded, Instant::now());
        assert!(queue.pop(Instant::now()).is_none());
        tokio::time::advance(INITIAL_BACKOFF).await;
        assert!(queue.pop(Instant::now()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_are_flushed_after_five_minutes() {
        let mut queue = SchedulingQueue::new();
        queue.add_or_update(pod("p").info());
        queue.pop(Instant::now()).unwrap();
        queue.done_unschedulable("default/p", vec!["NodeAffinity"], Instant::now());
        assert_eq!(
            queue.next_wakeup(),
            Some(Instant::now() + UNSCHEDULABLE_FLUSH_INTERVAL)
        );
        tokio::time::advance(UNSCHEDULABLE_FLUSH_INTERVAL - Duration::from_secs(1)).await;
        assert!(queue.pop(Instant::now()).is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(queue.pop(Instant::now()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_during_the_attempt_sends_the_pod_to_backoff_not_to_wait() {
        let mut queue = SchedulingQueue::new();
        queue.add_or_update(pod("p").info());
        queue.pop(Instant::now()).unwrap();
        queue.on_cluster_event(ClusterEvent::AssignedPodDeleted, Instant::now());
        queue.done_unschedulable("default/p", vec!["NodeResourcesFit"], Instant::now());
        tokio::time::advance(INITIAL_BACKOFF).await;
        assert!(queue.pop(Instant::now()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn deleted_pods_leave_the_queue() {
        let mut queue = SchedulingQueue::new();
        queue.add_or_update(pod("a").info());
        queue.add_or_update(pod("b").info());
        queue.delete("default/a");
        assert_eq!(names(&mut queue), vec!["b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_changed_pod_not_its_status_wakes_it() {
        let cases = [
            ("status only", pod("p").nominated("n1").info(), false),
            ("labels", pod("p").label("app", "web").info(), true),
            ("spec", pod("p").priority(5).info(), true),
        ];
        for (name, update, wakes) in cases {
            let mut queue = SchedulingQueue::new();
            let now = Instant::now();
            queue.add_or_update(pod("p").info());
            queue.pop(now).unwrap();
            queue.done_unschedulable("default/p", vec!["NodeResourcesFit"], now);
            queue.add_or_update(update);
            assert_eq!(queue.pop(now).is_some(), wakes, "{name}");
        }
    }
}
