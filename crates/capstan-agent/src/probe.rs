//! Probes and lifecycle hooks, as kubelet's prober and handler runner do them.
//!
//! Every container that has a `postStart` hook or a probe gets a [`ContainerLifecycle`]: a task
//! of its own that runs the hook right after the container started, then the startup, liveness
//! and readiness probes each on its own period, and publishes what they found in a watch
//! channel the pod worker reads (waking it when something changed, so that `Ready` follows a
//! probe within its period). The worker never waits on a probe.
//!
//! The semantics are kubelet's: the startup probe holds the other two back until it succeeds;
//! a container is ready once its readiness probe passed `successThreshold` times in a row (at
//! once without one) and unready after `failureThreshold` failures; a liveness or startup probe
//! failing `failureThreshold` times kills the container (after its `preStop` hook, within the
//! probe's or the pod's grace period) and the worker starts it again as the restart policy
//! says. Each failure is a `Unhealthy` event in kubelet's words.
//!
//! Probes reach the container the way kubelet's do, with one difference: pods have no IP of
//! their own yet, so network probes connect to `127.0.0.1` from inside the pod's network
//! namespace (a fresh thread enters it for each probe and ends with it). Everything that
//! touches the container is behind [`ContainerAccess`], so that the state machine, the timing
//! and the messages are tested with a fake on virtual time.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use capstan_runtime::exec::ExecRequest;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::events::{EventType, container_field_path};
use crate::worker::Shared;

/// The `User-Agent` of kubelet 1.33's probes and of its httpGet hooks.
pub const PROBE_USER_AGENT: &str = "kube-probe/1.33";
pub const LIFECYCLE_USER_AGENT: &str = "kube-lifecycle/1.33";

/// Event reasons, as kubelet names them.
pub const UNHEALTHY: &str = "Unhealthy";
pub const PROBE_WARNING: &str = "ProbeWarning";
pub const KILLING: &str = "Killing";
pub const FAILED_POST_START_HOOK: &str = "FailedPostStartHook";
pub const FAILED_PRE_STOP_HOOK: &str = "FailedPreStopHook";

/// How much of a probe's output (exec) or response body (httpGet) is kept: kubelet's 10 KiB.
const MAX_OUTPUT: usize = 10 * 1024;
/// How much of an HTTP response head is read before giving up on it.
const MAX_HEAD: usize = 64 * 1024;
/// kubelet runs an errored probe up to three times before reporting it.
const MAX_PROBE_RETRIES: usize = 3;
/// kubelet's `minimumGracePeriodInSeconds`: a stopped container always gets this long after
/// SIGTERM, even when its `preStop` hook used up the grace period.
const MINIMUM_GRACE: Duration = Duration::from_secs(2);
/// Go's HTTP client follows at most ten redirects.
const MAX_REDIRECTS: usize = 10;
/// kubelet puts no limit on an httpGet `postStart` hook; a thread of ours waits on it, so
/// there is one.
const POST_START_HTTP_TIMEOUT: Duration = Duration::from_secs(120);

/// The three probes a container can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// The capitalized name kubelet's events start with.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// kubelet's result before the first probe: alive until shown otherwise, not ready, and
    /// not known to have started.
    pub fn initial(self) -> Verdict {
        match self {
            ProbeKind::Liveness => Verdict::Success,
            ProbeKind::Readiness => Verdict::Failure,
            ProbeKind::Startup => Verdict::Unknown,
        }
    }
}

/// A probe's published result (kubelet's `results.Result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
    Unknown,
}

/// What one run of a probe's action found (kubelet's `probe.Result` with its output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Passed, with something worth a `ProbeWarning` event (a redirect not followed).
    Warning(String),
    /// Failed; the output is what the `Unhealthy` event says.
    Failure(String),
    /// The probe could not be run at all (kubelet's `probe.Unknown`); it is reported but not
    /// counted.
    Error(String),
}

/// What a probe or hook does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A command run in the container (exec probes have `$(VAR)` expanded already).
    Exec(Vec<String>),
    HttpGet(HttpGet),
    /// A TCP connection that opens.
    TcpSocket {
        host: String,
        port: Result<u16, String>,
    },
    /// gRPC health checks, which this agent does not speak yet.
    Grpc,
    /// Hooks only: wait.
    Sleep(Duration),
    /// A handler kubelet cannot run (none given, or tcpSocket in a hook): kubelet's message.
    Invalid(String),
}

/// An httpGet probe or hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    pub https: bool,
    pub host: String,
    /// The port, or kubelet's error for a name the container does not declare.
    pub port: Result<u16, String>,
    /// The path as written (with its query, if any).
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// When a probe runs and when its result changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive successes that make a failed probe pass (always 1 but for readiness).
    pub success: u32,
    /// Consecutive failures that make a passing probe fail.
    pub failure: u32,
}

/// One probe of a container, with kubelet's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
    /// The probe's own `terminationGracePeriodSeconds`, which replaces the pod's when this
    /// probe's failure kills the container.
    pub termination_grace: Option<Duration>,
}

impl ProbeSpec {
    /// The probe as kubelet runs it; `pod_host` is where network probes without a `host` go.
    pub fn new(kind: ProbeKind, probe: &Probe, container: &Container, pod_host: &str) -> Self {
        let seconds = |value: Option<i32>, default: i32, minimum: i32| {
            Duration::from_secs(value.unwrap_or(default).max(minimum) as u64)
        };
        let positive = |value: Option<i32>, default: i32| value.unwrap_or(default).max(1) as u32;
        ProbeSpec {
            action: probe_action(probe, container, pod_host),
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            period: seconds(probe.period_seconds, 10, 1),
            timeout: seconds(probe.timeout_seconds, 1, 1),
            thresholds: Thresholds {
                // The API refuses anything but 1 for liveness and startup probes.
                success: match kind {
                    ProbeKind::Readiness => positive(probe.success_threshold, 1),
                    ProbeKind::Liveness | ProbeKind::Startup => 1,
                },
                failure: positive(probe.failure_threshold, 3),
            },
            termination_grace: probe
                .termination_grace_period_seconds
                .filter(|_| kind != ProbeKind::Readiness)
                .map(|s| Duration::from_secs(s.max(0) as u64)),
        }
    }
}

fn probe_action(probe: &Probe, container: &Container, pod_host: &str) -> Action {
    if let Some(exec) = &probe.exec {
        // kubelet expands $(VAR) in exec probes against the container's literal env values
        // only (`ExpandContainerCommandOnlyStatic`).
        let env: Vec<String> = container
            .env
            .iter()
            .flatten()
            .filter(|var| var.value_from.is_none())
            .map(|var| format!("{}={}", var.name, var.value.as_deref().unwrap_or_default()))
            .collect();
        let command = exec.command.clone().unwrap_or_default();
        Action::Exec(
            command
                .iter()
                .map(|arg| crate::env::expand(arg, &env))
                .collect(),
        )
    } else if let Some(get) = &probe.http_get {
        Action::HttpGet(http_get(get, container, pod_host))
    } else if let Some(tcp) = &probe.tcp_socket {
        Action::TcpSocket {
            host: tcp
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| pod_host.to_owned()),
            port: resolve_port(&tcp.port, container),
        }
    } else if probe.grpc.is_some() {
        Action::Grpc
    } else {
        Action::Invalid("missing probe handler".into())
    }
}

fn hook_action(handler: &LifecycleHandler, container: &Container, pod_host: &str) -> Action {
    if let Some(exec) = &handler.exec {
        Action::Exec(exec.command.clone().unwrap_or_default())
    } else if let Some(get) = &handler.http_get {
        Action::HttpGet(http_get(get, container, pod_host))
    } else if let Some(sleep) = &handler.sleep {
        Action::Sleep(Duration::from_secs(sleep.seconds.max(0) as u64))
    } else {
        Action::Invalid(format!("Cannot run handler: invalid handler: {handler:?}"))
    }
}

fn http_get(
    get: &k8s_openapi::api::core::v1::HTTPGetAction,
    container: &Container,
    pod_host: &str,
) -> HttpGet {
    HttpGet {
        https: get
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("https")),
        host: get
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_host.to_owned()),
        port: resolve_port(&get.port, container),
        path: get.path.clone().unwrap_or_default(),
        headers: get
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    }
}

/// kubelet's `ResolveContainerPort`: a number, or the name of one of the container's ports
/// (or a number written as a string), with Go's error messages.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            let declared = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| i64::from(p.container_port));
            match declared {
                Some(n) => n,
                None => name.parse::<i64>().map_err(|_| {
                    format!("strconv.Atoi: parsing {}: invalid syntax", go_quote(name))
                })?,
            }
        }
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// Where one probe stands: kubelet's prober worker, without its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeState {
    /// No probe counted yet: the kind's initial result stands.
    Initial,
    /// Probing. `published` is what the worker sees; `last` and `run` the streak of equal
    /// results that may change it.
    Probing {
        published: Verdict,
        last: Verdict,
        run: u32,
    },
    /// A liveness or startup probe failed `failureThreshold` times: the container is to be
    /// killed, and this probe stops (a new container gets a new prober).
    Failed,
    /// The startup probe passed: the container has started, and this probe stops.
    Succeeded,
}

impl ProbeState {
    /// The result the worker sees in this state.
    pub fn published(self, kind: ProbeKind) -> Verdict {
        match self {
            ProbeState::Initial => kind.initial(),
            ProbeState::Probing { published, .. } => published,
            ProbeState::Failed => Verdict::Failure,
            ProbeState::Succeeded => Verdict::Success,
        }
    }

    /// Counts one probe that `passed` (or not). Errored probes are not counted at all.
    pub fn step(self, kind: ProbeKind, thresholds: Thresholds, passed: bool) -> ProbeState {
        let (published, last, run) = match self {
            ProbeState::Initial => (kind.initial(), None, 0),
            ProbeState::Probing {
                published,
                last,
                run,
            } => (published, Some(last), run),
            ProbeState::Failed | ProbeState::Succeeded => return self,
        };
        let result = if passed {
            Verdict::Success
        } else {
            Verdict::Failure
        };
        let run = if last == Some(result) { run + 1 } else { 1 };
        let threshold = if passed {
            thresholds.success
        } else {
            thresholds.failure
        };
        if run < threshold {
            return ProbeState::Probing {
                published,
                last: result,
                run,
            };
        }
        match (kind, result) {
            (ProbeKind::Liveness | ProbeKind::Startup, Verdict::Failure) => ProbeState::Failed,
            (ProbeKind::Startup, Verdict::Success) => ProbeState::Succeeded,
            _ => ProbeState::Probing {
                published: result,
                last: result,
                run,
            },
        }
    }
}

/// What a container's hooks and probes found, as the worker reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeResults {
    /// The `postStart` hook finished (or there is none to run): until then the container is
    /// still being created, as kubelet reports it.
    pub post_started: bool,
    /// kubelet's `started`: the startup probe passed, or there is none.
    pub started: bool,
    /// The readiness probe passes (true without one). Counts only once started.
    pub ready: bool,
}

/// Something kubelet records as an event on the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event_type: EventType,
    pub reason: &'static str,
    pub message: String,
}

pub type Notices = mpsc::UnboundedSender<Notice>;

fn notify(notices: &Notices, event_type: EventType, reason: &'static str, message: String) {
    // The receiver only goes away with the container's lifecycle: nothing to tell then.
    let _ = notices.send(Notice {
        event_type,
        reason,
        message,
    });
}

/// What a command run in the container produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a command did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    /// It could not start (containerd's words, which kubelet shows).
    Start(String),
    /// It ran past its timeout and was killed.
    Timeout,
}

/// What a network probe does once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// Nothing: connecting is the probe (tcpSocket).
    Connect,
    /// Sends an HTTP request (over TLS without verification when `tls`) and reads the
    /// response.
    Http { request: Vec<u8>, tls: bool },
}

/// Why a network probe got no answer, in the words of Go's `net` package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// Connecting failed: `dial tcp 127.0.0.1:8080: connect: connection refused`.
    Dial(String),
    /// No (complete) response head within the timeout.
    Timeout,
    /// The connection broke or ended before a response (`EOF`).
    Broken(String),
}

/// How probes and hooks reach a container. The real one goes through the runtime and the
/// pod's network namespace; tests use a recording fake.
pub trait ContainerAccess: Send + Sync + 'static {
    /// Runs `args` in the container. With a `timeout`, the command is killed when it passes.
    /// Cancel-safe: dropping the future ends the command's exec session.
    fn exec(
        &self,
        args: &[String],
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<ExecOutput, ExecError>> + Send;

    /// Connects to `host:port` from the pod's network, performs `exchange`, and returns what
    /// came back (at most a response head and [`MAX_OUTPUT`] bytes of body), all within
    /// `timeout`.
    fn connect(
        &self,
        host: &str,
        port: u16,
        exchange: Exchange,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, NetError>> + Send;

    /// Stops the container: SIGTERM, then SIGKILL once `grace` has passed (at once when it is
    /// zero). Returns when it has ended; failures are logged.
    fn stop(&self, grace: Duration) -> impl Future<Output = ()> + Send;
}

/// Runs a probe's action once.
pub async fn run_probe<A: ContainerAccess>(
    access: &A,
    action: &Action,
    timeout: Duration,
) -> Outcome {
    match action {
        Action::Exec(command) => match access.exec(command, Some(timeout)).await {
            Ok(output) => {
                let mut combined = output.stdout;
                combined.extend_from_slice(&output.stderr);
                combined.truncate(MAX_OUTPUT);
                let text = String::from_utf8_lossy(&combined).into_owned();
                if output.exit_code == 0 {
                    Outcome::Success
                } else {
                    Outcome::Failure(text)
                }
            }
            Err(ExecError::Timeout) => Outcome::Failure(format!(
                "command {} timed out",
                go_quote(&command.join(" "))
            )),
            Err(ExecError::Start(why)) => Outcome::Failure(why),
        },
        Action::HttpGet(get) => http_probe(access, get, timeout).await,
        Action::TcpSocket { host, port } => {
            let port = match port {
                Ok(port) => *port,
                Err(e) => return Outcome::Error(e.clone()),
            };
            match access.connect(host, port, Exchange::Connect, timeout).await {
                Ok(_) => Outcome::Success,
                Err(NetError::Dial(why) | NetError::Broken(why)) => Outcome::Failure(why),
                Err(NetError::Timeout) => {
                    Outcome::Failure(format!("dial tcp {}: i/o timeout", host_port(host, port)))
                }
            }
        }
        Action::Grpc => {
            Outcome::Error("gRPC probes are not supported by this capstan agent".into())
        }
        Action::Invalid(message) => Outcome::Error(message.clone()),
        Action::Sleep(_) => Outcome::Error("sleep is not a probe handler".into()),
    }
}

/// kubelet's `runProbeWithRetries`: an errored probe is tried again, up to three times.
async fn run_probe_with_retries<A: ContainerAccess>(
    access: &A,
    action: &Action,
    timeout: Duration,
) -> Outcome {
    let mut outcome = Outcome::Error(String::new());
    for _ in 0..MAX_PROBE_RETRIES {
        outcome = run_probe(access, action, timeout).await;
        if !matches!(outcome, Outcome::Error(_)) {
            break;
        }
    }
    outcome
}

/// kubelet's `DoHTTPProbe`: 2xx passes, redirects on the same host are followed, one to
/// another host passes with a warning, anything else fails with the status code only (the
/// body is never shown, as it may hold secrets).
async fn http_probe<A: ContainerAccess>(access: &A, get: &HttpGet, timeout: Duration) -> Outcome {
    let port = match &get.port {
        Ok(port) => *port,
        Err(e) => return Outcome::Error(e.clone()),
    };
    let deadline = Instant::now() + timeout;
    let mut target = HttpTarget {
        https: get.https,
        host: get.host.clone(),
        port,
        path: request_target(&get.path),
    };
    for _ in 0..=MAX_REDIRECTS {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let response =
            match http_exchange(access, &target, &get.headers, PROBE_USER_AGENT, remaining).await {
                Ok(response) => response,
                Err(why) => return Outcome::Failure(why),
            };
        match response.status {
            200..=299 => return Outcome::Success,
            301 | 302 | 303 | 307 | 308 => {
                match response
                    .location
                    .as_deref()
                    .and_then(|l| target.redirect(l))
                {
                    Some(next) if next.host == target.host => target = next,
                    _ => return Outcome::Warning(redirect_warning(&response.body)),
                }
            }
            300..=399 => return Outcome::Warning(redirect_warning(&response.body)),
            code => {
                return Outcome::Failure(format!("HTTP probe failed with statuscode: {code}"));
            }
        }
    }
    Outcome::Failure(format!(
        "Get {}: stopped after {MAX_REDIRECTS} redirects",
        go_quote(&target.url())
    ))
}

fn redirect_warning(body: &[u8]) -> String {
    format!(
        "Probe terminated redirects, Response body: {}",
        String::from_utf8_lossy(body)
    )
}

/// One request and its response, or Go's client error (`Get "url": ...`).
async fn http_exchange<A: ContainerAccess>(
    access: &A,
    target: &HttpTarget,
    headers: &[(String, String)],
    user_agent: &str,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let failed = |why: &str| format!("Get {}: {why}", go_quote(&target.url()));
    if timeout.is_zero() {
        return Err(failed(CLIENT_TIMEOUT));
    }
    let exchange = Exchange::Http {
        request: target.request(headers, user_agent),
        tls: target.https,
    };
    match access
        .connect(&target.host, target.port, exchange, timeout)
        .await
    {
        Ok(bytes) => parse_response(&bytes).map_err(|why| failed(&why)),
        Err(NetError::Dial(why) | NetError::Broken(why)) => Err(failed(&why)),
        Err(NetError::Timeout) => Err(failed(CLIENT_TIMEOUT)),
    }
}

const CLIENT_TIMEOUT: &str =
    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)";

/// Where an HTTP request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpTarget {
    https: bool,
    host: String,
    port: u16,
    /// The request target: an absolute path with its query.
    path: String,
}

impl HttpTarget {
    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!(
            "{scheme}://{}{}",
            host_port(&self.host, self.port),
            self.path
        )
    }

    /// The request as Go's client sends it for kubelet: `Host` is the URL's unless the
    /// headers set one, kubelet adds `User-Agent` and `Accept: */*` unless set (an empty
    /// `Accept` removes it), and connections are not kept alive.
    fn request(&self, headers: &[(String, String)], user_agent: &str) -> Vec<u8> {
        let named = |name: &'static str| {
            headers
                .iter()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let host = named("Host")
            .next()
            .map_or_else(|| host_port(&self.host, self.port), str::to_owned);
        let mut request = format!("GET {} HTTP/1.1\r\nHost: {host}\r\n", self.path);
        if named("User-Agent").next().is_none() {
            request.push_str(&format!("User-Agent: {user_agent}\r\n"));
        }
        if named("Accept").next().is_none() {
            request.push_str("Accept: */*\r\n");
        }
        for (name, value) in headers {
            let empty_accept = name.eq_ignore_ascii_case("Accept") && value.is_empty();
            if !name.eq_ignore_ascii_case("Host") && !empty_accept {
                request.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        request.push_str("Connection: close\r\n\r\n");
        request.into_bytes()
    }

    /// Where a `Location` header points, relative to this target.
    fn redirect(&self, location: &str) -> Option<HttpTarget> {
        let absolute = |https: bool, rest: &str| {
            let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
            let (host, port) = split_authority(authority, if https { 443 } else { 80 })?;
            Some(HttpTarget {
                https,
                host,
                port,
                path: path.to_owned(),
            })
        };
        if let Some(rest) = location.strip_prefix("http://") {
            absolute(false, rest)
        } else if let Some(rest) = location.strip_prefix("https://") {
            absolute(true, rest)
        } else if let Some(rest) = location.strip_prefix("//") {
            absolute(self.https, rest)
        } else if location.starts_with('/') {
            Some(HttpTarget {
                path: location.to_owned(),
                ..self.clone()
            })
        } else {
            let path = self.path.split('?').next().unwrap_or("/");
            let directory = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            Some(HttpTarget {
                path: format!("{directory}{location}"),
                ..self.clone()
            })
        }
    }
}

/// `host[:port]` of a URL, IPv6 addresses in brackets.
fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((authority.to_owned(), default_port)),
    }
}

/// `host:port` as Go writes it (`[::1]:80` for IPv6).
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The request target of a probe's `path`: `/` when empty, always absolute.
fn request_target(path: &str) -> String {
    if path.is_empty() {
        "/".into()
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// What matters of an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpResponse {
    status: u16,
    location: Option<String>,
    /// At most [`MAX_OUTPUT`] bytes of it.
    body: Vec<u8>,
}

/// Where the response head ends (after its blank line).
fn head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// The status code and headers (lower-cased names) of a response head.
fn parse_head(head: &[u8]) -> Result<(u16, HashMap<String, String>), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let malformed = || {
        format!(
            "net/http: HTTP/1.x transport connection broken: malformed HTTP response {}",
            go_quote(status_line)
        )
    };
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/")) {
        return Err(malformed());
    }
    let status = parts
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..1000).contains(code))
        .ok_or_else(malformed)?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Ok((status, headers))
}

/// Whether `buffer` holds a whole response (or as much of it as is kept), so that reading
/// can stop before the server closes the connection.
fn response_complete(buffer: &[u8]) -> bool {
    let Some(end) = head_end(buffer) else {
        return buffer.len() >= MAX_HEAD;
    };
    let body = &buffer[end..];
    if body.len() >= MAX_OUTPUT {
        return true;
    }
    let Ok((status, headers)) = parse_head(&buffer[..end]) else {
        return true;
    };
    if status < 200 || status == 204 || status == 304 {
        return true;
    }
    if headers
        .get("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        return body.ends_with(b"0\r\n\r\n");
    }
    match headers.get("content-length").and_then(|l| l.parse().ok()) {
        Some(length) => body.len() >= length,
        None => false,
    }
}

fn parse_response(buffer: &[u8]) -> Result<HttpResponse, String> {
    let Some(end) = head_end(buffer) else {
        return Err(if buffer.is_empty() {
            "EOF".into()
        } else {
            "unexpected EOF".into()
        });
    };
    let (status, headers) = parse_head(&buffer[..end])?;
    let mut body = buffer[end..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    } else if let Some(length) = headers.get("content-length").and_then(|l| l.parse().ok()) {
        body.truncate(length);
    }
    body.truncate(MAX_OUTPUT);
    Ok(HttpResponse {
        status,
        location: headers.get("location").cloned(),
        body,
    })
}

/// Decodes a chunked body as far as it goes.
fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = chunked.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&chunked[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        let data = &chunked[line_end + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&data[..size.min(data.len())]);
        if data.len() < size + 2 {
            break;
        }
        chunked = &data[size + 2..];
    }
    body
}

/// Runs a hook. The error is kubelet's message for the failure, which kubelet logs but does
/// not put in events (it may hold secrets).
pub async fn run_hook<A: ContainerAccess>(
    access: &A,
    hook: &Action,
    who: &HookSubject,
    http_timeout: Duration,
) -> Result<(), String> {
    let HookSubject { container, pod } = who;
    match hook {
        Action::Exec(command) => {
            let failed = |error: String, output: &[u8]| {
                format!(
                    "Exec lifecycle hook ([{}]) for Container {} in Pod {} failed - error: {error}, message: {}",
                    command.join(" "),
                    go_quote(container),
                    go_quote(pod),
                    go_quote(&String::from_utf8_lossy(output)),
                )
            };
            match access.exec(command, None).await {
                Ok(output) if output.exit_code == 0 => Ok(()),
                Ok(output) => {
                    let error = format!(
                        "command '{}' exited with {}: {}",
                        command.join(" "),
                        output.exit_code,
                        String::from_utf8_lossy(&output.stderr)
                    );
                    let mut combined = output.stdout;
                    combined.extend_from_slice(&output.stderr);
                    Err(failed(error, &combined))
                }
                Err(ExecError::Start(why)) => Err(failed(why, b"")),
                Err(ExecError::Timeout) => Err(failed("command timed out".into(), b"")),
            }
        }
        Action::HttpGet(get) => {
            let failed = |error: String| {
                format!(
                    "HTTP lifecycle hook ({}) for Container {} in Pod {} failed - error: {error}",
                    get.path,
                    go_quote(container),
                    go_quote(pod),
                )
            };
            let port = get.port.clone().map_err(failed)?;
            let target = HttpTarget {
                https: get.https,
                host: get.host.clone(),
                port,
                path: request_target(&get.path),
            };
            // Only a failed request fails the hook: kubelet ignores the status code.
            http_exchange(
                access,
                &target,
                &get.headers,
                LIFECYCLE_USER_AGENT,
                http_timeout,
            )
            .await
            .map(|_| ())
            .map_err(failed)
        }
        Action::Sleep(duration) => {
            tokio::time::sleep(*duration).await;
            Ok(())
        }
        Action::Invalid(message) => Err(message.clone()),
        Action::TcpSocket { .. } | Action::Grpc => {
            Err(format!("Cannot run handler: invalid handler: {hook:?}"))
        }
    }
}

/// Who a hook runs for, in the words of kubelet's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSubject {
    pub container: String,
    /// kubelet's `format.Pod`: `name_namespace(uid)`.
    pub pod: String,
}

/// Stops a container as kubelet's `killContainer` does: its `preStop` hook first, for at most
/// the grace period, then SIGTERM with what remains of it (never less than two seconds), then
/// SIGKILL. A zero grace period kills at once, without the hook.
pub async fn stop_container<A: ContainerAccess>(
    access: &A,
    pre_stop: Option<&Action>,
    who: &HookSubject,
    grace: Duration,
    notices: &Notices,
) {
    if grace.is_zero() {
        access.stop(grace).await;
        return;
    }
    let started = Instant::now();
    if let Some(hook) = pre_stop {
        match tokio::time::timeout(grace, run_hook(access, hook, who, grace)).await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                tracing::info!("preStop hook: {message}");
                // kubelet keeps the message out of the event so that secrets don't leak.
                notify(
                    notices,
                    EventType::Warning,
                    FAILED_PRE_STOP_HOOK,
                    "PreStopHook failed".into(),
                );
            }
            Err(_) => tracing::info!(
                "the preStop hook of container {} in pod {} did not complete in {}s",
                who.container,
                who.pod,
                grace.as_secs()
            ),
        }
    }
    let remaining = grace.saturating_sub(started.elapsed()).max(MINIMUM_GRACE);
    access.stop(remaining).await;
}

/// Everything a container's lifecycle needs from its pod and spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecyclePlan {
    pub subject: HookSubject,
    pub post_start: Option<Action>,
    pub pre_stop: Option<Action>,
    pub startup: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
    pub readiness: Option<ProbeSpec>,
    /// The pod's `terminationGracePeriodSeconds` (30 by default).
    pub termination_grace: Duration,
    /// Whether a container its probe killed is started again (restart policy not Never).
    pub restarts: bool,
}

impl LifecyclePlan {
    /// The plan for `container` of `pod`. Init containers get hooks but no probes, as
    /// kubelet's. Network probes without a `host` go to the pod: `127.0.0.1` inside its
    /// network namespace, or the node's address for a hostNetwork pod.
    pub fn new(pod: &Pod, container: &Container, init: bool, node_ip: &str) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_host = if spec.host_network.unwrap_or(false) {
            node_ip
        } else {
            "127.0.0.1"
        };
        let lifecycle = container.lifecycle.as_ref();
        let probe = |kind: ProbeKind, probe: &Option<Probe>| {
            probe
                .as_ref()
                .filter(|_| !init)
                .map(|p| ProbeSpec::new(kind, p, container, pod_host))
        };
        let meta = &pod.metadata;
        LifecyclePlan {
            subject: HookSubject {
                container: container.name.clone(),
                pod: format!(
                    "{}_{}({})",
                    meta.name.as_deref().unwrap_or_default(),
                    meta.namespace.as_deref().unwrap_or("default"),
                    meta.uid.as_deref().unwrap_or_default()
                ),
            },
            post_start: lifecycle
                .and_then(|l| l.post_start.as_ref())
                .map(|h| hook_action(h, container, pod_host)),
            pre_stop: lifecycle
                .and_then(|l| l.pre_stop.as_ref())
                .map(|h| hook_action(h, container, pod_host)),
            startup: probe(ProbeKind::Startup, &container.startup_probe),
            liveness: probe(ProbeKind::Liveness, &container.liveness_probe),
            readiness: probe(ProbeKind::Readiness, &container.readiness_probe),
            termination_grace: Duration::from_secs(
                spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64,
            ),
            restarts: crate::status::restart_policy(pod) != "Never",
        }
    }

    /// Whether there is anything to run while the container runs.
    pub fn is_idle(&self) -> bool {
        self.post_start.is_none()
            && self.startup.is_none()
            && self.liveness.is_none()
            && self.readiness.is_none()
    }

    /// The results before any hook or probe ran; `post_start` says whether the hook is to run
    /// (it is not for a container adopted after an agent restart).
    pub fn initial_results(&self, post_start: bool) -> ProbeResults {
        ProbeResults {
            post_started: !(post_start && self.post_start.is_some()),
            started: self.startup.is_none(),
            ready: self.readiness.is_none(),
        }
    }
}

/// Where a container's lifecycle publishes its results, waking the pod worker on changes.
pub struct Publisher {
    results: watch::Sender<ProbeResults>,
    wake: Arc<Notify>,
}

impl Publisher {
    pub fn new(initial: ProbeResults, wake: Arc<Notify>) -> (Self, watch::Receiver<ProbeResults>) {
        let (results, receiver) = watch::channel(initial);
        (Publisher { results, wake }, receiver)
    }

    fn update(&self, change: impl FnOnce(&mut ProbeResults)) {
        let changed = self.results.send_if_modified(|results| {
            let before = *results;
            change(results);
            *results != before
        });
        if changed {
            self.wake.notify_one();
        }
    }

    fn current(&self) -> ProbeResults {
        *self.results.borrow()
    }
}

/// Runs one probe of a running container until it fails for good: returns only when a
/// liveness or startup probe failed `failureThreshold` times (the container must be killed).
/// Probes start `initialDelaySeconds` after `started_at` and run every `periodSeconds`;
/// liveness and readiness wait for the startup probe and run at once when it passed.
pub async fn run_prober<A: ContainerAccess>(
    kind: ProbeKind,
    spec: &ProbeSpec,
    started_at: Instant,
    access: &A,
    publisher: &Publisher,
    notices: &Notices,
) {
    tokio::time::sleep_until(started_at + spec.initial_delay).await;
    let mut state = ProbeState::Initial;
    let mut next = Instant::now();
    loop {
        if kind != ProbeKind::Startup && !publisher.current().started {
            let mut results = publisher.results.subscribe();
            // The sender lives as long as `publisher`: this only ends once started.
            let _ = results.wait_for(|r| r.started).await;
            next = Instant::now();
        }
        tokio::time::sleep_until(next).await;
        let outcome = run_probe_with_retries(access, &spec.action, spec.timeout).await;
        let name = kind.name();
        let passed = match outcome {
            Outcome::Success => Some(true),
            Outcome::Warning(output) => {
                let message = format!("{name} probe warning: {output}");
                notify(notices, EventType::Warning, PROBE_WARNING, message);
                Some(true)
            }
            Outcome::Failure(output) => {
                let message = format!("{name} probe failed: {output}");
                notify(notices, EventType::Warning, UNHEALTHY, message);
                Some(false)
            }
            Outcome::Error(error) => {
                let message =
                    format!("{name} probe errored and resulted in unknown state: {error}");
                notify(notices, EventType::Warning, UNHEALTHY, message);
                None
            }
        };
        // Like kubelet's ticker: a probe slower than its period skips the ticks it missed.
        let now = Instant::now();
        next += spec.period;
        while next <= now {
            next += spec.period;
        }
        let Some(passed) = passed else { continue };
        state = state.step(kind, spec.thresholds, passed);
        let verdict = state.published(kind);
        match kind {
            ProbeKind::Startup => publisher.update(|r| r.started = verdict == Verdict::Success),
            ProbeKind::Readiness => publisher.update(|r| r.ready = verdict == Verdict::Success),
            ProbeKind::Liveness => {}
        }
        match state {
            ProbeState::Failed => return,
            ProbeState::Succeeded => std::future::pending::<()>().await,
            ProbeState::Initial | ProbeState::Probing { .. } => {}
        }
    }
}

/// Runs a container's lifecycle: its `postStart` hook (when `post_start`), then its probes.
/// Returns once it killed the container (the hook or a liveness or startup probe failed);
/// otherwise runs as long as the container does (the worker drops it then).
pub async fn supervise<A: ContainerAccess>(
    plan: &LifecyclePlan,
    access: &A,
    started_at: Instant,
    post_start: bool,
    publisher: &Publisher,
    notices: &Notices,
) {
    if post_start && let Some(hook) = &plan.post_start {
        if let Err(message) = run_hook(access, hook, &plan.subject, POST_START_HTTP_TIMEOUT).await {
            tracing::info!("postStart hook: {message}");
            // kubelet keeps the message out of the event so that secrets don't leak.
            notify(
                notices,
                EventType::Warning,
                FAILED_POST_START_HOOK,
                "PostStartHook failed".into(),
            );
            kill(
                plan,
                access,
                FAILED_POST_START_HOOK.into(),
                plan.termination_grace,
                notices,
            )
            .await;
            return;
        }
        publisher.update(|r| r.post_started = true);
    }
    let probe = |kind: ProbeKind, spec: &Option<ProbeSpec>| {
        let spec = spec.clone();
        async move {
            match &spec {
                Some(spec) => {
                    run_prober(kind, spec, started_at, access, publisher, notices).await;
                    spec.termination_grace
                }
                None => std::future::pending().await,
            }
        }
    };
    let (kind, probe_grace) = tokio::select! {
        grace = probe(ProbeKind::Startup, &plan.startup) => (ProbeKind::Startup, grace),
        grace = probe(ProbeKind::Liveness, &plan.liveness) => (ProbeKind::Liveness, grace),
        grace = probe(ProbeKind::Readiness, &plan.readiness) => (ProbeKind::Readiness, grace),
    };
    let mut message = format!(
        "Container {} failed {} probe",
        plan.subject.container,
        kind.name().to_ascii_lowercase()
    );
    if plan.restarts {
        message.push_str(", will be restarted");
    }
    kill(
        plan,
        access,
        message,
        probe_grace.unwrap_or(plan.termination_grace),
        notices,
    )
    .await;
}

/// kubelet's `killContainer` for a container that failed: the `Killing` event with why, then
/// the stop with its `preStop` hook.
async fn kill<A: ContainerAccess>(
    plan: &LifecyclePlan,
    access: &A,
    message: String,
    grace: Duration,
    notices: &Notices,
) {
    notify(notices, EventType::Normal, KILLING, message);
    stop_container(
        access,
        plan.pre_stop.as_ref(),
        &plan.subject,
        grace,
        notices,
    )
    .await;
}

/// A running container's hooks and probes, in a task of their own (stopped when dropped).
pub struct ContainerLifecycle {
    id: String,
    results: watch::Receiver<ProbeResults>,
    task: tokio::task::JoinHandle<()>,
}

impl ContainerLifecycle {
    /// Starts the lifecycle of container `id` (attempt of `container`), which started at
    /// `started_at`. `post_start` says whether its `postStart` hook is still to run (not for
    /// a container adopted after an agent restart). `None` when there is nothing to run.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        shared: &Arc<Shared>,
        pod: &Pod,
        container: &Container,
        init: bool,
        id: &str,
        started_at: jiff::Timestamp,
        post_start: bool,
        wake: Arc<Notify>,
    ) -> Option<Self> {
        let plan = LifecyclePlan::new(pod, container, init, &shared.host_ip);
        if plan.is_idle() {
            return None;
        }
        let (publisher, results) = Publisher::new(plan.initial_results(post_start), wake);
        let access = RuntimeAccess::new(shared, pod, id);
        let notices = record_notices(shared, pod, container_field_path(init, &container.name));
        let since = jiff::Timestamp::now()
            .duration_since(started_at)
            .unsigned_abs();
        let started_at = Instant::now()
            .checked_sub(since)
            .unwrap_or_else(Instant::now);
        let task = tokio::spawn(async move {
            supervise(&plan, &access, started_at, post_start, &publisher, &notices).await;
        });
        Some(ContainerLifecycle {
            id: id.to_owned(),
            results,
            task,
        })
    }

    /// The runtime id of the container it watches.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn results(&self) -> ProbeResults {
        *self.results.borrow()
    }
}

impl Drop for ContainerLifecycle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records the notices sent to the returned sender as events on the container, in order,
/// until every sender is gone.
pub fn record_notices(shared: &Arc<Shared>, pod: &Pod, field_path: Option<String>) -> Notices {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Notice>();
    let shared = Arc::clone(shared);
    let pod = pod.clone();
    tokio::spawn(async move {
        while let Some(notice) = receiver.recv().await {
            shared
                .events
                .record(
                    &pod,
                    field_path.clone(),
                    notice.event_type,
                    notice.reason,
                    notice.message,
                )
                .await;
        }
    });
    sender
}

/// The real [`ContainerAccess`]: commands through the runtime's exec-shim, connections from
/// the pod's network namespace.
pub struct RuntimeAccess {
    runtime: capstan_runtime::Runtime,
    shim: PathBuf,
    id: String,
    /// The pod's network namespace; `None` for a hostNetwork pod.
    netns: Option<PathBuf>,
}

impl RuntimeAccess {
    pub fn new(shared: &Shared, pod: &Pod, id: &str) -> Self {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        RuntimeAccess {
            runtime: shared.runtime.clone(),
            shim: shared.shim.clone(),
            id: id.to_owned(),
            netns: (!host_network).then(|| shared.pods_dir.join(uid).join("ns").join("net")),
        }
    }
}

impl ContainerAccess for RuntimeAccess {
    async fn exec(
        &self,
        args: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ExecError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let request = ExecRequest {
            args: args.to_vec(),
            tty: false,
            size_file: None,
        };
        let dir = self.runtime.dir(&self.id);
        let spawn = capstan_runtime::exec::spawn(&self.shim, &dir, &request);
        let spawned = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, spawn)
                .await
                .map_err(|_| ExecError::Timeout)?,
            None => spawn.await,
        };
        let mut child = spawned.map_err(ExecError::Start)?;
        drop(child.stdin.take());
        let pid = child.id();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let collect = async {
            let (stdout, stderr) = tokio::join!(read_limited(stdout), read_limited(stderr));
            let status = child.wait().await;
            (stdout, stderr, status)
        };
        let (stdout, stderr, status) = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, collect).await {
                Ok(collected) => collected,
                Err(_) => {
                    // The command runs as a child of the exec-shim: both go.
                    if let Some(pid) = pid {
                        kill_process_tree(pid);
                    }
                    return Err(ExecError::Timeout);
                }
            },
            None => collect.await,
        };
        let exit_code = match status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(9))
            }
            Err(e) => return Err(ExecError::Start(format!("waiting for the command: {e}"))),
        };
        Ok(ExecOutput {
            exit_code,
            stdout,
            stderr,
        })
    }

    async fn connect(
        &self,
        host: &str,
        port: u16,
        exchange: Exchange,
        timeout: Duration,
    ) -> Result<Vec<u8>, NetError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let netns = self.netns.clone();
        let host = host.to_owned();
        // A thread that entered the pod's network namespace must never run anything else:
        // each probe gets a fresh one, which ends with it (its socket timeouts bound it).
        std::thread::Builder::new()
            .name("capstan-probe".into())
            .spawn(move || {
                let answer = exchange_blocking(netns.as_deref(), &host, port, exchange, timeout);
                let _ = sender.send(answer);
            })
            .map_err(|e| NetError::Dial(format!("starting the probe thread: {e}")))?;
        receiver
            .await
            .unwrap_or_else(|_| Err(NetError::Broken("the probe thread ended".into())))
    }

    async fn stop(&self, grace: Duration) {
        if let Err(e) = self.runtime.stop(&self.id, grace).await {
            tracing::warn!("stopping container {}: {e}", self.id);
        }
    }
}

/// Reads all of `reader`, keeping the first [`MAX_OUTPUT`] bytes (the rest is drained so that
/// the command never blocks on a full pipe).
async fn read_limited(reader: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut reader) = reader else {
        return kept;
    };
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// SIGKILLs `root` and every process descending from it.
fn kill_process_tree(root: u32) {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if let Some(parent) = parent {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut tree = vec![root];
    let mut index = 0;
    while let Some(&pid) = tree.get(index) {
        tree.extend(children.get(&pid).into_iter().flatten());
        index += 1;
    }
    for pid in tree.into_iter().rev() {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A network probe on the calling thread, which enters `netns` first.
fn exchange_blocking(
    netns: Option<&Path>,
    host: &str,
    port: u16,
    exchange: Exchange,
    timeout: Duration,
) -> Result<Vec<u8>, NetError> {
    if let Some(path) = netns {
        let namespace = std::fs::File::open(path).map_err(|e| {
            NetError::Dial(format!(
                "opening the pod's network namespace {}: {e}",
                path.display()
            ))
        })?;
        nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::Dial(format!("entering the pod's network namespace: {e}")))?;
    }
    let deadline = std::time::Instant::now() + timeout;
    let address = resolve(host, port)?;
    let stream = TcpStream::connect_timeout(&address, timeout).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "i/o timeout".into(),
            _ => format!("connect: {}", errno_text(&e)),
        };
        NetError::Dial(format!("dial tcp {address}: {why}"))
    })?;
    let Exchange::Http { request, tls } = exchange else {
        return Ok(Vec::new());
    };
    let _ = stream.set_nodelay(true);
    let control = stream
        .try_clone()
        .map_err(|e| NetError::Broken(e.to_string()))?;
    if tls {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| NetError::Broken(format!("tls: {e}")))?;
        let connection =
            rustls::ClientConnection::new(crate::tls::unverified_client_config(), name)
                .map_err(|e| NetError::Broken(format!("tls: {e}")))?;
        let mut stream = rustls::StreamOwned::new(connection, stream);
        converse(&mut stream, &control, &request, deadline)
    } else {
        let mut stream = stream;
        converse(&mut stream, &control, &request, deadline)
    }
}

/// Resolves `host` (an address, or a name) for a dial.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, NetError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| NetError::Dial(format!("dial tcp: lookup {host}: {e}")))?
        .next()
        .ok_or_else(|| NetError::Dial(format!("dial tcp: lookup {host}: no such host")))
}

/// Sends `request` and reads the response until it is complete, the connection ends, or the
/// deadline passes.
fn converse(
    stream: &mut (impl Read + Write),
    control: &TcpStream,
    request: &[u8],
    deadline: std::time::Instant,
) -> Result<Vec<u8>, NetError> {
    let remaining = || {
        deadline
            .checked_duration_since(std::time::Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(NetError::Timeout)
    };
    let broken = |what: &str, e: &std::io::Error| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => NetError::Timeout,
        _ if e.raw_os_error().is_some() => NetError::Broken(format!("{what}: {}", errno_text(e))),
        _ => NetError::Broken(e.to_string()),
    };
    let _ = control.set_write_timeout(Some(remaining()?));
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|e| broken("write", &e))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    while !response_complete(&response) {
        let Ok(wait) = remaining() else {
            // Out of time: a response head is enough for a verdict.
            if head_end(&response).is_some() {
                break;
            }
            return Err(NetError::Timeout);
        };
        let _ = control.set_read_timeout(Some(wait));
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A TLS peer that closes without close_notify: the response is what came.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) if head_end(&response).is_some() => {
                tracing::debug!("reading a probe response body: {e}");
                break;
            }
            Err(e) => return Err(broken("read", &e)),
        }
    }
    if response.is_empty() {
        return Err(NetError::Broken("EOF".into()));
    }
    Ok(response)
}

/// An OS error as Go prints it (`connection refused`, `no route to host`).
fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code)
            .desc()
            .to_ascii_lowercase(),
        None => e.to_string(),
    }
}

/// Go's `%q`, close enough for the messages kubelet formats with it.
fn go_quote(text: &str) -> String {
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;

    /// What the fake was asked to do, and when (virtual time since the test began).
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Exec {
            at: Duration,
            args: Vec<String>,
            timeout: Option<Duration>,
        },
        Connect {
            at: Duration,
            address: String,
            request: Option<String>,
        },
        Stop {
            at: Duration,
            grace: Duration,
        },
    }

    type ExecAnswer = Box<dyn FnMut(&[String]) -> Result<ExecOutput, ExecError> + Send>;
    type NetAnswer = Box<dyn FnMut(&Exchange) -> Result<Vec<u8>, NetError> + Send>;

    /// A container that answers as told, on virtual time.
    struct Fake {
        began: Instant,
        calls: Mutex<Vec<Call>>,
        exec_answer: Mutex<ExecAnswer>,
        /// How long each command takes.
        exec_takes: Duration,
        net_answers: Mutex<VecDeque<Result<Vec<u8>, NetError>>>,
        net_answer: Mutex<NetAnswer>,
    }

    impl Fake {
        fn new() -> Self {
            Fake {
                began: Instant::now(),
                calls: Mutex::default(),
                exec_answer: Mutex::new(Box::new(|_| Ok(ExecOutput::default()))),
                exec_takes: Duration::ZERO,
                net_answers: Mutex::default(),
                net_answer: Mutex::new(Box::new(|_| Ok(Vec::new()))),
            }
        }

        fn exec_answers(
            self,
            answer: impl FnMut(&[String]) -> Result<ExecOutput, ExecError> + Send + 'static,
        ) -> Self {
            *self.exec_answer.lock().unwrap() = Box::new(answer);
            self
        }

        fn net_answers(
            self,
            answer: impl FnMut(&Exchange) -> Result<Vec<u8>, NetError> + Send + 'static,
        ) -> Self {
            *self.net_answer.lock().unwrap() = Box::new(answer);
            self
        }

        /// Answers for the next connections, in order, before `net_answers` takes over.
        fn then_net(self, answer: Result<&str, NetError>) -> Self {
            self.net_answers
                .lock()
                .unwrap()
                .push_back(answer.map(|a| a.as_bytes().to_vec()));
            self
        }

        fn at(&self) -> Duration {
            self.began.elapsed()
        }

        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }

        fn exec_times(&self) -> Vec<Duration> {
            self.calls()
                .into_iter()
                .filter_map(|c| match c {
                    Call::Exec { at, .. } => Some(at),
                    _ => None,
                })
                .collect()
        }
    }

    impl ContainerAccess for Fake {
        async fn exec(
            &self,
            args: &[String],
            timeout: Option<Duration>,
        ) -> Result<ExecOutput, ExecError> {
            self.calls.lock().unwrap().push(Call::Exec {
                at: self.at(),
                args: args.to_vec(),
                timeout,
            });
            tokio::time::sleep(self.exec_takes).await;
            (self.exec_answer.lock().unwrap())(args)
        }

        async fn connect(
            &self,
            host: &str,
            port: u16,
            exchange: Exchange,
            _timeout: Duration,
        ) -> Result<Vec<u8>, NetError> {
            let request = match &exchange {
                Exchange::Connect => None,
                Exchange::Http { request, .. } => {
                    Some(String::from_utf8_lossy(request).into_owned())
                }
            };
            self.calls.lock().unwrap().push(Call::Connect {
                at: self.at(),
                address: host_port(host, port),
                request,
            });
            let queued = self.net_answers.lock().unwrap().pop_front();
            queued.unwrap_or_else(|| (self.net_answer.lock().unwrap())(&exchange))
        }

        async fn stop(&self, grace: Duration) {
            self.calls.lock().unwrap().push(Call::Stop {
                at: self.at(),
                grace,
            });
        }
    }

    fn exited(code: i32, stdout: &str) -> Result<ExecOutput, ExecError> {
        Ok(ExecOutput {
            exit_code: code,
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        })
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn millis(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).unwrap()
    }

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
            "spec": {"containers": containers, "terminationGracePeriodSeconds": 10},
        }))
        .unwrap()
    }

    fn plan_of(container_json: serde_json::Value) -> LifecyclePlan {
        let pod = pod(json!([container_json]));
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        LifecyclePlan::new(&pod, &container, false, "10.0.0.9")
    }

    fn exec_probe(command: &str, timing: serde_json::Value) -> serde_json::Value {
        let mut probe = json!({"exec": {"command": ["sh", "-c", command]}});
        for (key, value) in timing.as_object().unwrap() {
            probe[key] = value.clone();
        }
        probe
    }

    fn notices() -> (Notices, mpsc::UnboundedReceiver<Notice>) {
        mpsc::unbounded_channel()
    }

    fn drain(receiver: &mut mpsc::UnboundedReceiver<Notice>) -> Vec<(&'static str, String)> {
        let mut seen = Vec::new();
        while let Ok(notice) = receiver.try_recv() {
            seen.push((notice.reason, notice.message));
        }
        seen
    }

    fn new_publisher(plan: &LifecyclePlan, post_start: bool) -> (Publisher, Arc<Notify>) {
        let wake = Arc::new(Notify::new());
        let (publisher, _) = Publisher::new(plan.initial_results(post_start), Arc::clone(&wake));
        (publisher, wake)
    }

    #[test]
    fn probe_state_follows_kubelets_thresholds() {
        use ProbeKind::*;
        use ProbeState::*;
        use Verdict::*;
        let t = |success, failure| Thresholds { success, failure };
        let probing = |published, last, run| Probing {
            published,
            last,
            run,
        };
        // (kind, thresholds, state before, probe passed, state after)
        let cases = [
            // Readiness starts unready and passes after successThreshold successes in a row.
            (
                Readiness,
                t(1, 3),
                Initial,
                true,
                probing(Success, Success, 1),
            ),
            (
                Readiness,
                t(2, 3),
                Initial,
                true,
                probing(Failure, Success, 1),
            ),
            (
                Readiness,
                t(2, 3),
                probing(Failure, Success, 1),
                true,
                probing(Success, Success, 2),
            ),
            (
                Readiness,
                t(2, 3),
                probing(Failure, Success, 1),
                false,
                probing(Failure, Failure, 1),
            ),
            // ... and turns unready after failureThreshold failures in a row.
            (
                Readiness,
                t(1, 3),
                probing(Success, Success, 5),
                false,
                probing(Success, Failure, 1),
            ),
            (
                Readiness,
                t(1, 3),
                probing(Success, Failure, 2),
                false,
                probing(Failure, Failure, 3),
            ),
            (
                Readiness,
                t(1, 3),
                probing(Success, Failure, 2),
                true,
                probing(Success, Success, 1),
            ),
            (
                Readiness,
                t(1, 1),
                Initial,
                false,
                probing(Failure, Failure, 1),
            ),
            // Liveness is alive until failureThreshold failures in a row, then fails for good.
            (
                Liveness,
                t(1, 3),
                Initial,
                false,
                probing(Success, Failure, 1),
            ),
            (
                Liveness,
                t(1, 3),
                probing(Success, Failure, 2),
                false,
                Failed,
            ),
            (
                Liveness,
                t(1, 3),
                probing(Success, Failure, 2),
                true,
                probing(Success, Success, 1),
            ),
            (Liveness, t(1, 1), Initial, false, Failed),
            (Liveness, t(1, 3), Failed, true, Failed),
            // Startup is unknown until it passes once (then stops) or fails failureThreshold times.
            (
                Startup,
                t(1, 3),
                Initial,
                false,
                probing(Unknown, Failure, 1),
            ),
            (
                Startup,
                t(1, 3),
                probing(Unknown, Failure, 2),
                true,
                Succeeded,
            ),
            (
                Startup,
                t(1, 3),
                probing(Unknown, Failure, 2),
                false,
                Failed,
            ),
            (Startup, t(1, 3), Succeeded, false, Succeeded),
        ];
        for (kind, thresholds, before, passed, after) in cases {
            assert_eq!(
                before.step(kind, thresholds, passed),
                after,
                "{kind:?} {thresholds:?} {before:?} passed={passed}"
            );
        }
        assert_eq!(Initial.published(Liveness), Success);
        assert_eq!(Initial.published(Readiness), Failure);
        assert_eq!(Initial.published(Startup), Unknown);
        assert_eq!(Failed.published(Startup), Failure);
    }

    #[test]
    fn probe_specs_take_kubelets_defaults_and_resolve_named_ports() {
        let c = container(json!({
            "name": "main",
            "ports": [{"name": "http", "containerPort": 8080}],
            "env": [{"name": "FILE", "value": "/tmp/ok"}, {"name": "FROM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        }));
        let probe = |value: serde_json::Value| -> Probe { serde_json::from_value(value).unwrap() };
        let spec = ProbeSpec::new(
            ProbeKind::Liveness,
            &probe(json!({"tcpSocket": {"port": "http"}, "successThreshold": 4})),
            &c,
            "127.0.0.1",
        );
        assert_eq!(spec.period, secs(10));
        assert_eq!(spec.timeout, secs(1));
        assert_eq!(spec.initial_delay, Duration::ZERO);
        assert_eq!(
            spec.thresholds,
            Thresholds {
                success: 1,
                failure: 3
            }
        );
        assert_eq!(
            spec.action,
            Action::TcpSocket {
                host: "127.0.0.1".into(),
                port: Ok(8080)
            }
        );

        let spec = ProbeSpec::new(
            ProbeKind::Readiness,
            &probe(json!({
                "httpGet": {"port": "metrics", "host": "10.1.1.1", "path": "/healthz"},
                "successThreshold": 2, "failureThreshold": 5, "periodSeconds": 3,
                "timeoutSeconds": 4, "initialDelaySeconds": 6,
            })),
            &c,
            "127.0.0.1",
        );
        assert_eq!(
            spec.thresholds,
            Thresholds {
                success: 2,
                failure: 5
            }
        );
        assert_eq!(
            (spec.period, spec.timeout, spec.initial_delay),
            (secs(3), secs(4), secs(6))
        );
        let Action::HttpGet(get) = &spec.action else {
            panic!("{:?}", spec.action)
        };
        assert_eq!(get.host, "10.1.1.1");
        assert_eq!(
            get.port,
            Err("strconv.Atoi: parsing \"metrics\": invalid syntax".into())
        );

        // Exec probes see the container's literal env values, not the ones from the API.
        let spec = ProbeSpec::new(
            ProbeKind::Startup,
            &probe(
                json!({"exec": {"command": ["cat", "$(FILE)", "$(FROM)"]}, "terminationGracePeriodSeconds": 1}),
            ),
            &c,
            "127.0.0.1",
        );
        assert_eq!(
            spec.action,
            Action::Exec(vec!["cat".into(), "/tmp/ok".into(), "$(FROM)".into()])
        );
        assert_eq!(spec.termination_grace, Some(secs(1)));

        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &c),
            Err("invalid port number: 70000".into())
        );
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &c), Ok(81));
    }

    #[test]
    fn plans_send_network_probes_to_the_pod_and_give_init_containers_no_probes() {
        let plan = plan_of(json!({
            "name": "main",
            "readinessProbe": {"tcpSocket": {"port": 80}},
            "lifecycle": {"preStop": {"sleep": {"seconds": 3}}, "postStart": {"tcpSocket": {"port": 80}}},
        }));
        assert_eq!(plan.subject.pod, "web_default(u-1)");
        assert_eq!(plan.termination_grace, secs(10));
        assert!(plan.restarts);
        assert_eq!(plan.pre_stop, Some(Action::Sleep(secs(3))));
        assert!(matches!(plan.post_start, Some(Action::Invalid(_))));
        assert!(matches!(
            &plan.readiness,
            Some(ProbeSpec { action: Action::TcpSocket { host, .. }, .. }) if host == "127.0.0.1"
        ));

        let mut host_network =
            pod(json!([{"name": "main", "readinessProbe": {"tcpSocket": {"port": 80}}}]));
        host_network.spec.as_mut().unwrap().host_network = Some(true);
        host_network.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        let c = host_network.spec.as_ref().unwrap().containers[0].clone();
        let plan = LifecyclePlan::new(&host_network, &c, false, "10.0.0.9");
        assert!(matches!(
            &plan.readiness,
            Some(ProbeSpec { action: Action::TcpSocket { host, .. }, .. }) if host == "10.0.0.9"
        ));
        assert!(!plan.restarts);
        let init = LifecyclePlan::new(&host_network, &c, true, "10.0.0.9");
        assert!(init.readiness.is_none() && init.is_idle());
    }

    #[test]
    fn http_requests_carry_kubelets_headers() {
        let target = HttpTarget {
            https: false,
            host: "127.0.0.1".into(),
            port: 8080,
            path: request_target("healthz?full=1"),
        };
        assert_eq!(target.url(), "http://127.0.0.1:8080/healthz?full=1");
        let plain = String::from_utf8(target.request(&[], PROBE_USER_AGENT)).unwrap();
        assert_eq!(
            plain,
            "GET /healthz?full=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let headers = [
            ("Host".to_string(), "example.com".to_string()),
            ("Accept".to_string(), String::new()),
            ("X-Probe".to_string(), "yes".to_string()),
        ];
        let custom = String::from_utf8(target.request(&headers, LIFECYCLE_USER_AGENT)).unwrap();
        assert_eq!(
            custom,
            "GET /healthz?full=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: kube-lifecycle/1.33\r\nX-Probe: yes\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(request_target(""), "/");
        assert_eq!(host_port("::1", 80), "[::1]:80");
    }

    #[test]
    fn redirects_resolve_against_the_request() {
        let target = HttpTarget {
            https: false,
            host: "127.0.0.1".into(),
            port: 8080,
            path: "/a/b?x=1".into(),
        };
        let to = |location: &str| target.redirect(location).map(|t| t.url());
        assert_eq!(to("/c").as_deref(), Some("http://127.0.0.1:8080/c"));
        assert_eq!(to("c").as_deref(), Some("http://127.0.0.1:8080/a/c"));
        assert_eq!(
            to("https://example.com/x").as_deref(),
            Some("https://example.com:443/x")
        );
        assert_eq!(
            to("http://[::1]:9000").as_deref(),
            Some("http://[::1]:9000/")
        );
    }

    #[test]
    fn http_responses_are_parsed_and_known_complete() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert!(response_complete(whole));
        assert!(!response_complete(&whole[..whole.len() - 1]));
        assert_eq!(
            parse_response(whole).unwrap(),
            HttpResponse {
                status: 200,
                location: None,
                body: b"hello".to_vec()
            }
        );
        let chunked = b"HTTP/1.1 302 Found\r\nLocation: /next\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert!(response_complete(chunked));
        let response = parse_response(chunked).unwrap();
        assert_eq!(response.status, 302);
        assert_eq!(response.location.as_deref(), Some("/next"));
        assert_eq!(response.body, b"abcde");
        // Without a length the body ends with the connection.
        assert!(!response_complete(b"HTTP/1.0 200 OK\r\n\r\nsome"));
        assert!(response_complete(b"HTTP/1.1 204 No Content\r\n\r\n"));
        assert_eq!(
            parse_response(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err("net/http: HTTP/1.x transport connection broken: malformed HTTP response \"SSH-2.0-OpenSSH\"".into())
        );
        assert_eq!(parse_response(b""), Err("EOF".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn probe_outcomes_are_worded_as_kubelets() {
        let http = |path: &str| {
            Action::HttpGet(HttpGet {
                https: false,
                host: "127.0.0.1".into(),
                port: Ok(8080),
                path: path.into(),
                headers: Vec::new(),
            })
        };
        let fake = Fake::new()
            .then_net(Ok("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 6\r\n\r\nsecret"))
            .then_net(Err(NetError::Dial(
                "dial tcp 127.0.0.1:8080: connect: connection refused".into(),
            )))
            .then_net(Err(NetError::Timeout))
            .then_net(Ok("HTTP/1.1 301 Moved\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n"))
            .then_net(Ok("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
            .then_net(Ok(
                "HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\nContent-Length: 4\r\n\r\nmove",
            ))
            .then_net(Err(NetError::Dial(
                "dial tcp 127.0.0.1:8080: connect: connection refused".into(),
            )))
            .exec_answers(|args| match args[0].as_str() {
                "fail" => exited(1, "not yet\n"),
                "slow" => Err(ExecError::Timeout),
                _ => Err(ExecError::Start("OCI runtime exec failed: exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH: unknown".into())),
            });
        let t = secs(1);
        assert_eq!(
            run_probe(&fake, &http("/a"), t).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(
            run_probe(&fake, &http("/a"), t).await,
            Outcome::Failure("Get \"http://127.0.0.1:8080/a\": dial tcp 127.0.0.1:8080: connect: connection refused".into())
        );
        assert_eq!(
            run_probe(&fake, &http(""), t).await,
            Outcome::Failure("Get \"http://127.0.0.1:8080/\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)".into())
        );
        // A redirect on the same host is followed, one elsewhere passes with a warning.
        assert_eq!(run_probe(&fake, &http("/a"), t).await, Outcome::Success);
        assert_eq!(
            run_probe(&fake, &http("/a"), t).await,
            Outcome::Warning("Probe terminated redirects, Response body: move".into())
        );
        let tcp = Action::TcpSocket {
            host: "127.0.0.1".into(),
            port: Ok(8080),
        };
        assert_eq!(
            run_probe(&fake, &tcp, t).await,
            Outcome::Failure("dial tcp 127.0.0.1:8080: connect: connection refused".into())
        );
        let exec = |command: &str| Action::Exec(vec![command.into(), "now".into()]);
        assert_eq!(
            run_probe(&fake, &exec("fail"), t).await,
            Outcome::Failure("not yet\n".into())
        );
        assert_eq!(
            run_probe(&fake, &exec("slow"), t).await,
            Outcome::Failure("command \"slow now\" timed out".into())
        );
        assert!(matches!(
            run_probe(&fake, &exec("nope"), t).await,
            Outcome::Failure(m) if m.starts_with("OCI runtime exec failed")
        ));
        assert_eq!(
            run_probe(&fake, &Action::Grpc, t).await,
            Outcome::Error("gRPC probes are not supported by this capstan agent".into())
        );
        let unnamed = Action::TcpSocket {
            host: "127.0.0.1".into(),
            port: Err("strconv.Atoi: parsing \"web\": invalid syntax".into()),
        };
        assert_eq!(
            run_probe(&fake, &unnamed, t).await,
            Outcome::Error("strconv.Atoi: parsing \"web\": invalid syntax".into())
        );
        assert!(fake.calls().iter().any(|c| matches!(
            c,
            Call::Exec { timeout: Some(t), .. } if *t == secs(1)
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_waits_its_initial_delay_and_flips_within_a_period() {
        let plan = plan_of(json!({
            "name": "main",
            "readinessProbe": exec_probe("cat /ready", json!({"initialDelaySeconds": 3, "periodSeconds": 2, "failureThreshold": 2})),
        }));
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answer = Arc::clone(&ready);
        let fake = Fake::new().exec_answers(move |_| {
            if answer.load(std::sync::atomic::Ordering::SeqCst) {
                exited(0, "")
            } else {
                exited(1, "cat: can't open '/ready': No such file or directory\n")
            }
        });
        let (publisher, wake) = new_publisher(&plan, true);
        let results = publisher.results.subscribe();
        let (sender, mut events) = notices();
        let spec = plan.readiness.clone().unwrap();
        let started = Instant::now();
        let prober = run_prober(
            ProbeKind::Readiness,
            &spec,
            started,
            &fake,
            &publisher,
            &sender,
        );
        tokio::pin!(prober);
        let _ = tokio::time::timeout_at(started + millis(2900), prober.as_mut()).await;
        assert!(fake.exec_times().is_empty(), "probed before the delay");
        assert!(!results.borrow().ready);

        let _ = tokio::time::timeout_at(started + millis(3100), prober.as_mut()).await;
        assert_eq!(fake.exec_times(), [secs(3)]);
        assert_eq!(
            drain(&mut events),
            [(
                UNHEALTHY,
                "Readiness probe failed: cat: can't open '/ready': No such file or directory\n"
                    .to_string()
            )]
        );
        ready.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = tokio::time::timeout_at(started + millis(5100), prober.as_mut()).await;
        assert!(results.borrow().ready, "ready after the next probe");
        // The worker was woken for the change.
        tokio::time::timeout(millis(1), wake.notified())
            .await
            .expect("woken");

        ready.store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = tokio::time::timeout_at(started + millis(7100), prober.as_mut()).await;
        assert!(results.borrow().ready, "one failure is below the threshold");
        let _ = tokio::time::timeout_at(started + millis(9100), prober.as_mut()).await;
        assert!(!results.borrow().ready);
        assert_eq!(fake.exec_times(), [secs(3), secs(5), secs(7), secs(9)]);
        assert_eq!(drain(&mut events).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_slower_than_its_period_skips_the_ticks_it_missed() {
        let plan = plan_of(json!({
            "name": "main",
            "readinessProbe": exec_probe("true", json!({"periodSeconds": 1, "timeoutSeconds": 5})),
        }));
        let mut fake = Fake::new();
        fake.exec_takes = millis(2500);
        let (publisher, _) = new_publisher(&plan, true);
        let (sender, _events) = notices();
        let spec = plan.readiness.clone().unwrap();
        let started = Instant::now();
        let _ = tokio::time::timeout(
            millis(6100),
            run_prober(
                ProbeKind::Readiness,
                &spec,
                started,
                &fake,
                &publisher,
                &sender,
            ),
        )
        .await;
        assert_eq!(fake.exec_times(), [secs(0), secs(3), secs(6)]);
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_kills_after_failure_threshold_with_the_probes_grace() {
        let plan = plan_of(json!({
            "name": "main",
            "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 3, "terminationGracePeriodSeconds": 5},
        }));
        let fake = Fake::new().net_answers(|_| {
            Err(NetError::Dial(
                "dial tcp 127.0.0.1:8080: connect: connection refused".into(),
            ))
        });
        let (publisher, _) = new_publisher(&plan, true);
        let (sender, mut events) = notices();
        supervise(&plan, &fake, Instant::now(), true, &publisher, &sender).await;
        let calls = fake.calls();
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert_eq!(
            calls.last(),
            Some(&Call::Stop {
                at: secs(2),
                grace: secs(5)
            })
        );
        let failed = (
            UNHEALTHY,
            "Liveness probe failed: dial tcp 127.0.0.1:8080: connect: connection refused"
                .to_string(),
        );
        assert_eq!(
            drain(&mut events),
            [
                failed.clone(),
                failed.clone(),
                failed,
                (
                    KILLING,
                    "Container main failed liveness probe, will be restarted".to_string()
                ),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_startup_probe_kills_with_the_pods_grace_and_says_whether_it_restarts() {
        let mut never = pod(json!([{
            "name": "main",
            "startupProbe": exec_probe("exit 1", json!({"periodSeconds": 2, "failureThreshold": 2})),
        }]));
        never.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        let c = never.spec.as_ref().unwrap().containers[0].clone();
        let plan = LifecyclePlan::new(&never, &c, false, "10.0.0.9");
        let fake = Fake::new().exec_answers(|_| exited(1, ""));
        let (publisher, _) = new_publisher(&plan, true);
        let (sender, mut events) = notices();
        supervise(&plan, &fake, Instant::now(), true, &publisher, &sender).await;
        assert_eq!(
            fake.calls().last(),
            Some(&Call::Stop {
                at: secs(2),
                grace: secs(10)
            })
        );
        let seen = drain(&mut events);
        assert_eq!(
            seen.last(),
            Some(&(KILLING, "Container main failed startup probe".to_string()))
        );
        assert_eq!(seen[0], (UNHEALTHY, "Startup probe failed: ".to_string()));
        assert!(!publisher.current().started);
    }

    #[tokio::test(start_paused = true)]
    async fn the_startup_probe_holds_liveness_and_readiness_back_until_it_passes() {
        let plan = plan_of(json!({
            "name": "main",
            "startupProbe": exec_probe("startup", json!({"periodSeconds": 2, "failureThreshold": 10})),
            "livenessProbe": exec_probe("liveness", json!({"periodSeconds": 10})),
            "readinessProbe": exec_probe("readiness", json!({"periodSeconds": 10})),
        }));
        let startup_runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let runs = Arc::clone(&startup_runs);
        let fake = Fake::new().exec_answers(move |args| {
            // The startup probe passes from its third run (at 4 s) on.
            if args[2] == "startup" {
                let run = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return exited(if run >= 2 { 0 } else { 1 }, "");
            }
            exited(0, "")
        });
        let (publisher, _) = new_publisher(&plan, true);
        let results = publisher.results.subscribe();
        let (sender, _events) = notices();
        let started = Instant::now();
        let lifecycle = supervise(&plan, &fake, started, true, &publisher, &sender);
        tokio::pin!(lifecycle);
        let probed = || -> Vec<(String, Duration)> {
            fake.calls()
                .into_iter()
                .filter_map(|c| match c {
                    Call::Exec { at, args, .. } => Some((args[2].clone(), at)),
                    _ => None,
                })
                .collect()
        };
        let _ = tokio::time::timeout_at(started + millis(3900), lifecycle.as_mut()).await;
        assert_eq!(
            probed(),
            [("startup".into(), secs(0)), ("startup".into(), secs(2))]
        );
        assert_eq!(
            *results.borrow(),
            ProbeResults {
                post_started: true,
                started: false,
                ready: false
            }
        );

        // Once it passes, it stops, and the other two run at once.
        let _ = tokio::time::timeout_at(started + millis(14100), lifecycle.as_mut()).await;
        let mut after = probed().split_off(2);
        after.sort();
        assert_eq!(
            after,
            [
                ("liveness".into(), secs(4)),
                ("liveness".into(), secs(14)),
                ("readiness".into(), secs(4)),
                ("readiness".into(), secs(14)),
                ("startup".into(), secs(4)),
            ]
        );
        assert_eq!(
            *results.borrow(),
            ProbeResults {
                post_started: true,
                started: true,
                ready: true
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_post_start_hook_kills_the_container_with_kubelets_events() {
        let plan = plan_of(json!({
            "name": "main",
            "readinessProbe": exec_probe("true", json!({})),
            "lifecycle": {
                "postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}},
                "preStop": {"exec": {"command": ["cleanup"]}},
            },
        }));
        let fake = Fake::new().exec_answers(|args| match args[0].as_str() {
            "sh" => Ok(ExecOutput {
                exit_code: 3,
                stdout: b"out".to_vec(),
                stderr: b"err".to_vec(),
            }),
            _ => exited(0, ""),
        });
        let (publisher, _) = new_publisher(&plan, true);
        assert!(!publisher.current().post_started);
        let (sender, mut events) = notices();
        supervise(&plan, &fake, Instant::now(), true, &publisher, &sender).await;
        assert_eq!(
            drain(&mut events),
            [
                (FAILED_POST_START_HOOK, "PostStartHook failed".to_string()),
                (KILLING, "FailedPostStartHook".to_string()),
            ]
        );
        let calls = fake.calls();
        assert!(matches!(&calls[1], Call::Exec { args, .. } if args == &["cleanup"]));
        assert_eq!(
            calls[2],
            Call::Stop {
                at: Duration::ZERO,
                grace: secs(10)
            }
        );
        assert!(
            !publisher.current().post_started,
            "never counted as started"
        );

        let message = run_hook(
            &fake,
            plan.post_start.as_ref().unwrap(),
            &plan.subject,
            secs(1),
        )
        .await
        .unwrap_err();
        assert_eq!(
            message,
            "Exec lifecycle hook ([sh -c exit 3]) for Container \"main\" in Pod \"web_default(u-1)\" failed - error: command 'sh -c exit 3' exited with 3: err, message: \"outerr\""
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_start_hook_runs_before_the_probes_and_an_adopted_container_skips_it() {
        let plan = plan_of(json!({
            "name": "main",
            "readinessProbe": exec_probe("probe", json!({})),
            "lifecycle": {"postStart": {"sleep": {"seconds": 3}}},
        }));
        let fake = Fake::new();
        let (publisher, _) = new_publisher(&plan, true);
        let (sender, _events) = notices();
        let _ = tokio::time::timeout(
            millis(3500),
            supervise(&plan, &fake, Instant::now(), true, &publisher, &sender),
        )
        .await;
        assert_eq!(fake.exec_times(), [secs(3)]);
        assert!(publisher.current().post_started && publisher.current().ready);

        let fake = Fake::new();
        let (publisher, _) = new_publisher(&plan, false);
        assert!(publisher.current().post_started);
        let _ = tokio::time::timeout(
            millis(500),
            supervise(&plan, &fake, Instant::now(), false, &publisher, &sender),
        )
        .await;
        assert_eq!(fake.exec_times(), [secs(0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn http_hooks_fail_only_when_the_request_fails() {
        let plan = plan_of(json!({
            "name": "main",
            "lifecycle": {"postStart": {"httpGet": {"path": "/hook", "port": 8080}}},
        }));
        let hook = plan.post_start.clone().unwrap();
        let fake = Fake::new()
            .then_net(Ok("HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"))
            .then_net(Err(NetError::Dial(
                "dial tcp 127.0.0.1:8080: connect: connection refused".into(),
            )));
        assert_eq!(run_hook(&fake, &hook, &plan.subject, secs(1)).await, Ok(()));
        assert_eq!(
            run_hook(&fake, &hook, &plan.subject, secs(1)).await,
            Err("HTTP lifecycle hook (/hook) for Container \"main\" in Pod \"web_default(u-1)\" failed - error: Get \"http://127.0.0.1:8080/hook\": dial tcp 127.0.0.1:8080: connect: connection refused".into())
        );
        assert!(matches!(
            &fake.calls()[0],
            Call::Connect { request: Some(r), .. } if r.contains("User-Agent: kube-lifecycle/1.33\r\n")
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn pre_stop_runs_within_the_grace_period_and_the_stop_gets_what_remains() {
        let subject = HookSubject {
            container: "main".into(),
            pod: "web_default(u-1)".into(),
        };
        let (sender, mut events) = notices();
        // (hook, grace, when the stop comes, the grace it gets)
        let cases = [
            (Some(Action::Sleep(secs(2))), secs(5), secs(2), secs(3)),
            // A hook that outlasts the grace period is left behind, with two seconds more.
            (Some(Action::Sleep(secs(60))), secs(5), secs(5), secs(2)),
            (None, secs(7), Duration::ZERO, secs(7)),
            (None, secs(1), Duration::ZERO, secs(2)),
            // No grace at all: no hook, SIGKILL at once.
            (
                Some(Action::Sleep(secs(2))),
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO,
            ),
        ];
        for (hook, grace, at, remaining) in cases {
            let fake = Fake::new();
            stop_container(&fake, hook.as_ref(), &subject, grace, &sender).await;
            assert_eq!(
                fake.calls(),
                [Call::Stop {
                    at,
                    grace: remaining
                }],
                "{hook:?} {grace:?}"
            );
        }
        assert!(drain(&mut events).is_empty());

        let fake = Fake::new().exec_answers(|_| exited(1, ""));
        let failing = Action::Exec(vec!["false".into()]);
        stop_container(&fake, Some(&failing), &subject, secs(30), &sender).await;
        assert_eq!(
            drain(&mut events),
            [(FAILED_PRE_STOP_HOOK, "PreStopHook failed".to_string())]
        );
        assert_eq!(fake.calls().len(), 2);
    }
}
