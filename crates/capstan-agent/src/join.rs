//! Joining a cluster with a join token (`capstan token create` on the server):
//! `K10<sha256 of the CA certificate>::<id>.<secret>`. The agent fetches the CA from the
//! server's `/cacerts`, accepts it only if its hash matches the token's, then sends
//! certificate signing requests for keys it made itself and gets back its client certificate
//! (`system:node:<name>`) and the serving certificate of its endpoint. The credentials are kept
//! in the agent's directory, so a restart does not join again.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Why joining failed. A wrong token or CA hash will fail again; an unreachable server may not.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the join token is not of the form K10<ca-hash>::<id>.<secret>")]
    MalformedToken,
    #[error("reaching the server at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error(
        "the server's CA does not match the join token (expected sha256 {expected}, got {actual})"
    )]
    CaMismatch { expected: String, actual: String },
    #[error("the server refused to join this node: {0}")]
    Refused(String),
    #[error("making the node's keys: {0}")]
    Keys(#[from] rcgen::Error),
    #[error("storing the node's credentials in {path}: {source}")]
    Store {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_hash: String,
    pub credential: String,
}

impl JoinToken {
    pub fn parse(token: &str) -> Result<JoinToken, JoinError> {
        let (hash, credential) = token
            .trim()
            .strip_prefix("K10")
            .and_then(|t| t.split_once("::"))
            .ok_or(JoinError::MalformedToken)?;
        let valid_hash = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid_hash || !credential.contains('.') {
            return Err(JoinError::MalformedToken);
        }
        Ok(JoinToken {
            ca_hash: hash.to_ascii_lowercase(),
            credential: credential.to_owned(),
        })
    }
}

/// The node's credentials, PEM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub ca_cert: String,
    pub client_cert: String,
    pub client_key: String,
    pub serving_cert: String,
    pub serving_key: String,
}

const CREDENTIALS_FILE: &str = "node-credentials.json";

impl Credentials {
    /// Credentials kept from an earlier join, if any.
    pub fn load(dir: &Path) -> Option<Credentials> {
        serde_json::from_slice(&std::fs::read(dir.join(CREDENTIALS_FILE)).ok()?).ok()
    }

    /// Keeps the credentials, readable by root only.
    pub fn save(&self, dir: &Path) -> Result<(), JoinError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(CREDENTIALS_FILE);
        let store = |source| JoinError::Store {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(store)?;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(store)?;
        file.write_all(&serde_json::to_vec(self).unwrap_or_default())
            .and_then(|()| file.sync_all())
            .map_err(store)?;
        std::fs::rename(&tmp, &path).map_err(store)
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Joins the cluster at `server` (`https://host:port`) as `node_name`, whose endpoint is
/// reached at `hosts`.
pub async fn join(
    server: &str,
    token: &JoinToken,
    node_name: &str,
    hosts: &[String],
) -> Result<Credentials, JoinError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let unreachable = |message: String| JoinError::Unreachable {
        url: server.to_owned(),
        message,
    };

    // The CA is fetched without trusting anything yet: the token's hash is the trust.
    let config = (*crate::tls::unverified_client_config()).clone();
    let ca_cert = String::from_utf8_lossy(
        &request(
            config,
            Method::GET,
            &format!("{server}/cacerts"),
            None,
            None,
        )
        .await
        .map_err(unreachable)?
        .1,
    )
    .into_owned();
    let actual = sha256_hex(ca_cert.as_bytes());
    if actual != token.ca_hash {
        return Err(JoinError::CaMismatch {
            expected: token.ca_hash.clone(),
            actual,
        });
    }

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_cert.as_bytes()).flatten() {
        roots.add(cert).map_err(|e| unreachable(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unreachable(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client_key = rcgen::KeyPair::generate()?;
    let serving_key = rcgen::KeyPair::generate()?;
    let csr = |key: &rcgen::KeyPair| -> Result<String, rcgen::Error> {
        rcgen::CertificateParams::new(vec![])?
            .serialize_request(key)?
            .pem()
    };
    let body = json!({
        "nodeName": node_name,
        "hosts": hosts,
        "clientCsr": csr(&client_key)?,
        "servingCsr": csr(&serving_key)?,
    });
    let (status, answer) = request(
        config,
        Method::POST,
        &format!("{server}/capstan/v1/join"),
        Some(&token.credential),
        Some(body.to_string().into_bytes()),
    )
    .await
    .map_err(unreachable)?;
    if status != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|s| s["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("status {status}"));
        return Err(JoinError::Refused(message));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        client_cert: String,
        serving_cert: String,
    }
    let answer: Answer =
        serde_json::from_slice(&answer).map_err(|e| JoinError::Refused(e.to_string()))?;
    Ok(Credentials {
        ca_cert,
        client_cert: answer.client_cert,
        client_key: client_key.serialize_pem(),
        serving_cert: answer.serving_cert,
        serving_key: serving_key.serialize_pem(),
    })
}

/// One HTTPS request; answers (status, body).
async fn request(
    config: rustls::ClientConfig,
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<(u16, Bytes), String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(connector);
    let mut builder = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(bearer) = bearer {
        builder = builder.header("authorization", format!("Bearer {bearer}"));
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_as_k3s_writes_them() {
        let hash = "a".repeat(64);
        assert_eq!(
            JoinToken::parse(&format!("K10{hash}::abc123.0123456789abcdef")).unwrap(),
            JoinToken {
                ca_hash: hash.clone(),
                credential: "abc123.0123456789abcdef".into()
            }
        );
        for bad in [
            "",
            "abc123.0123456789abcdef",
            &format!("K10{hash}::nodot"),
            "K10short::a.b",
        ] {
            assert!(JoinToken::parse(bad).is_err(), "{bad:?}");
        }
    }
}
