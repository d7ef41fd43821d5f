//! Keeps the records in step with the API: watches Services and EndpointSlices in all
//! namespaces and swaps in a freshly built [`Records`] after every burst of changes.

use crate::watch::Cache;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::records::Records;
use super::server::serve;
use super::{Config, DnsError, SharedRecords};

/// Changes closer together than this are folded into one rebuild.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// Serves cluster DNS as `config` says and keeps it current until the watch streams end
/// (they don't: kube's watcher retries with backoff). Fails only if the sockets can't be
/// bound or the cluster domain is invalid.
pub async fn run(client: Client, config: Config) -> Result<(), DnsError> {
    let domain = config.domain()?;
    let records = SharedRecords::new(Records::empty(&domain));
    let mut server = serve(
        config.listen,
        records.clone(),
        config.upstreams.clone(),
        config.upstream_timeout,
    )
    .await?;
    tracing::info!("cluster DNS for {domain} on {}", server.local_addr());
    tokio::select! {
        () = watch(client, domain, records) => {}
        () = server.wait() => {}
    }
    Ok(())
}

/// Watches Services and EndpointSlices and stores a new snapshot in `records` after each
/// change (debounced by [`DEBOUNCE`]). Nothing is stored before both initial lists are
/// complete, so a half-listed cluster never answers NXDOMAIN for names that exist.
pub async fn watch(client: Client, domain: Name, records: SharedRecords) {
    let services: Api<Service> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::all(client);
    let services = watcher::watcher(services, watcher::Config::default())
        .default_backoff()
        .map(|event| Change::Service(Box::new(event)));
    let slices = watcher::watcher(slices, watcher::Config::default())
        .default_backoff()
        .map(|event| Change::Slice(Box::new(event)));
    let mut changes = stream::select(services.boxed(), slices.boxed());

    let mut service_cache = Cache::default();
    let mut slice_cache = Cache::default();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let change = match deadline {
            Some(at) => tokio::select! {
                change = changes.next() => change,
                () = tokio::time::sleep_until(at) => {
                    deadline = None;
                    if service_cache.listed && slice_cache.listed {
                        records.store(Records::build(
                            &domain,
                            service_cache.objects.values(),
                            slice_cache.objects.values(),
                        ));
                    }
                    continue;
                }
            },
            None => changes.next().await,
        };
        let Some(change) = change else {
            return;
        };
        let changed = match change {
            Change::Service(event) => match *event {
                Ok(event) => service_cache.apply(event),
                Err(e) => {
                    tracing::warn!("watching services for DNS: {e}");
                    false
                }
            },
            Change::Slice(event) => match *event {
                Ok(event) => slice_cache.apply(event),
                Err(e) => {
                    tracing::warn!("watching endpointslices for DNS: {e}");
                    false
                }
            },
        };
        if changed && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + DEBOUNCE);
        }
    }
}

/// One event of either watch; boxed because objects are large and of different sizes.
enum Change {
    Service(Box<Result<Event<Service>, watcher::Error>>),
    Slice(Box<Result<Event<EndpointSlice>, watcher::Error>>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(name: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_relist_replaces_the_cache_only_when_done() {
        let mut cache = Cache::default();
        assert!(!cache.apply(Event::Init));
        assert!(!cache.apply(Event::InitApply(service("a"))));
        assert!(!cache.listed);
        assert!(cache.apply(Event::InitDone));
        assert!(cache.listed);
        assert_eq!(cache.objects.len(), 1);

        assert!(cache.apply(Event::Apply(service("b"))));
        assert_eq!(cache.objects.len(), 2);
        // A relist that no longer has `a` and `b` keeps them until it is complete.
        cache.apply(Event::Init);
        cache.apply(Event::InitApply(service("c")));
        assert_eq!(cache.objects.len(), 2);
        cache.apply(Event::InitDone);
        assert_eq!(
            cache.objects.keys().collect::<Vec<_>>(),
            vec![&("default".to_owned(), "c".to_owned())]
        );
    }

    #[test]
    fn deleting_an_unknown_object_needs_no_rebuild() {
        let mut cache: Cache<Service> = Cache::default();
        assert!(!cache.apply(Event::Delete(service("x"))));
        cache.apply(Event::Apply(service("x")));
        assert!(cache.apply(Event::Delete(service("x"))));
    }
}
