//! Authentication: who is asking. A client certificate signed by the cluster CA names the user
//! (CN) and groups (O); otherwise a bearer token from the token file does. Authorization comes
//! later; the identity already reaches every handler.

use std::collections::HashMap;
use std::path::Path;

/// The authenticated user, as Kubernetes' `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    fn new(name: String, mut groups: Vec<String>) -> Self {
        groups.push("system:authenticated".to_string());
        UserInfo { name, groups }
    }
}

/// The identity in a client certificate that the TLS layer already verified against the CA.
pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(UserInfo::new(name, groups))
}

/// Static bearer tokens, in kube-apiserver's `--token-auth-file` format:
/// `token,user,uid,"group1,group2"` per line.
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut tokens = HashMap::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let mut fields = line.splitn(4, ',');
            let (Some(token), Some(user)) = (fields.next(), fields.next()) else {
                continue;
            };
            let _uid = fields.next();
            let groups = fields
                .next()
                .map(|g| {
                    g.trim_matches('"')
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(token.to_string(), UserInfo::new(user.to_string(), groups));
        }
        TokenFile { tokens }
    }

    /// The user of an `Authorization` header value, if it carries a known bearer token.
    pub fn authenticate(&self, authorization: &str) -> Option<UserInfo> {
        let token = authorization.strip_prefix("Bearer ")?.trim();
        self.tokens.get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines_name_user_and_groups() {
        let file = TokenFile::parse("# comment\nsecret,alice,1,\"dev,ops\"\nother,bob,2\n");
        let alice = file.authenticate("Bearer secret").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(
            file.authenticate("Bearer other").unwrap().groups,
            vec!["system:authenticated"]
        );
        assert!(file.authenticate("Bearer nope").is_none());
        assert!(file.authenticate("Basic secret").is_none());
    }
}
