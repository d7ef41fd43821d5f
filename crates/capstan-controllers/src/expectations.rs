//! Expectations: what a controller has asked the API for and not yet seen in its cache, so that
//! a slow watch never makes it act twice (create pods again because the first ones have not
//! arrived yet). Kubernetes' `UIDTrackingControllerExpectations`, keyed by uid rather than by
//! count: a creation is seen once the pod's uid is in the cache or its watch event was observed;
//! a deletion is seen once the pod is gone from the cache or terminating. While anything is
//! pending the controller still writes status but does not create or delete.
//!
//! Expectations expire after five minutes, as in Kubernetes, so a lost watch event (a pod created
//! and deleted between two relists) delays the controller but never wedges it.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use jiff::{SignedDuration, Timestamp};

use crate::runtime::ObjectKey;

/// Kubernetes' `ExpectationsTimeout`.
pub const EXPECTATIONS_TIMEOUT: SignedDuration = SignedDuration::from_secs(5 * 60);

#[derive(Debug, Default)]
struct Pending {
    creations: HashSet<String>,
    deletions: HashSet<String>,
    since: Option<Timestamp>,
}

/// Where a pending uid stands in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    Absent,
    Present,
    Terminating,
}

#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<ObjectKey, Pending>>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectKey, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers pods created for `key` until the cache shows them.
    pub fn expect_creations(
        &self,
        key: &ObjectKey,
        uids: impl IntoIterator<Item = String>,
        now: Timestamp,
    ) {
        let mut pending = self.lock();
        let entry = pending.entry(key.clone()).or_default();
        entry.creations.extend(uids);
        entry.since = Some(now);
    }

    /// Remembers pods deleted for `key` until the cache shows them gone or terminating.
    pub fn expect_deletions(
        &self,
        key: &ObjectKey,
        uids: impl IntoIterator<Item = String>,
        now: Timestamp,
    ) {
        let mut pending = self.lock();
        let entry = pending.entry(key.clone()).or_default();
        entry.deletions.extend(uids);
        entry.since = Some(now);
    }

    /// A watch event showed the pod `uid`: its creation is no longer pending, even if it is
    /// deleted before the next reconcile reads the cache.
    pub fn observe(&self, uid: &str) {
        for entry in self.lock().values_mut() {
            entry.creations.remove(uid);
        }
    }

    /// Has the cache caught up with everything asked for `key`? `cached` tells where a uid stands
    /// in the cache now. Expired expectations count as satisfied and are dropped.
    pub fn satisfied(
        &self,
        key: &ObjectKey,
        now: Timestamp,
        cached: impl Fn(&str) -> Cached,
    ) -> bool {
        let mut pending = self.lock();
        let Some(entry) = pending.get_mut(key) else {
            return true;
        };
        entry.creations.retain(|uid| cached(uid) == Cached::Absent);
        entry.deletions.retain(|uid| cached(uid) == Cached::Present);
        let expired = entry
            .since
            .and_then(|since| since.checked_add(EXPECTATIONS_TIMEOUT).ok())
            .is_some_and(|deadline| deadline <= now);
        if expired || (entry.creations.is_empty() && entry.deletions.is_empty()) {
            pending.remove(key);
            return true;
        }
        false
    }

    /// Drops everything pending for `key` (its owner was deleted).
    pub fn forget(&self, key: &ObjectKey) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ObjectKey {
        ObjectKey::new("default", "web")
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn creations_are_pending_until_the_cache_shows_them() {
        let expectations = Expectations::new();
        expectations.expect_creations(&key(), ["a".into(), "b".into()], at(0));
        let only_a = |uid: &str| {
            if uid == "a" {
                Cached::Present
            } else {
                Cached::Absent
            }
        };
        assert!(!expectations.satisfied(&key(), at(1), only_a));
        assert!(expectations.satisfied(&key(), at(1), |_| Cached::Present));
    }

    #[test]
    fn an_observed_creation_is_satisfied_even_if_the_pod_is_gone_again() {
        let expectations = Expectations::new();
        expectations.expect_creations(&key(), ["a".into()], at(0));
        expectations.observe("a");
        assert!(expectations.satisfied(&key(), at(1), |_| Cached::Absent));
    }

    #[test]
    fn deletions_are_satisfied_by_terminating_or_absent_pods() {
        let expectations = Expectations::new();
        expectations.expect_deletions(&key(), ["a".into(), "b".into()], at(0));
        assert!(!expectations.satisfied(&key(), at(1), |_| Cached::Present));
        let states = |uid: &str| {
            if uid == "a" {
                Cached::Terminating
            } else {
                Cached::Absent
            }
        };
        assert!(expectations.satisfied(&key(), at(1), states));
    }

    #[test]
    fn expectations_expire_after_five_minutes() {
        let expectations = Expectations::new();
        expectations.expect_creations(&key(), ["a".into()], at(0));
        assert!(!expectations.satisfied(&key(), at(299), |_| Cached::Absent));
        assert!(expectations.satisfied(&key(), at(300), |_| Cached::Absent));
    }
}
