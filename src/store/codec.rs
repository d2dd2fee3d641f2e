//! Span values: chunks of `model::Span`s as the `StoredChunk` protobuf of
//! `proto/storage.proto`, compressed once with zstd, and back.
//!
//! A chunk is the spans of one trace from one batch. Compressing here, on the request's
//! thread and once, is what lets the `spans` family store values as they are: flushes
//! and compactions then copy bytes instead of compressing them again on every rewrite,
//! and memtables and the WAL hold compressed bytes. The key carries the trace id (see
//! `keys`), so spans leave it out.
//!
//! Chunks written since format byte 2 also leave out what the chunk already says: a
//! span's start is written relative to the key's (the chunk's earliest), a log's
//! relative to its span's (zigzag), a reference's trace id as its XOR with the chunk's
//! (so the usual same-trace reference writes none), and a span's process only when it
//! differs from the span before it. That is about a fifth less for zstd to compress
//! and ~6 bytes a span less on disk (BENCHMARKS.md). Chunks of format byte 1 are still
//! read.

use std::cell::RefCell;
use std::sync::Arc;

use prost::Message;

use super::keys;
use super::proto;
use crate::model::{KeyValue, Log, Process, RefType, Span, SpanId, SpanRef, TraceId, Value};

/// The first byte of a chunk value written before format byte 2: zstd-compressed
/// `StoredChunk`, every field as it is.
const FORMAT_ZSTD_CHUNK: u8 = 1;
/// The first byte of every chunk value written now: as `FORMAT_ZSTD_CHUNK`, with times,
/// reference trace ids and repeated processes written relative to the chunk (module doc).
const FORMAT_ZSTD_CHUNK_RELATIVE: u8 = 2;
/// zstd level -1: level 1's matching with literals stored raw. A chunk's literals are
/// mostly span ids and varint times, which Huffman coding hardly shrinks, yet building
/// its table for every chunk was a third of the chunks' compression time. On the
/// bench's chunks: 5 % larger (57.4 → 60.3 B a span), compressed 1.5-1.8 times as fast;
/// levels -2 and below lose a fifth of the ratio for no more speed (BENCHMARKS.md).
const ZSTD_LEVEL: i32 = -1;
/// A chunk's encoded size is read from the value before decompressing; a larger claim
/// is corruption, not something to allocate for.
pub const MAX_CHUNK_RAW: usize = 256 << 20;

thread_local! {
    /// zstd's context and a buffer for its output, kept per thread.
    static COMPRESSOR: RefCell<(Option<zstd::bulk::Compressor<'static>>, Vec<u8>)> =
        const { RefCell::new((None, Vec::new())) };
    /// The same for reading: a fresh zstd context per chunk was 2 % of a query run's
    /// CPU (`ZSTD_createDCtx`), and a trace is read a chunk at a time.
    static DECOMPRESSOR: RefCell<(Option<zstd::bulk::Decompressor<'static>>, Vec<u8>)> =
        const { RefCell::new((None, Vec::new())) };
}

/// A thread's decompression buffer is dropped after a chunk larger than this, so one
/// large trace does not pin its size for the thread's life.
const KEEP_SCRATCH: usize = 1 << 20;

// The `StoredSpan` wire format written straight from the model: building the prost
// struct first would copy every string of every span once more. Decoding uses prost,
// so the round-trip test checks this writer against the schema.
mod wire {
    use crate::varint;

    use crate::model::{KeyValue, Span, TraceId, Value};

    fn put_ld(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
        varint::push_key(field, 2, out);
        varint::push(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    fn put_varint(field: u32, v: u64, out: &mut Vec<u8>) {
        if v != 0 {
            varint::push_key(field, 0, out);
            varint::push(v, out);
        }
    }

    fn put_fixed64(field: u32, v: u64, out: &mut Vec<u8>) {
        if v != 0 {
            varint::push_key(field, 1, out);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn put_str(field: u32, s: &str, out: &mut Vec<u8>) {
        if !s.is_empty() {
            put_ld(field, s.as_bytes(), out);
        }
    }

    /// Write field `field` as length-delimited, its body written by `body`, and then
    /// its length in front: one pass, where sizing every part first walked each span's
    /// tags twice. Room for a `room`-byte length is left; a length of another size
    /// moves the body once.
    fn put_nested(field: u32, room: usize, out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
        varint::push_key(field, 2, out);
        let at = out.len();
        out.resize(at + room, 0);
        body(out);
        let len = varint::encoded((out.len() - at - room) as u64);
        let len = len.bytes();
        if len.len() == room {
            out[at..at + room].copy_from_slice(len);
        } else {
            out.splice(at..at + room, len.iter().copied());
        }
    }

    /// `KeyValue { key = 1; oneof value { v_str = 2; v_bool = 3; v_i64 = 4; v_f64 = 5;
    /// v_binary = 6 } }`: a set oneof member is written even when it is the default.
    fn put_kv(field: u32, kv: &KeyValue, out: &mut Vec<u8>) {
        if put_short_kv(field, kv, out) {
            return;
        }
        put_nested(field, 1, out, |out| {
            put_str(1, &kv.key, out);
            match &kv.value {
                Value::Str(s) => put_ld(2, s.as_bytes(), out),
                Value::Bool(b) => {
                    varint::push_key(3, 0, out);
                    out.push(*b as u8);
                }
                Value::I64(i) => {
                    varint::push_key(4, 0, out);
                    varint::push(*i as u64, out);
                }
                Value::F64(f) => {
                    varint::push_key(5, 1, out);
                    out.extend_from_slice(&f.to_bits().to_le_bytes());
                }
                Value::Binary(b) => put_ld(6, b, out),
            }
        });
    }

    /// [`put_kv`] for the usual tag, a string, bool or integer under a non-empty key, in
    /// under 128 bytes: every length is one byte and known before writing, so the tag
    /// goes out in a few copies instead of a field at a time (writing tags a field at a
    /// time was over 5 % of the daemon's CPU). Writes nothing and returns false for any
    /// other tag.
    fn put_short_kv(field: u32, kv: &KeyValue, out: &mut Vec<u8>) -> bool {
        let key = kv.key.as_bytes();
        if key.is_empty() || key.len() >= 0x80 || field >= 16 {
            return false;
        }
        // KeyValue field 1 (the key), length-delimited
        let head = |body: usize| [(field << 3 | 2) as u8, body as u8, 0x0a, key.len() as u8];
        match &kv.value {
            Value::Str(v) => {
                let v = v.as_bytes();
                let body = 2 + key.len() + 2 + v.len();
                if body >= 0x80 {
                    return false;
                }
                out.reserve(2 + body);
                out.extend_from_slice(&head(body));
                out.extend_from_slice(key);
                // field 2, length-delimited
                out.extend_from_slice(&[0x12, v.len() as u8]);
                out.extend_from_slice(v);
            }
            Value::Bool(b) => {
                let body = 2 + key.len() + 2;
                if body >= 0x80 {
                    return false;
                }
                out.reserve(2 + body);
                out.extend_from_slice(&head(body));
                out.extend_from_slice(key);
                // field 3, varint
                out.extend_from_slice(&[0x18, u8::from(*b)]);
            }
            Value::I64(i) => {
                let v = varint::encoded(*i as u64);
                let body = 2 + key.len() + 1 + v.bytes().len();
                if body >= 0x80 {
                    return false;
                }
                out.reserve(2 + body);
                out.extend_from_slice(&head(body));
                out.extend_from_slice(key);
                // field 4, varint
                out.push(0x20);
                out.extend_from_slice(v.bytes());
            }
            _ => return false,
        }
        true
    }

    /// What a span is written relative to: the chunk's trace and earliest start, and
    /// whether its process is the previous span's.
    pub struct Base {
        pub trace: TraceId,
        pub start: u64,
        pub same_process: bool,
    }

    /// Zigzag: small negative and positive differences both as short varints.
    pub fn zigzag(d: i64) -> u64 {
        ((d << 1) ^ (d >> 63)) as u64
    }

    /// Append `span` as field 1 (`StoredChunk.spans`) to `out`, relative to `base`.
    pub fn put_span(span: &Span, base: &Base, out: &mut Vec<u8>) {
        // a span with a few tags takes 128 bytes to 16 KiB: two bytes of length
        put_nested(1, 2, out, |out| {
            put_str(1, &span.operation_name, out);
            for r in &span.references {
                let kind = match r.ref_type {
                    crate::model::RefType::ChildOf => 0u64,
                    crate::model::RefType::FollowsFrom => 1,
                };
                let t = TraceId(r.trace_id.0 ^ base.trace.0);
                put_nested(2, 1, out, |out| {
                    put_varint(1, kind, out);
                    put_fixed64(2, t.high(), out);
                    put_fixed64(3, t.low(), out);
                    put_fixed64(4, r.span_id.0, out);
                });
            }
            put_varint(3, u64::from(span.flags), out);
            put_varint(4, span.duration, out);
            for kv in &span.tags {
                put_kv(5, kv, out);
            }
            for l in &span.logs {
                let time = zigzag(l.timestamp.wrapping_sub(span.start_time) as i64);
                put_nested(6, 1, out, |out| {
                    put_varint(1, time, out);
                    for kv in &l.fields {
                        put_kv(2, kv, out);
                    }
                });
            }
            if !base.same_process {
                put_nested(7, 1, out, |out| {
                    put_str(1, &span.process.service_name, out);
                    for kv in &span.process.tags {
                        put_kv(2, kv, out);
                    }
                });
            }
            put_fixed64(8, span.span_id.0, out);
            put_varint(9, span.start_time.wrapping_sub(base.start), out);
        });
    }
}

/// Append the value of a chunk of spans to `out`; `raw` is scratch. The spans are all of
/// one trace, in start order, and the chunk's key names the first of them.
pub fn encode_chunk<'a>(
    spans: impl Iterator<Item = &'a Span>,
    raw: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    raw.clear();
    let mut prev: Option<&Arc<Process>> = None;
    let mut base: Option<wire::Base> = None;
    for span in spans {
        let same_process =
            prev.is_some_and(|p| Arc::ptr_eq(p, &span.process) || **p == *span.process);
        let base = base.get_or_insert(wire::Base {
            trace: span.trace_id,
            start: span.start_time,
            same_process,
        });
        base.same_process = same_process;
        wire::put_span(span, base, raw);
        prev = Some(&span.process);
    }
    out.push(FORMAT_ZSTD_CHUNK_RELATIVE);
    crate::varint::push(raw.len() as u64, out);
    let done = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let (compressor, scratch) = &mut *c;
        if compressor.is_none() {
            *compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        let compressor = compressor.as_mut()?;
        scratch.clear();
        scratch.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        compressor.compress_to_buffer(raw, scratch).ok()?;
        out.extend_from_slice(scratch);
        Some(())
    });
    if done.is_none() {
        // Only a failure to allocate zstd's context gets here: store a plain frame.
        out.extend_from_slice(&zstd::stream::encode_all(raw.as_slice(), 0).unwrap_or_default());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("span key has {0} bytes, expected {expected}", expected = keys::SPAN_KEY_LEN)]
    Key(usize),
    #[error("span chunk has unknown format {0}")]
    Format(u8),
    #[error("span chunk claims {0} bytes")]
    Size(u64),
    #[error("span chunk does not decompress: {0}")]
    Zstd(std::io::Error),
    #[error("span chunk does not decode: {0}")]
    Value(#[from] prost::DecodeError),
}

/// The spans of a chunk, from its key and value.
pub fn decode_chunk(key: &[u8], value: &[u8]) -> Result<Vec<Span>, CodecError> {
    let (trace_id, start, _) = keys::parse_span_key(key).ok_or(CodecError::Key(key.len()))?;
    let (&format, mut rest) = value.split_first().ok_or(CodecError::Format(0))?;
    let relative = match format {
        FORMAT_ZSTD_CHUNK => false,
        FORMAT_ZSTD_CHUNK_RELATIVE => true,
        other => return Err(CodecError::Format(other)),
    };
    let raw_len = prost::encoding::decode_varint(&mut rest)?;
    if raw_len > MAX_CHUNK_RAW as u64 {
        return Err(CodecError::Size(raw_len));
    }
    let chunk = DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let (decompressor, scratch) = &mut *d;
        let decompressor = match decompressor {
            Some(z) => z,
            None => decompressor.insert(zstd::bulk::Decompressor::new().map_err(CodecError::Zstd)?),
        };
        scratch.clear();
        scratch.reserve(raw_len as usize);
        let decoded = decompressor
            .decompress_to_buffer(rest, scratch)
            .map_err(CodecError::Zstd)
            .and_then(|_| Ok(proto::StoredChunk::decode(scratch.as_slice())?));
        if scratch.capacity() > KEEP_SCRATCH {
            *scratch = Vec::new();
        }
        decoded
    })?;
    let mut process: Option<Arc<Process>> = None;
    let mut out = Vec::with_capacity(chunk.spans.len());
    for mut s in chunk.spans {
        let own = s.process.take().map(|p| {
            Arc::new(Process {
                service_name: p.service_name,
                tags: p.tags.into_iter().map(kv_from_proto).collect(),
            })
        });
        let p = match (own, &process) {
            (Some(p), _) => p,
            // a relative chunk leaves out a process that is the previous span's
            (None, Some(prev)) if relative => Arc::clone(prev),
            (None, _) => Arc::new(Process::default()),
        };
        process = Some(Arc::clone(&p));
        let mut span = from_stored(trace_id, s, p);
        if relative {
            span.start_time = span.start_time.wrapping_add(start);
            for r in &mut span.references {
                r.trace_id = TraceId(r.trace_id.0 ^ trace_id.0);
            }
            for l in &mut span.logs {
                let z = l.timestamp;
                let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
                l.timestamp = span.start_time.wrapping_add(d as u64);
            }
        }
        out.push(span);
    }
    Ok(out)
}

fn from_stored(trace_id: TraceId, s: proto::StoredSpan, process: Arc<Process>) -> Span {
    Span {
        trace_id,
        span_id: SpanId(s.span_id),
        operation_name: s.operation_name,
        references: s
            .references
            .into_iter()
            .map(|r| SpanRef {
                ref_type: if r.ref_type == proto::RefType::FollowsFrom as i32 {
                    RefType::FollowsFrom
                } else {
                    RefType::ChildOf
                },
                trace_id: TraceId::from_parts(r.trace_id_high, r.trace_id_low),
                span_id: SpanId(r.span_id),
            })
            .collect(),
        flags: s.flags,
        start_time: s.start_time,
        duration: s.duration,
        tags: s.tags.into_iter().map(kv_from_proto).collect(),
        logs: s
            .logs
            .into_iter()
            .map(|l| Log {
                timestamp: l.timestamp,
                fields: l.fields.into_iter().map(kv_from_proto).collect(),
            })
            .collect(),
        process,
    }
}

fn kv_from_proto(kv: proto::KeyValue) -> KeyValue {
    use proto::key_value::Value as V;
    let value = match kv.value {
        Some(V::VStr(s)) => Value::Str(s.into()),
        Some(V::VBool(b)) => Value::Bool(b),
        Some(V::VI64(i)) => Value::I64(i),
        Some(V::VF64(f)) => Value::F64(f),
        Some(V::VBinary(b)) => Value::Binary(b),
        None => Value::Str(Default::default()),
    };
    KeyValue {
        key: kv.key.into(),
        value,
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
