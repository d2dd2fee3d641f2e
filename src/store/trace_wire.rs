//! Traces as bytes between cluster nodes (a store node answering a query node): each
//! trace as chunks in the store's own span encoding (`codec`), so what crosses the
//! network is exactly what the store holds and is decoded once on the other side. This
//! module owns the framing only; every length in it is checked against the message, so
//! a damaged answer is an error, never a panic or an allocation beyond its size.
//!
//! ```text
//! "FCT1" | n u32 | n x (span key [keys::SPAN_KEY_LEN] | value len u32 | chunk value)
//! ```
//! (integers little-endian; a trace's chunks are consecutive)

use super::codec::{decode_chunk, encode_chunk, CodecError};
use super::keys::{self, SPAN_KEY_LEN};
use crate::model::Span;

const MAGIC: &[u8; 4] = b"FCT1";
/// Spans per chunk: a chunk is decoded whole, so a large trace travels in pieces.
const SPANS_PER_CHUNK: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum TraceWireError {
    #[error("not traces of this version")]
    Magic,
    #[error("traces cut short or malformed at byte {0}")]
    Malformed(usize),
    #[error("a trace chunk does not decode: {0}")]
    Chunk(#[from] CodecError),
}

/// `traces` as bytes.
pub fn traces_to_wire(traces: &[Vec<Span>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + traces.iter().map(Vec::len).sum::<usize>() * 64);
    out.extend_from_slice(MAGIC);
    let chunks: usize = traces
        .iter()
        .map(|t| t.len().div_ceil(SPANS_PER_CHUNK))
        .sum();
    out.extend_from_slice(&(chunks as u32).to_le_bytes());
    let (mut raw, mut value) = (Vec::new(), Vec::new());
    for chunk in traces.iter().flat_map(|t| t.chunks(SPANS_PER_CHUNK)) {
        let Some(first) = chunk.first() else { continue };
        let key = keys::span_key(0, first.trace_id, first.start_time, first.span_id);
        value.clear();
        encode_chunk(chunk.iter(), &mut raw, &mut value);
        out.extend_from_slice(&key);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(&value);
    }
    out
}

/// The traces back from [`traces_to_wire`]'s bytes.
pub fn traces_from_wire(bytes: &[u8]) -> Result<Vec<Vec<Span>>, TraceWireError> {
    if bytes.get(..4) != Some(MAGIC.as_slice()) {
        return Err(TraceWireError::Magic);
    }
    let mut at: usize = 4;
    let mut take = |n: usize| -> Result<&[u8], TraceWireError> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= bytes.len())
            .ok_or(TraceWireError::Malformed(at))?;
        let s = &bytes[at..end];
        at = end;
        Ok(s)
    };
    let u32_of = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
    let n = u32_of(take(4)?);
    let mut traces: Vec<Vec<Span>> = Vec::new();
    // each chunk is at least a key and a length: a count beyond that is a lie
    for _ in 0..n {
        let key = take(SPAN_KEY_LEN)?;
        let len = u32_of(take(4)?);
        let spans = decode_chunk(key, take(len)?)?;
        let same = match (traces.last().and_then(|t| t.first()), spans.first()) {
            (Some(a), Some(b)) => a.trace_id == b.trace_id,
            _ => false,
        };
        match traces.last_mut() {
            Some(t) if same => t.extend(spans),
            _ => traces.push(spans),
        }
    }
    if at != bytes.len() {
        return Err(TraceWireError::Malformed(at));
    }
    Ok(traces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeyValue, Process, SpanId, TraceId, Value};
    use std::sync::Arc;

    fn span(trace: u128, id: u64, start: u64) -> Span {
        Span {
            trace_id: TraceId(trace),
            span_id: SpanId(id),
            operation_name: format!("op-{id}"),
            references: vec![],
            flags: 1,
            start_time: start,
            duration: 7,
            tags: vec![KeyValue::new("http.status_code", Value::I64(200))],
            logs: vec![],
            process: Arc::new(Process {
                service_name: "svc".into(),
                tags: vec![KeyValue::new("host", Value::Str("h1".into()))],
            }),
        }
    }

    #[test]
    fn traces_come_back_as_they_went() {
        let big: Vec<Span> = (0..2500).map(|i| span(9, i + 1, 1_000 + i)).collect();
        let traces = vec![
            vec![span(1, 1, 50), span(1, 2, 40)],
            big,
            vec![span(3, 1, 5)],
        ];
        let back = traces_from_wire(&traces_to_wire(&traces)).unwrap();
        assert_eq!(back, traces);
        assert!(traces_from_wire(&traces_to_wire(&[])).unwrap().is_empty());
    }

    #[test]
    fn damaged_bytes_are_errors() {
        let wire = traces_to_wire(&[vec![span(1, 1, 50)]]);
        assert!(matches!(
            traces_from_wire(b"FCB1"),
            Err(TraceWireError::Magic)
        ));
        for cut in 4..wire.len() {
            assert!(traces_from_wire(&wire[..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = wire.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(traces_from_wire(&lying).is_err());
        let mut long = wire;
        long.push(0);
        assert!(traces_from_wire(&long).is_err());
    }
}
