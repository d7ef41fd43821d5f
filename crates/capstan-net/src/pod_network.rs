//! The pod network of one node, as flannel's `host-gw` backend and the CNI `bridge` plugin
//! build it together:
//!
//! - a bridge (`capstan0`) holding the first address of the node's pod CIDR, the pods' gateway;
//! - for every pod a veth pair, one end on the bridge and the other as `eth0` in the pod's
//!   network namespace, with the pod's address from the node's range ([`Ipam`]) and a default
//!   route through the bridge;
//! - a route to every other node's pod CIDR through that node's address, so that pods reach
//!   each other directly, with their own addresses (no overlay, no NAT): the nodes must share a
//!   link, as the nodes of one machine or one LAN do;
//! - masquerade for traffic from pods to anything outside the cluster's pod range.
//!
//! Everything is done over netlink (no `ip` processes on a pod's start path), in the network
//! namespace the agent runs in.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use capstan_api::cidr::Ipv4Cidr;
use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

/// The bridge's name, like flannel's `cni0`.
pub const BRIDGE: &str = "capstan0";
/// The interface a pod sees.
const POD_INTERFACE: &str = "eth0";
/// Marks the routes to other nodes as ours (`ip route show proto 66`), so that a sync never
/// touches routes somebody else made.
const ROUTE_PROTOCOL: u8 = 66;
/// The nftables table of the pod network (masquerade).
const NFT_TABLE: &str = "capstan-pod-network";

/// Why the pod network could not be set up, or a pod attached to it.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("entering the network namespace {path}: {source}")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("no free address left in the node's pod range {0}")]
    Exhausted(Ipv4Cidr),
    #[error("interface {0} not found")]
    NoLink(String),
    #[error(transparent)]
    Nft(#[from] crate::service_proxy::nft::ApplyError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Io { what, source }
}

/// What the node's pod network is made of.
#[derive(Debug, Clone)]
pub struct PodNetworkConfig {
    /// This node's pod range (`spec.podCIDR`).
    pub pod_cidr: Ipv4Cidr,
    /// The whole cluster's pod range (`--cluster-cidr`): traffic leaving it is masqueraded.
    pub cluster_cidr: Ipv4Cidr,
    /// Where address leases are kept (survives agent restarts).
    pub state_dir: PathBuf,
}

/// The node's pod network, ready to attach pods.
///
/// Its netlink work runs on a runtime of its own, on one thread: in a burst of pod starts the
/// agent's runtime is busy with container setup, and each of an attach's netlink round trips
/// waited behind it (an attach took 1 ms alone and 400 ms in a burst of 100).
pub struct PodNetwork {
    bridge: Arc<Bridge>,
    runtime: tokio::runtime::Handle,
}

impl PodNetwork {
    /// Sets up the node's side (see [`Bridge`]) and starts the network's own thread.
    pub async fn start(config: PodNetworkConfig) -> Result<PodNetwork, NetworkError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("starting the pod network's runtime"))?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("capstan-net".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(io("starting the pod network's thread"))?;
        let bridge = on(&handle, Bridge::start(config)).await?;
        Ok(PodNetwork {
            bridge: Arc::new(bridge),
            runtime: handle,
        })
    }

    pub fn pod_cidr(&self) -> Ipv4Cidr {
        self.bridge.config.pod_cidr
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.bridge.gateway
    }

    /// Connects the pod `uid` whose network namespace is pinned at `netns`, and returns its
    /// address. Idempotent: a pod attached before (by this agent or the one before a restart)
    /// keeps its address and interface.
    pub async fn attach(&self, uid: &str, netns: &Path) -> Result<Ipv4Addr, NetworkError> {
        let (bridge, uid, netns) = (Arc::clone(&self.bridge), uid.to_owned(), netns.to_owned());
        on(
            &self.runtime,
            async move { bridge.attach(&uid, &netns).await },
        )
        .await
    }

    /// Disconnects the pod and releases its address (idempotent).
    pub async fn detach(&self, uid: &str) {
        let (bridge, uid) = (Arc::clone(&self.bridge), uid.to_owned());
        on(&self.runtime, async move { bridge.detach(&uid).await }).await
    }

    /// Releases the addresses of pods for which `alive` says no: pods removed while the agent
    /// was down.
    pub fn release_unless(&self, alive: impl Fn(&str) -> bool) {
        self.bridge.ipam.retain(alive);
    }

    /// See [`Bridge::add_local_address`].
    pub async fn add_local_address(&self, address: Ipv4Addr) -> Result<(), NetworkError> {
        let bridge = Arc::clone(&self.bridge);
        on(&self.runtime, async move {
            bridge.add_local_address(address).await
        })
        .await
    }

    /// See [`Bridge::sync_routes`].
    pub async fn sync_routes(
        &self,
        routes: &BTreeMap<Ipv4Cidr, Ipv4Addr>,
    ) -> Result<(), NetworkError> {
        let (bridge, routes) = (Arc::clone(&self.bridge), routes.clone());
        on(
            &self.runtime,
            async move { bridge.sync_routes(&routes).await },
        )
        .await
    }
}

/// Runs `work` on the pod network's runtime and waits for it.
async fn on<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    match runtime.spawn(work).await {
        Ok(done) => done,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// The node's bridge and its netlink connection: what the pod network does, run on its own
/// runtime by [`PodNetwork`].
struct Bridge {
    config: PodNetworkConfig,
    gateway: Ipv4Addr,
    bridge_index: u32,
    mtu: u32,
    netlink: Handle,
    ipam: Ipam,
}

impl Bridge {
    /// Sets up the node's side (idempotent: an agent that restarts finds it made): the bridge
    /// with the gateway address, forwarding, bridged traffic through netfilter (the service
    /// proxy and network policies see traffic between pods of one node), masquerade.
    async fn start(config: PodNetworkConfig) -> Result<Bridge, NetworkError> {
        let netlink = connect()?;
        let gateway = config
            .pod_cidr
            .nth(1)
            .ok_or(NetworkError::Exhausted(config.pod_cidr))?;
        let bridge_index = match link_index(&netlink, BRIDGE).await? {
            Some(index) => index,
            None => {
                netlink
                    .link()
                    .add(LinkBridge::new(BRIDGE).up().build())
                    .execute()
                    .await?;
                link_index(&netlink, BRIDGE)
                    .await?
                    .ok_or_else(|| NetworkError::NoLink(BRIDGE.into()))?
            }
        };
        ensure_address(&netlink, bridge_index, gateway, config.pod_cidr.prefix()).await?;
        netlink
            .link()
            .set(LinkUnspec::new_with_index(bridge_index).up().build())
            .execute()
            .await?;
        write_sysctl("net/ipv4/ip_forward", "1")?;
        // Without it, a reply between two pods of one bridge skips conntrack, and a connection
        // to a Service answered by a pod of the same node comes back from the wrong address.
        write_sysctl("net/bridge/bridge-nf-call-iptables", "1")?;
        crate::service_proxy::nft::apply(&masquerade_rules(&config.cluster_cidr), None)?;
        let mtu = uplink_mtu(&netlink).await.unwrap_or(1500);
        let ipam = Ipam::open(&config.state_dir.join("ipam"), config.pod_cidr)?;
        Ok(Bridge {
            config,
            gateway,
            bridge_index,
            mtu,
            netlink,
            ipam,
        })
    }

    /// Connects the pod `uid` whose network namespace is pinned at `netns`, and returns its
    /// address. Idempotent: a pod attached before (by this agent or the one before a restart)
    /// keeps its address and interface.
    pub async fn attach(&self, uid: &str, netns: &Path) -> Result<Ipv4Addr, NetworkError> {
        let address = self.ipam.allocate(uid)?;
        let host_side = host_interface(uid);
        let result = self.connect_pod(&host_side, netns, address).await;
        if result.is_err() {
            // A half-made pair would make the next attempt fail on "file exists".
            self.remove_link(&host_side).await;
        }
        result.map(|()| address)
    }

    async fn connect_pod(
        &self,
        host_side: &str,
        netns: &Path,
        address: Ipv4Addr,
    ) -> Result<(), NetworkError> {
        let namespace =
            std::fs::File::open(netns).map_err(io(format!("opening {}", netns.display())))?;
        let inside = connect_in(&namespace, netns)?;
        let configured = link_index(&inside, POD_INTERFACE).await?.is_some()
            && link_index(&self.netlink, host_side).await?.is_some();
        if !configured {
            self.remove_link(host_side).await;
            // The peer is made directly inside the pod's namespace, under its final name.
            let peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(POD_INTERFACE.to_string())
                .mtu(self.mtu)
                .setns_by_fd(namespace.as_raw_fd())
                .build();
            let veth = LinkVeth::new(host_side, POD_INTERFACE)
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .mtu(self.mtu)
                .controller(self.bridge_index)
                .build();
            self.netlink.link().add(veth).execute().await?;
        }
        let host_index = link_index(&self.netlink, host_side)
            .await?
            .ok_or_else(|| NetworkError::NoLink(host_side.into()))?;
        // Hairpin: a pod that reaches itself through a Service gets its packets back through
        // the port they came in by.
        self.netlink
            .link()
            .set_port(LinkBridgePort::new(host_index).hairpin(true).build())
            .execute()
            .await?;
        self.netlink
            .link()
            .set(LinkUnspec::new_with_index(host_index).up().build())
            .execute()
            .await?;
        let pod_index = link_index(&inside, POD_INTERFACE)
            .await?
            .ok_or_else(|| NetworkError::NoLink(POD_INTERFACE.into()))?;
        ensure_address(&inside, pod_index, address, self.config.pod_cidr.prefix()).await?;
        inside
            .link()
            .set(LinkUnspec::new_with_index(pod_index).up().build())
            .execute()
            .await?;
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(self.gateway)
            .output_interface(pod_index)
            .build();
        inside.route().add(default).replace().execute().await?;
        Ok(())
    }

    /// Disconnects the pod and releases its address (idempotent).
    pub async fn detach(&self, uid: &str) {
        self.remove_link(&host_interface(uid)).await;
        self.ipam.release(uid);
    }

    /// Makes `address` one of the node's own (on the loopback interface, as NodeLocal
    /// DNSCache holds the cluster DNS address on an interface of its own), so that a server
    /// on this node can listen on it and pods reach it through their gateway. Idempotent.
    pub async fn add_local_address(&self, address: Ipv4Addr) -> Result<(), NetworkError> {
        let index = link_index(&self.netlink, "lo")
            .await?
            .ok_or_else(|| NetworkError::NoLink("lo".into()))?;
        ensure_address(&self.netlink, index, address, 32).await
    }

    async fn remove_link(&self, name: &str) {
        if let Ok(Some(index)) = link_index(&self.netlink, name).await
            && let Err(e) = self.netlink.link().del(index).execute().await
        {
            tracing::warn!("removing interface {name}: {e}");
        }
    }

    /// Makes the node's routes to other nodes' pod ranges exactly `routes` (pod CIDR → node
    /// address); routes of ours not in it are removed.
    pub async fn sync_routes(
        &self,
        routes: &BTreeMap<Ipv4Cidr, Ipv4Addr>,
    ) -> Result<(), NetworkError> {
        let mut existing: HashMap<(Ipv4Addr, u8), RouteMessage> = HashMap::new();
        let mut listed = self
            .netlink
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(route) = listed.try_next().await? {
            if route.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
                continue;
            }
            let destination = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(
                    rtnetlink::packet_route::route::RouteAddress::Inet(ip),
                ) => Some(*ip),
                _ => None,
            });
            if let Some(destination) = destination {
                existing.insert((destination, route.header.destination_prefix_length), route);
            }
        }
        for (cidr, via) in routes {
            if *cidr == self.config.pod_cidr {
                continue;
            }
            existing.remove(&(cidr.network(), cidr.prefix()));
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(cidr.network(), cidr.prefix())
                .gateway(*via)
                .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
                .build();
            if let Err(e) = self.netlink.route().add(route).replace().execute().await {
                tracing::warn!("route to pods {cidr} via node {via}: {e}");
            }
        }
        for (_, stale) in existing {
            if let Err(e) = self.netlink.route().del(stale).execute().await {
                tracing::warn!("removing a stale route to another node's pods: {e}");
            }
        }
        Ok(())
    }
}

/// The host end of a pod's veth: a name derived from the pod's UID (interface names are at
/// most 15 bytes), so that a restarted agent finds it again.
fn host_interface(uid: &str) -> String {
    let hex: String = uid
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(11)
        .collect();
    format!("veth{hex}")
}

fn connect() -> Result<Handle, NetworkError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(io("opening netlink"))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// A netlink connection inside the network namespace `namespace`: a short-lived thread enters
/// it and opens the socket, which stays in that namespace after the thread is gone.
fn connect_in(namespace: &std::fs::File, path: &Path) -> Result<Handle, NetworkError> {
    let runtime = tokio::runtime::Handle::current();
    let opened = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET).map_err(
                    |source| NetworkError::Enter {
                        path: path.to_owned(),
                        source,
                    },
                )?;
                let _entered = runtime.enter();
                rtnetlink::new_connection().map_err(io("opening netlink in the pod"))
            })
            .join()
            .expect("the namespace thread does not panic")
    })?;
    let (connection, handle, _) = opened;
    tokio::spawn(connection);
    Ok(handle)
}

async fn link_index(netlink: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    let mut links = netlink.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l: LinkMessage| l.header.index)),
        // ENODEV: no such interface.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Adds `address/prefix` to the interface unless it is there already.
async fn ensure_address(
    netlink: &Handle,
    index: u32,
    address: Ipv4Addr,
    prefix: u8,
) -> Result<(), NetworkError> {
    let mut present = netlink
        .address()
        .get()
        .set_link_index_filter(index)
        .set_address_filter(address.into())
        .execute();
    if present.try_next().await?.is_some() {
        return Ok(());
    }
    netlink
        .address()
        .add(index, address.into(), prefix)
        .replace()
        .execute()
        .await?;
    Ok(())
}

/// The MTU of the interface the default route leaves by, for the pods' interfaces.
async fn uplink_mtu(netlink: &Handle) -> Option<u32> {
    let mut routes = netlink
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut uplink = None;
    while let Ok(Some(route)) = routes.try_next().await {
        if route.header.destination_prefix_length == 0 {
            uplink = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(index) => Some(*index),
                _ => None,
            });
        }
    }
    let mut links = netlink.link().get().match_index(uplink?).execute();
    let link = links.try_next().await.ok()??;
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

fn write_sysctl(key: &str, value: &str) -> Result<(), NetworkError> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(io(format!("writing {}", path.display())))
}

/// Masquerade for pods' traffic leaving the cluster's pod range (to other networks through
/// the node's address); traffic between pods keeps its addresses.
fn masquerade_rules(cluster_cidr: &Ipv4Cidr) -> String {
    format!(
        "table ip {NFT_TABLE} {{}}\n\
         delete table ip {NFT_TABLE}\n\
         table ip {NFT_TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {cluster_cidr} ip daddr != {cluster_cidr} masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// Pod addresses of the node's range, leased by pod UID, as the CNI `host-local` plugin keeps
/// them: one file per address holding the UID, so that leases survive agent restarts and an
/// address is never given twice.
pub struct Ipam {
    dir: PathBuf,
    range: Ipv4Cidr,
    leases: Mutex<Leases>,
}

#[derive(Default)]
struct Leases {
    by_uid: HashMap<String, Ipv4Addr>,
    /// Where the next search starts: addresses are handed out round the range, so that one
    /// just released is not reused at once (a stale connection could reach the new pod).
    next: u64,
}

impl Ipam {
    pub fn open(dir: &Path, range: Ipv4Cidr) -> Result<Ipam, NetworkError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut leases = Leases {
            next: 2,
            ..Default::default()
        };
        for entry in std::fs::read_dir(dir)
            .map_err(io(format!("reading {}", dir.display())))?
            .flatten()
        {
            let name = entry.file_name();
            let Ok(address) = name.to_string_lossy().parse::<Ipv4Addr>() else {
                continue;
            };
            match std::fs::read_to_string(entry.path()) {
                // A lease of another range (the node's CIDR changed) is dropped.
                Ok(uid) if range.contains(address) => {
                    leases.by_uid.insert(uid.trim().to_string(), address);
                }
                _ => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(Ipam {
            dir: dir.to_owned(),
            range,
            leases: Mutex::new(leases),
        })
    }

    /// The pod's address: the one it holds, or a free one of the range (not the network
    /// address, the gateway or the broadcast address).
    pub fn allocate(&self, uid: &str) -> Result<Ipv4Addr, NetworkError> {
        let mut leases = self.leases.lock().expect("the lease lock is not poisoned");
        if let Some(address) = leases.by_uid.get(uid) {
            return Ok(*address);
        }
        let first = 2;
        let last = self.range.size().saturating_sub(2);
        if last < first {
            return Err(NetworkError::Exhausted(self.range));
        }
        let taken: std::collections::HashSet<Ipv4Addr> = leases.by_uid.values().copied().collect();
        let span = last - first + 1;
        let start = leases.next.clamp(first, last);
        for step in 0..span {
            let index = first + (start - first + step) % span;
            let address = self.range.nth(index).expect("index is inside the range");
            if taken.contains(&address) {
                continue;
            }
            let path = self.dir.join(address.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    use std::io::Write;
                    file.write_all(uid.as_bytes())
                        .map_err(io(format!("writing {}", path.display())))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(format!("creating {}", path.display()))(e)),
            }
            leases.by_uid.insert(uid.to_string(), address);
            leases.next = index + 1;
            return Ok(address);
        }
        Err(NetworkError::Exhausted(self.range))
    }

    /// The pod's address, if it holds one.
    pub fn address_of(&self, uid: &str) -> Option<Ipv4Addr> {
        let leases = self.leases.lock().expect("the lease lock is not poisoned");
        leases.by_uid.get(uid).copied()
    }

    pub fn release(&self, uid: &str) {
        let mut leases = self.leases.lock().expect("the lease lock is not poisoned");
        if let Some(address) = leases.by_uid.remove(uid) {
            let _ = std::fs::remove_file(self.dir.join(address.to_string()));
        }
    }

    fn retain(&self, alive: impl Fn(&str) -> bool) {
        let mut leases = self.leases.lock().expect("the lease lock is not poisoned");
        let dir = &self.dir;
        leases.by_uid.retain(|uid, address| {
            let keep = alive(uid);
            if !keep {
                let _ = std::fs::remove_file(dir.join(address.to_string()));
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> Ipv4Cidr {
        Ipv4Cidr::parse("10.42.3.0/29").unwrap()
    }

    #[test]
    fn leases_skip_network_gateway_and_broadcast_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), range()).unwrap();
        let got: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|uid| ipam.allocate(uid).unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "10.42.3.2",
                "10.42.3.3",
                "10.42.3.4",
                "10.42.3.5",
                "10.42.3.6"
            ]
        );
        assert!(matches!(
            ipam.allocate("f"),
            Err(NetworkError::Exhausted(_))
        ));
        // The same pod asking again keeps its address.
        assert_eq!(ipam.allocate("c").unwrap().to_string(), "10.42.3.4");
        let reopened = Ipam::open(dir.path(), range()).unwrap();
        assert_eq!(reopened.address_of("d").unwrap().to_string(), "10.42.3.5");
        assert!(matches!(
            reopened.allocate("f"),
            Err(NetworkError::Exhausted(_))
        ));
    }

    #[test]
    fn a_released_address_is_not_reused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), range()).unwrap();
        let a = ipam.allocate("a").unwrap();
        ipam.allocate("b").unwrap();
        ipam.release("a");
        assert_ne!(ipam.allocate("c").unwrap(), a);
        ipam.release("zzz");
        ipam.retain(|uid| uid != "b");
        assert_eq!(ipam.address_of("b"), None);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn leases_of_another_range_are_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10.9.9.9"), "old").unwrap();
        let ipam = Ipam::open(dir.path(), range()).unwrap();
        assert_eq!(ipam.address_of("old"), None);
        assert!(!dir.path().join("10.9.9.9").exists());
    }

    #[test]
    fn host_interface_names_fit_the_kernel_limit() {
        let name = host_interface("0f8c2b1e-5d7a-4c3b-9e2f-1a2b3c4d5e6f");
        assert_eq!(name, "veth0f8c2b1e5d7");
        assert!(name.len() <= 15);
    }
}
