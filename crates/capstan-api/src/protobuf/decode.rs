//! Protobuf → JSON, driven by the schema table.

use base64::Engine;
use serde_json::{Map, Number, Value};

use super::schema::{self, Field, Kind, Message, Shape};
use super::wire::{FIXED64, LEN, Reader, VARINT, WireValue, malformed};
use super::{MAX_DEPTH, ProtobufError};

/// String fields where Go keeps an empty string in JSON because it means something: a pointer
/// field set to `""`. Elsewhere an empty string is a Go zero value that JSON omits (`omitempty`),
/// and dropping it lets defaulting treat it as unset, as Kubernetes does.
const KEEPS_EMPTY_STRING: &[(&str, &str)] = &[
    // `""` asks for no storage class; a missing one asks for the default class.
    (
        "k8s.io.api.core.v1.PersistentVolumeClaimSpec",
        "storageClassName",
    ),
];

/// Decodes the fields of `message` from `bytes` into `object` (which may already hold fields:
/// protobuf merges repeated occurrences of a message field, and inline fields share it).
pub fn message_into(
    message: &'static Message,
    bytes: &[u8],
    object: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        let (tag, wire) = reader.field()?;
        // Fields this schema does not know (a newer client's) are skipped, as Go does.
        let Some(field) = message.field(tag) else {
            continue;
        };
        field_into(message, field, wire, object, depth).map_err(|e| {
            e.within(if field.json.is_empty() {
                ""
            } else {
                field.json
            })
        })?;
    }
    Ok(())
}

fn field_into(
    message: &'static Message,
    field: &'static Field,
    wire: WireValue<'_>,
    object: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ProtobufError> {
    match field.shape {
        Shape::Inline => {
            let Kind::Message(index) = field.kind else {
                return Err(malformed("an inline field is not a message"));
            };
            let inner = schema::by_index(index).ok_or_else(|| malformed("unknown message"))?;
            message_into(inner, len(wire)?, object, depth + 1)
        }
        Shape::Single => {
            if let (Kind::Message(index), Some(Value::Object(existing))) =
                (field.kind, object.get_mut(field.json))
            {
                let inner = schema::by_index(index).ok_or_else(|| malformed("unknown message"))?;
                return message_into(inner, len(wire)?, existing, depth + 1);
            }
            let value = value(field.kind, wire, depth)?;
            let keep = match &value {
                Value::Null => false,
                Value::String(s) if s.is_empty() => {
                    KEEPS_EMPTY_STRING.contains(&(message.name, field.json))
                }
                _ => true,
            };
            if keep {
                object.insert(field.json.to_string(), value);
            } else {
                object.remove(field.json);
            }
            Ok(())
        }
        Shape::Repeated => {
            let items = object
                .entry(field.json)
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = items else {
                return Err(malformed("a repeated field is also a single one"));
            };
            match (field.kind, wire) {
                // Packed numbers: one record holding many varints.
                (Kind::Int32 | Kind::Int64 | Kind::Bool, WireValue::Len(bytes)) => {
                    let mut packed = Reader::new(bytes);
                    while !packed.is_empty() {
                        items.push(value(
                            field.kind,
                            WireValue::Varint(packed.varint()?),
                            depth,
                        )?);
                    }
                }
                _ => items.push(value(field.kind, wire, depth)?),
            }
            Ok(())
        }
        Shape::Map => {
            let mut entry = Reader::new(len(wire)?);
            let mut key = String::new();
            let mut entry_value = None;
            while !entry.is_empty() {
                match entry.field()? {
                    (1, wire) => key = string(len(wire)?),
                    (2, wire) => entry_value = Some(value(field.kind, wire, depth)?),
                    _ => {}
                }
            }
            // A missing value is the type's zero value.
            let entry_value = match entry_value {
                Some(v) => v,
                None => zero(field.kind),
            };
            let map = object
                .entry(field.json)
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(map) = map else {
                return Err(malformed("a map field is also a single one"));
            };
            map.insert(key, entry_value);
            Ok(())
        }
    }
}

/// The JSON of a value the wire left out: Go's zero value.
fn zero(kind: Kind) -> Value {
    match kind {
        Kind::String | Kind::Bytes | Kind::Duration | Kind::Quantity => {
            Value::String(String::new())
        }
        Kind::Bool => Value::Bool(false),
        Kind::Int32 | Kind::Int64 | Kind::IntOrString => Value::from(0),
        Kind::Double => Value::from(0.0),
        Kind::Message(_) => Value::Object(Map::new()),
        Kind::Time | Kind::MicroTime | Kind::RawJson => Value::Null,
    }
}

fn len<'a>(wire: WireValue<'a>) -> Result<&'a [u8], ProtobufError> {
    match wire {
        WireValue::Len(bytes) => Ok(bytes),
        _ => Err(wrong_wire_type(LEN)),
    }
}

fn varint(wire: WireValue<'_>) -> Result<u64, ProtobufError> {
    match wire {
        WireValue::Varint(v) => Ok(v),
        _ => Err(wrong_wire_type(VARINT)),
    }
}

fn wrong_wire_type(expected: u8) -> ProtobufError {
    malformed(&format!(
        "wire type does not match the schema (expected {expected})"
    ))
}

/// Go replaces invalid UTF-8 when it writes JSON; so does this.
fn string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON value of one wire value of `kind`. `Null` means "absent" (an empty `Time`).
fn value(kind: Kind, wire: WireValue<'_>, depth: usize) -> Result<Value, ProtobufError> {
    Ok(match kind {
        Kind::String => Value::String(string(len(wire)?)),
        Kind::Bytes => Value::String(base64::engine::general_purpose::STANDARD.encode(len(wire)?)),
        Kind::Bool => Value::Bool(varint(wire)? != 0),
        // int32 is sign-extended to 64 bits on the wire; truncation is protobuf's rule.
        Kind::Int32 => Value::from(varint(wire)? as i64 as i32),
        Kind::Int64 => Value::from(varint(wire)? as i64),
        Kind::Double => {
            let WireValue::Fixed64(bits) = wire else {
                return Err(wrong_wire_type(FIXED64));
            };
            Value::Number(
                Number::from_f64(f64::from_bits(bits))
                    .ok_or_else(|| malformed("a double is not a finite number"))?,
            )
        }
        Kind::Message(index) => {
            let message = schema::by_index(index).ok_or_else(|| malformed("unknown message"))?;
            let mut object = Map::new();
            message_into(message, len(wire)?, &mut object, depth + 1)?;
            Value::Object(object)
        }
        Kind::Time | Kind::MicroTime => {
            let mut seconds = 0i64;
            let mut nanos = 0i32;
            let bytes = len(wire)?;
            let mut reader = Reader::new(bytes);
            while !reader.is_empty() {
                match reader.field()? {
                    (1, w) => seconds = varint(w)? as i64,
                    (2, w) => nanos = varint(w)? as i64 as i32,
                    _ => {}
                }
            }
            // Go writes the zero time as an empty message, and JSON as null.
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            let time = jiff::Timestamp::new(seconds, nanos)
                .map_err(|e| malformed(&format!("a time is out of range: {e}")))?;
            let format = if kind == Kind::Time {
                "%Y-%m-%dT%H:%M:%SZ"
            } else {
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            };
            Value::String(time.strftime(format).to_string())
        }
        Kind::Duration | Kind::Quantity => {
            let mut text = String::new();
            let mut reader = Reader::new(len(wire)?);
            while !reader.is_empty() {
                if let (1, w) = reader.field()? {
                    text = string(len(w)?);
                }
            }
            Value::String(text)
        }
        Kind::IntOrString => {
            let (mut is_string, mut int, mut text) = (false, 0i32, String::new());
            let mut reader = Reader::new(len(wire)?);
            while !reader.is_empty() {
                match reader.field()? {
                    (1, w) => is_string = varint(w)? == 1,
                    (2, w) => int = varint(w)? as i64 as i32,
                    (3, w) => text = string(len(w)?),
                    _ => {}
                }
            }
            if is_string {
                Value::String(text)
            } else {
                Value::from(int)
            }
        }
        Kind::RawJson => {
            let mut raw: &[u8] = &[];
            let mut reader = Reader::new(len(wire)?);
            while !reader.is_empty() {
                if let (1, w) = reader.field()? {
                    raw = len(w)?;
                }
            }
            if raw.is_empty() {
                return Ok(Value::Null);
            }
            if raw.starts_with(super::MAGIC) {
                // An object serialized as protobuf inside another (a Table row's object).
                return super::decode_envelope(raw, depth + 1);
            }
            serde_json::from_slice(raw)
                .map_err(|e| malformed(&format!("an embedded object is not JSON: {e}")))?
        }
    })
}
