//! The protobuf wire format: varints, keys and length-delimited records. Reading never indexes
//! past the buffer: every slice is taken with `get`, and a short buffer is an error.

use super::ProtobufError;

pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

/// A cursor over one message's bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
}

/// One value as the wire carries it, before the schema gives it a meaning.
#[derive(Debug, Clone, Copy)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    /// Kubernetes has no fixed32 fields; the value is only skipped.
    Fixed32,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value: u64 = 0;
        for (i, byte) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.buf = self.buf.get(i + 1..).unwrap_or_default();
                return Ok(value);
            }
        }
        Err(malformed("a varint is truncated or longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let taken = self
            .buf
            .get(..n)
            .ok_or_else(|| malformed("a field runs past the end of its message"))?;
        self.buf = self.buf.get(n..).unwrap_or_default();
        Ok(taken)
    }

    /// The next field: its tag and value.
    pub fn field(&mut self) -> Result<(u32, WireValue<'a>), ProtobufError> {
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| malformed("a field tag is too large"))?;
        if tag == 0 {
            return Err(malformed("a field has tag 0"));
        }
        let value = match (key & 7) as u8 {
            VARINT => WireValue::Varint(self.varint()?),
            FIXED64 => {
                let bytes: [u8; 8] = self.take(8)?.try_into().unwrap_or_default();
                WireValue::Fixed64(u64::from_le_bytes(bytes))
            }
            LEN => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| malformed("a length does not fit in memory"))?;
                WireValue::Len(self.take(len)?)
            }
            FIXED32 => {
                self.take(4)?;
                WireValue::Fixed32
            }
            other => {
                return Err(malformed(&format!(
                    "field {tag} has wire type {other}, which Kubernetes never uses"
                )));
            }
        };
        Ok((tag, value))
    }
}

pub fn malformed(message: &str) -> ProtobufError {
    ProtobufError::Malformed {
        path: String::new(),
        message: message.to_string(),
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn put_key(out: &mut Vec<u8>, tag: u32, wire_type: u8) {
    put_varint(out, (u64::from(tag) << 3) | u64::from(wire_type));
}

pub fn put_len(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    put_key(out, tag, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// An int32 or int64 field: negative numbers take ten bytes, sign-extended, as in protobuf.
pub fn put_int(out: &mut Vec<u8>, tag: u32, value: i64) {
    put_key(out, tag, VARINT);
    put_varint(out, value as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_including_negative_numbers() {
        for value in [0i64, 1, 127, 128, 300, i64::from(i32::MAX), -1, i64::MIN] {
            let mut out = Vec::new();
            put_int(&mut out, 3, value);
            let (tag, wire) = Reader::new(&out).field().unwrap();
            assert_eq!(tag, 3);
            assert!(matches!(wire, WireValue::Varint(v) if v as i64 == value));
        }
    }

    #[test]
    fn truncated_and_overlong_input_is_an_error_not_a_panic() {
        for bytes in [
            &[0x0a, 0x05, b'a'][..],
            &[0x08],
            &[0xff; 11],
            &[0x0b],
            &[0x00, 0x00],
        ] {
            let mut reader = Reader::new(bytes);
            assert!(reader.field().is_err(), "{bytes:?}");
        }
    }
}
