//! Service-to-service calls found at ingest, for `/api/dependencies`: a span whose parent
//! belongs to another service is one call from the parent's service to its own.
//!
//! A parent and its child often arrive in different batches, in either order, so the
//! pipeline remembers recent spans' services (by trace and span id) in a fixed table of
//! [`SEEN_SLOTS`] words ([`Seen`]: each bucket of a cache line keeps its eight newest
//! spans), and recent children still waiting for their parent in two generations of
//! bounded maps (when one fills the older is dropped). Memory is bounded (4 MiB, and about
//! [`MAX_WAITING`] entries of a few words per generation); a parent that arrives after its
//! child has been forgotten costs that one call, counted nowhere. One lock per batch,
//! never per span. The counts are written by the writer with the batch
//! (`monitor::red::add_edges`).

use std::collections::HashMap;
use std::sync::Mutex;

// foldhash: keys come from clients but are hashed with a per-process seed, and it is several
// times cheaper than SipHash on this per-span path.
use foldhash::{HashMap as FastMap, HashMapExt};

use crate::model::{Span, SpanId, TraceId};
use crate::monitor::MINUTE_US;

/// Spans remembered at most: 4 MiB of words. A span stays while fewer than eight later
/// spans fall in its bucket: with 400,000 spans since, three times in four.
pub const SEEN_SLOTS: usize = 1 << 19;
/// Children waiting for their parent, per generation.
pub const MAX_WAITING: usize = 65_536;
/// Distinct service names kept; spans of later ones make no edges.
const MAX_SERVICES: usize = 10_000;

/// Calls from `parent` to `child` in the hour starting at `minute` (minutes since the
/// epoch, a multiple of 60).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edge {
    pub parent: String,
    pub child: String,
    pub minute: u64,
}

fn key(trace: TraceId, span: SpanId) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&trace.0.to_le_bytes(), span.0)
}

fn hour_of(start_us: u64) -> u64 {
    let minute = start_us / MINUTE_US;
    minute - minute % 60
}

/// Recent spans' services: buckets of [`WAYS`] words (one cache line), newest first, each
/// word the span's key with its low bits (which the bucket implies) replaced by the
/// service id + 1; 0 is empty. Every span is entered, so an insert is one line read and
/// a shift within it, where a hash map's was a probe, a store and, now and then, a
/// rehash of a quarter of a million entries (3 % of the daemon's CPU under the bench).
struct Seen {
    slots: Vec<u64>,
}

const WAYS: usize = 8;
/// Low bits of a word holding the service id + 1 (ids are below `MAX_SERVICES`).
const ID_BITS: u32 = 14;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
const _: () = assert!(MAX_SERVICES < ID_MASK as usize);
/// The bucket bits, taken from the key's low bits: they cover `ID_BITS`, so the word and
/// the bucket together hold the whole key.
const BUCKET_BITS: u32 = (SEEN_SLOTS / WAYS).trailing_zeros();
const _: () = assert!(BUCKET_BITS >= ID_BITS);

impl Seen {
    fn new() -> Self {
        // zeroed pages from the allocator: memory is touched as buckets fill
        Seen {
            slots: vec![0; SEEN_SLOTS],
        }
    }

    fn bucket(&mut self, k: u64) -> &mut [u64] {
        let b = (k as usize) & ((1 << BUCKET_BITS) - 1);
        &mut self.slots[b * WAYS..(b + 1) * WAYS]
    }

    /// Read the buckets of `keys` ahead of their inserts: independent loads, which the
    /// memory system serves many at once (each insert's own waits on the one before).
    fn warm(&mut self, keys: &[u64]) {
        let sum = keys.iter().fold(0, |acc, &k| acc ^ self.bucket(k)[0]);
        std::hint::black_box(sum);
    }

    fn get(&mut self, k: u64) -> Option<u32> {
        let tag = k & !ID_MASK;
        self.bucket(k)
            .iter()
            .find(|&&w| w != 0 && w & !ID_MASK == tag)
            .map(|&w| (w & ID_MASK) as u32 - 1)
    }

    fn insert(&mut self, k: u64, id: u32) {
        let word = (k & !ID_MASK) | (u64::from(id) + 1);
        let bucket = self.bucket(k);
        // a key entered again (a span sent twice) moves to the front, once
        let end = bucket
            .iter()
            .position(|&w| w != 0 && w & !ID_MASK == word & !ID_MASK)
            .unwrap_or(WAYS - 1);
        bucket.copy_within(0..end, 1);
        bucket[0] = word;
    }
}

/// Two generations of a bounded map.
struct Generations<V> {
    current: FastMap<u64, V>,
    previous: FastMap<u64, V>,
    cap: usize,
}

impl<V> Generations<V> {
    fn new(cap: usize) -> Self {
        Generations {
            current: FastMap::new(),
            previous: FastMap::new(),
            cap,
        }
    }

    #[cfg(test)]
    fn get(&self, k: u64) -> Option<&V> {
        self.current.get(&k).or_else(|| self.previous.get(&k))
    }

    fn take(&mut self, k: u64) -> Option<V> {
        // asked for every span, and empty while parents come before their children
        if self.current.is_empty() && self.previous.is_empty() {
            return None;
        }
        self.current.remove(&k).or_else(|| self.previous.remove(&k))
    }

    fn roll_if_full(&mut self, k: u64) {
        if self.current.len() >= self.cap && !self.current.contains_key(&k) {
            self.previous = std::mem::take(&mut self.current);
        }
    }

    fn entry(&mut self, k: u64) -> &mut V
    where
        V: Default,
    {
        self.roll_if_full(k);
        let carried = self.previous.remove(&k);
        self.current
            .entry(k)
            .or_insert_with(|| carried.unwrap_or_default())
    }
}

struct State {
    names: Vec<String>,
    ids: FastMap<String, u32>,
    /// span → its service
    seen: Seen,
    /// parent span → (child's service, child's hour) of children that came first
    waiting: Generations<Vec<(u32, u64)>>,
}

pub struct Edges {
    state: Mutex<State>,
}

impl Default for Edges {
    fn default() -> Self {
        Edges {
            state: Mutex::new(State {
                names: Vec::new(),
                ids: FastMap::new(),
                seen: Seen::new(),
                waiting: Generations::new(MAX_WAITING),
            }),
        }
    }
}

impl State {
    fn id(&mut self, service: &str) -> Option<u32> {
        if let Some(&id) = self.ids.get(service) {
            return Some(id);
        }
        if self.names.len() >= MAX_SERVICES {
            return None;
        }
        let id = self.names.len() as u32;
        self.names.push(service.to_owned());
        self.ids.insert(service.to_owned(), id);
        Some(id)
    }
}

impl Edges {
    /// Remember `spans` and count the calls they complete: to parents seen before (or in
    /// this batch), and from children that were waiting for them.
    pub fn observe(&self, spans: &[Span]) -> HashMap<Edge, u64> {
        let keys: Vec<u64> = spans.iter().map(|s| key(s.trace_id, s.span_id)).collect();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.seen.warm(&keys);
        let mut found: FastMap<(u32, u32, u64), u64> = FastMap::new();
        let mut ids = Vec::with_capacity(spans.len());
        // a batch's spans mostly share one process: look its service up once
        let mut last: Option<(*const crate::model::Process, Option<u32>)> = None;
        for (s, &k) in spans.iter().zip(&keys) {
            let ptr = std::sync::Arc::as_ptr(&s.process);
            let id = match last {
                Some((p, id)) if p == ptr => id,
                _ => {
                    let id = st.id(&s.process.service_name);
                    last = Some((ptr, id));
                    id
                }
            };
            ids.push(id);
            if let Some(id) = id {
                st.seen.insert(k, id);
                for (child, hour) in st.waiting.take(k).unwrap_or_default() {
                    if child != id {
                        *found.entry((id, child, hour)).or_default() += 1;
                    }
                }
            }
        }
        for (s, id) in spans.iter().zip(ids) {
            let (Some(id), Some(parent)) = (id, s.parent_span_id()) else {
                continue;
            };
            let pk = key(s.trace_id, parent);
            let hour = hour_of(s.start_time);
            match st.seen.get(pk) {
                Some(p) if p != id => *found.entry((p, id, hour)).or_default() += 1,
                Some(_) => {}
                None => st.waiting.entry(pk).push((id, hour)),
            }
        }
        found
            .into_iter()
            .map(|((p, c, minute), n)| {
                (
                    Edge {
                        parent: st.names[p as usize].clone(),
                        child: st.names[c as usize].clone(),
                        minute,
                    },
                    n,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Process, RefType, SpanRef};

    fn span(service: &str, id: u64, parent: u64) -> Span {
        Span {
            trace_id: TraceId(7),
            span_id: SpanId(id),
            operation_name: "op".into(),
            references: (parent != 0)
                .then_some(SpanRef {
                    ref_type: RefType::ChildOf,
                    trace_id: TraceId(7),
                    span_id: SpanId(parent),
                })
                .into_iter()
                .collect(),
            flags: 1,
            start_time: 90 * MINUTE_US,
            duration: 1,
            tags: vec![],
            logs: vec![],
            process: Arc::new(Process {
                service_name: service.into(),
                tags: vec![],
            }),
        }
    }

    fn edge(p: &str, c: &str) -> Edge {
        Edge {
            parent: p.into(),
            child: c.into(),
            minute: 60,
        }
    }

    #[test]
    fn calls_are_found_in_either_order_and_counted_once() {
        let e = Edges::default();
        // in one batch: front -> back, and back -> back (same service: not a call)
        let got = e.observe(&[span("front", 1, 0), span("back", 2, 1), span("back", 3, 2)]);
        assert_eq!(got, HashMap::from([(edge("front", "back"), 1)]));
        // a child before its parent: counted when the parent comes
        assert!(e.observe(&[span("db", 5, 4)]).is_empty());
        assert!(e.observe(&[span("db", 6, 4)]).is_empty());
        let got = e.observe(&[span("back", 4, 2)]);
        assert_eq!(got, HashMap::from([(edge("back", "db"), 2)]));
        // a child after its parent, in a later batch
        let got = e.observe(&[span("cache", 8, 1)]);
        assert_eq!(got, HashMap::from([(edge("front", "cache"), 1)]));
    }

    #[test]
    fn generations_stay_bounded() {
        let mut g: Generations<u32> = Generations::new(4);
        for k in 0..100 {
            *g.entry(k) = 1;
        }
        assert!(g.current.len() <= 4 && g.previous.len() <= 4);
        assert_eq!(g.get(99), Some(&1));
        assert_eq!(g.get(0), None);
        *g.entry(99) = 2;
        assert_eq!(g.get(99), Some(&2));
        for k in 100..200 {
            *g.entry(k) = 3;
        }
        assert!(g.current.len() <= 4 && g.previous.len() <= 4);
        assert_eq!((g.get(199), g.get(99)), (Some(&3), None));
    }

    #[test]
    fn seen_keeps_the_eight_newest_spans_of_a_bucket_and_tells_keys_apart() {
        let mut seen = Seen::new();
        let buckets = (SEEN_SLOTS / WAYS) as u64;
        // ten keys of bucket 5 (they differ above the bucket bits), one of bucket 6
        let key = |i: u64| 5 + i * buckets;
        for i in 0..10 {
            seen.insert(key(i), i as u32);
        }
        seen.insert(6, 9_999);
        assert_eq!(seen.get(key(0)), None);
        assert_eq!(seen.get(key(1)), None);
        for i in 2..10 {
            assert_eq!(seen.get(key(i)), Some(i as u32));
        }
        assert_eq!(seen.get(6), Some(9_999));
        // a key of the same bucket never entered, and one differing only in its top bit
        assert_eq!(seen.get(key(11)), None);
        assert_eq!(seen.get(key(2) ^ (1 << 63)), None);
        // entered again: moved to the front with its new service, not entered twice, so
        // the oldest other key stays
        seen.insert(key(2), 77);
        assert_eq!(seen.get(key(2)), Some(77));
        seen.insert(key(10), 10);
        assert_eq!(seen.get(key(3)), None);
        assert_eq!((seen.get(key(4)), seen.get(key(2))), (Some(4), Some(77)));
        // ids up to the service limit come back whole
        seen.insert(u64::MAX, (MAX_SERVICES - 1) as u32);
        assert_eq!(seen.get(u64::MAX), Some((MAX_SERVICES - 1) as u32));
    }
}
