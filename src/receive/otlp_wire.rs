//! OTLP protobuf bytes → model spans in one pass, without prost's intermediate structs.
//!
//! Decoding a request into `ExportTraceServiceRequest` and then mapping it allocated every
//! string, attribute and span twice (a third of the daemon's CPU went to OTLP decoding
//! in `perf`, against half that for thrift, which decodes straight into the model). This
//! reader walks the same bytes and fills [`otlp::SpanParts`], which `otlp` maps as it maps
//! a prost-decoded (JSON) request: one mapping, two decoders. It accepts and refuses
//! exactly what prost does: wire types of known fields are checked, every string prost
//! would read (used or not) must be UTF-8, unknown fields are skipped, the last of a
//! repeated scalar wins and repeated messages merge. The unit tests hold it to prost's
//! answer on real SDK bodies and on mutations of them.
//!
//! The request has been scanned by `otlp_cost` first (caps checked, memory charged, no
//! groups), so lists here are bounded; nesting is still limited here as prost limits it.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{any_value, ArrayValue, KeyValueList};
use prost::Message;

use super::otlp::{self, Mapped, SpanParts};
use super::recent::{Recent, Slot};
use crate::model::{KeyValue, Log, Process, Str, Value};

/// prost's own recursion limit for nested messages.
const MAX_DEPTH: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct WireError(pub String);

fn err<T>(what: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(what.into()))
}

/// A field's value as found on the wire.
#[derive(Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
    /// A group (proto2, not OTLP): skipped whole, as prost skips one in an unknown field.
    Group,
}

impl<'a> Field<'a> {
    fn wire_name(&self) -> &'static str {
        match self {
            Field::Varint(_) => "varint",
            Field::Fixed64(_) => "64-bit",
            Field::Fixed32(_) => "32-bit",
            Field::Bytes(_) => "length-delimited",
            Field::Group => "a group",
        }
    }
}

/// The fields of one message, in wire order.
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn of(buf: &'a [u8]) -> Self {
        Fields { buf }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let Some((&b, rest)) = self.buf.split_first() else {
                return err("truncated varint");
            };
            self.buf = rest;
            if shift == 63 && b > 1 {
                return err("varint overflows 64 bits");
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        err("varint longer than 10 bytes")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return err("field runs past the end of its message");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u32, Field<'a>)>, WireError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).unwrap_or(u32::MAX);
        if tag == 0 || tag > (1 << 29) - 1 {
            return err(format!("invalid field number {}", key >> 3));
        }
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().unwrap_or_default(),
            )),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                Field::Bytes(self.take(len)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().unwrap_or_default(),
            )),
            3 => {
                self.skip_group(tag, 1)?;
                Field::Group
            }
            4 => return err("end of a group that was not started"),
            w => return err(format!("unsupported wire type {w}")),
        };
        Ok(Some((tag, field)))
    }

    /// Skip to the end of group `tag`, groups inside it included (prost's `skip_field`).
    fn skip_group(&mut self, tag: u32, depth: usize) -> Result<(), WireError> {
        if depth > MAX_DEPTH {
            return err("recursion limit reached");
        }
        loop {
            if self.buf.is_empty() {
                return err("group runs past the end of its message");
            }
            let key = self.varint()?;
            let inner = u32::try_from(key >> 3).unwrap_or(u32::MAX);
            if inner == 0 || inner > (1 << 29) - 1 {
                return err(format!("invalid field number {}", key >> 3));
            }
            match key & 7 {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    let len = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
                    self.take(len)?;
                }
                3 => self.skip_group(inner, depth + 1)?,
                4 if inner == tag => return Ok(()),
                4 => return err("end of a group that was not started"),
                5 => {
                    self.take(4)?;
                }
                w => return err(format!("unsupported wire type {w}")),
            }
        }
    }
}

fn wrong(tag: u32, f: Field, expected: &str) -> WireError {
    WireError(format!(
        "field {tag} is {}, expected {expected}",
        f.wire_name()
    ))
}

fn bytes<'a>(tag: u32, f: Field<'a>) -> Result<&'a [u8], WireError> {
    match f {
        Field::Bytes(b) => Ok(b),
        other => Err(wrong(tag, other, "length-delimited")),
    }
}

/// A string field as an owned `String` or model [`Str`] (inline when short).
fn string<S: for<'a> From<&'a str>>(tag: u32, f: Field) -> Result<S, WireError> {
    str_of(tag, f).map(S::from)
}

fn str_of<'a>(tag: u32, f: Field<'a>) -> Result<&'a str, WireError> {
    std::str::from_utf8(bytes(tag, f)?)
        .map_err(|_| WireError(format!("field {tag} is not valid UTF-8")))
}

fn varint(tag: u32, f: Field) -> Result<u64, WireError> {
    match f {
        Field::Varint(v) => Ok(v),
        other => Err(wrong(tag, other, "varint")),
    }
}

fn fixed64(tag: u32, f: Field) -> Result<u64, WireError> {
    match f {
        Field::Fixed64(v) => Ok(v),
        other => Err(wrong(tag, other, "64-bit")),
    }
}

fn fixed32(tag: u32, f: Field) -> Result<u32, WireError> {
    match f {
        Field::Fixed32(v) => Ok(v),
        other => Err(wrong(tag, other, "32-bit")),
    }
}

/// Decode and map an `ExportTraceServiceRequest`.
/// Room is made for `spans` spans first: the count `otlp_cost` took (and charged for)
/// before decoding, so the list does not grow by doubling, moving every span each time.
pub fn decode(body: &[u8], spans: usize) -> Result<Mapped, WireError> {
    let mut out = Mapped {
        spans: Vec::with_capacity(spans),
        ..Mapped::default()
    };
    let mut index = 0usize;
    let mut recent = Recent::default();
    let mut fields = Fields::of(body);
    while let Some((tag, f)) = fields.next()? {
        if tag == 1 {
            resource_spans(bytes(tag, f)?, &mut out, &mut index, &mut recent)?;
        }
    }
    Ok(out)
}

fn resource_spans<'a>(
    buf: &'a [u8],
    out: &mut Mapped,
    index: &mut usize,
    recent: &mut Recent<'a>,
) -> Result<(), WireError> {
    // The resource may come after its spans on the wire: read it first.
    let mut attributes: Vec<(KeyValue, bool)> = Vec::new();
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        match tag {
            1 => resource(bytes(tag, f)?, &mut attributes)?,
            2 => {
                bytes(tag, f)?;
            }
            3 => {
                str_of(tag, f)?;
            }
            _ => {}
        }
    }
    let process = otlp::process(attributes.into_iter());
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        if tag == 2 {
            scope_spans(bytes(tag, f)?, &process, out, index, recent)?;
        }
    }
    Ok(())
}

fn resource(buf: &[u8], attributes: &mut Vec<(KeyValue, bool)>) -> Result<(), WireError> {
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        match tag {
            1 => attributes.push(key_value(bytes(tag, f)?, 1)?),
            2 => {
                varint(tag, f)?;
            }
            3 => entity_ref(bytes(tag, f)?)?,
            _ => {}
        }
    }
    Ok(())
}

/// `EntityRef`: nothing fctrace keeps, but prost reads its strings.
fn entity_ref(buf: &[u8]) -> Result<(), WireError> {
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        if (1..=4).contains(&tag) {
            str_of(tag, f)?;
        }
    }
    Ok(())
}

fn scope_spans<'a>(
    buf: &'a [u8],
    process: &Arc<Process>,
    out: &mut Mapped,
    index: &mut usize,
    recent: &mut Recent<'a>,
) -> Result<(), WireError> {
    let (mut name, mut version) = (String::new(), String::new());
    let mut attributes = Vec::new();
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        match tag {
            1 => scope(bytes(tag, f)?, &mut name, &mut version, &mut attributes)?,
            2 => {
                bytes(tag, f)?;
            }
            3 => {
                str_of(tag, f)?;
            }
            _ => {}
        }
    }
    let scope_tags = otlp::scope_tags(name, version);
    let process = &otlp::scope_process(process, attributes);
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        if tag == 2 {
            let parts = span(bytes(tag, f)?, recent)?;
            out.push(index, otlp::span_of(parts, process, &scope_tags));
        }
    }
    Ok(())
}

fn scope(
    buf: &[u8],
    name: &mut String,
    version: &mut String,
    attributes: &mut Vec<KeyValue>,
) -> Result<(), WireError> {
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        match tag {
            1 => *name = string(tag, f)?,
            2 => *version = string(tag, f)?,
            3 => attributes.push(key_value(bytes(tag, f)?, 2)?.0),
            4 => {
                varint(tag, f)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn span<'a>(buf: &'a [u8], recent: &mut Recent<'a>) -> Result<SpanParts, WireError> {
    // Room for as many attributes as the spans before had, and the few tags `span_of`
    // adds (span kind, status): the list grown from empty was four allocations a span.
    let mut p = SpanParts {
        attributes: Vec::with_capacity(recent.positions() + 4),
        ..SpanParts::default()
    };
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        match tag {
            1 => p.trace = Some(otlp::trace_id(bytes(tag, f)?, "trace id")),
            2 => p.id = Some(otlp::span_id(bytes(tag, f)?, "span id")),
            3 => p.trace_state = string(tag, f)?,
            4 => {
                let b = bytes(tag, f)?;
                p.parent = (!b.is_empty()).then(|| otlp::span_id(b, "parent span id"));
            }
            5 => p.name = string(tag, f)?,
            6 => p.kind = varint(tag, f)? as i32,
            7 => p.start = fixed64(tag, f)?,
            8 => p.end = fixed64(tag, f)?,
            9 => {
                let slot = recent.slot(p.attributes.len());
                p.attributes.push(key_value_at(bytes(tag, f)?, 2, slot)?.0);
            }
            11 => p.events.push(event(bytes(tag, f)?)?),
            13 => {
                let (l, attributes) = link(bytes(tag, f)?)?;
                let i = p.links.len();
                p.links.push(l);
                p.link_attributes
                    .extend(attributes.into_iter().map(|kv| (i, kv)));
            }
            15 => {
                let (code, message) = p.status.get_or_insert_with(Default::default);
                status(bytes(tag, f)?, code, message)?;
            }
            16 => p.flags = fixed32(tag, f)?,
            10 | 12 | 14 => {
                varint(tag, f)?;
            }
            _ => {}
        }
    }
    Ok(p)
}

fn event(buf: &[u8]) -> Result<Log, WireError> {
    let (mut time, mut name, mut attributes) = (0, String::new(), Vec::new());
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        match tag {
            1 => time = fixed64(tag, f)?,
            2 => name = string(tag, f)?,
            3 => attributes.push(key_value(bytes(tag, f)?, 3)?.0),
            4 => {
                varint(tag, f)?;
            }
            _ => {}
        }
    }
    Ok(otlp::log(time, name, attributes.into_iter()))
}

/// A link's ids (or why they are refused) and its attributes.
type Link = (
    Result<(crate::model::TraceId, crate::model::SpanId), String>,
    Vec<KeyValue>,
);

fn link(buf: &[u8]) -> Result<Link, WireError> {
    let (mut trace, mut span): (&[u8], &[u8]) = (&[], &[]);
    let mut attributes = Vec::new();
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        match tag {
            1 => trace = bytes(tag, f)?,
            2 => span = bytes(tag, f)?,
            3 => {
                str_of(tag, f)?;
            }
            4 => attributes.push(key_value(bytes(tag, f)?, 3)?.0),
            5 => {
                varint(tag, f)?;
            }
            6 => {
                fixed32(tag, f)?;
            }
            _ => {}
        }
    }
    Ok((otlp::link(trace, span), attributes))
}

fn status(buf: &[u8], code: &mut i32, message: &mut String) -> Result<(), WireError> {
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        match tag {
            2 => *message = string(tag, f)?,
            3 => *code = varint(tag, f)? as i32,
            _ => {}
        }
    }
    Ok(())
}

/// A `KeyValue` at nesting `depth` (messages above it), and whether its value is a
/// string (for `service.name`).
fn key_value(buf: &[u8], depth: usize) -> Result<(KeyValue, bool), WireError> {
    key_value_at(buf, depth, None)
}

/// [`key_value`] of a span's attribute, its strings taken from `recent` (the attribute
/// at the same place in the span before) when they are the same bytes.
fn key_value_at<'a>(
    buf: &'a [u8],
    depth: usize,
    recent: Option<&mut Slot<'a>>,
) -> Result<(KeyValue, bool), WireError> {
    if depth > MAX_DEPTH {
        return err("recursion limit reached");
    }
    if let Some(simple) = simple_key_value(buf, recent) {
        return Ok(simple);
    }
    let mut key = Str::default();
    let mut value: Option<Any> = None;
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        match tag {
            1 => key = string(tag, f)?,
            2 => any_value(bytes(tag, f)?, value.get_or_insert(Any::Empty), depth + 1)?,
            3 => {
                varint(tag, f)?;
            }
            _ => {}
        }
    }
    let is_string = matches!(value, Some(Any::Str(_)));
    let value = value.map_or(Value::Str(Str::default()), Any::into_value);
    Ok((KeyValue { key, value }, is_string))
}

/// The usual attribute, exactly `{1: key, 2: {string | bool | int | double}}` with every
/// length under 128, read without the general field loop: this runs for every attribute
/// of every span (two levels of fields each; `key_value` was the decoder's largest
/// share). Any other shape, and any invalid byte, returns `None`: the general path then
/// decodes it or says what is wrong.
fn simple_key_value<'a>(
    buf: &'a [u8],
    mut recent: Option<&mut Slot<'a>>,
) -> Option<(KeyValue, bool)> {
    let [0x0a, key_len, rest @ ..] = buf else {
        return None;
    };
    let key_len = usize::from(*key_len);
    if key_len >= 0x80 || key_len > rest.len() {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let [0x12, value_len, any @ ..] = rest else {
        return None;
    };
    if *value_len >= 0x80 || usize::from(*value_len) != any.len() {
        return None;
    }
    let (value, is_string) = match any {
        [0x0a, len, s @ ..] if *len < 0x80 && usize::from(*len) == s.len() => {
            let s = match recent.as_mut() {
                Some(r) => r.value.text(s)?,
                None => Str::from(std::str::from_utf8(s).ok()?),
            };
            (Value::Str(s), true)
        }
        [0x10, b] if *b < 0x80 => (Value::Bool(*b != 0), false),
        [0x18, v @ ..] => {
            let mut f = Fields::of(v);
            let n = f.varint().ok()?;
            if !f.buf.is_empty() {
                return None;
            }
            (Value::I64(n as i64), false)
        }
        [0x21, d @ ..] => (
            Value::F64(f64::from_bits(u64::from_le_bytes(d.try_into().ok()?))),
            false,
        ),
        _ => return None,
    };
    let key = match recent {
        Some(r) => r.key.text(key)?,
        None => Str::from(std::str::from_utf8(key).ok()?),
    };
    Some((KeyValue { key, value }, is_string))
}

/// An `AnyValue` as decoded so far: the oneof's last field wins, and a nested array or
/// list met twice merges. Nested values are rare, so prost decodes them (checking them
/// exactly as the prost path does) and `otlp` turns them into JSON text.
enum Any {
    Empty,
    Str(Str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(ArrayValue),
    List(KeyValueList),
    /// The profiling signal's string-table index: no value outside profiles.
    StrIndex,
}

impl Any {
    fn into_value(self) -> Value {
        match self {
            Any::Empty => Value::Str(Str::default()),
            Any::Str(s) => Value::Str(s),
            Any::Bool(b) => Value::Bool(b),
            Any::Int(i) => Value::I64(i),
            Any::Double(d) => Value::F64(d),
            Any::Bytes(b) => Value::Binary(b),
            Any::Array(a) => otlp::value(any_value::Value::ArrayValue(a)),
            Any::List(l) => otlp::value(any_value::Value::KvlistValue(l)),
            Any::StrIndex => Value::Str("null".into()),
        }
    }
}

fn any_value(buf: &[u8], v: &mut Any, depth: usize) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return err("recursion limit reached");
    }
    let prost_err = |e: prost::DecodeError| WireError(e.to_string());
    let mut fields = Fields::of(buf);
    while let Some((tag, f)) = fields.next()? {
        match tag {
            1 => *v = Any::Str(string(tag, f)?),
            2 => *v = Any::Bool(varint(tag, f)? != 0),
            3 => *v = Any::Int(varint(tag, f)? as i64),
            4 => *v = Any::Double(f64::from_bits(fixed64(tag, f)?)),
            5 => {
                let b = bytes(tag, f)?;
                match v {
                    Any::Array(a) => a.merge(b).map_err(prost_err)?,
                    _ => *v = Any::Array(ArrayValue::decode(b).map_err(prost_err)?),
                }
            }
            6 => {
                let b = bytes(tag, f)?;
                match v {
                    Any::List(l) => l.merge(b).map_err(prost_err)?,
                    _ => *v = Any::List(KeyValueList::decode(b).map_err(prost_err)?),
                }
            }
            7 => *v = Any::Bytes(bytes(tag, f)?.to_vec()),
            8 => {
                varint(tag, f)?;
                *v = Any::StrIndex;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "otlp_wire_tests.rs"]
mod tests;
