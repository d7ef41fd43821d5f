pub mod kubeconfig;
pub mod server;
pub mod shim;
