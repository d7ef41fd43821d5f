//! Keeping the table in step with the API: watch NetworkPolicies, Pods and Namespaces, sync a
//! few milliseconds after the last change, skip syncs that would change nothing.
//!
//! Pods change often (status updates) and most changes leave the rules as they were: the
//! ruleset is computed on every wake-up, but nft runs only when it differs from the applied one.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;

use crate::watch::reflect;
use tokio::sync::Notify;

use super::policy::{Ruleset, build_ruleset};
use super::render::render;
use super::{PolicyConfig, TABLE};
use crate::service_proxy::nft::{self, ApplyError};

/// After a failed sync, the next attempt comes this much later (the API may be quiet).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// What a sync did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The rules were already what the API asks for: nft did not run.
    Unchanged,
    /// The whole table was replaced.
    Replaced,
}

/// Remembers what it applied last, so that unchanged rules cost no transaction.
#[derive(Debug)]
pub struct Syncer {
    config: PolicyConfig,
    /// The ruleset in the kernel; `None` when unknown (never applied, or a transaction failed).
    applied: Option<Ruleset>,
}

impl Syncer {
    pub fn new(config: PolicyConfig) -> Self {
        Syncer {
            config,
            applied: None,
        }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Computes the rules and, if they changed, hands the transaction that replaces the table to
    /// `apply` (see [`nft::apply`]). Idempotent; after a failure the next call applies again.
    pub fn sync(
        &mut self,
        policies: &[impl Borrow<NetworkPolicy>],
        pods: &[impl Borrow<Pod>],
        namespaces: &[impl Borrow<Namespace>],
        apply: impl FnOnce(&str) -> Result<(), ApplyError>,
    ) -> Result<SyncOutcome, ApplyError> {
        let next = build_ruleset(&self.config.node_name, policies, pods, namespaces);
        if self.applied.as_ref() == Some(&next) {
            return Ok(SyncOutcome::Unchanged);
        }
        self.applied = None;
        apply(&render(&next))?;
        self.applied = Some(next);
        Ok(SyncOutcome::Replaced)
    }
}

/// Removes the table if there is one (at shutdown, or when policies are turned off): the
/// node's pods are then reachable by everybody.
pub fn delete_table(netns: Option<&str>) -> Result<(), ApplyError> {
    nft::apply(
        &format!("add table inet {TABLE}\ndelete table inet {TABLE}\n"),
        netns,
    )
}

/// Enforces NetworkPolicies on this node's pods until the task is dropped: watches
/// NetworkPolicies, Pods and Namespaces in all namespaces and syncs after every change
/// (debounced). A table of an earlier run stays in force until the first sync replaces it, so
/// that a restarting agent never opens isolated pods. Returns only if nft cannot be run at all
/// (a retry would not help); rejected transactions are logged and retried.
pub async fn run(client: kube::Client, config: PolicyConfig) -> Result<(), ApplyError> {
    let changed = Arc::new(Notify::new());
    let mut watches = tokio::task::JoinSet::new();
    let policies = reflect(
        &mut watches,
        Api::<NetworkPolicy>::all(client.clone()),
        &changed,
        "network policy",
    );
    let pods = reflect(
        &mut watches,
        Api::<Pod>::all(client.clone()),
        &changed,
        "network policy",
    );
    let namespaces = reflect(
        &mut watches,
        Api::<Namespace>::all(client),
        &changed,
        "network policy",
    );
    // All three lists first: policies without their pods would deny what they allow.
    let _ = policies.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let _ = namespaces.wait_until_ready().await;
    tracing::info!("network policy: initial lists done, syncing");

    let debounce = config.sync_debounce;
    let mut syncer = Some(Syncer::new(config));
    loop {
        // Changes that arrive during the debounce or the sync leave a permit behind: the loop
        // comes straight back for them.
        tokio::time::sleep(debounce).await;
        let (policies, pods, namespaces) = (policies.state(), pods.state(), namespaces.state());
        let mut moved = syncer
            .take()
            .expect("the syncer is put back after every sync");
        let (moved, result) = match tokio::task::spawn_blocking(move || {
            let netns = moved.config().netns.clone();
            let result = moved.sync(&policies, &pods, &namespaces, |text| {
                nft::apply(text, netns.as_deref())
            });
            (moved, result)
        })
        .await
        {
            Ok(done) => done,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        };
        syncer = Some(moved);
        match result {
            Ok(SyncOutcome::Unchanged) => {}
            Ok(outcome) => tracing::debug!("network policy: {outcome:?}"),
            Err(error @ ApplyError::Spawn { .. }) => return Err(error),
            Err(error) => {
                tracing::warn!("network policy sync failed, retrying: {error}");
                tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                continue;
            }
        }
        changed.notified().await;
    }
}
