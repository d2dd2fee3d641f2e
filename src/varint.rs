//! LEB128 varints appended to a `Vec<u8>`: what the store's own encoders (span chunks,
//! metric aggregates, posting blocks) write. prost's `encode_varint` goes through
//! `BufMut` a byte at a time, with a capacity check per byte; in the span chunk writer
//! that was 2.4 % of the daemon's CPU under the bench. Reading stays with each format's
//! checked decoder.

/// Append `v` as a varint.
#[inline]
pub fn push(mut v: u64, out: &mut Vec<u8>) {
    // byte by byte into reserved room: copying a stack buffer of a few bytes was a
    // `memmove` call each time (1 % of the daemon's samples)
    out.reserve(10);
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint in a stack buffer, for writers that place its bytes themselves.
pub struct Encoded {
    bytes: [u8; 10],
    len: u8,
}

impl Encoded {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// `v` as a varint's bytes.
#[inline]
pub fn encoded(mut v: u64) -> Encoded {
    let mut bytes = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        bytes[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    Encoded {
        bytes,
        len: n as u8 + 1,
    }
}

/// Append a protobuf field key: `field` with wire type `wire_type` (0 varint, 1 fixed
/// 64, 2 length-delimited, 5 fixed 32).
#[inline]
pub fn push_key(field: u32, wire_type: u8, out: &mut Vec<u8>) {
    push(u64::from(field) << 3 | u64::from(wire_type), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_leb128() {
        // hand-written: the protobuf encoding guide's examples and the edges of each length
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (150, &[0x96, 0x01]),
            (300, &[0xac, 0x02]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(v, want) in cases {
            let mut out = vec![0xaa];
            push(v, &mut out);
            assert_eq!(&out[1..], want, "{v}");
            assert_eq!(encoded(v).bytes(), want, "{v}");
        }
    }

    #[test]
    fn keys_are_field_and_wire_type() {
        let mut out = Vec::new();
        push_key(1, 2, &mut out); // field 1, length-delimited
        push_key(16, 0, &mut out); // field 16 needs two bytes
        assert_eq!(out, [0x0a, 0x80, 0x01]);
    }
}
