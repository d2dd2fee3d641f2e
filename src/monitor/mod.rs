//! Function monitoring: per-minute function metrics, made as calls are recorded.
//!
//! Every call the gateway answers (refused ones included) becomes a [`minute::Call`];
//! [`add_call`] turns it into one aggregate merged into three series (its function,
//! its service, the region) in the same write as its invocation record, so a metric
//! read after the call was acknowledged includes it, and nothing is computed by scanning
//! records at query time. [`catalog`] names the metrics and computes each from a period's
//! aggregate; [`series`] reads them back for the API. The store keeps the bytes
//! (`store::metrics`); the platform decides what a call's outcome was.

pub mod alarms;
pub mod catalog;
pub mod faas;
pub mod lambda;
pub mod minute;
pub mod red;

use crate::store::{keys, EncodedBatch, StoreError};
use catalog::{Base, Level};
use keys::Tenant;
use minute::{Call, Minute};

pub const MINUTE_US: u64 = 60_000_000;

/// The function a call was for. Calls for functions that do not exist count to the
/// region alone: their names are the caller's and would make series without bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub service: String,
    pub function: String,
    pub qualifier: String,
}

/// The dimensions of one series at `level` (empty for the region).
fn dims(level: Level, f: &Function) -> Vec<&str> {
    match level {
        Level::Function => vec![&f.service, &f.function, &f.qualifier],
        Level::Service => vec![&f.service],
        Level::Region => vec![],
    }
}

/// Add `call`, made at `at_us`, to the series it counts to, in `batch`'s write.
/// `platform_concurrent` is the calls running on the whole platform at its start.
pub fn add_call(
    batch: &mut EncodedBatch,
    tenant: Tenant,
    function: Option<&Function>,
    at_us: u64,
    call: &Call,
    platform_concurrent: u64,
) {
    let minute = at_us / MINUTE_US;
    let agg = Minute::of(call);
    if let Some(f) = function {
        let bytes = agg.to_bytes();
        for level in [Level::Function, Level::Service] {
            let series = keys::metric_series(tenant, level.tag(), &dims(level, f));
            batch.add_metric(&keys::metric_key(&series, minute), &bytes);
        }
    }
    let region = Minute {
        max_concurrent: platform_concurrent,
        ..agg
    };
    let series = keys::metric_series(tenant, Level::Region.tag(), &[]);
    batch.add_metric(&keys::metric_key(&series, minute), &region.to_bytes());
}

/// Merge `agg` into the minute of `at_us` at each of `levels` for `function` (its
/// service, or nothing, at the coarser levels), in `batch`'s write: what one step of an
/// asynchronous call adds (at every level), or a count of provisioned instances.
pub fn add_aggregate(
    batch: &mut EncodedBatch,
    tenant: Tenant,
    levels: &[Level],
    function: &Function,
    at_us: u64,
    agg: &Minute,
) {
    let minute = at_us / MINUTE_US;
    let bytes = agg.to_bytes();
    for &level in levels {
        let series = keys::metric_series(tenant, level.tag(), &dims(level, function));
        batch.add_metric(&keys::metric_key(&series, minute), &bytes);
    }
}

/// One datapoint: the start of its period (ms since the epoch) and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub timestamp_ms: u64,
    pub value: f64,
}

/// The values of `base` at `level` for `function` (ignored for the region) over the
/// periods of `period_s` seconds that overlap `(start_us, end_us)`, oldest first. A
/// period with no calls, or whose metric says nothing (an average of none), has no point.
pub fn series(
    store: &dyn crate::store::MetricSource,
    tenant: Tenant,
    level: Level,
    base: &Base,
    function: &Function,
    (start_us, end_us): (u64, u64),
    period_s: u64,
) -> Result<Vec<Point>, StoreError> {
    let period_min = (period_s / 60).max(1);
    let first = start_us / MINUTE_US / period_min * period_min;
    let last = end_us / MINUTE_US;
    let key = keys::metric_series(tenant, level.tag(), &dims(level, function));
    let minutes = store.metric_minutes(&key, first, last)?;
    let mut out = Vec::new();
    for group in minutes.chunk_by(|a, b| a.0 / period_min == b.0 / period_min) {
        let mut agg = Minute::default();
        for (_, m) in group {
            agg.merge(m);
        }
        if let Some(value) = (base.value)(&agg) {
            out.push(Point {
                timestamp_ms: group[0].0 / period_min * period_min * 60_000,
                value,
            });
        }
    }
    Ok(out)
}
