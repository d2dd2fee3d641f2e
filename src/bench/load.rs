//! `fctrace load`: spans of the benchmark's shape written straight into a stopped
//! daemon's store, so queries, start-up and idle memory can be measured on a store of
//! 100 million spans without hours of ingest. The spans' start times are spread over the
//! time before now as if they had arrived at `--rate`; every batch gets its own trace
//! ids. This bypasses HTTP and the pipeline (nothing is validated or sampled): it is a
//! tool for measuring the store, not a way to import data.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use super::gen::{self, Shape};
use crate::model::TraceId;
use crate::pipeline::encode_spans;
use crate::store::{EncodedBatch, Store, StoreOptions};

/// The high half of loaded trace ids, above the batch number: apart from the bench's own.
const LOAD_MARK: u64 = 0x10AD << 48;

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The (stopped) daemon's data directory; its store is created if missing.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Spans to write.
    #[arg(long)]
    pub spans: u64,
    /// Spans a second of start time, as if they had arrived at this rate.
    #[arg(long, default_value_t = 170_000)]
    pub rate: u64,
    #[command(flatten)]
    pub shape: Shape,
    /// One JSON object on the last line of output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub spans: u64,
    pub seconds: f64,
    pub spans_per_second: f64,
    /// Bytes of the store's directory per span, after the final flush (no compaction).
    pub disk_bytes_per_span: f64,
    /// The same per column family (table files only).
    pub family_bytes_per_span: std::collections::BTreeMap<String, f64>,
}

pub fn load(args: &LoadArgs) -> Result<LoadReport, String> {
    let shape = Shape {
        batch: args.shape.batch.max(1),
        ..args.shape.clone()
    };
    let db = args.data_dir.join("db");
    // Bulk: no fsync per commit; everything is flushed at the end.
    let opts = StoreOptions {
        sync_writes: false,
        ..StoreOptions::default()
    };
    let store = Store::open(&db, &opts).map_err(|e| e.to_string())?;
    let rate = args.rate.max(1);
    let span_us = |n: u64| n.saturating_mul(1_000_000) / rate;
    // the first span starts this long before now, the last one about now
    let t0 = crate::clock::now_us().saturating_sub(span_us(args.spans) + 1_000_000);
    let templates: Vec<_> = (0..64).map(|t| gen::spans(&shape, t, t0)).collect();
    let batches = args.spans.div_ceil(shape.batch as u64);
    let next = AtomicU64::new(0);
    // calls between services, found as the daemon's pipeline finds them
    let edges = crate::pipeline::edges::Edges::default();
    let started = Instant::now();

    let (tx, rx) = mpsc::sync_channel::<EncodedBatch>(16);
    let written = std::thread::scope(|s| {
        // owned here, so a failed commit drops it and the encoders stop instead of
        // waiting on a full channel
        let rx = rx;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, templates, edges) = (&next, &templates, &edges);
            s.spawn(move || loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= batches {
                    return;
                }
                let first = n * shape.batch as u64;
                let take = (args.spans - first).min(shape.batch as u64) as usize;
                let mut spans = templates[(n % templates.len() as u64) as usize].clone();
                spans.truncate(take);
                let shift = span_us(first);
                for sp in &mut spans {
                    sp.trace_id = TraceId::from_parts(LOAD_MARK | n, sp.trace_id.low());
                    for r in &mut sp.references {
                        r.trace_id = sp.trace_id;
                    }
                    sp.start_time += shift;
                }
                if tx
                    .send(encode_spans(0, &spans, &edges.observe(&spans)))
                    .is_err()
                {
                    return;
                }
            });
        }
        drop(tx);
        // the one writer, committing groups of four batches as the daemon's does
        let (mut written, mut next_report) = (0u64, 10_000_000u64);
        let mut group = Vec::with_capacity(4);
        loop {
            let batch = rx.recv().ok();
            let done = batch.is_none();
            if let Some(b) = batch {
                group.push(b);
                if group.len() < 4 {
                    continue;
                }
            }
            if !group.is_empty() {
                store
                    .commit(&group.iter().collect::<Vec<_>>())
                    .map_err(|e| e.to_string())?;
                written += group.iter().map(|b| b.span_count() as u64).sum::<u64>();
                group.clear();
            }
            if written >= next_report {
                eprintln!(
                    "  {:>5.0}s  {:>11} spans written",
                    started.elapsed().as_secs_f64(),
                    written
                );
                next_report = written + 10_000_000;
            }
            if done {
                return Ok::<u64, String>(written);
            }
        }
    })?;
    store.flush().map_err(|e| e.to_string())?;
    let family_bytes_per_span = store
        .family_bytes()
        .into_iter()
        .map(|(name, bytes)| (name, bytes as f64 / written.max(1) as f64))
        .collect();
    drop(store);
    let seconds = started.elapsed().as_secs_f64();
    Ok(LoadReport {
        spans: written,
        seconds,
        spans_per_second: written as f64 / seconds,
        disk_bytes_per_span: super::dir_size(&db) as f64 / written.max(1) as f64,
        family_bytes_per_span,
    })
}
