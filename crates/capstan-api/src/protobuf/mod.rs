//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), transcoded to and from
//! the JSON objects the rest of capstan works with.
//!
//! On the wire a body is the 4 magic bytes `k8s\0` and a `runtime.Unknown` message:
//! `{1: typeMeta {1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding, 4: contentType}`, where
//! `raw` is the object encoded by its type's `generated.proto` (proto2). The object's own bytes
//! carry no apiVersion or kind; those come from `typeMeta`.
//!
//! Design: a schema-driven transcoder rather than typed structs. `generated.rs` is a table of
//! every message of the served groups (and what they reference): field tag → JSON name, shape
//! (single, repeated, map, inline) and kind (scalar, message, or one of the types with a JSON
//! form of their own: `Time`, `MicroTime`, `Duration`, `IntOrString`, `Quantity`,
//! `RawExtension`/`FieldsV1`). One generic walker (`decode`, `encode`) turns bytes into a
//! `serde_json::Value` and back, so adding a kind costs a regenerated table, not code, and the
//! result goes through the same validation as a JSON body. `gen.py` builds the table from the
//! k8s-pb sources (tags, wire types) and the k8s-openapi sources (exact JSON names, which
//! snake_case loses: `clusterIP`, `podCIDR`); see its docstring for how to run it.
//!
//! Go semantics kept: unknown fields are skipped; an empty `Time` is absent; empty strings are Go
//! zero values and are dropped (except where `""` means something, see `decode.rs`); embedded
//! structs (`Probe.handler`) are flattened into their owner as in JSON. Hostile input cannot
//! panic: reads are bounds-checked and nesting is capped at `MAX_DEPTH`.

mod decode;
mod encode;
#[rustfmt::skip]
mod generated;
pub mod schema;
mod wire;

use serde_json::{Map, Value};

use schema::Message;
use wire::{Reader, WireValue, put_len};

/// The media type of Kubernetes' protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every protobuf body starts with these bytes.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Deepest nesting of messages accepted; Kubernetes objects nest about 15 deep.
pub const MAX_DEPTH: usize = 100;

/// Why a body could not be transcoded. None of these is helped by a retry: the input is at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body does not start with the protobuf magic bytes \"k8s\\x00\"")]
    MissingMagic,
    #[error("no protobuf schema is known for kind {kind:?} of {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("content encoding {0:?} is not supported")]
    UnsupportedEncoding(String),
    #[error("objects nest more than {MAX_DEPTH} levels deep")]
    TooDeep,
    /// Decoding: the bytes are not a well-formed message of the schema.
    #[error("malformed protobuf{}: {message}", at(path))]
    Malformed { path: String, message: String },
    /// Encoding: a JSON value does not fit its field.
    #[error("cannot encode as protobuf{}: {message}", at(path))]
    Unencodable { path: String, message: String },
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

impl ProtobufError {
    /// The same error seen from the field `name` of the enclosing object.
    fn within(self, name: &str) -> Self {
        let join = |path: String| match (name.is_empty(), path.is_empty()) {
            (true, _) => path,
            (false, true) => name.to_string(),
            (false, false) => format!("{name}.{path}"),
        };
        match self {
            ProtobufError::Malformed { path, message } => ProtobufError::Malformed {
                path: join(path),
                message,
            },
            ProtobufError::Unencodable { path, message } => ProtobufError::Unencodable {
                path: join(path),
                message,
            },
            other => other,
        }
    }
}

/// Decodes a protobuf body (`k8s\0` + `runtime.Unknown`) into the JSON object it encodes, with
/// `apiVersion` and `kind` taken from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_envelope(body, 0)
}

fn decode_envelope(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let (mut api_version, mut kind) = (String::new(), String::new());
    let (mut raw, mut content_encoding, mut content_type): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let mut reader = Reader::new(unknown);
    while !reader.is_empty() {
        match reader.field()? {
            (1, WireValue::Len(type_meta)) => {
                let mut meta = Reader::new(type_meta);
                while !meta.is_empty() {
                    match meta.field()? {
                        (1, WireValue::Len(v)) => api_version = String::from_utf8_lossy(v).into(),
                        (2, WireValue::Len(v)) => kind = String::from_utf8_lossy(v).into(),
                        _ => {}
                    }
                }
            }
            (2, WireValue::Len(v)) => raw = v,
            (3, WireValue::Len(v)) => content_encoding = v,
            (4, WireValue::Len(v)) => content_type = v,
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedEncoding(
            String::from_utf8_lossy(content_encoding).into(),
        ));
    }
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version.clone()));
    object.insert("kind".into(), Value::String(kind.clone()));
    if content_type.starts_with(b"application/json") {
        // An Unknown may carry JSON; Go's protobuf serializer never writes one, but it is legal.
        let decoded: Value = serde_json::from_slice(raw).map_err(|e| ProtobufError::Malformed {
            path: String::new(),
            message: format!("the raw JSON does not parse: {e}"),
        })?;
        return Ok(decoded);
    }
    let message = schema::for_kind(&api_version, &kind)
        .ok_or(ProtobufError::UnknownKind { api_version, kind })?;
    decode::message_into(message, raw, &mut object, depth + 1)?;
    Ok(Value::Object(object))
}

/// Encodes a JSON object as a protobuf body (`k8s\0` + `runtime.Unknown`), choosing the message
/// from its `apiVersion` and `kind`.
pub fn encode(object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let map = object
        .as_object()
        .ok_or_else(|| ProtobufError::Unencodable {
            path: String::new(),
            message: "not an object".into(),
        })?;
    let field = |name: &str| map.get(name).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let message =
        schema::for_kind(api_version, kind).ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        })?;
    let mut raw = Vec::new();
    encode::message(message, map, &mut raw, 0)?;
    let mut type_meta = Vec::new();
    put_len(&mut type_meta, 1, api_version.as_bytes());
    put_len(&mut type_meta, 2, kind.as_bytes());
    let mut out = Vec::with_capacity(raw.len() + type_meta.len() + 32);
    out.extend_from_slice(MAGIC);
    put_len(&mut out, 1, &type_meta);
    put_len(&mut out, 2, &raw);
    // Go writes the empty contentEncoding and contentType too.
    put_len(&mut out, 3, b"");
    put_len(&mut out, 4, b"");
    Ok(out)
}

/// The media type of a protobuf watch stream.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// One frame of a protobuf watch stream, as Go's streaming encoder writes it: a 4-byte
/// big-endian length, then a `metav1.WatchEvent` without envelope whose `object` is a
/// `RawExtension` holding the object's own protobuf body (`k8s\0` + `Unknown`).
pub fn encode_watch_event(event_type: &str, object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let mut raw_extension = Vec::new();
    put_len(&mut raw_extension, 1, &encode(object)?);
    let mut event = Vec::new();
    put_len(&mut event, 1, event_type.as_bytes());
    put_len(&mut event, 2, &raw_extension);
    let length = u32::try_from(event.len()).map_err(|_| ProtobufError::Unencodable {
        path: String::new(),
        message: "a watch event larger than 4 GiB".into(),
    })?;
    let mut frame = length.to_be_bytes().to_vec();
    frame.extend_from_slice(&event);
    Ok(frame)
}

/// Decodes the bytes of one message (no envelope) by its full proto name; for tests and tools.
pub fn decode_message(name: &str, bytes: &[u8]) -> Result<Value, ProtobufError> {
    let message = find(name)?;
    let mut object = Map::new();
    decode::message_into(message, bytes, &mut object, 0)?;
    Ok(Value::Object(object))
}

/// Encodes a JSON object as the bytes of one message (no envelope) by its full proto name.
pub fn encode_message(name: &str, object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let message = find(name)?;
    let map = object
        .as_object()
        .ok_or_else(|| ProtobufError::Unencodable {
            path: String::new(),
            message: "not an object".into(),
        })?;
    let mut out = Vec::new();
    encode::message(message, map, &mut out, 0)?;
    Ok(out)
}

fn find(name: &str) -> Result<&'static Message, ProtobufError> {
    schema::find(name).ok_or_else(|| ProtobufError::UnknownKind {
        api_version: String::new(),
        kind: name.to_string(),
    })
}

#[cfg(test)]
mod tests;
