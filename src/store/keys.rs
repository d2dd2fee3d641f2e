//! The one key encoder: every RocksDB key fctrace writes or seeks is built here.
//!
//! Layouts (all integers big-endian, so byte order is numeric order):
//! - `spans`:   `tenant(2) | traceId(16) | startTime µs(8) | spanId(8)`: a trace is one
//!   prefix scan, spans come back in start order, a re-sent span overwrites itself and two
//!   spans that share an id but not a start time both survive.
//! - `index`:   `tenant(2) | kind(1) | fields… | !startTime(8) | traceId(16)`, fields being
//!   length-prefixed strings (so `("ab","c")` and `("a","bc")` never collide) and, for the
//!   duration index, the duration. The start time is stored inverted so a forward scan
//!   yields newest first.
//! - `meta`:    `tenant(2) | kind(1) | fields…` for services and operations, plus the
//!   format version under the reserved system tenant.
//!
//! Strings longer than [`MAX_INDEXED_LEN`] are cut in index keys; searches cut the same
//! way and then check the exact value on the loaded spans.

use crate::model::{SpanId, SpanKind, TraceId};

pub type Tenant = u16;
pub const DEFAULT_TENANT: Tenant = 0;
/// Keys under this tenant hold the store's own bookkeeping.
pub const SYSTEM_TENANT: Tenant = u16::MAX;

/// Service, operation and tag index entries are written once per trace, key and value
/// within this span of time (at the earliest start among them). A window scan reaches
/// back this much further, so no matching trace is missed; candidates are checked.
pub const TIME_BUCKET_US: u64 = 60_000_000;

/// Index keys carry at most this many bytes of any one string.
pub const MAX_INDEXED_LEN: usize = 512;

pub const SPAN_KEY_LEN: usize = 2 + 16 + 8 + 8;
pub const TRACE_PREFIX_LEN: usize = 2 + 16;
/// The fixed tail of every index key: inverted start time and trace id.
pub const INDEX_SUFFIX_LEN: usize = 8 + 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum IndexKind {
    Service = 1,
    Operation = 2,
    Tag = 3,
    Duration = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum MetaKind {
    Service = b's',
    Operation = b'o',
}

pub fn trace_prefix(tenant: Tenant, trace: TraceId) -> [u8; TRACE_PREFIX_LEN] {
    let mut k = [0u8; TRACE_PREFIX_LEN];
    k[..2].copy_from_slice(&tenant.to_be_bytes());
    k[2..18].copy_from_slice(&trace.to_bytes());
    k
}

pub fn span_key(
    tenant: Tenant,
    trace: TraceId,
    start_time: u64,
    span: SpanId,
) -> [u8; SPAN_KEY_LEN] {
    let mut k = [0u8; SPAN_KEY_LEN];
    k[..18].copy_from_slice(&trace_prefix(tenant, trace));
    k[18..26].copy_from_slice(&start_time.to_be_bytes());
    k[26..34].copy_from_slice(&span.0.to_be_bytes());
    k
}

/// `(trace, start_time, span)` of a span key, or `None` for a key of another shape.
pub fn parse_span_key(k: &[u8]) -> Option<(TraceId, u64, SpanId)> {
    if k.len() != SPAN_KEY_LEN {
        return None;
    }
    let trace = TraceId::from_bytes(k[2..18].try_into().ok()?);
    let start = u64::from_be_bytes(k[18..26].try_into().ok()?);
    let span = SpanId(u64::from_be_bytes(k[26..34].try_into().ok()?));
    Some((trace, start, span))
}

/// The start time of a span key, for retention.
pub fn span_key_time(k: &[u8]) -> Option<u64> {
    k.get(18..26)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(MAX_INDEXED_LEN)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// The part of an index key before its time and trace suffix: what a search seeks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPrefix(pub Vec<u8>);

impl IndexPrefix {
    fn new(tenant: Tenant, kind: IndexKind, service: &str) -> Self {
        let mut p = IndexPrefix(Vec::with_capacity(64));
        p.reset(tenant, kind, service);
        p
    }

    /// Start this prefix over for another key, reusing its buffer (the batch encoder
    /// builds hundreds of thousands of prefixes a second).
    pub fn reset(&mut self, tenant: Tenant, kind: IndexKind, service: &str) {
        self.0.clear();
        self.0.extend_from_slice(&tenant.to_be_bytes());
        self.0.push(kind as u8);
        put_str(&mut self.0, service);
    }

    /// Append one more length-prefixed string field.
    pub fn push_str(&mut self, s: &str) {
        put_str(&mut self.0, s);
    }

    pub fn service(tenant: Tenant, service: &str) -> Self {
        Self::new(tenant, IndexKind::Service, service)
    }

    pub fn operation(tenant: Tenant, service: &str, operation: &str) -> Self {
        let mut p = Self::new(tenant, IndexKind::Operation, service);
        put_str(&mut p.0, operation);
        p
    }

    pub fn tag(tenant: Tenant, service: &str, key: &str, value: &str) -> Self {
        let mut p = Self::new(tenant, IndexKind::Tag, service);
        put_str(&mut p.0, key);
        put_str(&mut p.0, value);
        p
    }

    /// The duration index of a service: entries are ordered by duration, then newest first.
    pub fn duration(tenant: Tenant, service: &str) -> Self {
        Self::new(tenant, IndexKind::Duration, service)
    }

    /// A full index key: this prefix, then the optional duration, then the time suffix.
    pub fn key(&self, duration: Option<u64>, start_time: u64, trace: TraceId) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.0.len() + 8 + INDEX_SUFFIX_LEN);
        self.write_key(&mut k, duration, start_time, trace);
        k
    }

    /// Append a full key to `out` (used by the batch encoder to avoid one allocation a key).
    pub fn write_key(
        &self,
        out: &mut Vec<u8>,
        duration: Option<u64>,
        start_time: u64,
        trace: TraceId,
    ) {
        out.extend_from_slice(&self.0);
        if let Some(d) = duration {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(&(!start_time).to_be_bytes());
        out.extend_from_slice(&trace.to_bytes());
    }

    /// The first key at or after which entries no newer than `newest` start.
    pub fn seek_newest(&self, duration: Option<u64>, newest: u64) -> Vec<u8> {
        let mut k = self.0.clone();
        if let Some(d) = duration {
            k.extend_from_slice(&d.to_be_bytes());
        }
        k.extend_from_slice(&(!newest).to_be_bytes());
        k
    }

    /// The smallest key greater than every key with this prefix.
    pub fn upper_bound(&self) -> Vec<u8> {
        let mut k = self.0.clone();
        // Prefixes end in a length-prefixed string or a fixed field; incrementing the
        // last byte that is not 0xff yields the first key past all extensions.
        while let Some(last) = k.pop() {
            if last != 0xff {
                k.push(last + 1);
                return k;
            }
        }
        vec![0xff; 64]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `(start_time, trace)` from the suffix of any index key.
pub fn parse_index_suffix(k: &[u8]) -> Option<(u64, TraceId)> {
    let n = k.len().checked_sub(INDEX_SUFFIX_LEN)?;
    let inv = u64::from_be_bytes(k[n..n + 8].try_into().ok()?);
    let trace = TraceId::from_bytes(k[n + 8..].try_into().ok()?);
    Some((!inv, trace))
}

/// The duration field of a duration index key whose prefix has `prefix_len` bytes.
pub fn parse_index_duration(k: &[u8], prefix_len: usize) -> Option<u64> {
    k.get(prefix_len..prefix_len + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

pub fn meta_service_key(tenant: Tenant, service: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + service.len());
    v.extend_from_slice(&tenant.to_be_bytes());
    v.push(MetaKind::Service as u8);
    v.extend_from_slice(service.as_bytes());
    v
}

pub fn meta_operation_key(
    tenant: Tenant,
    service: &str,
    operation: &str,
    kind: SpanKind,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + service.len() + operation.len());
    v.extend_from_slice(&tenant.to_be_bytes());
    v.push(MetaKind::Operation as u8);
    v.extend_from_slice(&(service.len() as u32).to_be_bytes());
    v.extend_from_slice(service.as_bytes());
    v.push(kind.otlp_number());
    v.extend_from_slice(operation.as_bytes());
    v
}

/// A decoded `meta` key.
#[derive(Debug, PartialEq, Eq)]
pub enum MetaEntry {
    Service(Tenant, String),
    Operation(Tenant, String, String, SpanKind),
}

pub fn parse_meta_key(k: &[u8]) -> Option<MetaEntry> {
    let tenant = u16::from_be_bytes(k.get(..2)?.try_into().ok()?);
    let rest = k.get(3..)?;
    match *k.get(2)? {
        b's' => Some(MetaEntry::Service(
            tenant,
            String::from_utf8(rest.to_vec()).ok()?,
        )),
        b'o' => {
            let n = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let service = std::str::from_utf8(rest.get(4..4 + n)?).ok()?.to_owned();
            let kind = SpanKind::from_otlp_number(*rest.get(4 + n)? as i64)?;
            let op = std::str::from_utf8(rest.get(5 + n..)?).ok()?.to_owned();
            Some(MetaEntry::Operation(tenant, service, op, kind))
        }
        _ => None,
    }
}

/// `invocations`: `tenant | len-prefixed service | len-prefixed function | !startTime | requestId`,
/// so one function's records are one prefix, newest first.
pub fn invocation_prefix(tenant: Tenant, service: &str, function: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + service.len() + function.len());
    v.extend_from_slice(&tenant.to_be_bytes());
    put_str(&mut v, service);
    put_str(&mut v, function);
    v
}

pub fn invocation_key(
    tenant: Tenant,
    service: &str,
    function: &str,
    start_time: u64,
    request_id: &str,
) -> Vec<u8> {
    let mut v = invocation_prefix(tenant, service, function);
    v.extend_from_slice(&(!start_time).to_be_bytes());
    v.extend_from_slice(request_id.as_bytes());
    v
}

pub fn format_version_key() -> Vec<u8> {
    let mut v = SYSTEM_TENANT.to_be_bytes().to_vec();
    v.extend_from_slice(b"format_version");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_keys_round_trip_and_sort_by_time() {
        let t = TraceId::from_parts(1, 2);
        let a = span_key(DEFAULT_TENANT, t, 10, SpanId(5));
        let b = span_key(DEFAULT_TENANT, t, 11, SpanId(1));
        assert!(a < b);
        assert_eq!(parse_span_key(&a), Some((t, 10, SpanId(5))));
        assert!(a.starts_with(&trace_prefix(DEFAULT_TENANT, t)));
    }

    #[test]
    fn index_keys_are_newest_first_and_do_not_collide() {
        let p = IndexPrefix::tag(DEFAULT_TENANT, "svc", "ab", "c");
        let q = IndexPrefix::tag(DEFAULT_TENANT, "svc", "a", "bc");
        assert_ne!(p.key(None, 1, TraceId(1)), q.key(None, 1, TraceId(1)));
        let newer = p.key(None, 200, TraceId(1));
        let older = p.key(None, 100, TraceId(1));
        assert!(newer < older);
        assert_eq!(parse_index_suffix(&older), Some((100, TraceId(1))));
        assert!(older < p.upper_bound() && newer > p.0);
    }

    #[test]
    fn duration_keys_order_by_duration_first() {
        let p = IndexPrefix::duration(DEFAULT_TENANT, "svc");
        let short_new = p.key(Some(5), 200, TraceId(1));
        let long_old = p.key(Some(50), 100, TraceId(2));
        assert!(short_new < long_old);
        assert_eq!(parse_index_duration(&long_old, p.len()), Some(50));
    }

    #[test]
    fn meta_keys_round_trip() {
        let k = meta_operation_key(3, "svc:a", "GET /x", SpanKind::Server);
        assert_eq!(
            parse_meta_key(&k),
            Some(MetaEntry::Operation(
                3,
                "svc:a".into(),
                "GET /x".into(),
                SpanKind::Server
            ))
        );
        let k = meta_service_key(0, "svc");
        assert_eq!(
            parse_meta_key(&k),
            Some(MetaEntry::Service(0, "svc".into()))
        );
        assert_eq!(parse_meta_key(&[0, 0, b'o', 0, 0, 0, 9]), None);
    }

    #[test]
    fn long_strings_are_cut_in_index_keys() {
        let long = "x".repeat(MAX_INDEXED_LEN + 10);
        let p = IndexPrefix::service(DEFAULT_TENANT, &long);
        assert_eq!(p.len(), 2 + 1 + 2 + MAX_INDEXED_LEN);
    }
}
