//! 200 concurrent HTTPS clients create, merge-patch, update (pinned to a resourceVersion) and
//! delete the same five ConfigMaps for a few seconds while one watch, started before the storm,
//! records every event. Afterwards the store must tell one consistent story:
//!
//! - every successful write is exactly one watch event, with the same resourceVersion and
//!   content, and the watch has nothing else (no gaps, no extras);
//! - each write follows from the state just before it: a create from nothing, a merge patch from
//!   its predecessor plus the patch, a pinned update only from the version it was pinned to, a
//!   delete from a live object (and from the pinned version when it had a precondition), so a
//!   409 never hid a lost update;
//! - the final state of each object is its last write.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};

use crate::harness::Cluster;

const CLIENTS: usize = 200;
const OBJECTS: usize = 5;
const STORM: Duration = Duration::from_secs(4);
const NAMESPACE_PATH: &str = "/api/v1/namespaces/default/configmaps";

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn tls_config(tls_dir: &Path) -> rustls::ClientConfig {
    let pem = |name: &str| std::fs::read(tls_dir.join(name)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem("ca.crt").as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = rustls_pemfile::certs(&mut pem("admin.crt").as_slice())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut pem("admin.key").as_slice())
        .unwrap()
        .expect("admin.key holds a key");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap()
}

/// One client with its own connection: HTTP/2 (as kubectl) or HTTP/1.1 (as many libraries).
struct Api {
    client: HttpsClient,
    base: String,
}

impl Api {
    fn new(tls: &rustls::ClientConfig, address: SocketAddr, http2: bool) -> Api {
        // Without TCP_NODELAY a lone request waits on delayed ACKs (tens of ms).
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_only();
        let connector = if http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        Api {
            client: Client::builder(TokioExecutor::new())
                .http2_only(http2)
                .build(connector),
            base: format!("https://{address}"),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = self.client.request(request).await.expect("request failed");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, value)
    }
}

fn rv(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {object}"))
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn data(object: &Value) -> Map<String, Value> {
    object["data"].as_object().cloned().unwrap_or_default()
}

/// What a successful write did, as its client saw it.
#[derive(Debug, Clone)]
enum Op {
    Create,
    MergePatch(Map<String, Value>),
    Update { pinned: i64 },
    Delete { precondition: Option<i64> },
}

#[derive(Debug, Clone)]
struct Write {
    name: String,
    op: Op,
    /// The resourceVersion answered; deletes answer a Status without one.
    revision: Option<i64>,
    uid: String,
    data: Map<String, Value>,
}

/// One watch event.
#[derive(Debug, Clone)]
struct Event {
    event_type: String,
    revision: i64,
    uid: String,
    data: Map<String, Value>,
}

#[derive(Default)]
struct Tally {
    writes: Vec<Write>,
    conflicts: usize,
    not_found: usize,
    already_exists: usize,
}

/// A small deterministic generator (xorshift), enough to mix operations.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn client_loop(api: Api, id: usize, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let tag = format!("c{id}-{n}");
        let name = format!("storm-{}", rng.below(OBJECTS as u64));
        let path = format!("{NAMESPACE_PATH}/{name}");
        match rng.below(100) {
            0..20 => {
                let body = json!({"metadata": {"name": name}, "data": {"created": tag}});
                let (status, answer) = api
                    .send(Method::POST, NAMESPACE_PATH, "application/json", Some(body))
                    .await;
                match status {
                    201 => {
                        assert_eq!(data(&answer), *json!({"created": tag}).as_object().unwrap());
                        tally.writes.push(Write {
                            name,
                            op: Op::Create,
                            revision: Some(rv(&answer)),
                            uid: uid(&answer),
                            data: data(&answer),
                        });
                    }
                    409 => tally.already_exists += 1,
                    other => panic!("create answered {other}: {answer}"),
                }
            }
            20..55 => {
                let patch = json!({format!("p-{id}"): n.to_string(), "last": tag});
                let (status, answer) = api
                    .send(
                        Method::PATCH,
                        &path,
                        "application/merge-patch+json",
                        Some(json!({"data": patch})),
                    )
                    .await;
                match status {
                    200 => tally.writes.push(Write {
                        name,
                        op: Op::MergePatch(patch.as_object().unwrap().clone()),
                        revision: Some(rv(&answer)),
                        uid: uid(&answer),
                        data: data(&answer),
                    }),
                    404 => tally.not_found += 1,
                    other => panic!("merge patch answered {other}: {answer}"),
                }
            }
            55..85 => {
                // Read, replace, PUT pinned to what was read; on 409 read again, as client-go's
                // RetryOnConflict does, a few times.
                for _ in 0..4 {
                    let (status, mut current) = api.send(Method::GET, &path, "", None).await;
                    if status == 404 {
                        tally.not_found += 1;
                        break;
                    }
                    assert_eq!(status, 200, "get answered {current}");
                    let pinned = rv(&current);
                    current["data"] = json!({"put": tag});
                    let (status, answer) = api
                        .send(Method::PUT, &path, "application/json", Some(current))
                        .await;
                    match status {
                        200 => {
                            assert_eq!(data(&answer), *json!({"put": tag}).as_object().unwrap());
                            tally.writes.push(Write {
                                name: name.clone(),
                                op: Op::Update { pinned },
                                revision: Some(rv(&answer)),
                                uid: uid(&answer),
                                data: data(&answer),
                            });
                            break;
                        }
                        409 => tally.conflicts += 1,
                        404 => {
                            tally.not_found += 1;
                            break;
                        }
                        other => panic!("update answered {other}: {answer}"),
                    }
                }
            }
            _ => {
                // Half of the deletes carry a resourceVersion precondition from a fresh read.
                let mut precondition = None;
                let mut body = None;
                if rng.below(2) == 0 {
                    let (status, current) = api.send(Method::GET, &path, "", None).await;
                    if status == 404 {
                        tally.not_found += 1;
                        continue;
                    }
                    let pinned = rv(&current);
                    precondition = Some(pinned);
                    body = Some(json!({"preconditions": {"resourceVersion": pinned.to_string()}}));
                }
                let (status, answer) = api
                    .send(Method::DELETE, &path, "application/json", body)
                    .await;
                match status {
                    200 => {
                        assert_eq!(answer["status"], "Success", "{answer}");
                        tally.writes.push(Write {
                            name,
                            op: Op::Delete { precondition },
                            revision: None,
                            uid: answer["details"]["uid"].as_str().unwrap().to_string(),
                            data: Map::new(),
                        });
                    }
                    409 => tally.conflicts += 1,
                    404 => tally.not_found += 1,
                    other => panic!("delete answered {other}: {answer}"),
                }
            }
        }
    }
    tally
}

/// Reads the watch until the ADDED event of `storm-end`; returns every event per object name.
async fn watch_until_end(
    api: Api,
    from: i64,
    ready: tokio::sync::oneshot::Sender<()>,
) -> BTreeMap<String, Vec<Event>> {
    let request = Request::builder()
        .uri(format!(
            "{}{NAMESPACE_PATH}?watch=true&resourceVersion={from}&timeoutSeconds=300",
            api.base
        ))
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = api.client.request(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    ready.send(()).unwrap();
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    let mut events: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    loop {
        let frame = body
            .frame()
            .await
            .expect("the watch ended before storm-end arrived")
            .unwrap();
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Value = serde_json::from_slice(&buffer[..end]).unwrap();
            buffer.drain(..=end);
            let event_type = line["type"].as_str().unwrap().to_string();
            assert_ne!(event_type, "ERROR", "the watch failed: {line}");
            if event_type == "BOOKMARK" {
                continue;
            }
            let object = &line["object"];
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            if name == "storm-end" {
                return events;
            }
            events.entry(name).or_default().push(Event {
                event_type,
                revision: rv(object),
                uid: uid(object),
                data: data(object),
            });
        }
    }
}

/// Checks one object's history against the writes its clients saw succeed.
fn check_history(name: &str, history: &[Event], writes: &[&Write]) {
    // Writes that answered a resourceVersion, by that version; deletes, by uid.
    let mut by_revision: HashMap<i64, &Write> = HashMap::new();
    let mut deletes: HashMap<&str, &Write> = HashMap::new();
    for write in writes {
        match write.revision {
            Some(revision) => {
                let before = by_revision.insert(revision, write);
                assert!(before.is_none(), "{name}: two writes answered {revision}");
            }
            None => {
                let before = deletes.insert(&write.uid, write);
                assert!(before.is_none(), "{name}: uid {} deleted twice", write.uid);
            }
        }
    }
    let mut previous: Option<&Event> = None;
    for event in history {
        if let Some(p) = previous {
            assert!(p.revision < event.revision, "{name}: watch out of order");
        }
        let live = previous.filter(|p| p.event_type != "DELETED");
        let write = if event.event_type == "DELETED" {
            deletes
                .remove(event.uid.as_str())
                .unwrap_or_else(|| panic!("{name}: DELETED {event:?} that no client did"))
        } else {
            by_revision
                .remove(&event.revision)
                .unwrap_or_else(|| panic!("{name}: {event:?} that no client wrote"))
        };
        assert_eq!(write.uid, event.uid, "{name}: {event:?} vs {write:?}");
        if event.event_type != "DELETED" {
            assert_eq!(write.data, event.data, "{name}: {event:?} vs {write:?}");
        }
        match &write.op {
            Op::Create => {
                assert_eq!(event.event_type, "ADDED");
                assert!(live.is_none(), "{name}: created over a live object");
            }
            Op::MergePatch(patch) => {
                assert_eq!(event.event_type, "MODIFIED");
                let base = live.unwrap_or_else(|| panic!("{name}: patch of nothing"));
                assert_eq!(base.uid, event.uid, "{name}: patch crossed incarnations");
                let mut expected = base.data.clone();
                expected.extend(patch.clone());
                assert_eq!(event.data, expected, "{name}: merge patch lost data");
            }
            Op::Update { pinned } => {
                assert_eq!(event.event_type, "MODIFIED");
                let base = live.unwrap_or_else(|| panic!("{name}: update of nothing"));
                assert_eq!(
                    base.revision, *pinned,
                    "{name}: an update pinned to {pinned} replaced {}",
                    base.revision
                );
            }
            Op::Delete { precondition } => {
                assert_eq!(event.event_type, "DELETED");
                let base = live.unwrap_or_else(|| panic!("{name}: delete of nothing"));
                assert_eq!(base.data, event.data, "{name}: a delete changed the object");
                if let Some(pinned) = precondition {
                    assert_eq!(
                        base.revision, *pinned,
                        "{name}: delete precondition ignored"
                    );
                }
            }
        }
        previous = Some(event);
    }
    assert!(
        by_revision.is_empty() && deletes.is_empty(),
        "{name}: successful writes missing from the watch: {:?} {:?}",
        by_revision.values().collect::<Vec<_>>(),
        deletes.values().collect::<Vec<_>>()
    );
}

#[test]
fn two_hundred_concurrent_clients_leave_every_history_equal_to_their_successful_writes() {
    let cluster = Cluster::start();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(storm(&cluster));
}

async fn storm(cluster: &Cluster) {
    let started = Instant::now();
    let address: SocketAddr = format!("127.0.0.1:{}", cluster.port).parse().unwrap();
    let tls = tls_config(&cluster.data_dir().join("tls"));
    let admin = Api::new(&tls, address, true);

    let (status, list) = admin.send(Method::GET, NAMESPACE_PATH, "", None).await;
    assert_eq!(status, 200);
    let from: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_until_end(
        Api::new(&tls, address, true),
        from,
        ready_tx,
    ));
    ready_rx.await.unwrap();

    let deadline = Instant::now() + STORM;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let api = Api::new(&tls, address, id % 2 == 0);
            tokio::spawn(client_loop(api, id, deadline))
        })
        .collect();
    let mut tally = Tally::default();
    for client in clients {
        let t = client.await.unwrap();
        tally.writes.extend(t.writes);
        tally.conflicts += t.conflicts;
        tally.not_found += t.not_found;
        tally.already_exists += t.already_exists;
    }

    let end = json!({"metadata": {"name": "storm-end"}});
    let (status, _) = admin
        .send(Method::POST, NAMESPACE_PATH, "application/json", Some(end))
        .await;
    assert_eq!(status, 201);
    let histories = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .expect("the watch never delivered storm-end")
        .unwrap();

    let mut writes_by_name: BTreeMap<String, Vec<&Write>> = BTreeMap::new();
    for write in &tally.writes {
        writes_by_name
            .entry(write.name.clone())
            .or_default()
            .push(write);
    }
    let mut revisions: Vec<i64> = tally.writes.iter().filter_map(|w| w.revision).collect();
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(
        revisions.len(),
        tally.writes.iter().filter(|w| w.revision.is_some()).count(),
        "two successful writes answered the same resourceVersion"
    );
    for i in 0..OBJECTS {
        let name = format!("storm-{i}");
        let history = histories.get(&name).map(Vec::as_slice).unwrap_or_default();
        let writes = writes_by_name.get(&name).cloned().unwrap_or_default();
        check_history(&name, history, &writes);

        let (status, current) = admin
            .send(Method::GET, &format!("{NAMESPACE_PATH}/{name}"), "", None)
            .await;
        match history.last() {
            Some(last) if last.event_type != "DELETED" => {
                assert_eq!(status, 200, "{name}: final state missing");
                assert_eq!(rv(&current), last.revision, "{name}: final resourceVersion");
                assert_eq!(uid(&current), last.uid, "{name}: final uid");
                assert_eq!(data(&current), last.data, "{name}: final data");
            }
            _ => assert_eq!(status, 404, "{name}: deleted, yet {current}"),
        }
    }
    let count = |f: fn(&Op) -> bool| tally.writes.iter().filter(|w| f(&w.op)).count();
    eprintln!(
        "{CLIENTS} clients, {:.1} s storm: {} successful writes ({} creates, {} merge patches, \
         {} pinned updates, {} deletes), {} conflicts, {} not found, {} already exists; \
         test took {:.1} s",
        STORM.as_secs_f64(),
        tally.writes.len(),
        count(|o| matches!(o, Op::Create)),
        count(|o| matches!(o, Op::MergePatch(_))),
        count(|o| matches!(o, Op::Update { .. })),
        count(|o| matches!(o, Op::Delete { .. })),
        tally.conflicts,
        tally.not_found,
        tally.already_exists,
        started.elapsed().as_secs_f64()
    );
    assert!(tally.writes.len() > 100, "too few writes to mean anything");
    assert!(tally.conflicts > 0, "the storm never raced");
}
