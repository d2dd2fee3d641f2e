//! Thrift binary and compact protocol readers over a byte slice.
//!
//! Only what a struct decoder needs: field headers, scalars, strings, list headers and
//! skipping unknown values. Every length read from the wire is checked against the bytes
//! that remain before anything is allocated, and nesting is bounded, so a hostile body
//! costs at most its own size. Owns no knowledge of Jaeger's structs (see `jaeger_thrift`).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ThriftError {
    #[error("body ends early at byte {0}")]
    Eof(usize),
    #[error("{what} length {len} at byte {at} exceeds the {remaining} bytes left")]
    Length {
        what: &'static str,
        len: i64,
        at: usize,
        remaining: usize,
    },
    #[error("negative {what} length {len} at byte {at}")]
    Negative {
        what: &'static str,
        len: i64,
        at: usize,
    },
    #[error("unknown thrift type {0} at byte {1}")]
    BadType(u8, usize),
    #[error("varint too long at byte {0}")]
    Varint(usize),
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("field {field} has type {found:?}, expected {expected:?}")]
    WrongType {
        field: &'static str,
        found: Type,
        expected: Type,
    },
    #[error("required field {0} is missing")]
    Missing(&'static str),
    #[error("not a thrift message this endpoint takes: {0}")]
    Message(String),
    /// A count or size over a per-request cap (see `receive::limits`).
    #[error(transparent)]
    Limit(#[from] super::limits::LimitError),
}

/// Thrift value types, independent of how a protocol numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Bool,
    Byte,
    Double,
    I16,
    I32,
    I64,
    Binary,
    Struct,
    Map,
    Set,
    List,
}

const MAX_DEPTH: usize = 64;

/// A field header: its type, its id, and (compact protocol only) a bool value carried inline.
#[derive(Debug, Clone, Copy)]
pub struct FieldHeader {
    pub ty: Type,
    pub id: i16,
    inline_bool: Option<bool>,
}

/// The operations a struct decoder needs, implemented by both protocols.
pub trait Protocol<'a> {
    /// The next field of the current struct, or `None` at its end.
    fn field(&mut self) -> Result<Option<FieldHeader>, ThriftError>;
    fn struct_begin(&mut self) -> Result<(), ThriftError>;
    fn struct_end(&mut self);
    fn bool_value(&mut self, header: &FieldHeader) -> Result<bool, ThriftError>;
    fn i16(&mut self) -> Result<i16, ThriftError>;
    fn i32(&mut self) -> Result<i32, ThriftError>;
    fn i64(&mut self) -> Result<i64, ThriftError>;
    fn double(&mut self) -> Result<f64, ThriftError>;
    fn binary(&mut self) -> Result<&'a [u8], ThriftError>;
    /// A list header: element type and a length already checked against the remaining bytes.
    fn list(&mut self) -> Result<(Type, usize), ThriftError>;
    /// Skip a value of the given type (used for unknown fields).
    fn skip(&mut self, header: &FieldHeader) -> Result<(), ThriftError>;
    fn position(&self) -> usize;
    fn remaining(&self) -> usize;
    /// A message header (what a thrift RPC call starts with): the method name and the
    /// message type (1 call, 4 oneway, ...). The sequence id is read and dropped.
    fn message_begin(&mut self) -> Result<(&'a [u8], u8), ThriftError>;
    /// The unread bytes and whether they are in the compact protocol, for a caller that
    /// reads a struct it knows straight from them (then [`Protocol::advance`]); `None`
    /// when one more struct would be nested too deep.
    fn unread_struct(&self) -> Option<(&'a [u8], bool)>;
    /// Step over `n` bytes of what `unread_struct` gave: a whole struct, read.
    fn advance(&mut self, n: usize);
}

/// The smallest number of bytes one element of a type takes in either protocol, so a list
/// length can be checked against what remains before it is believed.
fn min_size(ty: Type, compact: bool) -> usize {
    match ty {
        Type::Bool | Type::Byte => 1,
        Type::Double => 8,
        Type::I16 => {
            if compact {
                1
            } else {
                2
            }
        }
        Type::I32 => {
            if compact {
                1
            } else {
                4
            }
        }
        Type::I64 => {
            if compact {
                1
            } else {
                8
            }
        }
        Type::Binary => {
            if compact {
                1
            } else {
                4
            }
        }
        Type::Struct => 1,
        Type::Map => {
            if compact {
                1
            } else {
                6
            }
        }
        Type::Set | Type::List => {
            if compact {
                1
            } else {
                5
            }
        }
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ThriftError> {
        let end = self.pos.checked_add(n).ok_or(ThriftError::Eof(self.pos))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(ThriftError::Eof(self.pos))?;
        self.pos = end;
        Ok(s)
    }
    fn byte(&mut self) -> Result<u8, ThriftError> {
        let b = *self.buf.get(self.pos).ok_or(ThriftError::Eof(self.pos))?;
        self.pos += 1;
        Ok(b)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ThriftError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn unread_struct(&self) -> Option<&'a [u8]> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.buf.get(self.pos..)
    }
    fn advance(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.buf.len());
    }
    fn check_len(
        &self,
        what: &'static str,
        len: i64,
        elem: usize,
        at: usize,
    ) -> Result<usize, ThriftError> {
        if len < 0 {
            return Err(ThriftError::Negative { what, len, at });
        }
        let remaining = self.remaining();
        let fits = (len as u64)
            .checked_mul(elem as u64)
            .is_some_and(|need| need <= remaining as u64);
        if !fits {
            return Err(ThriftError::Length {
                what,
                len,
                at,
                remaining,
            });
        }
        Ok(len as usize)
    }
    fn enter(&mut self) -> Result<(), ThriftError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ThriftError::TooDeep(MAX_DEPTH));
        }
        Ok(())
    }
}

/// Skip one value, for either protocol: both express containers through `list`-like
/// headers, so the generic walk only needs the protocol's own primitives.
fn skip_value<'a, P: Protocol<'a> + ?Sized>(
    p: &mut P,
    ty: Type,
    map_header: impl Fn(&mut P) -> Result<(Type, Type, usize), ThriftError> + Copy,
    elem_bool: impl Fn(&mut P) -> Result<(), ThriftError> + Copy,
) -> Result<(), ThriftError> {
    match ty {
        Type::Bool | Type::Byte => elem_bool(p),
        Type::I16 => p.i16().map(drop),
        Type::I32 => p.i32().map(drop),
        Type::I64 => p.i64().map(drop),
        Type::Double => p.double().map(drop),
        Type::Binary => p.binary().map(drop),
        Type::Struct => {
            p.struct_begin()?;
            while let Some(h) = p.field()? {
                p.skip(&h)?;
            }
            p.struct_end();
            Ok(())
        }
        Type::List | Type::Set => {
            let (elem, n) = p.list()?;
            p.struct_begin()?; // counts nesting depth
            for _ in 0..n {
                skip_value(p, elem, map_header, elem_bool)?;
            }
            p.struct_end();
            Ok(())
        }
        Type::Map => {
            let (k, v, n) = map_header(p)?;
            p.struct_begin()?;
            for _ in 0..n {
                skip_value(p, k, map_header, elem_bool)?;
                skip_value(p, v, map_header, elem_bool)?;
            }
            p.struct_end();
            Ok(())
        }
    }
}

/// Thrift's binary protocol (TBinaryProtocol): big-endian fixed-width integers.
pub struct Binary<'a> {
    c: Cursor<'a>,
}

impl<'a> Binary<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Binary {
            c: Cursor {
                buf,
                pos: 0,
                depth: 0,
            },
        }
    }

    fn ty(code: u8, at: usize) -> Result<Type, ThriftError> {
        Ok(match code {
            2 => Type::Bool,
            3 => Type::Byte,
            4 => Type::Double,
            6 => Type::I16,
            8 => Type::I32,
            10 => Type::I64,
            11 => Type::Binary,
            12 => Type::Struct,
            13 => Type::Map,
            14 => Type::Set,
            15 => Type::List,
            _ => return Err(ThriftError::BadType(code, at)),
        })
    }

    fn map_header(&mut self) -> Result<(Type, Type, usize), ThriftError> {
        let at = self.c.pos;
        let k = Self::ty(self.c.byte()?, at)?;
        let v = Self::ty(self.c.byte()?, at + 1)?;
        let len = i32::from_be_bytes(self.c.array()?) as i64;
        let elem = min_size(k, false) + min_size(v, false);
        let n = self.c.check_len("map", len, elem, at)?;
        Ok((k, v, n))
    }
}

impl<'a> Protocol<'a> for Binary<'a> {
    fn field(&mut self) -> Result<Option<FieldHeader>, ThriftError> {
        let at = self.c.pos;
        let code = self.c.byte()?;
        if code == 0 {
            return Ok(None);
        }
        let ty = Self::ty(code, at)?;
        let id = i16::from_be_bytes(self.c.array()?);
        Ok(Some(FieldHeader {
            ty,
            id,
            inline_bool: None,
        }))
    }
    fn struct_begin(&mut self) -> Result<(), ThriftError> {
        self.c.enter()
    }
    fn struct_end(&mut self) {
        self.c.depth = self.c.depth.saturating_sub(1);
    }
    fn bool_value(&mut self, _header: &FieldHeader) -> Result<bool, ThriftError> {
        Ok(self.c.byte()? != 0)
    }
    fn i16(&mut self) -> Result<i16, ThriftError> {
        Ok(i16::from_be_bytes(self.c.array()?))
    }
    fn i32(&mut self) -> Result<i32, ThriftError> {
        Ok(i32::from_be_bytes(self.c.array()?))
    }
    fn i64(&mut self) -> Result<i64, ThriftError> {
        Ok(i64::from_be_bytes(self.c.array()?))
    }
    fn double(&mut self) -> Result<f64, ThriftError> {
        Ok(f64::from_be_bytes(self.c.array()?))
    }
    fn binary(&mut self) -> Result<&'a [u8], ThriftError> {
        let at = self.c.pos;
        let len = i32::from_be_bytes(self.c.array()?) as i64;
        let n = self.c.check_len("string", len, 1, at)?;
        self.c.take(n)
    }
    fn list(&mut self) -> Result<(Type, usize), ThriftError> {
        let at = self.c.pos;
        let elem = Self::ty(self.c.byte()?, at)?;
        let len = i32::from_be_bytes(self.c.array()?) as i64;
        let n = self.c.check_len("list", len, min_size(elem, false), at)?;
        Ok((elem, n))
    }
    fn unread_struct(&self) -> Option<(&'a [u8], bool)> {
        self.c.unread_struct().map(|b| (b, false))
    }
    fn advance(&mut self, n: usize) {
        self.c.advance(n)
    }
    fn skip(&mut self, header: &FieldHeader) -> Result<(), ThriftError> {
        skip_value(self, header.ty, Self::map_header, |p| p.c.byte().map(drop))
    }
    fn message_begin(&mut self) -> Result<(&'a [u8], u8), ThriftError> {
        let at = self.c.pos;
        let first = i32::from_be_bytes(self.c.array()?);
        if first < 0 {
            // strict: version in the high half, type in the low byte, then the name
            if (first as u32) & 0xffff_0000 != 0x8001_0000 {
                return Err(ThriftError::Message(format!(
                    "binary protocol version {:#x} at byte {at}",
                    (first as u32) >> 16
                )));
            }
            let name = self.binary()?;
            self.i32()?;
            Ok((name, (first & 0xff) as u8))
        } else {
            // old non-strict writers: the name's length comes first, then the type
            let n = self.c.check_len("message name", first as i64, 1, at)?;
            let name = self.c.take(n)?;
            let ty = self.c.byte()?;
            self.i32()?;
            Ok((name, ty))
        }
    }
    fn position(&self) -> usize {
        self.c.pos
    }
    fn remaining(&self) -> usize {
        self.c.remaining()
    }
}

/// Thrift's compact protocol (TCompactProtocol): zigzag varints, delta field ids,
/// little-endian doubles, bools folded into field headers.
pub struct Compact<'a> {
    c: Cursor<'a>,
    last_field: i16,
    /// Last field id of each enclosing struct, restored on `struct_end`.
    stack: Vec<i16>,
}

impl<'a> Compact<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Compact {
            c: Cursor {
                buf,
                pos: 0,
                depth: 0,
            },
            last_field: 0,
            stack: Vec::new(),
        }
    }

    fn ty(code: u8, at: usize) -> Result<Type, ThriftError> {
        Ok(match code {
            1 | 2 => Type::Bool,
            3 => Type::Byte,
            4 => Type::I16,
            5 => Type::I32,
            6 => Type::I64,
            7 => Type::Double,
            8 => Type::Binary,
            9 => Type::List,
            10 => Type::Set,
            11 => Type::Map,
            12 => Type::Struct,
            _ => return Err(ThriftError::BadType(code, at)),
        })
    }

    fn varint(&mut self) -> Result<u64, ThriftError> {
        let at = self.c.pos;
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.c.byte()?;
            if shift == 63 && b > 1 {
                return Err(ThriftError::Varint(at));
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ThriftError::Varint(at))
    }

    fn zigzag(&mut self) -> Result<i64, ThriftError> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn map_header(&mut self) -> Result<(Type, Type, usize), ThriftError> {
        let at = self.c.pos;
        let len = self.varint()?;
        if len == 0 {
            return Ok((Type::Byte, Type::Byte, 0));
        }
        let kv = self.c.byte()?;
        let k = Self::ty(kv >> 4, at)?;
        let v = Self::ty(kv & 0x0f, at)?;
        let len = i64::try_from(len).unwrap_or(i64::MAX);
        let n = self
            .c
            .check_len("map", len, min_size(k, true) + min_size(v, true), at)?;
        Ok((k, v, n))
    }
}

impl<'a> Protocol<'a> for Compact<'a> {
    fn field(&mut self) -> Result<Option<FieldHeader>, ThriftError> {
        let at = self.c.pos;
        let b = self.c.byte()?;
        if b == 0 {
            return Ok(None);
        }
        let code = b & 0x0f;
        let ty = Self::ty(code, at)?;
        let delta = (b >> 4) as i16;
        let id = if delta != 0 {
            self.last_field.wrapping_add(delta)
        } else {
            self.zigzag()? as i16
        };
        self.last_field = id;
        let inline_bool = match code {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        };
        Ok(Some(FieldHeader {
            ty,
            id,
            inline_bool,
        }))
    }
    fn struct_begin(&mut self) -> Result<(), ThriftError> {
        self.c.enter()?;
        self.stack.push(self.last_field);
        self.last_field = 0;
        Ok(())
    }
    fn struct_end(&mut self) {
        self.c.depth = self.c.depth.saturating_sub(1);
        self.last_field = self.stack.pop().unwrap_or(0);
    }
    fn bool_value(&mut self, header: &FieldHeader) -> Result<bool, ThriftError> {
        match header.inline_bool {
            Some(b) => Ok(b),
            // Inside containers a bool is one byte; 1 is true, anything else false.
            None => Ok(self.c.byte()? == 1),
        }
    }
    fn i16(&mut self) -> Result<i16, ThriftError> {
        Ok(self.zigzag()? as i16)
    }
    fn i32(&mut self) -> Result<i32, ThriftError> {
        Ok(self.zigzag()? as i32)
    }
    fn i64(&mut self) -> Result<i64, ThriftError> {
        self.zigzag()
    }
    fn double(&mut self) -> Result<f64, ThriftError> {
        Ok(f64::from_le_bytes(self.c.array()?))
    }
    fn binary(&mut self) -> Result<&'a [u8], ThriftError> {
        let at = self.c.pos;
        let len = i64::try_from(self.varint()?).unwrap_or(i64::MAX);
        let n = self.c.check_len("string", len, 1, at)?;
        self.c.take(n)
    }
    fn list(&mut self) -> Result<(Type, usize), ThriftError> {
        let at = self.c.pos;
        let b = self.c.byte()?;
        let elem = Self::ty(b & 0x0f, at)?;
        let short = (b >> 4) as u64;
        let len = if short == 15 { self.varint()? } else { short };
        let len = i64::try_from(len).unwrap_or(i64::MAX);
        let n = self.c.check_len("list", len, min_size(elem, true), at)?;
        Ok((elem, n))
    }
    fn unread_struct(&self) -> Option<(&'a [u8], bool)> {
        self.c.unread_struct().map(|b| (b, true))
    }
    fn advance(&mut self, n: usize) {
        self.c.advance(n)
    }
    fn skip(&mut self, header: &FieldHeader) -> Result<(), ThriftError> {
        if header.inline_bool.is_some() {
            return Ok(());
        }
        skip_value(self, header.ty, Self::map_header, |p| p.c.byte().map(drop))
    }
    fn message_begin(&mut self) -> Result<(&'a [u8], u8), ThriftError> {
        let at = self.c.pos;
        let protocol_id = self.c.byte()?;
        let version_and_type = self.c.byte()?;
        if protocol_id != 0x82 || version_and_type & 0x1f != 1 {
            return Err(ThriftError::Message(format!(
                "compact protocol header {protocol_id:#x} {version_and_type:#x} at byte {at}"
            )));
        }
        self.varint()?; // sequence id
        let name = self.binary()?;
        Ok((name, version_and_type >> 5))
    }
    fn position(&self) -> usize {
        self.c.pos
    }
    fn remaining(&self) -> usize {
        self.c.remaining()
    }
}

#[cfg(test)]
#[path = "thrift_tests.rs"]
mod tests;
