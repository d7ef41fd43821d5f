//! Other Kubernetes clients than kubectl drive capstan unchanged.

use crate::harness::Cluster;

#[test]
fn the_python_kubernetes_client_lists_creates_patches_and_watches() {
    let cluster = Cluster::start();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/clients/python_client.py"
    );
    // Debian's python3-kubernetes lives with Debian's interpreter.
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("HOME", cluster.dir.path().join("home"))
        .output()
        .expect("running /usr/bin/python3");
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
