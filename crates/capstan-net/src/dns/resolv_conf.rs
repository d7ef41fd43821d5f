//! The node's upstream resolvers, from resolv.conf.

use std::net::{IpAddr, SocketAddr};

use super::DnsError;

/// The `nameserver` addresses of a resolv.conf, port 53, in file order. Comments (`#`, `;`),
/// other options and addresses that do not parse (e.g. with a `%zone`) are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut upstreams = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        let upstream = SocketAddr::new(ip, 53);
        if !upstreams.contains(&upstream) {
            upstreams.push(upstream);
        }
    }
    upstreams
}

/// [`parse_resolv_conf`] of the file at `path` (normally `/etc/resolv.conf`).
pub async fn read_resolv_conf(path: &str) -> Result<Vec<SocketAddr>, DnsError> {
    let text =
        tokio::fs::read_to_string(path)
            .await
            .map_err(|source| DnsError::ReadResolvConf {
                path: path.to_owned(),
                source,
            })?;
    Ok(parse_resolv_conf(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_in_order_with_port_53() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\n\
                    nameserver   2001:db8::1  \noptions ndots:5\nnameserver 10.0.0.3 # backup\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[2001:db8::1]:53".parse().unwrap(),
                "10.0.0.3:53".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn comments_garbage_and_duplicates_are_skipped() {
        let text = "; nameserver 1.1.1.1\n#nameserver 8.8.8.8\nnameserver\nnameserver not-an-ip\n\
                    nameserver fe80::1%eth0\nnameservers 10.0.0.9\nnameserver 10.0.0.2\nnameserver 10.0.0.2\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec!["10.0.0.2:53".parse().unwrap()]
        );
    }

    #[test]
    fn an_empty_file_has_no_upstreams() {
        assert!(parse_resolv_conf("").is_empty());
    }

    #[tokio::test]
    async fn a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        assert!(read_resolv_conf(path.to_str().unwrap()).await.is_err());
        std::fs::write(&path, "nameserver 192.0.2.1\n").unwrap();
        assert_eq!(
            read_resolv_conf(path.to_str().unwrap()).await.unwrap(),
            vec!["192.0.2.1:53".parse().unwrap()]
        );
    }
}
