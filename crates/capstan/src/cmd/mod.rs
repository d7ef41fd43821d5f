pub mod agent;
pub mod exec_shim;
pub mod image;
pub mod kubeconfig;
pub mod pause;
pub mod server;
pub mod shim;
pub mod token;
