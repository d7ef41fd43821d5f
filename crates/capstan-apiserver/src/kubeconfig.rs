//! The admin kubeconfig: client-certificate authentication with the CA embedded, so that the
//! file alone reaches the cluster.

use std::path::Path;

use base64::Engine as _;

use crate::pki::Pki;

/// The kubeconfig of the cluster admin for a server at `server_url`.
pub fn admin(pki: &Pki, server_url: &str) -> String {
    for_user(
        &pki.ca_cert,
        &pki.admin_cert,
        &pki.admin_key,
        "admin",
        server_url,
    )
}

/// A kubeconfig authenticating `user` by a client certificate.
pub fn for_user(ca_cert: &str, cert: &str, key: &str, user: &str, server_url: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: capstan
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: capstan
  context:
    cluster: capstan
    user: {user}
    namespace: default
current-context: capstan
preferences: {{}}
",
        ca = b64(ca_cert),
        cert = b64(cert),
        key = b64(key),
    )
}

/// Writes `contents` to `path` readable by its owner only, atomically.
pub fn write(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}
