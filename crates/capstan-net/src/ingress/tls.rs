//! Certificates by SNI: `spec.tls[]` of our Ingresses names hosts and a `kubernetes.io/tls`
//! Secret in the Ingress's namespace; a TLS handshake gets the certificate of its server name
//! from the current snapshot (exact name before wildcard), or the self-signed fallback made at
//! start, like ingress-nginx's "Kubernetes Ingress Controller Fake Certificate".

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{IngressError, SharedSnapshot};

/// `type` of Secrets holding a certificate and its key.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// Common name of the fallback certificate (the one ingress-nginx uses, which tools know).
pub const FALLBACK_COMMON_NAME: &str = "Kubernetes Ingress Controller Fake Certificate";

/// The one crypto provider of the proxy: ring, chosen explicitly so that another provider
/// compiled into the binary can't make rustls pick one at run time.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates by server name, immutable once built.
#[derive(Debug, Default)]
pub struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertTable {
    /// The certificates of `ingresses` (ours, oldest first: the oldest wins a host) from
    /// `secrets`; a missing or unparsable Secret leaves its hosts on the fallback.
    pub fn build<'a>(
        ingresses: &[&Ingress],
        secrets: impl IntoIterator<Item = &'a Secret>,
    ) -> Self {
        let secrets: HashMap<(String, String), &Secret> = secrets
            .into_iter()
            .filter(|s| s.type_.as_deref() == Some(TLS_SECRET_TYPE))
            .map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), s))
            .collect();
        let provider = provider();
        let mut parsed: HashMap<(String, String), Option<Arc<CertifiedKey>>> = HashMap::new();
        let mut table = Self::default();
        for ingress in ingresses {
            let namespace = ingress.namespace().unwrap_or_default();
            for tls in ingress.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
                let Some(secret_name) = &tls.secret_name else {
                    continue;
                };
                let key = (namespace.clone(), secret_name.clone());
                let certified = parsed
                    .entry(key.clone())
                    .or_insert_with(|| {
                        let secret = secrets.get(&key)?;
                        let data = secret.data.as_ref()?;
                        let (cert, private_key) = (data.get("tls.crt")?, data.get("tls.key")?);
                        match certified_key_from_pem(&cert.0, &private_key.0, &provider) {
                            Ok(certified) => Some(Arc::new(certified)),
                            Err(e) => {
                                tracing::warn!("ingress TLS secret {}/{}: {e}", key.0, key.1);
                                None
                            }
                        }
                    })
                    .clone();
                let Some(certified) = certified else { continue };
                for host in tls.hosts.iter().flatten() {
                    table.insert_if_absent(host, certified.clone());
                }
            }
        }
        table
    }

    /// Serves `certified` for `host` (`*.example.com` for a wildcard) unless it has one.
    pub fn insert_if_absent(&mut self, host: &str, certified: Arc<CertifiedKey>) {
        let host = host.to_ascii_lowercase();
        let (map, name) = match host.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix.to_owned()),
            None => (&mut self.exact, host),
        };
        map.entry(name).or_insert(certified);
    }

    /// The certificate for a TLS server name, if an Ingress has one.
    pub fn lookup(&self, server_name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = server_name.to_ascii_lowercase();
        self.exact.get(&name).or_else(|| {
            name.split_once('.')
                .and_then(|(_, suffix)| self.wildcard.get(suffix))
        })
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A certificate chain and its private key from PEM (`tls.crt`, `tls.key`), checked to match.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("tls.key: {e}"))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| e.to_string())
}

/// A self-signed certificate for unknown server names, made fresh at each start.
pub fn fallback_certificate() -> Result<Arc<CertifiedKey>, IngressError> {
    let err = |e: rcgen::Error| IngressError::Tls(e.to_string());
    let mut params =
        rcgen::CertificateParams::new(vec!["ingress.local".to_owned()]).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, FALLBACK_COMMON_NAME);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Acme Co");
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    let certified = CertifiedKey::from_der(
        vec![cert.der().clone()],
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        &provider(),
    )
    .map_err(|e| IngressError::Tls(e.to_string()))?;
    Ok(Arc::new(certified))
}

/// Picks the certificate of a handshake from the snapshot current at that moment.
#[derive(Debug)]
pub(crate) struct SniResolver {
    pub(crate) snapshot: SharedSnapshot,
    pub(crate) fallback: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certified = client_hello
            .server_name()
            .and_then(|name| self.snapshot.load().certs.lookup(name).cloned());
        Some(certified.unwrap_or_else(|| self.fallback.clone()))
    }
}

/// The rustls configuration of the HTTPS listener: HTTP/1.1 only, certificates by SNI.
pub(crate) fn server_config(
    snapshot: SharedSnapshot,
    fallback: Arc<CertifiedKey>,
) -> Result<Arc<rustls::ServerConfig>, IngressError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| IngressError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { snapshot, fallback }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::routes::tests::ingress;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn secret(name: &str, type_: &str, hosts: &[&str]) -> Secret {
        let issued = rcgen::generate_simple_self_signed(
            hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            type_: Some(type_.into()),
            data: Some(
                [
                    (
                        "tls.crt".to_owned(),
                        ByteString(issued.cert.pem().into_bytes()),
                    ),
                    (
                        "tls.key".to_owned(),
                        ByteString(issued.signing_key.serialize_pem().into_bytes()),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn hosts_get_the_certificate_of_their_secret_exact_before_wildcard() {
        let ingresses = [ingress(
            "i",
            "2024-01-01T00:00:00Z",
            json!({"ingressClassName": "capstan", "tls": [
                {"hosts": ["a.example.com"], "secretName": "exact"},
                {"hosts": ["*.example.com"], "secretName": "wild"},
                {"hosts": ["opaque.example.org"], "secretName": "opaque"},
                {"hosts": ["missing.example.org"], "secretName": "missing"},
            ]}),
        )];
        let secrets = [
            secret("exact", TLS_SECRET_TYPE, &["a.example.com"]),
            secret("wild", TLS_SECRET_TYPE, &["*.example.com"]),
            secret("opaque", "Opaque", &["opaque.example.org"]),
        ];
        let refs: Vec<&Ingress> = ingresses.iter().collect();
        let table = CertTable::build(&refs, &secrets);
        let der = |s: &Secret| {
            CertificateDer::pem_slice_iter(&s.data.as_ref().unwrap()["tls.crt"].0)
                .next()
                .unwrap()
                .unwrap()
        };
        let served = |name| table.lookup(name).map(|c| c.cert[0].clone());
        assert_eq!(served("a.example.com"), Some(der(&secrets[0])));
        assert_eq!(served("A.Example.com"), Some(der(&secrets[0])));
        assert_eq!(served("b.example.com"), Some(der(&secrets[1])));
        assert_eq!(served("x.b.example.com"), None);
        assert_eq!(served("opaque.example.org"), None, "not a TLS secret");
        assert_eq!(served("missing.example.org"), None);
    }

    #[test]
    fn the_fallback_certificate_is_self_signed_with_the_well_known_name() {
        let certified = fallback_certificate().unwrap();
        let der = certified.cert[0].as_ref();
        assert!(
            der.windows(FALLBACK_COMMON_NAME.len())
                .any(|w| w == FALLBACK_COMMON_NAME.as_bytes())
        );
        certified.keys_match().unwrap();
    }
}
