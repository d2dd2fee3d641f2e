//! Tests of `jaeger_thrift`: batches written by hand in both protocols, truncations,
//! hostile lengths, the agent's envelope.
use super::*;

/// A minimal thrift binary writer, enough to build test batches.
#[derive(Default)]
pub struct BinaryWriter {
    pub buf: Vec<u8>,
}

impl BinaryWriter {
    pub fn field(&mut self, ty: u8, id: i16) -> &mut Self {
        self.buf.push(ty);
        self.buf.extend_from_slice(&id.to_be_bytes());
        self
    }
    pub fn i64(&mut self, id: i16, v: i64) -> &mut Self {
        self.field(10, id);
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i32(&mut self, id: i16, v: i32) -> &mut Self {
        self.field(8, id);
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn str(&mut self, id: i16, s: &str) -> &mut Self {
        self.field(11, id);
        self.buf.extend_from_slice(&(s.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self
    }
    pub fn list(&mut self, id: i16, elem: u8, n: i32) -> &mut Self {
        self.field(15, id);
        self.buf.push(elem);
        self.buf.extend_from_slice(&n.to_be_bytes());
        self
    }
    pub fn stop(&mut self) -> &mut Self {
        self.buf.push(0);
        self
    }
}

fn decode(body: &[u8], protocol: ThriftProtocol) -> Result<Vec<Span>, ThriftError> {
    decode_batch(
        body,
        protocol,
        &Limits::default(),
        &mut Reservation::unlimited(),
    )
}

fn one_span_batch() -> Vec<u8> {
    let mut w = BinaryWriter::default();
    w.field(12, 1).str(1, "svc").stop();
    w.list(2, 12, 1);
    w.i64(1, 0x10)
        .i64(2, 0)
        .i64(3, 0x20)
        .i64(4, 0x30)
        .str(5, "op");
    w.i32(7, 1).i64(8, 1_000).i64(9, 5);
    // tags: one LONG tag whose vStr is also set
    w.list(10, 12, 1)
        .i32(2, 3)
        .str(1, "n")
        .str(3, "ignored")
        .i64(6, 42)
        .stop();
    w.stop(); // span
    w.stop(); // batch
    w.buf
}

#[test]
fn decodes_a_binary_batch_and_picks_value_by_type() {
    let spans = decode(&one_span_batch(), ThriftProtocol::Binary).unwrap();
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.process.service_name, "svc");
    assert_eq!(s.trace_id, TraceId(0x10));
    assert_eq!(s.parent_span_id(), Some(SpanId(0x30)));
    assert_eq!(s.tags, vec![KeyValue::new("n", Value::I64(42))]);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let body = one_span_batch();
    for end in 0..body.len() {
        assert!(
            decode(&body[..end], ThriftProtocol::Binary).is_err(),
            "prefix {end}"
        );
        let _ = decode(&body[..end], ThriftProtocol::Compact);
    }
}

#[test]
fn huge_list_length_in_a_tiny_body_fails_at_once() {
    let mut w = BinaryWriter::default();
    w.field(12, 1).str(1, "svc").stop();
    w.list(2, 12, i32::MAX);
    let err = decode(&w.buf, ThriftProtocol::Binary).unwrap_err();
    assert!(matches!(err, ThriftError::Length { .. }), "{err}");
}

fn agent(datagram: &[u8], protocol: ThriftProtocol) -> Result<Vec<Span>, ThriftError> {
    decode_emit_batch(
        datagram,
        protocol,
        &Limits::default(),
        &mut Reservation::unlimited(),
    )
}

#[test]
fn decodes_emit_batch_in_strict_and_old_binary() {
    // strict: version 1, oneway; name; seqid; args { 1: batch }
    let mut strict = vec![0x80, 0x01, 0x00, 0x04, 0, 0, 0, 9];
    strict.extend_from_slice(b"emitBatch");
    strict.extend_from_slice(&7i32.to_be_bytes());
    strict.extend_from_slice(&[12, 0, 1]);
    strict.extend_from_slice(&one_span_batch());
    strict.push(0);
    let spans = agent(&strict, ThriftProtocol::Binary).unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].operation_name, "op");
    // non-strict: name length first, then the type byte
    let mut old = vec![0, 0, 0, 9];
    old.extend_from_slice(b"emitBatch");
    old.push(1);
    old.extend_from_slice(&strict[17..]);
    assert_eq!(agent(&old, ThriftProtocol::Binary).unwrap().len(), 1);
    for end in 0..strict.len() {
        assert!(agent(&strict[..end], ThriftProtocol::Binary).is_err());
    }
}

#[test]
fn decodes_emit_batch_in_compact() {
    // written by hand from the compact protocol's spec: header 0x82, version 1 with
    // type oneway (4 << 5), seqid 0, name; then args { 1: Batch { 1: Process {1: "svc"},
    // 2: [Span {1: 16, 2: 0, 3: 32, 4: 0, 5: "op", 7: 1, 8: 1000, 9: 5}] } }
    let mut d = vec![0x82, 0x81, 0x00, 9];
    d.extend_from_slice(b"emitBatch");
    d.extend_from_slice(&[0x1c, 0x1c, 0x18, 3, b's', b'v', b'c', 0x00, 0x19, 0x1c]);
    d.extend_from_slice(&[0x16, 0x20, 0x16, 0x00, 0x16, 0x40, 0x16, 0x00]);
    d.extend_from_slice(&[
        0x18, 2, b'o', b'p', 0x25, 0x02, 0x16, 0xd0, 0x0f, 0x16, 0x0a,
    ]);
    d.extend_from_slice(&[0x00, 0x00, 0x00]);
    let spans = agent(&d, ThriftProtocol::Compact).unwrap();
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.process.service_name, "svc");
    assert_eq!((s.trace_id, s.span_id), (TraceId(16), SpanId(32)));
    assert_eq!((s.start_time, s.duration, s.flags), (1000, 5, 1));
    // another method, or a bare batch, is refused
    let mut other = d.clone();
    other[4..13].copy_from_slice(b"emitBatcX");
    assert!(matches!(
        agent(&other, ThriftProtocol::Compact),
        Err(ThriftError::Message(_))
    ));
    assert!(agent(&d[4..], ThriftProtocol::Compact).is_err());
}

#[test]
fn missing_process_is_an_error() {
    let mut w = BinaryWriter::default();
    w.list(2, 12, 0).stop();
    assert_eq!(
        decode(&w.buf, ThriftProtocol::Binary).unwrap_err(),
        ThriftError::Missing("Batch.process")
    );
}

#[test]
fn tags_at_the_same_place_as_the_span_befores_decode_as_written() {
    fn tag(w: &mut BinaryWriter, key: &str, value: &[u8]) {
        w.str(1, key).i32(2, 0).field(11, 3);
        w.buf.extend_from_slice(&(value.len() as i32).to_be_bytes());
        w.buf.extend_from_slice(value);
        w.stop();
    }
    let mut w = BinaryWriter::default();
    w.field(12, 1).str(1, "svc").stop();
    let spans: [&[(&str, &[u8])]; 3] = [
        &[("http.method", b"GET"), ("k", b"a")],
        &[("http.method", b"GET"), ("k", b"b"), ("new", b"GET")],
        &[("http.method", b"G\xffT"), ("other", b"b")],
    ];
    w.list(2, 12, spans.len() as i32);
    for (i, tags) in spans.iter().enumerate() {
        w.i64(1, 0x10).i64(2, 0).i64(3, 0x20 + i as i64).i64(4, 0);
        w.str(5, "op").i32(7, 1).i64(8, 1_000).i64(9, 5);
        w.list(10, 12, tags.len() as i32);
        for (k, v) in tags.iter() {
            tag(&mut w, k, v);
        }
        w.stop();
    }
    w.stop();
    let got = decode(&w.buf, ThriftProtocol::Binary).unwrap();
    let s = |k: &str, v: &str| KeyValue::new(k, Value::Str(v.into()));
    assert_eq!(got[0].tags, [s("http.method", "GET"), s("k", "a")]);
    assert_eq!(
        got[1].tags,
        [s("http.method", "GET"), s("k", "b"), s("new", "GET")]
    );
    // a stray byte is replaced, as without the span before
    assert_eq!(
        got[2].tags,
        [s("http.method", "G\u{fffd}T"), s("other", "b")]
    );
}
