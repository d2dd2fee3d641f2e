//! The one key encoder: every RocksDB key fctrace writes or seeks is built here.
//!
//! Layouts (all integers big-endian, so byte order is numeric order):
//! - `chunks`:  `tenant(2) | traceId(16) | startTime µs(8) | spanId(8) | chunk(8)`: the
//!   earliest span of a chunk (a trace's spans from one batch, see `codec`) and a number
//!   the writer gives each chunk once, so two writes never share a key (a re-sent batch
//!   adds a chunk beside the first instead of replacing it). A trace is one prefix scan,
//!   and a chunk expires with its earliest span. Format 2 keys have no chunk number and
//!   are still read.
//! - `postings`: `tenant(2) | !bucket(8) | shard(2) | !seq(8)`: posting blocks (see
//!   `postings`), one per shard, one-second bucket of start time and group commit, plus
//!   the group's trace table under [`TABLE_SHARD`]. Time comes first so that what a
//!   group commit writes is a narrow band of keys at the newest end: flushed files barely
//!   overlap older ones, and compaction moves them down instead of rewriting the whole
//!   index again and again as it grows (format 3 put the shard first). Bucket and sequence
//!   are inverted so a forward scan yields newest first. A search term is an [`IndexPrefix`]:
//!   `tenant(2) | kind(1) | fields…`, fields being length-prefixed strings (so
//!   `("ab","c")` and `("a","bc")` never collide), hashed to pick the shard.
//! - `terms`:   `tenant(2) | 't' | !hour(8) | term hash(8) | !minute(8)`: the term has
//!   postings in that minute of start time; and `tenant(2) | 'o' | !minute(8)`: that
//!   minute had too many distinct terms to list (see `terms`). A term's minutes in an
//!   hour are one prefix, newest first; the hour comes first so expired hours are one
//!   key range, as posting seconds are.
//! - `meta`:    `tenant(2) | kind(1) | fields…` for services and operations, plus the
//!   format version under the reserved system tenant.
//!
//! Strings longer than [`MAX_INDEXED_LEN`] are cut in index terms; searches cut the same
//! way and then check the exact value on the loaded spans.

use crate::model::{SpanId, SpanKind, TraceId};

pub type Tenant = u16;
pub const DEFAULT_TENANT: Tenant = 0;
/// Keys under this tenant hold the store's own bookkeeping.
pub const SYSTEM_TENANT: Tenant = u16::MAX;

/// Posting blocks cover this much span start time each.
pub const POSTING_BUCKET_US: u64 = 1_000_000;

/// The term filter (`terms`) says which minutes of start time hold a term.
pub const TERM_MINUTE_US: u64 = 60_000_000;
/// Term keys are grouped by hour first, so expired hours go by key range.
pub const TERM_HOUR_MINUTES: u64 = 60;
pub const TERM_KEY_LEN: usize = 2 + 1 + 8 + 8 + 8;
/// `tenant | 't' | !hour | hash`: one term's minutes in one hour.
pub const TERM_PREFIX_LEN: usize = 2 + 1 + 8 + 8;
/// `tenant | 't' | !hour`: every term of one hour.
pub const TERM_HOUR_PREFIX_LEN: usize = 2 + 1 + 8;
pub const OVERFLOW_KEY_LEN: usize = 2 + 1 + 8;
const TERM: u8 = b't';
const OVERFLOW: u8 = b'o';

/// Search terms hash into this many shards: a term's lookup reads one shard's blocks.
pub const POSTING_SHARDS: u16 = 256;

/// The shard number under which a group's trace tables are kept.
pub const TABLE_SHARD: u16 = u16::MAX;

pub const POSTING_KEY_LEN: usize = 2 + 8 + 2 + 8;
/// `tenant | !bucket | shard`: the blocks of one shard in one bucket.
pub const POSTING_PREFIX_LEN: usize = 2 + 8 + 2;

/// Index keys carry at most this many bytes of any one string.
pub const MAX_INDEXED_LEN: usize = 512;

pub const SPAN_KEY_LEN: usize = 2 + 16 + 8 + 8 + 8;
/// Span keys written by storage format 2, before chunks were numbered.
pub const SPAN_KEY_LEN_V2: usize = 2 + 16 + 8 + 8;
pub const TRACE_PREFIX_LEN: usize = 2 + 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum IndexKind {
    Service = 1,
    Operation = 2,
    Tag = 3,
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

/// A span key with chunk number 0: the writer numbers it with [`set_chunk`].
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

/// A copy of span key `k` numbered `chunk`.
pub fn set_chunk(k: &[u8], chunk: u64) -> [u8; SPAN_KEY_LEN] {
    let mut out = [0u8; SPAN_KEY_LEN];
    let n = k.len().min(SPAN_KEY_LEN_V2);
    out[..n].copy_from_slice(&k[..n]);
    out[SPAN_KEY_LEN_V2..].copy_from_slice(&chunk.to_be_bytes());
    out
}

/// `(trace, start_time, span)` of a span key (either format), or `None` for a key of
/// another shape.
pub fn parse_span_key(k: &[u8]) -> Option<(TraceId, u64, SpanId)> {
    if k.len() != SPAN_KEY_LEN && k.len() != SPAN_KEY_LEN_V2 {
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

    pub fn tenant(&self) -> Tenant {
        self.0
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .unwrap_or(DEFAULT_TENANT)
    }

    /// The term's hash: it picks the shard and is what posting blocks hold. xxh3 is fixed
    /// by its specification, so stored hashes stay valid across builds.
    pub fn term_hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.0)
    }

    /// The first key at or after which entries no newer than `newest` start.
    pub fn seek_newest(&self, newest: u64) -> Vec<u8> {
        let mut k = self.0.clone();
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

/// The shard of a term hash.
pub fn shard_of(hash: u64) -> u16 {
    ((hash >> 56) as u16) % POSTING_SHARDS
}

/// The hash bits a posting block stores (those below the shard's, so entries sorted by
/// hash are sorted by these within a shard).
pub fn hash_bits(hash: u64) -> u32 {
    (hash >> 24) as u32
}

pub fn posting_key(tenant: Tenant, shard: u16, bucket: u64, seq: u64) -> [u8; POSTING_KEY_LEN] {
    let mut k = [0u8; POSTING_KEY_LEN];
    k[..2].copy_from_slice(&tenant.to_be_bytes());
    k[2..10].copy_from_slice(&(!bucket).to_be_bytes());
    k[10..12].copy_from_slice(&shard.to_be_bytes());
    k[12..20].copy_from_slice(&(!seq).to_be_bytes());
    k
}

/// Where a shard's blocks of one bucket start, newest group first; every key with this
/// prefix is one of them.
pub fn posting_seek(tenant: Tenant, shard: u16, bucket: u64) -> [u8; POSTING_PREFIX_LEN] {
    let mut k = [0u8; POSTING_PREFIX_LEN];
    k.copy_from_slice(&posting_key(tenant, shard, bucket, u64::MAX)[..POSTING_PREFIX_LEN]);
    k
}

/// The first key past every posting key of a tenant.
pub fn posting_upper_bound(tenant: Tenant) -> Vec<u8> {
    match tenant.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        // the last tenant: past every posting key
        None => vec![0xff; POSTING_KEY_LEN + 1],
    }
}

/// `(shard, bucket, seq)` of a posting key.
pub fn parse_posting_key(k: &[u8]) -> Option<(u16, u64, u64)> {
    if k.len() != POSTING_KEY_LEN {
        return None;
    }
    let bucket = !u64::from_be_bytes(k[2..10].try_into().ok()?);
    let shard = u16::from_be_bytes(k[10..12].try_into().ok()?);
    let seq = !u64::from_be_bytes(k[12..20].try_into().ok()?);
    Some((shard, bucket, seq))
}

/// A format 3 posting key (`tenant | shard | !bucket | !seq`) in today's layout, for the
/// upgrade of an older directory; `None` when it is not one.
pub fn posting_key_from_v3(k: &[u8]) -> Option<[u8; POSTING_KEY_LEN]> {
    if k.len() != POSTING_KEY_LEN {
        return None;
    }
    let tenant = u16::from_be_bytes(k[..2].try_into().ok()?);
    let shard = u16::from_be_bytes(k[2..4].try_into().ok()?);
    let bucket = !u64::from_be_bytes(k[4..12].try_into().ok()?);
    let seq = !u64::from_be_bytes(k[12..20].try_into().ok()?);
    Some(posting_key(tenant, shard, bucket, seq))
}

/// The minute a posting bucket lies in.
pub fn minute_of_bucket(bucket: u64) -> u64 {
    bucket / (TERM_MINUTE_US / POSTING_BUCKET_US)
}

/// The first and last posting buckets of a minute.
pub fn buckets_of_minute(minute: u64) -> (u64, u64) {
    let per = TERM_MINUTE_US / POSTING_BUCKET_US;
    let first = minute.saturating_mul(per);
    (first, first.saturating_add(per - 1))
}

/// `term` has postings in `minute`.
pub fn term_key(tenant: Tenant, hash: u64, minute: u64) -> [u8; TERM_KEY_LEN] {
    let mut k = [0u8; TERM_KEY_LEN];
    k[..TERM_PREFIX_LEN].copy_from_slice(&term_prefix(tenant, minute / TERM_HOUR_MINUTES, hash));
    k[19..27].copy_from_slice(&(!minute).to_be_bytes());
    k
}

/// Where `hash`'s minutes of `hour` are, newest first.
pub fn term_prefix(tenant: Tenant, hour: u64, hash: u64) -> [u8; TERM_PREFIX_LEN] {
    let mut k = [0u8; TERM_PREFIX_LEN];
    k[..2].copy_from_slice(&tenant.to_be_bytes());
    k[2] = TERM;
    k[3..11].copy_from_slice(&(!hour).to_be_bytes());
    k[11..19].copy_from_slice(&hash.to_be_bytes());
    k
}

/// The hour of a term key of `tenant`; `None` for any other key.
pub fn term_key_hour(tenant: Tenant, k: &[u8]) -> Option<u64> {
    if k.len() != TERM_KEY_LEN || k.get(..2)? != tenant.to_be_bytes() || k[2] != TERM {
        return None;
    }
    Some(!u64::from_be_bytes(k[3..11].try_into().ok()?))
}

/// `minute` has more terms than the filter lists: every term may be in it.
pub fn overflow_key(tenant: Tenant, minute: u64) -> [u8; OVERFLOW_KEY_LEN] {
    let mut k = [0u8; OVERFLOW_KEY_LEN];
    k[..2].copy_from_slice(&tenant.to_be_bytes());
    k[2] = OVERFLOW;
    k[3..11].copy_from_slice(&(!minute).to_be_bytes());
    k
}

/// The `terms` key ranges whose entries are all from before `cutoff` (µs): whole hours
/// of term keys and whole minutes of overflow keys, as (from, to) pairs.
pub fn expired_terms(tenant: Tenant, cutoff: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let end = |kind: u8| {
        let mut k = tenant.to_be_bytes().to_vec();
        k.push(kind + 1);
        k
    };
    let minute = cutoff / TERM_MINUTE_US;
    if let Some(last) = (minute / TERM_HOUR_MINUTES).checked_sub(1) {
        out.push((
            term_prefix(tenant, last, 0)[..TERM_HOUR_PREFIX_LEN].to_vec(),
            end(TERM),
        ));
    }
    if let Some(last) = minute.checked_sub(1) {
        out.push((overflow_key(tenant, last).to_vec(), end(OVERFLOW)));
    }
    out
}

/// The minute of a `terms` key of either kind.
pub fn terms_key_minute(k: &[u8]) -> Option<u64> {
    let at = match (k.len(), k.get(2)) {
        (TERM_KEY_LEN, Some(&TERM)) => 19,
        (OVERFLOW_KEY_LEN, Some(&OVERFLOW)) => 3,
        _ => return None,
    };
    let b: [u8; 8] = k.get(at..at + 8)?.try_into().ok()?;
    Some(!u64::from_be_bytes(b))
}

/// The time by which a `terms` key expires: the end of its minute.
pub fn terms_key_expiry(k: &[u8]) -> Option<u64> {
    terms_key_minute(k).map(|m| m.saturating_add(1).saturating_mul(TERM_MINUTE_US) - 1)
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
/// The start of every record key of a service's functions.
pub fn invocation_service_prefix(tenant: Tenant, service: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + service.len());
    v.extend_from_slice(&tenant.to_be_bytes());
    put_str(&mut v, service);
    v
}

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

/// The async queue, in `meta`: `tenant | 'q' | enqueued µs (8, BE) | request id`, oldest
/// first. (The catalog reads `meta` and ignores this kind.)
pub fn queue_key(tenant: Tenant, enqueued_us: u64, request_id: &str) -> Vec<u8> {
    let mut v = queue_prefix(tenant);
    v.extend_from_slice(&enqueued_us.to_be_bytes());
    v.extend_from_slice(request_id.as_bytes());
    v
}

pub fn queue_prefix(tenant: Tenant) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + 32);
    v.extend_from_slice(&tenant.to_be_bytes());
    v.push(b'q');
    v
}

/// `logs`: `tenant | len-prefixed service | len-prefixed function | time (8, BE) | seq
/// (4, BE)`: one function's lines are one prefix, oldest first. `seq` keeps lines read in
/// the same microsecond apart.
pub fn log_key(tenant: Tenant, service: &str, function: &str, time: u64, seq: u32) -> Vec<u8> {
    let mut v = invocation_prefix(tenant, service, function);
    v.extend_from_slice(&time.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

/// The time of a log key.
pub fn log_key_time(k: &[u8]) -> Option<u64> {
    let at = k.len().checked_sub(12)?;
    Some(u64::from_be_bytes(k.get(at..at + 8)?.try_into().ok()?))
}

/// The series of one metric dimension in the `metrics` family:
/// `tenant | level tag | its dimension strings, length-prefixed`; a minute's aggregate
/// is under the series and `minute (8, BE)`.
pub fn metric_series(tenant: Tenant, level: u8, dims: &[&str]) -> Vec<u8> {
    let mut v = Vec::with_capacity(3 + dims.iter().map(|d| d.len() + 2).sum::<usize>() + 8);
    put_metric_series(&mut v, tenant, level, dims);
    v
}

/// Append [`metric_series`] to `v` (a key built in a buffer used again).
pub fn put_metric_series(v: &mut Vec<u8>, tenant: Tenant, level: u8, dims: &[&str]) {
    v.extend_from_slice(&tenant.to_be_bytes());
    v.push(level);
    for d in dims {
        put_str(v, d);
    }
}

/// The key of a series' aggregate for `minute` (minutes since the epoch).
pub fn metric_key(series: &[u8], minute: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(series.len() + 8);
    v.extend_from_slice(series);
    v.extend_from_slice(&minute.to_be_bytes());
    v
}

/// The series tag of service-to-service call counts in the `metrics` family.
pub const EDGE_SERIES: u8 = b'D';

/// Where the calls from `parent` to `child` in the hour starting at `minute` are counted:
/// `tenant | D | parent | child | minute`, a metric key (so retention and the merge
/// operator treat it as one).
pub fn edge_key(tenant: Tenant, parent: &str, child: &str, minute: u64) -> Vec<u8> {
    metric_key(
        &metric_series(tenant, EDGE_SERIES, &[parent, child]),
        minute,
    )
}

/// The prefix of every edge key of `tenant`.
pub fn edge_prefix(tenant: Tenant) -> Vec<u8> {
    metric_series(tenant, EDGE_SERIES, &[])
}

/// (parent, child, minute) of an edge key.
pub fn parse_edge_key(k: &[u8]) -> Option<(String, String, u64)> {
    let mut rest = k.get(3..)?;
    let mut part = || -> Option<String> {
        let n = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(rest.get(2..2 + n)?).ok()?.to_owned();
        rest = &rest[2 + n..];
        Some(s)
    };
    let (parent, child) = (part()?, part()?);
    let minute = u64::from_be_bytes(rest.try_into().ok()?);
    Some((parent, child, minute))
}

/// The level tags of instance samples in the `metrics` family: one instance's
/// (`tenant | I | instance id`) and a function's largest (`tenant | J | service |
/// function`); their keys end in the sample's time in ms, not a minute.
pub const INSTANCE_SAMPLES: u8 = b'I';
pub const FUNCTION_SAMPLES: u8 = b'J';

/// The time (µs) of a `metrics` key (its minute, or a sample's ms), for retention.
pub fn metric_key_time(k: &[u8]) -> Option<u64> {
    let t = u64::from_be_bytes(k.get(k.len().checked_sub(8)?..)?.try_into().ok()?);
    match k.get(2) {
        Some(&INSTANCE_SAMPLES) | Some(&FUNCTION_SAMPLES) => t.checked_mul(1000),
        _ => t.checked_mul(60_000_000),
    }
}

/// Where a record's request id leads (`invocations` family): `tenant | FF FF | request
/// id (length-prefixed) | start (8, BE)` → the record's key. `FF FF` is no service
/// name's length prefix (those are at most `MAX_INDEXED_LEN`), so no record key starts
/// the same.
pub fn request_id_prefix(tenant: Tenant, request_id: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(6 + request_id.len() + 8);
    v.extend_from_slice(&tenant.to_be_bytes());
    v.extend_from_slice(&[0xff, 0xff]);
    put_str(&mut v, request_id);
    v
}

pub fn request_id_key(tenant: Tenant, request_id: &str, start_time: u64) -> Vec<u8> {
    let mut v = request_id_prefix(tenant, request_id);
    v.extend_from_slice(&start_time.to_be_bytes());
    v
}

/// The start time of an `invocations` key (a record's or a request id's), for
/// retention.
pub fn invocation_key_time(k: &[u8]) -> Option<u64> {
    if k.get(2..4) == Some(&[0xff, 0xff]) {
        let t = k.get(k.len().checked_sub(8)?..)?;
        return Some(u64::from_be_bytes(t.try_into().ok()?));
    }
    let mut at = 2;
    for _ in 0..2 {
        let len = u16::from_be_bytes(k.get(at..at + 2)?.try_into().ok()?) as usize;
        at += 2 + len;
    }
    let inverted = u64::from_be_bytes(k.get(at..at + 8)?.try_into().ok()?);
    Some(!inverted)
}

#[path = "system_keys.rs"]
mod system;
pub use system::*;

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
