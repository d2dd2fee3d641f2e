//! The cluster's series on `/metrics`: publish latency and outcomes on every node that
//! publishes, and on store nodes what the consumers committed, how many messages each
//! partition's consumer still has to take (its lag), how many partitions it consumes and
//! which it owns (holds the lease of, so query nodes ask it for them).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: u32,
}

pub struct ClusterMetrics {
    publish_seconds: Histogram,
    published: Family<ResultLabel, Counter>,
    committed: Family<ResultLabel, Counter>,
    pending: Family<PartitionLabel, Gauge>,
    partitions: Gauge,
    owned: Family<PartitionLabel, Gauge>,
    owned_count: Gauge,
}

impl ClusterMetrics {
    /// The series, registered under `registry` (the daemon's `fctrace_` one).
    pub fn register(registry: &mut Registry) -> ClusterMetrics {
        let m = ClusterMetrics {
            publish_seconds: Histogram::new(exponential_buckets(0.0002, 2.0, 16)),
            published: Family::default(),
            committed: Family::default(),
            pending: Family::default(),
            partitions: Gauge::default(),
            owned: Family::default(),
            owned_count: Gauge::default(),
        };
        registry.register(
            "cluster_publish_seconds",
            "From publishing a message to the log to its acknowledgement",
            m.publish_seconds.clone(),
        );
        registry.register(
            "cluster_messages_published",
            "Messages published to the log, by result (ok, unavailable, too_large)",
            m.published.clone(),
        );
        registry.register(
            "cluster_messages_committed",
            "Log messages a store node took, by result (ok, failed: delivered again, malformed)",
            m.committed.clone(),
        );
        registry.register(
            "cluster_consumer_pending",
            "Messages of a partition this store node has yet to take (its lag), as of the last one taken",
            m.pending.clone(),
        );
        registry.register(
            "cluster_partitions_consumed",
            "Partitions this store node consumes",
            m.partitions.clone(),
        );
        registry.register(
            "cluster_partition_owned",
            "1 for each partition this store node holds the lease of (query nodes read it here), 0 for one it gave up",
            m.owned.clone(),
        );
        registry.register(
            "cluster_partitions_owned",
            "Partitions this store node holds the lease of",
            m.owned_count.clone(),
        );
        m
    }

    pub fn published(&self, result: &'static str, seconds: f64) {
        self.published.get_or_create(&ResultLabel { result }).inc();
        if result == "ok" {
            self.publish_seconds.observe(seconds);
        }
    }

    pub fn committed(&self, result: &'static str) {
        self.committed.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn pending(&self, partition: u32, pending: u64) {
        self.pending
            .get_or_create(&PartitionLabel { partition })
            .set(pending.min(i64::MAX as u64) as i64);
    }

    pub fn consuming(&self, partitions: usize) {
        self.partitions.set(partitions as i64);
    }

    /// The partitions this node owns now, of `before` (which it owned until now).
    pub fn owning(
        &self,
        now: &std::collections::BTreeSet<u32>,
        before: &std::collections::BTreeSet<u32>,
    ) {
        for &partition in before.difference(now) {
            self.owned
                .get_or_create(&PartitionLabel { partition })
                .set(0);
        }
        for &partition in now {
            self.owned
                .get_or_create(&PartitionLabel { partition })
                .set(1);
        }
        self.owned_count.set(now.len() as i64);
    }
}
