//! An [`EncodedBatch`] as bytes, for the cluster's log (`cluster`): an ingest node encodes
//! a partition's spans (or a record, metrics, rows) exactly as a single node would, sends
//! the bytes through the log, and the store node that owns the partition commits them
//! as they are. The layout is fctrace's own, versioned by its first four bytes; every
//! count and range is checked against the message before it is used, so a damaged
//! message is an error, never a panic or an allocation beyond its size.
//!
//! ```text
//! "FCB1" | tenant u16 | spans u32 | buf_len u32 | buf
//!        | n u32 | n x (family u8, key start u32, key end u32, value start u32, value end u32)
//!        | n u32 | n x (bucket u64, shard u16, start u32, end u32, traces u32)
//!        | n u32 | n x (minute u64, term hash u64)
//!        | n u32 | n x (service len u32, service, operation len u32, operation, kind u8)
//! ```
//! (integers little-endian)

use super::postings::Part;
use super::write::{Entry, Family};
use super::EncodedBatch;
use crate::model::SpanKind;

const MAGIC: &[u8; 4] = b"FCB1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not an encoded batch of this version")]
    Magic,
    #[error("encoded batch cut short or malformed at byte {0}")]
    Malformed(usize),
}

fn family_code(f: Family) -> u8 {
    match f {
        Family::Spans => 1,
        Family::Invocations => 2,
        Family::Metrics => 3,
        Family::Samples => 4,
        Family::Logs => 5,
        Family::Queue => 6,
        Family::Dequeue => 7,
    }
}

fn family_of(code: u8) -> Option<Family> {
    Some(match code {
        1 => Family::Spans,
        2 => Family::Invocations,
        3 => Family::Metrics,
        4 => Family::Samples,
        5 => Family::Logs,
        6 => Family::Queue,
        7 => Family::Dequeue,
        _ => return None,
    })
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // a batch is far below 4 GiB: the pipeline's queue bounds it
    out.extend_from_slice(&(n.min(u32::MAX as usize) as u32).to_le_bytes());
}

impl EncodedBatch {
    /// The batch as bytes (see the module docs).
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + self.entries.len() * 17 + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.tenant.to_le_bytes());
        put_u32(&mut out, self.spans);
        put_u32(&mut out, self.buf.len());
        out.extend_from_slice(&self.buf);
        put_u32(&mut out, self.entries.len());
        for e in &self.entries {
            out.push(family_code(e.family));
            for n in [e.key.0, e.key.1, e.value.0, e.value.1] {
                put_u32(&mut out, n);
            }
        }
        put_u32(&mut out, self.postings.len());
        for p in &self.postings {
            out.extend_from_slice(&p.bucket.to_le_bytes());
            out.extend_from_slice(&p.shard.to_le_bytes());
            put_u32(&mut out, p.range.0);
            put_u32(&mut out, p.range.1);
            out.extend_from_slice(&p.traces.to_le_bytes());
        }
        put_u32(&mut out, self.terms.len());
        for (m, h) in &self.terms {
            out.extend_from_slice(&m.to_le_bytes());
            out.extend_from_slice(&h.to_le_bytes());
        }
        put_u32(&mut out, self.operations.len());
        for (service, op, kind) in self.operations() {
            put_u32(&mut out, service.len());
            out.extend_from_slice(service.as_bytes());
            put_u32(&mut out, op.len());
            out.extend_from_slice(op.as_bytes());
            out.push(kind.otlp_number());
        }
        out
    }

    /// A batch back from [`EncodedBatch::to_wire`]'s bytes.
    pub fn from_wire(bytes: &[u8]) -> Result<EncodedBatch, WireError> {
        if bytes.get(..4) != Some(MAGIC.as_slice()) {
            return Err(WireError::Magic);
        }
        let mut r = Reader { bytes, at: 4 };
        let tenant = u16::from_le_bytes(r.array()?);
        let spans = r.u32()? as usize;
        let buf_len = r.u32()? as usize;
        let buf = r.take(buf_len)?.to_vec();
        let range = |r: &Reader, a: usize, b: usize| {
            if a <= b && b <= buf.len() {
                Ok((a, b))
            } else {
                Err(WireError::Malformed(r.at))
            }
        };
        let n = r.count(17)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let family = family_of(r.array::<1>()?[0]).ok_or(WireError::Malformed(r.at))?;
            let (k0, k1, v0, v1) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
            entries.push(Entry {
                family,
                key: range(&r, k0 as usize, k1 as usize)?,
                value: range(&r, v0 as usize, v1 as usize)?,
            });
        }
        let n = r.count(22)?;
        let mut postings = Vec::with_capacity(n);
        for _ in 0..n {
            let bucket = u64::from_le_bytes(r.array()?);
            let shard = u16::from_le_bytes(r.array()?);
            let (a, b) = (r.u32()? as usize, r.u32()? as usize);
            let traces = r.u32()?;
            postings.push(Part {
                bucket,
                shard,
                range: range(&r, a, b)?,
                traces,
            });
        }
        let n = r.count(16)?;
        let mut terms = Vec::with_capacity(n);
        for _ in 0..n {
            terms.push((
                u64::from_le_bytes(r.array()?),
                u64::from_le_bytes(r.array()?),
            ));
        }
        let n = r.count(9)?;
        let mut named = EncodedBatch::empty(tenant);
        for _ in 0..n {
            let service = r.string()?;
            let op = r.string()?;
            let kind = SpanKind::from_otlp_number(i64::from(r.array::<1>()?[0]))
                .ok_or(WireError::Malformed(r.at))?;
            named.add_operation(&service, &op, kind);
        }
        if r.at != bytes.len() {
            return Err(WireError::Malformed(r.at));
        }
        Ok(EncodedBatch {
            tenant,
            buf,
            entries,
            operations: named.operations,
            names: named.names,
            postings,
            terms,
            spans,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(WireError::Malformed(self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let at = self.at;
        self.take(N)?
            .try_into()
            .map_err(|_| WireError::Malformed(at))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A count of items of at least `min_len` bytes each, which the rest must hold.
    fn count(&mut self, min_len: usize) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_len) > self.bytes.len() - self.at {
            return Err(WireError::Malformed(self.at));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, WireError> {
        let n = self.u32()? as usize;
        let at = self.at;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| WireError::Malformed(at))
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode;
    use super::*;
    use crate::model::Span;

    #[test]
    fn a_batch_comes_back_as_it_went() {
        let now = crate::clock::now_us();
        let spans: Vec<Span> = (1..=5)
            .map(|i| Span {
                start_time: now + i,
                ..Span::for_test(i as u128 % 2 + 1, i, "svc")
            })
            .collect();
        let mut b = encode(3, &spans);
        b.add_row(super::super::Rows::Logs, b"k", b"v");
        let back = EncodedBatch::from_wire(&b.to_wire()).unwrap();
        assert_eq!(back.tenant, 3);
        assert_eq!(back.spans, 5);
        assert_eq!(back.buf, b.buf);
        assert_eq!(back.to_wire(), b.to_wire());
        assert_eq!(
            back.operations().collect::<Vec<_>>(),
            b.operations().collect::<Vec<_>>()
        );
        assert_eq!(back.terms, b.terms);
        assert_eq!(back.entries.len(), b.entries.len());
        assert_eq!(back.postings.len(), b.postings.len());
    }

    #[test]
    fn operations_keep_their_names_and_kinds_through_the_wire() {
        use crate::model::SpanKind::{Client, Consumer, Producer, Server};
        let ops = [
            ("a", "x", Server),
            ("a", "y", Client),
            ("b", "x", Server),
            ("a", "x", Consumer),
            ("", "", Producer),
            ("é", "a", Server),
        ];
        let mut b = EncodedBatch::empty(1);
        for (s, o, k) in ops {
            b.add_operation(s, o, k);
        }
        assert_eq!(b.operations().collect::<Vec<_>>(), ops.to_vec());
        let back = EncodedBatch::from_wire(&b.to_wire()).unwrap();
        assert_eq!(back.operations().collect::<Vec<_>>(), ops.to_vec());
    }

    #[test]
    fn damaged_messages_are_errors() {
        let b = encode(0, &[Span::for_test(1, 1, "svc")]);
        let wire = b.to_wire();
        assert_eq!(
            EncodedBatch::from_wire(b"nope").err(),
            Some(WireError::Magic)
        );
        for cut in [5, 10, wire.len() / 2, wire.len() - 1] {
            assert!(
                EncodedBatch::from_wire(&wire[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = wire.clone();
        longer.push(0);
        assert!(EncodedBatch::from_wire(&longer).is_err());
        // a count of 2^32 - 1 entries in a short message
        let buf_len = u32::from_le_bytes(wire[10..14].try_into().unwrap()) as usize;
        let mut huge = wire[..14 + buf_len].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(EncodedBatch::from_wire(&huge).is_err());
        // a range past the buffer
        let mut bad = wire.clone();
        let first_entry = 14 + buf_len + 4;
        bad[first_entry + 1..first_entry + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(EncodedBatch::from_wire(&bad).is_err());
    }
}
