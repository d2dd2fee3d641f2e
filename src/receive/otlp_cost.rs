//! What an OTLP request will cost in memory, and whether it is within the caps, known
//! before it is decoded.
//!
//! prost allocates as it decodes: an export of ten million empty spans is 20 MB on the
//! wire and gigabytes as structs. So OTLP/HTTP protobuf bodies and gRPC messages are
//! walked once at the wire level first ([`scan_protobuf`]): no allocation, every
//! element counted and every cap checked. OTLP/JSON is charged from its count of JSON
//! values before `serde_json` builds them ([`json_values`]), and its decoded request is
//! counted by [`count_request`] before it is mapped. Both walks feed one [`Counter`],
//! which owns the caps and the sizes, so protobuf and JSON are held to the same rules.

use std::mem::size_of;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1 as pb;

use super::limits::{LimitError, Limits};
use crate::model;

/// The bytes an element takes as prost structs and then as model structs.
const SPAN_COST: usize = size_of::<pb::Span>() + size_of::<model::Span>();
const KV_COST: usize = size_of::<KeyValue>() + size_of::<AnyValue>() + size_of::<model::KeyValue>();
const EVENT_COST: usize = size_of::<pb::span::Event>() + size_of::<model::Log>();
const LINK_COST: usize = size_of::<pb::span::Link>() + size_of::<model::SpanRef>();
const GROUP_COST: usize =
    size_of::<pb::ResourceSpans>() + size_of::<pb::ScopeSpans>() + size_of::<model::Process>() + 64;
/// A `serde_json::Value` with its share of the map or array that holds it, and the
/// prost value it becomes.
pub const JSON_VALUE_COST: usize = 128;
/// Array and map attribute values are stored as JSON text: at worst six bytes of text
/// (`\u0000`) for each byte on the wire.
const NESTED_TEXT_FACTOR: usize = 6;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    #[error("malformed protobuf at byte {0}")]
    Malformed(usize),
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// Counts of a request's elements, checked against the caps as they are counted.
#[derive(Debug)]
pub struct Counter<'l> {
    limits: &'l Limits,
    spans: usize,
    groups: usize,
    key_values: usize,
    events: usize,
    links: usize,
    /// Bytes inside array and map attribute values.
    nested_bytes: usize,
    /// Bytes of the resource copies made for scopes with attributes (`otlp::scope_process`).
    copied_bytes: usize,
}

impl<'l> Counter<'l> {
    pub fn new(limits: &'l Limits) -> Self {
        Counter {
            limits,
            spans: 0,
            groups: 0,
            key_values: 0,
            events: 0,
            links: 0,
            nested_bytes: 0,
            copied_bytes: 0,
        }
    }

    fn span(&mut self) -> Result<(), LimitError> {
        self.spans += 1;
        self.limits.spans(self.spans)
    }

    fn group(&mut self) {
        self.groups += 1;
    }

    fn attributes(&mut self, what: &'static str, n: usize) -> Result<(), LimitError> {
        self.key_values += n;
        self.limits.tags(what, n)
    }

    fn events(&mut self, n: usize) -> Result<(), LimitError> {
        self.events += n;
        self.limits.logs(n)
    }

    fn links(&mut self, n: usize) -> Result<(), LimitError> {
        self.links += n;
        self.limits.tags("a span's links", n)
    }

    /// `scopes` copies of a resource of `attributes` taking `bytes` (its strings): a
    /// scope with attributes gets a process of its own.
    fn resource_copies(&mut self, scopes: usize, attributes: usize, bytes: usize) {
        self.groups = self.groups.saturating_add(scopes);
        self.key_values = self
            .key_values
            .saturating_add(scopes.saturating_mul(attributes));
        self.copied_bytes = self
            .copied_bytes
            .saturating_add(scopes.saturating_mul(bytes));
    }

    fn nested(&mut self, depth: usize, bytes: usize) -> Result<(), LimitError> {
        self.nested_bytes = self.nested_bytes.saturating_add(bytes);
        self.limits.depth(depth)
    }

    /// Bytes the request will take as prost structs and as model spans, strings aside.
    pub fn bytes(&self) -> usize {
        let each = |n: usize, size: usize| n.saturating_mul(size);
        each(self.spans, SPAN_COST)
            .saturating_add(each(self.key_values, KV_COST))
            .saturating_add(each(self.events, EVENT_COST))
            .saturating_add(each(self.links, LINK_COST))
            .saturating_add(each(self.groups, GROUP_COST))
            .saturating_add(each(self.nested_bytes, NESTED_TEXT_FACTOR))
            .saturating_add(self.copied_bytes)
    }

    pub fn spans(&self) -> usize {
        self.spans
    }
}

/// One field of a protobuf message as found on the wire.
enum Wire<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

/// Calls `f(field number, value)` for each field of the message in `buf`; `base` is
/// `buf`'s offset in the whole body, for error positions.
fn fields<'a>(
    buf: &'a [u8],
    base: usize,
    mut f: impl FnMut(u64, Wire<'a>, usize) -> Result<(), ScanError>,
) -> Result<(), ScanError> {
    let mut at = 0usize;
    while at < buf.len() {
        let key = varint(buf, &mut at, base)?;
        let (field, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                varint(buf, &mut at, base)?;
                f(field, Wire::Scalar, base + at)?;
            }
            1 | 5 => {
                let n = if wire_type == 1 { 8 } else { 4 };
                if buf.len() - at < n {
                    return Err(ScanError::Malformed(base + at));
                }
                at += n;
                f(field, Wire::Scalar, base + at)?;
            }
            2 => {
                let len = varint(buf, &mut at, base)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= buf.len() - at)
                    .ok_or(ScanError::Malformed(base + at))?;
                let start = at;
                at += len;
                f(field, Wire::Bytes(&buf[start..at]), base + start)?;
            }
            // groups are not part of OTLP; prost would refuse them in these messages too
            _ => return Err(ScanError::Malformed(base + at)),
        }
    }
    Ok(())
}

fn varint(buf: &[u8], at: &mut usize, base: usize) -> Result<u64, ScanError> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*at).ok_or(ScanError::Malformed(base + *at))?;
        *at += 1;
        if shift == 63 && b > 1 {
            return Err(ScanError::Malformed(base + *at));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ScanError::Malformed(base + *at))
}

/// Walk an `ExportTraceServiceRequest` on the wire: counts and caps, no allocation.
pub fn scan_protobuf<'l>(body: &[u8], limits: &'l Limits) -> Result<Counter<'l>, ScanError> {
    let mut c = Counter::new(limits);
    fields(body, 0, |field, w, at| match (field, w) {
        (1, Wire::Bytes(rs)) => resource_spans(&mut c, rs, at),
        _ => Ok(()),
    })?;
    Ok(c)
}

fn resource_spans(c: &mut Counter, buf: &[u8], base: usize) -> Result<(), ScanError> {
    c.group();
    let (mut resource_attributes, mut resource_bytes, mut scopes_with_attributes) = (0, 0, 0);
    fields(buf, base, |field, w, at| match (field, w) {
        (1, Wire::Bytes(res)) => {
            let n = key_values(c, res, at, 1)?;
            resource_attributes += n;
            resource_bytes += res.len();
            Ok(c.attributes("the resource's attributes", n)?)
        }
        (2, Wire::Bytes(ss)) => fields(ss, at, |field, w, at| match (field, w) {
            (1, Wire::Bytes(scope)) => {
                let n = key_values(c, scope, at, 3)?;
                scopes_with_attributes += usize::from(n > 0);
                Ok(c.attributes("the scope's attributes", n)?)
            }
            (2, Wire::Bytes(span)) => self::span(c, span, at),
            _ => Ok(()),
        }),
        _ => Ok(()),
    })?;
    c.resource_copies(scopes_with_attributes, resource_attributes, resource_bytes);
    Ok(())
}

fn span(c: &mut Counter, buf: &[u8], base: usize) -> Result<(), ScanError> {
    c.span()?;
    let (mut attributes, mut events, mut links) = (0, 0, 0);
    fields(buf, base, |field, w, at| {
        match (field, w) {
            (9, Wire::Bytes(kv)) => {
                attributes += 1;
                key_value(c, kv, at, 0)?;
            }
            (11, Wire::Bytes(ev)) => {
                events += 1;
                let n = key_values(c, ev, at, 3)?;
                c.attributes("an event's attributes", n)?;
            }
            (13, Wire::Bytes(link)) => {
                links += 1;
                let n = key_values(c, link, at, 4)?;
                c.attributes("a link's attributes", n)?;
            }
            _ => {}
        }
        Ok(())
    })?;
    c.attributes("a span's attributes", attributes)?;
    c.events(events)?;
    c.links(links)?;
    Ok(())
}

/// Count the `KeyValue`s under field `field` of a message; returns how many.
fn key_values(c: &mut Counter, buf: &[u8], base: usize, field: u64) -> Result<usize, ScanError> {
    let mut n = 0;
    fields(buf, base, |f, w, at| match (f, w) {
        (f, Wire::Bytes(kv)) if f == field => {
            n += 1;
            key_value(c, kv, at, 0)
        }
        _ => Ok(()),
    })?;
    Ok(n)
}

fn key_value(c: &mut Counter, buf: &[u8], base: usize, depth: usize) -> Result<(), ScanError> {
    if plain_key_value(buf) {
        return Ok(());
    }
    fields(buf, base, |field, w, at| match (field, w) {
        (2, Wire::Bytes(v)) => any_value(c, v, at, depth),
        _ => Ok(()),
    })
}

/// The usual attribute, exactly `{1: key, 2: {string | bool | int | double}}` with every
/// length under 128 and every varint whole: nothing in it to count, so its two levels
/// of fields are not walked (this runs for every attribute of every span). Any other
/// shape goes the general way, which finds what is wrong with it.
fn plain_key_value(buf: &[u8]) -> bool {
    let [0x0a, key_len, rest @ ..] = buf else {
        return false;
    };
    let Some(rest) = rest
        .get(usize::from(*key_len)..)
        .filter(|_| *key_len < 0x80)
    else {
        return false;
    };
    let [0x12, value_len, any @ ..] = rest else {
        return false;
    };
    if *value_len >= 0x80 || usize::from(*value_len) != any.len() {
        return false;
    }
    match any {
        [0x0a, len, s @ ..] => *len < 0x80 && usize::from(*len) == s.len(),
        // one varint filling the rest: continuation bits on all but the last byte, and
        // a tenth byte (bits 63 and up) of at most 1
        [0x10 | 0x18, v @ .., last] => {
            v.len() < 10
                && v.iter().all(|b| b & 0x80 != 0)
                && *last & 0x80 == 0
                && (v.len() < 9 || *last <= 1)
        }
        [0x21, d @ ..] => d.len() == 8,
        _ => false,
    }
}

fn any_value(c: &mut Counter, buf: &[u8], base: usize, depth: usize) -> Result<(), ScanError> {
    fields(buf, base, |field, w, at| match (field, w) {
        // ArrayValue { repeated AnyValue values = 1 }
        (5, Wire::Bytes(arr)) => {
            c.nested(depth + 1, arr.len())?;
            fields(arr, at, |f, w, at| match (f, w) {
                (1, Wire::Bytes(v)) => {
                    c.key_values += 1;
                    any_value(c, v, at, depth + 1)
                }
                _ => Ok(()),
            })
        }
        // KeyValueList { repeated KeyValue values = 1 }
        (6, Wire::Bytes(list)) => {
            c.nested(depth + 1, list.len())?;
            fields(list, at, |f, w, at| match (f, w) {
                (1, Wire::Bytes(kv)) => {
                    c.key_values += 1;
                    key_value(c, kv, at, depth + 1)
                }
                _ => Ok(()),
            })
        }
        _ => Ok(()),
    })
}

/// How many JSON values a body holds, at most: every value but the first follows a `,`,
/// `:`, `[` or `{` outside a string. Counted without parsing, so the parse can be
/// charged before it allocates.
pub fn json_values(body: &[u8]) -> usize {
    let (mut n, mut in_string, mut escaped) = (1usize, false, false);
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b':' | b'[' | b'{' => n += 1,
            _ => {}
        }
    }
    n
}

/// Count a decoded request (from OTLP/JSON) with the same caps as [`scan_protobuf`].
pub fn count_request<'l>(
    req: &ExportTraceServiceRequest,
    limits: &'l Limits,
) -> Result<Counter<'l>, LimitError> {
    let mut c = Counter::new(limits);
    for rs in &req.resource_spans {
        c.group();
        if let Some(r) = &rs.resource {
            c.attributes("the resource's attributes", r.attributes.len())?;
            count_kvs(&mut c, &r.attributes, 0)?;
        }
        for ss in &rs.scope_spans {
            if let Some(scope) = &ss.scope {
                c.attributes("the scope's attributes", scope.attributes.len())?;
                count_kvs(&mut c, &scope.attributes, 0)?;
                if !scope.attributes.is_empty() {
                    let res = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
                    let bytes = res
                        .iter()
                        .map(|kv| kv.key.len() + 16 + value_text(kv))
                        .sum();
                    c.resource_copies(1, res.len(), bytes);
                }
            }
            for s in &ss.spans {
                c.span()?;
                c.attributes("a span's attributes", s.attributes.len())?;
                count_kvs(&mut c, &s.attributes, 0)?;
                c.events(s.events.len())?;
                for e in &s.events {
                    c.attributes("an event's attributes", e.attributes.len())?;
                    count_kvs(&mut c, &e.attributes, 0)?;
                }
                c.links(s.links.len())?;
                for l in &s.links {
                    c.attributes("a link's attributes", l.attributes.len())?;
                    count_kvs(&mut c, &l.attributes, 0)?;
                }
            }
        }
    }
    Ok(c)
}

/// The text a value holds (its string; nested values are counted apart).
fn value_text(kv: &KeyValue) -> usize {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => s.len(),
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::BytesValue(b)) => b.len(),
        _ => 8,
    }
}

fn count_kvs(c: &mut Counter, kvs: &[KeyValue], depth: usize) -> Result<(), LimitError> {
    for kv in kvs {
        if let Some(v) = &kv.value {
            count_any(c, v, depth)?;
        }
    }
    Ok(())
}

fn count_any(c: &mut Counter, v: &AnyValue, depth: usize) -> Result<(), LimitError> {
    match &v.value {
        Some(any_value::Value::ArrayValue(a)) => {
            c.nested(depth + 1, a.values.len() * 8)?;
            c.key_values += a.values.len();
            for x in &a.values {
                count_any(c, x, depth + 1)?;
            }
        }
        Some(any_value::Value::KvlistValue(l)) => {
            c.nested(depth + 1, l.values.len() * 16)?;
            c.key_values += l.values.len();
            count_kvs(c, &l.values, depth + 1)?;
        }
        Some(any_value::Value::StringValue(s)) if depth > 0 => {
            c.nested_bytes = c.nested_bytes.saturating_add(s.len());
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[path = "otlp_cost_tests.rs"]
mod tests;
