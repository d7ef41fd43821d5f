//! Joining nodes, as k3s does it: `capstan token create` makes a join token
//! `K10<sha256 of the CA certificate>::<id>.<secret>`; an agent started with it fetches the CA
//! from `/cacerts`, checks it against the hash (so a man in the middle cannot pose as the
//! server), and posts certificate signing requests to `/capstan/v1/join` with the token as
//! bearer. The server signs a client certificate for `system:node:<name>` (group
//! `system:nodes`) and a serving certificate for the agent's endpoint; the private keys never
//! leave the node.

use std::path::{Path, PathBuf};

use rcgen::ExtendedKeyUsagePurpose;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::pki;

/// The token file beside the certificates: one `id,secret,expiry-unix-seconds` per line.
const TOKEN_FILE: &str = "join-tokens.csv";

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading the cluster CA in {0}: {1}")]
    Ca(PathBuf, std::io::Error),
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// Makes a new join token valid for `ttl` and records it under `pki_dir`.
pub fn create_token(pki_dir: &Path, ttl: std::time::Duration) -> Result<String, TokenError> {
    let ca = std::fs::read_to_string(pki_dir.join("ca.crt"))
        .map_err(|e| TokenError::Ca(pki_dir.to_owned(), e))?;
    let random = uuid::Uuid::new_v4().simple().to_string();
    // kubeadm's shape: a 6-character id and a 16-character secret.
    let (id, secret) = (&random[..6], &random[6..22]);
    let expiry = jiff::Timestamp::now().as_second() + ttl.as_secs() as i64;
    let path = pki_dir.join(TOKEN_FILE);
    let mut lines = std::fs::read_to_string(&path).unwrap_or_default();
    lines.push_str(&format!("{id},{secret},{expiry}\n"));
    crate::kubeconfig::write(&path, &lines).map_err(|e| TokenError::Write(path.clone(), e))?;
    Ok(format!("K10{}::{id}.{secret}", ca_hash(&ca)))
}

/// The hex SHA-256 of the CA certificate's PEM, which tokens carry.
pub fn ca_hash(ca_pem: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(ca_pem.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `credential` (`<id>.<secret>`, or a whole `K10…::<id>.<secret>` token) is a
/// recorded, unexpired token.
fn token_valid(pki_dir: &Path, credential: &str) -> bool {
    let credential = credential.rsplit("::").next().unwrap_or_default();
    let Some((id, secret)) = credential.split_once('.') else {
        return false;
    };
    let now = jiff::Timestamp::now().as_second();
    std::fs::read_to_string(pki_dir.join(TOKEN_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',');
            Some((
                fields.next()?,
                fields.next()?,
                fields.next()?.parse::<i64>().ok()?,
            ))
        })
        .any(|(i, s, expiry)| i == id && constant_time_eq(s, secret) && expiry > now)
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What a joining agent sends.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub node_name: String,
    /// Names and addresses the agent's endpoint is reached by.
    pub hosts: Vec<String>,
    /// PEM certificate signing requests: one for the client key, one for the serving key.
    pub client_csr: String,
    pub serving_csr: String,
}

/// What the server answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    pub ca_cert: String,
    pub client_cert: String,
    pub serving_cert: String,
}

/// Signs a joining node's certificates when `bearer` is a valid join token.
pub fn join(pki_dir: &Path, bearer: Option<&str>, body: &[u8]) -> Result<JoinResponse, ApiError> {
    let token = bearer
        .and_then(|b| b.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !token_valid(pki_dir, token) {
        return Err(ApiError::Unauthorized);
    }
    let request: JoinRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("decoding the join request: {e}")))?;
    let name = request.node_name.as_str();
    let name_errors = capstan_api::validation::names::is_dns1123_subdomain(name);
    if !name_errors.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "invalid node name {name:?}: {}",
            name_errors.join(", ")
        )));
    }
    let read = |file: &str| {
        std::fs::read_to_string(pki_dir.join(file)).map_err(|e| ApiError::Internal(e.to_string()))
    };
    let (ca_cert, ca_key) = (read("ca.crt")?, read("ca.key")?);
    let sign = |csr: &str, common_name: &str, orgs: &[&str], hosts: &[String], usage| {
        pki::sign_request(&ca_cert, &ca_key, csr, common_name, orgs, hosts, usage)
            .map_err(|e| ApiError::BadRequest(format!("signing the certificate request: {e}")))
    };
    let client_cert = sign(
        &request.client_csr,
        &format!("system:node:{name}"),
        &["system:nodes"],
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let serving_cert = sign(
        &request.serving_csr,
        name,
        &[],
        &request.hosts,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    Ok(JoinResponse {
        ca_cert,
        client_cert,
        serving_cert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_joins_until_it_expires_and_a_wrong_one_never() {
        let dir = tempfile::tempdir().unwrap();
        pki::load_or_create(dir.path(), &["127.0.0.1".into()]).unwrap();
        let token = create_token(dir.path(), std::time::Duration::from_secs(3600)).unwrap();
        let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
        assert!(token.starts_with(&format!("K10{}::", ca_hash(&ca))));
        assert!(token_valid(dir.path(), &token));
        let (id, _) = token.rsplit("::").next().unwrap().split_once('.').unwrap();
        assert!(!token_valid(dir.path(), &format!("{id}.0000000000000000")));
        assert!(!token_valid(dir.path(), "garbage"));
        let expired = create_token(dir.path(), std::time::Duration::ZERO).unwrap();
        assert!(!token_valid(dir.path(), &expired));
    }

    #[test]
    fn a_join_signs_the_node_keys_with_the_subject_the_server_chooses() {
        let dir = tempfile::tempdir().unwrap();
        pki::load_or_create(dir.path(), &["127.0.0.1".into()]).unwrap();
        let token = create_token(dir.path(), std::time::Duration::from_secs(3600)).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        // The request asks to be an admin; the server signs it as the node anyway.
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "admin");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let body = serde_json::json!({
            "nodeName": "node-2", "hosts": ["10.0.0.2"], "clientCsr": csr, "servingCsr": csr,
        });
        let bearer = format!("Bearer {token}");
        let response = join(dir.path(), Some(&bearer), body.to_string().as_bytes()).unwrap();
        let der = rustls_pemfile::certs(&mut response.client_cert.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(cn, "system:node:node-2");
        assert!(matches!(
            join(
                dir.path(),
                Some("Bearer nope.nope"),
                body.to_string().as_bytes()
            ),
            Err(ApiError::Unauthorized)
        ));
    }
}
