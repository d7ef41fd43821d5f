//! `kubectl exec` on the agent's side: the WebSocket stream protocol of
//! `v5.channel.k8s.io` (and `v4.channel.k8s.io`) over a command run by the runtime's
//! exec-shim.
//!
//! Every binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the final
//! status (a Status object), 4 terminal resize (`{"Width":80,"Height":24}`); in v5, 255 closes
//! a stream (`ff 00`: stdin is done).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use crate::worker::Shared;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// The stream protocols we speak, best first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// What `exec` was asked for.
pub struct ExecOptions {
    /// Attach to the container's own streams (`kubectl attach`) instead of running `command`.
    pub attach: bool,
    pub command: Vec<String>,
    pub stdin: bool,
    pub tty: bool,
}

/// Answers the WebSocket upgrade and runs the command in container `id` (in `dir`) once the
/// connection is upgraded.
pub fn upgrade(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    dir: PathBuf,
    options: ExecOptions,
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
    if key.is_empty() || !header("upgrade").eq_ignore_ascii_case("websocket") {
        return Err((
            StatusCode::BAD_REQUEST,
            "exec needs a WebSocket upgrade (v5.channel.k8s.io)".into(),
        ));
    }
    let offered = header("sec-websocket-protocol");
    let Some(protocol) = PROTOCOLS
        .iter()
        .find(|p| offered.split(',').any(|o| o.trim() == **p))
    else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "none of the offered stream protocols ({offered}) is supported; use one of {PROTOCOLS:?}"
            ),
        ));
    };
    let v5 = *protocol == PROTOCOLS[0];
    let shared = Arc::clone(shared);
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
        run(&shared, socket, dir, options, v5).await;
    });
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .header("sec-websocket-protocol", *protocol)
        .body(super::server::empty())
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(response)
}

/// The final status kubelet sends on the error channel: success, or the exit code kubectl
/// turns into its own.
fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn channel_message(channel: u8, data: &[u8]) -> Message {
    let mut frame = Vec::with_capacity(data.len() + 1);
    frame.push(channel);
    frame.extend_from_slice(data);
    Message::Binary(Bytes::from(frame))
}

async fn run<S>(
    shared: &Shared,
    socket: WebSocketStream<S>,
    dir: PathBuf,
    options: ExecOptions,
    v5: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut incoming) = socket.split();
    let size_file = options
        .tty
        .then(|| dir.join(format!("exec-size-{}", uuid_like())));
    let request = capstan_runtime::exec::ExecRequest {
        args: options.command.clone(),
        tty: options.tty,
        size_file: size_file.clone(),
    };
    let (out_sender, mut out_receiver) = tokio::sync::mpsc::channel::<Message>(32);
    let mut pumps = Vec::new();
    let mut child = None;
    let mut stdin: Option<Box<dyn tokio::io::AsyncWrite + Unpin + Send>> = None;
    if options.attach {
        // The container's own streams, through its shim.
        let path = dir.join(capstan_runtime::attach::SOCKET);
        let socket = match tokio::net::UnixStream::connect(&path).await {
            Ok(socket) => socket,
            Err(e) => {
                let why = format!("attaching to the container: {e}");
                fail(&mut sink, &why).await;
                return;
            }
        };
        let (mut reader, writer) = socket.into_split();
        if options.stdin {
            stdin = Some(Box::new(writer));
        }
        let sender = out_sender.clone();
        pumps.push(tokio::spawn(async move {
            // Frames: [stream][length u32 BE][bytes], stream 1 stdout, 2 stderr.
            let mut header = [0u8; 5];
            while reader.read_exact(&mut header).await.is_ok() {
                let length =
                    u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
                let mut data = vec![0u8; length];
                if reader.read_exact(&mut data).await.is_err() {
                    break;
                }
                let channel = if header[0] == 2 { STDERR } else { STDOUT };
                if sender.send(channel_message(channel, &data)).await.is_err() {
                    break;
                }
            }
        }));
    } else {
        let mut spawned = match capstan_runtime::exec::spawn(&shared.shim, &dir, &request).await {
            Ok(child) => child,
            Err(why) => {
                fail(&mut sink, &why).await;
                return;
            }
        };
        if options.stdin {
            stdin = spawned
                .stdin
                .take()
                .map(|w| Box::new(w) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>);
        } // otherwise the command reads end-of-file at once
        for (channel, reader) in [
            (
                STDOUT,
                spawned
                    .stdout
                    .take()
                    .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            ),
            (
                STDERR,
                spawned
                    .stderr
                    .take()
                    .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            ),
        ] {
            let Some(mut reader) = reader else { continue };
            let sender = out_sender.clone();
            pumps.push(tokio::spawn(async move {
                let mut buffer = vec![0u8; 32 * 1024];
                while let Ok(n) = reader.read(&mut buffer).await {
                    if n == 0
                        || sender
                            .send(channel_message(channel, &buffer[..n]))
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            }));
        }
        child = Some(spawned);
    }
    let pid = child.as_ref().and_then(|c| c.id());
    drop(out_sender);

    // The client's messages: stdin data, resizes, stream closes.
    let input = async {
        while let Some(Ok(message)) = incoming.next().await {
            let Message::Binary(data) = message else {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            match channel {
                STDIN => {
                    if let Some(writer) = stdin.as_mut()
                        && writer.write_all(payload).await.is_err()
                    {
                        stdin = None;
                    }
                }
                RESIZE => {
                    if let (Some(size_file), Some(pid), Ok(size)) =
                        (&size_file, pid, serde_json::from_slice::<Value>(payload))
                    {
                        let text = format!(
                            "{} {}",
                            size["Width"].as_u64().unwrap_or(80),
                            size["Height"].as_u64().unwrap_or(24)
                        );
                        if std::fs::write(size_file, text).is_ok() {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid as i32),
                                nix::sys::signal::Signal::SIGWINCH,
                            );
                        }
                    }
                }
                CLOSE if v5 && payload.first() == Some(&STDIN) => stdin = None,
                _ => {}
            }
        }
        // The client went away (or v4 without half-close): stdin ends.
        stdin = None;
        std::future::pending::<()>().await;
    };
    let output = async {
        while let Some(message) = out_receiver.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    };
    // Output ends when the command and everything holding its output are done.
    tokio::select! {
        _ = input => {}
        _ = output => {}
    }
    // An attachment ends when the container does: that is success, as kubelet reports it.
    let code = match child.as_mut() {
        Some(child) => child
            .wait()
            .await
            .ok()
            .and_then(|s| s.code())
            .unwrap_or(255),
        None => 0,
    };
    for pump in pumps {
        let _ = pump.await;
    }
    let _ = sink
        .send(channel_message(
            ERROR,
            exit_status(&options.command, code).to_string().as_bytes(),
        ))
        .await;
    close(&mut sink).await;
    // The closing handshake: wait (briefly) for the client's own Close before the connection
    // is dropped. Dropping it with the client's last frames unread makes the kernel answer
    // with a reset, which can overtake the status and the Close on their way to kubectl
    // (seen as "close 1006 (abnormal closure)" and a lost exit code).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    if let Some(size_file) = size_file {
        let _ = std::fs::remove_file(size_file);
    }
}

/// Reports that the command could not run (containerd's words follow) and ends the stream.
async fn fail<S>(sink: &mut S, why: &str)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let status = json!({
        "metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
        "message": format!("Internal error occurred: error executing command in container: failed to exec in container: {why}"),
        "details": {"causes": [{"message": why}]},
    });
    let _ = sink
        .send(channel_message(ERROR, status.to_string().as_bytes()))
        .await;
    close(sink).await;
}

/// Ends the stream with a normal closure: kubectl reports a close without a status code
/// (1005) as a failed error stream.
async fn close<S>(sink: &mut S)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
    let _ = sink.close().await;
}

/// A name unique enough for a per-exec file.
fn uuid_like() -> String {
    format!("{:x}", jiff::Timestamp::now().as_nanosecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_become_the_status_kubectl_reads() {
        let command = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        assert_eq!(exit_status(&command, 0)["status"], "Success");
        let failure = exit_status(&command, 3);
        assert_eq!(failure["reason"], "NonZeroExitCode");
        assert_eq!(failure["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failure["details"]["causes"][0]["message"], "3");
        assert_eq!(
            failure["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }
}
