//! Cluster IPs and node ports of Services, allocated when a Service is created, as
//! kube-apiserver's service storage does: a free address of the service range for
//! `spec.clusterIP`, a free port of 30000–32767 for every `nodePort` of a NodePort or
//! LoadBalancer Service; a requested address or port is checked, not trusted.
//!
//! What is taken is read from the stored Services at each allocation (Services are created
//! rarely), under one lock so that two creates never take the same address.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use capstan_api::{FieldError, FieldPath};
use serde_json::{Value, json};

/// Kubernetes' default node port range.
pub const NODE_PORTS: RangeInclusive<u16> = 30000..=32767;

/// The IPv4 range Services get their cluster IPs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRange {
    network: u32,
    prefix: u8,
}

impl ServiceRange {
    /// Parses `10.96.0.0/12`. The range needs room for the API server's own address and at
    /// least one more.
    pub fn parse(cidr: &str) -> Result<Self, String> {
        let (ip, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR (like 10.96.0.0/12)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{cidr:?}: {e}"))?;
        let prefix: u8 = prefix.parse().map_err(|e| format!("{cidr:?}: {e}"))?;
        if !(8..=29).contains(&prefix) {
            return Err(format!("{cidr:?}: the prefix must be between /8 and /29"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(ServiceRange {
            network: u32::from(ip) & mask,
            prefix,
        })
    }

    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & (u32::MAX << (32 - self.prefix)) == self.network
    }

    /// The first usable address: the `kubernetes` Service's, as in Kubernetes.
    pub fn api_server_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    /// Usable offsets: not the network address, not the broadcast address.
    fn usable(&self) -> RangeInclusive<u32> {
        1..=self.size() - 2
    }
}

impl std::fmt::Display for ServiceRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// A random number from the OS's generator, by way of a v4 UUID.
fn random_u32() -> u32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Picks a free member of `candidates` (an inclusive range of `len` numbers starting at
/// `start`), trying random ones first and then every one in order, so that allocation stays
/// spread out and still finds the last free one.
fn pick_free(start: u32, len: u32, taken: impl Fn(u32) -> bool) -> Option<u32> {
    for _ in 0..32 {
        let candidate = start + random_u32() % len;
        if !taken(candidate) {
            return Some(candidate);
        }
    }
    (start..start + len).find(|c| !taken(*c))
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The cluster IPs and node ports `services` hold.
fn taken(services: &[Value]) -> (HashSet<Ipv4Addr>, HashSet<u16>) {
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for service in services {
        let spec = &service["spec"];
        if let Ok(ip) = str_at(spec, "clusterIP").parse() {
            ips.insert(ip);
        }
        for port in spec["ports"].as_array().into_iter().flatten() {
            if let Some(p) = port["nodePort"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
            {
                ports.insert(p);
            }
        }
    }
    (ips, ports)
}

/// Gives a Service about to be created its cluster IP and node ports. `existing` are the
/// stored Services. Errors are worded as kube-apiserver words them.
pub fn allocate(
    range: &ServiceRange,
    service: &mut Value,
    existing: &[Value],
) -> Result<(), Vec<FieldError>> {
    let (taken_ips, taken_ports) = taken(existing);
    let spec = service
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| vec![FieldError::required("spec", "")])?;
    let service_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let mut errors = Vec::new();
    if service_type != "ExternalName" {
        let requested = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match requested.as_str() {
            "None" => {}
            "" => {
                let usable = range.usable();
                let free = pick_free(*usable.start(), usable.end() - usable.start() + 1, |offset| {
                    taken_ips.contains(&Ipv4Addr::from(range.network + offset))
                });
                match free {
                    Some(offset) => {
                        let ip = Ipv4Addr::from(range.network + offset).to_string();
                        spec.insert("clusterIP".into(), json!(ip));
                        spec.insert("clusterIPs".into(), json!([ip]));
                    }
                    None => errors.push(FieldError::invalid(
                        "spec.clusterIPs",
                        json!([]),
                        format!("failed to allocate IP: range {range} is full"),
                    )),
                }
            }
            ip => match ip.parse::<Ipv4Addr>() {
                Ok(addr) if !range.contains(addr) => errors.push(FieldError::invalid(
                    "spec.clusterIPs",
                    json!([ip]),
                    format!(
                        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}"
                    ),
                )),
                Ok(addr) if taken_ips.contains(&addr) => errors.push(FieldError::invalid(
                    "spec.clusterIPs",
                    json!([ip]),
                    format!("failed to allocate IP {ip}: provided IP is already allocated"),
                )),
                // Validation already refused addresses that do not parse.
                _ => {}
            },
        }
        if spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .is_some_and(|ip| ip != "None")
        {
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
        }
    }
    if matches!(service_type.as_str(), "NodePort" | "LoadBalancer") {
        let mut in_use = taken_ports;
        let ports = spec.get_mut("ports").and_then(Value::as_array_mut);
        for (i, port) in ports.into_iter().flatten().enumerate() {
            let path = FieldPath::new("spec")
                .child("ports")
                .index(i)
                .child("nodePort");
            match port
                .get("nodePort")
                .and_then(Value::as_u64)
                .filter(|p| *p != 0)
            {
                Some(requested) => {
                    let fits = u16::try_from(requested)
                        .ok()
                        .filter(|p| NODE_PORTS.contains(p));
                    match fits {
                        None => errors.push(FieldError::invalid(
                            path,
                            requested,
                            format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                NODE_PORTS.start(),
                                NODE_PORTS.end()
                            ),
                        )),
                        Some(p) if !in_use.insert(p) => {
                            errors.push(FieldError::invalid(path, requested, "provided port is already allocated"))
                        }
                        Some(_) => {}
                    }
                }
                None => {
                    let start = u32::from(*NODE_PORTS.start());
                    let len = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
                    match pick_free(start, len, |p| in_use.contains(&(p as u16))) {
                        Some(p) => {
                            in_use.insert(p as u16);
                            port["nodePort"] = json!(p);
                        }
                        None => {
                            errors.push(FieldError::invalid(path, 0, "range of node ports is full"))
                        }
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Keeps what was allocated when an update leaves it out (a PUT of a manifest that never
/// named a cluster IP or node port must not drop them).
pub fn keep_allocated(proposed: &mut Value, current: &Value) {
    let (Some(spec), Some(old)) = (
        proposed.get_mut("spec").and_then(Value::as_object_mut),
        current.get("spec"),
    ) else {
        return;
    };
    if spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        for key in ["clusterIP", "clusterIPs", "ipFamilies"] {
            if let Some(v) = old.get(key) {
                spec.insert(key.into(), v.clone());
            }
        }
    }
    let old_ports = old["ports"].as_array().cloned().unwrap_or_default();
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if port
            .get("nodePort")
            .and_then(Value::as_u64)
            .is_some_and(|p| p != 0)
        {
            continue;
        }
        let same = old_ports
            .iter()
            .find(|o| o["port"] == port["port"] && o["protocol"] == port["protocol"]);
        if let Some(node_port) = same.and_then(|o| o.get("nodePort")) {
            port["nodePort"] = node_port.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> ServiceRange {
        ServiceRange::parse("10.96.0.0/12").unwrap()
    }

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "s"}, "spec": spec})
    }

    #[test]
    fn a_service_gets_a_free_address_of_the_range() {
        let existing = vec![service(json!({"clusterIP": "10.96.0.1"}))];
        let mut s = service(json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
        allocate(&range(), &mut s, &existing).unwrap();
        let ip: Ipv4Addr = s["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(
            range().contains(ip) && ip != Ipv4Addr::new(10, 96, 0, 1),
            "{ip}"
        );
        assert_eq!(s["spec"]["clusterIPs"], json!([ip.to_string()]));
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
    }

    #[test]
    fn requested_addresses_must_be_free_and_in_range() {
        let existing = vec![service(json!({"clusterIP": "10.96.0.10"}))];
        let taken = allocate(
            &range(),
            &mut service(json!({"clusterIP": "10.96.0.10"})),
            &existing,
        )
        .unwrap_err();
        assert_eq!(
            taken[0].to_string(),
            "spec.clusterIPs: Invalid value: [\"10.96.0.10\"]: failed to allocate IP 10.96.0.10: provided IP is already allocated"
        );
        let outside = allocate(
            &range(),
            &mut service(json!({"clusterIP": "192.168.0.1"})),
            &existing,
        )
        .unwrap_err();
        assert!(
            outside[0]
                .to_string()
                .contains("is not in the valid range. The range of valid IPs is 10.96.0.0/12")
        );
        let mut own = service(json!({"clusterIP": "10.96.0.11"}));
        allocate(&range(), &mut own, &existing).unwrap();
        assert_eq!(own["spec"]["clusterIP"], "10.96.0.11");
    }

    #[test]
    fn headless_and_external_name_services_get_no_address() {
        let mut headless = service(json!({"clusterIP": "None"}));
        allocate(&range(), &mut headless, &[]).unwrap();
        assert_eq!(headless["spec"]["clusterIP"], "None");
        let mut external = service(json!({"type": "ExternalName", "externalName": "example.com"}));
        allocate(&range(), &mut external, &[]).unwrap();
        assert!(external["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn node_ports_are_allocated_once_and_checked() {
        let existing = vec![service(
            json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80, "nodePort": 30080}]}),
        )];
        let mut s = service(
            json!({"type": "NodePort", "ports": [{"port": 80}, {"port": 443, "nodePort": 30443}]}),
        );
        allocate(&range(), &mut s, &existing).unwrap();
        let first = s["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;
        assert!(NODE_PORTS.contains(&first) && first != 30080 && first != 30443);
        assert_eq!(s["spec"]["ports"][1]["nodePort"], 30443);
        let mut clash = service(
            json!({"type": "NodePort", "ports": [{"port": 81, "nodePort": 30080}, {"port": 82, "nodePort": 80}]}),
        );
        let errors = allocate(&range(), &mut clash, &existing).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        );
        assert_eq!(
            errors[1].to_string(),
            "spec.ports[1].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
    }

    #[test]
    fn a_small_range_fills_up_and_says_so() {
        let tiny = ServiceRange::parse("10.0.0.0/29").unwrap();
        let mut existing = Vec::new();
        for _ in 0..6 {
            let mut s = service(json!({}));
            allocate(&tiny, &mut s, &existing).unwrap();
            existing.push(s);
        }
        let full = allocate(&tiny, &mut service(json!({})), &existing).unwrap_err();
        assert!(full[0].to_string().contains("range 10.0.0.0/29 is full"));
    }

    #[test]
    fn updates_keep_what_was_allocated() {
        let current = service(
            json!({"clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"], "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30001}]}),
        );
        let mut proposed = service(json!({"ports": [{"port": 80, "protocol": "TCP"}]}));
        keep_allocated(&mut proposed, &current);
        assert_eq!(proposed["spec"]["clusterIP"], "10.96.0.7");
        assert_eq!(proposed["spec"]["ports"][0]["nodePort"], 30001);
    }
}
