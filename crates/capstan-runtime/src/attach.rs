//! Attaching to a running container (`kubectl attach`): its shim listens on `DIR/attach.sock`.
//! Every client gets the container's output as it is written, framed as
//! `[stream: 1 stdout | 2 stderr][length: u32, big-endian][bytes]`; what a client writes goes
//! to the container's stdin when the container was started with `stdin: true`. With
//! `stdinOnce`, the container's stdin closes when the first client's input ends, as with
//! containerd.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::logs::Stream;

pub const SOCKET: &str = "attach.sock";

/// A client too slow to take output within this long is dropped rather than holding up the
/// container's output (and the log).
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The clients attached to one container, and its stdin.
#[derive(Default)]
pub struct Attachments {
    clients: Mutex<Vec<UnixStream>>,
    stdin: Mutex<Option<std::fs::File>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Attachments {
    pub fn new(stdin: Option<std::fs::File>) -> Self {
        Attachments {
            clients: Mutex::default(),
            stdin: Mutex::new(stdin),
        }
    }

    /// Sends output to every attached client, dropping those that fail.
    pub fn broadcast(&self, stream: Stream, data: &[u8]) {
        let mut clients = lock(&self.clients);
        if clients.is_empty() {
            return;
        }
        let mut frame = Vec::with_capacity(data.len() + 5);
        frame.push(match stream {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        });
        frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
        frame.extend_from_slice(data);
        clients.retain_mut(|client| client.write_all(&frame).is_ok());
    }

    /// Ends every attachment: the container has ended.
    pub fn close_all(&self) {
        for client in lock(&self.clients).drain(..) {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
    }

    fn feed(&self, data: &[u8]) -> bool {
        match lock(&self.stdin).as_mut() {
            Some(stdin) => stdin.write_all(data).is_ok(),
            None => false,
        }
    }

    fn close_stdin(&self) {
        lock(&self.stdin).take();
    }
}

/// Accepts attach clients on `dir/attach.sock` for as long as the shim lives.
pub fn serve(dir: &Path, attachments: Arc<Attachments>, stdin_once: bool) -> std::io::Result<()> {
    let path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(reader) = client.try_clone() else {
                continue;
            };
            let _ = client.set_write_timeout(Some(WRITE_TIMEOUT));
            lock(&attachments.clients).push(client);
            let attachments = Arc::clone(&attachments);
            std::thread::spawn(move || relay_input(reader, &attachments, stdin_once));
        }
    });
    Ok(())
}

fn relay_input(mut client: UnixStream, attachments: &Attachments, stdin_once: bool) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match client.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !attachments.feed(&buffer[..n]) {
                    break;
                }
            }
        }
    }
    if stdin_once {
        attachments.close_stdin();
    }
}
