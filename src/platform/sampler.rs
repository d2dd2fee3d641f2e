//! Instance metrics: every `--instance-metrics-interval` (10 s) each live instance is
//! sampled, and each function gets the largest of its instances' values at that tick.
//!
//! How a process is measured: CPU from `/proc/PID/stat` (user + system ticks used in
//! the interval, as a percentage of one core), memory from `VmRSS` in `/proc/PID/status`,
//! network as the bytes the gateway sent the instance (request bodies: `rx`) and
//! received from it (response bodies: `tx`): a process has no traffic counters of its
//! own outside a network namespace. A `url` function has no process: its CPU and memory
//! are 0. Samples are written through the pipeline (acknowledged writes) into the metrics
//! family (`store::keys::instance_sample_key`); the latest of each live instance is also
//! kept here for `GET /api/v1/instances`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::instance::{cpu_ticks, rss_bytes, Instance};
use super::Platform;
use crate::clock::now_us;
use crate::pipeline::with_retries;
use crate::store::{keys, StoreError};

/// One instance (or, for a function's series, the largest over its instances) at one
/// tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSample {
    /// ms since the epoch
    pub timestamp: u64,
    #[serde(rename = "instanceID")]
    pub instance_id: String,
    pub service_name: String,
    pub function_name: String,
    pub qualifier: String,
    pub hostname: String,
    pub ip_address: String,
    /// Of one core: 100 is a core busy for the whole interval.
    pub cpu_percent: f64,
    #[serde(rename = "memoryUsageMB")]
    pub memory_usage_mb: f64,
    #[serde(rename = "memoryLimitMB")]
    pub memory_limit_mb: u64,
    pub memory_usage_percent: f64,
    /// Bytes in the interval, and since the instance started.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_total_bytes: u64,
    pub tx_total_bytes: u64,
    pub concurrent_requests: u64,
    /// The function's tenant: the key it is stored under, never shown.
    #[serde(skip)]
    pub tenant: keys::Tenant,
}

impl InstanceSample {
    /// Fold `other` into a function's view: the larger of each value.
    fn max_with(&mut self, other: &InstanceSample) {
        self.cpu_percent = self.cpu_percent.max(other.cpu_percent);
        self.memory_usage_mb = self.memory_usage_mb.max(other.memory_usage_mb);
        self.memory_limit_mb = self.memory_limit_mb.max(other.memory_limit_mb);
        self.memory_usage_percent = self.memory_usage_percent.max(other.memory_usage_percent);
        self.rx_bytes = self.rx_bytes.max(other.rx_bytes);
        self.tx_bytes = self.tx_bytes.max(other.tx_bytes);
        self.rx_total_bytes = self.rx_total_bytes.max(other.rx_total_bytes);
        self.tx_total_bytes = self.tx_total_bytes.max(other.tx_total_bytes);
        self.concurrent_requests = self.concurrent_requests.max(other.concurrent_requests);
    }
}

/// What the previous tick saw of an instance, for the deltas.
struct Seen {
    at: Instant,
    ticks: u64,
    rx: u64,
    tx: u64,
}

/// The sampler's memory: the previous reading and the latest sample of each live
/// instance (dead ones are dropped at the next tick).
#[derive(Default)]
pub struct Samples {
    seen: HashMap<String, Seen>,
    latest: HashMap<String, InstanceSample>,
}

fn ticks_per_second() -> f64 {
    // USER_HZ: 100 on every Linux this runs on; sysconf would need a crate for one number
    100.0
}

impl Platform {
    /// Sample every live instance each `interval` until `stop` says so.
    pub async fn sample_loop(
        self: Arc<Self>,
        interval: Duration,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        crate::clock::every(interval, stop, || async {
            let this = Arc::clone(&self);
            // /proc reads: off the async threads
            if let Ok((instances, functions)) =
                tokio::task::spawn_blocking(move || this.sample_now()).await
            {
                self.store_samples(instances, functions);
            }
        })
        .await
    }

    /// One tick: a sample per live instance and the largest per function.
    fn sample_now(&self) -> (Vec<InstanceSample>, Vec<InstanceSample>) {
        let now = Instant::now();
        let timestamp = now_us() / 1000;
        let mut state = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut alive: Vec<String> = Vec::new();
        let (mut instances, mut functions) = (Vec::new(), Vec::new());
        for pool in self.pools.values() {
            let spec = &pool.spec;
            let mut function: Option<InstanceSample> = None;
            for i in pool.live() {
                let s = sample(&mut state.seen, &i, now, timestamp, spec.memory_mb, |s| {
                    s.tenant = spec.tenant_id;
                    s.service_name = spec.service.clone();
                    s.function_name = spec.name.clone();
                    s.qualifier = super::QUALIFIER.into();
                });
                match &mut function {
                    Some(f) => f.max_with(&s),
                    None => {
                        function = Some(InstanceSample {
                            instance_id: String::new(),
                            hostname: String::new(),
                            ip_address: String::new(),
                            ..s.clone()
                        })
                    }
                }
                alive.push(i.id.clone());
                state.latest.insert(i.id.clone(), s.clone());
                instances.push(s);
            }
            functions.extend(function);
        }
        state.seen.retain(|id, _| alive.contains(id));
        state.latest.retain(|id, _| alive.contains(id));
        (instances, functions)
    }

    /// Write a tick's samples in the background (with retries, like records).
    fn store_samples(&self, instances: Vec<InstanceSample>, functions: Vec<InstanceSample>) {
        if instances.is_empty() {
            return;
        }
        // One write per tenant: rows carry their tenant in the key, a write in its batch.
        type Row = (Vec<u8>, Vec<u8>);
        let mut rows: HashMap<keys::Tenant, Vec<Row>> = HashMap::new();
        for s in &instances {
            let series = keys::metric_series(s.tenant, keys::INSTANCE_SAMPLES, &[&s.instance_id]);
            rows.entry(s.tenant)
                .or_default()
                .push((keys::metric_key(&series, s.timestamp), to_json(s)));
        }
        for s in &functions {
            let series = keys::metric_series(
                s.tenant,
                keys::FUNCTION_SAMPLES,
                &[&s.service_name, &s.function_name],
            );
            rows.entry(s.tenant)
                .or_default()
                .push((keys::metric_key(&series, s.timestamp), to_json(s)));
        }
        for (tenant, rows) in rows {
            let pipeline = self.pipeline.clone();
            let metrics = Arc::clone(&self.metrics);
            tokio::spawn(async move {
                let write = || pipeline.submit_rows(tenant, crate::store::Rows::Samples, &rows);
                if let Err(e) = with_retries(&metrics, write).await {
                    tracing::error!(error = %e, "instance samples not stored after retries");
                }
            });
        }
    }

    /// The latest sample of each of `tenant`'s live instances of `service`/`function`
    /// (either may be left out).
    pub fn live_instances(
        &self,
        tenant: keys::Tenant,
        service: Option<&str>,
        function: Option<&str>,
    ) -> Vec<InstanceSample> {
        let state = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<InstanceSample> = state
            .latest
            .values()
            .filter(|s| s.tenant == tenant)
            .filter(|s| service.is_none_or(|v| s.service_name == v))
            .filter(|s| function.is_none_or(|v| s.function_name == v))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        out
    }
}

fn to_json(s: &InstanceSample) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_default()
}

/// The samples of one instance (`function` `None`) or a function's largest, in
/// `[start_ms, end_ms]`, oldest first.
pub fn read_samples(
    store: &dyn crate::store::MetricSource,
    tenant: keys::Tenant,
    instance: Option<&str>,
    function: Option<(&str, &str)>,
    start_ms: u64,
    end_ms: u64,
) -> Result<Vec<InstanceSample>, StoreError> {
    let series = match (instance, function) {
        (Some(id), _) => keys::metric_series(tenant, keys::INSTANCE_SAMPLES, &[id]),
        (None, Some((service, function))) => {
            keys::metric_series(tenant, keys::FUNCTION_SAMPLES, &[service, function])
        }
        (None, None) => return Ok(Vec::new()),
    };
    Ok(store
        .metric_values(&series, start_ms, end_ms)?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect())
}

fn sample(
    seen: &mut HashMap<String, Seen>,
    i: &Instance,
    now: Instant,
    timestamp: u64,
    memory_limit_mb: u64,
    name: impl FnOnce(&mut InstanceSample),
) -> InstanceSample {
    let ticks = i.pid().and_then(cpu_ticks).unwrap_or(0);
    let rss = i.pid().and_then(rss_bytes).unwrap_or(0);
    let (rx, tx) = (
        i.rx_bytes.load(Ordering::Relaxed),
        i.tx_bytes.load(Ordering::Relaxed),
    );
    let prev = seen.insert(
        i.id.clone(),
        Seen {
            at: now,
            ticks,
            rx,
            tx,
        },
    );
    let (cpu, drx, dtx) = match prev {
        Some(p) => {
            let secs = now.duration_since(p.at).as_secs_f64().max(1e-3);
            let used = ticks.saturating_sub(p.ticks) as f64 / ticks_per_second();
            (
                100.0 * used / secs,
                rx.saturating_sub(p.rx),
                tx.saturating_sub(p.tx),
            )
        }
        // first sight: what it has done so far
        None => (0.0, rx, tx),
    };
    let memory_usage_mb = rss as f64 / 1048576.0;
    let mut s = InstanceSample {
        timestamp,
        instance_id: i.id.clone(),
        hostname: super::record::hostname().to_owned(),
        ip_address: i.host(),
        cpu_percent: cpu,
        memory_usage_mb,
        memory_limit_mb,
        memory_usage_percent: if memory_limit_mb > 0 {
            100.0 * memory_usage_mb / memory_limit_mb as f64
        } else {
            0.0
        },
        rx_bytes: drx,
        tx_bytes: dtx,
        rx_total_bytes: rx,
        tx_total_bytes: tx,
        concurrent_requests: u64::from(i.running()),
        ..InstanceSample::default()
    };
    name(&mut s);
    s
}
