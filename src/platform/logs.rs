//! Function logs: each instance's stdout and stderr captured line by line, tied to the
//! request running on the instance, capped per instance, and stored (`logs` family)
//! through the pipeline in batches. Reading them back is the query side's.
//!
//! The gateway brackets each call with `FC Invoke Start RequestId: …` and
//! `FC Invoke End RequestId: …` lines, as function platforms print them. A line belongs
//! to the request running on its instance when it was read; lines outside a request (or
//! while several run at once on one instance, `instance_concurrency` > 1) belong to the
//! instance alone. Before a request's end is applied, each stream waits briefly for what
//! the function wrote before answering and is still in the pipe, so those lines stay with
//! their request.
//!
//! Nothing here can hold up a call: lines go through a bounded queue, and a full queue,
//! an instance over its cap or a failing store drops lines and counts them
//! (`fctrace_function_log_lines_dropped_total{reason}`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::events::{Event, Subscribers};
use crate::clock::now_us;
use crate::model::LogLine;
use crate::pipeline::{with_retries, Pipeline};
use crate::store::keys::{self, Tenant, DEFAULT_TENANT};
use crate::store::Rows;
use crate::telemetry::Metrics;
use std::collections::HashMap;

pub const START: &str = "FC Invoke Start RequestId: ";
pub const END: &str = "FC Invoke End RequestId: ";
/// Longest line kept; the rest of a longer one is cut.
pub const MAX_LINE: usize = 16 << 10;
/// Lines waiting for the store, across every instance.
const QUEUE_LINES: usize = 16_384;
/// Lines stored per write.
const BATCH_LINES: usize = 2048;
/// How long a stream waits for more output before a request's end is applied.
const DRAIN_WAIT: Duration = Duration::from_millis(5);
/// How long the end marker waits for the streams to apply the end.
const END_WAIT: Duration = Duration::from_millis(200);

struct Captured {
    tenant: Tenant,
    service: Arc<str>,
    function: Arc<str>,
    line: LogLine,
}

/// Where every instance's lines go: a bounded queue to one task that stores them.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Captured>,
    /// Each function's tenant (lines of others go to the default tenant).
    tenants: Arc<HashMap<(String, String), Tenant>>,
    metrics: Arc<Metrics>,
    /// Output bytes one instance may store a minute.
    cap: u64,
}

impl LogSink {
    /// Start the task that stores lines; it ends when every sink and instance is gone.
    pub fn start(
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
        cap_bytes_per_minute: u64,
        tenants: HashMap<(String, String), Tenant>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_LINES);
        tokio::spawn(store_loop(rx, pipeline, Arc::clone(&metrics)));
        LogSink {
            tx,
            tenants: Arc::new(tenants),
            metrics,
            cap: cap_bytes_per_minute,
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// A line of the platform's own about a request (stream `platform`, no instance).
    pub fn platform_line(&self, service: &str, function: &str, request_id: &str, message: String) {
        self.push(Captured {
            tenant: self.tenant_of(service, function),
            service: service.into(),
            function: function.into(),
            line: LogLine {
                time: now_us(),
                instance_id: String::new(),
                request_id: Some(request_id.to_owned()),
                stream: "platform".into(),
                message,
                truncated: false,
            },
        });
    }

    fn tenant_of(&self, service: &str, function: &str) -> Tenant {
        self.tenants
            .get(&(service.to_owned(), function.to_owned()))
            .copied()
            .unwrap_or(DEFAULT_TENANT)
    }

    fn push(&self, c: Captured) {
        if self.tx.try_send(c).is_err() {
            self.metrics.log_lines_dropped("queue", 1);
        }
    }
}

async fn store_loop(mut rx: mpsc::Receiver<Captured>, pipeline: Pipeline, metrics: Arc<Metrics>) {
    let mut got = Vec::with_capacity(BATCH_LINES);
    let mut seq = 0u32;
    while rx.recv_many(&mut got, BATCH_LINES).await > 0 {
        // one write per tenant (nearly always one)
        let mut by_tenant: std::collections::BTreeMap<Tenant, Vec<Row>> = Default::default();
        for c in got.drain(..) {
            seq = seq.wrapping_add(1);
            let key = keys::log_key(c.tenant, &c.service, &c.function, c.line.time, seq);
            by_tenant
                .entry(c.tenant)
                .or_default()
                .push((key, serde_json::to_vec(&c.line).unwrap_or_default()));
        }
        for (tenant, rows) in by_tenant {
            store_rows(&pipeline, &metrics, tenant, rows).await;
        }
    }
}

/// A log line's key and value.
type Row = (Vec<u8>, Vec<u8>);

async fn store_rows(pipeline: &Pipeline, metrics: &Arc<Metrics>, tenant: Tenant, rows: Vec<Row>) {
    let write = || pipeline.submit_rows(tenant, Rows::Logs, &rows);
    match with_retries(metrics, write).await {
        Ok(()) => metrics.log_lines_stored(rows.len()),
        Err(e) => {
            metrics.log_lines_dropped("store", rows.len());
            tracing::warn!(error = %e, lines = rows.len(), "function log lines not stored");
        }
    }
}

enum Control {
    Start(Arc<str>),
    End(Arc<str>, oneshot::Sender<()>),
}

/// What both streams of an instance share.
struct Source {
    sink: LogSink,
    /// The function's tenant, looked up once (not per line).
    tenant: Tenant,
    service: Arc<str>,
    function: Arc<str>,
    instance: String,
    /// The function's telemetry listeners (its output lines are `function` events).
    events: Arc<Subscribers>,
    /// (minute, bytes stored in it, whether the drop notice was written)
    budget: Mutex<(u64, u64, bool)>,
}

impl Source {
    fn emit(&self, stream: &str, request_id: Option<&str>, message: String, truncated: bool) {
        let time = now_us();
        if stream != "platform" {
            self.events.offer(&Event::Function {
                at: time,
                message: message.clone(),
            });
            if !self.within_cap(time, message.len() as u64) {
                return;
            }
        }
        self.sink.push(Captured {
            tenant: self.tenant,
            service: Arc::clone(&self.service),
            function: Arc::clone(&self.function),
            line: LogLine {
                time,
                instance_id: self.instance.clone(),
                request_id: request_id.map(str::to_owned),
                stream: stream.to_owned(),
                message,
                truncated,
            },
        });
    }

    /// Count `bytes` against this minute's cap; over it, the line is dropped (and the
    /// first drop of the minute leaves a notice).
    fn within_cap(&self, time: u64, bytes: u64) -> bool {
        let minute = time / 60_000_000;
        let notice = {
            let mut b = self.budget.lock().unwrap_or_else(|e| e.into_inner());
            if b.0 != minute {
                *b = (minute, 0, false);
            }
            if b.1 + bytes <= self.sink.cap {
                b.1 += bytes;
                return true;
            }
            !std::mem::replace(&mut b.2, true)
        };
        self.sink.metrics.log_lines_dropped("cap", 1);
        if notice {
            self.emit(
                "platform",
                None,
                format!(
                    "[fctrace] this instance printed more than {} bytes this minute: lines dropped until the next minute",
                    self.sink.cap
                ),
                false,
            );
        }
        false
    }
}

/// One instance's captured output.
pub struct InstanceLog {
    source: Arc<Source>,
    controls: Vec<mpsc::UnboundedSender<Control>>,
    /// Ends of requests whose streams are still being drained.
    pending: Arc<Pending>,
}

impl InstanceLog {
    /// Capture `streams` (named `stdout`, `stderr`) of instance `instance`.
    pub fn capture(
        sink: &LogSink,
        service: &str,
        function: &str,
        instance: &str,
        events: Arc<Subscribers>,
        streams: Vec<(&'static str, Box<dyn AsyncRead + Unpin + Send>)>,
    ) -> InstanceLog {
        let source = Arc::new(Source {
            tenant: sink.tenant_of(service, function),
            sink: sink.clone(),
            service: service.into(),
            function: function.into(),
            instance: instance.to_owned(),
            events,
            budget: Mutex::new((0, 0, false)),
        });
        let controls = streams
            .into_iter()
            .map(|(name, stream)| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(pump(stream, name, rx, Arc::clone(&source)));
                tx
            })
            .collect();
        InstanceLog {
            source,
            controls,
            pending: Arc::default(),
        }
    }

    /// A request starts on the instance: what earlier requests still have to say at
    /// their end (so a listener gets one request's end before the next one's start),
    /// `first` (the platform's start event), its marker, and its lines from now on.
    pub fn start(&self, request_id: &str, first: impl FnOnce()) {
        self.run_pending();
        first();
        self.source.emit(
            "platform",
            Some(request_id),
            format!("{START}{request_id}"),
            false,
        );
        let id: Arc<str> = request_id.into();
        for c in &self.controls {
            let _ = c.send(Control::Start(Arc::clone(&id)));
        }
    }

    /// The request has answered: once each stream has taken what is still in its pipe
    /// (or the next request starts, whichever is first), `then` (the platform's end
    /// events, after the function's last lines), the end marker, and the instance's lines
    /// again.
    pub fn end(&self, request_id: &str, then: impl FnOnce() + Send + 'static) {
        let id: Arc<str> = request_id.into();
        let acks: Vec<oneshot::Receiver<()>> = self
            .controls
            .iter()
            .filter_map(|c| {
                let (tx, rx) = oneshot::channel();
                c.send(Control::End(Arc::clone(&id), tx)).ok().map(|_| rx)
            })
            .collect();
        let source = Arc::clone(&self.source);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(move || {
                then();
                source.emit("platform", Some(&id), format!("{END}{id}"), false);
            }));
        let pending = Arc::clone(&self.pending);
        tokio::spawn(async move {
            for ack in acks {
                let _ = tokio::time::timeout(END_WAIT, ack).await;
            }
            run(&pending);
        });
    }

    fn run_pending(&self) {
        run(&self.pending);
    }
}

type Pending = Mutex<Vec<Box<dyn FnOnce() + Send>>>;

/// Run (once) what ends of requests still have to say.
fn run(pending: &Pending) {
    let due = std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
    for f in due {
        f();
    }
}

/// Splits a stream's bytes into lines of at most [`MAX_LINE`] bytes.
#[derive(Default)]
struct Lines {
    line: Vec<u8>,
    cut: bool,
}

impl Lines {
    /// Take `buf`, calling `each(line, cut)` for every line it completes.
    fn take(&mut self, mut buf: &[u8], mut each: impl FnMut(Vec<u8>, bool)) {
        while !buf.is_empty() {
            let (chunk, rest, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], &buf[i + 1..], true),
                None => (buf, &buf[buf.len()..], false),
            };
            let room = MAX_LINE - self.line.len();
            if chunk.len() > room {
                self.cut = true;
            }
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if done {
                self.finish(&mut each);
            }
            buf = rest;
        }
    }

    fn finish(&mut self, each: &mut impl FnMut(Vec<u8>, bool)) {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        each(line, std::mem::take(&mut self.cut));
    }

    /// The last line, when the stream ended without a newline.
    fn flush(&mut self, mut each: impl FnMut(Vec<u8>, bool)) {
        if !self.line.is_empty() || self.cut {
            self.finish(&mut each);
        }
    }
}

async fn pump<R: AsyncRead + Unpin>(
    stream: R,
    name: &'static str,
    mut controls: mpsc::UnboundedReceiver<Control>,
    source: Arc<Source>,
) {
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut lines = Lines::default();
    let mut active: Vec<Arc<str>> = Vec::new();
    let mut controls_open = true;
    let emit = |active: &[Arc<str>], line: Vec<u8>, cut: bool| {
        // one request running: the line is its; none or several: the instance's
        let request = match active {
            [one] => Some(&**one),
            _ => None,
        };
        let message = String::from_utf8_lossy(&line).into_owned();
        tracing::debug!(instance = %source.instance, stream = name, request = ?request, "{message}");
        source.emit(name, request, message, cut);
    };
    loop {
        tokio::select! {
            biased;
            c = controls.recv(), if controls_open => match c {
                None => controls_open = false,
                Some(Control::Start(id)) => active.push(id),
                Some(Control::End(id, ack)) => {
                    // what the function wrote before it answered may still be in the pipe
                    while let Ok(Ok(buf)) = tokio::time::timeout(DRAIN_WAIT, reader.fill_buf()).await {
                        // the next request has started: what comes now may be its
                        if buf.is_empty() || !controls.is_empty() {
                            break;
                        }
                        let n = buf.len();
                        lines.take(buf, |l, cut| emit(&active, l, cut));
                        reader.consume(n);
                    }
                    active.retain(|a| *a != id);
                    let _ = ack.send(());
                }
            },
            read = reader.fill_buf() => match read {
                Ok(buf) if !buf.is_empty() => {
                    let n = buf.len();
                    lines.take(buf, |l, cut| emit(&active, l, cut));
                    reader.consume(n);
                }
                _ => break,
            },
        }
    }
    lines.flush(|l, cut| emit(&active, l, cut));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_cut_at_the_limit() {
        let mut lines = Lines::default();
        let mut got = Vec::new();
        let long = vec![b'x'; MAX_LINE + 10];
        lines.take(b"one\r\ntw", |l, c| got.push((l, c)));
        lines.take(b"o\n", |l, c| got.push((l, c)));
        lines.take(&long, |l, c| got.push((l, c)));
        lines.take(b"\nend", |l, c| got.push((l, c)));
        lines.flush(|l, c| got.push((l, c)));
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], (b"one".to_vec(), false));
        assert_eq!(got[1], (b"two".to_vec(), false));
        assert_eq!((got[2].0.len(), got[2].1), (MAX_LINE, true));
        assert_eq!(got[3], (b"end".to_vec(), false));
    }
}
