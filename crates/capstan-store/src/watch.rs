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
    compacted: Revision,
    max_history: usize,
    subscribers: Vec<Subscriber>,
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
                compacted,
                max_history,
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
        state.history.push_back(event);
        while state.history.len() > state.max_history {
            let oldest = state.history.pop_front().expect("longer than the limit");
            state.compacted = oldest.revision;
        }
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
            state.history.pop_front();
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
        let (sender, live) = mpsc::channel(WATCHER_BUFFER);
        state.subscribers.push(Subscriber {
            prefix: prefix.to_string(),
            sender,
        });
        Ok(Watch { replay, live })
    }
}
