//! Placeholder: the statefulset controller is being written.

/// Runs the controller with `workers` reconcile loops until dropped.
pub async fn run(_client: kube::Client, _workers: usize) {
    std::future::pending::<()>().await
}
