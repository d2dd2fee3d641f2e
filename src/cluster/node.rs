//! A node's live part in the cluster: its connection to the log, the lease bucket, and
//! the loop its role runs. A store node heartbeats, follows [`leases::plan`] (claims,
//! renewals, releases) and starts or stops one consumer per partition to match; a query
//! node re-reads the partition map every heartbeat. Both keep a reason they are not
//! ready, for `/readyz`. What a consumer does with a message is the caller's `commit`;
//! how a query node reads the owners is `fanout`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::jetstream::JetStream;
use super::leases::{self, Lease, Leases, Member, PartitionMap};
use super::LogError;
use crate::store::EncodedBatch;

pub struct Node {
    pub log: Arc<JetStream>,
    leases: Leases,
    /// Why this node is not ready, or `None` when it is.
    unready: Mutex<Option<String>>,
    /// The partition map as last read.
    map: Mutex<Arc<PartitionMap>>,
}

/// A running consumer: its stop signal and its task.
type Consumer = (watch::Sender<bool>, JoinHandle<()>);

impl Node {
    pub async fn new(log: Arc<JetStream>, role: super::Role) -> Result<Arc<Node>, LogError> {
        let s = log.settings();
        let leases = Leases::open(log.context(), s.replicas, s.partitions).await?;
        // an ingest node is ready once connected; the others once their loop has run
        let joining = (role != super::Role::Ingest).then(|| "joining the cluster".to_owned());
        Ok(Arc::new(Node {
            log,
            leases,
            unready: Mutex::new(joining),
            map: Mutex::new(Arc::new(PartitionMap::default())),
        }))
    }

    /// Why this node is not ready yet (`None`: ready).
    pub fn unready(&self) -> Option<String> {
        if !self.log.is_connected() {
            return Some("not connected to the cluster's log".into());
        }
        self.unready.lock().ok().and_then(|u| u.clone())
    }

    fn set_unready(&self, why: Option<String>) {
        if let Ok(mut u) = self.unready.lock() {
            *u = why;
        }
    }

    /// The partition map as last read (a query node routes by it).
    pub fn map(&self) -> Arc<PartitionMap> {
        self.map.lock().map(|m| Arc::clone(&m)).unwrap_or_default()
    }

    fn set_map(&self, map: PartitionMap) {
        if let Ok(mut m) = self.map.lock() {
            *m = Arc::new(map);
        }
    }

    /// A query node's loop: read the map every heartbeat until `stop`.
    pub async fn follow(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(leases::HEARTBEAT);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match self.leases.read().await {
                Ok(map) => {
                    self.set_map(map);
                    self.set_unready(None);
                }
                Err(e) => tracing::warn!(error = %e, "reading the partition map failed"),
            }
        }
    }

    /// A store node's loop until `stop`: heartbeat as `addr` (its internal API), own
    /// and consume partitions as [`leases::plan`] says, handing each message to
    /// `commit`.
    pub async fn serve_partitions<F, Fut>(
        self: Arc<Self>,
        addr: String,
        commit: F,
        mut stop: watch::Receiver<bool>,
    ) where
        F: Fn(EncodedBatch) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let mut consumers: BTreeMap<u32, Consumer> = BTreeMap::new();
        let mut owned = BTreeSet::new();
        let mut joined = false;
        let mut tick = tokio::time::interval(leases::HEARTBEAT);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            match self.step(&addr, &commit, &mut consumers).await {
                Ok(now) => {
                    self.log.metrics().cluster().owning(&now, &owned);
                    owned = now;
                    joined = true;
                }
                Err(e) => tracing::warn!(error = %e, "a lease heartbeat failed; retrying"),
            }
            self.log.metrics().cluster().consuming(consumers.len());
            if joined {
                let caught = self.log.caught_up();
                let behind: Vec<u32> = consumers
                    .keys()
                    .filter(|p| !caught.contains(p))
                    .copied()
                    .collect();
                self.set_unready(
                    (!behind.is_empty()).then(|| format!("catching up on partitions {behind:?}")),
                );
            }
        }
        for (_, (tx, task)) in consumers {
            let _ = tx.send(true);
            let _ = task.await;
        }
    }

    /// One heartbeat: returns the partitions this node owns after it.
    async fn step<F, Fut>(
        &self,
        addr: &str,
        commit: &F,
        consumers: &mut BTreeMap<u32, Consumer>,
    ) -> Result<BTreeSet<u32>, LogError>
    where
        F: Fn(EncodedBatch) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let me = self.log.settings().node_id.clone();
        let caught: BTreeSet<u32> = self
            .log
            .caught_up()
            .into_iter()
            .filter(|p| consumers.contains_key(p))
            .collect();
        self.leases
            .heartbeat(&Member {
                node: me.clone(),
                addr: addr.to_owned(),
                ready: caught.clone(),
            })
            .await?;
        let map = self.leases.read().await?;
        let plan = leases::plan(&me, &map, &caught);
        self.set_map(map);
        let lease = Lease {
            node: me,
            addr: addr.to_owned(),
        };
        let mut owned = BTreeSet::new();
        for (p, rev) in plan.release {
            self.leases.release(p, rev).await?;
            tracing::info!(partition = p, "gave partition up to its caught-up owner");
        }
        for (p, rev) in plan.renew {
            match self.leases.renew(p, &lease, rev).await? {
                Some(_) => {
                    owned.insert(p);
                }
                None => tracing::warn!(partition = p, "lost the lease of a partition"),
            }
        }
        for p in plan.claim {
            if self.leases.claim(p, &lease).await?.is_some() {
                tracing::info!(partition = p, "serving partition");
                owned.insert(p);
            }
        }
        let stale: Vec<u32> = consumers
            .keys()
            .filter(|p| !plan.consume.contains(p) && !owned.contains(p))
            .copied()
            .collect();
        for p in stale {
            if let Some((tx, task)) = consumers.remove(&p) {
                let _ = tx.send(true);
                let _ = task.await;
                self.log.reset(p);
            }
        }
        for p in plan.consume.iter().chain(&owned) {
            if consumers.contains_key(p) {
                continue;
            }
            self.log.reset(*p);
            let (tx, rx) = watch::channel(false);
            let task = tokio::spawn(Arc::clone(&self.log).consume(*p, commit.clone(), rx));
            consumers.insert(*p, (tx, task));
        }
        Ok(owned)
    }
}
