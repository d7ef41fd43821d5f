//! Keeps the proxy in step with the API: watches Ingresses, IngressClasses, Services,
//! EndpointSlices and TLS Secrets in all namespaces and swaps in a new [`Snapshot`] after
//! every burst of changes.

use crate::watch::Cache;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::ListParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::proxy::serve;
use super::routes::{RouteTable, select_ingresses};
use super::tls::{CertTable, TLS_SECRET_TYPE};
use super::{IngressConfig, IngressError, SharedSnapshot, Snapshot};

/// Changes closer together than this are folded into one rebuild.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// Serves Ingresses of class `capstan` as `config` says and keeps the routes current until
/// the watch streams end (they don't: kube's watcher retries with backoff). Fails only if a
/// listener can't be bound.
pub async fn run(client: Client, config: IngressConfig) -> Result<(), IngressError> {
    let snapshot = SharedSnapshot::default();
    let mut server = serve(&config, snapshot.clone()).await?;
    tracing::info!(
        "ingress proxy on {} (HTTP) and {} (HTTPS)",
        server.http_addr(),
        server.https_addr()
    );
    tokio::select! {
        () = watch(client, snapshot) => {}
        () = server.wait() => {}
    }
    Ok(())
}

/// Watches the five kinds and stores a new snapshot in `snapshot` after each change
/// (debounced by [`DEBOUNCE`]). Nothing is stored before every initial list is complete:
/// the proxy never serves a half-listed cluster (it answers 404 until the first snapshot).
pub async fn watch(client: Client, snapshot: SharedSnapshot) {
    let secret_selector = tls_secret_selector(&client).await;
    let config = watcher::Config::default;
    let ingresses = watcher::watcher(Api::<Ingress>::all(client.clone()), config())
        .default_backoff()
        .map(|e| Change::Ingress(Box::new(e)));
    let classes = watcher::watcher(Api::<IngressClass>::all(client.clone()), config())
        .default_backoff()
        .map(|e| Change::Class(Box::new(e)));
    let services = watcher::watcher(Api::<Service>::all(client.clone()), config())
        .default_backoff()
        .map(|e| Change::Service(Box::new(e)));
    let slices = watcher::watcher(Api::<EndpointSlice>::all(client.clone()), config())
        .default_backoff()
        .map(|e| Change::Slice(Box::new(e)));
    let mut secret_config = config();
    if let Some(selector) = secret_selector {
        secret_config = secret_config.fields(selector);
    }
    let secrets = watcher::watcher(Api::<Secret>::all(client), secret_config)
        .default_backoff()
        .map(|e| Change::Secret(Box::new(e)));
    let mut changes = stream::select_all([
        ingresses.boxed(),
        classes.boxed(),
        services.boxed(),
        slices.boxed(),
        secrets.boxed(),
    ]);

    let mut caches = Caches::default();
    let mut certs: Option<Arc<CertTable>> = None;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let change = match deadline {
            Some(at) => tokio::select! {
                change = changes.next() => change,
                () = tokio::time::sleep_until(at) => {
                    deadline = None;
                    if caches.listed() {
                        snapshot.store(caches.build(&mut certs));
                    }
                    continue;
                }
            },
            None => changes.next().await,
        };
        let Some(change) = change else {
            return;
        };
        if caches.apply(change, &mut certs) && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + DEBOUNCE);
        }
    }
}

/// `type=kubernetes.io/tls` if the API server accepts it as a field selector on Secrets (the
/// proxy then never sees other Secrets), `None` to watch all Secrets.
async fn tls_secret_selector(client: &Client) -> Option<&'static str> {
    const SELECTOR: &str = "type=kubernetes.io/tls";
    let secrets = Api::<Secret>::all(client.clone());
    match secrets
        .list_metadata(&ListParams::default().fields(SELECTOR).limit(1))
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 400 => {
            tracing::info!("ingress: field selector {SELECTOR} refused, watching all Secrets");
            None
        }
        // Any other failure is the watcher's to retry.
        _ => Some(SELECTOR),
    }
}

/// One event of any watch; boxed because objects are large and of different sizes.
enum Change {
    Ingress(Box<Result<Event<Ingress>, watcher::Error>>),
    Class(Box<Result<Event<IngressClass>, watcher::Error>>),
    Service(Box<Result<Event<Service>, watcher::Error>>),
    Slice(Box<Result<Event<EndpointSlice>, watcher::Error>>),
    Secret(Box<Result<Event<Secret>, watcher::Error>>),
}

#[derive(Default)]
struct Caches {
    ingresses: Cache<Ingress>,
    classes: Cache<IngressClass>,
    services: Cache<Service>,
    slices: Cache<EndpointSlice>,
    secrets: Cache<Secret>,
}

impl Caches {
    fn listed(&self) -> bool {
        self.ingresses.listed
            && self.classes.listed
            && self.services.listed
            && self.slices.listed
            && self.secrets.listed
    }

    /// Applies one event; whether a rebuild is due. Clears `certs` when they are stale.
    fn apply(&mut self, change: Change, certs: &mut Option<Arc<CertTable>>) -> bool {
        fn apply<K: kube::Resource>(
            cache: &mut Cache<K>,
            event: Result<Event<K>, watcher::Error>,
            kind: &str,
        ) -> bool {
            match event {
                Ok(event) => cache.apply(event),
                Err(e) => {
                    tracing::warn!("ingress: watching {kind}: {e}");
                    false
                }
            }
        }
        let (changed, certs_stale) = match change {
            Change::Ingress(e) => (apply(&mut self.ingresses, *e, "ingresses"), true),
            Change::Class(e) => (apply(&mut self.classes, *e, "ingressclasses"), true),
            Change::Service(e) => (apply(&mut self.services, *e, "services"), false),
            Change::Slice(e) => (apply(&mut self.slices, *e, "endpointslices"), false),
            Change::Secret(e) => match (*e).map(keep_tls_secrets) {
                Ok(None) => (false, false),
                Ok(Some(event)) => (apply(&mut self.secrets, Ok(event), "secrets"), true),
                Err(e) => (apply(&mut self.secrets, Err(e), "secrets"), false),
            },
        };
        if changed && certs_stale {
            *certs = None;
        }
        changed
    }

    /// The snapshot of the caches, reusing `certs` unless [`Caches::apply`] cleared them.
    fn build(&self, certs: &mut Option<Arc<CertTable>>) -> Snapshot {
        let ours = select_ingresses(
            self.ingresses.objects.values(),
            self.classes.objects.values(),
        );
        let certs = certs
            .get_or_insert_with(|| Arc::new(CertTable::build(&ours, self.secrets.objects.values())))
            .clone();
        let routes = RouteTable::build(
            &ours,
            self.services.objects.values(),
            self.slices.objects.values(),
        );
        tracing::debug!(
            "ingress: {} ingresses, {} hosts, {} certificates",
            ours.len(),
            routes.host_count(),
            certs.len()
        );
        Snapshot { routes, certs }
    }
}

/// Other Secrets (when watching all of them) are left out of the cache: an update becomes a
/// deletion (a Secret whose type changed leaves), an initial listing skips them.
fn keep_tls_secrets(event: Event<Secret>) -> Option<Event<Secret>> {
    let is_tls = |s: &Secret| s.type_.as_deref() == Some(TLS_SECRET_TYPE);
    match event {
        Event::Apply(secret) if !is_tls(&secret) => Some(Event::Delete(secret)),
        Event::InitApply(secret) if !is_tls(&secret) => None,
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        }
    }

    fn secret(name: &str, type_: &str) -> Secret {
        Secret {
            metadata: meta(name),
            type_: Some(type_.into()),
            ..Default::default()
        }
    }

    fn service(name: &str) -> Service {
        Service {
            metadata: meta(name),
            ..Default::default()
        }
    }

    /// Lists every kind empty, as the watchers' first events do.
    fn listed() -> Caches {
        let mut caches = Caches::default();
        let mut certs = None;
        for change in [
            Change::Ingress(Box::new(Ok(Event::InitDone))),
            Change::Class(Box::new(Ok(Event::InitDone))),
            Change::Service(Box::new(Ok(Event::InitDone))),
            Change::Slice(Box::new(Ok(Event::InitDone))),
        ] {
            assert!(!caches.listed());
            caches.apply(change, &mut certs);
        }
        assert!(!caches.listed(), "secrets still listing");
        caches.apply(Change::Secret(Box::new(Ok(Event::InitDone))), &mut certs);
        assert!(caches.listed());
        caches
    }

    #[test]
    fn a_relist_replaces_the_cache_only_when_done() {
        let mut cache = Cache::default();
        assert!(!cache.apply(Event::Init));
        assert!(!cache.apply(Event::InitApply(service("a"))));
        assert!(!cache.listed);
        assert!(cache.apply(Event::InitDone));
        assert_eq!(cache.objects.len(), 1);
        cache.apply(Event::Init);
        cache.apply(Event::InitApply(service("b")));
        assert_eq!(cache.objects.len(), 1, "a kept until the relist is done");
        cache.apply(Event::InitDone);
        assert!(cache.objects.contains_key(&("default".into(), "b".into())));
        assert!(!cache.objects.contains_key(&("default".into(), "a".into())));
    }

    #[test]
    fn only_tls_secrets_are_cached_and_a_secret_that_stops_being_one_leaves() {
        let mut caches = listed();
        let mut certs = None;
        let secret_event = |e| Change::Secret(Box::new(Ok(e)));
        assert!(!caches.apply(
            secret_event(Event::Apply(secret("opaque", "Opaque"))),
            &mut certs
        ));
        assert!(caches.apply(
            secret_event(Event::Apply(secret("cert", TLS_SECRET_TYPE))),
            &mut certs
        ));
        assert_eq!(caches.secrets.objects.len(), 1);
        assert!(caches.apply(
            secret_event(Event::Apply(secret("cert", "Opaque"))),
            &mut certs
        ));
        assert!(caches.secrets.objects.is_empty());

        caches.apply(secret_event(Event::Init), &mut certs);
        caches.apply(
            secret_event(Event::InitApply(secret("opaque", "Opaque"))),
            &mut certs,
        );
        caches.apply(
            secret_event(Event::InitApply(secret("cert", TLS_SECRET_TYPE))),
            &mut certs,
        );
        caches.apply(secret_event(Event::InitDone), &mut certs);
        assert_eq!(
            caches.secrets.objects.keys().collect::<Vec<_>>(),
            [&("default".to_owned(), "cert".to_owned())]
        );
    }

    #[test]
    fn certificates_are_reused_until_an_ingress_class_or_secret_changes() {
        let mut caches = listed();
        let mut certs = None;
        let first = caches.build(&mut certs).certs;
        assert!(caches.apply(
            Change::Service(Box::new(Ok(Event::Apply(service("s"))))),
            &mut certs
        ));
        let second = caches.build(&mut certs).certs;
        assert!(Arc::ptr_eq(&first, &second), "endpoint churn reuses them");
        assert!(caches.apply(
            Change::Secret(Box::new(Ok(Event::Apply(secret("c", TLS_SECRET_TYPE))))),
            &mut certs
        ));
        let third = caches.build(&mut certs).certs;
        assert!(!Arc::ptr_eq(&second, &third));
    }
}
