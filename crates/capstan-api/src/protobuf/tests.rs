//! The transcoder against k8s-pb's prost structs: prost encodes, the transcoder decodes (the
//! request direction), and the transcoder encodes what prost then decodes (the response one).

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::{Value, json};

use super::*;

fn some<T: Into<String>>(s: T) -> Option<String> {
    Some(s.into())
}

fn int_or_string_int(n: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(n),
        str_val: Some(String::new()),
    })
}

fn int_or_string_str(s: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: some(s),
    })
}

/// Metadata as Go writes it: every non-pointer field present, empty or zero.
fn go_metadata(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: some(name),
        generate_name: some(""),
        namespace: some(""),
        resource_version: some(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time {
            seconds: None,
            nanos: None,
        }),
        labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
        ..Default::default()
    })
}

fn deployment() -> apps::Deployment {
    apps::Deployment {
        metadata: go_metadata("web"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(2),
            selector: Some(meta::LabelSelector {
                match_labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: go_metadata(""),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: some("busybox"),
                        image: some("busybox:1.36"),
                        image_pull_policy: some(""),
                        ports: vec![core::ContainerPort {
                            container_port: Some(8080),
                            protocol: some("TCP"),
                            ..Default::default()
                        }],
                        resources: Some(core::ResourceRequirements {
                            limits: BTreeMap::from([(
                                "cpu".to_string(),
                                Quantity {
                                    string: some("500m"),
                                },
                            )]),
                            ..Default::default()
                        }),
                        readiness_probe: Some(core::Probe {
                            handler: Some(core::ProbeHandler {
                                http_get: Some(core::HttpGetAction {
                                    path: some("/healthz"),
                                    port: int_or_string_str("http"),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            period_seconds: Some(5),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: some("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: int_or_string_int(1),
                    max_surge: int_or_string_str("25%"),
                }),
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: None,
    }
}

fn deployment_json() -> Value {
    json!({
        "metadata": {"name": "web", "generation": 0, "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"generation": 0, "labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "busybox",
                    "image": "busybox:1.36",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "500m"}},
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "periodSeconds": 5,
                    },
                }]},
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"},
            },
            "minReadySeconds": 0,
            "paused": false,
        },
    })
}

fn secret() -> core::Secret {
    core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: some("s"),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_795_966_380),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        data: BTreeMap::from([("p".to_string(), b"q\x00\xff".to_vec())]),
        r#type: some("Opaque"),
        immutable: Some(false),
        ..Default::default()
    }
}

fn event() -> core::Event {
    core::Event {
        metadata: Some(meta::ObjectMeta {
            name: some("e"),
            ..Default::default()
        }),
        involved_object: Some(core::ObjectReference {
            kind: some("Pod"),
            name: some("p"),
            ..Default::default()
        }),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_795_966_380),
            nanos: Some(123_456_789),
        }),
        count: Some(-3),
        ..Default::default()
    }
}

fn controller_revision() -> apps::ControllerRevision {
    apps::ControllerRevision {
        metadata: Some(meta::ObjectMeta {
            name: some("r"),
            ..Default::default()
        }),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"x":[1,2]}}"#.to_vec()),
        }),
        revision: Some(7),
    }
}

fn service() -> core::Service {
    core::Service {
        metadata: Some(meta::ObjectMeta {
            name: some("svc"),
            ..Default::default()
        }),
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                name: some("80-8080"),
                protocol: some("TCP"),
                port: Some(80),
                target_port: int_or_string_int(8080),
                node_port: Some(0),
                ..Default::default()
            }],
            selector: BTreeMap::from([("app".to_string(), "svc".to_string())]),
            cluster_ip: some("10.0.0.1"),
            r#type: some("ClusterIP"),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus::default()),
    }
}

/// (message, prost bytes, the JSON the transcoder must produce)
fn request_cases() -> Vec<(&'static str, Vec<u8>, Value)> {
    vec![
        (
            "k8s.io.api.apps.v1.Deployment",
            deployment().encode_to_vec(),
            deployment_json(),
        ),
        (
            "k8s.io.api.core.v1.Secret",
            secret().encode_to_vec(),
            json!({
                "metadata": {"name": "s", "creationTimestamp": "2026-11-29T15:33:00Z"},
                "data": {"p": "cQD/"},
                "type": "Opaque",
                "immutable": false,
            }),
        ),
        (
            "k8s.io.api.core.v1.Event",
            event().encode_to_vec(),
            json!({
                "metadata": {"name": "e"},
                "involvedObject": {"kind": "Pod", "name": "p"},
                "count": -3,
                "eventTime": "2026-11-29T15:33:00.123456Z",
            }),
        ),
        (
            "k8s.io.api.apps.v1.ControllerRevision",
            controller_revision().encode_to_vec(),
            json!({"metadata": {"name": "r"}, "data": {"spec": {"x": [1, 2]}}, "revision": 7}),
        ),
        (
            "k8s.io.api.core.v1.Service",
            service().encode_to_vec(),
            json!({
                "metadata": {"name": "svc"},
                "spec": {
                    "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 0}],
                    "selector": {"app": "svc"},
                    "clusterIP": "10.0.0.1",
                    "type": "ClusterIP",
                },
                "status": {},
            }),
        ),
    ]
}

#[test]
fn prost_encoded_objects_decode_to_their_kubernetes_json() {
    for (name, bytes, expected) in request_cases() {
        let decoded = decode_message(name, &bytes).unwrap();
        assert_eq!(decoded, expected, "{name}");
    }
}

#[test]
fn json_encoded_as_protobuf_decodes_with_prost_to_the_same_object() {
    // Go's zero values (empty strings, empty times) do not survive the trip through JSON, so
    // the prost side is compared after the same JSON trip.
    let deployment_bytes = encode_message("k8s.io.api.apps.v1.Deployment", &deployment_json());
    let decoded = apps::Deployment::decode(deployment_bytes.unwrap().as_slice()).unwrap();
    assert_eq!(
        decoded.spec.as_ref().unwrap().strategy,
        deployment().spec.unwrap().strategy
    );
    let container = &decoded
        .spec
        .unwrap()
        .template
        .unwrap()
        .spec
        .unwrap()
        .containers[0];
    assert_eq!(container.image.as_deref(), Some("busybox:1.36"));
    assert_eq!(
        container.resources.as_ref().unwrap().limits["cpu"]
            .string
            .as_deref(),
        Some("500m")
    );
    assert_eq!(
        container
            .readiness_probe
            .as_ref()
            .unwrap()
            .handler
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .port,
        int_or_string_str("http")
    );

    for (name, original) in [
        ("k8s.io.api.core.v1.Secret", secret().encode_to_vec()),
        ("k8s.io.api.core.v1.Event", event().encode_to_vec()),
        (
            "k8s.io.api.apps.v1.ControllerRevision",
            controller_revision().encode_to_vec(),
        ),
        ("k8s.io.api.core.v1.Service", service().encode_to_vec()),
    ] {
        let json = decode_message(name, &original).unwrap();
        let encoded = encode_message(name, &json).unwrap();
        assert_eq!(decode_message(name, &encoded).unwrap(), json, "{name}");
    }
    let secret = core::Secret::decode(
        encode_message(
            "k8s.io.api.core.v1.Secret",
            &decode_message("k8s.io.api.core.v1.Secret", &secret().encode_to_vec()).unwrap(),
        )
        .unwrap()
        .as_slice(),
    )
    .unwrap();
    assert_eq!(secret, self::secret());
    let event = core::Event::decode(
        encode_message(
            "k8s.io.api.core.v1.Event",
            &json!({"eventTime": "2026-11-29T15:33:00.123456Z"}),
        )
        .unwrap()
        .as_slice(),
    )
    .unwrap();
    assert_eq!(event.event_time.unwrap().nanos, Some(123_456_000));
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: some(api_version),
            kind: some(kind),
        }),
        raw: Some(raw),
        content_encoding: some(""),
        content_type: some(""),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[test]
fn a_body_takes_its_api_version_and_kind_from_the_envelope() {
    let body = envelope("apps/v1", "Deployment", deployment().encode_to_vec());
    let decoded = decode(&body).unwrap();
    let mut expected = json!({"apiVersion": "apps/v1", "kind": "Deployment"});
    expected
        .as_object_mut()
        .unwrap()
        .extend(deployment_json().as_object().unwrap().clone());
    assert_eq!(decoded, expected);
    // The answer direction: the envelope prost reads back.
    let encoded = encode(&decoded).unwrap();
    let unknown = Unknown::decode(encoded.strip_prefix(MAGIC).unwrap()).unwrap();
    assert_eq!(
        unknown.type_meta.unwrap().kind.as_deref(),
        Some("Deployment")
    );
    let back = apps::Deployment::decode(unknown.raw.unwrap().as_slice()).unwrap();
    assert_eq!(back.spec.unwrap().replicas, Some(2));
}

#[test]
fn lists_and_status_encode_for_clients_that_accept_only_protobuf() {
    let list = json!({
        "apiVersion": "v1", "kind": "SecretList",
        "metadata": {"resourceVersion": "12", "continue": "x"},
        "items": [{"metadata": {"name": "a"}, "data": {"k": "dg=="}}],
    });
    let unknown = Unknown::decode(encode(&list).unwrap().strip_prefix(MAGIC).unwrap()).unwrap();
    let decoded = core::SecretList::decode(unknown.raw.unwrap().as_slice()).unwrap();
    assert_eq!(
        decoded.metadata.unwrap().resource_version.as_deref(),
        Some("12")
    );
    assert_eq!(decoded.items[0].data["k"], b"v");

    let status = json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound",
        "code": 404, "message": "x not found", "details": {"name": "x", "kind": "pods"},
        "metadata": {},
    });
    let unknown = Unknown::decode(encode(&status).unwrap().strip_prefix(MAGIC).unwrap()).unwrap();
    let decoded = meta::Status::decode(unknown.raw.unwrap().as_slice()).unwrap();
    assert_eq!(decoded.code, Some(404));
    assert_eq!(decoded.details.unwrap().name.as_deref(), Some("x"));
    assert_eq!(decode(&encode(&status).unwrap()).unwrap(), status);
}

#[test]
fn unknown_fields_are_skipped() {
    let mut bytes = secret().encode_to_vec();
    // Field 99 as a varint and field 98 as a string: fields of a newer Kubernetes.
    bytes.extend([0x98, 0x06, 0x01, 0x92, 0x06, 0x02, b'h', b'i']);
    let decoded = decode_message("k8s.io.api.core.v1.Secret", &bytes).unwrap();
    assert_eq!(decoded["type"], "Opaque");
    assert_eq!(decoded.as_object().unwrap().len(), 4);
}

#[test]
fn every_truncation_of_a_body_is_an_error_or_a_smaller_object_never_a_panic() {
    let body = envelope("apps/v1", "Deployment", deployment().encode_to_vec());
    for end in 0..body.len() {
        let _ = decode(&body[..end]);
    }
    // Flipped bytes too.
    for i in 4..body.len() {
        let mut corrupt = body.clone();
        corrupt[i] ^= 0xff;
        let _ = decode(&corrupt);
    }
}

#[test]
fn malformed_bodies_are_refused_with_a_reason() {
    assert_eq!(decode(b"{}"), Err(ProtobufError::MissingMagic));
    let unknown_kind = envelope("apps/v1", "Gadget", Vec::new());
    assert!(matches!(
        decode(&unknown_kind),
        Err(ProtobufError::UnknownKind { .. })
    ));
    // spec.replicas (tag 1 of DeploymentSpec) sent as a string.
    let bad = envelope("apps/v1", "Deployment", vec![0x12, 0x03, 0x0a, 0x01, b'x']);
    let err = decode(&bad).unwrap_err();
    assert!(
        matches!(&err, ProtobufError::Malformed { path, .. } if path == "spec.replicas"),
        "{err}"
    );
    assert!(err.to_string().contains("spec.replicas"), "{err}");
}

#[test]
fn deep_nesting_is_refused_not_followed() {
    // Objects embedded in RawExtensions as protobuf, a ControllerRevision in a ControllerRevision
    // in …, deeper than the cap.
    let mut raw = envelope("v1", "Secret", secret().encode_to_vec());
    for _ in 0..(MAX_DEPTH + 5) {
        let revision = apps::ControllerRevision {
            data: Some(RawExtension { raw: Some(raw) }),
            ..Default::default()
        };
        raw = envelope("apps/v1", "ControllerRevision", revision.encode_to_vec());
    }
    assert_eq!(decode(&raw), Err(ProtobufError::TooDeep));
}

#[test]
fn json_that_does_not_fit_the_schema_is_refused_with_its_path() {
    let err = encode(
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "two"}}),
    )
    .unwrap_err();
    assert_eq!(
        err,
        ProtobufError::Unencodable {
            path: "spec.replicas".into(),
            message: "expected an integer".into()
        }
    );
}

#[test]
fn watch_events_are_length_prefixed_and_hold_the_object_as_a_protobuf_body() {
    let object = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let frame = encode_watch_event("ADDED", &object).unwrap();
    let (length, event) = frame.split_at(4);
    assert_eq!(
        u32::from_be_bytes(length.try_into().unwrap()) as usize,
        event.len()
    );
    let event = meta::WatchEvent::decode(event).unwrap();
    assert_eq!(event.r#type.as_deref(), Some("ADDED"));
    let raw = event.object.unwrap().raw.unwrap();
    assert_eq!(decode(&raw).unwrap(), object);
}
