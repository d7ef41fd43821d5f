pub mod kubeconfig;
pub mod server;
