//! capstan's controllers, in kube-runtime's shape: each watches its objects, queues their keys,
//! and reconciles one key at a time from a cache — deciding purely, acting through the API.

pub mod node_lifecycle;
pub mod gc;
