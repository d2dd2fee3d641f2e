//! `fctrace bench`: drive a running fctrace over loopback with realistic batches and report
//! what it sustains, next to ceilings measured in the same run on the same machine.
//!
//! Ingest: spans/s acknowledged, acknowledgement latency p50/p99/max, refusals, the
//! daemon's CPU seconds and peak RSS (from /proc), bytes on disk per stored span after a
//! compaction. Queries (with `--query`): trace by id (a 200-span trace), search by
//! service + tag (limit 20), the same search for a tag value nothing has (it scans the
//! whole window), and the tree API, p50/p99. Ceilings: decoding the same bodies in this
//! process (no HTTP, no store), and writing the same spans to a fresh RocksDB store (no
//! HTTP, no decode). This module is a client of the daemon; it shares only the
//! encoders and the store with it.

mod ceilings;
pub mod gen;
pub mod load;
mod report;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use gen::{Format, Shape, Template};
pub use report::{print, QueryReport, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    OtlpHttp,
    OtlpGrpc,
    JaegerThrift,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "otlp-http")]
    pub protocol: Protocol,
    /// The ingest endpoint: http://HOST:PORT of the OTLP/HTTP, OTLP/gRPC or collector port.
    #[arg(long)]
    pub endpoint: String,
    /// The daemon's data directory (for its pid, its query port and bytes on disk).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value = "60s")]
    pub duration: String,
    /// Spans a second to offer; 0 sends flat out.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    #[command(flatten)]
    pub shape: Shape,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Also measure query latency afterwards.
    #[arg(long)]
    pub query: bool,
    /// Query requests per kind.
    #[arg(long, default_value_t = 200)]
    pub query_requests: usize,
    /// Skip the in-process ceilings.
    #[arg(long)]
    pub no_ceilings: bool,
    /// One JSON object on the last line of output.
    #[arg(long)]
    pub json: bool,
    /// The daemon's admin token, to compact before measuring disk use
    #[arg(long, env = "FCTRACE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// One acknowledged request: when it was answered (seconds into the run), how long it
/// took, how many spans it carried.
struct Ack {
    at: f64,
    ms: f64,
    spans: u64,
}

/// Spans/s and ack p99 of the requests answered in `[from, to)` seconds into the run.
struct Window {
    rate: f64,
    p99: f64,
}

impl Window {
    fn of(acks: &[Ack], from: f64, to: f64) -> Window {
        let inside = || acks.iter().filter(|a| a.at >= from && a.at < to);
        let mut lat: Vec<f64> = inside().map(|a| a.ms).collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        let spans: u64 = inside().map(|a| a.spans).sum();
        Window {
            rate: if to > from {
                spans as f64 / (to - from)
            } else {
                0.0
            },
            p99: percentile(&lat, 0.99),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Process CPU seconds and peak RSS of `pid`, from /proc.
fn proc_stats(pid: u32) -> (Option<f64>, Option<u64>) {
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(t / 100.0)
        });
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kb| kb * 1024);
    (cpu, hwm)
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

struct Ports {
    pid: Option<u32>,
    query: Option<String>,
}

fn read_ports(dir: &Option<PathBuf>) -> Ports {
    let v: Option<serde_json::Value> = dir
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("ports.json")).ok())
        .and_then(|t| serde_json::from_str(&t).ok());
    Ports {
        pid: v.as_ref().and_then(|v| v["pid"].as_str()?.parse().ok()),
        query: v
            .as_ref()
            .and_then(|v| v["query"].as_str().map(|q| format!("http://{q}"))),
    }
}

/// A gRPC codec that sends pre-encoded protobuf bytes and ignores the answer's body.
mod raw_grpc {
    use bytes::{Buf, BufMut, Bytes};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::Status;

    #[derive(Default, Clone)]
    pub struct RawCodec;
    pub struct RawEncoder;
    pub struct RawDecoder;

    impl Codec for RawCodec {
        type Encode = Bytes;
        type Decode = ();
        type Encoder = RawEncoder;
        type Decoder = RawDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> RawDecoder {
            RawDecoder
        }
    }
    impl Encoder for RawEncoder {
        type Item = Bytes;
        type Error = Status;
        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put(item);
            Ok(())
        }
    }
    impl Decoder for RawDecoder {
        type Item = ();
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
            let n = src.remaining();
            src.advance(n);
            Ok(Some(()))
        }
    }
}

enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
        content_type: &'static str,
    },
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
}

enum Outcome {
    Ok,
    Refused,
    Failed,
}

impl Sender {
    async fn send(&mut self, body: Vec<u8>) -> Outcome {
        match self {
            Sender::Http {
                client,
                url,
                content_type,
            } => {
                match client
                    .post(url.as_str())
                    .header("content-type", *content_type)
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => Outcome::Ok,
                    Ok(r) if r.status().as_u16() == 429 || r.status().as_u16() == 503 => {
                        Outcome::Refused
                    }
                    _ => Outcome::Failed,
                }
            }
            Sender::Grpc(g) => {
                if g.ready().await.is_err() {
                    return Outcome::Failed;
                }
                let path = http::uri::PathAndQuery::from_static(
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                );
                match g
                    .unary(
                        tonic::Request::new(bytes::Bytes::from(body)),
                        path,
                        raw_grpc::RawCodec,
                    )
                    .await
                {
                    Ok(_) => Outcome::Ok,
                    Err(s)
                        if matches!(
                            s.code(),
                            tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                        ) =>
                    {
                        Outcome::Refused
                    }
                    Err(_) => Outcome::Failed,
                }
            }
        }
    }
}

async fn sender(args: &BenchArgs) -> Result<Sender, String> {
    let base = args.endpoint.trim_end_matches('/').to_owned();
    Ok(match args.protocol {
        Protocol::OtlpHttp => Sender::Http {
            client: reqwest::Client::new(),
            url: format!("{base}/v1/traces"),
            content_type: "application/x-protobuf",
        },
        Protocol::JaegerThrift => Sender::Http {
            client: reqwest::Client::new(),
            url: format!("{base}/api/traces"),
            content_type: "application/x-thrift",
        },
        Protocol::OtlpGrpc => {
            let channel = tonic::transport::Endpoint::from_shared(base)
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            Sender::Grpc(tonic::client::Grpc::new(channel).max_encoding_message_size(64 << 20))
        }
    })
}

fn templates(args: &BenchArgs, format: Format) -> Vec<Template> {
    let shape = &args.shape;
    let now = crate::clock::now_us();
    // one template per service, so every service the searches ask for exists
    (0..shape.services.max(16))
        .map(|t| gen::template(format, &gen::spans(shape, t, now), now))
        .collect()
}

async fn timed_gets(client: &reqwest::Client, urls: &[String]) -> (f64, f64) {
    let mut ms = Vec::with_capacity(urls.len());
    for u in urls {
        let t = Instant::now();
        let ok = client
            .get(u)
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ok {
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

pub async fn run(args: BenchArgs) -> Result<Report, String> {
    let duration = crate::duration::parse(&args.duration).map_err(|e| e.to_string())?;
    let format = match args.protocol {
        Protocol::JaegerThrift => Format::JaegerThrift,
        _ => Format::OtlpProtobuf,
    };
    let templates = Arc::new(templates(&args, format));
    let ports = read_ports(&args.data_dir);
    let before = ports.pid.map(proc_stats);
    // Trace ids stamped into the templates start past anything a previous run used.
    let base = crate::clock::now_us();
    let counter = Arc::new(AtomicU64::new(0));
    let sent_spans = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let started = Instant::now();
    let deadline = started + duration;
    let per_request = if args.rate > 0 {
        Some(Duration::from_secs_f64(
            args.shape.batch as f64 * args.concurrency as f64 / args.rate as f64,
        ))
    } else {
        None
    };
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let mut s = sender(&args).await?;
        let (templates, counter, sent_spans, refused, failed, latencies) = (
            Arc::clone(&templates),
            Arc::clone(&counter),
            Arc::clone(&sent_spans),
            Arc::clone(&refused),
            Arc::clone(&failed),
            Arc::clone(&latencies),
        );
        tasks.push(tokio::spawn(async move {
            let mut next = Instant::now();
            let mut local = Vec::new();
            while Instant::now() < deadline {
                if let Some(gap) = per_request {
                    tokio::time::sleep_until(next.into()).await;
                    next += gap;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = &templates[(n % templates.len() as u64) as usize];
                let body = t.stamp(base + n, crate::clock::now_us());
                let clock = Instant::now();
                match s.send(body).await {
                    Outcome::Ok => {
                        local.push(Ack {
                            at: started.elapsed().as_secs_f64(),
                            ms: clock.elapsed().as_secs_f64() * 1000.0,
                            spans: t.spans as u64,
                        });
                        sent_spans.fetch_add(t.spans as u64, Ordering::Relaxed);
                    }
                    Outcome::Refused => {
                        refused.fetch_add(t.spans as u64, Ordering::Relaxed);
                    }
                    Outcome::Failed => {
                        failed.fetch_add(t.spans as u64, Ordering::Relaxed);
                    }
                }
            }
            latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(local);
        }));
    }
    let progress = {
        let sent = Arc::clone(&sent_spans);
        tokio::spawn(async move {
            let mut last = 0;
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let now = sent.load(Ordering::Relaxed);
                eprintln!(
                    "  {:>5.0}s  {:>10} spans acknowledged  {:>9.0} spans/s",
                    started.elapsed().as_secs_f64(),
                    now,
                    (now - last) as f64 / 5.0
                );
                last = now;
            }
        })
    };
    for t in tasks {
        let _ = t.await;
    }
    progress.abort();
    let seconds = started.elapsed().as_secs_f64();
    let acks = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    let mut lat: Vec<f64> = acks.iter().map(|a| a.ms).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let window = (seconds / 3.0).min(60.0);
    let first = Window::of(&acks, 0.0, window);
    let last = Window::of(&acks, seconds - window, seconds);
    let after = ports.pid.map(proc_stats);
    let spans = sent_spans.load(Ordering::Relaxed);
    let mut report = Report {
        protocol: format!("{:?}", args.protocol),
        seconds,
        spans_sent: spans,
        spans_per_second: spans as f64 / seconds,
        ack_p50_ms: percentile(&lat, 0.5),
        ack_p99_ms: percentile(&lat, 0.99),
        ack_max_ms: lat.last().copied().unwrap_or(0.0),
        window_seconds: window,
        first_window_spans_per_second: first.rate,
        last_window_spans_per_second: last.rate,
        first_window_ack_p99_ms: first.p99,
        last_window_ack_p99_ms: last.p99,
        refused: refused.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        cpu_seconds: match (before, after) {
            (Some((Some(a), _)), Some((Some(b), _))) => Some(b - a),
            _ => None,
        },
        cpu_seconds_per_million_spans: match (before, after) {
            (Some((Some(a), _)), Some((Some(b), _))) if spans > 0 => {
                Some((b - a) / (spans as f64 / 1e6))
            }
            _ => None,
        },
        rss_peak_bytes: after.and_then(|(_, r)| r),
        ..Report::default()
    };

    let client = reqwest::Client::new();
    if let (Some(query), Some(dir)) = (&ports.query, &args.data_dir) {
        // Compact, then divide what is on disk by what was stored (not for a run that
        // sent nothing, as `make bench` does to query a store `fctrace load` wrote).
        let stored = stored_spans(&client, query).await;
        if spans > 0 {
            let mut compact = client.post(format!("{query}/api/admin/compact"));
            if let Some(token) = &args.admin_token {
                compact = compact.bearer_auth(token);
            }
            match compact.send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => eprintln!(
                "compaction before measuring disk use refused ({}): give the daemon's --admin-token",
                r.status()
            ),
            Err(e) => eprintln!("compaction before measuring disk use failed: {e}"),
        }
            if stored > 0 {
                report.disk_bytes_per_span = Some(dir_size(&dir.join("db")) as f64 / stored as f64);
            }
        }
        if args.query {
            report.query = Some(query_latency(&args, &client, query, format, stored).await?);
        }
    }
    if !args.no_ceilings {
        let t = Arc::clone(&templates);
        report.decode_ceiling_spans_per_second =
            tokio::task::spawn_blocking(move || ceilings::decode_ceiling(format, &t))
                .await
                .ok();
        let a = args.clone();
        report.store_ceiling_spans_per_second =
            tokio::task::spawn_blocking(move || ceilings::store_ceiling(&a))
                .await
                .ok()
                .and_then(Result::ok);
    }
    Ok(report)
}

async fn stored_spans(client: &reqwest::Client, query: &str) -> u64 {
    let Ok(r) = client.get(format!("{query}/metrics")).send().await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("fctrace_spans_stored_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Query latency: a known 200-span trace by id and as a tree, and a service + tag search.
async fn query_latency(
    args: &BenchArgs,
    client: &reqwest::Client,
    query: &str,
    format: Format,
    stored: u64,
) -> Result<QueryReport, String> {
    let shape = Shape {
        batch: 200,
        tags: args.shape.tags,
        services: 1,
        operations: args.shape.operations,
        depth: 8,
    };
    // one trace of 200 spans: a deep tree template, every span in the same trace
    let now = crate::clock::now_us();
    let mut spans = gen::spans(&shape, 0, now);
    let trace = spans[0].trace_id;
    for s in spans.iter_mut() {
        s.trace_id = trace;
        for r in s.references.iter_mut() {
            r.trace_id = trace;
        }
    }
    let t = gen::template(format, &spans, now);
    // a trace of its own each run: a rerun on the same store must not read a trace that
    // earlier runs made longer
    let marker = 0x0BE7_C4A5_0000_0000u64 | (now & 0xFFFF_FFFF);
    let mut s = sender(args).await?;
    if !matches!(s.send(t.stamp(marker, now)).await, Outcome::Ok) {
        return Err("could not store the query-benchmark trace".into());
    }
    let id = format!("{:016x}{:016x}", marker, trace.low());
    let n = args.query_requests;
    let by_id: Vec<String> = (0..n).map(|_| format!("{query}/api/traces/{id}")).collect();
    let tree: Vec<String> = (0..n)
        .map(|_| format!("{query}/api/v1/traces/{id}/tree"))
        .collect();
    let search: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{query}/api/traces?service=bench-svc-{}&tag=bench.tag.0:value-{}&limit=20",
                i % args.shape.services.max(1),
                i % 50
            )
        })
        .collect();
    // a service that exists with a tag value no span has, over the default window
    let miss: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{query}/api/traces?service=bench-svc-{}&tag=bench.tag.0:no-such-value-{i}&limit=20",
                i % args.shape.services.max(1),
            )
        })
        .collect();
    let (a, b) = timed_gets(client, &by_id).await;
    let (c, d) = timed_gets(client, &search).await;
    let (g, h) = timed_gets(client, &miss).await;
    let (e, f) = timed_gets(client, &tree).await;
    Ok(QueryReport {
        stored_spans: stored,
        trace_by_id_p50_ms: a,
        trace_by_id_p99_ms: b,
        search_p50_ms: c,
        search_p99_ms: d,
        miss_p50_ms: g,
        miss_p99_ms: h,
        tree_p50_ms: e,
        tree_p99_ms: f,
    })
}
