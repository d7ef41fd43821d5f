//! The shape of the generated schema table, and lookups into it.

use super::generated::MESSAGES;

/// One protobuf message of Kubernetes' `generated.proto` files.
#[derive(Debug)]
pub struct Message {
    /// The full proto name: `k8s.io.api.apps.v1.Deployment`.
    pub name: &'static str,
    /// Sorted by tag.
    pub fields: &'static [Field],
}

/// One field of a message: where it sits on the wire and in JSON.
#[derive(Debug)]
pub struct Field {
    pub tag: u32,
    /// The JSON name (`clusterIP`); empty for `Shape::Inline`.
    pub json: &'static str,
    pub shape: Shape,
    /// The type of the field, or of the map's values.
    pub kind: Kind,
}

/// How many values a field holds and how they are laid out in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    /// A JSON array; scalars may arrive packed or one per record.
    Repeated,
    /// A JSON object with string keys; on the wire, repeated `{1: key, 2: value}` entries.
    Map,
    /// A Go struct embedded with `json:",inline"`: a nested message on the wire whose fields are
    /// the owner's own fields in JSON (`Probe.handler`, `Volume.volumeSource`).
    Inline,
}

/// The type of a value. Message types with a JSON form of their own have a kind of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    /// Base64 in JSON.
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// An index into the schema table.
    Message(u16),
    /// `metav1.Time` `{1: seconds, 2: nanos}`: RFC 3339 with seconds in JSON.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with microseconds in JSON.
    MicroTime,
    /// `metav1.Duration` `{1: string}`: the string in JSON (`"1h0m0s"`).
    Duration,
    /// `intstr.IntOrString` `{1: type, 2: intVal, 3: strVal}`: a number or a string in JSON.
    IntOrString,
    /// `resource.Quantity` `{1: string}`: the string in JSON.
    Quantity,
    /// `runtime.RawExtension` and `metav1.FieldsV1` `{1: raw}`: raw holds JSON, embedded as is.
    RawJson,
}

impl Message {
    pub fn field(&self, tag: u32) -> Option<&'static Field> {
        let fields: &'static [Field] = self.fields;
        fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .and_then(|i| fields.get(i))
    }
}

/// The message of a full proto name.
pub fn find(name: &str) -> Option<&'static Message> {
    MESSAGES
        .binary_search_by(|m| m.name.cmp(name))
        .ok()
        .and_then(|i| MESSAGES.get(i))
}

/// The message a `Kind::Message` index names.
pub fn by_index(index: u16) -> Option<&'static Message> {
    MESSAGES.get(usize::from(index))
}

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// The message of an object's `apiVersion` and `kind`: the type of the group's proto package,
/// else a meta type (Kubernetes registers `Status`, `DeleteOptions`, … in every group version).
pub fn for_kind(api_version: &str, kind: &str) -> Option<&'static Message> {
    let package = match api_version.split_once('/') {
        None => format!("k8s.io.api.core.{api_version}"),
        Some(("meta.k8s.io", version)) => format!("k8s.io.apimachinery.pkg.apis.meta.{version}"),
        // Proto packages are named after the group's first label: `rbac.authorization.k8s.io`
        // is `k8s.io.api.rbac`.
        Some((group, version)) => {
            let label = group.split('.').next().unwrap_or(group);
            format!("k8s.io.api.{label}.{version}")
        }
    };
    find(&format!("{package}.{kind}")).or_else(|| find(&format!("{META}.{kind}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_every_reference_resolves() {
        for pair in MESSAGES.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} out of order", pair[1].name);
        }
        for message in MESSAGES {
            for pair in message.fields.windows(2) {
                assert!(
                    pair[0].tag < pair[1].tag,
                    "{} tags out of order",
                    message.name
                );
            }
            for field in message.fields {
                if let Kind::Message(i) = field.kind {
                    assert!(by_index(i).is_some(), "{}.{}", message.name, field.json);
                }
                assert_eq!(field.json.is_empty(), field.shape == Shape::Inline);
            }
        }
    }

    #[test]
    fn every_served_kind_and_its_list_has_a_message() {
        for resource in crate::RESOURCES {
            let version = resource.api_version();
            assert!(
                for_kind(&version, resource.kind).is_some(),
                "{version} {}",
                resource.kind
            );
            let list = format!("{}List", resource.kind);
            if resource.kind != "Binding" {
                assert!(for_kind(&version, &list).is_some(), "{version} {list}");
            }
        }
        assert_eq!(
            for_kind("apps/v1", "Status").unwrap().name,
            format!("{META}.Status")
        );
        assert_eq!(
            for_kind("rbac.authorization.k8s.io/v1", "Role")
                .unwrap()
                .name,
            "k8s.io.api.rbac.v1.Role"
        );
    }

    #[test]
    fn json_names_keep_their_acronyms() {
        let spec = find("k8s.io.api.core.v1.ServiceSpec").unwrap();
        assert_eq!(spec.field(3).unwrap().json, "clusterIP");
        let node_spec = find("k8s.io.api.core.v1.NodeSpec").unwrap();
        assert!(node_spec.fields.iter().any(|f| f.json == "podCIDR"));
        let volume_source = find("k8s.io.api.core.v1.VolumeSource").unwrap();
        assert!(volume_source.fields.iter().any(|f| f.json == "scaleIO"));
    }
}
