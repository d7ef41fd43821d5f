//! The DNS server: hickory's UDP and TCP loops around a [`RequestHandler`] that answers from
//! the current [`Records`] snapshot and relays everything else to the upstream resolvers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Name, Record};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

use super::records::{Lookup, Records};
use super::{DnsError, SharedRecords};

/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// Largest UDP payload we advertise and accept from upstreams.
const MAX_UDP_PAYLOAD: u16 = 1232;

/// A running DNS server; dropping it stops it.
pub struct DnsServer {
    local_addr: SocketAddr,
    server: Server<Handler>,
}

impl DnsServer {
    /// The address answering UDP and TCP (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server stops (it stops only on a socket error or shutdown).
    pub async fn wait(&mut self) {
        if let Err(e) = self.server.block_until_done().await {
            tracing::warn!("DNS server on {}: {e}", self.local_addr);
        }
    }

    /// Stops accepting queries and waits for the loops to end.
    pub async fn shutdown(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }
}

/// Starts answering on `addr` (UDP and TCP on the same port) from `records`, forwarding names
/// outside the cluster domain to `upstreams` (tried in order within `upstream_timeout`; an
/// empty list answers them REFUSED). Returns once both sockets are bound.
pub async fn serve(
    addr: SocketAddr,
    records: SharedRecords,
    upstreams: Vec<SocketAddr>,
    upstream_timeout: Duration,
) -> Result<DnsServer, DnsError> {
    let (udp, tcp) = bind(addr).await?;
    let local_addr = udp.local_addr().map_err(|source| DnsError::Bind {
        protocol: "UDP",
        addr,
        source,
    })?;
    // Relaying to ourselves would loop until the timeout.
    let upstreams = upstreams
        .into_iter()
        .filter(|upstream| *upstream != local_addr)
        .collect();
    let handler = Handler {
        records,
        forwarder: Forwarder {
            upstreams,
            timeout: upstream_timeout,
        },
    };
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    Ok(DnsServer { local_addr, server })
}

/// Binds UDP, then TCP on the same port; with port 0 the kernel picks a UDP port whose TCP
/// twin may be taken, so a few ports are tried.
async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let mut attempts = if addr.port() == 0 { 10 } else { 1 };
    loop {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Bind {
                protocol: "UDP",
                addr,
                source,
            })?;
        let bound = udp.local_addr().map_err(|source| DnsError::Bind {
            protocol: "UDP",
            addr,
            source,
        })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => {
                attempts -= 1;
                if attempts == 0 {
                    return Err(DnsError::Bind {
                        protocol: "TCP",
                        addr: bound,
                        source,
                    });
                }
            }
        }
    }
}

pub(crate) struct Handler {
    records: SharedRecords,
    forwarder: Forwarder,
}

impl RequestHandler for Handler {
    // The trait is declared with `#[async_trait]`; this is its expansion, written out so that
    // the crate does not need the macro.
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.answer(request, response_handle))
    }
}

impl Handler {
    async fn answer<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|requested| {
            let mut edns = Edns::new();
            edns.set_max_payload(requested.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;

        let query = match request.request_info() {
            Ok(info) if request.metadata.op_code == OpCode::Query => info.query,
            Ok(_) => {
                return send_error(&mut response, builder, metadata, ResponseCode::NotImp).await;
            }
            Err(_) => {
                return send_error(&mut response, builder, metadata, ResponseCode::FormErr).await;
            }
        };

        let records = self.records.load();
        let name: &Name = query.name();
        let lookup = records.lookup(name, query.query_type());
        let (code, answers, authorities, additionals) = match lookup {
            Lookup::Answer {
                answers,
                additionals,
            } => (ResponseCode::NoError, answers, Vec::new(), additionals),
            Lookup::NoData => (ResponseCode::NoError, Vec::new(), soa(&records), Vec::new()),
            Lookup::NxDomain => (
                ResponseCode::NXDomain,
                Vec::new(),
                soa(&records),
                Vec::new(),
            ),
            Lookup::NotOurs => {
                drop(records);
                return self.forward(request, response, builder, metadata).await;
            }
        };
        metadata.authoritative = true;
        metadata.response_code = code;
        let message = builder.build(
            metadata,
            answers.iter(),
            authorities.iter(),
            std::iter::empty(),
            additionals.iter(),
        );
        send(&mut response, message_info(request), message).await
    }

    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        builder: MessageResponseBuilder<'_>,
        mut metadata: Metadata,
    ) -> ResponseInfo {
        if self.forwarder.upstreams.is_empty() {
            return send_error(&mut response, builder, metadata, ResponseCode::Refused).await;
        }
        let Some(upstream) = self
            .forwarder
            .relay(request.as_slice(), request.metadata.id)
            .await
        else {
            return send_error(&mut response, builder, metadata, ResponseCode::ServFail).await;
        };
        metadata.response_code = upstream.metadata.response_code;
        metadata.authoritative = upstream.metadata.authoritative;
        metadata.truncation = upstream.metadata.truncation;
        metadata.authentic_data = upstream.metadata.authentic_data;
        let message = builder.build(
            metadata,
            upstream.answers.iter(),
            upstream.authorities.iter(),
            std::iter::empty(),
            upstream.additionals.iter(),
        );
        send(&mut response, message_info(request), message).await
    }
}

fn soa(records: &Records) -> Vec<Record> {
    vec![records.soa().clone()]
}

/// What to answer if sending fails: the server only logs it.
fn message_info(request: &Request) -> Metadata {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    metadata
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    on_error: Metadata,
    message: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("sending a DNS response: {e}");
            ResponseInfo::from(hickory_proto::op::Header {
                metadata: on_error,
                counts: Default::default(),
            })
        }
    }
}

async fn send_error<R: ResponseHandler>(
    response: &mut R,
    builder: MessageResponseBuilder<'_>,
    mut metadata: Metadata,
    code: ResponseCode,
) -> ResponseInfo {
    metadata.response_code = code;
    let on_error = metadata;
    send(response, on_error, builder.build_no_records(metadata)).await
}

/// Relays queries outside the cluster domain to the node's resolvers over UDP.
struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    /// Sends the client's query unchanged to each upstream in turn (each gets an equal share
    /// of the timeout) and returns the first answer that matches its id.
    async fn relay(&self, query: &[u8], id: u16) -> Option<Message> {
        let share = self.timeout / u32::try_from(self.upstreams.len()).unwrap_or(1).max(1);
        for upstream in &self.upstreams {
            match tokio::time::timeout(share, exchange(*upstream, query, id)).await {
                Ok(Ok(message)) => return Some(message),
                Ok(Err(e)) => tracing::debug!("forwarding a DNS query to {upstream}: {e}"),
                Err(_) => tracing::debug!("forwarding a DNS query to {upstream}: timed out"),
            }
        }
        None
    }
}

async fn exchange(upstream: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Message> {
    let local: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buffer = vec![0; usize::from(u16::MAX)];
    loop {
        let len = socket.recv(&mut buffer).await?;
        // Ignore stray datagrams: only an answer to this very query counts.
        if let Ok(message) = Message::from_vec(&buffer[..len])
            && message.metadata.id == id
            && message.metadata.message_type == MessageType::Response
        {
            return Ok(message);
        }
    }
}
