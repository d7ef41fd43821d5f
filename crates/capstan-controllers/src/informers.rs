//! One watch and one cache per kind for the whole controller manager (client-go's
//! `SharedInformerFactory`). Every controller used to open its own watch of each kind it reads:
//! ten copies of every Pod, each decoding every pod event. Now [`run`](crate::run) creates one
//! [`SharedInformers`], each controller registers its handlers and takes its stores from it,
//! then the informers start together and the controllers start once every cache is filled.
//!
//! Pods get the indexes of [`crate::pod_cache`] on top of their store.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::namespace_index::{NamespaceIndex, NamespacedStore};
use crate::pod_cache::{PodCache, PodIndex};
use crate::runtime::{AbortOnDrop, CacheNotReady, Change, Informer, wait_for_cache};

/// A kind that can be watched by a shared informer.
pub trait Kind:
    Resource<DynamicType = ()>
    + k8s_openapi::Resource
    + Clone
    + DeserializeOwned
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + fmt::Debug
        + Send
        + Sync
        + 'static
{
}

type Ready = Pin<Box<dyn Future<Output = Result<(), CacheNotReady>> + Send>>;

/// An informer of some kind, so that informers of every kind live in one map.
trait AnyInformer: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    /// Starts the watch; returns its task and the wait for its first list.
    fn start(self: Box<Self>) -> (tokio::task::JoinHandle<()>, Ready);
}

impl<K: Kind> AnyInformer for Informer<K> {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn start(self: Box<Self>) -> (tokio::task::JoinHandle<()>, Ready) {
        let store = self.store();
        let task = (*self).start();
        let ready = Box::pin(async move { wait_for_cache(K::KIND, &store).await });
        (task, ready)
    }
}

/// The informers of the controller manager, one per kind, created when first asked for.
pub struct SharedInformers {
    client: kube::Client,
    informers: HashMap<TypeId, Box<dyn AnyInformer>>,
    /// Kinds in the order first asked for, so that they start (and report) in a stable order.
    order: Vec<TypeId>,
    pod_index: Option<Arc<PodIndex>>,
    /// The namespace index of each kind that has one, as `Arc<NamespaceIndex<K>>`.
    namespace_indexes: HashMap<TypeId, Box<dyn Any + Send>>,
}

/// The watches of started informers: dropping it stops them.
pub struct RunningInformers {
    _tasks: AbortOnDrop,
}

impl SharedInformers {
    pub fn new(client: kube::Client) -> Self {
        SharedInformers {
            client,
            informers: HashMap::new(),
            order: Vec::new(),
            pod_index: None,
            namespace_indexes: HashMap::new(),
        }
    }

    /// The informer of every object of kind `K` in the cluster.
    pub fn informer<K: Kind>(&mut self) -> &mut Informer<K> {
        self.informer_with(Api::all)
    }

    /// The informer of kind `K`, watching `api(client)` if it does not exist yet (a kind is
    /// watched once, so every caller must ask for the same scope).
    pub fn informer_with<K: Kind>(
        &mut self,
        api: impl FnOnce(kube::Client) -> Api<K>,
    ) -> &mut Informer<K> {
        let type_id = TypeId::of::<K>();
        if !self.informers.contains_key(&type_id) {
            let informer = Informer::new(api(self.client.clone()), watcher::Config::default());
            self.informers.insert(type_id, Box::new(informer));
            self.order.push(type_id);
        }
        self.informers
            .get_mut(&type_id)
            .and_then(|informer| informer.as_any().downcast_mut::<Informer<K>>())
            .expect("the informer of a TypeId is of that type")
    }

    /// The shared cache of kind `K`.
    pub fn store<K: Kind>(&mut self) -> Store<K> {
        self.informer::<K>().store()
    }

    /// Registers `handler` for every change of kind `K`; returns the shared cache.
    pub fn on<K: Kind>(&mut self, handler: impl FnMut(Change<'_, K>) + Send + 'static) -> Store<K> {
        let informer = self.informer::<K>();
        informer.add_handler(handler);
        informer.store()
    }

    /// The shared cache of kind `K` with a namespace index.
    pub fn namespaced<K: Kind>(&mut self) -> NamespacedStore<K> {
        let type_id = TypeId::of::<K>();
        let index = match self.namespace_indexes.get(&type_id) {
            Some(index) => index
                .downcast_ref::<Arc<NamespaceIndex<K>>>()
                .expect("the namespace index of a TypeId is of that type")
                .clone(),
            None => {
                let index = Arc::new(NamespaceIndex::<K>::default());
                self.informer::<K>().add_index(index.clone());
                self.namespace_indexes
                    .insert(type_id, Box::new(index.clone()));
                index
            }
        };
        NamespacedStore::new(self.store::<K>(), index)
    }

    /// Registers `handler` for every change of kind `K`; returns the shared cache with a
    /// namespace index.
    pub fn on_namespaced<K: Kind>(
        &mut self,
        handler: impl FnMut(Change<'_, K>) + Send + 'static,
    ) -> NamespacedStore<K> {
        let store = self.namespaced::<K>();
        self.informer::<K>().add_handler(handler);
        store
    }

    /// The shared pod cache with its indexes.
    pub fn pods(&mut self) -> PodCache {
        if self.pod_index.is_none() {
            let index = Arc::new(PodIndex::default());
            self.informer::<Pod>().add_index(index.clone());
            self.pod_index = Some(index);
        }
        PodCache {
            store: self.store::<Pod>(),
            index: self.pod_index.clone().expect("created above"),
        }
    }

    /// Registers `handler` for every pod change; returns the shared pod cache.
    pub fn on_pods(&mut self, handler: impl FnMut(Change<'_, Pod>) + Send + 'static) -> PodCache {
        let pods = self.pods();
        self.informer::<Pod>().add_handler(handler);
        pods
    }

    /// Starts every informer and waits until each has applied its first list. The watches
    /// run until the returned guard is dropped.
    pub async fn start(mut self) -> Result<RunningInformers, CacheNotReady> {
        let mut tasks = Vec::new();
        let mut waits = Vec::new();
        for type_id in &self.order {
            let informer = self
                .informers
                .remove(type_id)
                .expect("every ordered kind has an informer");
            let (task, ready) = informer.start();
            tasks.push(task);
            waits.push(ready);
        }
        let running = RunningInformers {
            _tasks: AbortOnDrop::new(&tasks),
        };
        for ready in waits {
            ready.await?;
        }
        Ok(running)
    }
}
