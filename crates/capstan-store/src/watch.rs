//! Watch fan-out: a bounded history of recent events for replay, and one channel per watcher.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::{Event, Revision, StoreError};

/// Events a watcher may fall behind by before it is cut off. A cut-off watcher sees its stream
/// end and, like any Kubernetes client, watches again from the last revision it saw.
const WATCHER_BUFFER: usize = 10_000;

/// Recent events kept for replay. Older ones are compacted away even before the periodic
/// compaction, so that memory stays bounded under a burst of writes.
pub(crate) const DEFAULT_HISTORY: usize = 100_000;
/// The most bytes of values (new and previous states) the history keeps: with 150,000 pods of
/// a few KiB each, 100,000 events alone would hold most of a gigabyte. A watcher further
/// behind than this gets `Compacted` (410) and lists again, as it would after etcd's
/// compaction.
pub(crate) const DEFAULT_HISTORY_BYTES: usize = 256 << 20;

/// A stream of events for one prefix: first the replayed history, then live events.
#[derive(Debug)]
pub struct Watch {
    replay: VecDeque<Arc<Event>>,
    live: mpsc::Receiver<Arc<Event>>,
}

impl Watch {
    /// The next event, or `None` when the stream ended (the watcher fell too far behind, or the
    /// store closed). Cancel-safe.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        if let Some(event) = self.replay.pop_front() {
            return Some(event);
        }
        self.live.recv().await
    }

    /// The next event if one is ready now, without waiting.
    pub fn try_next(&mut self) -> Option<Arc<Event>> {
        self.replay
            .pop_front()
            .or_else(|| self.live.try_recv().ok())
    }

    /// A watch fed by another engine's own watch machinery (etcd).
    pub fn from_channel(live: mpsc::Receiver<Arc<Event>>) -> Self {
        Watch {
            replay: VecDeque::new(),
            live,
        }
    }
}

struct Subscriber {
    prefix: String,
    sender: mpsc::Sender<Arc<Event>>,
}

struct HubState {
    /// Events with revisions in (`compacted`, last write], oldest first.
    history: VecDeque<Arc<Event>>,
    /// The bytes of values the history holds.
    bytes: usize,
    compacted: Revision,
    max_history: usize,
    max_bytes: usize,
    /// Events up to this revision have had their derived data dropped: every watcher had
    /// taken them.
    released: Revision,
    subscribers: Vec<Subscriber>,
}

fn value_bytes(event: &Event) -> usize {
    event.kv.value.len() + event.prev.as_ref().map_or(0, |p| p.value.len())
}

impl HubState {
    /// Drops the derived data (decoded objects, encoded lines) of the oldest events that no
    /// watcher holds any more: only the history refers to them. Watchers take events in order,
    /// so this stops at the first event still held.
    fn release_taken(&mut self) {
        let start = self
            .history
            .partition_point(|e| e.revision <= self.released);
        for event in self.history.range(start..) {
            if Arc::strong_count(event) > 1 {
                break;
            }
            event.derived.clear();
            self.released = event.revision;
        }
    }
}

pub(crate) struct WatchHub {
    state: Mutex<HubState>,
}

impl WatchHub {
    /// A hub whose history starts after `compacted` (a reopened store has no history).
    pub(crate) fn new(compacted: Revision, max_history: usize) -> Self {
        WatchHub {
            state: Mutex::new(HubState {
                history: VecDeque::new(),
                bytes: 0,
                compacted,
                max_history,
                max_bytes: DEFAULT_HISTORY_BYTES,
                released: compacted,
                subscribers: Vec::new(),
            }),
        }
    }

    /// Delivers `event`; called in revision order, right after the write is durable.
    pub(crate) fn publish(&self, event: Event) {
        let event = Arc::new(event);
        let mut state = self.state.lock().expect("watch hub lock");
        state.subscribers.retain(|s| {
            if !event.kv.key.starts_with(&s.prefix) {
                return !s.sender.is_closed();
            }
            // A full buffer means the watcher stopped reading: drop it rather than block writes.
            s.sender.try_send(event.clone()).is_ok()
        });
        state.bytes += value_bytes(&event);
        state.history.push_back(event);
        while state.history.len() > state.max_history
            || (state.bytes > state.max_bytes && state.history.len() > 1)
        {
            let oldest = state.history.pop_front().expect("longer than the limit");
            state.bytes -= value_bytes(&oldest);
            state.compacted = oldest.revision;
        }
        state.release_taken();
    }

    #[cfg(test)]
    fn with_max_bytes(self, max_bytes: usize) -> Self {
        self.state.lock().expect("watch hub lock").max_bytes = max_bytes;
        self
    }

    pub(crate) fn compact(&self, revision: Revision) {
        let mut state = self.state.lock().expect("watch hub lock");
        if revision <= state.compacted {
            return;
        }
        while state
            .history
            .front()
            .is_some_and(|e| e.revision <= revision)
        {
            let oldest = state.history.pop_front().expect("checked");
            state.bytes -= value_bytes(&oldest);
        }
        state.compacted = revision;
    }

    pub(crate) fn compacted(&self) -> Revision {
        self.state.lock().expect("watch hub lock").compacted
    }

    pub(crate) fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        let mut state = self.state.lock().expect("watch hub lock");
        if after < state.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: state.compacted,
            });
        }
        let start = state.history.partition_point(|e| e.revision <= after);
        let replay = state
            .history
            .range(start..)
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        // The replayed events get derived data again: look at them again once taken.
        state.released = state.released.min(after);
        let (sender, live) = mpsc::channel(WATCHER_BUFFER);
        state.subscribers.push(Subscriber {
            prefix: prefix.to_string(),
            sender,
        });
        Ok(Watch { replay, live })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Derived, EventType, KeyValue};

    fn event(revision: Revision, bytes: usize) -> Event {
        Event {
            event_type: EventType::Put,
            revision,
            kv: KeyValue {
                key: format!("/pods/p{revision}"),
                value: vec![b'x'; bytes].into(),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
            derived: Derived::default(),
        }
    }

    #[tokio::test]
    async fn decoded_data_is_dropped_once_every_watcher_has_taken_the_event() {
        let hub = WatchHub::new(0, 100);
        let mut fast = hub.watch("/pods/", 0).unwrap();
        let mut slow = hub.watch("/pods/", 0).unwrap();
        hub.publish(event(1, 10));
        let taken = fast.next().await.unwrap();
        taken.derived.get_or_init(|| "decoded");
        drop(taken);
        // The slow watcher still holds event 1, so its decoded form stays for it.
        hub.publish(event(2, 10));
        let history = |hub: &WatchHub| hub.state.lock().unwrap().history.clone();
        assert!(history(&hub)[0].derived.is_set());

        let taken = slow.next().await.unwrap();
        assert_eq!(*taken.derived.get_or_init(|| "again").unwrap(), "decoded");
        drop(taken);
        hub.publish(event(3, 10));
        assert!(!history(&hub)[0].derived.is_set(), "every watcher took it");

        // A watcher replaying the history decodes again, and that is dropped in turn.
        let mut late = hub.watch("/pods/", 0).unwrap();
        let replayed = late.next().await.unwrap();
        replayed.derived.get_or_init(|| "replayed");
        drop(replayed);
        while late.try_next().is_some() {}
        drop((fast, slow));
        hub.publish(event(4, 10));
        assert!(history(&hub).iter().all(|e| !e.derived.is_set()));
    }

    #[tokio::test]
    async fn the_history_keeps_a_bounded_number_of_bytes() {
        let hub = WatchHub::new(0, 100).with_max_bytes(100);
        for revision in 1..=10 {
            hub.publish(event(revision, 40));
        }
        let state = hub.state.lock().unwrap();
        assert_eq!(state.history.len(), 2);
        assert_eq!(state.bytes, 80);
        assert_eq!(state.compacted, 8);
        drop(state);
        assert!(matches!(
            hub.watch("/pods/", 7),
            Err(StoreError::Compacted { compacted: 8, .. })
        ));
        assert_eq!(
            hub.watch("/pods/", 8).unwrap().try_next().unwrap().revision,
            9
        );
    }
}
