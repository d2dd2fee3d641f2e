//! Reading posting blocks (`postings` writes them): the entries of one term in a block,
//! in either sub-block layout (format 8's columns, or format 7's fixed entries, which the
//! caller tells apart by the group's number, see `Store::columns_from`), and a trace
//! table's entries. Every length is checked against the block before it is used: a
//! damaged block is an error, never a panic or an allocation.

use prost::encoding::decode_varint;

use crate::model::TraceId;

/// How a block's sub-blocks are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Storage format 7 and before.
    Fixed,
    /// Storage format 8 (see `postings`).
    Columns,
}

const SUB_HEADER: usize = 12;
const TIMED_LEN: usize = 14;
const PLAIN_LEN: usize = 6;
pub const TABLE_ENTRY_LEN: usize = 24;

/// Every entry of `block` whose hash is `hash_bits`, appended to `out`.
pub fn lookup(
    block: &[u8],
    layout: Layout,
    hash_bits: u32,
    out: &mut Vec<Hit>,
) -> Result<(), Malformed> {
    match layout {
        Layout::Fixed => lookup_fixed(block, hash_bits, out),
        Layout::Columns => lookup_columns(block, hash_bits, out),
    }
}

/// A varint of `block` at `*at`, moving `*at` past it.
fn varint_at(block: &[u8], at: &mut usize) -> Result<u64, Malformed> {
    let mut rest = block.get(*at..).ok_or(Malformed(*at))?;
    let before = rest.len();
    let v = decode_varint(&mut rest).map_err(|_| Malformed(*at))?;
    *at += before - rest.len();
    Ok(v)
}

/// `at + n * width`, if it lies within `len`.
fn column_end(at: usize, n: u64, width: usize, len: usize) -> Result<usize, Malformed> {
    usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_mul(width))
        .and_then(|b| b.checked_add(at))
        .filter(|&e| e <= len)
        .ok_or(Malformed(at))
}

/// Format 8's sub-blocks, in columns (see `postings`).
fn lookup_columns(block: &[u8], hash_bits: u32, out: &mut Vec<Hit>) -> Result<(), Malformed> {
    let len = block.len();
    let mut at = 0;
    while at < len {
        let start = at;
        let base = u32::try_from(varint_at(block, &mut at)?).map_err(|_| Malformed(start))?;
        let n_timed = varint_at(block, &mut at)?;
        let n_plain = varint_at(block, &mut at)?;
        let spreads_len = varint_at(block, &mut at)?;
        let t_hashes = at;
        let t_traces = column_end(t_hashes, n_timed, 4, len)?;
        let t_mins = column_end(t_traces, n_timed, 2, len)?;
        let p_hashes = column_end(t_mins, n_timed, 4, len)?;
        let p_traces = column_end(p_hashes, n_plain, 4, len)?;
        let spreads = column_end(p_traces, n_plain, 2, len)?;
        let end = column_end(spreads, spreads_len, 1, len)?;
        // bounded by the block's length just above
        let (n_timed, n_plain) = (n_timed as usize, n_plain as usize);

        let first = partition(n_timed, |i| {
            u32_at(block, t_hashes + i * 4).unwrap_or(u32::MAX) < hash_bits
        });
        if first < n_timed && u32_at(block, t_hashes + first * 4)? == hash_bits {
            // the spreads are varints: walk them up to the first match
            let mut s = spreads;
            for _ in 0..first {
                varint_at(block, &mut s)?;
            }
            if s > end {
                return Err(Malformed(s));
            }
            for i in first..n_timed {
                if u32_at(block, t_hashes + i * 4)? != hash_bits {
                    break;
                }
                let min = u32_at(block, t_mins + i * 4)?;
                let spread = varint_at(block, &mut s)?;
                if s > end {
                    return Err(Malformed(s));
                }
                let max = u64::from(min)
                    .saturating_add(spread)
                    .min(u64::from(u32::MAX)) as u32;
                out.push(Hit {
                    trace: base.saturating_add(u16_at(block, t_traces + i * 2)?),
                    durations: Some((min, max)),
                });
            }
        }
        let first = partition(n_plain, |i| {
            u32_at(block, p_hashes + i * 4).unwrap_or(u32::MAX) < hash_bits
        });
        for i in first..n_plain {
            if u32_at(block, p_hashes + i * 4)? != hash_bits {
                break;
            }
            out.push(Hit {
                trace: base.saturating_add(u16_at(block, p_traces + i * 2)?),
                durations: None,
            });
        }
        at = end;
    }
    Ok(())
}

/// One entry found in a block: the trace's index in the group table and, for service and
/// operation entries, the duration range of its matching spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub trace: u32,
    pub durations: Option<(u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
#[error("posting block is malformed at byte {0}")]
pub struct Malformed(pub usize);

fn u32_at(b: &[u8], at: usize) -> Result<u32, Malformed> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(Malformed(at))
}

fn u16_at(b: &[u8], at: usize) -> Result<u32, Malformed> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(|s| u16::from_le_bytes(s) as u32)
        .ok_or(Malformed(at))
}

/// Format 7's sub-blocks: `base u32 | n_timed u32 | n_plain u32 | n_timed x (hash u32,
/// trace u16, min duration u32, max duration u32) | n_plain x (hash u32, trace u16)`.
fn lookup_fixed(block: &[u8], hash_bits: u32, out: &mut Vec<Hit>) -> Result<(), Malformed> {
    let mut at = 0;
    while at < block.len() {
        let base = u32_at(block, at)?;
        let n_timed = u32_at(block, at + 4)? as usize;
        let n_plain = u32_at(block, at + 8)? as usize;
        let timed_at = at + SUB_HEADER;
        let plain_at = n_timed
            .checked_mul(TIMED_LEN)
            .and_then(|n| n.checked_add(timed_at))
            .ok_or(Malformed(at))?;
        let end = n_plain
            .checked_mul(PLAIN_LEN)
            .and_then(|n| n.checked_add(plain_at))
            .filter(|&e| e <= block.len())
            .ok_or(Malformed(at))?;
        let timed = &block[timed_at..plain_at];
        let plain = &block[plain_at..end];
        let first = partition(n_timed, |i| {
            u32_at(timed, i * TIMED_LEN).unwrap_or(u32::MAX) < hash_bits
        });
        for i in first..n_timed {
            let e = i * TIMED_LEN;
            if u32_at(timed, e)? != hash_bits {
                break;
            }
            out.push(Hit {
                trace: base.saturating_add(u16_at(timed, e + 4)?),
                durations: Some((u32_at(timed, e + 6)?, u32_at(timed, e + 10)?)),
            });
        }
        let first = partition(n_plain, |i| {
            u32_at(plain, i * PLAIN_LEN).unwrap_or(u32::MAX) < hash_bits
        });
        for i in first..n_plain {
            let e = i * PLAIN_LEN;
            if u32_at(plain, e)? != hash_bits {
                break;
            }
            out.push(Hit {
                trace: base.saturating_add(u16_at(plain, e + 4)?),
                durations: None,
            });
        }
        at = end;
    }
    Ok(())
}

/// The first index in `0..n` for which `below` is false (`below` is true then false).
fn partition(n: usize, below: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Trace id and time of entry `i` of a group table.
pub fn table_entry(table: &[u8], i: u32) -> Option<(TraceId, u64)> {
    let at = (i as usize).checked_mul(TABLE_ENTRY_LEN)?;
    let e = table.get(at..at.checked_add(TABLE_ENTRY_LEN)?)?;
    let trace = TraceId::from_bytes(e[..16].try_into().ok()?);
    let t = u64::from_le_bytes(e[16..].try_into().ok()?);
    Some((trace, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format 7 sub-block, as its layout says, by hand.
    fn fixed(base: u32, timed: &[(u32, u16, u32, u32)], plain: &[(u32, u16)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&base.to_le_bytes());
        b.extend_from_slice(&(timed.len() as u32).to_le_bytes());
        b.extend_from_slice(&(plain.len() as u32).to_le_bytes());
        for (h, t, lo, hi) in timed {
            b.extend_from_slice(&h.to_le_bytes());
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&lo.to_le_bytes());
            b.extend_from_slice(&hi.to_le_bytes());
        }
        for (h, t) in plain {
            b.extend_from_slice(&h.to_le_bytes());
            b.extend_from_slice(&t.to_le_bytes());
        }
        b
    }

    #[test]
    fn format_7_blocks_are_still_read() {
        let mut block = fixed(0, &[(5, 0, 1, 2), (9, 1, 3, 3)], &[(9, 2)]);
        block.extend(fixed(10, &[(9, 0, 7, 8)], &[]));
        let mut hits = Vec::new();
        lookup(&block, Layout::Fixed, 9, &mut hits).unwrap();
        assert_eq!(
            hits,
            [
                Hit {
                    trace: 1,
                    durations: Some((3, 3))
                },
                Hit {
                    trace: 2,
                    durations: None
                },
                Hit {
                    trace: 10,
                    durations: Some((7, 8))
                },
            ]
        );
    }

    #[test]
    fn column_blocks_are_read_with_their_spreads() {
        // base 300 (a two-byte varint), timed hashes 5, 9, 9 with min durations 1, 3,
        // 1000 and spreads 1, 0, 200 (a two-byte varint); one plain entry of hash 9
        let mut b = vec![0xac, 0x02, 3, 1, 4];
        for h in [5u32, 9, 9] {
            b.extend_from_slice(&h.to_le_bytes());
        }
        for t in [0u16, 1, 2] {
            b.extend_from_slice(&t.to_le_bytes());
        }
        for lo in [1u32, 3, 1000] {
            b.extend_from_slice(&lo.to_le_bytes());
        }
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&3u16.to_le_bytes());
        b.extend_from_slice(&[1, 0, 0xc8, 0x01]);
        let mut hits = Vec::new();
        lookup(&b, Layout::Columns, 9, &mut hits).unwrap();
        assert_eq!(
            hits,
            [
                Hit {
                    trace: 301,
                    durations: Some((3, 3))
                },
                Hit {
                    trace: 302,
                    durations: Some((1000, 1200))
                },
                Hit {
                    trace: 303,
                    durations: None
                },
            ]
        );
        hits.clear();
        lookup(&b, Layout::Columns, 5, &mut hits).unwrap();
        assert_eq!(
            hits,
            [Hit {
                trace: 300,
                durations: Some((1, 2))
            }]
        );
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        let mut hits = Vec::new();
        assert!(lookup(&[1, 2, 3], Layout::Fixed, 0, &mut hits).is_err());
        let mut b = vec![0u8; 12];
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(lookup(&b, Layout::Fixed, 0, &mut hits).is_err());
        // columns: a count far past the block, a varint that never ends, spreads cut
        assert!(lookup(
            &[0, 0xff, 0xff, 0xff, 0x0f, 0, 0],
            Layout::Columns,
            0,
            &mut hits
        )
        .is_err());
        assert!(lookup(&[0x80; 12], Layout::Columns, 0, &mut hits).is_err());
        let mut cut = vec![0, 1, 0, 5];
        cut.extend_from_slice(&[0; 10]);
        assert!(lookup(&cut, Layout::Columns, 0, &mut hits).is_err());
        // a spread that runs past the sub-block's end
        let mut over = vec![0, 1, 0, 1];
        over.extend_from_slice(&[0; 10]);
        over.push(0x80);
        assert!(lookup(&over, Layout::Columns, 0, &mut hits).is_err());
        assert_eq!(table_entry(&[0; 10], 0), None);
        assert_eq!(table_entry(&[0; 24], u32::MAX), None);
    }
}
