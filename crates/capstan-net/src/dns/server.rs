//! The DNS server: hickory's UDP and TCP loops around a [`RequestHandler`] that answers from
//! the current [`Records`] snapshot and relays everything else to the upstream resolvers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

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
        // The original spelling, not hickory's lowercased copy: answers echo the question's
        // case (0x20 randomisation in resolvers depends on it); lookups ignore case anyway.
        let name: &Name = query.original().name();
        let lookup = records.lookup(name, query.query_type());
        let (code, answers, authorities, additionals) = match lookup {
            Lookup::Answer {
                mut answers,
                additionals,
            } => {
                self.chase_cname(&records, &mut answers, query.query_type())
                    .await;
                (ResponseCode::NoError, answers, Vec::new(), additionals)
            }
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

    /// Follows an ExternalName's CNAME, as CoreDNS does: stub resolvers in pods expect the
    /// addresses in the same answer. Targets inside the cluster domain are looked up here,
    /// others asked upstream; if that fails the CNAME alone is answered.
    async fn chase_cname(
        &self,
        records: &Records,
        answers: &mut Vec<Record>,
        query_type: RecordType,
    ) {
        if matches!(query_type, RecordType::CNAME | RecordType::ANY) {
            return;
        }
        let [answer] = answers.as_slice() else {
            return;
        };
        let RData::CNAME(CNAME(target)) = &answer.data else {
            return;
        };
        let target = target.clone();
        if records.domain().zone_of(&target) {
            if let Lookup::Answer { answers: more, .. } = records.lookup(&target, query_type) {
                answers.extend(more);
            }
            return;
        }
        if self.forwarder.upstreams.is_empty() {
            return;
        }
        let mut question = Message::query();
        question.metadata.recursion_desired = true;
        question.add_query(Query::query(target, query_type));
        let Ok(bytes) = question.to_vec() else {
            return;
        };
        if let Some(upstream) = self
            .forwarder
            .relay(&bytes, question.metadata.id, false)
            .await
        {
            answers.extend(upstream.answers);
        }
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
            .relay(
                request.as_slice(),
                request.metadata.id,
                request.protocol() == Protocol::Tcp,
            )
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
    /// of the timeout) and returns the first answer that matches its id. A truncated answer
    /// is asked again over TCP when the client asked over TCP (a UDP client retries over TCP
    /// itself when it sees the TC bit).
    async fn relay(&self, query: &[u8], id: u16, over_tcp: bool) -> Option<Message> {
        let share = self.timeout / u32::try_from(self.upstreams.len()).unwrap_or(1).max(1);
        for upstream in &self.upstreams {
            let attempt = async {
                let message = exchange(*upstream, query, id).await?;
                if message.metadata.truncation && over_tcp {
                    return exchange_tcp(*upstream, query, id).await;
                }
                Ok(message)
            };
            match tokio::time::timeout(share, attempt).await {
                Ok(Ok(message)) => return Some(message),
                Ok(Err(e)) => tracing::debug!("forwarding a DNS query to {upstream}: {e}"),
                Err(_) => tracing::debug!("forwarding a DNS query to {upstream}: timed out"),
            }
        }
        None
    }
}

async fn exchange_tcp(upstream: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    loop {
        let len = stream.read_u16().await?;
        let mut buffer = vec![0; usize::from(len)];
        stream.read_exact(&mut buffer).await?;
        if let Ok(message) = Message::from_vec(&buffer)
            && message.metadata.id == id
            && message.metadata.message_type == MessageType::Response
        {
            return Ok(message);
        }
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::rdata::{A, PTR, SRV};
    use k8s_openapi::api::core::v1::ServiceSpec;

    use super::*;
    use crate::dns::records::tests::{cluster_ip, domain, headless, service, slice};

    const LOCALHOST: &str = "127.0.0.1:0";

    fn cluster() -> Records {
        let external = service(
            "ns",
            "ext",
            ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some("db.example.com".into()),
                ..Default::default()
            },
        );
        Records::build(
            &domain(),
            &[
                cluster_ip("ns", "web", "10.96.0.10"),
                headless("ns", "db"),
                external,
            ],
            &[slice(
                "ns",
                "db",
                &[
                    ("10.244.0.5", Some("db-0"), true),
                    ("10.244.0.6", Some("db-1"), true),
                ],
            )],
        )
    }

    async fn start(records: Records, upstreams: Vec<SocketAddr>) -> DnsServer {
        serve(
            LOCALHOST.parse().unwrap(),
            SharedRecords::new(records),
            upstreams,
            Duration::from_millis(500),
        )
        .await
        .unwrap()
    }

    fn query(name: &str, query_type: RecordType) -> Message {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), query_type));
        message
    }

    async fn udp(server: SocketAddr, query: Message) -> Message {
        let socket = UdpSocket::bind(LOCALHOST).await.unwrap();
        socket
            .send_to(&query.to_vec().unwrap(), server)
            .await
            .unwrap();
        let mut buffer = vec![0; 65535];
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer))
            .await
            .expect("no answer within 5 s")
            .unwrap();
        let answer = Message::from_vec(&buffer[..len]).unwrap();
        assert_eq!(answer.metadata.id, query.metadata.id);
        answer
    }

    async fn ask(server: &DnsServer, name: &str, query_type: RecordType) -> Message {
        udp(server.local_addr(), query(name, query_type)).await
    }

    fn data(message: &Message) -> Vec<RData> {
        let mut data: Vec<RData> = message.answers.iter().map(|r| r.data.clone()).collect();
        data.sort_by_key(ToString::to_string);
        data
    }

    fn a(ip: &str) -> RData {
        RData::A(A(ip.parse().unwrap()))
    }

    #[tokio::test]
    async fn a_cluster_ip_service_is_answered_over_udp() {
        let server = start(cluster(), vec![]).await;
        let answer = ask(&server, "web.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert_eq!(data(&answer), vec![a("10.96.0.10")]);
        assert_eq!(answer.answers[0].ttl, 5);
    }

    #[tokio::test]
    async fn srv_answers_carry_the_target_addresses() {
        let server = start(cluster(), vec![]).await;
        let answer = ask(
            &server,
            "_http._tcp.web.ns.svc.cluster.local.",
            RecordType::SRV,
        )
        .await;
        let target = Name::from_ascii("web.ns.svc.cluster.local.").unwrap();
        assert_eq!(
            data(&answer),
            vec![RData::SRV(SRV::new(0, 100, 80, target))]
        );
        assert_eq!(answer.additionals.len(), 1);
        assert_eq!(answer.additionals[0].data, a("10.96.0.10"));

        let answer = ask(
            &server,
            "_web._tcp.db.ns.svc.cluster.local.",
            RecordType::SRV,
        )
        .await;
        assert_eq!(answer.answers.len(), 2);
        assert_eq!(answer.additionals.len(), 2);
    }

    #[tokio::test]
    async fn a_headless_service_answers_every_ready_endpoint() {
        let server = start(cluster(), vec![]).await;
        let answer = ask(&server, "db.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(data(&answer), vec![a("10.244.0.5"), a("10.244.0.6")]);
        let answer = ask(&server, "db-1.db.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(data(&answer), vec![a("10.244.0.6")]);
    }

    #[tokio::test]
    async fn external_names_pods_and_ptr_are_answered() {
        let server = start(cluster(), vec![]).await;
        let answer = ask(&server, "ext.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(
            data(&answer),
            vec![RData::CNAME(CNAME(
                Name::from_ascii("db.example.com.").unwrap()
            ))]
        );
        let answer = ask(&server, "10-244-3-4.ns.pod.cluster.local.", RecordType::A).await;
        assert_eq!(data(&answer), vec![a("10.244.3.4")]);
        let answer = ask(&server, "10.0.96.10.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(
            data(&answer),
            vec![RData::PTR(PTR(Name::from_ascii(
                "web.ns.svc.cluster.local."
            )
            .unwrap()))]
        );
    }

    #[tokio::test]
    async fn unknown_names_are_nxdomain_and_missing_types_nodata_both_with_the_soa() {
        let server = start(cluster(), vec![]).await;
        let answer = ask(&server, "nope.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        assert!(answer.answers.is_empty());
        assert_eq!(answer.authorities[0].record_type(), RecordType::SOA);

        let answer = ask(&server, "web.ns.svc.cluster.local.", RecordType::AAAA).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.answers.is_empty());
        assert_eq!(answer.authorities[0].record_type(), RecordType::SOA);
    }

    #[tokio::test]
    async fn questions_in_any_case_are_answered_in_their_own_case() {
        let server = start(cluster(), vec![]).await;
        let answer = ask(&server, "Web.NS.svc.Cluster.Local.", RecordType::A).await;
        assert_eq!(data(&answer), vec![a("10.96.0.10")]);
        assert_eq!(
            answer.answers[0].name.to_ascii(),
            "Web.NS.svc.Cluster.Local."
        );
    }

    #[tokio::test]
    async fn tcp_queries_are_answered() {
        let server = start(cluster(), vec![]).await;
        let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
        for _ in 0..2 {
            let question = query("db.ns.svc.cluster.local.", RecordType::A);
            let bytes = question.to_vec().unwrap();
            let len = u16::try_from(bytes.len()).unwrap();
            stream.write_all(&len.to_be_bytes()).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
            let len = stream.read_u16().await.unwrap();
            let mut buffer = vec![0; usize::from(len)];
            stream.read_exact(&mut buffer).await.unwrap();
            let answer = Message::from_vec(&buffer).unwrap();
            assert_eq!(answer.metadata.id, question.metadata.id);
            assert_eq!(data(&answer), vec![a("10.244.0.5"), a("10.244.0.6")]);
        }
    }

    #[tokio::test]
    async fn a_new_snapshot_is_answered_as_soon_as_it_is_stored() {
        let records = SharedRecords::new(Records::empty(&domain()));
        let server = serve(
            LOCALHOST.parse().unwrap(),
            records.clone(),
            vec![],
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        let answer = ask(&server, "web.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        records.store(cluster());
        let answer = ask(&server, "web.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(data(&answer), vec![a("10.96.0.10")]);
    }

    #[tokio::test]
    async fn outside_names_are_refused_without_upstreams() {
        let server = start(cluster(), vec![]).await;
        let answer = ask(&server, "example.com.", RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
        let answer = ask(&server, "9.9.9.9.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    }

    /// A resolver on 127.0.0.1 answering every A question with 192.0.2.1.
    async fn fake_upstream() -> SocketAddr {
        let socket = UdpSocket::bind(LOCALHOST).await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = vec![0; 65535];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
                    return;
                };
                let question = Message::from_vec(&buffer[..len]).unwrap();
                let mut answer = Message::response(question.metadata.id, OpCode::Query);
                answer.metadata.recursion_available = true;
                answer.add_queries(question.queries.clone());
                let name = question.queries[0].name().clone();
                answer.add_answer(Record::from_rdata(
                    name,
                    60,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                ));
                socket
                    .send_to(&answer.to_vec().unwrap(), from)
                    .await
                    .unwrap();
            }
        });
        addr
    }

    fn upstream_answer(question: &Message, truncated: bool) -> Vec<u8> {
        let mut answer = Message::response(question.metadata.id, OpCode::Query);
        answer.add_queries(question.queries.clone());
        answer.metadata.truncation = truncated;
        if !truncated {
            let name = question.queries[0].name().clone();
            answer.add_answer(Record::from_rdata(
                name,
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
        }
        answer.to_vec().unwrap()
    }

    /// A resolver on 127.0.0.1 whose UDP answers are truncated and whose TCP answers are whole.
    async fn truncating_upstream() -> SocketAddr {
        let socket = UdpSocket::bind(LOCALHOST).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let listener = TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move {
            let mut buffer = vec![0; 65535];
            while let Ok((len, from)) = socket.recv_from(&mut buffer).await {
                let question = Message::from_vec(&buffer[..len]).unwrap();
                socket
                    .send_to(&upstream_answer(&question, true), from)
                    .await
                    .unwrap();
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let len = stream.read_u16().await.unwrap();
                let mut buffer = vec![0; usize::from(len)];
                stream.read_exact(&mut buffer).await.unwrap();
                let answer = upstream_answer(&Message::from_vec(&buffer).unwrap(), false);
                let len = u16::try_from(answer.len()).unwrap();
                stream.write_all(&len.to_be_bytes()).await.unwrap();
                stream.write_all(&answer).await.unwrap();
            }
        });
        addr
    }

    async fn tcp(server: SocketAddr, question: &Message) -> Message {
        let mut stream = TcpStream::connect(server).await.unwrap();
        let bytes = question.to_vec().unwrap();
        let len = u16::try_from(bytes.len()).unwrap();
        stream.write_all(&len.to_be_bytes()).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut buffer = vec![0; usize::from(len)];
        stream.read_exact(&mut buffer).await.unwrap();
        Message::from_vec(&buffer).unwrap()
    }

    #[tokio::test]
    async fn truncated_upstream_answers_are_fetched_over_tcp_for_tcp_clients() {
        let upstream = truncating_upstream().await;
        let server = start(cluster(), vec![upstream]).await;
        let answer = ask(&server, "example.com.", RecordType::A).await;
        assert!(
            answer.metadata.truncation,
            "a UDP client gets the TC bit and retries"
        );
        let answer = tcp(server.local_addr(), &query("example.com.", RecordType::A)).await;
        assert!(!answer.metadata.truncation);
        assert_eq!(data(&answer), vec![a("192.0.2.1")]);
    }

    #[tokio::test]
    async fn an_external_name_is_followed_upstream() {
        let upstream = fake_upstream().await;
        let server = start(cluster(), vec![upstream]).await;
        let answer = ask(&server, "ext.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(answer.answers.len(), 2);
        assert_eq!(
            answer.answers[0].data,
            RData::CNAME(CNAME(Name::from_ascii("db.example.com.").unwrap()))
        );
        assert_eq!(answer.answers[1].name.to_ascii(), "db.example.com.");
        assert_eq!(answer.answers[1].data, a("192.0.2.1"));
    }

    /// A resolver on 127.0.0.1 that never answers.
    async fn silent_upstream() -> (UdpSocket, SocketAddr) {
        let socket = UdpSocket::bind(LOCALHOST).await.unwrap();
        let addr = socket.local_addr().unwrap();
        (socket, addr)
    }

    #[tokio::test]
    async fn outside_names_are_relayed_to_the_upstream() {
        let upstream = fake_upstream().await;
        let server = start(cluster(), vec![upstream]).await;
        let answer = ask(&server, "example.com.", RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(!answer.metadata.authoritative);
        assert_eq!(data(&answer), vec![a("192.0.2.1")]);
        assert_eq!(answer.answers[0].ttl, 60);
        // Cluster names are still answered locally.
        let answer = ask(&server, "web.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(data(&answer), vec![a("10.96.0.10")]);
    }

    #[tokio::test]
    async fn a_silent_upstream_is_skipped_for_the_next_one() {
        let (_silent, silent) = silent_upstream().await;
        let upstream = fake_upstream().await;
        let server = start(cluster(), vec![silent, upstream]).await;
        let answer = ask(&server, "example.com.", RecordType::A).await;
        assert_eq!(data(&answer), vec![a("192.0.2.1")]);
    }

    #[tokio::test]
    async fn no_upstream_answering_in_time_is_servfail() {
        let (_silent, silent) = silent_upstream().await;
        let server = start(cluster(), vec![silent]).await;
        let started = std::time::Instant::now();
        let answer = ask(&server, "example.com.", RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        assert!(started.elapsed() >= Duration::from_millis(400));
    }

    #[tokio::test]
    async fn edns_queries_get_edns_answers() {
        let server = start(cluster(), vec![]).await;
        let mut question = query("db.ns.svc.cluster.local.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        question.set_edns(edns);
        let answer = udp(server.local_addr(), question).await;
        assert_eq!(
            answer.edns.as_ref().map(Edns::max_payload),
            Some(MAX_UDP_PAYLOAD)
        );
        assert_eq!(answer.answers.len(), 2);
    }
}
