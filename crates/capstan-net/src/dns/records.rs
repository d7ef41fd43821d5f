//! The cluster's DNS records, built from Services and EndpointSlices without any I/O.
//!
//! [`Records`] is an immutable snapshot: the watcher builds a new one on every change and the
//! server swaps it in whole, so a lookup never sees half a rebuild. Names are compared
//! case-insensitively (hickory's [`Name`] hashes and compares that way).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// TTL of every answer, CoreDNS' default for its `kubernetes` plugin.
pub const TTL: u32 = 5;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Version of the Kubernetes DNS schema served in `dns-version.<domain>`.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// What a lookup found.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// NOERROR with these answers (and additional records, the targets of SRV answers).
    Answer {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// NOERROR without answers: the name exists, but not with this type.
    NoData,
    /// NXDOMAIN: a name inside the cluster domain that does not exist.
    NxDomain,
    /// Neither inside the cluster domain nor a reverse name we know: forward it.
    NotOurs,
}

/// One snapshot of all records of the cluster domain.
#[derive(Debug, Clone)]
pub struct Records {
    domain: Name,
    /// Every existing name with its records; empty for names that exist only because names
    /// below them do (empty non-terminals answer NODATA, not NXDOMAIN).
    names: HashMap<Name, Vec<Record>>,
    soa: Record,
}

impl Records {
    /// Records for `services` and the EndpointSlices that belong to them, under `domain`
    /// (e.g. `cluster.local`). Objects with names that are not valid DNS labels are skipped.
    pub fn build<'a>(
        domain: &Name,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let mut domain = domain.to_lowercase();
        domain.set_fqdn(true);
        let mut builder = Builder {
            domain: domain.clone(),
            names: HashMap::new(),
            srv: BTreeMap::new(),
        };

        let mut slices_by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
            let labels = slice.metadata.labels.as_ref();
            if let Some(service) = labels.and_then(|labels| labels.get(SERVICE_NAME_LABEL)) {
                slices_by_service
                    .entry((namespace, service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }

        for service in services {
            let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
            let name = service.metadata.name.as_deref().unwrap_or_default();
            let slices = slices_by_service
                .get(&(namespace, name))
                .map(Vec::as_slice)
                .unwrap_or_default();
            if builder
                .add_service(namespace, name, service, slices)
                .is_none()
            {
                tracing::debug!("no DNS records for service {namespace}/{name}: invalid name");
            }
        }
        builder.finish()
    }

    /// An empty snapshot (only the apex records): what the server answers before the first list.
    pub fn empty(domain: &Name) -> Self {
        Self::build(domain, [], [])
    }

    /// The cluster domain, lowercase and fully qualified.
    pub fn domain(&self) -> &Name {
        &self.domain
    }

    /// The SOA record of the cluster domain, for the authority section of negative answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// How many names exist (including empty non-terminals).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no names at all (never true: the apex always exists).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Answers `name` (any case) of type `query_type`.
    pub fn lookup(&self, name: &Name, query_type: RecordType) -> Lookup {
        if let Some(records) = self.names.get(name) {
            // A CNAME owner has no other records: it answers every type.
            let matching: Vec<Record> = records
                .iter()
                .filter(|record| {
                    query_type == RecordType::ANY
                        || record.record_type() == query_type
                        || record.record_type() == RecordType::CNAME
                })
                .map(|record| with_owner(record, name))
                .collect();
            if matching.is_empty() {
                return Lookup::NoData;
            }
            let additionals = if query_type == RecordType::SRV {
                self.srv_additionals(&matching)
            } else {
                Vec::new()
            };
            return Lookup::Answer {
                answers: matching,
                additionals,
            };
        }
        if !self.domain.zone_of(name) {
            return Lookup::NotOurs;
        }
        match self.pod_ip(name) {
            Some(ip) => {
                let rdata = match (ip, query_type) {
                    (IpAddr::V4(ip), RecordType::A | RecordType::ANY) => RData::A(A(ip)),
                    (IpAddr::V6(ip), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(ip)),
                    _ => return Lookup::NoData,
                };
                Lookup::Answer {
                    answers: vec![Record::from_rdata(name.clone(), TTL, rdata)],
                    additionals: Vec::new(),
                }
            }
            None => Lookup::NxDomain,
        }
    }

    /// The address in `<a-b-c-d>.<ns>.pod.<domain>` (CoreDNS `pods insecure`: any address is
    /// answered without checking that a pod has it). IPv6 addresses use `-` for `:`.
    fn pod_ip(&self, name: &Name) -> Option<IpAddr> {
        if usize::from(name.num_labels()) != usize::from(self.domain.num_labels()) + 3 {
            return None;
        }
        let mut labels = name.iter();
        let address = std::str::from_utf8(labels.next()?).ok()?;
        let _namespace = labels.next()?;
        if !labels.next()?.eq_ignore_ascii_case(b"pod") {
            return None;
        }
        if let Ok(ip) = address.replace('-', ".").parse::<Ipv4Addr>() {
            return Some(IpAddr::V4(ip));
        }
        address
            .replace('-', ":")
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6)
    }

    /// The A and AAAA records of the targets of SRV answers.
    fn srv_additionals(&self, answers: &[Record]) -> Vec<Record> {
        let mut seen = HashSet::new();
        let mut additionals = Vec::new();
        for answer in answers {
            let RData::SRV(srv) = &answer.data else {
                continue;
            };
            if !seen.insert(&srv.target) {
                continue;
            }
            if let Some(records) = self.names.get(&srv.target) {
                additionals.extend(
                    records
                        .iter()
                        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
                        .cloned(),
                );
            }
        }
        additionals
    }
}

/// A stored record answered under the exact spelling of the question (clients compare the
/// owner name with the question, some case-sensitively).
fn with_owner(record: &Record, name: &Name) -> Record {
    let mut record = record.clone();
    record.name = name.clone();
    record
}

struct Builder {
    domain: Name,
    names: HashMap<Name, Vec<Record>>,
    /// SRV owner → (port, target), collected first so that weights can share 100.
    srv: BTreeMap<Name, Vec<(u16, Name)>>,
}

impl Builder {
    fn add_service(
        &mut self,
        namespace: &str,
        name: &str,
        service: &Service,
        slices: &[&EndpointSlice],
    ) -> Option<()> {
        let service_name = Name::from_ascii(format!("{name}.{namespace}.svc"))
            .ok()?
            .append_domain(&self.domain)
            .ok()?
            .to_lowercase();
        let Some(spec) = service.spec.as_ref() else {
            return Some(());
        };

        if spec.type_.as_deref() == Some("ExternalName") {
            let Some(external) = spec.external_name.as_deref() else {
                return Some(());
            };
            let mut target = Name::from_ascii(external).ok()?;
            target.set_fqdn(true);
            self.add(&service_name, RData::CNAME(CNAME(target)));
            return Some(());
        }

        let cluster_ips: Vec<&str> = match spec.cluster_ips.as_deref() {
            Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
            _ => spec.cluster_ip.as_deref().into_iter().collect(),
        };
        let headless = cluster_ips.first() == Some(&"None");
        if headless {
            let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
            self.add_headless(&service_name, slices, publish_not_ready);
            return Some(());
        }

        let ips: Vec<IpAddr> = cluster_ips
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if ips.is_empty() {
            // Not allocated yet: no records until it is.
            return Some(());
        }
        for ip in &ips {
            self.add(&service_name, address_rdata(*ip));
            self.add(&Name::from(*ip), RData::PTR(PTR(service_name.clone())));
        }
        for port in spec.ports.iter().flatten() {
            let (Some(port_name), Ok(number)) = (port.name.as_deref(), u16::try_from(port.port))
            else {
                continue;
            };
            if port_name.is_empty() {
                continue;
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            if let Some(owner) = srv_name(port_name, protocol, &service_name) {
                self.srv
                    .entry(owner)
                    .or_default()
                    .push((number, service_name.clone()));
            }
        }
        Some(())
    }

    fn add_headless(&mut self, service_name: &Name, slices: &[&EndpointSlice], not_ready: bool) {
        let mut seen = HashSet::new();
        let mut srv_owners: Vec<(Name, u16)> = Vec::new();
        for slice in slices {
            for port in slice.ports.iter().flatten() {
                let (Some(port_name), Some(number)) = (port.name.as_deref(), port.port) else {
                    continue;
                };
                let Ok(number) = u16::try_from(number) else {
                    continue;
                };
                if port_name.is_empty() {
                    continue;
                }
                let protocol = port.protocol.as_deref().unwrap_or("TCP");
                if let Some(owner) = srv_name(port_name, protocol, service_name)
                    && !srv_owners.contains(&(owner.clone(), number))
                {
                    srv_owners.push((owner, number));
                }
            }
        }
        for slice in slices {
            for endpoint in &slice.endpoints {
                let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                if !ready && !not_ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    let Ok(ip) = address.parse::<IpAddr>() else {
                        continue;
                    };
                    if !seen.insert(ip) {
                        continue;
                    }
                    // The spec lets endpoints without a hostname have a system-assigned one;
                    // CoreDNS uses the dashed address, and so do we.
                    let hostname = match endpoint.hostname.as_deref() {
                        Some(hostname) if !hostname.is_empty() => hostname.to_owned(),
                        _ => dashed(ip),
                    };
                    let Some(endpoint_name) = Name::from_ascii(&hostname)
                        .ok()
                        .and_then(|label| label.append_domain(service_name).ok())
                        .map(|name| name.to_lowercase())
                    else {
                        continue;
                    };
                    self.add(service_name, address_rdata(ip));
                    self.add(&endpoint_name, address_rdata(ip));
                    self.add(&Name::from(ip), RData::PTR(PTR(endpoint_name.clone())));
                    for (owner, port) in &srv_owners {
                        let targets = self.srv.entry(owner.clone()).or_default();
                        if !targets.contains(&(*port, endpoint_name.clone())) {
                            targets.push((*port, endpoint_name.clone()));
                        }
                    }
                }
            }
        }
    }

    fn add(&mut self, name: &Name, rdata: RData) {
        let records = self.names.entry(name.clone()).or_default();
        if !records.iter().any(|record| record.data == rdata) {
            records.push(Record::from_rdata(name.clone(), TTL, rdata));
        }
    }

    fn finish(mut self) -> Records {
        for (owner, targets) in std::mem::take(&mut self.srv) {
            let weight = u16::try_from(100 / targets.len().max(1))
                .unwrap_or(1)
                .max(1);
            for (port, target) in targets {
                self.add(&owner, RData::SRV(SRV::new(0, weight, port, target)));
            }
        }

        let domain = self.domain.clone();
        let soa = Record::from_rdata(
            domain.clone(),
            TTL,
            RData::SOA(SOA::new(
                Name::from_ascii("ns.dns")
                    .and_then(|ns| ns.append_domain(&domain))
                    .unwrap_or_else(|_| domain.clone()),
                Name::from_ascii("hostmaster")
                    .and_then(|host| host.append_domain(&domain))
                    .unwrap_or_else(|_| domain.clone()),
                1,
                7200,
                1800,
                86400,
                TTL,
            )),
        );
        self.names
            .entry(domain.clone())
            .or_default()
            .push(soa.clone());
        if let Ok(version) = Name::from_ascii("dns-version").and_then(|v| v.append_domain(&domain))
        {
            self.add(
                &version,
                RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_owned()])),
            );
        }

        // Empty non-terminals: `svc.<domain>`, `<ns>.svc.<domain>`, `_tcp.<svc>...` exist.
        let in_domain: Vec<Name> = self
            .names
            .keys()
            .filter(|name| domain.zone_of(name))
            .cloned()
            .collect();
        for name in in_domain {
            let mut parent = name.base_name();
            while parent.num_labels() > domain.num_labels() {
                self.names.entry(parent.clone()).or_default();
                parent = parent.base_name();
            }
        }
        for label in ["svc", "pod"] {
            if let Ok(name) = Name::from_ascii(label).and_then(|l| l.append_domain(&domain)) {
                self.names.entry(name).or_default();
            }
        }

        Records {
            domain,
            names: self.names,
            soa,
        }
    }
}

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(ip) => RData::A(A(ip)),
        IpAddr::V6(ip) => RData::AAAA(AAAA(ip)),
    }
}

/// `_<port>._<proto>.<service name>`, the protocol lowercase as in CoreDNS.
fn srv_name(port: &str, protocol: &str, service_name: &Name) -> Option<Name> {
    Name::from_ascii(format!(
        "_{}._{}",
        port.to_ascii_lowercase(),
        protocol.to_ascii_lowercase()
    ))
    .ok()?
    .append_domain(service_name)
    .ok()
}

/// `10-1-2-3` for 10.1.2.3, `fd00--1` for fd00::1.
fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string().replace('.', "-"),
        IpAddr::V6(ip) => ip.to_string().replace(':', "-"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    pub(crate) fn domain() -> Name {
        Name::from_ascii("cluster.local.").unwrap()
    }

    pub(crate) fn service(namespace: &str, name: &str, spec: ServiceSpec) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    pub(crate) fn cluster_ip(namespace: &str, name: &str, ip: &str) -> Service {
        service(
            namespace,
            name,
            ServiceSpec {
                cluster_ip: Some(ip.into()),
                cluster_ips: Some(vec![ip.into()]),
                ports: Some(vec![
                    ServicePort {
                        name: Some("http".into()),
                        port: 80,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    },
                    ServicePort {
                        name: Some("dns".into()),
                        port: 53,
                        protocol: Some("UDP".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            },
        )
    }

    pub(crate) fn headless(namespace: &str, name: &str) -> Service {
        service(
            namespace,
            name,
            ServiceSpec {
                cluster_ip: Some("None".into()),
                ..Default::default()
            },
        )
    }

    /// A slice of `service` with endpoints (address, hostname, ready) and port `web`/8080.
    pub(crate) fn slice(
        namespace: &str,
        service: &str,
        endpoints: &[(&str, Option<&str>, bool)],
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{service}-abcde")),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([(
                    SERVICE_NAME_LABEL.to_owned(),
                    service.to_owned(),
                )])),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .map(|(address, hostname, ready)| Endpoint {
                    addresses: vec![(*address).into()],
                    hostname: hostname.map(Into::into),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                name: Some("web".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        }
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn answer_data(records: &Records, query: &str, query_type: RecordType) -> Vec<RData> {
        match records.lookup(&name(query), query_type) {
            Lookup::Answer { answers, .. } => answers.into_iter().map(|r| r.data).collect(),
            other => panic!("{query} {query_type}: {other:?}"),
        }
    }

    fn a(ip: &str) -> RData {
        RData::A(A(ip.parse().unwrap()))
    }

    #[test]
    fn a_cluster_ip_service_has_an_a_record_with_ttl_5() {
        let records = Records::build(&domain(), &[cluster_ip("ns", "web", "10.96.0.10")], []);
        let Lookup::Answer { answers, .. } =
            records.lookup(&name("web.ns.svc.cluster.local."), RecordType::A)
        else {
            panic!("no answer");
        };
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].ttl, TTL);
        assert_eq!(answers[0].data, a("10.96.0.10"));
    }

    #[test]
    fn names_are_case_insensitive_and_answered_in_the_question_spelling() {
        let records = Records::build(&domain(), &[cluster_ip("ns", "web", "10.96.0.10")], []);
        let Lookup::Answer { answers, .. } =
            records.lookup(&name("WEB.Ns.SVC.cluster.LOCAL."), RecordType::A)
        else {
            panic!("no answer");
        };
        assert_eq!(answers[0].name.to_ascii(), "WEB.Ns.SVC.cluster.LOCAL.");
    }

    #[test]
    fn an_ipv6_cluster_ip_is_an_aaaa_record_and_a_is_nodata() {
        let records = Records::build(&domain(), &[cluster_ip("ns", "v6", "fd00::10")], []);
        assert_eq!(
            answer_data(&records, "v6.ns.svc.cluster.local.", RecordType::AAAA),
            vec![RData::AAAA(AAAA("fd00::10".parse().unwrap()))]
        );
        assert_eq!(
            records.lookup(&name("v6.ns.svc.cluster.local."), RecordType::A),
            Lookup::NoData
        );
    }

    #[test]
    fn dual_stack_services_have_both_families() {
        let mut svc = cluster_ip("ns", "dual", "10.96.0.11");
        svc.spec.as_mut().unwrap().cluster_ips = Some(vec!["10.96.0.11".into(), "fd00::11".into()]);
        let records = Records::build(&domain(), &[svc], []);
        assert_eq!(
            answer_data(&records, "dual.ns.svc.cluster.local.", RecordType::A).len(),
            1
        );
        assert_eq!(
            answer_data(&records, "dual.ns.svc.cluster.local.", RecordType::AAAA).len(),
            1
        );
    }

    #[test]
    fn unknown_names_are_nxdomain_and_parents_of_names_are_nodata() {
        let records = Records::build(&domain(), &[cluster_ip("ns", "web", "10.96.0.10")], []);
        for missing in [
            "nope.ns.svc.cluster.local.",
            "web.other.svc.cluster.local.",
            "x.web.ns.svc.cluster.local.",
            "foo.cluster.local.",
        ] {
            assert_eq!(
                records.lookup(&name(missing), RecordType::A),
                Lookup::NxDomain,
                "{missing}"
            );
        }
        for empty in [
            "ns.svc.cluster.local.",
            "svc.cluster.local.",
            "_tcp.web.ns.svc.cluster.local.",
        ] {
            assert_eq!(
                records.lookup(&name(empty), RecordType::A),
                Lookup::NoData,
                "{empty}"
            );
        }
        assert_eq!(
            records.lookup(&name("web.ns.svc.cluster.local."), RecordType::MX),
            Lookup::NoData
        );
    }

    #[test]
    fn names_outside_the_domain_are_not_ours() {
        let records = Records::build(&domain(), &[cluster_ip("ns", "web", "10.96.0.10")], []);
        assert_eq!(
            records.lookup(&name("example.com."), RecordType::A),
            Lookup::NotOurs
        );
        assert_eq!(
            records.lookup(&name("9.9.9.9.in-addr.arpa."), RecordType::PTR),
            Lookup::NotOurs
        );
    }

    #[test]
    fn named_service_ports_have_srv_records_pointing_at_the_service() {
        let records = Records::build(&domain(), &[cluster_ip("ns", "web", "10.96.0.10")], []);
        let Lookup::Answer {
            answers,
            additionals,
        } = records.lookup(
            &name("_http._tcp.web.ns.svc.cluster.local."),
            RecordType::SRV,
        )
        else {
            panic!("no answer");
        };
        assert_eq!(
            answers.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
            vec![RData::SRV(SRV::new(
                0,
                100,
                80,
                name("web.ns.svc.cluster.local.")
            ))]
        );
        assert_eq!(additionals.len(), 1);
        assert_eq!(additionals[0].data, a("10.96.0.10"));
        assert_eq!(
            answer_data(
                &records,
                "_dns._udp.web.ns.svc.cluster.local.",
                RecordType::SRV
            )
            .len(),
            1
        );
    }

    #[test]
    fn a_headless_service_answers_its_ready_endpoints() {
        let records = Records::build(
            &domain(),
            &[headless("ns", "db")],
            &[slice(
                "ns",
                "db",
                &[
                    ("10.244.0.5", Some("db-0"), true),
                    ("10.244.0.6", None, true),
                    ("10.244.0.7", Some("db-2"), false),
                ],
            )],
        );
        let mut ips = answer_data(&records, "db.ns.svc.cluster.local.", RecordType::A);
        ips.sort_by_key(|r| r.to_string());
        assert_eq!(ips, vec![a("10.244.0.5"), a("10.244.0.6")]);
        assert_eq!(
            answer_data(&records, "db-0.db.ns.svc.cluster.local.", RecordType::A),
            vec![a("10.244.0.5")]
        );
        // Endpoints without a hostname get the dashed address, as in CoreDNS.
        assert_eq!(
            answer_data(
                &records,
                "10-244-0-6.db.ns.svc.cluster.local.",
                RecordType::A
            ),
            vec![a("10.244.0.6")]
        );
        assert_eq!(
            records.lookup(&name("db-2.db.ns.svc.cluster.local."), RecordType::A),
            Lookup::NxDomain
        );
    }

    #[test]
    fn a_headless_service_publishing_not_ready_addresses_answers_them_too() {
        let mut svc = headless("ns", "db");
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let records = Records::build(
            &domain(),
            &[svc],
            &[slice("ns", "db", &[("10.244.0.7", Some("db-2"), false)])],
        );
        assert_eq!(
            answer_data(&records, "db.ns.svc.cluster.local.", RecordType::A).len(),
            1
        );
    }

    #[test]
    fn a_headless_service_without_ready_endpoints_is_nxdomain() {
        let records = Records::build(
            &domain(),
            &[headless("ns", "db")],
            &[slice("ns", "db", &[("10.244.0.7", Some("db-2"), false)])],
        );
        assert_eq!(
            records.lookup(&name("db.ns.svc.cluster.local."), RecordType::A),
            Lookup::NxDomain
        );
    }

    #[test]
    fn headless_srv_records_point_at_each_endpoint_name() {
        let records = Records::build(
            &domain(),
            &[headless("ns", "db")],
            &[slice(
                "ns",
                "db",
                &[
                    ("10.244.0.5", Some("db-0"), true),
                    ("10.244.0.6", Some("db-1"), true),
                ],
            )],
        );
        let Lookup::Answer {
            answers,
            additionals,
        } = records.lookup(&name("_web._tcp.db.ns.svc.cluster.local."), RecordType::SRV)
        else {
            panic!("no answer");
        };
        let mut targets: Vec<String> = answers
            .iter()
            .map(|r| match &r.data {
                RData::SRV(srv) => format!("{} {} {}", srv.port, srv.weight, srv.target),
                other => panic!("{other:?}"),
            })
            .collect();
        targets.sort();
        assert_eq!(
            targets,
            vec![
                "8080 50 db-0.db.ns.svc.cluster.local.",
                "8080 50 db-1.db.ns.svc.cluster.local."
            ]
        );
        assert_eq!(additionals.len(), 2);
    }

    #[test]
    fn slices_of_other_services_or_namespaces_are_ignored() {
        let records = Records::build(
            &domain(),
            &[headless("ns", "db")],
            &[
                slice("other", "db", &[("10.244.0.5", None, true)]),
                slice("ns", "cache", &[("10.244.0.6", None, true)]),
            ],
        );
        assert_eq!(
            records.lookup(&name("db.ns.svc.cluster.local."), RecordType::A),
            Lookup::NxDomain
        );
    }

    #[test]
    fn an_external_name_service_is_a_cname_for_every_type() {
        let svc = service(
            "ns",
            "ext",
            ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some("db.example.com".into()),
                ..Default::default()
            },
        );
        let records = Records::build(&domain(), &[svc], []);
        let cname = vec![RData::CNAME(CNAME(name("db.example.com.")))];
        assert_eq!(
            answer_data(&records, "ext.ns.svc.cluster.local.", RecordType::A),
            cname
        );
        assert_eq!(
            answer_data(&records, "ext.ns.svc.cluster.local.", RecordType::AAAA),
            cname
        );
        assert_eq!(
            answer_data(&records, "ext.ns.svc.cluster.local.", RecordType::CNAME),
            cname
        );
    }

    #[test]
    fn pod_names_answer_the_address_they_spell() {
        let records = Records::empty(&domain());
        assert_eq!(
            answer_data(&records, "10-244-1-7.ns.pod.cluster.local.", RecordType::A),
            vec![a("10.244.1.7")]
        );
        assert_eq!(
            answer_data(&records, "fd00--7.ns.pod.cluster.local.", RecordType::AAAA),
            vec![RData::AAAA(AAAA("fd00::7".parse().unwrap()))]
        );
        assert_eq!(
            records.lookup(&name("10-244-1-7.ns.pod.cluster.local."), RecordType::AAAA),
            Lookup::NoData
        );
        for bad in [
            "10-244-1-300.ns.pod.cluster.local.",
            "10-244-1-7.ns.pods.cluster.local.",
            "x.10-244-1-7.ns.pod.cluster.local.",
        ] {
            assert_eq!(
                records.lookup(&name(bad), RecordType::A),
                Lookup::NxDomain,
                "{bad}"
            );
        }
    }

    #[test]
    fn cluster_ips_and_endpoint_ips_have_ptr_records() {
        let records = Records::build(
            &domain(),
            &[cluster_ip("ns", "web", "10.96.0.10"), headless("ns", "db")],
            &[slice("ns", "db", &[("10.244.0.5", Some("db-0"), true)])],
        );
        assert_eq!(
            answer_data(&records, "10.0.96.10.in-addr.arpa.", RecordType::PTR),
            vec![RData::PTR(PTR(name("web.ns.svc.cluster.local.")))]
        );
        assert_eq!(
            answer_data(&records, "5.0.244.10.in-addr.arpa.", RecordType::PTR),
            vec![RData::PTR(PTR(name("db-0.db.ns.svc.cluster.local.")))]
        );
    }

    #[test]
    fn the_apex_has_a_soa_and_the_schema_version() {
        let records = Records::empty(&domain());
        assert_eq!(
            answer_data(&records, "cluster.local.", RecordType::SOA).len(),
            1
        );
        assert_eq!(
            answer_data(&records, "dns-version.cluster.local.", RecordType::TXT),
            vec![RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()]))]
        );
    }

    #[test]
    fn a_custom_cluster_domain_is_used() {
        let records = Records::build(
            &name("Corp.Example."),
            &[cluster_ip("ns", "web", "10.96.0.10")],
            [],
        );
        assert_eq!(
            answer_data(&records, "web.ns.svc.corp.example.", RecordType::A).len(),
            1
        );
        assert_eq!(
            records.lookup(&name("web.ns.svc.cluster.local."), RecordType::A),
            Lookup::NotOurs
        );
    }

    #[test]
    fn services_without_an_allocated_cluster_ip_have_no_records() {
        let svc = service("ns", "pending", ServiceSpec::default());
        let records = Records::build(&domain(), &[svc], []);
        assert_eq!(
            records.lookup(&name("pending.ns.svc.cluster.local."), RecordType::A),
            Lookup::NxDomain
        );
    }
}
