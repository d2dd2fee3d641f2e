//! The usual Jaeger `Tag`, read straight from its bytes in either thrift protocol.
//!
//! Clients write a tag as its key, its `vType` and the one value field that type names,
//! in field order: this reads exactly that shape and nothing else, so the decoder
//! (`jaeger_thrift`) walks fields generically only for the rest (fields out of order,
//! several values, unknown fields), with the same result. A tag is most of a span's
//! bytes, and the generic walk dispatched every field header through the protocol.
//! Owns no state and no UTF-8 handling: the caller turns the bytes into strings.

/// A tag's value as its bytes say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plain<'a> {
    Str(&'a [u8]),
    F64(f64),
    Bool(bool),
    I64(i64),
    Binary(&'a [u8]),
}

/// A whole `Tag` at the start of `buf`: (bytes it takes, key, value); `None` for any
/// other shape or when `buf` ends first.
pub fn plain(buf: &[u8], compact: bool) -> Option<(usize, &[u8], Plain<'_>)> {
    let mut r = Reader { buf, pos: 0 };
    let (key, value) = if compact { r.compact()? } else { r.binary()? };
    Some((r.pos, key, value))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn expect(&mut self, bytes: &[u8]) -> Option<()> {
        (self.take(bytes.len())? == bytes).then_some(())
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// TBinaryProtocol: a field is its type code, its id (2 bytes BE), its value.
    fn binary(&mut self) -> Option<(&'a [u8], Plain<'a>)> {
        self.expect(&[11, 0, 1])?;
        let key = self.binary_bytes()?;
        self.expect(&[8, 0, 2])?;
        let v_type = i32::from_be_bytes(self.array()?);
        let value = match v_type {
            0 => {
                self.expect(&[11, 0, 3])?;
                Plain::Str(self.binary_bytes()?)
            }
            1 => {
                self.expect(&[4, 0, 4])?;
                Plain::F64(f64::from_be_bytes(self.array()?))
            }
            2 => {
                self.expect(&[2, 0, 5])?;
                Plain::Bool(self.take(1)?[0] != 0)
            }
            3 => {
                self.expect(&[10, 0, 6])?;
                Plain::I64(i64::from_be_bytes(self.array()?))
            }
            4 => {
                self.expect(&[11, 0, 7])?;
                Plain::Binary(self.binary_bytes()?)
            }
            _ => return None,
        };
        self.expect(&[0])?;
        Some((key, value))
    }
    fn binary_bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(i32::from_be_bytes(self.array()?)).ok()?;
        self.take(len)
    }

    /// TCompactProtocol: a field header byte is (id delta << 4) | type, where the delta
    /// is from the struct's previous field; a bool's value is its type (1 true, 2 false).
    fn compact(&mut self) -> Option<(&'a [u8], Plain<'a>)> {
        self.expect(&[0x18])?; // field 1, binary
        let key = self.compact_bytes()?;
        self.expect(&[0x15])?; // field 2, i32
        let v_type = i32::try_from(self.zigzag()?).ok()?;
        let value = match (v_type, self.take(1)?[0]) {
            (0, 0x18) => Plain::Str(self.compact_bytes()?), // field 3, binary
            (1, 0x27) => Plain::F64(f64::from_le_bytes(self.array()?)), // field 4, double
            (2, 0x31) => Plain::Bool(true),                 // field 5, true
            (2, 0x32) => Plain::Bool(false),
            (3, 0x46) => Plain::I64(self.zigzag()?), // field 6, i64
            (4, 0x58) => Plain::Binary(self.compact_bytes()?), // field 7, binary
            _ => return None,
        };
        self.expect(&[0])?;
        Some((key, value))
    }
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }
    fn compact_bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bytes written by hand from the thrift protocol specs (binary: type, id BE, value;
    // compact: delta << 4 | type, zigzag varints, little-endian doubles).
    const BINARY_STR: &[u8] = &[
        11, 0, 1, 0, 0, 0, 1, b'k', // key "k"
        8, 0, 2, 0, 0, 0, 0, // vType STRING
        11, 0, 3, 0, 0, 0, 2, b'v', b'w', // vStr "vw"
        0,
    ];
    const COMPACT_STR: &[u8] = &[0x18, 1, b'k', 0x15, 0, 0x18, 2, b'v', b'w', 0];

    #[test]
    fn usual_tags_in_both_protocols() {
        assert_eq!(
            plain(BINARY_STR, false),
            Some((BINARY_STR.len(), &b"k"[..], Plain::Str(b"vw")))
        );
        assert_eq!(
            plain(COMPACT_STR, true),
            Some((COMPACT_STR.len(), &b"k"[..], Plain::Str(b"vw")))
        );
        let mut long = vec![11, 0, 1, 0, 0, 0, 1, b'n', 8, 0, 2, 0, 0, 0, 3, 10, 0, 6];
        long.extend_from_slice(&(-5i64).to_be_bytes());
        long.push(0);
        assert_eq!(plain(&long, false).map(|t| t.2), Some(Plain::I64(-5)));
        // -5 zigzags to 9
        let c_long = [0x18, 1, b'n', 0x15, 6, 0x46, 9, 0];
        assert_eq!(plain(&c_long, true).map(|t| t.2), Some(Plain::I64(-5)));
        let c_bool = [0x18, 1, b'b', 0x15, 4, 0x32, 0];
        assert_eq!(plain(&c_bool, true).map(|t| t.2), Some(Plain::Bool(false)));
        let b_bool = [
            11, 0, 1, 0, 0, 0, 1, b'b', 8, 0, 2, 0, 0, 0, 2, 2, 0, 5, 1, 0,
        ];
        assert_eq!(plain(&b_bool, false).map(|t| t.2), Some(Plain::Bool(true)));
        let mut c_f64 = vec![0x18, 1, b'd', 0x15, 2, 0x27];
        c_f64.extend_from_slice(&1.5f64.to_le_bytes());
        c_f64.push(0);
        assert_eq!(plain(&c_f64, true).map(|t| t.2), Some(Plain::F64(1.5)));
        // what follows the tag is not read
        let mut more = COMPACT_STR.to_vec();
        more.extend_from_slice(&[0x18, 0xff]);
        assert_eq!(plain(&more, true).map(|t| t.0), Some(COMPACT_STR.len()));
    }

    #[test]
    fn any_other_shape_is_left_to_the_generic_walk() {
        // the value field is not the one vType names (a client that filled vLong too)
        let c = [0x18, 1, b'k', 0x15, 0, 0x46, 2, 0];
        assert_eq!(plain(&c, true), None);
        // vType outside the enum
        let b = [11, 0, 1, 0, 0, 0, 1, b'k', 8, 0, 2, 0, 0, 0, 9, 0];
        assert_eq!(plain(&b, false), None);
        // a second value field before the stop
        let c = [0x18, 1, b'k', 0x15, 0, 0x18, 1, b'v', 0x36, 2, 0];
        assert_eq!(plain(&c, true), None);
        // fields out of order
        let c = [0x15, 0, 0xf8, 1, b'k', 0x28, 1, b'v', 0];
        assert_eq!(plain(&c, true), None);
        // negative and oversized lengths, and every truncation
        let b = [11, 0, 1, 0xff, 0xff, 0xff, 0xff, 0];
        assert_eq!(plain(&b, false), None);
        let c = [0x18, 0xff, 0xff, 0xff, 0xff, 0x0f, 0];
        assert_eq!(plain(&c, true), None);
        for n in 0..BINARY_STR.len() {
            assert_eq!(plain(&BINARY_STR[..n], false), None, "binary cut at {n}");
        }
        for n in 0..COMPACT_STR.len() {
            assert_eq!(plain(&COMPACT_STR[..n], true), None, "compact cut at {n}");
        }
        // an overlong varint
        let c = [
            0x18, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
        ];
        assert_eq!(plain(&c, true), None);
    }
}
