//! The one writer thread: it takes queued batches in groups, commits each group as one
//! RocksDB write ([`Store::commit`]) and then acknowledges every caller in it. This
//! module owns when a group closes; the pipeline owns what is queued.
//!
//! A group is everything queued when the writer comes back from its last write, plus
//! what the batches being encoded at that moment ([`Coming`]) bring within [`LINGER`].
//! Every group pays the same fixed costs whatever its size: an fdatasync, a journal
//! value, and a posting block for each of the 256 shards it touches (one memtable
//! insert each). Taking only what was queued made groups of 1.6 requests under the
//! bench; waiting briefly for the batches already in the encoder made them about 3 and
//! cut the daemon's CPU a span by 3-18 % in pairs (BENCHMARKS.md). A caller alone never
//! waits: with nothing being encoded the group closes at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::store::{EncodedBatch, Store, StoreError};
use crate::telemetry::Metrics;

/// The longest a group waits for batches still being encoded, from when its first
/// request was taken. Longer waits made no larger groups under the bench (5 ms: 3.9
/// requests a group, no less CPU), and every caller in the group waits too.
pub const LINGER: Duration = Duration::from_millis(2);

pub(super) struct Request {
    pub(super) batch: EncodedBatch,
    pub(super) ack: oneshot::Sender<Result<(), Arc<StoreError>>>,
    pub(super) _permit: OwnedSemaphorePermit,
}

/// How many batches are being encoded for the writer right now.
#[derive(Debug, Default)]
pub(super) struct Coming(AtomicUsize);

/// One batch being encoded; counted in [`Coming`] until dropped.
pub(super) struct Encoding(Arc<Coming>);

impl Coming {
    /// Count a batch from now until the returned guard is dropped. Drop it once the
    /// batch is encoded, before waiting for room in the queue: a writer waiting for a
    /// batch that waits for the writer would only lose [`LINGER`].
    pub(super) fn enter(self: &Arc<Self>) -> Encoding {
        self.0.fetch_add(1, Ordering::Relaxed);
        Encoding(Arc::clone(self))
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for Encoding {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The writer thread; join it after every `Pipeline` handle is dropped.
pub struct Writer {
    handle: JoinHandle<()>,
}

impl Writer {
    /// Start the writer on its own thread; it exits once every sender is dropped and
    /// the queue is empty.
    pub(super) fn start(
        store: Arc<Store>,
        max_group_bytes: usize,
        metrics: Arc<Metrics>,
        coming: Arc<Coming>,
    ) -> (Sender<Request>, Writer) {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("fctrace-writer".into())
            .spawn(move || write_loop(&store, &rx, max_group_bytes, &metrics, &coming))
            // Failing to spawn one thread at start-up leaves nothing to run.
            .expect("spawn writer thread");
        (tx, Writer { handle })
    }

    /// Wait until the writer has committed everything queued and exited.
    pub fn join(self) {
        if self.handle.join().is_err() {
            tracing::error!("writer thread panicked");
        }
    }
}

fn write_loop(
    store: &Store,
    rx: &Receiver<Request>,
    max_group_bytes: usize,
    metrics: &Metrics,
    coming: &Coming,
) {
    let mut group: Vec<Request> = Vec::new();
    while let Ok(first) = rx.recv() {
        take_group(rx, first, max_group_bytes, (coming, LINGER), &mut group);
        let batches: Vec<&EncodedBatch> = group.iter().map(|r| &r.batch).collect();
        let started = Instant::now();
        let result = store.commit(&batches).map_err(Arc::new);
        metrics.write_committed(group.len(), started.elapsed());
        if let Err(e) = &result {
            if matches!(**e, StoreError::DiskFull(_)) {
                // expected while the disk is full: every refused client retries
                tracing::warn!(error = %e, requests = group.len(), "write refused");
            } else {
                tracing::error!(error = %e, requests = group.len(), "write failed");
            }
        }
        for r in group.drain(..) {
            let _ = r.ack.send(result.clone());
        }
    }
    tracing::debug!("writer drained, exiting");
}

/// Fill `group` (empty) from `first`: everything queued, then what arrives while any
/// batch is being encoded, for at most `linger` since `first`, while under `max_bytes`.
fn take_group(
    rx: &Receiver<Request>,
    first: Request,
    max_bytes: usize,
    (coming, linger): (&Coming, Duration),
    group: &mut Vec<Request>,
) {
    let started = Instant::now();
    let mut bytes = first.batch.size();
    group.push(first);
    while bytes < max_bytes {
        match rx.try_recv() {
            Ok(r) => {
                bytes += r.batch.size();
                group.push(r);
            }
            Err(_) => break,
        }
    }
    while coming.count() > 0 && bytes < max_bytes {
        let Some(left) = linger.checked_sub(started.elapsed()) else {
            break;
        };
        match rx.recv_timeout(left) {
            Ok(r) => {
                bytes += r.batch.size();
                group.push(r);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    /// A linger no test waits out unless the rule is broken.
    const LONG: Duration = Duration::from_secs(30);

    fn request() -> Request {
        let permits = Arc::new(Semaphore::new(1 << 20));
        Request {
            batch: EncodedBatch::empty(0),
            ack: oneshot::channel().0,
            _permit: permits.try_acquire_owned().expect("a permit"),
        }
    }

    #[test]
    fn a_group_takes_everything_queued() {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..3 {
            tx.send(request()).unwrap();
        }
        let coming = Coming::default();
        let mut group = Vec::new();
        take_group(&rx, request(), usize::MAX, (&coming, LONG), &mut group);
        assert_eq!(group.len(), 4);
    }

    #[test]
    fn with_nothing_being_encoded_a_group_closes_at_once() {
        let (_tx, rx) = std::sync::mpsc::channel::<Request>();
        let coming = Coming::default();
        let mut group = Vec::new();
        let started = Instant::now();
        take_group(&rx, request(), usize::MAX, (&coming, LONG), &mut group);
        assert_eq!(group.len(), 1);
        // nothing to wait for: it must not have waited the linger out
        assert!(started.elapsed() < LONG);
    }

    #[test]
    fn a_group_waits_for_a_batch_being_encoded() {
        let (tx, rx) = std::sync::mpsc::channel();
        let coming = Arc::new(Coming::default());
        let encoding = coming.enter();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(200));
            // queued before the count drops, so the group cannot close between the two
            // (it may then wait out the linger for nothing more: one second at most)
            tx.send(request()).unwrap();
            drop(encoding);
        });
        let mut group = Vec::new();
        take_group(
            &rx,
            request(),
            usize::MAX,
            (&coming, Duration::from_secs(1)),
            &mut group,
        );
        sender.join().unwrap();
        assert_eq!(group.len(), 2);
        assert_eq!(coming.count(), 0);
    }

    #[test]
    fn a_group_waits_no_longer_than_the_linger() {
        let (_tx, rx) = std::sync::mpsc::channel::<Request>();
        let coming = Arc::new(Coming::default());
        let _stuck = coming.enter();
        let mut group = Vec::new();
        let started = Instant::now();
        take_group(&rx, request(), usize::MAX, (&coming, LINGER), &mut group);
        assert_eq!(group.len(), 1);
        assert!(started.elapsed() >= LINGER);
    }

    #[test]
    fn a_full_group_does_not_wait() {
        let (_tx, rx) = std::sync::mpsc::channel::<Request>();
        let coming = Arc::new(Coming::default());
        let _encoding = coming.enter();
        let mut group = Vec::new();
        let started = Instant::now();
        // max_bytes 0: the first request already fills it
        take_group(&rx, request(), 0, (&coming, LONG), &mut group);
        assert_eq!(group.len(), 1);
        assert!(started.elapsed() < LONG);
    }
}
