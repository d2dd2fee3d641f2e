//! Starting a node's part in a cluster (`--role`, `crate::cluster`): the connection to
//! the log before the pipeline starts (a node that cannot reach NATS at start does not
//! start), and a store node's consumers, one per partition, which commit what they take
//! through this node's writer.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::ServeError;
use crate::cluster::jetstream::JetStream;
use crate::cluster::Role;
use crate::config::Settings;
use crate::pipeline::Pipeline;

/// How long a node waits for NATS at start.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// The log, for a node in a cluster role.
pub async fn connect(
    settings: &Settings,
    metrics: &Arc<crate::telemetry::Metrics>,
) -> Result<Option<Arc<JetStream>>, ServeError> {
    let Some(cluster) = &settings.cluster else {
        return Ok(None);
    };
    let js = JetStream::connect(
        cluster,
        settings.retention,
        CONNECT_PATIENCE,
        Arc::clone(metrics),
    )
    .await
    .map_err(|e| ServeError::Cluster(e.to_string()))?;
    tracing::info!(
        role = ?settings.role,
        node = %cluster.node_id,
        partitions = cluster.partitions,
        "joined the cluster's log"
    );
    Ok(Some(js))
}

/// A store node's consumers: every partition (leases that share them between store
/// nodes are not built yet, docs/cluster.md), until `stop`.
pub fn consume(
    settings: &Settings,
    log: Option<&Arc<JetStream>>,
    pipeline: &Pipeline,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let (Some(js), Some(cluster), Role::Store) = (log, &settings.cluster, settings.role) else {
        return Vec::new();
    };
    js.metrics().cluster().consuming(cluster.partitions);
    (0..cluster.partitions)
        .map(|p| {
            let pipeline = pipeline.clone();
            let commit = move |batch| {
                let pipeline = pipeline.clone();
                async move {
                    pipeline
                        .commit_local(batch)
                        .await
                        .map_err(|e| e.to_string())
                }
            };
            tokio::spawn(Arc::clone(js).consume(p, commit, stop.clone()))
        })
        .collect()
}
