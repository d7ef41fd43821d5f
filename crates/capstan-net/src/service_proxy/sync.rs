//! Keeping the table in step with the API: watch Services and EndpointSlices, sync a few
//! milliseconds after the last change.
//!
//! kube-proxy waits up to a second between syncs; capstan waits [`ProxyConfig::sync_debounce`]
//! (5 ms by default), because an endpoint that fails its readiness probe must stop receiving
//! new connections within one probe period, and an incremental sync costs milliseconds.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;

use crate::watch::reflect;
use tokio::sync::Notify;

use super::ProxyConfig;
use super::nft::{self, ApplyError};
use super::render::render_update;
use super::rules::{Ruleset, build_ruleset};

/// After a failed sync, the next attempt comes this much later (the API may be quiet).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// What a sync did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The rules were already what the API asks for: nft did not run.
    Unchanged,
    /// The whole table was replaced (first sync, or after a failure).
    Replaced,
    /// Only what changed was flushed and refilled.
    Updated,
}

/// Remembers what it applied last, so that each sync sends only the difference.
#[derive(Debug)]
pub struct Syncer {
    config: ProxyConfig,
    /// The ruleset in the kernel; `None` when unknown (never applied, or a transaction failed
    /// and the table may hold something else), which makes the next sync a full replacement.
    applied: Option<Ruleset>,
}

impl Syncer {
    pub fn new(config: ProxyConfig) -> Self {
        Syncer {
            config,
            applied: None,
        }
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Computes the rules for `services` and `slices` and hands the transaction that brings the
    /// table there to `apply` (see [`nft::apply`]). Idempotent; on failure the next call
    /// replaces the whole table.
    pub fn sync(
        &mut self,
        services: &[impl Borrow<Service>],
        slices: &[impl Borrow<EndpointSlice>],
        apply: impl FnOnce(&str) -> Result<(), ApplyError>,
    ) -> Result<SyncOutcome, ApplyError> {
        let next = build_ruleset(&self.config, services, slices);
        if self.applied.as_ref() == Some(&next) {
            return Ok(SyncOutcome::Unchanged);
        }
        let outcome = if self.applied.is_some() {
            SyncOutcome::Updated
        } else {
            SyncOutcome::Replaced
        };
        let text = render_update(&self.config, self.applied.as_ref(), &next);
        self.applied = None;
        apply(&text)?;
        self.applied = Some(next);
        Ok(outcome)
    }
}

/// Runs the service proxy until the task is dropped: removes a stale table, watches Services
/// and EndpointSlices in all namespaces, and syncs after every change (debounced). Returns
/// only if the stale table cannot be removed (nft missing, no permission): a retry would not
/// help. Failed syncs are logged and retried.
pub async fn run(client: kube::Client, config: ProxyConfig) -> Result<(), ApplyError> {
    let netns = config.netns.clone();
    blocking(move || nft::delete_table(netns.as_deref())).await?;

    let changed = Arc::new(Notify::new());
    let mut watches = tokio::task::JoinSet::new();
    let services = reflect(
        &mut watches,
        Api::<Service>::all(client.clone()),
        &changed,
        "service proxy",
    );
    let slices = reflect(
        &mut watches,
        Api::<EndpointSlice>::all(client),
        &changed,
        "service proxy",
    );
    // Both lists first: a sync with Services but not yet their slices would reject traffic.
    let _ = services.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    tracing::info!("service proxy: initial lists done, syncing");

    let debounce = config.sync_debounce;
    let mut syncer = Some(Syncer::new(config));
    loop {
        // Changes that arrive during the debounce or the sync leave a permit behind: the loop
        // comes straight back for them.
        tokio::time::sleep(debounce).await;
        let (services, slices) = (services.state(), slices.state());
        let mut moved = syncer
            .take()
            .expect("the syncer is put back after every sync");
        let (moved, result) = blocking(move || {
            let netns = moved.config().netns.clone();
            let result = moved.sync(&services, &slices, |text| {
                nft::apply(text, netns.as_deref())
            });
            Ok((moved, result))
        })
        .await?;
        syncer = Some(moved);
        match result {
            Ok(SyncOutcome::Unchanged) => {}
            Ok(outcome) => tracing::debug!("service proxy: {outcome:?}"),
            Err(error) => {
                tracing::warn!(
                    "service proxy sync failed, retrying with a full replacement: {error}"
                );
                tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                continue;
            }
        }
        changed.notified().await;
    }
}

/// Runs blocking work (nft) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApplyError> + Send + 'static,
) -> Result<T, ApplyError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_proxy::rules::tests::{service, slice};

    /// Records what would have gone to nft and fails when told to.
    #[derive(Default)]
    struct Recorder {
        transactions: Vec<String>,
        fail_next: bool,
    }

    impl Recorder {
        fn apply(&mut self, text: &str) -> Result<(), ApplyError> {
            self.transactions.push(text.to_string());
            if std::mem::take(&mut self.fail_next) {
                return Err(ApplyError::Rejected {
                    stderr: "Error: Could not process rule: No such file or directory".into(),
                });
            }
            Ok(())
        }
    }

    #[test]
    fn the_first_sync_replaces_the_table_later_ones_send_changes_and_equal_ones_nothing() {
        let mut syncer = Syncer::new(ProxyConfig::new("node-a"));
        let mut nft = Recorder::default();
        let services = [service("web", "10.43.0.10", "ClusterIP")];
        let one = [slice("web", &[("10.42.0.2", "node-a", true, true, false)])];
        let two = [slice(
            "web",
            &[
                ("10.42.0.2", "node-a", true, true, false),
                ("10.42.0.3", "node-a", true, true, false),
            ],
        )];
        let steps = [
            (&one, SyncOutcome::Replaced),
            (&one, SyncOutcome::Unchanged),
            (&two, SyncOutcome::Updated),
            (&two, SyncOutcome::Unchanged),
        ];
        for (slices, expected) in steps {
            let outcome = syncer.sync(&services, slices, |t| nft.apply(t)).unwrap();
            assert_eq!(outcome, expected);
        }
        assert_eq!(nft.transactions.len(), 2);
        assert!(nft.transactions[0].starts_with("add table ip capstan-proxy\ndelete table"));
        assert!(nft.transactions[1].starts_with("flush map"));
    }

    #[test]
    fn after_a_failed_sync_the_next_one_replaces_the_whole_table() {
        let mut syncer = Syncer::new(ProxyConfig::new("node-a"));
        let mut nft = Recorder::default();
        let services = [service("web", "10.43.0.10", "ClusterIP")];
        let one = [slice("web", &[("10.42.0.2", "node-a", true, true, false)])];
        let none = [slice("web", &[])];
        syncer.sync(&services, &one, |t| nft.apply(t)).unwrap();
        nft.fail_next = true;
        assert!(syncer.sync(&services, &none, |t| nft.apply(t)).is_err());
        let outcome = syncer.sync(&services, &none, |t| nft.apply(t)).unwrap();
        assert_eq!(outcome, SyncOutcome::Replaced);
        assert!(nft.transactions[2].starts_with("add table ip capstan-proxy\ndelete table"));
    }
}
