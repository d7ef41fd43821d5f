//! The built-in Ingress controller (`networking.k8s.io/v1`): an HTTP and HTTPS reverse proxy
//! that every node runs, the way k3s ships traefik, for IngressClass `capstan` (controller
//! [`CONTROLLER_NAME`]).
//!
//! - [`routes`]: the route table built from Ingresses, IngressClasses, Services and
//!   EndpointSlices, pure and immutable ([`RouteTable`]): which Ingresses are ours, host and
//!   path matching, backends resolved down to ready endpoint addresses.
//! - [`tls`]: certificates by SNI from `kubernetes.io/tls` Secrets ([`CertTable`]), and the
//!   self-signed fallback certificate for unknown names.
//! - [`proxy`]: the hyper server on the HTTP and HTTPS addresses and the pooled client that
//!   forwards to endpoints, round-robin per backend.
//! - [`watch`]: watches the five kinds and swaps in a new [`Snapshot`] after every burst of
//!   changes.
//!
//! Routes and certificates live in one [`Snapshot`] behind [`SharedSnapshot`]; the listeners
//! never restart. A request reads the snapshot current when it arrives, so a keep-alive
//! connection follows a new table from its next request on, and a TLS connection keeps the
//! certificate of its handshake.
//!
//! Deliberately left out: redirecting plain HTTP to HTTPS for hosts with TLS (both are served
//! as they come), annotations of other controllers (rewrites, auth, rate limits), `resource`
//! backends (answered 503), HTTP/2 towards clients and upstreams.
//!
//! The agent starts it with [`run`]; tests and benchmarks use [`serve`] with a snapshot of
//! their own.

pub mod proxy;
pub mod routes;
pub mod tls;
pub mod watch;

#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod watch_tests;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

pub use proxy::{IngressServer, serve};
pub use routes::{Backend, Route, RouteTable};
pub use tls::{CertTable, fallback_certificate};
pub use watch::run;

/// The IngressClass this controller serves when an Ingress names a class.
pub const INGRESS_CLASS: &str = "capstan";
/// `spec.controller` of IngressClasses served by this controller.
pub const CONTROLLER_NAME: &str = "capstan.dev/ingress";

/// How the node's ingress proxy is set up.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// Plain HTTP listener, `0.0.0.0:80` by default.
    pub http: SocketAddr,
    /// HTTPS listener (certificates by SNI), `0.0.0.0:443` by default.
    pub https: SocketAddr,
    /// Budget for connecting to one upstream endpoint before trying another.
    pub upstream_connect_timeout: Duration,
    /// A client that hasn't completed its TLS handshake or request head within this is
    /// disconnected; hyper's header timer also runs while a keep-alive connection waits for
    /// its next request, so this is the idle keep-alive timeout too.
    pub client_header_timeout: Duration,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            http: SocketAddr::from(([0, 0, 0, 0], 80)),
            https: SocketAddr::from(([0, 0, 0, 0], 443)),
            upstream_connect_timeout: Duration::from_secs(5),
            client_header_timeout: Duration::from_secs(60),
        }
    }
}

/// Errors of the ingress proxy.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// Binding a listener failed (address in use, no permission for ports below 1024); a
    /// retry helps only once the address is free.
    #[error("binding ingress {protocol} listener on {addr}: {source}")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Making the self-signed fallback certificate or the TLS configuration failed; a bug or
    /// a broken crypto provider, retrying won't help.
    #[error("setting up TLS: {0}")]
    Tls(String),
}

/// Everything a request needs: the routes and the certificates of one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub routes: RouteTable,
    /// Shared between snapshots while no Ingress, IngressClass or Secret changes, so that
    /// endpoint churn doesn't reparse certificates.
    pub certs: Arc<CertTable>,
}

impl Snapshot {
    /// Routes and certificates of the Ingresses that are ours among `ingresses`.
    pub fn build<'a>(
        ingresses: impl IntoIterator<Item = &'a Ingress>,
        classes: impl IntoIterator<Item = &'a IngressClass>,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        secrets: impl IntoIterator<Item = &'a Secret>,
    ) -> Self {
        let ours = routes::select_ingresses(ingresses, classes);
        Self {
            routes: RouteTable::build(&ours, services, slices),
            certs: Arc::new(CertTable::build(&ours, secrets)),
        }
    }
}

/// The current [`Snapshot`], shared by the proxy (readers) and the watcher (writer).
///
/// Readers clone the `Arc` under a read lock held for a pointer copy; the writer builds the
/// next snapshot outside the lock and holds the write lock only to swap the pointer, so a
/// request never waits for a rebuild.
#[derive(Debug, Clone, Default)]
pub struct SharedSnapshot(Arc<RwLock<Arc<Snapshot>>>);

impl SharedSnapshot {
    pub fn new(snapshot: Snapshot) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(snapshot))))
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the snapshot; requests already under way finish on the old one.
    pub fn store(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        let old = std::mem::replace(
            &mut *self.0.write().unwrap_or_else(PoisonError::into_inner),
            snapshot,
        );
        // Freed here, outside the lock, unless a request still holds it.
        drop(old);
    }
}
