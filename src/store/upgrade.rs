//! Upgrading older data directories in place at open. Formats 2 and 3 kept span chunks
//! in a compacted `spans` family and posting blocks shard first in `index`; today chunks
//! live in the FIFO `chunks` family and posting blocks time first in `postings` (see
//! `keys`). Values are the same bytes, so the upgrade copies each entry under its new key
//! and drops the old family. It is safe to stop at any point: an old family goes only
//! after every entry is in the new one, and an interrupted upgrade runs again from the
//! start at the next open (writing a key twice writes the same value).
//!
//! Reading and writing the current format is elsewhere; this module only moves data.

use rocksdb::{IteratorMode, WriteBatch, DB};

use super::StoreError;

/// Bytes of copied entries per write: bounds the memory the upgrade holds.
const BATCH_BYTES: usize = 8 << 20;

/// Copy every entry of `from` into `to` under `rekey(key)` (entries it maps to `None` are
/// not any format's and are left behind), then drop `from`.
pub(super) fn move_family(
    db: &mut DB,
    from: &str,
    to: &str,
    rekey: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let (mut moved, mut skipped) = (0u64, 0u64);
    {
        let (Some(old), Some(new)) = (db.cf_handle(from), db.cf_handle(to)) else {
            return Ok(());
        };
        let mut wb = WriteBatch::default();
        for item in db.iterator_cf(old, IteratorMode::Start) {
            let (k, v) = item?;
            match rekey(&k) {
                Some(key) => {
                    wb.put_cf(new, key, &v);
                    moved += 1;
                }
                None => skipped += 1,
            }
            if wb.size_in_bytes() >= BATCH_BYTES {
                db.write(std::mem::take(&mut wb))?;
            }
        }
        db.write(wb)?;
        db.flush_cf(new)?;
    }
    db.drop_cf(from)?;
    tracing::info!(
        from,
        to,
        moved,
        skipped,
        ms = started.elapsed().as_millis() as u64,
        "data directory upgraded to format 4"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use rocksdb::{ColumnFamilyDescriptor, Options};

    use super::super::{
        encode, keys, Store, StoreOptions, CF_INDEX_V3, CF_META, CF_POSTINGS, CF_SPANS, CF_SPANS_V3,
    };
    use super::*;
    use crate::model::{Span, TraceId};
    use keys::IndexPrefix;

    /// A key of today's layout as format 3 wrote it: `tenant | shard | !bucket | !seq`.
    fn v3_key(k: &[u8]) -> Vec<u8> {
        let (shard, bucket, seq) = keys::parse_posting_key(k).unwrap();
        let mut v = k[..2].to_vec();
        v.extend_from_slice(&shard.to_be_bytes());
        v.extend_from_slice(&(!bucket).to_be_bytes());
        v.extend_from_slice(&(!seq).to_be_bytes());
        v
    }

    fn traces_of(store: &Store, service: &str, now: u64) -> Vec<TraceId> {
        let mut out = Vec::new();
        store
            .scan_index(
                &IndexPrefix::service(0, service),
                None,
                now - 60_000_000,
                now,
                |_, t| {
                    out.push(t);
                    true
                },
            )
            .unwrap();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn a_format_3_directory_is_read_and_searched_after_the_upgrade() {
        let now = crate::clock::now_us();
        let spans: Vec<Span> = (0..40u64)
            .map(|i| Span {
                start_time: now - i * 700_000,
                ..Span::for_test(100 + u128::from(i % 4), i + 1, "svc")
            })
            .collect();
        let opts = StoreOptions {
            sync_writes: false,
            ..StoreOptions::default()
        };

        // Write with today's code, then lay the same entries out as format 3 did.
        let today = tempfile::tempdir().unwrap();
        let mut entries: Vec<(&str, Vec<u8>, Vec<u8>)> = Vec::new();
        {
            let store = Store::open(today.path(), &opts).unwrap();
            store.commit(&[&encode(0, &spans)]).unwrap();
            assert_eq!(traces_of(&store, "svc", now).len(), 4);
            for (cf, old) in [
                (CF_SPANS, CF_SPANS_V3),
                (CF_META, CF_META),
                (CF_POSTINGS, CF_INDEX_V3),
            ] {
                for item in store.db.iterator_cf(store.cf(cf), IteratorMode::Start) {
                    let (k, v) = item.unwrap();
                    let k = if cf == CF_POSTINGS {
                        v3_key(&k)
                    } else {
                        k.to_vec()
                    };
                    entries.push((old, k, v.to_vec()));
                }
            }
        }
        let old = tempfile::tempdir().unwrap();
        {
            let mut o = Options::default();
            o.create_if_missing(true);
            o.create_missing_column_families(true);
            let cfs = ["spans", "index", "meta", "invocations"]
                .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
            let db = DB::open_cf_descriptors(&o, old.path(), cfs).unwrap();
            for (cf, k, v) in &entries {
                db.put_cf(db.cf_handle(cf).unwrap(), k, v).unwrap();
            }
            db.put_cf(
                db.cf_handle(CF_META).unwrap(),
                keys::format_version_key(),
                3u32.to_be_bytes(),
            )
            .unwrap();
        }

        let store = Store::open(old.path(), &opts).unwrap();
        assert_eq!(
            traces_of(&store, "svc", now),
            (100..104).map(TraceId).collect::<Vec<_>>()
        );
        assert_eq!(store.trace(0, TraceId(101)).unwrap().len(), 10);
        drop(store);
        let families = DB::list_cf(&Options::default(), old.path()).unwrap();
        assert!(
            !families
                .iter()
                .any(|f| f == CF_INDEX_V3 || f == CF_SPANS_V3),
            "{families:?}"
        );
        // and it opens again as format 4, with nothing to upgrade
        let store = Store::open(old.path(), &opts).unwrap();
        assert_eq!(traces_of(&store, "svc", now).len(), 4);
    }
}
