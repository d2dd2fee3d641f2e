//! Jaeger's thrift `Batch` (see `thrift/jaeger.thrift`) decoded straight into the model.
//!
//! Takes a whole body and a protocol, gives back the batch's spans sharing one
//! [`Process`]. Decoding goes field by field without an intermediate thrift struct, and
//! lengths are checked by the protocol reader before anything is allocated. Every list
//! count is checked against the request's [`Limits`] and charged to its memory
//! [`Reservation`] at the size its elements take in memory, before the list is read; the
//! strings copied out are charged once up front at the body's size (they cannot be more).
//! It does not validate spans for storage (the pipeline does) nor read HTTP (see
//! `receive::body`).

use std::mem::size_of;
use std::sync::Arc;

use super::jaeger_tag::Plain;
use super::limits::Limits;
use super::recent::Recent;
use super::thrift::{Binary, Compact, FieldHeader, Protocol, ThriftError, Type};
use crate::budget::Reservation;
use crate::model::{KeyValue, Log, Process, RefType, Span, SpanId, SpanRef, Str, TraceId, Value};

/// Which thrift protocol a body uses, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThriftProtocol {
    Binary,
    Compact,
}

/// Decode one bare `Batch` (a collector's HTTP body) within `limits`, charging `mem` for
/// what it allocates.
pub fn decode_batch(
    body: &[u8],
    protocol: ThriftProtocol,
    limits: &Limits,
    mem: &mut Reservation,
) -> Result<Vec<Span>, ThriftError> {
    decode_with(body, protocol, limits, mem, Envelope::Bare)
}

/// Decode one agent datagram: the `Agent.emitBatch(batch)` oneway call Jaeger clients
/// send over UDP (see `thrift/agent.thrift`), within `limits`, charging `mem`.
pub fn decode_emit_batch(
    datagram: &[u8],
    protocol: ThriftProtocol,
    limits: &Limits,
    mem: &mut Reservation,
) -> Result<Vec<Span>, ThriftError> {
    decode_with(datagram, protocol, limits, mem, Envelope::EmitBatch)
}

/// What wraps the `Batch`.
#[derive(Clone, Copy)]
enum Envelope {
    Bare,
    EmitBatch,
}

fn decode_with(
    body: &[u8],
    protocol: ThriftProtocol,
    limits: &Limits,
    mem: &mut Reservation,
    envelope: Envelope,
) -> Result<Vec<Span>, ThriftError> {
    mem.charge(body.len())
        .map_err(super::limits::LimitError::from)?;
    match protocol {
        ThriftProtocol::Binary => Decoder {
            p: Binary::new(body),
            limits,
            mem,
            recent: Recent::default(),
        }
        .read(envelope),
        ThriftProtocol::Compact => Decoder {
            p: Compact::new(body),
            limits,
            mem,
            recent: Recent::default(),
        }
        .read(envelope),
    }
}

/// Fields of a thrift `Span` before the process is attached.
#[derive(Default)]
struct RawSpan {
    trace_id_low: Option<i64>,
    trace_id_high: Option<i64>,
    span_id: Option<i64>,
    parent_span_id: i64,
    operation_name: String,
    references: Vec<SpanRef>,
    flags: i32,
    start_time: i64,
    duration: i64,
    tags: Vec<KeyValue>,
    logs: Vec<Log>,
}

struct Decoder<'l, 'a, P> {
    p: P,
    limits: &'l Limits,
    mem: &'l mut Reservation,
    /// The strings of the last span's tags (see `recent`).
    recent: Recent<'a>,
}

impl<'a, P: Protocol<'a>> Decoder<'_, 'a, P> {
    /// Charge `n` elements of `T` before they are allocated.
    fn charge<T>(&mut self, n: usize) -> Result<(), ThriftError> {
        self.mem
            .charge_each(n, size_of::<T>())
            .map_err(|e| ThriftError::Limit(e.into()))
    }

    fn string<S: for<'s> From<&'s str> + From<String>>(
        &mut self,
        bytes: &[u8],
    ) -> Result<S, ThriftError> {
        // Clients write UTF-8, but a stray byte should not cost the whole batch.
        match std::str::from_utf8(bytes) {
            // charged with the body
            Ok(s) => Ok(S::from(s)),
            Err(_) => {
                // a replacement character is three bytes where the stray byte was one
                self.charge::<u8>(bytes.len() * 2)?;
                Ok(S::from(String::from_utf8_lossy(bytes).into_owned()))
            }
        }
    }

    fn expect(h: &FieldHeader, field: &'static str, expected: Type) -> Result<(), ThriftError> {
        if h.ty != expected {
            return Err(ThriftError::WrongType {
                field,
                found: h.ty,
                expected,
            });
        }
        Ok(())
    }

    fn list_of(&mut self, field: &'static str, expected: Type) -> Result<usize, ThriftError> {
        let (elem, n) = self.p.list()?;
        if elem != expected && n > 0 {
            return Err(ThriftError::WrongType {
                field,
                found: elem,
                expected,
            });
        }
        Ok(n)
    }

    fn read(mut self, envelope: Envelope) -> Result<Vec<Span>, ThriftError> {
        match envelope {
            Envelope::Bare => self.batch(),
            Envelope::EmitBatch => self.emit_batch(),
        }
    }

    /// `emitBatch`'s message header and argument struct around one `Batch`.
    fn emit_batch(&mut self) -> Result<Vec<Span>, ThriftError> {
        let (name, kind) = self.p.message_begin()?;
        // 1 call, 4 oneway: clients send emitBatch as either
        if name != b"emitBatch" || !(kind == 1 || kind == 4) {
            return Err(ThriftError::Message(format!(
                "{:?} (type {kind}); agents take emitBatch",
                String::from_utf8_lossy(&name[..name.len().min(64)])
            )));
        }
        let mut spans = None;
        self.p.struct_begin()?;
        while let Some(h) = self.p.field()? {
            match h.id {
                1 => {
                    Self::expect(&h, "emitBatch.batch", Type::Struct)?;
                    spans = Some(self.batch()?);
                }
                _ => self.p.skip(&h)?,
            }
        }
        self.p.struct_end();
        spans.ok_or(ThriftError::Missing("emitBatch.batch"))
    }

    fn batch(&mut self) -> Result<Vec<Span>, ThriftError> {
        let mut process = None;
        let mut raw_spans: Vec<RawSpan> = Vec::new();
        self.p.struct_begin()?;
        while let Some(h) = self.p.field()? {
            match h.id {
                1 => {
                    Self::expect(&h, "Batch.process", Type::Struct)?;
                    process = Some(self.process()?);
                }
                2 => {
                    Self::expect(&h, "Batch.spans", Type::List)?;
                    let n = self.list_of("Batch.spans", Type::Struct)?;
                    self.limits.spans(raw_spans.len().saturating_add(n))?;
                    // each becomes a `Span` too
                    self.charge::<RawSpan>(n)?;
                    self.charge::<Span>(n)?;
                    raw_spans.reserve(n);
                    for _ in 0..n {
                        raw_spans.push(self.span()?);
                    }
                }
                _ => self.p.skip(&h)?,
            }
        }
        self.p.struct_end();
        let process = Arc::new(process.ok_or(ThriftError::Missing("Batch.process"))?);
        // Sized once: collecting a `Result` iterator grows the vector by doubling.
        let mut spans = Vec::with_capacity(raw_spans.len());
        for r in raw_spans {
            spans.push({
                let trace_id = TraceId::from_parts(
                    r.trace_id_high
                        .ok_or(ThriftError::Missing("Span.traceIdHigh"))?
                        as u64,
                    r.trace_id_low
                        .ok_or(ThriftError::Missing("Span.traceIdLow"))? as u64,
                );
                let mut references = r.references;
                let parent = r.parent_span_id as u64;
                if parent != 0
                    && !references
                        .iter()
                        .any(|x| x.ref_type == RefType::ChildOf && x.span_id.0 == parent)
                {
                    references.insert(
                        0,
                        SpanRef {
                            ref_type: RefType::ChildOf,
                            trace_id,
                            span_id: SpanId(parent),
                        },
                    );
                }
                Span {
                    trace_id,
                    span_id: SpanId(r.span_id.ok_or(ThriftError::Missing("Span.spanId"))? as u64),
                    operation_name: r.operation_name,
                    references,
                    flags: r.flags as u32,
                    start_time: r.start_time.max(0) as u64,
                    duration: r.duration.max(0) as u64,
                    tags: r.tags,
                    logs: r.logs,
                    process: Arc::clone(&process),
                }
            });
        }
        Ok(spans)
    }

    fn process(&mut self) -> Result<Process, ThriftError> {
        let mut process = Process::default();
        self.p.struct_begin()?;
        while let Some(h) = self.p.field()? {
            match (h.id, h.ty) {
                (1, Type::Binary) => {
                    let b = self.p.binary()?;
                    process.service_name = self.string(b)?
                }
                (2, Type::List) => process.tags = self.tags("Process.tags")?,
                _ => self.p.skip(&h)?,
            }
        }
        self.p.struct_end();
        Ok(process)
    }

    fn span(&mut self) -> Result<RawSpan, ThriftError> {
        let mut s = RawSpan::default();
        self.p.struct_begin()?;
        while let Some(h) = self.p.field()? {
            match (h.id, h.ty) {
                (1, Type::I64) => s.trace_id_low = Some(self.p.i64()?),
                (2, Type::I64) => s.trace_id_high = Some(self.p.i64()?),
                (3, Type::I64) => s.span_id = Some(self.p.i64()?),
                (4, Type::I64) => s.parent_span_id = self.p.i64()?,
                (5, Type::Binary) => {
                    let b = self.p.binary()?;
                    s.operation_name = self.string(b)?
                }
                (6, Type::List) => {
                    let n = self.list_of("Span.references", Type::Struct)?;
                    self.limits
                        .tags("Span.references", s.references.len() + n)?;
                    // one more for the parent id's reference
                    self.charge::<SpanRef>(n + 1)?;
                    s.references.reserve(n);
                    for _ in 0..n {
                        s.references.push(self.span_ref()?);
                    }
                }
                (7, Type::I32) => s.flags = self.p.i32()?,
                (8, Type::I64) => s.start_time = self.p.i64()?,
                (9, Type::I64) => s.duration = self.p.i64()?,
                (10, Type::List) => s.tags = self.tags("Span.tags")?,
                (11, Type::List) => {
                    let n = self.list_of("Span.logs", Type::Struct)?;
                    self.limits.logs(s.logs.len() + n)?;
                    self.charge::<Log>(n)?;
                    s.logs.reserve(n);
                    for _ in 0..n {
                        s.logs.push(self.log()?);
                    }
                }
                _ => self.p.skip(&h)?,
            }
        }
        self.p.struct_end();
        Ok(s)
    }

    fn span_ref(&mut self) -> Result<SpanRef, ThriftError> {
        let (mut ref_type, mut low, mut high, mut span_id) = (0, 0i64, 0i64, 0i64);
        self.p.struct_begin()?;
        while let Some(h) = self.p.field()? {
            match (h.id, h.ty) {
                (1, Type::I32) => ref_type = self.p.i32()?,
                (2, Type::I64) => low = self.p.i64()?,
                (3, Type::I64) => high = self.p.i64()?,
                (4, Type::I64) => span_id = self.p.i64()?,
                _ => self.p.skip(&h)?,
            }
        }
        self.p.struct_end();
        Ok(SpanRef {
            ref_type: if ref_type == 1 {
                RefType::FollowsFrom
            } else {
                RefType::ChildOf
            },
            trace_id: TraceId::from_parts(high as u64, low as u64),
            span_id: SpanId(span_id as u64),
        })
    }

    fn log(&mut self) -> Result<Log, ThriftError> {
        let mut log = Log {
            timestamp: 0,
            fields: Vec::new(),
        };
        self.p.struct_begin()?;
        while let Some(h) = self.p.field()? {
            match (h.id, h.ty) {
                (1, Type::I64) => log.timestamp = self.p.i64()?.max(0) as u64,
                (2, Type::List) => log.fields = self.tags("Log.fields")?,
                _ => self.p.skip(&h)?,
            }
        }
        self.p.struct_end();
        Ok(log)
    }

    fn tags(&mut self, field: &'static str) -> Result<Vec<KeyValue>, ThriftError> {
        let n = self.list_of(field, Type::Struct)?;
        self.limits.tags(field, n)?;
        self.charge::<KeyValue>(n)?;
        let mut tags = Vec::with_capacity(n);
        // a span's tags come in the same order span after span; a log's or process's
        // would only push them out
        let remember = field == "Span.tags";
        for i in 0..n {
            tags.push(self.tag(remember.then_some(i))?);
        }
        Ok(tags)
    }

    /// The string of `b`, the key (or a string value) of the tag at position `at` of a
    /// span: the one the span before had there when the bytes are the same.
    fn remembered(
        &mut self,
        at: Option<usize>,
        b: &'a [u8],
        value: bool,
    ) -> Result<Str, ThriftError> {
        let slot = at.and_then(|i| self.recent.slot(i));
        if let Some(s) = slot.and_then(|s| if value { &s.value } else { &s.key }.get(b)) {
            return Ok(s);
        }
        // a stray byte's replacement is the same for the same bytes: kept as well
        let s: Str = self.string(b)?;
        if let Some(slot) = at.and_then(|i| self.recent.slot(i)) {
            if value {
                &mut slot.value
            } else {
                &mut slot.key
            }
            .keep(b, &s);
        }
        Ok(s)
    }

    /// A `Tag` (at position `at` of a span's tags, to reuse the strings the span before
    /// had there): some clients fill every value field, so the value is chosen by
    /// `vType`.
    fn tag(&mut self, at: Option<usize>) -> Result<KeyValue, ThriftError> {
        if let Some((n, key, value)) = self
            .p
            .unread_struct()
            .and_then(|(b, compact)| super::jaeger_tag::plain(b, compact))
        {
            self.p.advance(n);
            let value = match value {
                Plain::Str(s) => Value::Str(self.remembered(at, s, true)?),
                Plain::F64(f) => Value::F64(f),
                Plain::Bool(b) => Value::Bool(b),
                Plain::I64(i) => Value::I64(i),
                Plain::Binary(b) => Value::Binary(b.to_vec()),
            };
            return Ok(KeyValue {
                key: self.remembered(at, key, false)?,
                value,
            });
        }
        let mut key = Str::default();
        let mut v_type = 0;
        let mut v_str: &[u8] = &[];
        let (mut v_double, mut v_bool, mut v_long) = (0.0, false, 0i64);
        let mut v_binary: &[u8] = &[];
        self.p.struct_begin()?;
        while let Some(h) = self.p.field()? {
            match (h.id, h.ty) {
                (1, Type::Binary) => {
                    let b = self.p.binary()?;
                    key = self.string(b)?
                }
                (2, Type::I32) => v_type = self.p.i32()?,
                (3, Type::Binary) => v_str = self.p.binary()?,
                (4, Type::Double) => v_double = self.p.double()?,
                (5, Type::Bool) => v_bool = self.p.bool_value(&h)?,
                (6, Type::I64) => v_long = self.p.i64()?,
                (7, Type::Binary) => v_binary = self.p.binary()?,
                _ => self.p.skip(&h)?,
            }
        }
        self.p.struct_end();
        let value = match v_type {
            1 => Value::F64(v_double),
            2 => Value::Bool(v_bool),
            3 => Value::I64(v_long),
            4 => Value::Binary(v_binary.to_vec()),
            // STRING, and any type this version does not know, read as the string value.
            _ => Value::Str(self.string(v_str)?),
        };
        Ok(KeyValue { key, value })
    }
}

#[cfg(test)]
#[path = "jaeger_thrift_tests.rs"]
pub(crate) mod tests;
