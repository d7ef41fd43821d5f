//! JSON → protobuf, driven by the schema table. Fields are written in tag order, as Go writes
//! them; JSON members the schema does not know are left out.

use base64::Engine;
use serde_json::{Map, Value};

use super::schema::{self, Field, Kind, Message, Shape};
use super::wire::{FIXED64, put_int, put_key, put_len};
use super::{MAX_DEPTH, ProtobufError};

pub fn message(
    message: &'static Message,
    object: &Map<String, Value>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    for field in message.fields {
        field_of(field, object, out, depth).map_err(|e| e.within(field.json))?;
    }
    Ok(())
}

fn field_of(
    field: &'static Field,
    object: &Map<String, Value>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ProtobufError> {
    if field.shape == Shape::Inline {
        // Go always writes an embedded struct, even when all its fields are empty.
        let Kind::Message(index) = field.kind else {
            return Err(unencodable("an inline field is not a message"));
        };
        let inner = schema::by_index(index).ok_or_else(|| unencodable("unknown message"))?;
        let mut bytes = Vec::new();
        message(inner, object, &mut bytes, depth + 1)?;
        put_len(out, field.tag, &bytes);
        return Ok(());
    }
    let value = match object.get(field.json) {
        None | Some(Value::Null) => return Ok(()),
        Some(v) => v,
    };
    match field.shape {
        Shape::Single | Shape::Inline => put_value(field.kind, field.tag, value, out, depth),
        Shape::Repeated => {
            let items = value
                .as_array()
                .ok_or_else(|| unencodable("expected an array"))?;
            for item in items {
                put_value(field.kind, field.tag, item, out, depth)?;
            }
            Ok(())
        }
        Shape::Map => {
            let map = value
                .as_object()
                .ok_or_else(|| unencodable("expected an object"))?;
            // Go writes map entries sorted by key.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                let mut entry = Vec::new();
                put_len(&mut entry, 1, key.as_bytes());
                if let Some(v) = map.get(key).filter(|v| !v.is_null()) {
                    put_value(field.kind, 2, v, &mut entry, depth).map_err(|e| e.within(key))?;
                }
                put_len(out, field.tag, &entry);
            }
            Ok(())
        }
    }
}

fn unencodable(message: &str) -> ProtobufError {
    ProtobufError::Unencodable {
        path: String::new(),
        message: message.to_string(),
    }
}

fn str_of(value: &Value) -> Result<&str, ProtobufError> {
    value
        .as_str()
        .ok_or_else(|| unencodable("expected a string"))
}

fn int_of(value: &Value) -> Result<i64, ProtobufError> {
    value
        .as_i64()
        .ok_or_else(|| unencodable("expected an integer"))
}

fn put_value(
    kind: Kind,
    tag: u32,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ProtobufError> {
    match kind {
        Kind::String => put_len(out, tag, str_of(value)?.as_bytes()),
        Kind::Bytes => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(str_of(value)?)
                .map_err(|e| unencodable(&format!("not base64: {e}")))?;
            put_len(out, tag, &bytes);
        }
        Kind::Bool => {
            let b = value
                .as_bool()
                .ok_or_else(|| unencodable("expected a boolean"))?;
            put_int(out, tag, i64::from(b));
        }
        Kind::Int32 => {
            let n = i32::try_from(int_of(value)?)
                .map_err(|_| unencodable("does not fit in 32 bits"))?;
            put_int(out, tag, i64::from(n));
        }
        Kind::Int64 => put_int(out, tag, int_of(value)?),
        Kind::Double => {
            let f = value
                .as_f64()
                .ok_or_else(|| unencodable("expected a number"))?;
            put_key(out, tag, FIXED64);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Kind::Message(index) => {
            let inner = schema::by_index(index).ok_or_else(|| unencodable("unknown message"))?;
            let object = value
                .as_object()
                .ok_or_else(|| unencodable("expected an object"))?;
            let mut bytes = Vec::new();
            message(inner, object, &mut bytes, depth + 1)?;
            put_len(out, tag, &bytes);
        }
        Kind::Time | Kind::MicroTime => {
            let time: jiff::Timestamp = str_of(value)?
                .parse()
                .map_err(|e| unencodable(&format!("not an RFC 3339 time: {e}")))?;
            let mut bytes = Vec::new();
            put_int(&mut bytes, 1, time.as_second());
            put_int(&mut bytes, 2, i64::from(time.subsec_nanosecond()));
            put_len(out, tag, &bytes);
        }
        Kind::Duration => {
            let mut bytes = Vec::new();
            put_len(&mut bytes, 1, str_of(value)?.as_bytes());
            put_len(out, tag, &bytes);
        }
        Kind::Quantity => {
            // A Quantity may be written as a JSON number; its canonical form is a string.
            let text = match value {
                Value::Number(n) => n.to_string(),
                other => str_of(other)?.to_string(),
            };
            let mut bytes = Vec::new();
            put_len(&mut bytes, 1, text.as_bytes());
            put_len(out, tag, &bytes);
        }
        Kind::IntOrString => {
            let mut bytes = Vec::new();
            match value {
                Value::String(s) => {
                    put_int(&mut bytes, 1, 1);
                    put_int(&mut bytes, 2, 0);
                    put_len(&mut bytes, 3, s.as_bytes());
                }
                other => {
                    let n = i32::try_from(int_of(other)?)
                        .map_err(|_| unencodable("does not fit in 32 bits"))?;
                    put_int(&mut bytes, 1, 0);
                    put_int(&mut bytes, 2, i64::from(n));
                    put_len(&mut bytes, 3, b"");
                }
            }
            put_len(out, tag, &bytes);
        }
        Kind::RawJson => {
            let raw = serde_json::to_vec(value).map_err(|e| unencodable(&e.to_string()))?;
            let mut bytes = Vec::new();
            put_len(&mut bytes, 1, &raw);
            put_len(out, tag, &bytes);
        }
    }
    Ok(())
}
