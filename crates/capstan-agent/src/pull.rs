//! Image pulls for pods, as the kubelet does them: credentials come from the pod's
//! `imagePullSecrets` (`kubernetes.io/dockerconfigjson` and the legacy `kubernetes.io/dockercfg`),
//! matched to the image's registry by kubelet's keyring rules; each matching credential is tried
//! in turn, then no credential, with the runtime's registry client. Success is the `Pulled`
//! event with kubelet's wording; failure is kubelet's `Failed to pull image` event and the
//! message the worker shows as `ErrImagePull`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use base64::Engine;
use capstan_runtime::image::{ImageRecord, PullError, Reference, RegistryAuth};
use k8s_openapi::api::core::v1::{Pod, Secret};

use crate::env::ObjectSource;
use crate::events::EventType;
use crate::worker::Shared;

const SECRET_TYPE_DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const SECRET_KEY_DOCKER_CONFIG_JSON: &str = ".dockerconfigjson";
const SECRET_TYPE_DOCKERCFG: &str = "kubernetes.io/dockercfg";
const SECRET_KEY_DOCKERCFG: &str = ".dockercfg";
/// Where credentials for Docker Hub live in docker configurations (`https://index.docker.io/v1/`
/// once normalized).
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// Pulls `image` for `pod` into the node's store and records kubelet's `Pulled` event (or
/// `Failed`) on the container at `field_path`. The error is the message of the container's
/// `ErrImagePull` state.
pub async fn pull(
    shared: &Shared,
    pod: &Pod,
    field_path: &Option<String>,
    image: &str,
) -> Result<ImageRecord, String> {
    let started = Instant::now();
    let source = crate::api_source::ApiSource::new(shared.client.clone());
    let (secrets, unavailable) = pull_secrets(pod, &source).await;
    if !unavailable.is_empty() {
        shared
            .events
            .record(
                pod,
                None,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    unavailable.join(", ")
                ),
            )
            .await;
    }
    let result = pull_with_secrets(&shared.images, image, &secrets).await;
    match &result {
        Ok(record) => {
            let took = go_duration(started.elapsed());
            shared
                .events
                .record(
                    pod,
                    field_path.clone(),
                    EventType::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {} bytes.",
                        record.size
                    ),
                )
                .await;
        }
        Err(message) => {
            shared
                .events
                .record(
                    pod,
                    field_path.clone(),
                    EventType::Warning,
                    "Failed",
                    format!("Failed to pull image \"{image}\": {message}"),
                )
                .await;
        }
    }
    result
}

/// Tries each credential the secrets hold for the image's registry, then none, and returns the
/// first success or every failure (kubelet's aggregate: one message, or `[a, b]`).
async fn pull_with_secrets(
    store: &capstan_runtime::image::ImageStore,
    image: &str,
    secrets: &[Secret],
) -> Result<ImageRecord, String> {
    let repository = Reference::parse(image)
        .map_err(|e| e.to_string())?
        .repository();
    let keyring = Keyring::from_secrets(secrets)?;
    let mut errors = Vec::new();
    for auth in credentials_to_try(&keyring, &repository) {
        match capstan_runtime::image::pull(store, image, &auth).await {
            Ok(record) => return Ok(record),
            Err(error @ PullError::InvalidReference(_)) => return Err(error.to_string()),
            Err(error) => errors.push(error.to_string()),
        }
    }
    Err(match errors.len() {
        1 => errors.remove(0),
        _ => format!("[{}]", errors.join(", ")),
    })
}

/// The credentials for `repository` in the order to try them, ending with none. Duplicates
/// (the same login in two secrets) are tried once.
fn credentials_to_try(keyring: &Keyring, repository: &str) -> Vec<RegistryAuth> {
    let mut attempts: Vec<RegistryAuth> = Vec::new();
    for credential in keyring.lookup(repository) {
        let auth = RegistryAuth::Basic {
            username: credential.username,
            password: credential.password,
        };
        if !attempts.contains(&auth) {
            attempts.push(auth);
        }
    }
    attempts.push(RegistryAuth::Anonymous);
    attempts
}

/// The pod's image pull secrets that could be read, and the names of those that could not
/// (missing, or the API failed), which kubelet reports but does not fail on.
async fn pull_secrets(pod: &Pod, source: &impl ObjectSource) -> (Vec<Secret>, Vec<String>) {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let references = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.image_pull_secrets.as_ref())
        .into_iter()
        .flatten()
        .filter(|reference| !reference.name.is_empty());
    let mut secrets = Vec::new();
    let mut unavailable = Vec::new();
    for reference in references {
        match source.secret(namespace, &reference.name).await {
            Ok(Some(secret)) => secrets.push(secret),
            Ok(None) => unavailable.push(reference.name.clone()),
            Err(e) => {
                tracing::debug!(
                    "reading image pull secret {namespace}/{}: {e}",
                    reference.name
                );
                unavailable.push(reference.name.clone());
            }
        }
    }
    (secrets, unavailable)
}

/// A login from a docker configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credential {
    username: String,
    password: String,
}

/// kubelet's `BasicDockerKeyring`: credentials by registry key (`host[:port][/path]`), looked up
/// for an image repository with kubelet's glob and path-prefix rules.
#[derive(Debug, Default)]
struct Keyring {
    /// Keys iterate reverse-sorted on lookup, so `quay.io/team` is tried before `quay.io`.
    credentials: BTreeMap<String, Vec<Credential>>,
}

impl Keyring {
    /// Reads the docker configurations of the secrets kubelet uses (by type and key); other
    /// secrets are ignored. A configuration that is not valid JSON fails, as it fails kubelet's
    /// pull.
    fn from_secrets(secrets: &[Secret]) -> Result<Self, String> {
        let mut keyring = Keyring::default();
        for secret in secrets {
            let data = |key: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|data| data.get(key))
                    .map(|bytes| bytes.0.as_slice())
                    .filter(|bytes| !bytes.is_empty())
            };
            let name = secret.metadata.name.as_deref().unwrap_or_default();
            let invalid = |e: String| format!("invalid image pull secret {name:?}: {e}");
            let config = match secret.type_.as_deref() {
                Some(SECRET_TYPE_DOCKER_CONFIG_JSON) => {
                    let Some(bytes) = data(SECRET_KEY_DOCKER_CONFIG_JSON) else {
                        continue;
                    };
                    let value: serde_json::Value =
                        serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
                    match field(&value, "auths") {
                        Some(auths) => auths.clone(),
                        None => continue,
                    }
                }
                Some(SECRET_TYPE_DOCKERCFG) => {
                    let Some(bytes) = data(SECRET_KEY_DOCKERCFG) else {
                        continue;
                    };
                    serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?
                }
                _ => continue,
            };
            keyring.add(&config).map_err(invalid)?;
        }
        Ok(keyring)
    }

    /// Adds a docker configuration (`{"<registry>": {"auth": …}}`), keyed as kubelet keys it:
    /// without scheme, `/v1/` and `/v2/` meaning the host itself.
    fn add(&mut self, config: &serde_json::Value) -> Result<(), String> {
        let Some(entries) = config.as_object() else {
            return Err("registry credentials are not a JSON object".into());
        };
        for (location, entry) in entries {
            let credential = parse_entry(entry).map_err(|e| format!("{location}: {e}"))?;
            let schemeless = location
                .strip_prefix("https://")
                .or_else(|| location.strip_prefix("http://"))
                .unwrap_or(location);
            let (host, path) = split_host_path(schemeless);
            let path = path
                .strip_prefix("/v2/")
                .or_else(|| path.strip_prefix("/v1/"))
                .map_or(path.to_owned(), |rest| format!("/{rest}"));
            let key = if path.is_empty() || path == "/" {
                host.to_owned()
            } else {
                format!("{host}{path}")
            };
            self.credentials.entry(key).or_default().push(credential);
        }
        Ok(())
    }

    /// The credentials for `repository` (`docker.io/library/busybox`,
    /// `127.0.0.1:5000/test/app`): those of every matching key, most specific key first; Docker
    /// Hub's under `index.docker.io` when nothing else matches a Docker Hub image.
    fn lookup(&self, repository: &str) -> Vec<Credential> {
        let found: Vec<Credential> = self
            .credentials
            .iter()
            .rev()
            .filter(|(key, _)| urls_match(key, repository))
            .flat_map(|(_, credentials)| credentials.iter().cloned())
            .collect();
        if !found.is_empty() {
            return found;
        }
        if is_default_registry_match(repository)
            && let Some(credentials) = self.credentials.get(DEFAULT_REGISTRY_HOST)
        {
            return credentials.clone();
        }
        Vec::new()
    }
}

/// A JSON object's field by name, ignoring case as Go's `encoding/json` does.
fn field<'a>(value: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    value
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// One registry's entry: `auth` (base64 of `user:password`) wins over `username` and
/// `password`, as in kubelet's `DockerConfigEntry`.
fn parse_entry(entry: &serde_json::Value) -> Result<Credential, String> {
    if !entry.is_object() {
        return Err("credentials are not a JSON object".into());
    }
    let text = |name: &str| -> Result<String, String> {
        match field(entry, name) {
            None | Some(serde_json::Value::Null) => Ok(String::new()),
            Some(serde_json::Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(format!("{name} is not a string")),
        }
    };
    let auth = text("auth")?;
    if auth.is_empty() {
        return Ok(Credential {
            username: text("username")?,
            password: text("password")?,
        });
    }
    // Go decodes padded text with the padded alphabet and the rest without padding.
    let decoded = if auth.trim().ends_with('=') {
        base64::engine::general_purpose::STANDARD.decode(&auth)
    } else {
        base64::engine::general_purpose::STANDARD_NO_PAD.decode(&auth)
    }
    .map_err(|e| format!("auth is not base64: {e}"))?;
    let decoded = String::from_utf8_lossy(&decoded);
    let Some((username, password)) = decoded.split_once(':') else {
        return Err(
            "unable to parse auth field, must be formatted as base64(username:password)".into(),
        );
    };
    Ok(Credential {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// `host[:port]` and `/path` (empty when there is none) of a URL without scheme.
fn split_host_path(schemeless: &str) -> (&str, &str) {
    match schemeless.find('/') {
        Some(slash) => schemeless.split_at(slash),
        None => (schemeless, ""),
    }
}

/// Go's `net.SplitHostPort`, falling back to the whole host without port when it fails.
fn split_host_port(host: &str) -> (&str, &str) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once("]:") {
            Some((address, port)) => (address, port),
            None => (host, ""),
        };
    }
    match host.split_once(':') {
        Some((name, port)) if !port.contains(':') => (name, port),
        _ => (host, ""),
    }
}

/// kubelet's `URLsMatch`: same port, same number of host labels each matching the glob's
/// (`*.example.com`), and the key's path a prefix of the image's.
fn urls_match(key: &str, repository: &str) -> bool {
    let (key_host, key_path) = split_host_path(key);
    let (target_host, target_path) = split_host_path(repository);
    let (key_name, key_port) = split_host_port(key_host);
    let (target_name, target_port) = split_host_port(target_host);
    let key_labels: Vec<&str> = key_name.split('.').collect();
    let target_labels: Vec<&str> = target_name.split('.').collect();
    key_port == target_port
        && key_labels.len() == target_labels.len()
        && target_path.starts_with(key_path)
        && key_labels
            .iter()
            .zip(&target_labels)
            .all(|(glob, label)| glob_match(glob.as_bytes(), label.as_bytes()))
}

/// `filepath.Match` for one host label: `*` any run of characters, `?` one character.
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    match glob.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_match(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((byte, rest)) => text.first() == Some(byte) && glob_match(rest, &text[1..]),
    }
}

/// Whether an image comes from Docker Hub, by kubelet's `isDefaultRegistryMatch`.
fn is_default_registry_match(repository: &str) -> bool {
    let Some((first, _)) = repository.split_once('/') else {
        return !repository.is_empty();
    };
    if first.is_empty() {
        return false;
    }
    if first == "docker.io" || first == "index.docker.io" {
        return true;
    }
    !first.contains(['.', ':']) && first != "localhost"
}

/// A duration as Go prints it once truncated to milliseconds, as kubelet's events show pull
/// times: `313ms`, `1.5s`, `2m3.004s`.
fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let hours = millis / 3_600_000;
    let minutes = millis / 60_000 % 60;
    let seconds = millis / 1000 % 60;
    let fraction = millis % 1000;
    let mut text = String::new();
    if hours > 0 {
        let _ = write!(text, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(text, "{minutes}m");
    }
    let _ = write!(text, "{seconds}");
    if fraction > 0 {
        let digits = format!("{fraction:03}");
        let _ = write!(text, ".{}", digits.trim_end_matches('0'));
    }
    text.push('s');
    text
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    use super::*;
    use crate::env::fake::FakeSource;

    fn secret(name: &str, type_: &str, key: &str, value: &serde_json::Value) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([(
                key.to_owned(),
                ByteString(value.to_string().into_bytes()),
            )])),
            ..Secret::default()
        }
    }

    fn docker_config_json(name: &str, auths: serde_json::Value) -> Secret {
        secret(
            name,
            SECRET_TYPE_DOCKER_CONFIG_JSON,
            SECRET_KEY_DOCKER_CONFIG_JSON,
            &json!({ "auths": auths }),
        )
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn login(username: &str, password: &str) -> Credential {
        Credential {
            username: username.into(),
            password: password.into(),
        }
    }

    #[test]
    fn docker_config_entries_read_auth_before_username_and_password() {
        let cases: Vec<(serde_json::Value, Result<Credential, &str>)> = vec![
            (
                json!({"auth": b64("user:pa:ss")}),
                Ok(login("user", "pa:ss")),
            ),
            // Unpadded base64 is accepted, as Go's RawStdEncoding does.
            (
                json!({"auth": b64("ab:c").trim_end_matches('=')}),
                Ok(login("ab", "c")),
            ),
            (
                json!({"username": "u", "password": "p", "email": "e@x"}),
                Ok(login("u", "p")),
            ),
            (
                json!({"Username": "u", "Password": "p"}),
                Ok(login("u", "p")),
            ),
            (
                json!({"username": "ignored", "auth": b64("a:b")}),
                Ok(login("a", "b")),
            ),
            (json!({}), Ok(login("", ""))),
            (
                json!({"auth": b64("no-colon")}),
                Err("unable to parse auth field, must be formatted as base64(username:password)"),
            ),
            (json!({"auth": "%%%"}), Err("auth is not base64")),
            (json!({"username": 7}), Err("username is not a string")),
            (json!("text"), Err("credentials are not a JSON object")),
        ];
        for (entry, expected) in cases {
            match (parse_entry(&entry), expected) {
                (Ok(actual), Ok(expected)) => assert_eq!(actual, expected, "{entry}"),
                (Err(actual), Err(expected)) => {
                    assert!(actual.starts_with(expected), "{entry}: {actual}")
                }
                (actual, expected) => panic!("{entry}: got {actual:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn keyring_matches_registries_as_kubelet_does() {
        let keyring = Keyring::from_secrets(&[
            docker_config_json(
                "regcred",
                json!({
                    "https://index.docker.io/v1/": {"auth": b64("hub:1")},
                    "127.0.0.1:5000": {"auth": b64("local:1")},
                    "http://localhost:5000/v2/": {"username": "local", "password": "2"},
                    "quay.io": {"auth": b64("quay:any")},
                    "quay.io/team": {"auth": b64("quay:team")},
                    "*.example.com": {"auth": b64("glob:1")},
                    "registry.test:8443/only/this/": {"auth": b64("path:1")},
                }),
            ),
            // The legacy format is the configuration itself, without "auths".
            secret(
                "legacy",
                SECRET_TYPE_DOCKERCFG,
                SECRET_KEY_DOCKERCFG,
                &json!({"127.0.0.1:5000": {"auth": b64("legacy:1")}}),
            ),
            // Opaque secrets are not pull secrets, whatever their keys.
            secret(
                "opaque",
                "Opaque",
                SECRET_KEY_DOCKER_CONFIG_JSON,
                &json!({"auths": {"127.0.0.1:5000": {"auth": b64("opaque:1")}}}),
            ),
        ])
        .unwrap();
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("docker.io/library/busybox", &[("hub", "1")]),
            ("docker.io/someone/app", &[("hub", "1")]),
            (
                "127.0.0.1:5000/test/busybox",
                &[("local", "1"), ("legacy", "1")],
            ),
            ("127.0.0.1:5001/test/busybox", &[]),
            ("localhost:5000/app", &[("local", "2")]),
            ("localhost/app", &[]),
            // The more specific key first, then the host's.
            ("quay.io/team/app", &[("quay", "team"), ("quay", "any")]),
            ("quay.io/other/app", &[("quay", "any")]),
            ("a.example.com/app", &[("glob", "1")]),
            // A glob label matches one label, not several.
            ("a.b.example.com/app", &[]),
            ("example.com/app", &[]),
            ("registry.test:8443/only/this/app", &[("path", "1")]),
            ("registry.test:8443/other/app", &[]),
            ("registry.k8s.io/pause", &[]),
        ];
        for (repository, expected) in cases {
            let expected: Vec<Credential> = expected.iter().map(|(u, p)| login(u, p)).collect();
            assert_eq!(keyring.lookup(repository), expected, "{repository}");
        }
    }

    #[test]
    fn credentials_are_tried_in_order_then_without_and_duplicates_once() {
        let keyring = Keyring::from_secrets(&[
            docker_config_json("a", json!({"127.0.0.1:5000": {"auth": b64("u:1")}})),
            docker_config_json("b", json!({"127.0.0.1:5000": {"auth": b64("u:1")}})),
            docker_config_json("c", json!({"127.0.0.1:5000": {"auth": b64("v:2")}})),
        ])
        .unwrap();
        let basic = |username: &str, password: &str| RegistryAuth::Basic {
            username: username.into(),
            password: password.into(),
        };
        assert_eq!(
            credentials_to_try(&keyring, "127.0.0.1:5000/test/app"),
            vec![basic("u", "1"), basic("v", "2"), RegistryAuth::Anonymous]
        );
        assert_eq!(
            credentials_to_try(&keyring, "registry.k8s.io/pause"),
            vec![RegistryAuth::Anonymous]
        );
    }

    #[test]
    fn a_pull_secret_that_is_not_json_fails_the_pull() {
        let mut broken = docker_config_json("broken", json!({}));
        broken.data = Some(BTreeMap::from([(
            SECRET_KEY_DOCKER_CONFIG_JSON.to_owned(),
            ByteString(b"{not json".to_vec()),
        )]));
        let error = Keyring::from_secrets(&[broken]).unwrap_err();
        assert!(
            error.starts_with("invalid image pull secret \"broken\": "),
            "{error}"
        );
        // An empty configuration is skipped, as kubelet skips it.
        let mut empty = docker_config_json("empty", json!({}));
        empty.data = Some(BTreeMap::from([(
            SECRET_KEY_DOCKER_CONFIG_JSON.to_owned(),
            ByteString(Vec::new()),
        )]));
        assert!(Keyring::from_secrets(&[empty]).is_ok());
    }

    #[tokio::test]
    async fn pull_secrets_are_read_from_the_pods_namespace_and_missing_ones_named() {
        let source = FakeSource::default();
        source.secrets.lock().unwrap().insert(
            "team/regcred".into(),
            docker_config_json("regcred", json!({})),
        );
        source.secrets.lock().unwrap().insert(
            "default/elsewhere".into(),
            docker_config_json("elsewhere", json!({})),
        );
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "team"},
            "spec": {
                "containers": [{"name": "main", "image": "x"}],
                "imagePullSecrets": [{"name": "regcred"}, {"name": "elsewhere"}, {"name": ""}],
            },
        }))
        .unwrap();
        let (secrets, unavailable) = pull_secrets(&pod, &source).await;
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].metadata.name.as_deref(), Some("regcred"));
        assert_eq!(unavailable, vec!["elsewhere".to_owned()]);

        let failing = FakeSource {
            failing: true,
            ..FakeSource::default()
        };
        let (secrets, unavailable) = pull_secrets(&pod, &failing).await;
        assert!(secrets.is_empty());
        assert_eq!(
            unavailable,
            vec!["regcred".to_owned(), "elsewhere".to_owned()]
        );
    }

    #[test]
    fn durations_print_as_go_prints_them_truncated_to_milliseconds() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_micros(999), "0s"),
            (Duration::from_micros(313_900), "313ms"),
            (Duration::from_millis(1000), "1s"),
            (Duration::from_millis(1234), "1.234s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(60_000), "1m0s"),
            (Duration::from_millis(123_004), "2m3.004s"),
            (Duration::from_millis(3_600_000), "1h0m0s"),
            (Duration::from_millis(3_723_400), "1h2m3.4s"),
        ];
        for (duration, expected) in cases {
            assert_eq!(go_duration(duration), expected, "{duration:?}");
        }
    }

    #[test]
    fn docker_hub_images_are_recognized_by_their_first_component() {
        let cases = [
            ("busybox", true),
            ("library/busybox", true),
            ("docker.io/library/busybox", true),
            ("index.docker.io/foo/bar", true),
            ("quay.io/foo", false),
            ("localhost/foo", false),
            ("127.0.0.1:5000/foo", false),
            ("", false),
        ];
        for (image, expected) in cases {
            assert_eq!(is_default_registry_match(image), expected, "{image}");
        }
    }
}
