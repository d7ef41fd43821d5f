//! networking.k8s.io: Ingress, IngressClass and NetworkPolicy.

use super::field_error::{FieldError, FieldPath};
use super::labels::validate_label_selector;
use super::names::{is_dns1123_subdomain, is_valid_port_num, is_wildcard_dns1123_subdomain};
use super::pod::validate_port_num_or_name;
use super::{array_field, int_field, invalid_each, present, str_field, str_or_empty};
use serde_json::Value;

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];

pub(super) fn validate_ingress(object: &Value) -> Vec<FieldError> {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let path = FieldPath::new("spec");
    let rules = array_field(spec, "rules");
    let mut errors = Vec::new();
    let default_backend = present(spec, "defaultBackend");
    if rules.is_empty() && default_backend.is_none() {
        errors.push(FieldError::invalid(
            &path,
            Value::from(rules.to_vec()),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(backend) = default_backend {
        errors.extend(validate_backend(backend, &path.child("defaultBackend")));
    }
    for (i, rule) in rules.iter().enumerate() {
        let rule_path = path.child("rules").index(i);
        let host = str_or_empty(rule, "host");
        if !host.is_empty() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                errors.push(FieldError::invalid(
                    rule_path.child("host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            let messages = if host.contains('*') {
                is_wildcard_dns1123_subdomain(host)
            } else {
                is_dns1123_subdomain(host)
            };
            errors.extend(invalid_each(&rule_path.child("host"), host, messages));
        }
        let Some(http) = present(rule, "http") else {
            continue;
        };
        let paths_path = rule_path.child("http").child("paths");
        let paths = array_field(http, "paths");
        if paths.is_empty() {
            errors.push(FieldError::required(&paths_path, ""));
        }
        for (j, http_path) in paths.iter().enumerate() {
            let item = paths_path.index(j);
            let path_value = str_or_empty(http_path, "path");
            match str_field(http_path, "pathType") {
                None => errors.push(FieldError::required(
                    item.child("pathType"),
                    "pathType must be specified",
                )),
                Some("Exact" | "Prefix") => {
                    if !path_value.starts_with('/') {
                        errors.push(FieldError::invalid(
                            item.child("path"),
                            path_value,
                            "must be an absolute path",
                        ));
                    }
                }
                Some("ImplementationSpecific") => {
                    if !path_value.is_empty() && !path_value.starts_with('/') {
                        errors.push(FieldError::invalid(
                            item.child("path"),
                            path_value,
                            "must be an absolute path",
                        ));
                    }
                }
                Some(other) => errors.push(FieldError::not_supported(
                    item.child("pathType"),
                    other,
                    PATH_TYPES,
                )),
            }
            match present(http_path, "backend") {
                Some(backend) => errors.extend(validate_backend(backend, &item.child("backend"))),
                None => errors.push(FieldError::required(item.child("backend"), "")),
            }
        }
    }
    errors
}

fn validate_backend(backend: &Value, path: &FieldPath) -> Vec<FieldError> {
    let service = present(backend, "service");
    let resource = present(backend, "resource");
    match (service, resource) {
        (Some(_), Some(_)) => vec![FieldError::invalid(
            path,
            backend.clone(),
            "cannot set both resource and service backends",
        )],
        (None, None) => vec![FieldError::invalid(
            path,
            backend.clone(),
            "resource or service backend is required",
        )],
        (None, Some(_)) => Vec::new(),
        (Some(service), None) => {
            let service_path = path.child("service");
            let mut errors = Vec::new();
            let name = str_or_empty(service, "name");
            if name.is_empty() {
                errors.push(FieldError::required(service_path.child("name"), ""));
            } else {
                errors.extend(invalid_each(
                    &service_path.child("name"),
                    name,
                    super::names::is_dns1035_label(name),
                ));
            }
            let port = service.get("port").unwrap_or(&Value::Null);
            let port_path = service_path.child("port");
            let port_name = str_or_empty(port, "name");
            let port_number = int_field(port, "number").unwrap_or(0);
            match (port_name.is_empty(), port_number == 0) {
                (true, true) => errors.push(FieldError::required(
                    &port_path,
                    "port name or number is required",
                )),
                (false, false) => errors.push(FieldError::invalid(
                    &port_path,
                    port.clone(),
                    "cannot set both port name & port number",
                )),
                (false, true) => errors.extend(validate_port_num_or_name(
                    &Value::from(port_name),
                    &port_path.child("name"),
                )),
                (true, false) => {
                    for msg in is_valid_port_num(port_number) {
                        errors.push(FieldError::invalid(
                            port_path.child("number"),
                            port_number,
                            msg,
                        ));
                    }
                }
            }
            errors
        }
    }
}

pub(super) fn validate_ingress_class(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let path = FieldPath::new("spec").child("controller");
    let controller = str_or_empty(spec, "controller");
    let mut errors = Vec::new();
    if controller.is_empty() {
        errors.push(FieldError::required(&path, ""));
    } else if controller.len() > 250 {
        errors.push(FieldError::too_long(&path, 250));
    } else {
        match controller.split_once('/') {
            Some((host, rest)) if !host.is_empty() && !rest.is_empty() => {
                errors.extend(invalid_each(&path, host, is_dns1123_subdomain(host)));
            }
            _ => errors.push(FieldError::invalid(
                &path,
                controller,
                "must be a domain-prefixed path (such as \"acme.io/foo\")",
            )),
        }
    }
    if let Some(old) = old {
        let old_controller = old
            .get("spec")
            .map_or("", |s| str_or_empty(s, "controller"));
        if old_controller != controller {
            errors.push(FieldError::invalid(&path, controller, "field is immutable"));
        }
    }
    errors
}

pub(super) fn validate_network_policy(object: &Value) -> Vec<FieldError> {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let path = FieldPath::new("spec");
    let mut errors = Vec::new();
    if let Some(selector) = present(spec, "podSelector") {
        errors.extend(validate_label_selector(
            selector,
            &path.child("podSelector"),
        ));
    }
    for (direction, peers_key) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in array_field(spec, direction).iter().enumerate() {
            let rule_path = path.child(direction).index(i);
            for (j, port) in array_field(rule, "ports").iter().enumerate() {
                let port_path = rule_path.child("ports").index(j);
                if let Some(protocol) = str_field(port, "protocol")
                    && !["SCTP", "TCP", "UDP"].contains(&protocol)
                {
                    errors.push(FieldError::not_supported(
                        port_path.child("protocol"),
                        protocol,
                        &["SCTP", "TCP", "UDP"],
                    ));
                }
                if let Some(number) = port.get("port") {
                    errors.extend(validate_port_num_or_name(number, &port_path.child("port")));
                }
            }
            for (j, peer) in array_field(rule, peers_key).iter().enumerate() {
                let peer_path = rule_path.child(peers_key).index(j);
                for key in ["podSelector", "namespaceSelector"] {
                    if let Some(selector) = present(peer, key) {
                        errors.extend(validate_label_selector(selector, &peer_path.child(key)));
                    }
                }
                let has_selector = present(peer, "podSelector").is_some()
                    || present(peer, "namespaceSelector").is_some();
                if has_selector && present(peer, "ipBlock").is_some() {
                    errors.push(FieldError::forbidden(
                        &peer_path,
                        "may not specify both podSelector/namespaceSelector and ipBlock",
                    ));
                } else if !has_selector && present(peer, "ipBlock").is_none() {
                    errors.push(FieldError::required(&peer_path, "must specify a peer"));
                }
            }
        }
    }
    let types = array_field(spec, "policyTypes");
    for (i, policy_type) in types.iter().enumerate() {
        let policy_type = policy_type.as_str().unwrap_or("");
        if policy_type != "Ingress" && policy_type != "Egress" {
            errors.push(FieldError::not_supported(
                path.child("policyTypes").index(i),
                policy_type,
                &["Ingress", "Egress"],
            ));
        }
    }
    if types.len() > 2 {
        errors.push(FieldError::invalid(
            path.child("policyTypes"),
            Value::from(types.to_vec()),
            "may not specify more than two policyTypes",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::messages;
    use serde_json::json;

    #[test]
    fn ingress_paths_need_a_type_and_a_backend_port() {
        let ingress = json!({"spec": {"rules": [{"host": "example.com", "http": {"paths": [
            {"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            {"path": "api", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {}}}},
        ]}}]}});
        assert_eq!(
            messages(validate_ingress(&ingress)),
            vec![
                "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[1].path: Invalid value: \"api\": must be an absolute path",
                "spec.rules[0].http.paths[1].backend.service.port: Required value: port name or number is required",
            ]
        );
    }

    #[test]
    fn ingress_needs_rules_or_a_default_backend() {
        assert_eq!(
            messages(validate_ingress(&json!({"spec": {}}))),
            vec!["spec: Invalid value: []: either `defaultBackend` or `rules` must be specified"]
        );
    }
}
