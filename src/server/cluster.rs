//! Starting a node's part in a cluster (`--role`, `crate::cluster`): the connection to
//! the log before the pipeline starts (a node that cannot reach NATS at start does not
//! start); for a store node, its internal API for query nodes and the loop that owns
//! and consumes partitions, committing what it takes through this node's writer; for a
//! query node, the loop that follows the partition map and the query side that reads
//! through it; and the routes a query node does not serve yet.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

use super::ServeError;
use crate::cluster::fanout::Fanout;
use crate::cluster::jetstream::JetStream;
use crate::cluster::node::Node;
use crate::cluster::Role;
use crate::config::Settings;
use crate::pipeline::Pipeline;
use crate::query::Query;
use crate::store::Store;

/// How long a node waits for NATS at start.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// The node's part in the cluster, for a node in a cluster role.
pub async fn connect(
    settings: &Settings,
    metrics: &Arc<crate::telemetry::Metrics>,
) -> Result<Option<Arc<Node>>, ServeError> {
    let Some(cluster) = &settings.cluster else {
        return Ok(None);
    };
    let failed = |e: crate::cluster::LogError| ServeError::Cluster(e.to_string());
    let js = JetStream::connect(
        cluster,
        settings.retention,
        CONNECT_PATIENCE,
        Arc::clone(metrics),
    )
    .await
    .map_err(failed)?;
    let node = Node::new(js, settings.role).await.map_err(failed)?;
    tracing::info!(
        role = ?settings.role,
        node = %cluster.node_id,
        partitions = cluster.partitions,
        "joined the cluster"
    );
    Ok(Some(node))
}

/// The query side: on a query node it reads the store nodes, elsewhere this node's store.
pub fn query(settings: &Settings, node: Option<&Arc<Node>>, store: &Arc<Store>) -> Query {
    match (settings.role, node) {
        (Role::Query, Some(node)) => Query::with_remote(
            Arc::clone(store),
            Arc::new(Fanout::new(
                Arc::clone(node),
                tokio::runtime::Handle::current(),
            )),
        ),
        _ => Query::new(Arc::clone(store)),
    }
}

/// The node's loop: a store node's partitions (heartbeating as `internal`, where its
/// internal API listens), a query node's map; none for other roles.
pub fn run(
    settings: &Settings,
    node: Option<&Arc<Node>>,
    internal: Option<String>,
    pipeline: &Pipeline,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let node = Arc::clone(node?);
    match settings.role {
        Role::Store => {
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
            let addr = internal?;
            Some(tokio::spawn(node.serve_partitions(
                addr,
                commit,
                stop.clone(),
            )))
        }
        Role::Query => Some(tokio::spawn(node.follow(stop.clone()))),
        Role::All | Role::Ingest => None,
    }
}

/// The address query nodes reach a store node's internal API at.
pub fn advertised(settings: &Settings, bound: Option<std::net::SocketAddr>) -> Option<String> {
    let cluster = settings.cluster.as_ref()?;
    if let Some(a) = &cluster.advertise_addr {
        return Some(a.clone());
    }
    let mut addr = bound?;
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    Some(addr.to_string())
}

/// The query listener's paths a query node answers: traces, services, operations,
/// dependencies, function metrics, RED metrics, invocation records, function logs and
/// instance samples (read from the store nodes), alarms (evaluated here, over them),
/// the functions of its own `--functions` file, the UI and the node's own endpoints.
fn served_by_query_node(path: &str) -> bool {
    const EXACT: [&str; 17] = [
        "/",
        "/api/services",
        "/api/operations",
        "/api/traces",
        "/api/dependencies",
        "/api/v1/traces",
        "/api/v3/services",
        "/api/v3/operations",
        "/api/v3/traces",
        "/api/v3/trace-summaries",
        "/metrics",
        "/api/v1/invocations",
        "/api/v1/logs",
        "/api/v1/metrics",
        "/api/v1/functions",
        "/api/v1/instances/metrics",
        "/api/v1/alarms",
    ];
    EXACT.contains(&path)
        || ["/healthz", "/readyz"].contains(&path)
        || path.starts_with("/ui/")
        || path.starts_with("/api/v1/invocations/")
        || path.starts_with("/api/v1/metrics/")
        || (path.starts_with("/api/v1/instances/") && path.ends_with("/metrics"))
        || path.starts_with("/api/metrics/")
        || path.starts_with("/api/traces/")
        || path.starts_with("/api/v3/traces/")
        || (path.starts_with("/api/services/") && path.ends_with("/operations"))
        || (path.starts_with("/api/v1/traces/") && path.ends_with("/tree"))
}

/// On a query node, the query listener refuses what lives elsewhere (live instances:
/// the gateway's, on an ingest node; admin calls: a store's) instead of answering from
/// its own empty store.
pub async fn query_node_routes(request: Request, next: Next) -> Response {
    if served_by_query_node(request.uri().path()) {
        return next.run(request).await;
    }
    refuse(
        "a query node does not serve this: live instances are the gateway's (ask the ingest node running it), admin calls a store node's (docs/cluster.md)",
    )
}

/// On an ingest or store node of a cluster, alarms are not evaluated (they would see
/// some partitions, or none): the query nodes evaluate and show them.
pub async fn no_alarms_here(request: Request, next: Next) -> Response {
    if request.uri().path() != "/api/v1/alarms" {
        return next.run(request).await;
    }
    refuse("in a cluster, alarms are evaluated and shown by query nodes (docs/cluster.md)")
}

fn refuse(why: &'static str) -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        axum::Json(crate::query::jaeger_json::Envelope::error(501, why)),
    )
        .into_response()
}
