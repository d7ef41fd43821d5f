//! Image references with Docker's normalization rules (`github.com/distribution/reference`,
//! `ParseNormalizedNamed`), which is what the kubelet applies before it asks a runtime for an
//! image. Written by hand rather than with a regex so that each rule of the grammar is visible:
//!
//! ```text
//! reference := name [ ":" tag ] [ "@" digest ]
//! name      := [ domain "/" ] path-component ( "/" path-component )*
//! domain    := host [ ":" port ]      host := domain-name | "[" ipv6 "]"
//! path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag       := [\w][\w.-]{0,127}
//! digest    := algorithm ":" hex
//! ```

use std::fmt;

use super::ImageError;

/// Registry that names without a domain belong to.
const DEFAULT_DOMAIN: &str = "docker.io";
/// The old name of Docker Hub, rewritten to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Namespace of Docker Hub's official images: `busybox` is `library/busybox`.
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// Longest repository name (domain and path) the distribution grammar accepts.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

/// The reasons `distribution/reference` gives, reproduced so that users see the messages they
/// know from other Kubernetes runtimes.
const INVALID_FORMAT: &str = "invalid reference format";

/// A parsed, normalized image reference: always has a domain, and Docker Hub names always have
/// a namespace (`docker.io/library/busybox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, with port if any: `docker.io`, `localhost:5000`.
    pub domain: String,
    /// Repository path inside the registry: `library/busybox`.
    pub path: String,
    pub tag: Option<String>,
    /// Manifest digest, `algorithm:hex`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `reference` the way the kubelet does (Docker's normalization), without adding a
    /// default tag.
    pub fn parse(reference: &str) -> Result<Self, ImageError> {
        parse_normalized(reference).map_err(|reason| ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason,
        })
    }

    /// `domain/path`: the repository, without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// Adds the `latest` tag when the reference has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_owned());
        }
        self
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Normalizes an image reference with Docker's rules: `busybox` becomes
/// `docker.io/library/busybox:latest`, `foo/bar` becomes `docker.io/foo/bar:latest`, a first
/// component with `.` or `:` or equal to `localhost` is a registry, and a digest reference keeps
/// its `@sha256:…` (and gets no default tag). Invalid references give
/// [`ImageError::InvalidReference`], whose message is the kubelet's `InvalidImageName` one.
pub fn normalize_reference(reference: &str) -> Result<String, ImageError> {
    Ok(Reference::parse(reference)?.with_default_tag().to_string())
}

/// `ParseNormalizedNamed` followed by `Parse`: the error is the reason text only.
fn parse_normalized(input: &str) -> Result<Reference, String> {
    if input.len() == 64 && input.bytes().all(is_lower_hex) {
        return Err(format!(
            "invalid repository name ({input}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    let (domain, remainder) = split_docker_domain(input);

    // Docker checks the case of the repository before the grammar so that `Busybox` gets a
    // message that says what is wrong.
    let remote_name = remainder.split(':').next().unwrap_or_default();
    if remote_name.to_lowercase() != remote_name {
        return Err(format!(
            "{INVALID_FORMAT}: repository name ({remote_name}) must be lowercase"
        ));
    }

    let (name_and_tag, digest) = match remainder.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (remainder.as_str(), None),
    };
    // The tag follows the last ':' of the path; a ':' in the domain was split off above.
    let (path, tag) = match name_and_tag.rsplit_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (name_and_tag, None),
    };

    // A "domain" that is not a valid host may still be a valid first path component
    // (`foo_bar.com/x`): the distribution grammar then reads the whole name as a path.
    let domain_valid = is_domain(&domain) || is_path_component(&domain);
    if !domain_valid || !path.split('/').all(is_path_component) {
        return Err(INVALID_FORMAT.to_owned());
    }
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return Err(INVALID_FORMAT.to_owned());
    }
    if let Some(digest) = digest {
        validate_digest(digest)?;
    }
    if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        ));
    }
    Ok(Reference {
        domain,
        path: path.to_owned(),
        tag: tag.map(str::to_owned),
        digest: digest.map(str::to_owned),
    })
}

/// Docker's `splitDockerDomain`: the first component is a registry only when it looks like a
/// host (has `.` or `:`, is `localhost`, or has uppercase letters, which repositories cannot).
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_owned();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

fn is_lower_hex(byte: u8) -> bool {
    byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)
}

fn is_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // IPv6 literal: `[::1]` or `[::1]:5000`.
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("[]", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    let host_valid = host == "[]" || host.split('.').all(is_domain_component);
    let port_valid = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    host_valid && port_valid
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// `[a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*`
fn is_path_component(component: &str) -> bool {
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    let mut expect_alphanumeric = true;
    while i < bytes.len() {
        if alphanumeric(&bytes[i]) {
            i += 1;
            expect_alphanumeric = false;
            continue;
        }
        if expect_alphanumeric {
            return false;
        }
        // A separator: one '.', one or two '_', or any number of '-'.
        let separator = bytes[i];
        let run = bytes[i..].iter().take_while(|b| **b == separator).count();
        let valid = match separator {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !valid {
            return false;
        }
        i += run;
        expect_alphanumeric = true;
    }
    !expect_alphanumeric
}

/// `[\w][\w.-]{0,127}`
fn is_tag(tag: &str) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = tag.as_bytes();
    bytes.first().is_some_and(word)
        && bytes.len() <= TAG_LENGTH_MAX
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-')
}

/// The digest grammar of the reference, then go-digest's checks for the algorithms it knows.
fn validate_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err(INVALID_FORMAT.to_owned());
    };
    let algorithm_valid = algorithm.split(['+', '.', '_', '-']).all(|component| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    });
    if !algorithm_valid || encoded.len() < 32 || !encoded.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(INVALID_FORMAT.to_owned());
    }
    let hex_length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm".to_owned()),
    };
    if encoded.len() != hex_length {
        return Err("invalid checksum digest length".to_owned());
    }
    if !encoded.bytes().all(is_lower_hex) {
        return Err("invalid checksum digest format".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalize_reference_follows_docker_rules() {
        let digest_ref = format!("busybox@{DIGEST}");
        let tagged_digest_ref = format!("busybox:1.36@{DIGEST}");
        let normalized_digest = format!("docker.io/library/busybox@{DIGEST}");
        let normalized_tagged_digest = format!("docker.io/library/busybox:1.36@{DIGEST}");
        let cases: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("foo/bar", "docker.io/foo/bar:latest"),
            ("foo/bar/baz:v1", "docker.io/foo/bar/baz:v1"),
            ("localhost/foo", "localhost/foo:latest"),
            ("localhost:5000/test/httpd:1", "localhost:5000/test/httpd:1"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("capstan.test/busybox:1", "capstan.test/busybox:1"),
            ("[::1]:5000/foo:v1", "[::1]:5000/foo:v1"),
            ("Registry/foo", "Registry/foo:latest"),
            ("a-b__c.d/e--f_g:TAG_1.x-y", "a-b__c.d/e--f_g:TAG_1.x-y"),
            (&digest_ref, &normalized_digest),
            (&tagged_digest_ref, &normalized_tagged_digest),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_reference(input).as_deref().ok(),
                Some(*expected),
                "{input}"
            );
        }
    }

    #[test]
    fn normalize_reference_rejects_invalid_names_with_kubernetes_reasons() {
        let hex_id = &DIGEST["sha256:".len()..];
        let short_digest = "busybox@sha256:0123456789abcdef";
        let wrong_length_digest = "busybox@sha256:0123456789abcdef0123456789abcdef";
        let upper_digest = format!("busybox@{}", DIGEST.to_uppercase().replace("SHA", "sha"));
        let hex_id_reason = format!(
            "invalid repository name ({hex_id}), cannot specify 64-byte hexadecimal strings"
        );
        let too_long = format!("{}:1", "a".repeat(300));
        let cases: &[(&str, &str)] = &[
            ("", INVALID_FORMAT),
            (
                "Busybox",
                "invalid reference format: repository name (library/Busybox) must be lowercase",
            ),
            (
                "localhost:5000/Foo",
                "invalid reference format: repository name (Foo) must be lowercase",
            ),
            ("busybox:", INVALID_FORMAT),
            (":latest", INVALID_FORMAT),
            ("busybox:-x", INVALID_FORMAT),
            ("bus ybox", INVALID_FORMAT),
            ("a..b", INVALID_FORMAT),
            ("a___b", INVALID_FORMAT),
            ("foo/", INVALID_FORMAT),
            ("/foo", INVALID_FORMAT),
            ("http://foo/bar", INVALID_FORMAT),
            ("localhost:port/foo", INVALID_FORMAT),
            (short_digest, INVALID_FORMAT),
            (wrong_length_digest, "invalid checksum digest length"),
            (&upper_digest, "invalid checksum digest format"),
            (
                "busybox@md5:0123456789abcdef0123456789abcdef",
                "unsupported digest algorithm",
            ),
            (hex_id, &hex_id_reason),
            (
                &too_long,
                "repository name must not be more than 255 characters",
            ),
        ];
        for (input, reason) in cases {
            match normalize_reference(input) {
                Err(ImageError::InvalidReference {
                    reference,
                    reason: actual,
                }) => {
                    assert_eq!(reference, *input);
                    assert_eq!(actual, *reason, "{input}");
                }
                other => panic!("{input}: expected InvalidReference, got {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_reference_message_is_the_kubelet_one() {
        let error = normalize_reference("bus ybox").unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"Failed to apply default image tag "bus ybox": couldn't parse image name "bus ybox": invalid reference format"#
        );
    }

    #[test]
    fn repository_leaves_out_tag_and_digest() {
        let reference = Reference::parse(&format!("localhost:5000/x:1@{DIGEST}")).unwrap();
        assert_eq!(reference.repository(), "localhost:5000/x");
        assert_eq!(reference.tag.as_deref(), Some("1"));
        assert_eq!(reference.digest.as_deref(), Some(DIGEST));
    }
}
