//! The cluster's certificates: a CA made on first start, a serving certificate for the API
//! server and an admin client certificate, kept under `<data-dir>/tls` so that a restart keeps
//! them (and every kubeconfig made from them) valid.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file under the data directory failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Making or parsing a certificate or key failed; the files may be corrupt.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// PEM-encoded certificates and keys.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub admin_cert: String,
    pub admin_key: String,
    /// The identity the API server shows node agents when it calls them (logs, exec).
    pub kubelet_client_cert: String,
    pub kubelet_client_key: String,
}

/// A node agent's credentials: a client certificate for the API (`system:node:<name>` in
/// group `system:nodes`, as Kubernetes names kubelets) and a serving certificate for its own
/// endpoint, both from the cluster CA.
#[derive(Debug, Clone)]
pub struct NodeCredentials {
    pub ca_cert: String,
    pub client_cert: String,
    pub client_key: String,
    pub serving_cert: String,
    pub serving_key: String,
}

/// Issues credentials for node `name`, reachable at `hosts`, with the CA under `dir`.
pub fn node_credentials(
    dir: &Path,
    name: &str,
    hosts: &[String],
) -> Result<NodeCredentials, PkiError> {
    let ca_cert = read(&dir.join("ca.crt"))?;
    let ca_key = read(&dir.join("ca.key"))?;
    let (client_cert, client_key) = issue(
        &ca_cert,
        &ca_key,
        &format!("system:node:{name}"),
        &["system:nodes"],
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let (serving_cert, serving_key) = issue(
        &ca_cert,
        &ca_key,
        name,
        &[],
        hosts,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    Ok(NodeCredentials {
        ca_cert,
        client_cert,
        client_key,
        serving_cert,
        serving_key,
    })
}

/// A client identity: certificate CN is the user name, each O is a group.
pub struct ClientIdentity<'a> {
    pub user: &'a str,
    pub groups: &'a [&'a str],
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Keys are readable by their owner only; write to a temporary name and rename so that a
    // crash never leaves half a key behind.
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn validity(params: &mut CertificateParams, years: i64) {
    let now = jiff::Timestamp::now();
    let to_offset = |t: jiff::Timestamp| {
        rcgen::date_time_ymd(1970, 1, 1)
            + std::time::Duration::from_secs(t.as_second().max(0) as u64)
    };
    params.not_before = to_offset(now - jiff::SignedDuration::from_hours(1));
    params.not_after = to_offset(now + jiff::SignedDuration::from_hours(24 * 365 * years));
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "capstan-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, 10);
    params
}

/// The parameters of a leaf certificate: `common_name` is the user (or host), each
/// organization a group, `hosts` the names and addresses it serves.
fn leaf_params(
    common_name: &str,
    organizations: &[&str],
    hosts: &[String],
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for o in organizations {
        dn.push(DnType::OrganizationName, *o);
    }
    params.distinguished_name = dn;
    params.subject_alt_names = hosts
        .iter()
        .map(|h| match h.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => h.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    validity(&mut params, 10);
    Ok(params)
}

/// Signs a new leaf certificate with the CA; returns (cert PEM, key PEM).
pub fn issue(
    ca_cert: &str,
    ca_key: &str,
    common_name: &str,
    organizations: &[&str],
    hosts: &[String],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), PkiError> {
    let ca_key = KeyPair::from_pem(ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, ca_key)?;
    let params = leaf_params(common_name, organizations, hosts, usage)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Signs the public key of a certificate signing request (PEM) with the CA. Only the key is
/// taken from the request: the subject, names and usages are the ones given here, so a
/// requester cannot ask for more than it is allowed.
pub fn sign_request(
    ca_cert: &str,
    ca_key: &str,
    request_pem: &str,
    common_name: &str,
    organizations: &[&str],
    hosts: &[String],
    usage: ExtendedKeyUsagePurpose,
) -> Result<String, PkiError> {
    let request = rcgen::CertificateSigningRequestParams::from_pem(request_pem)?;
    let ca_key = KeyPair::from_pem(ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, ca_key)?;
    let params = leaf_params(common_name, organizations, hosts, usage)?;
    Ok(params.signed_by(&request.public_key, &issuer)?.pem())
}

/// Loads the certificates under `dir`, making whatever is missing. The serving certificate is
/// made again when `hosts` (the names and addresses clients reach the server by) changed.
pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Pki, PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = |name: &str| dir.join(name);
    if !path("ca.crt").exists() || !path("ca.key").exists() {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_private(&path("ca.key"), &key.serialize_pem())?;
        write_private(&path("ca.crt"), &cert.pem())?;
    }
    let ca_cert = read(&path("ca.crt"))?;
    let ca_key = read(&path("ca.key"))?;
    let hosts_line = hosts.join(",");
    let stored_hosts = read(&path("server.hosts")).unwrap_or_default();
    if stored_hosts != hosts_line || !path("server.crt").exists() || !path("server.key").exists() {
        let (cert, key) = issue(
            &ca_cert,
            &ca_key,
            "capstan-apiserver",
            &[],
            hosts,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        write_private(&path("server.key"), &key)?;
        write_private(&path("server.crt"), &cert)?;
        write_private(&path("server.hosts"), &hosts_line)?;
    }
    if !path("admin.crt").exists() || !path("admin.key").exists() {
        let (cert, key) = issue(
            &ca_cert,
            &ca_key,
            "admin",
            &["system:masters"],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        write_private(&path("admin.key"), &key)?;
        write_private(&path("admin.crt"), &cert)?;
    }
    if !path("kubelet-client.crt").exists() || !path("kubelet-client.key").exists() {
        let (cert, key) = issue(
            &ca_cert,
            &ca_key,
            "capstan-apiserver-kubelet-client",
            &["system:masters"],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        write_private(&path("kubelet-client.key"), &key)?;
        write_private(&path("kubelet-client.crt"), &cert)?;
    }
    Ok(Pki {
        kubelet_client_cert: read(&path("kubelet-client.crt"))?,
        kubelet_client_key: read(&path("kubelet-client.key"))?,
        ca_cert,
        server_cert: read(&path("server.crt"))?,
        server_key: read(&path("server.key"))?,
        admin_cert: read(&path("admin.crt"))?,
        admin_key: read(&path("admin.key"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("capstan-pki-{}", uuid::Uuid::new_v4()));
        let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first = load_or_create(&dir, &hosts).unwrap();
        let second = load_or_create(&dir, &hosts).unwrap();
        assert_eq!(first.ca_cert, second.ca_cert);
        assert_eq!(first.server_cert, second.server_cert);
        assert_eq!(first.admin_cert, second.admin_cert);
        let moved = load_or_create(&dir, &["10.0.0.1".to_string()]).unwrap();
        assert_eq!(moved.ca_cert, first.ca_cert);
        assert_ne!(moved.server_cert, first.server_cert);
        fs::remove_dir_all(dir).unwrap();
    }
}
