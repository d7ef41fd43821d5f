//! Services and their endpoints (Kubernetes' `ValidateService`, `ValidateServiceUpdate`,
//! `ValidateEndpoints`, discovery's `ValidateEndpointSlice`).
//!
//! Cluster IPs, node ports and health-check ports are allocated by the API server after these
//! checks, so a Service is never required to carry them here; when it does, they are checked.

use super::field_error::{FieldError, FieldPath};
use super::labels::validate_labels;
use super::names::{is_dns1123_label, is_dns1123_subdomain, is_valid_ip, is_valid_port_num};
use super::pod::validate_port_num_or_name;
use super::{array_field, int_field, invalid_each, map_field, present, str_field, str_or_empty};
use serde_json::Value;
use std::collections::HashSet;

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

fn spec_of(object: &Value) -> &Value {
    static NULL: Value = Value::Null;
    object.get("spec").unwrap_or(&NULL)
}

fn cluster_ips(spec: &Value) -> Vec<&str> {
    array_field(spec, "clusterIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

fn is_headless(spec: &Value) -> bool {
    cluster_ips(spec) == ["None"] || str_field(spec, "clusterIP") == Some("None")
}

pub(super) fn validate_service(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = spec_of(object);
    let path = FieldPath::new("spec");
    let service_type = str_or_empty(spec, "type");
    let headless = is_headless(spec);
    let ports = array_field(spec, "ports");
    let mut errors = Vec::new();

    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errors.push(FieldError::required(path.child("ports"), ""));
    }
    match service_type {
        "LoadBalancer" | "NodePort" if headless => errors.push(FieldError::invalid(
            path.child("clusterIPs").index(0),
            "None",
            format!("may not be set to 'None' for {service_type} services"),
        )),
        "ExternalName" => {
            for key in ["clusterIPs", "ipFamilies"] {
                if !array_field(spec, key).is_empty() {
                    errors.push(FieldError::forbidden(
                        path.child(key),
                        "may not be set for ExternalName services",
                    ));
                }
            }
            if present(spec, "ipFamilyPolicy").is_some() {
                errors.push(FieldError::forbidden(
                    path.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            // The name is a CNAME target and may be fully qualified with a trailing dot.
            let cname = str_or_empty(spec, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errors.push(FieldError::required(path.child("externalName"), ""));
            } else {
                errors.extend(invalid_each(
                    &path.child("externalName"),
                    cname,
                    is_dns1123_subdomain(cname),
                ));
            }
        }
        _ => {}
    }

    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        errors.extend(validate_service_port(
            port,
            ports.len() > 1,
            &mut names,
            &path.child("ports").index(i),
        ));
    }
    if let Some(selector) = map_field(spec, "selector") {
        errors.extend(validate_labels(Some(selector), &path.child("selector")));
    }
    match str_or_empty(spec, "sessionAffinity") {
        "" => errors.push(FieldError::required(path.child("sessionAffinity"), "")),
        "ClientIP" => {
            let timeout = spec
                .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
                .and_then(Value::as_i64);
            match timeout {
                Some(t) if !(1..=86400).contains(&t) => errors.push(FieldError::invalid(
                    path.child("sessionAffinityConfig")
                        .child("clientIP")
                        .child("timeoutSeconds"),
                    t,
                    "must be greater than 0 and less than 86400",
                )),
                _ => {}
            }
        }
        "None" => {
            if present(spec, "sessionAffinityConfig").is_some() {
                errors.push(FieldError::forbidden(
                    path.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errors.push(FieldError::not_supported(
            path.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    if service_type != "ExternalName" {
        errors.extend(validate_cluster_ips(spec, &path));
    }
    for (i, ip) in array_field(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        errors.extend(invalid_each(
            &path.child("externalIPs").index(i),
            ip,
            is_valid_ip(ip),
        ));
    }
    if service_type.is_empty() {
        errors.push(FieldError::required(path.child("type"), ""));
    } else if !SERVICE_TYPES.contains(&service_type) {
        errors.push(FieldError::not_supported(
            path.child("type"),
            service_type,
            SERVICE_TYPES,
        ));
    }
    if service_type == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if int_field(port, "nodePort").unwrap_or(0) != 0 {
                errors.push(FieldError::forbidden(
                    path.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    // A (protocol, port) pair and a (protocol, nodePort) pair may each appear once.
    let mut node_ports = HashSet::new();
    let mut port_pairs = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let protocol = str_or_empty(port, "protocol");
        let node_port = int_field(port, "nodePort").unwrap_or(0);
        if node_port != 0 && !node_ports.insert((protocol, node_port)) {
            errors.push(FieldError::duplicate(
                path.child("ports").index(i).child("nodePort"),
                node_port,
            ));
        }
        let number = int_field(port, "port").unwrap_or(0);
        if !port_pairs.insert((protocol, number)) {
            errors.push(FieldError::duplicate(
                path.child("ports").index(i),
                serde_json::json!({"port": number, "protocol": protocol}),
            ));
        }
    }
    if !array_field(spec, "loadBalancerSourceRanges").is_empty() && service_type != "LoadBalancer" {
        errors.push(FieldError::forbidden(
            path.child("LoadBalancerSourceRanges"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if present(spec, "allocateLoadBalancerNodePorts").is_some() && service_type != "LoadBalancer" {
        errors.push(FieldError::forbidden(
            path.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if service_type == "LoadBalancer" && present(spec, "allocateLoadBalancerNodePorts").is_none() {
        // Kubernetes reports this one without the `spec.` prefix.
        errors.push(FieldError::required(
            FieldPath::new("allocateLoadBalancerNodePorts"),
            "",
        ));
    }
    errors.extend(validate_traffic_policies(spec, service_type, &path));

    if let Some(old) = old {
        errors.extend(validate_cluster_ips_update(spec, spec_of(old)));
    }
    errors
}

fn validate_service_port(
    port: &Value,
    require_name: bool,
    names: &mut HashSet<String>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = validate_port_basics(port, require_name, path);
    let name = str_or_empty(port, "name");
    if !name.is_empty() && !names.insert(name.to_string()) {
        errors.push(FieldError::duplicate(path.child("name"), name));
    }
    if let Some(target) = port.get("targetPort") {
        errors.extend(validate_port_num_or_name(target, &path.child("targetPort")));
    }
    if let Some(app_protocol) = str_field(port, "appProtocol") {
        errors.extend(super::labels::validate_label_name(
            app_protocol,
            &path.child("appProtocol"),
        ));
    }
    errors
}

/// clusterIP and clusterIPs agree, hold valid addresses, `None` only alone, at most two.
fn validate_cluster_ips(spec: &Value, path: &FieldPath) -> Vec<FieldError> {
    let ips_path = path.child("clusterIPs");
    let ips = cluster_ips(spec);
    let ips_value = || Value::from(ips.clone());
    let mut errors = Vec::new();
    match str_or_empty(spec, "clusterIP") {
        "" => {
            if !ips.is_empty() {
                errors.push(FieldError::invalid(
                    &ips_path,
                    ips_value(),
                    "must be empty when `clusterIP` is not specified",
                ));
            }
        }
        ip => {
            if ips.is_empty() {
                errors.push(FieldError::required(&ips_path, ""));
            } else if ips[0] != ip {
                errors.push(FieldError::invalid(
                    &ips_path,
                    ips_value(),
                    "first value must match `clusterIP`",
                ));
            }
        }
    }
    for (i, family) in array_field(spec, "ipFamilies").iter().enumerate() {
        let family = family.as_str().unwrap_or("");
        if family != "IPv4" && family != "IPv6" {
            errors.push(FieldError::not_supported(
                path.child("ipFamilies").index(i),
                family,
                &["IPv4", "IPv6"],
            ));
        }
    }
    if let Some(policy) = str_field(spec, "ipFamilyPolicy")
        && !["PreferDualStack", "RequireDualStack", "SingleStack"].contains(&policy)
    {
        errors.push(FieldError::not_supported(
            path.child("ipFamilyPolicy"),
            policy,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                errors.push(FieldError::invalid(
                    &ips_path,
                    ips_value(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        errors.extend(invalid_each(&ips_path.index(i), ip, is_valid_ip(ip)));
    }
    if ips.len() > 2 {
        errors.push(FieldError::invalid(
            &ips_path,
            ips_value(),
            "may only hold up to 2 values",
        ));
    }
    errors
}

fn validate_traffic_policies(
    spec: &Value,
    service_type: &str,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let external = str_or_empty(spec, "externalTrafficPolicy");
    let externally_accessible = service_type == "LoadBalancer"
        || service_type == "NodePort"
        || (service_type == "ClusterIP" && !array_field(spec, "externalIPs").is_empty());
    if !externally_accessible {
        if !external.is_empty() {
            errors.push(FieldError::invalid(
                path.child("externalTrafficPolicy"),
                external,
                "may only be set for externally-accessible services",
            ));
        }
    } else if external.is_empty() {
        errors.push(FieldError::required(
            path.child("externalTrafficPolicy"),
            "",
        ));
    } else if external != "Cluster" && external != "Local" {
        errors.push(FieldError::not_supported(
            path.child("externalTrafficPolicy"),
            external,
            &["Cluster", "Local"],
        ));
    }
    match str_field(spec, "internalTrafficPolicy") {
        None if ["ClusterIP", "NodePort", "LoadBalancer"].contains(&service_type) => {
            errors.push(FieldError::required(
                path.child("internalTrafficPolicy"),
                "",
            ));
        }
        Some(policy) if policy != "Cluster" && policy != "Local" => {
            errors.push(FieldError::not_supported(
                path.child("internalTrafficPolicy"),
                policy,
                &["Cluster", "Local"],
            ));
        }
        _ => {}
    }
    if let Some(distribution) = str_field(spec, "trafficDistribution")
        && distribution != "PreferClose"
    {
        errors.push(FieldError::not_supported(
            path.child("trafficDistribution"),
            distribution,
            &["PreferClose"],
        ));
    }
    errors
}

/// Allocated cluster IPs never move: a Service keeps its primary address for life, short of
/// becoming (or ceasing to be) an ExternalName.
fn validate_cluster_ips_update(new: &Value, old: &Value) -> Vec<FieldError> {
    if str_or_empty(new, "type") == "ExternalName" || str_or_empty(old, "type") == "ExternalName" {
        return Vec::new();
    }
    if is_headless(new) && is_headless(old) {
        return Vec::new();
    }
    let (new_ips, old_ips) = (cluster_ips(new), cluster_ips(old));
    // A client that sends no clusterIPs on update keeps the allocated ones (the API server
    // copies them over), so only a differing address is an error here.
    if new_ips.is_empty() {
        return Vec::new();
    }
    let path = FieldPath::new("spec").child("clusterIPs");
    let mut errors = Vec::new();
    if new_ips.len() == old_ips.len() {
        for (i, (a, b)) in old_ips.iter().zip(&new_ips).enumerate() {
            if a != b {
                errors.push(FieldError::invalid(
                    path.index(i),
                    Value::from(new_ips.clone()),
                    "may not change once set",
                ));
            }
        }
    } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
        errors.push(FieldError::invalid(
            path.index(0),
            Value::from(new_ips.clone()),
            "may not change once set",
        ));
    }
    errors
}

pub(super) fn validate_endpoints(object: &Value) -> Vec<FieldError> {
    let path = FieldPath::new("subsets");
    let mut errors = Vec::new();
    for (i, subset) in array_field(object, "subsets").iter().enumerate() {
        let subset_path = path.index(i);
        let addresses = array_field(subset, "addresses");
        let not_ready = array_field(subset, "notReadyAddresses");
        if addresses.is_empty() && not_ready.is_empty() {
            errors.push(FieldError::required(
                &subset_path,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (key, list) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
            for (j, address) in list.iter().enumerate() {
                let address_path = subset_path.child(key).index(j);
                let ip = str_or_empty(address, "ip");
                errors.extend(invalid_each(&address_path.child("ip"), ip, is_valid_ip(ip)));
                let hostname = str_or_empty(address, "hostname");
                if !hostname.is_empty() {
                    errors.extend(invalid_each(
                        &address_path.child("hostname"),
                        hostname,
                        is_dns1123_label(hostname),
                    ));
                }
            }
        }
        let ports = array_field(subset, "ports");
        for (j, port) in ports.iter().enumerate() {
            errors.extend(validate_port_basics(
                port,
                ports.len() > 1,
                &subset_path.child("ports").index(j),
            ));
        }
    }
    errors
}

/// The name, number and protocol checks that Service and Endpoints ports share.
fn validate_port_basics(port: &Value, require_name: bool, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = str_or_empty(port, "name");
    if require_name && name.is_empty() {
        errors.push(FieldError::required(path.child("name"), ""));
    } else if !name.is_empty() {
        errors.extend(invalid_each(
            &path.child("name"),
            name,
            is_dns1123_label(name),
        ));
    }
    let number = int_field(port, "port").unwrap_or(0);
    for msg in is_valid_port_num(number) {
        errors.push(FieldError::invalid(path.child("port"), number, msg));
    }
    let protocol = str_or_empty(port, "protocol");
    if protocol.is_empty() {
        errors.push(FieldError::required(path.child("protocol"), ""));
    } else if !PROTOCOLS.contains(&protocol) {
        errors.push(FieldError::not_supported(
            path.child("protocol"),
            protocol,
            PROTOCOLS,
        ));
    }
    errors
}

pub(super) fn validate_endpoint_slice(object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let address_type = str_or_empty(object, "addressType");
    if !["IPv4", "IPv6", "FQDN"].contains(&address_type) {
        errors.push(FieldError::not_supported(
            FieldPath::new("addressType"),
            address_type,
            &["FQDN", "IPv4", "IPv6"],
        ));
    }
    for (i, endpoint) in array_field(object, "endpoints").iter().enumerate() {
        let addresses_path = FieldPath::new("endpoints").index(i).child("addresses");
        let addresses = array_field(endpoint, "addresses");
        if addresses.is_empty() || addresses.len() > 100 {
            errors.push(FieldError::invalid(
                &addresses_path,
                addresses.len(),
                "must contain at least 1 address but no more than 100",
            ));
        }
        for (j, address) in addresses.iter().enumerate() {
            let address = address.as_str().unwrap_or("");
            let messages = match address_type {
                "FQDN" => is_dns1123_subdomain(address),
                _ => is_valid_ip(address),
            };
            errors.extend(invalid_each(&addresses_path.index(j), address, messages));
        }
    }
    for (i, port) in array_field(object, "ports").iter().enumerate() {
        let port_path = FieldPath::new("ports").index(i);
        if let Some(number) = int_field(port, "port") {
            for msg in is_valid_port_num(number) {
                errors.push(FieldError::invalid(port_path.child("port"), number, msg));
            }
        }
        if let Some(protocol) = str_field(port, "protocol")
            && !PROTOCOLS.contains(&protocol)
        {
            errors.push(FieldError::not_supported(
                port_path.child("protocol"),
                protocol,
                PROTOCOLS,
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::resource::find;
    use crate::validation::messages;
    use serde_json::json;

    fn service(spec: Value) -> Value {
        let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": spec});
        apply_defaults(find("", "v1", "services").unwrap(), &mut s);
        s
    }

    #[test]
    fn service_errors_use_kubernetes_paths_and_wording() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"selector": {"app": "web"}}),
                vec!["spec.ports: Required value"],
            ),
            (
                json!({"clusterIP": "None", "selector": {"app": "web"}}),
                vec![],
            ),
            (
                json!({"type": "ExternalName", "externalName": "db.example.com"}),
                vec![],
            ),
            (
                json!({"ports": [{"port": 80}, {"port": 443}]}),
                vec![
                    "spec.ports[0].name: Required value",
                    "spec.ports[1].name: Required value",
                ],
            ),
            (
                json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
                vec!["spec.ports[1].name: Duplicate value: \"a\""],
            ),
            (
                json!({"ports": [{"port": 0}]}),
                vec![
                    "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                    "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                ],
            ),
            (
                json!({"type": "Magic", "ports": [{"port": 80}]}),
                vec![
                    "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                ],
            ),
            (
                json!({"ports": [{"port": 80, "protocol": "HTTP"}]}),
                vec![
                    "spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                ],
            ),
        ];
        for (spec, want) in cases {
            let s = service(spec.clone());
            assert_eq!(messages(validate_service(&s, None)), want, "{spec}");
        }
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let old = service(json!({"clusterIP": "10.0.0.10", "ports": [{"port": 80}]}));
        let new = service(json!({"clusterIP": "10.0.0.11", "ports": [{"port": 80}]}));
        assert_eq!(
            messages(validate_service(&new, Some(&old))),
            vec!["spec.clusterIPs[0]: Invalid value: [\"10.0.0.11\"]: may not change once set"]
        );
    }
}
