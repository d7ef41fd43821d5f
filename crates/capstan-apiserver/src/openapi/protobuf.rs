//! The OpenAPI v2 document in the protobuf encoding kubectl asks for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): gnostic's `openapi.v2.Document`
//! message (github.com/google/gnostic, `openapiv2/OpenAPIv2.proto`). kubectl reads it to validate
//! `kind: List` manifests item by item, and for kinds without a v3 PATCH operation.
//!
//! Only what the JSON v2 document holds is encoded, with the field numbers of that .proto:
//! schemas (with vendor extensions as gnostic keeps them, as YAML text, of which JSON is a
//! subset) and each operation's parameters, responses and extensions. The encoder is a few
//! lines of wire format rather than a generated crate: the document is encoded once.

use serde_json::{Map, Value};

/// One protobuf message being written. proto3 leaves out scalars at their default value, and
/// so does this.
#[derive(Default)]
struct Message(Vec<u8>);

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH_DELIMITED: u64 = 2;

impl Message {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u64, wire_type: u64) {
        self.varint((field << 3) | wire_type);
    }

    fn bytes(&mut self, field: u64, bytes: &[u8]) {
        self.key(field, LENGTH_DELIMITED);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u64, value: &str) {
        if !value.is_empty() {
            self.bytes(field, value.as_bytes());
        }
    }

    /// A message field: written even when empty, since its presence can matter (an empty
    /// `properties` is not a missing one).
    fn message(&mut self, field: u64, message: Message) {
        self.bytes(field, &message.0);
    }

    fn bool(&mut self, field: u64, value: bool) {
        if value {
            self.key(field, VARINT);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u64, value: i64) {
        if value != 0 {
            self.key(field, VARINT);
            self.varint(value as u64);
        }
    }

    fn double(&mut self, field: u64, value: f64) {
        if value != 0.0 {
            self.key(field, FIXED64);
            self.0.extend_from_slice(&value.to_le_bytes());
        }
    }
}

/// `openapi.v2.Any`: a value as YAML text (field 2).
fn any(value: &Value) -> Message {
    let mut m = Message::default();
    m.string(2, &value.to_string());
    m
}

/// `repeated NamedAny vendor_extension` of an object: its `x-` keys.
fn vendor_extensions(m: &mut Message, field: u64, object: &Map<String, Value>) {
    for (name, value) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Message::default();
        named.string(1, name);
        named.message(2, any(value));
        m.message(field, named);
    }
}

fn str_of<'a>(object: &'a Map<String, Value>, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn strings<'a>(object: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a str> {
    object
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// `openapi.v2.Schema`.
fn schema(value: &Value) -> Message {
    let mut m = Message::default();
    let Some(s) = value.as_object() else {
        return m;
    };
    m.string(1, str_of(s, "$ref"));
    m.string(2, str_of(s, "format"));
    m.string(3, str_of(s, "title"));
    m.string(4, str_of(s, "description"));
    if let Some(default) = s.get("default") {
        m.message(5, any(default));
    }
    let number = |key| s.get(key).and_then(Value::as_f64).unwrap_or_default();
    let integer = |key| s.get(key).and_then(Value::as_i64).unwrap_or_default();
    let flag = |key| s.get(key).and_then(Value::as_bool).unwrap_or_default();
    m.double(6, number("multipleOf"));
    m.double(7, number("maximum"));
    m.bool(8, flag("exclusiveMaximum"));
    m.double(9, number("minimum"));
    m.bool(10, flag("exclusiveMinimum"));
    m.int64(11, integer("maxLength"));
    m.int64(12, integer("minLength"));
    m.string(13, str_of(s, "pattern"));
    m.int64(14, integer("maxItems"));
    m.int64(15, integer("minItems"));
    m.bool(16, flag("uniqueItems"));
    m.int64(17, integer("maxProperties"));
    m.int64(18, integer("minProperties"));
    for required in strings(s, "required") {
        m.string(19, required);
    }
    for value in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(20, any(value));
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            let mut item = Message::default();
            item.key(2, VARINT);
            item.varint(u64::from(*allowed));
            m.message(21, item);
        }
        Some(inner @ Value::Object(_)) => {
            let mut item = Message::default();
            item.message(1, schema(inner));
            m.message(21, item);
        }
        _ => {}
    }
    if let Some(ty) = s.get("type").and_then(Value::as_str) {
        let mut type_item = Message::default();
        type_item.string(1, ty);
        m.message(22, type_item);
    }
    if let Some(items) = s.get("items") {
        let mut items_item = Message::default();
        items_item.message(1, schema(items));
        m.message(23, items_item);
    }
    for part in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, schema(part));
    }
    if let Some(properties) = s.get("properties").and_then(Value::as_object) {
        let mut named_schemas = Message::default();
        for (name, property) in properties {
            named_schemas.message(1, named(name, schema(property)));
        }
        m.message(25, named_schemas);
    }
    m.bool(27, flag("readOnly"));
    if let Some(example) = s.get("example") {
        m.message(30, any(example));
    }
    vendor_extensions(&mut m, 31, s);
    m
}

/// The `Named*` messages of gnostic: `name = 1`, `value = 2`.
fn named(name: &str, value: Message) -> Message {
    let mut m = Message::default();
    m.string(1, name);
    m.message(2, value);
    m
}

/// `openapi.v2.ParametersItem` for one parameter: a `body` parameter or a query/path one.
fn parameter(p: &Map<String, Value>) -> Message {
    let mut parameter = Message::default();
    if str_of(p, "in") == "body" {
        let mut body = Message::default();
        body.string(1, str_of(p, "description"));
        body.string(2, str_of(p, "name"));
        body.string(3, "body");
        body.bool(
            4,
            p.get("required")
                .and_then(Value::as_bool)
                .unwrap_or_default(),
        );
        if let Some(s) = p.get("schema") {
            body.message(5, schema(s));
        }
        parameter.message(1, body);
    } else {
        // Query and path sub-schemas share their first fields; `type` and `unique_items`
        // differ (query parameters also have `allow_empty_value`).
        let (variant, type_field, unique_field) = match str_of(p, "in") {
            "path" => (4, 5, 19),
            _ => (3, 6, 20),
        };
        let mut sub = Message::default();
        sub.bool(
            1,
            p.get("required")
                .and_then(Value::as_bool)
                .unwrap_or_default(),
        );
        sub.string(2, str_of(p, "in"));
        sub.string(3, str_of(p, "description"));
        sub.string(4, str_of(p, "name"));
        sub.string(type_field, str_of(p, "type"));
        sub.bool(
            unique_field,
            p.get("uniqueItems")
                .and_then(Value::as_bool)
                .unwrap_or_default(),
        );
        let mut non_body = Message::default();
        non_body.message(variant, sub);
        parameter.message(2, non_body);
    }
    let mut item = Message::default();
    item.message(1, parameter);
    item
}

/// `openapi.v2.Operation`.
fn operation(op: &Map<String, Value>) -> Message {
    let mut m = Message::default();
    m.string(5, str_of(op, "operationId"));
    for media in strings(op, "produces") {
        m.string(6, media);
    }
    for media in strings(op, "consumes") {
        m.string(7, media);
    }
    for p in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(p) = p.as_object() {
            m.message(8, parameter(p));
        }
    }
    let mut responses = Message::default();
    for (code, response) in op
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut r = Message::default();
        r.string(1, response["description"].as_str().unwrap_or_default());
        if let Some(s) = response.get("schema") {
            let mut schema_item = Message::default();
            schema_item.message(1, schema(s));
            r.message(2, schema_item);
        }
        let mut value = Message::default();
        value.message(1, r);
        responses.message(1, named(code, value));
    }
    m.message(9, responses);
    vendor_extensions(&mut m, 13, op);
    m
}

/// Field numbers of the operations of `openapi.v2.PathItem`.
const METHODS: &[(&str, u64)] = &[
    ("get", 2),
    ("put", 3),
    ("post", 4),
    ("delete", 5),
    ("options", 6),
    ("head", 7),
    ("patch", 8),
];

/// Encodes a swagger 2.0 JSON document as `openapi.v2.Document`.
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut m = Message::default();
    m.string(1, doc["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Message::default();
    info.string(1, doc["info"]["title"].as_str().unwrap_or_default());
    info.string(2, doc["info"]["version"].as_str().unwrap_or_default());
    m.message(2, info);
    let mut paths = Message::default();
    for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
        let mut item = Message::default();
        for (method, field) in METHODS {
            if let Some(op) = ops.get(*method).and_then(Value::as_object) {
                item.message(*field, operation(op));
            }
        }
        paths.message(2, named(path, item));
    }
    m.message(8, paths);
    let mut definitions = Message::default();
    for (name, s) in doc["definitions"].as_object().into_iter().flatten() {
        definitions.message(1, named(name, schema(s)));
    }
    m.message(9, definitions);
    m.0
}
