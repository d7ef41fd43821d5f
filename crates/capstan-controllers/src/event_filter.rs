//! client-go's event spam filter (`EventSourceObjectSpamFilter`): each source and involved
//! object may record a burst of 25 events, then one more every 5 minutes; the rest are
//! dropped. A ReplicaSet creating 100 pods so records 25 `SuccessfulCreate` events, not 100,
//! as it does in Kubernetes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// client-go's `defaultSpamBurst`.
pub const BURST: f64 = 25.0;
/// client-go's `defaultSpamQPS`: one event per 5 minutes.
pub const REFILL_EVERY: Duration = Duration::from_secs(300);
/// client-go's `maxLruCacheEntries`: the objects remembered; the oldest is forgotten first.
const MAX_OBJECTS: usize = 4096;

/// A token bucket per spam key (source, involved object, event type).
#[derive(Default)]
pub struct SpamFilter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl SpamFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether an event with this key may be recorded now; takes a token if so.
    pub fn allow(&self, key: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= MAX_OBJECTS {
            // Forget the object heard from least recently, as client-go's LRU does.
            let oldest = buckets
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                buckets.remove(&oldest);
            }
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: BURST,
            updated: now,
        });
        let refilled = now.saturating_duration_since(bucket.updated).as_secs_f64()
            / REFILL_EVERY.as_secs_f64();
        bucket.tokens = (bucket.tokens + refilled).min(BURST);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_gets_a_burst_of_25_then_one_event_per_five_minutes() {
        let filter = SpamFilter::new();
        let start = Instant::now();
        let allowed = (0..100).filter(|_| filter.allow("rs-a", start)).count();
        assert_eq!(allowed, 25);
        // Another object has a bucket of its own.
        assert!(filter.allow("rs-b", start));
        assert!(!filter.allow("rs-a", start + Duration::from_secs(299)));
        assert!(filter.allow("rs-a", start + Duration::from_secs(300)));
        assert!(!filter.allow("rs-a", start + Duration::from_secs(301)));
        // Quiet for long enough, the burst is back, and no more than the burst.
        let later = start + Duration::from_secs(10 * 3600);
        assert_eq!((0..100).filter(|_| filter.allow("rs-a", later)).count(), 25);
    }

    #[test]
    fn the_least_recently_heard_object_is_forgotten_past_the_limit() {
        let filter = SpamFilter::new();
        let start = Instant::now();
        for _ in 0..25 {
            filter.allow("first", start);
        }
        assert!(!filter.allow("first", start));
        for i in 0..MAX_OBJECTS {
            filter.allow(
                &format!("o{i}"),
                start + Duration::from_millis(1 + i as u64),
            );
        }
        // "first" was forgotten, so it starts again with a full burst.
        assert!(filter.allow("first", start + Duration::from_secs(1)));
        assert!(filter.buckets.lock().unwrap().len() <= MAX_OBJECTS);
    }
}
