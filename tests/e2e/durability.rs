//! `kill -9` of the server during a stream of writes loses no acknowledged write.

use crate::harness::Cluster;

#[test]
fn kill_during_writes_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start();
    let writer_cluster_port = cluster.port;
    let tls = cluster.data_dir().join("tls");
    // A writer creates configmaps one after another over HTTPS and records each 201.
    let writer = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for i in 0..10_000 {
            let body = format!(
                "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"w{i}\"}}}}"
            );
            let out = std::process::Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/json",
                    "--data",
                    &body,
                    "--cacert",
                ])
                .arg(tls.join("ca.crt"))
                .arg("--cert")
                .arg(tls.join("admin.crt"))
                .arg("--key")
                .arg(tls.join("admin.key"))
                .arg(format!(
                    "https://127.0.0.1:{writer_cluster_port}/api/v1/namespaces/default/configmaps"
                ))
                .output()
                .unwrap();
            match String::from_utf8_lossy(&out.stdout).as_ref() {
                "201" => acknowledged.push(format!("w{i}")),
                _ => break,
            }
        }
        acknowledged
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    cluster.kill_server();
    let acknowledged = writer.join().unwrap();
    assert!(
        acknowledged.len() > 10,
        "the writer got going ({} writes)",
        acknowledged.len()
    );
    cluster.restart();
    let names = cluster.kubectl(&["get", "configmaps", "-o", "name"]);
    let stored: std::collections::HashSet<&str> = names
        .lines()
        .filter_map(|l| l.strip_prefix("configmap/"))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !stored.contains(n.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:?}",
        lost.len()
    );
}
