//! In a cluster (`--role ingest` or `store`), what the pipeline acknowledges goes to the
//! log instead of this node's store: a batch's spans split by the partition of their
//! trace id, each share encoded as the writer would encode it and published; a batch
//! without spans (a record, metrics, rows) goes to the partition of its first key. The
//! caller is answered once every part is in the log. The log decides nothing: the store
//! node that consumes a partition commits what it gets (`cluster::jetstream`).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Pipeline, SubmitError};
use crate::cluster::{partition_of, partition_of_bytes, Log, LogError};
use crate::model::Span;
use crate::store::keys::Tenant;
use crate::store::EncodedBatch;

/// Spans one message carries at most: a partition's share of a large request is split so
/// that each message stays well inside the log's payload limit (1 MiB by default).
const SPANS_PER_MESSAGE: usize = 1000;

/// Spans the encoder reads while this module keeps them.
struct Shared(Arc<Vec<Span>>);

impl AsRef<[Span]> for Shared {
    fn as_ref(&self) -> &[Span] {
        &self.0
    }
}

fn log_error(e: LogError) -> SubmitError {
    SubmitError::Log(Arc::new(e))
}

fn message_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl Pipeline {
    /// Publish `spans` to their partitions; returns once the log has all of them.
    pub(super) async fn publish_spans(
        &self,
        log: &Arc<dyn Log>,
        tenant: Tenant,
        spans: Vec<Span>,
    ) -> Result<(), SubmitError> {
        let count = spans.len();
        let partitions = log.partitions();
        let mut by_partition: HashMap<u32, Vec<Span>> = HashMap::new();
        for s in spans {
            by_partition
                .entry(partition_of(s.trace_id, partitions))
                .or_default()
                .push(s);
        }
        let mut parts = Vec::new();
        for (p, mut spans) in by_partition {
            while spans.len() > SPANS_PER_MESSAGE {
                let rest = spans.split_off(SPANS_PER_MESSAGE);
                parts.push((p, std::mem::replace(&mut spans, rest)));
            }
            parts.push((p, spans));
        }
        let publishes = parts
            .into_iter()
            .map(|(p, spans)| self.publish_share(log, tenant, p, spans));
        futures_util::future::try_join_all(publishes).await?;
        self.metrics.stored(count);
        Ok(())
    }

    /// Encode and publish one partition's share, halving it while a message would be
    /// over the log's limit (a share of one span that is still over is refused: 413).
    async fn publish_share(
        &self,
        log: &Arc<dyn Log>,
        tenant: Tenant,
        partition: u32,
        spans: Vec<Span>,
    ) -> Result<(), SubmitError> {
        let mut todo = vec![spans];
        while let Some(spans) = todo.pop() {
            // shared with the encoder, and taken back whole when the share must be split
            let spans = Arc::new(spans);
            let batch = self.encode(tenant, Shared(Arc::clone(&spans))).await;
            let wire = batch.to_wire();
            if wire.len() > log.max_payload() && spans.len() > 1 {
                let mut spans = Arc::try_unwrap(spans).unwrap_or_else(|a| (*a).clone());
                let rest = spans.split_off(spans.len() / 2);
                todo.push(rest);
                todo.push(spans);
                continue;
            }
            log.publish(partition, message_id(), wire)
                .await
                .map_err(log_error)?;
        }
        Ok(())
    }

    /// Publish a batch without spans to the partition of its first key.
    pub(super) async fn publish_batch(
        &self,
        log: &Arc<dyn Log>,
        batch: EncodedBatch,
    ) -> Result<(), SubmitError> {
        let wire = batch.to_wire();
        let partition = partition_of_bytes(batch.first_key().unwrap_or_default(), log.partitions());
        log.publish(partition, message_id(), wire)
            .await
            .map_err(log_error)?;
        self.metrics.stored(batch.span_count());
        Ok(())
    }
}
