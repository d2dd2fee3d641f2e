//! A protobuf message's fields walked on the wire without decoding: what the receivers
//! use to count a message's elements (and charge them) before prost allocates for them.
//! Knows no schema; each receiver says which fields to look into.

/// Top-level fields of a protobuf message: (field number, length-delimited payload or an
/// empty slice for scalars), or an error where the wire is malformed.
pub struct Fields<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, failed: false }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Result<&'a [u8], String>);

    fn next(&mut self) -> Option<Self::Item> {
        use prost::encoding::{decode_key, decode_varint, WireType};
        if self.buf.is_empty() || self.failed {
            return None;
        }
        let mut step = || -> Result<(u32, &'a [u8]), String> {
            let mut b = self.buf;
            let (field, wire) = decode_key(&mut b).map_err(|e| e.to_string())?;
            let value: &[u8] = match wire {
                WireType::Varint => {
                    decode_varint(&mut b).map_err(|e| e.to_string())?;
                    &[]
                }
                WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                    let n = if wire == WireType::SixtyFourBit { 8 } else { 4 };
                    if b.len() < n {
                        return Err("truncated fixed-width field".into());
                    }
                    b = &b[n..];
                    &[]
                }
                WireType::LengthDelimited => {
                    let len = decode_varint(&mut b).map_err(|e| e.to_string())?;
                    let len = usize::try_from(len)
                        .ok()
                        .filter(|l| *l <= b.len())
                        .ok_or("length beyond the body")?;
                    let (v, rest) = b.split_at(len);
                    b = rest;
                    v
                }
                _ => return Err("groups are not used by Zipkin".into()),
            };
            self.buf = b;
            Ok((field, value))
        };
        match step() {
            Ok((field, value)) => Some((field, Ok(value))),
            Err(e) => {
                self.failed = true;
                Some((0, Err(e)))
            }
        }
    }
}
