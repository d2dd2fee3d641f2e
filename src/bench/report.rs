//! What `fctrace bench` reports: the figures of one run (serialized with `--json`) and
//! their human-readable form. Measuring them is `bench`'s job, not this module's.

use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub protocol: String,
    pub seconds: f64,
    pub spans_sent: u64,
    pub spans_per_second: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    /// The length of the first and last windows below: a minute, or a third of a
    /// shorter run. Their rates side by side show whether throughput decays in a run.
    pub window_seconds: f64,
    pub first_window_spans_per_second: f64,
    pub last_window_spans_per_second: f64,
    pub first_window_ack_p99_ms: f64,
    pub last_window_ack_p99_ms: f64,
    pub refused: u64,
    pub failed: u64,
    /// The daemon's CPU seconds (every thread, compactions included, from /proc).
    pub cpu_seconds: Option<f64>,
    /// `cpu_seconds` per million spans acknowledged: the efficiency figure.
    pub cpu_seconds_per_million_spans: Option<f64>,
    pub rss_peak_bytes: Option<u64>,
    pub disk_bytes_per_span: Option<f64>,
    pub decode_ceiling_spans_per_second: Option<f64>,
    pub store_ceiling_spans_per_second: Option<f64>,
    pub query: Option<QueryReport>,
}

#[derive(Debug, Default, Serialize)]
pub struct QueryReport {
    pub stored_spans: u64,
    pub trace_by_id_p50_ms: f64,
    pub trace_by_id_p99_ms: f64,
    pub search_p50_ms: f64,
    pub search_p99_ms: f64,
    /// The same search with a tag value nothing has: it must scan the whole window.
    pub miss_p50_ms: f64,
    pub miss_p99_ms: f64,
    pub tree_p50_ms: f64,
    pub tree_p99_ms: f64,
}

/// Human-readable report, each figure beside its ceiling.
pub fn print(r: &Report) {
    let ratio = |x: f64, c: Option<f64>| {
        c.map(|c| format!("  ({:.0}% of {:.0} spans/s)", 100.0 * x / c, c))
            .unwrap_or_default()
    };
    println!("protocol            {}", r.protocol);
    println!("duration            {:.1} s", r.seconds);
    println!(
        "spans acknowledged  {} ({:.0} spans/s)",
        r.spans_sent, r.spans_per_second
    );
    println!(
        "  vs decode alone   {}",
        ratio(r.spans_per_second, r.decode_ceiling_spans_per_second)
    );
    println!(
        "  vs RocksDB alone  {}",
        ratio(r.spans_per_second, r.store_ceiling_spans_per_second)
    );
    println!(
        "ack latency         p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        r.ack_p50_ms, r.ack_p99_ms, r.ack_max_ms
    );
    println!(
        "first / last {:.0} s   {:.0} / {:.0} spans/s ({:.0} %), ack p99 {:.1} / {:.1} ms",
        r.window_seconds,
        r.first_window_spans_per_second,
        r.last_window_spans_per_second,
        100.0 * r.last_window_spans_per_second / r.first_window_spans_per_second.max(1.0),
        r.first_window_ack_p99_ms,
        r.last_window_ack_p99_ms
    );
    println!("refused / failed    {} / {} spans", r.refused, r.failed);
    if let Some(c) = r.cpu_seconds {
        println!(
            "daemon CPU          {:.1} s ({:.0}% of one core, {:.2} s per million spans)",
            c,
            100.0 * c / r.seconds,
            r.cpu_seconds_per_million_spans.unwrap_or(0.0)
        );
    }
    if let Some(m) = r.rss_peak_bytes {
        println!("daemon peak RSS     {:.1} MiB", m as f64 / (1 << 20) as f64);
    }
    if let Some(b) = r.disk_bytes_per_span {
        println!("disk per span       {b:.0} bytes (after compaction)");
    }
    if let Some(q) = &r.query {
        println!("queries at {} stored spans:", q.stored_spans);
        println!(
            "  trace by id       p50 {:.2} ms  p99 {:.2} ms",
            q.trace_by_id_p50_ms, q.trace_by_id_p99_ms
        );
        println!(
            "  service+tag       p50 {:.2} ms  p99 {:.2} ms",
            q.search_p50_ms, q.search_p99_ms
        );
        println!(
            "  search, no match  p50 {:.2} ms  p99 {:.2} ms",
            q.miss_p50_ms, q.miss_p99_ms
        );
        println!(
            "  tree              p50 {:.2} ms  p99 {:.2} ms",
            q.tree_p50_ms, q.tree_p99_ms
        );
    }
}
