//! The cluster: how several fctrace processes share one store through a distributed log
//! (NATS JetStream, `jetstream`), each in a role (`--role`).
//!
//! - `all` (the default): one process does everything, as without a cluster.
//! - `ingest`: takes spans (and runs the gateway) like a single node, but instead of
//!   writing its store it encodes each partition's share of a request exactly as the
//!   writer would and publishes it to the log (`fctrace.spans.<partition>`); the client
//!   is answered once the log acknowledged every part.
//! - `store`: owns partitions through leases (`leases`), consumes each owned partition
//!   and commits each message to its own RocksDB before acknowledging it, and answers
//!   query nodes for them; it also takes spans, and publishes them like an ingest node.
//! - `query`: reads the partition map and asks the owners (`fanout`).
//!
//! A span's partition is its trace id's hash modulo `--partitions`, so a trace lives in
//! one partition. This module owns the roles, the partition function, the [`Log`]
//! interface and its JetStream implementation, leases and a node's loops (`node`), and
//! the query node's reads; the pipeline decides what to publish and the store what a
//! message holds (`store::wire`).

pub mod fanout;
pub mod jetstream;
pub mod leases;
pub mod metrics;
pub mod node;

use std::future::Future;
use std::pin::Pin;

use crate::model::TraceId;

/// What a process does in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    All,
    Ingest,
    Store,
    Query,
}

/// The cluster's settings (`--nats-url`, `--partitions`, `--replicas`, `--node-id`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    pub nats_urls: Vec<String>,
    /// Fixed for a cluster's life: a trace's partition depends on it.
    pub partitions: u32,
    /// Copies of the log JetStream keeps (at most the NATS servers there are).
    pub replicas: usize,
    pub node_id: String,
    /// Where a store node serves query nodes (`server::internal_api`).
    pub internal_addr: String,
    /// Where query nodes reach it, when not the bound address.
    pub advertise_addr: Option<String>,
}

/// The partition of `trace` among `partitions`.
pub fn partition_of(trace: TraceId, partitions: u32) -> u32 {
    let h = xxhash_rust::xxh3::xxh3_64(&trace.to_bytes());
    (h % u64::from(partitions.max(1))) as u32
}

/// The partition of a message that belongs to no trace (a record, metrics, rows): by
/// the hash of its first key, so one function's data spreads over the partitions.
pub fn partition_of_bytes(bytes: &[u8], partitions: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(bytes) % u64::from(partitions.max(1))) as u32
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    #[error("a message of {size} bytes is over the log's limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

pub type LogFuture<'a> = Pin<Box<dyn Future<Output = Result<(), LogError>> + Send + 'a>>;

/// The log between ingest and store nodes: JetStream today, a Kafka backend could
/// follow behind the same two calls.
pub trait Log: Send + Sync {
    /// Publish `payload` to `partition`, returning once the log has it durably (as the
    /// log defines it); `id` makes a retried publish a no-op.
    fn publish(&self, partition: u32, id: String, payload: Vec<u8>) -> LogFuture<'_>;

    /// The number of partitions.
    fn partitions(&self) -> u32;

    /// The largest payload one message may carry.
    fn max_payload(&self) -> usize;
}

/// A [`Log`] to hand around (the pipeline's options are `Debug`).
#[derive(Clone)]
pub struct LogHandle(pub std::sync::Arc<dyn Log>);

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogHandle")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_has_one_partition_and_traces_spread() {
        let p = |t: u128| partition_of(TraceId(t), 16);
        assert_eq!(p(42), p(42));
        let mut seen = [0u32; 16];
        for t in 0..16_000u128 {
            seen[p(t * 7919) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(partition_of(TraceId(5), 1), 0);
        assert_eq!(partition_of(TraceId(5), 0), 0);
    }
}
