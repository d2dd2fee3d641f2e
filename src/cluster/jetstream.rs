//! The log on NATS JetStream: one stream (`FCTRACE_SPANS`, file storage, `--replicas`
//! copies, messages kept for the retention window, publishes de-duplicated by message id
//! over two minutes) with a subject per partition, `fctrace.spans.<p>`.
//!
//! Publishing waits for JetStream's acknowledgement (the stream leader and a quorum of
//! replicas have the message; see `docs/cluster.md` on what the server's own fsync
//! interval means for that). A store node consumes each partition it owns with a durable
//! pull consumer of its own (`<node id>-p<partition>`, from the stream's first message,
//! so a new owner replays the partition into its empty store), commits each message and
//! only then acknowledges it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream, AckKind};
use futures_util::StreamExt;

use super::{ClusterSettings, Log, LogError, LogFuture};
use crate::store::EncodedBatch;

pub const STREAM: &str = "FCTRACE_SPANS";
/// How long a publish may wait for JetStream's acknowledgement before it counts as
/// unavailable (the client is answered 503 and may retry).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a message delivered but not acknowledged (its node died) waits before it is
/// delivered again: well above a commit's time, short enough for a restart to catch up.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How long a message that could not be committed waits before it is delivered again.
const REDELIVER_AFTER: Duration = Duration::from_secs(1);

fn subject(partition: u32) -> String {
    format!("fctrace.spans.{partition}")
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

/// A connection to the cluster's stream.
pub struct JetStream {
    js: jetstream::Context,
    client: async_nats::Client,
    settings: ClusterSettings,
    metrics: Arc<crate::telemetry::Metrics>,
    /// Per partition: its consumer has taken everything the stream held when it last
    /// looked (a store node serves queries once every partition has caught up).
    caught_up: Vec<std::sync::atomic::AtomicBool>,
}

impl JetStream {
    /// Connect and make sure the stream exists (creating it the first time), retrying
    /// for up to `patience` while the servers come up.
    pub async fn connect(
        settings: &ClusterSettings,
        retention: Duration,
        patience: Duration,
        metrics: Arc<crate::telemetry::Metrics>,
    ) -> Result<Arc<JetStream>, LogError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match Self::try_connect(settings, retention, Arc::clone(&metrics)).await {
                Ok(js) => return Ok(Arc::new(js)),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "NATS not ready; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    async fn try_connect(
        settings: &ClusterSettings,
        retention: Duration,
        metrics: Arc<crate::telemetry::Metrics>,
    ) -> Result<JetStream, LogError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("fctrace {}", settings.node_id))
            .connection_timeout(Duration::from_secs(2))
            .connect(settings.nats_urls.clone())
            .await
            .map_err(unavailable)?;
        let js = jetstream::new(client.clone());
        js.get_or_create_stream(stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["fctrace.spans.*".to_owned()],
            storage: stream::StorageType::File,
            num_replicas: settings.replicas.max(1),
            max_age: retention,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
        Ok(JetStream {
            js,
            client,
            settings: settings.clone(),
            metrics,
            caught_up: (0..settings.partitions)
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
        })
    }

    /// Whether the connection to NATS is up.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The stream's context (the lease bucket lives beside the stream).
    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// The settings this node joined with.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// The partitions whose consumers have caught up since they started.
    pub fn caught_up(&self) -> std::collections::BTreeSet<u32> {
        (0..self.settings.partitions)
            .filter(|p| self.is_caught_up(*p))
            .collect()
    }

    /// Forget that `partition` caught up (its consumer stopped or is starting again).
    pub fn reset(&self, partition: u32) {
        if let Some(c) = self.caught_up.get(partition as usize) {
            c.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn is_caught_up(&self, partition: u32) -> bool {
        self.caught_up
            .get(partition as usize)
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn mark_caught_up(&self, partition: u32) {
        if let Some(c) = self.caught_up.get(partition as usize) {
            c.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The daemon's metrics (the cluster's series are in them).
    pub fn metrics(&self) -> &crate::telemetry::Metrics {
        &self.metrics
    }

    /// Consume `partition` until `stop`, handing each message's batch to `commit` and
    /// acknowledging it once `commit` succeeded (a failed commit is delivered again a
    /// second later; a message that is no batch is logged and dropped from the log).
    pub async fn consume<F, Fut>(
        self: Arc<Self>,
        partition: u32,
        commit: F,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) where
        F: Fn(EncodedBatch) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let name = format!("{}-p{partition}", self.settings.node_id);
        loop {
            if *stop.borrow() {
                return;
            }
            let consumed = tokio::select! {
                r = self.consume_once(&name, partition, &commit) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            if let Err(e) = consumed {
                tracing::warn!(error = %e, partition, "consuming the log failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }

    async fn consume_once<F, Fut>(
        &self,
        name: &str,
        partition: u32,
        commit: &F,
    ) -> Result<(), LogError>
    where
        F: Fn(EncodedBatch) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let stream = self.js.get_stream(STREAM).await.map_err(unavailable)?;
        let mut consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                name,
                consumer::pull::Config {
                    durable_name: Some(name.to_owned()),
                    filter_subject: subject(partition),
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_policy: consumer::AckPolicy::Explicit,
                    // a message delivered to a node that died comes again after this
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .map_err(unavailable)?;
        let info = consumer.info().await.map_err(unavailable)?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            self.mark_caught_up(partition);
        }
        let mut messages = consumer.messages().await.map_err(unavailable)?;
        while let Some(m) = messages.next().await {
            let m = m.map_err(unavailable)?;
            let cluster = self.metrics.cluster();
            let pending = m.info().map(|i| i.pending).ok();
            if let Some(p) = pending {
                cluster.pending(partition, p);
            }
            let batch = match EncodedBatch::from_wire(&m.payload) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, partition, "a log message is no batch; dropped");
                    cluster.committed("malformed");
                    m.ack_with(AckKind::Term).await.map_err(unavailable)?;
                    continue;
                }
            };
            match commit(batch).await {
                Ok(()) => {
                    cluster.committed("ok");
                    if self.is_caught_up(partition) {
                        m.ack().await.map_err(unavailable)?;
                    } else {
                        // while catching up, an ack the server confirmed, so the
                        // consumer's count below no longer includes this message
                        m.double_ack().await.map_err(unavailable)?;
                        if pending == Some(0) {
                            let info = consumer.info().await.map_err(unavailable)?;
                            if info.num_pending == 0 && info.num_ack_pending == 0 {
                                self.mark_caught_up(partition);
                            }
                        }
                    }
                }
                Err(e) => {
                    cluster.committed("failed");
                    tracing::warn!(error = %e, partition, "a log message was not committed; it comes again");
                    m.ack_with(AckKind::Nak(Some(REDELIVER_AFTER)))
                        .await
                        .map_err(unavailable)?;
                }
            }
        }
        Err(LogError::Unavailable(
            "the consumer's messages ended".into(),
        ))
    }
}

impl Log for JetStream {
    fn publish(&self, partition: u32, id: String, payload: Vec<u8>) -> LogFuture<'_> {
        Box::pin(async move {
            let cluster = self.metrics.cluster();
            let limit = self.max_payload();
            if payload.len() > limit {
                cluster.published("too_large", 0.0);
                return Err(LogError::TooLarge {
                    size: payload.len(),
                    limit,
                });
            }
            let started = std::time::Instant::now();
            let publish = PublishMessage::build()
                .payload(payload.into())
                .message_id(id);
            let ack = tokio::time::timeout(PUBLISH_TIMEOUT, async {
                self.js
                    .send_publish(subject(partition), publish)
                    .await
                    .map_err(unavailable)?
                    .await
                    .map_err(unavailable)
            })
            .await
            .map_err(|_| LogError::Unavailable("no acknowledgement in time".into()))
            .and_then(|r| r);
            let ack = match ack {
                Ok(a) => a,
                Err(e) => {
                    cluster.published("unavailable", 0.0);
                    return Err(e);
                }
            };
            cluster.published("ok", started.elapsed().as_secs_f64());
            if ack.duplicate {
                tracing::debug!(partition, "a publish was a duplicate");
            }
            Ok(())
        })
    }

    fn partitions(&self) -> u32 {
        self.settings.partitions
    }

    fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }
}
