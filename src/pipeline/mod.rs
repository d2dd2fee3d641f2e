//! The pipeline: decoded span batches in, acknowledged writes out.
//!
//! Every receiver calls [`Pipeline::submit`]. It validates the batch, encodes it on the
//! caller's task, takes admission permits for the bytes it will hold (waiting at most
//! `queue_timeout`, then answering "unavailable" rather than growing memory), and queues it
//! for the one writer thread (`writer`). The writer takes everything that is waiting
//! (and, for up to two milliseconds, what the batches being encoded bring), commits it as
//! one RocksDB write (group commit) and only then acknowledges each caller. Dropping every
//! [`Pipeline`] handle closes the queue; the writer finishes what is queued and exits.
//! In a cluster the same encoded batches go to the log instead, by partition (`publish`).
//!
//! The pipeline does not decode wire formats and does not know how keys are laid out.

mod admission;
pub mod edges;
mod publish;
mod retry;
mod validate;
mod writer;

pub use admission::{AdmissionOptions, Refusal, TenantQuota, TenantQuotas};
pub use retry::with_retries;
pub use writer::{Writer, LINGER};

use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{oneshot, Semaphore};

use crate::error::ErrorCode;
use crate::model::InvocationRecord;
use crate::model::Span;
use crate::sampling::tail::{Decision, TailSampler, TailSettings};
use crate::store::keys::DEFAULT_TENANT;
use crate::store::{self, keys::Tenant, EncodedBatch, Store, StoreError};
use crate::telemetry::Metrics;

pub use validate::{validate, Invalid, Window};

/// Moves spans into the trace they belong to before they are validated: the platform's
/// stitching of function spans under their invocation (`platform::stitch`). `scoped`
/// names the invocation a whole batch was sent for (an invocation-scoped endpoint).
pub trait Stitch: Send + Sync {
    fn apply(&self, spans: &mut [Span], scoped: Option<&str>);
}

/// What one gateway call leaves: its record (calls refused before they had a request
/// id have none), the function it was for (`None` when no such function exists) and
/// what it adds to the metrics.
#[derive(Debug, Clone)]
pub struct CallFacts {
    pub record: Option<InvocationRecord>,
    pub function: Option<crate::monitor::Function>,
    /// When the call arrived, µs since the epoch.
    pub at_us: u64,
    pub call: crate::monitor::minute::Call,
    /// Calls running on the whole platform when it arrived, itself included.
    pub platform_concurrent: u64,
}

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Encoded bytes that may wait for the writer at once.
    pub queue_bytes: usize,
    /// How long a request waits for room in the queue before it is refused.
    pub queue_timeout: Duration,
    /// Largest group the writer commits in one write.
    pub max_group_bytes: usize,
    pub admission: AdmissionOptions,
    /// Tenants' quotas (`tenancy`), when there are tenants.
    pub tenant_quotas: Option<admission::TenantQuotas>,
    /// Tail sampling, when on: traces are held and kept or dropped whole.
    pub tail: Option<TailSettings>,
    /// Spans that start before now minus this are refused (no query would show them).
    pub retention: Duration,
    /// Spans that start after now plus this are refused.
    pub max_future_skew: Duration,
    /// Adaptive sampling, when on: shown every admitted batch (its root spans count).
    pub adaptive: Option<Arc<crate::sampling::adaptive::Adaptive>>,
    /// In a cluster (`--role ingest` or `store`): what is acknowledged goes to the log,
    /// by partition, instead of this node's store (`publish`).
    pub log: Option<crate::cluster::LogHandle>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            queue_bytes: 128 << 20,
            queue_timeout: Duration::from_secs(2),
            max_group_bytes: 32 << 20,
            admission: AdmissionOptions::default(),
            tenant_quotas: None,
            tail: None,
            retention: Duration::from_secs(72 * 3600),
            max_future_skew: Duration::from_secs(3600),
            adaptive: None,
            log: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum SubmitError {
    #[error("{0}")]
    Invalid(Invalid),
    #[error("write queue is full; retry later")]
    QueueFull,
    #[error("{}", match .0 {
        Refusal::TenantRate { tenant } => format!("tenant {tenant:?} is over its span rate quota; retry later"),
        Refusal::TenantStorage { tenant, limit } => format!("tenant {tenant:?} stores its quota of {limit} bytes; retry once older data has passed its retention"),
        Refusal::ServiceRate { service } => format!("service {service:?} is over its span rate limit; retry later"),
        Refusal::InFlight { limit } => format!("more than {limit} spans are in flight; retry later"),
    })]
    Refused(Refusal),
    #[error("fctrace is shutting down")]
    Closed,
    #[error("store write failed: {0}")]
    Store(Arc<StoreError>),
    #[error("{0}")]
    Log(Arc<crate::cluster::LogError>),
}

impl SubmitError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SubmitError::Invalid(_) => ErrorCode::BadRequest,
            SubmitError::QueueFull | SubmitError::Closed => ErrorCode::Unavailable,
            SubmitError::Refused(_) => ErrorCode::RateLimited,
            SubmitError::Store(e) => e.code(),
            SubmitError::Log(e) => match **e {
                crate::cluster::LogError::Unavailable(_) => ErrorCode::Unavailable,
                crate::cluster::LogError::TooLarge { .. } => ErrorCode::TooLarge,
            },
        }
    }
}

/// What a partial submit did: how many spans were stored and why the others were not.
#[derive(Debug, Default)]
pub struct Outcome {
    pub accepted: usize,
    pub rejected: Vec<Invalid>,
}

/// Whether one invalid span refuses the whole batch (Jaeger's API has no partial answer)
/// or only itself (OTLP's `partial_success`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partial {
    RejectBatch,
    DropInvalid,
}

#[derive(Clone)]
pub struct Pipeline {
    tx: std::sync::mpsc::Sender<writer::Request>,
    /// Batches being encoded: what the writer may wait for (`writer`).
    coming: Arc<writer::Coming>,
    /// Asked for tenants' retentions (the writer thread has its own handle).
    store: Arc<Store>,
    stitch: Option<Arc<dyn Stitch>>,
    admission: Arc<admission::Admission>,
    tail: Option<Arc<TailSampler>>,
    permits: Arc<Semaphore>,
    opts: Arc<PipelineOptions>,
    metrics: Arc<Metrics>,
    edges: Arc<edges::Edges>,
}

impl Pipeline {
    pub fn start(
        store: Arc<Store>,
        opts: PipelineOptions,
        metrics: Arc<Metrics>,
        stitch: Option<Arc<dyn Stitch>>,
    ) -> (Pipeline, Writer) {
        let permits = Arc::new(Semaphore::new(opts.queue_bytes.min(Semaphore::MAX_PERMITS)));
        let coming = Arc::new(writer::Coming::default());
        let reader = Arc::clone(&store);
        let (tx, writer) = Writer::start(
            store,
            opts.max_group_bytes,
            Arc::clone(&metrics),
            Arc::clone(&coming),
        );
        let pipeline = Pipeline {
            tx,
            coming,
            store: reader,
            stitch,
            admission: Arc::new(admission::Admission::new(
                opts.admission,
                opts.tenant_quotas.clone(),
            )),
            tail: opts.tail.clone().map(|t| Arc::new(TailSampler::new(t))),
            permits,
            opts: Arc::new(opts),
            metrics,
            edges: Arc::default(),
        };
        (pipeline, writer)
    }

    /// Validate, encode and store a batch; returns once it is durable.
    pub async fn submit(
        &self,
        tenant: Tenant,
        spans: Vec<Span>,
        partial: Partial,
    ) -> Result<Outcome, SubmitError> {
        self.submit_scoped(tenant, spans, partial, None).await
    }

    /// As [`Pipeline::submit`], for spans that may all belong to one invocation (sent to
    /// its invocation-scoped endpoint).
    pub async fn submit_scoped(
        &self,
        tenant: Tenant,
        mut spans: Vec<Span>,
        partial: Partial,
        invocation: Option<&str>,
    ) -> Result<Outcome, SubmitError> {
        if let Some(stitch) = &self.stitch {
            stitch.apply(&mut spans, invocation);
        }
        let (spans, rejected) = validate(spans, self.window(tenant));
        for r in &rejected {
            self.metrics.refused(1, r.label);
        }
        if partial == Partial::RejectBatch {
            if let Some(first) = rejected.into_iter().next() {
                return Err(SubmitError::Invalid(first));
            }
            return self.store_valid(tenant, spans, Vec::new()).await;
        }
        self.store_valid(tenant, spans, rejected).await
    }

    /// The start times a span of `tenant` may have now (a tenant may keep data for less
    /// long than the store).
    fn window(&self, tenant: Tenant) -> Window {
        let now = crate::clock::now_us();
        let us = |d: Duration| d.as_micros().min(u64::MAX as u128) as u64;
        let retention = self.opts.retention.min(self.store.retention_of(tenant));
        Window {
            oldest: now.saturating_sub(us(retention)),
            newest: now.saturating_add(us(self.opts.max_future_skew)),
        }
    }

    async fn store_valid(
        &self,
        tenant: Tenant,
        spans: Vec<Span>,
        rejected: Vec<Invalid>,
    ) -> Result<Outcome, SubmitError> {
        let outcome = Outcome {
            accepted: spans.len(),
            rejected,
        };
        if spans.is_empty() {
            return Ok(outcome);
        }
        let in_flight = self
            .admission
            .admit(tenant, &spans, |service, reason, n| {
                self.metrics.admission_refused(service, reason, n);
                self.metrics.refused(n, reason);
            })
            .map_err(SubmitError::Refused)?;
        if let Some(adaptive) = &self.opts.adaptive {
            adaptive.observe(&spans);
        }
        if let Some(tail) = &self.tail {
            // Held until their trace is decided: acknowledged now, written if kept.
            let (now, early) = tail.offer(spans, Instant::now(), crate::clock::now_us());
            self.metrics.tail_held(tail.held_spans());
            drop(in_flight);
            // Traces decided early to make room are other callers' spans: their write
            // is not this caller's to fail, so it goes on in the background, retried.
            if !early.is_empty() {
                let me = self.clone();
                tokio::spawn(async move { me.write_decided_in_background(tenant, early).await });
            }
            self.write_decided(tenant, now, Vec::new()).await?;
            return Ok(outcome);
        }
        self.write_spans(tenant, spans).await?;
        drop(in_flight);
        Ok(outcome)
    }

    /// Write late spans of kept traces and the traces decided as kept; count decisions.
    async fn write_decided(
        &self,
        tenant: Tenant,
        mut spans: Vec<Span>,
        decided: Vec<Decision>,
    ) -> Result<(), SubmitError> {
        for d in decided {
            self.metrics.tail_decided(d.class.as_str(), d.keep);
            if d.keep {
                spans.extend(d.spans);
            }
        }
        if spans.is_empty() {
            return Ok(());
        }
        self.write_spans(tenant, spans).await
    }

    /// Encode and write spans: to this node's store, or in a cluster to the log.
    async fn write_spans(&self, tenant: Tenant, spans: Vec<Span>) -> Result<(), SubmitError> {
        if let Some(log) = &self.opts.log {
            return self.publish_spans(&log.0, tenant, spans).await;
        }
        let batch = self.encode(tenant, spans).await;
        self.submit_batch(batch).await
    }

    /// Write traces tail sampling decided (no caller waits on them), with retries.
    async fn write_decided_in_background(&self, tenant: Tenant, decided: Vec<Decision>) {
        let mut spans = Vec::new();
        for d in decided {
            self.metrics.tail_decided(d.class.as_str(), d.keep);
            if d.keep {
                spans.extend(d.spans);
            }
        }
        if spans.is_empty() {
            return;
        }
        // shared by the attempts: a retry encodes the same spans again, never copies them;
        // their calls between services are found once
        let spans: Arc<[Span]> = spans.into();
        let calls = Arc::new(self.edges.observe(&spans));
        let write = || async {
            if let Some(log) = &self.opts.log {
                return self.publish_spans(&log.0, tenant, spans.to_vec()).await;
            }
            let encoding = self.coming.enter();
            let batch = encode(tenant, Arc::clone(&spans), Arc::clone(&calls)).await;
            drop(encoding);
            self.submit_batch(batch).await
        };
        if let Err(e) = with_retries(&self.metrics, write).await {
            tracing::error!(error = %e, "tail-sampled traces not written after retries");
        }
    }

    /// Decide held traces as their windows pass, until `stop`; then decide the rest.
    pub async fn tail_loop(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(tail) = self.tail.clone() else {
            return;
        };
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            let now = Instant::now();
            let decided = if stopping {
                tail.drain(crate::clock::now_us())
            } else {
                tail.due(now, crate::clock::now_us())
            };
            self.metrics.tail_held(tail.held_spans());
            self.write_decided_in_background(DEFAULT_TENANT, decided)
                .await;
            if stopping {
                return;
            }
        }
    }

    /// Store one invocation record; returns once it is durable.
    /// Store one gateway call: its invocation record (when it got one) and its share of
    /// the per-minute function metrics (`monitor`), in one write, acknowledged together.
    pub async fn submit_call(&self, tenant: Tenant, call: &CallFacts) -> Result<(), SubmitError> {
        let mut batch = match &call.record {
            Some(record) => {
                let value = serde_json::to_vec(record).unwrap_or_default();
                store::encode_invocation(
                    tenant,
                    &record.service,
                    &record.function,
                    record.start_time,
                    &record.request_id,
                    &value,
                )
            }
            None => EncodedBatch::empty(tenant),
        };
        crate::monitor::add_call(
            &mut batch,
            tenant,
            call.function.as_ref(),
            call.at_us,
            &call.call,
            call.platform_concurrent,
        );
        self.submit_batch(batch).await
    }

    /// Merge an aggregate into the per-minute metrics at `levels` (`monitor::add_aggregate`).
    pub async fn submit_aggregate(
        &self,
        tenant: Tenant,
        levels: &[crate::monitor::catalog::Level],
        function: &crate::monitor::Function,
        at_us: u64,
        agg: &crate::monitor::minute::Minute,
    ) -> Result<(), SubmitError> {
        let mut batch = EncodedBatch::empty(tenant);
        crate::monitor::add_aggregate(&mut batch, tenant, levels, function, at_us, agg);
        self.submit_batch(batch).await
    }

    /// Store rows that come with their own keys (instance samples, function log lines):
    /// `(key, value)` each, in one write.
    pub async fn submit_rows(
        &self,
        tenant: Tenant,
        family: store::Rows,
        rows: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), SubmitError> {
        let mut batch = EncodedBatch::empty(tenant);
        for (k, v) in rows {
            batch.add_row(family, k, v);
        }
        self.submit_batch(batch).await
    }

    /// Queue an encoded batch for the writer and wait for its commit.
    async fn submit_batch(&self, batch: EncodedBatch) -> Result<(), SubmitError> {
        if let Some(log) = &self.opts.log {
            return self.publish_batch(&log.0, batch).await;
        }
        self.commit_local(batch).await
    }

    /// Commit an encoded batch to this node's store through the writer; returns once it
    /// is durable. (A store node's log consumers commit what they take this way.)
    pub async fn commit_local(&self, batch: EncodedBatch) -> Result<(), SubmitError> {
        let size = batch.size().clamp(1, self.opts.queue_bytes) as u32;
        let permit = match tokio::time::timeout(
            self.opts.queue_timeout,
            Arc::clone(&self.permits).acquire_many_owned(size),
        )
        .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(SubmitError::Closed),
            Err(_) => {
                self.metrics.refused(batch.span_count(), "queue_full");
                return Err(SubmitError::QueueFull);
            }
        };
        let count = batch.span_count();
        let (ack, done) = oneshot::channel();
        self.tx
            .send(writer::Request {
                batch,
                ack,
                _permit: permit,
            })
            .map_err(|_| SubmitError::Closed)?;
        match done.await {
            Ok(Ok(())) => {
                self.metrics.stored(count);
                Ok(())
            }
            Ok(Err(e)) => Err(SubmitError::Store(e)),
            Err(_) => Err(SubmitError::Closed),
        }
    }
}

impl Pipeline {
    /// Encode spans for the writer with the calls between services they complete, found
    /// in the same job (on the CPU pool when there are many).
    async fn encode<S>(&self, tenant: Tenant, spans: S) -> EncodedBatch
    where
        S: AsRef<[Span]> + Send + 'static,
    {
        // counted until encoded: the writer may wait for it (`writer`)
        let _encoding = self.coming.enter();
        let edges = Arc::clone(&self.edges);
        let size = spans.as_ref().len().saturating_mul(512);
        crate::cpu::run(size, move || {
            let calls = edges.observe(spans.as_ref());
            encode_spans(tenant, spans.as_ref(), &calls)
        })
        .await
    }
}

/// Encode spans and `calls` for the writer, on the CPU pool when there are many.
async fn encode<S>(
    tenant: Tenant,
    spans: S,
    calls: Arc<std::collections::HashMap<edges::Edge, u64>>,
) -> EncodedBatch
where
    S: AsRef<[Span]> + Send + 'static,
{
    // about what a span takes encoded, to tell a big job from a small one
    let size = spans.as_ref().len().saturating_mul(512);
    crate::cpu::run(size, move || encode_spans(tenant, spans.as_ref(), &calls)).await
}

/// What the writer stores for `spans`: the spans and their postings, the RED metrics
/// they count to (the Monitor tab's) and the `calls` between services they complete
/// (from [`edges::Edges::observe`]), in one write. `fctrace load` writes the same.
pub fn encode_spans(
    tenant: Tenant,
    spans: &[Span],
    calls: &std::collections::HashMap<edges::Edge, u64>,
) -> EncodedBatch {
    let mut batch = store::encode(tenant, spans);
    crate::monitor::red::add_spans(&mut batch, tenant, spans);
    crate::monitor::red::add_edges(&mut batch, tenant, calls);
    batch
}
