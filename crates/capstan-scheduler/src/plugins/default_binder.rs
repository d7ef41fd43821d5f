//! DefaultBinder: binds the pod by creating its `binding` subresource, through whatever
//! implements [`BindPod`] (the API client in the runner, a recording fake in tests).

use std::sync::Arc;

use crate::framework::{Bind, BindFuture, Plugin};
use crate::pod_info::PodInfo;

pub const NAME: &str = "DefaultBinder";

/// The one effect DefaultBinder needs.
pub trait BindPod: Send + Sync {
    /// Creates `pods/{name}/binding` with target `node`. Not idempotent: a second bind of a
    /// bound pod fails with a conflict, which the caller treats as "already bound".
    fn bind_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: &'a str,
        node: &'a str,
    ) -> BindFuture<'a>;
}

pub struct DefaultBinder {
    pub api: Arc<dyn BindPod>,
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl Bind for DefaultBinder {
    fn bind<'a>(&'a self, pod: &'a PodInfo, node: &'a str) -> BindFuture<'a> {
        self.api.bind_pod(&pod.namespace, &pod.name, &pod.uid, node)
    }
}
