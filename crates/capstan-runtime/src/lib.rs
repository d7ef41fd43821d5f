//! The container runtime of the capstan node agent.
//!
//! It turns what the agent decided (a pod sandbox, a container with its image, command,
//! environment, mounts, user and resources) into real Linux containers: images are kept in a
//! store keyed by digest with layers unpacked once and shared through overlayfs, each container
//! is an OCI bundle run by libcontainer from a small shim process that outlives agent restarts,
//! and a pod's containers share the network, IPC and UTS namespaces of its sandbox.
//!
//! Nothing here knows Kubernetes types: the agent translates a Pod into [`ContainerConfig`]s, as
//! kubelet does with the CRI.

pub mod attach;
pub mod bundle;
pub mod cgroups;
pub mod container;
pub mod exec;
pub mod fake;
pub mod image;
pub mod logs;
pub mod pause;
pub mod rootfs;
pub mod sandbox;
pub mod shim;

pub use container::{ContainerConfig, ContainerState, Runtime, RuntimeError};
