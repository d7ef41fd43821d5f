pub mod agent;
pub mod image;
pub mod kubeconfig;
pub mod server;
pub mod shim;
