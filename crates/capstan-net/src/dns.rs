//! Cluster DNS: what CoreDNS' `kubernetes` plugin answers, served by hickory on every node.
//!
//! - [`records`]: the records of the cluster domain built from Services and EndpointSlices,
//!   pure and immutable ([`Records`]), following the Kubernetes DNS specification 1.1.0.
//! - [`server`]: UDP and TCP on one address; answers from the current [`Records`] snapshot,
//!   relays names outside the cluster domain to the node's upstream resolvers.
//! - [`watch`]: watches Services and EndpointSlices and swaps in a new snapshot on every change.
//! - [`resolv_conf`]: the upstream resolvers of the node.
//!
//! The agent starts it with [`run`]; tests and benchmarks use [`serve`] with records of their own.

pub mod records;
pub mod resolv_conf;
pub mod server;
pub mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hickory_proto::rr::Name;

pub use records::{Lookup, Records};
pub use resolv_conf::{parse_resolv_conf, read_resolv_conf};
pub use server::{DnsServer, serve};
pub use watch::run;

/// Cluster domain of a Kubernetes cluster unless configured otherwise.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// How long the forwarder waits for the upstream resolvers, all together, before SERVFAIL.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// How the node's DNS server is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to answer on, UDP and TCP (e.g. the cluster DNS service IP, port 53).
    pub listen: SocketAddr,
    /// The cluster domain, `cluster.local` by default.
    pub cluster_domain: String,
    /// Resolvers for names outside the cluster domain, tried in order (the node's
    /// `/etc/resolv.conf`, see [`read_resolv_conf`]). Empty: such names are REFUSED.
    pub upstreams: Vec<SocketAddr>,
    /// Time budget of one forwarded query over all upstreams.
    pub upstream_timeout: Duration,
}

impl Config {
    /// Listens on `listen` for `cluster.local`, forwarding nowhere.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            upstreams: Vec::new(),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
        }
    }

    /// The cluster domain as a fully qualified, lowercase DNS name.
    pub fn domain(&self) -> Result<Name, DnsError> {
        parse_domain(&self.cluster_domain)
    }
}

/// The cluster domain `domain` (`cluster.local` or `cluster.local.`) as a DNS name.
pub fn parse_domain(domain: &str) -> Result<Name, DnsError> {
    let mut name = Name::from_ascii(domain)
        .map_err(|e| DnsError::InvalidDomain(domain.to_owned(), e.to_string()))?
        .to_lowercase();
    name.set_fqdn(true);
    Ok(name)
}

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The configured cluster domain is not a DNS name; fix the configuration, retrying won't help.
    #[error("cluster domain {0:?} is not a DNS name: {1}")]
    InvalidDomain(String, String),
    /// Binding the UDP or TCP socket failed (address in use, no permission for port 53); a
    /// retry helps only once the address is free.
    #[error("binding DNS {protocol} on {addr}: {source}")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Reading resolv.conf failed.
    #[error("reading {path}: {source}")]
    ReadResolvConf {
        path: String,
        source: std::io::Error,
    },
}

/// The current [`Records`] snapshot, shared by the server (readers) and the watcher (writer).
///
/// Readers clone the `Arc` under a read lock held for a pointer copy; the writer builds the
/// next snapshot outside the lock and holds the write lock only to swap the pointer, so a
/// lookup never waits for a rebuild.
#[derive(Debug, Clone)]
pub struct SharedRecords(Arc<RwLock<Arc<Records>>>);

impl SharedRecords {
    pub fn new(records: Records) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(records))))
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Records> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the snapshot; lookups already under way finish on the old one.
    pub fn store(&self, records: Records) {
        let records = Arc::new(records);
        let old = std::mem::replace(
            &mut *self.0.write().unwrap_or_else(PoisonError::into_inner),
            records,
        );
        // The old snapshot is freed here, outside the lock, unless a lookup still holds it.
        drop(old);
    }
}
