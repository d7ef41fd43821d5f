//! A pod's `/etc/resolv.conf`, as kubelet writes it from `dnsPolicy` and `dnsConfig`:
//!
//! - `ClusterFirst` (the default): the cluster DNS server, the search path
//!   `<namespace>.svc.<domain> svc.<domain> <domain>` followed by the node's own search
//!   domains, and `options ndots:5`; a `hostNetwork` pod gets the node's file instead;
//! - `ClusterFirstWithHostNet`: the cluster's, also for `hostNetwork` pods;
//! - `Default`: the node's file;
//! - `None`: only what `dnsConfig` says.
//!
//! `dnsConfig` then adds nameservers and searches (duplicates dropped) and options (a later
//! option of the same name replaces an earlier one).

use k8s_openapi::api::core::v1::Pod;

/// The cluster DNS service this node's pods use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    pub nameserver: String,
    pub domain: String,
}

/// Kubernetes caps search paths at 32 domains (`MaxDNSSearchPaths`).
const MAX_SEARCHES: usize = 32;

#[derive(Default)]
struct ResolvConf {
    nameservers: Vec<String>,
    searches: Vec<String>,
    options: Vec<(String, Option<String>)>,
}

impl ResolvConf {
    fn parse(text: &str) -> Self {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(str::to_owned)),
                // The last `search` (or `domain`) line wins, as in the resolver.
                Some("search" | "domain") => conf.searches = words.map(str::to_owned).collect(),
                Some("options") => {
                    for option in words {
                        conf.set_option(option_of(option));
                    }
                }
                _ => {}
            }
        }
        conf
    }

    fn set_option(&mut self, (name, value): (String, Option<String>)) {
        match self.options.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 = value,
            None => self.options.push((name, value)),
        }
    }

    fn render(&self) -> String {
        let mut text = String::new();
        if !self.searches.is_empty() {
            text.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for nameserver in &self.nameservers {
            text.push_str(&format!("nameserver {nameserver}\n"));
        }
        if !self.options.is_empty() {
            let options: Vec<String> = self
                .options
                .iter()
                .map(|(name, value)| match value {
                    Some(value) => format!("{name}:{value}"),
                    None => name.clone(),
                })
                .collect();
            text.push_str(&format!("options {}\n", options.join(" ")));
        }
        text
    }
}

fn option_of(text: &str) -> (String, Option<String>) {
    match text.split_once(':') {
        Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
        None => (text.to_owned(), None),
    }
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|i| i == item) {
        list.push(item.to_owned());
    }
}

/// The resolv.conf of `pod`, given the node's own (`host`) and the cluster DNS (`None` when
/// pods have no cluster network, so that cluster names cannot be resolved anyway).
pub fn pod_resolv_conf(pod: &Pod, host: &str, cluster: Option<&ClusterDns>) -> String {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host_conf = ResolvConf::parse(host);
    let mut conf = match (policy, cluster) {
        ("None", _) => ResolvConf::default(),
        ("ClusterFirst", Some(cluster)) if !host_network => cluster_conf(pod, &host_conf, cluster),
        ("ClusterFirstWithHostNet", Some(cluster)) => cluster_conf(pod, &host_conf, cluster),
        _ => host_conf,
    };
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        for nameserver in config.nameservers.iter().flatten() {
            push_unique(&mut conf.nameservers, nameserver);
        }
        for search in config.searches.iter().flatten() {
            push_unique(&mut conf.searches, search);
        }
        for option in config.options.iter().flatten() {
            conf.set_option((
                option.name.clone().unwrap_or_default(),
                option.value.clone(),
            ));
        }
    }
    conf.searches.truncate(MAX_SEARCHES);
    conf.render()
}

fn cluster_conf(pod: &Pod, host: &ResolvConf, cluster: &ClusterDns) -> ResolvConf {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let domain = &cluster.domain;
    let mut searches = vec![
        format!("{namespace}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.clone(),
    ];
    for search in &host.searches {
        push_unique(&mut searches, search);
    }
    ResolvConf {
        nameservers: vec![cluster.nameserver.clone()],
        searches,
        options: vec![("ndots".into(), Some("5".into()))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOST: &str =
        "# from the node\nsearch corp.example\nnameserver 192.0.2.53\noptions edns0\n";

    fn cluster() -> ClusterDns {
        ClusterDns {
            nameserver: "10.43.0.10".into(),
            domain: "cluster.local".into(),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn each_dns_policy_writes_what_kubelet_writes() {
        let cases = [
            (
                json!({}),
                "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.43.0.10\noptions ndots:5\n",
            ),
            (
                json!({"hostNetwork": true}),
                "search corp.example\nnameserver 192.0.2.53\noptions edns0\n",
            ),
            (
                json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
                "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.43.0.10\noptions ndots:5\n",
            ),
            (
                json!({"dnsPolicy": "Default"}),
                "search corp.example\nnameserver 192.0.2.53\noptions edns0\n",
            ),
            (
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.2.3.4"], "searches": ["a.b"], "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}}),
                "search a.b\nnameserver 1.2.3.4\noptions ndots:2 rotate\n",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(
                pod_resolv_conf(&pod(spec.clone()), HOST, Some(&cluster())),
                want,
                "{spec}"
            );
        }
    }

    #[test]
    fn dns_config_adds_to_the_policy_and_overrides_options_by_name() {
        let spec = json!({"dnsConfig": {"nameservers": ["10.43.0.10", "1.1.1.1"], "searches": ["x.y"], "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]}});
        assert_eq!(
            pod_resolv_conf(&pod(spec), HOST, Some(&cluster())),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example x.y\nnameserver 10.43.0.10\nnameserver 1.1.1.1\noptions ndots:1 edns0\n"
        );
    }

    #[test]
    fn without_a_cluster_network_pods_get_the_nodes_file() {
        assert_eq!(
            pod_resolv_conf(&pod(json!({})), HOST, None),
            "search corp.example\nnameserver 192.0.2.53\noptions edns0\n"
        );
    }
}
