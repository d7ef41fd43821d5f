//! Calls from the API server to node agents (kubelet's port): container logs now, exec and
//! port-forward streams later. HTTPS both ways: the API server shows its kubelet-client
//! certificate, and checks the agent's serving certificate against the cluster CA.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;

use crate::error::ApiError;
use crate::pki::Pki;
use crate::server::TlsError;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

#[derive(Clone)]
pub struct NodeClient {
    client: HttpsClient,
    /// For upgraded (streaming) connections, made one by one.
    tls: Arc<rustls::ClientConfig>,
}

impl NodeClient {
    pub fn new(pki: &Pki) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pem_error = |e: std::io::Error| TlsError::Pem(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pemfile::certs(&mut pki.ca_cert.as_bytes()) {
            roots.add(ca.map_err(pem_error)?)?;
        }
        let certs = rustls_pemfile::certs(&mut pki.kubelet_client_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_error)?;
        let key = rustls_pemfile::private_key(&mut pki.kubelet_client_key.as_bytes())
            .map_err(pem_error)?
            .ok_or_else(|| TlsError::Pem("no key in kubelet-client.key".into()))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?;
        let tls = Arc::new(tls);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(NodeClient { client, tls })
    }

    /// Opens an HTTP/1.1 upgrade (`exec`, `attach`, `portforward`) to the agent of `node`,
    /// with `headers` passed on. Answers the agent's 101 and the upgraded stream; any other
    /// answer becomes the error it carries.
    pub async fn upgrade(
        &self,
        node: &Value,
        path_and_query: &str,
        headers: &[(String, String)],
    ) -> Result<(Response<Incoming>, hyper::upgrade::Upgraded), ApiError> {
        let (host, port) = agent_address(node)?;
        let url = format!("https://{host}:{port}{path_and_query}");
        let unreachable =
            |e: &dyn std::fmt::Display| ApiError::Internal(format!("Get \"{url}\": {e}"));
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| unreachable(&e))?;
        let server_name =
            rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| unreachable(&e))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| unreachable(&e))?;
        tokio::spawn(connection.with_upgrades());
        let mut request = Request::get(path_and_query)
            .header("host", format!("{host}:{port}"))
            .header("connection", "Upgrade");
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(refusal(response).await);
        }
        let upgraded = hyper::upgrade::on(&mut response)
            .await
            .map_err(|e| unreachable(&e))?;
        Ok((response, upgraded))
    }

    /// GETs `path_and_query` from the agent of `node`. A non-success answer becomes the
    /// error it carries, with the agent's text as the message, as kube-apiserver relays
    /// kubelet's.
    pub async fn get(
        &self,
        node: &Value,
        path_and_query: &str,
    ) -> Result<Response<Incoming>, ApiError> {
        let (host, port) = agent_address(node)?;
        let url = format!("https://{host}:{port}{path_and_query}");
        let request = Request::get(&url)
            .body(Empty::new())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| ApiError::Internal(format!("Get \"{url}\": {e}")))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(refusal(response).await)
    }
}

/// The error an agent's refusal carries, with its text as the message, as kube-apiserver
/// relays kubelet's.
async fn refusal(response: Response<Incoming>) -> ApiError {
    let status = response.status();
    let text = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
        .unwrap_or_default();
    match status {
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => ApiError::BadRequest(text),
        _ => ApiError::Internal(text),
    }
}

/// Where a node's agent listens: its InternalIP (else first address) and the port it
/// registered in `status.daemonEndpoints.kubeletEndpoint.Port`.
fn agent_address(node: &Value) -> Result<(String, u16), ApiError> {
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    let addresses = node["status"]["addresses"].as_array();
    let address = addresses
        .and_then(|list| {
            list.iter()
                .find(|a| a["type"] == "InternalIP")
                .or_else(|| list.first())
        })
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| ApiError::ServiceUnavailable(format!("node {name} has no address")))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= u64::from(u16::MAX))
        .ok_or_else(|| {
            ApiError::ServiceUnavailable(format!("node {name} has no agent endpoint"))
        })?;
    // IPv6 addresses are bracketed in URLs.
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    Ok((host, port as u16))
}
