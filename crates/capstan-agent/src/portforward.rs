//! `kubectl port-forward`: the `portforward.k8s.io` protocol, SPDY/3.1 streams tunnelled in a
//! WebSocket (`SPDY/3.1+portforward.k8s.io`), as kubectl 1.31+ speaks it.
//!
//! For every local connection kubectl opens two SPDY streams with headers `streamtype`
//! (`error` or `data`), `port` and `requestid`. The agent connects to that port inside the pod's
//! network namespace and copies bytes between the data stream and the connection; a failure
//! to connect is written to the error stream. SPDY header blocks are zlib-compressed with the
//! SPDY/3 dictionary, one compression context per direction for the whole connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;

/// Answers the upgrade and serves port-forwarding into the network namespace at `netns`.
pub fn upgrade(
    request: Request<Incoming>,
    netns: PathBuf,
    pod: String,
) -> Result<Response<super::server::Body>, (StatusCode, String)> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let key = header("sec-websocket-key");
    let offered = header("sec-websocket-protocol");
    if key.is_empty() || !offered.split(',').any(|p| p.trim() == PROTOCOL) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("port-forward needs a WebSocket upgrade with the {PROTOCOL} protocol"),
        ));
    }
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(request).await else {
            return;
        };
        let socket = WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        Session::new(netns, pod).run(socket).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .header("sec-websocket-protocol", PROTOCOL)
        .body(super::server::empty())
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// What the session's tasks ask the writer to send.
enum Outgoing {
    Data {
        stream: u32,
        data: Vec<u8>,
        fin: bool,
    },
}

/// One port-forward connection from kubectl.
struct Session {
    netns: PathBuf,
    pod: String,
    inflate: Decompress,
    deflate: Compress,
    /// Streams by id: their `streamtype`, `port` and `requestid`.
    streams: HashMap<u32, (String, String, String)>,
    /// Where the bytes kubectl sends on a data stream go.
    connections: HashMap<u32, mpsc::UnboundedSender<Option<Vec<u8>>>>,
}

impl Session {
    fn new(netns: PathBuf, pod: String) -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        let _ = deflate.set_dictionary(&spdy_dictionary());
        Session {
            netns,
            pod,
            inflate: Decompress::new(true),
            deflate,
            streams: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    async fn run<S>(mut self, socket: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, mut incoming) = socket.split();
        let (out_sender, mut out_receiver) = mpsc::unbounded_channel::<Vec<u8>>();
        let (data_sender, mut data_receiver) = mpsc::unbounded_channel::<Outgoing>();
        let writer = tokio::spawn(async move {
            while let Some(frame) = out_receiver.recv().await {
                if sink
                    .send(Message::Binary(Bytes::from(frame)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            tokio::select! {
                message = incoming.next() => {
                    let Some(Ok(message)) = message else { break };
                    match message {
                        Message::Binary(data) => buffer.extend_from_slice(&data),
                        Message::Close(_) => break,
                        _ => continue,
                    }
                    while let Some((frame, used)) = parse_frame(&buffer) {
                        let keep_going = self.handle(frame, &out_sender, &data_sender);
                        buffer.drain(..used);
                        if !keep_going {
                            break;
                        }
                    }
                }
                Some(Outgoing::Data { stream, data, fin }) = data_receiver.recv() => {
                    let _ = out_sender.send(data_frame(stream, &data, fin));
                }
            }
        }
        drop(out_sender);
        let _ = writer.await;
    }

    /// Handles one frame; false ends the session.
    fn handle(
        &mut self,
        frame: Frame,
        out: &mpsc::UnboundedSender<Vec<u8>>,
        data: &mpsc::UnboundedSender<Outgoing>,
    ) -> bool {
        match frame {
            Frame::Control {
                kind: SYN_STREAM,
                payload,
                ..
            } if payload.len() >= 10 => {
                let stream = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                let headers = self.decode_headers(&payload[10..]).unwrap_or_default();
                let get = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let (kind, port, request) = (get("streamtype"), get("port"), get("requestid"));
                let reply = self.syn_reply(stream);
                let _ = out.send(reply);
                if kind == "data" {
                    let error_stream = self
                        .streams
                        .iter()
                        .find(|(_, (k, _, r))| k == "error" && *r == request)
                        .map(|(id, _)| *id);
                    let (sender, receiver) = mpsc::unbounded_channel();
                    self.connections.insert(stream, sender);
                    tokio::spawn(forward(
                        self.netns.clone(),
                        self.pod.clone(),
                        port.clone(),
                        stream,
                        error_stream,
                        receiver,
                        data.clone(),
                    ));
                }
                self.streams.insert(stream, (kind, port, request));
                true
            }
            Frame::Control {
                kind: RST_STREAM,
                payload,
                ..
            } if payload.len() >= 4 => {
                let stream = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                if let Some(connection) = self.connections.remove(&stream) {
                    let _ = connection.send(None);
                }
                true
            }
            Frame::Control {
                kind: PING,
                payload,
                ..
            } => {
                let _ = out.send(control_frame(PING, 0, &payload));
                true
            }
            Frame::Control { kind: GOAWAY, .. } => false,
            Frame::Control { .. } => true, // SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do
            Frame::Data {
                stream,
                fin,
                data: bytes,
            } => {
                if let Some(connection) = self.connections.get(&stream) {
                    if !bytes.is_empty() {
                        let _ = connection.send(Some(bytes));
                    }
                    if fin {
                        let _ = connection.send(None);
                    }
                }
                true
            }
        }
    }

    /// Inflates a header block with the connection's shared context and reads its pairs.
    fn decode_headers(&mut self, block: &[u8]) -> Option<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            let before_in = self.inflate.total_in();
            let before_out = self.inflate.total_out();
            out.reserve(256);
            match self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(&spdy_dictionary()).ok()?;
                }
                Err(_) => return None,
            }
            let used = (self.inflate.total_in() - before_in) as usize;
            input = &input[used..];
            let produced = self.inflate.total_out() - before_out;
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if used == 0 && produced == 0 && input.is_empty() {
                break;
            }
        }
        parse_header_block(&out)
    }

    /// A SYN_REPLY with no headers, compressed with the connection's context.
    fn syn_reply(&mut self, stream: u32) -> Vec<u8> {
        let block = 0u32.to_be_bytes();
        let mut compressed = Vec::with_capacity(64);
        let _ = self
            .deflate
            .compress_vec(&block, &mut compressed, FlushCompress::Sync);
        while compressed.len() == compressed.capacity() {
            compressed.reserve(64);
            if !matches!(
                self.deflate
                    .compress_vec(&[], &mut compressed, FlushCompress::Sync),
                Ok(Status::Ok)
            ) {
                break;
            }
        }
        let mut payload = stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&compressed);
        control_frame(SYN_REPLY, 0, &payload)
    }
}

/// Connects to `port` inside the pod's network namespace and copies bytes both ways.
async fn forward(
    netns: PathBuf,
    pod: String,
    port: String,
    stream: u32,
    error_stream: Option<u32>,
    mut from_client: mpsc::UnboundedReceiver<Option<Vec<u8>>>,
    to_client: mpsc::UnboundedSender<Outgoing>,
) {
    let connected = match port.parse::<u16>() {
        Ok(number) => connect_in(netns, number).await,
        Err(_) => Err(std::io::Error::other(format!("invalid port {port:?}"))),
    };
    let tcp = match connected {
        Ok(tcp) => tcp,
        Err(e) => {
            if let Some(error_stream) = error_stream {
                let message = format!(
                    "error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} inside the pod: {e}"
                );
                let _ = to_client.send(Outgoing::Data {
                    stream: error_stream,
                    data: message.into_bytes(),
                    fin: true,
                });
            }
            let _ = to_client.send(Outgoing::Data {
                stream,
                data: Vec::new(),
                fin: true,
            });
            return;
        }
    };
    let (mut reader, mut writer) = tcp.into_split();
    let upstream = async move {
        while let Some(Some(bytes)) = from_client.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    };
    let sender = to_client.clone();
    let downstream = async move {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sender
                        .send(Outgoing::Data {
                            stream,
                            data: buffer[..n].to_vec(),
                            fin: false,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = sender.send(Outgoing::Data {
            stream,
            data: Vec::new(),
            fin: true,
        });
    };
    tokio::join!(upstream, downstream);
    if let Some(error_stream) = error_stream {
        let _ = to_client.send(Outgoing::Data {
            stream: error_stream,
            data: Vec::new(),
            fin: true,
        });
    }
}

/// A TCP connection to 127.0.0.1:`port` made from inside the network namespace `netns` (a
/// socket keeps the namespace it was made in).
async fn connect_in(netns: PathBuf, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    // A thread of its own: it enters the pod's namespace and is never reused.
    std::thread::spawn(move || {
        let result = enter(&netns).and_then(|()| std::net::TcpStream::connect(("127.0.0.1", port)));
        let _ = sender.send(result);
    });
    let stream = receiver.await.map_err(std::io::Error::other)??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

fn enter(netns: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(netns)?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// A parsed SPDY frame.
#[derive(Debug, PartialEq)]
enum Frame {
    Control {
        kind: u16,
        flags: u8,
        payload: Vec<u8>,
    },
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
}

/// Parses one frame from the front of `buffer`: the frame and the bytes it used, or `None`
/// until the whole frame has arrived.
fn parse_frame(buffer: &[u8]) -> Option<(Frame, usize)> {
    if buffer.len() < 8 {
        return None;
    }
    let length = u32::from_be_bytes([0, buffer[5], buffer[6], buffer[7]]) as usize;
    if buffer.len() < 8 + length {
        return None;
    }
    let flags = buffer[4];
    let payload = buffer[8..8 + length].to_vec();
    let frame = if buffer[0] & 0x80 != 0 {
        Frame::Control {
            kind: u16::from_be_bytes([buffer[2], buffer[3]]),
            flags,
            payload,
        }
    } else {
        let stream = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) & 0x7fff_ffff;
        Frame::Data {
            stream,
            fin: flags & FLAG_FIN != 0,
            data: payload,
        }
    };
    Some((frame, 8 + length))
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000u16 | 3).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

fn data_frame(stream: u32, data: &[u8], fin: bool) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.push(if fin { FLAG_FIN } else { 0 });
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(data);
    frame
}

/// Reads a SPDY/3 header block: a count, then length-prefixed names and values.
fn parse_header_block(block: &[u8]) -> Option<Vec<(String, String)>> {
    let mut at = 0;
    let next = |at: &mut usize| -> Option<&[u8]> {
        let length = u32::from_be_bytes(block.get(*at..*at + 4)?.try_into().ok()?) as usize;
        let value = block.get(*at + 4..*at + 4 + length)?;
        *at += 4 + length;
        Some(value)
    };
    let count = u32::from_be_bytes(block.get(0..4)?.try_into().ok()?);
    at += 4;
    let mut headers = Vec::new();
    for _ in 0..count.min(64) {
        let name = String::from_utf8_lossy(next(&mut at)?).into_owned();
        let value = String::from_utf8_lossy(next(&mut at)?).into_owned();
        headers.push((name.to_ascii_lowercase(), value));
    }
    Some(headers)
}

/// The zlib dictionary of SPDY/3 header blocks (SPDY/3 draft, section 2.6.10.1): common header
/// names and values, each name length-prefixed, then common value text.
fn spdy_dictionary() -> Vec<u8> {
    const NAMES: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TEXT: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut dictionary = Vec::with_capacity(1424);
    for name in NAMES {
        dictionary.extend_from_slice(&(name.len() as u32).to_be_bytes());
        dictionary.extend_from_slice(name.as_bytes());
    }
    dictionary.extend_from_slice(TEXT.as_bytes());
    dictionary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_until_complete() {
        let data = data_frame(5, b"hello", true);
        assert_eq!(parse_frame(&data[..6]), None);
        assert_eq!(
            parse_frame(&data),
            Some((
                Frame::Data {
                    stream: 5,
                    fin: true,
                    data: b"hello".to_vec()
                },
                13
            ))
        );
        let ping = control_frame(PING, 0, &7u32.to_be_bytes());
        assert_eq!(
            parse_frame(&ping),
            Some((
                Frame::Control {
                    kind: PING,
                    flags: 0,
                    payload: 7u32.to_be_bytes().to_vec()
                },
                12
            ))
        );
    }

    #[test]
    fn header_blocks_compress_with_the_spdy_dictionary_and_read_back() {
        // The dictionary as the SPDY/3 draft gives it is 1,423 bytes.
        assert_eq!(spdy_dictionary().len(), 1423);
        // One side compresses a block the way kubectl does; the session reads it.
        let mut block = 3u32.to_be_bytes().to_vec();
        for (name, value) in [("streamtype", "data"), ("port", "8080"), ("requestid", "0")] {
            block.extend_from_slice(&(name.len() as u32).to_be_bytes());
            block.extend_from_slice(name.as_bytes());
            block.extend_from_slice(&(value.len() as u32).to_be_bytes());
            block.extend_from_slice(value.as_bytes());
        }
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(&spdy_dictionary()).unwrap();
        let mut compressed = Vec::with_capacity(512);
        deflate
            .compress_vec(&block, &mut compressed, FlushCompress::Sync)
            .unwrap();
        let mut session = Session::new(PathBuf::new(), "p".into());
        let headers = session.decode_headers(&compressed).unwrap();
        assert_eq!(headers[1], ("port".to_string(), "8080".to_string()));
        // A reply's block inflates on the other side with the same dictionary.
        let reply = session.syn_reply(1);
        let mut inflate = Decompress::new(true);
        let mut out = Vec::with_capacity(64);
        let block = &reply[12..];
        let error = inflate
            .decompress_vec(block, &mut out, FlushDecompress::Sync)
            .unwrap_err();
        assert!(error.needs_dictionary().is_some());
        inflate.set_dictionary(&spdy_dictionary()).unwrap();
        let used = inflate.total_in() as usize;
        inflate
            .decompress_vec(&block[used..], &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, 0u32.to_be_bytes());
    }
}
