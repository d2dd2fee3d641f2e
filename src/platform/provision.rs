//! Provisioned instances: a function may keep instances started and initialized ahead of
//! traffic, so calls they can take have no cold start (`resourceMode: Provision`).
//!
//! How many is the function's provision target, worked out each second:
//! - `provisioned_instances`, or the `instances` of the `provision_schedule` window
//!   (daily, UTC, `start` inclusive, `end` exclusive, a window may wrap midnight; the last
//!   matching window wins) that covers now;
//! - with `provision_target_utilization`, at least enough instances that the calls
//!   running now use that fraction of their slots (up to `provision_max_instances`);
//! - never more than `max_instances`: provisioned instances count against it.
//!
//! Below the target, instances are started (their cold start is no call's); above it,
//! idle provisioned instances become on-demand ones and are reaped when idle as usual.
//! Each second the function's provisioned instances are counted into its minute
//! (`FunctionProvisionedCurrentInstance`, and summed per service and region). This module
//! owns the settings and the target; `instance::Pool` owns the instances.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::Platform;
use crate::monitor::minute::Minute;
use crate::pipeline::with_retries;
use crate::store::keys::Tenant;

/// One `provision_schedule` window as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub start: Option<String>,
    pub end: Option<String>,
    pub instances: Option<u32>,
}

/// A daily window (minutes after midnight UTC) and its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_min: u32,
    pub end_min: u32,
    pub instances: u32,
}

impl Window {
    fn covers(&self, minute_of_day: u32) -> bool {
        if self.start_min <= self.end_min {
            (self.start_min..self.end_min).contains(&minute_of_day)
        } else {
            minute_of_day >= self.start_min || minute_of_day < self.end_min
        }
    }
}

/// A function's checked provisioning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provision {
    pub instances: u32,
    pub schedule: Vec<Window>,
    /// Percent of the provisioned slots the running calls should use (0: no tracking).
    pub target_utilization_pct: u32,
    pub max_instances: u32,
}

/// `HH:MM` as minutes after midnight.
fn time_of_day(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not HH:MM (00:00 to 24:00)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Provision {
    /// Checked from a `[[functions]]` entry's fields; errors name the field.
    pub fn check(
        instances: Option<u32>,
        schedule: Option<&[RawWindow]>,
        utilization: Option<f64>,
        max: Option<u32>,
        max_instances: u32,
    ) -> Result<Provision, (&'static str, String)> {
        let within = |field: &'static str, n: u32| {
            if n > max_instances {
                Err((
                    field,
                    format!("{n} is more than max_instances ({max_instances})"),
                ))
            } else {
                Ok(n)
            }
        };
        let instances = within("provisioned_instances", instances.unwrap_or(0))?;
        let schedule = schedule
            .unwrap_or_default()
            .iter()
            .map(|w| {
                let field = "provision_schedule";
                let time = |v: &Option<String>| {
                    time_of_day(
                        v.as_deref()
                            .ok_or((field, "start and end are required".to_owned()))?,
                    )
                    .map_err(|e| (field, e))
                };
                Ok(Window {
                    start_min: time(&w.start)?,
                    end_min: time(&w.end)?,
                    instances: within(
                        field,
                        w.instances
                            .ok_or((field, "instances is required".to_owned()))?,
                    )?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let target_utilization_pct = match utilization {
            None => 0,
            Some(u) if u > 0.0 && u <= 1.0 => (u * 100.0).round().max(1.0) as u32,
            Some(u) => {
                return Err((
                    "provision_target_utilization",
                    format!("{u} is outside (0, 1]"),
                ))
            }
        };
        let max = within("provision_max_instances", max.unwrap_or(max_instances))?;
        Ok(Provision {
            instances,
            schedule,
            target_utilization_pct,
            max_instances: max,
        })
    }

    pub fn is_on(&self) -> bool {
        self.instances > 0 || !self.schedule.is_empty() || self.target_utilization_pct > 0
    }

    /// Instances to keep provisioned at `now_us` with `running` calls on the function,
    /// each instance taking `per_instance` at once.
    pub fn target(&self, now_us: u64, running: u64, per_instance: u32) -> u32 {
        let minute_of_day = ((now_us / 60_000_000) % 1440) as u32;
        let base = self
            .schedule
            .iter()
            .rev()
            .find(|w| w.covers(minute_of_day))
            .map_or(self.instances, |w| w.instances);
        if self.target_utilization_pct == 0 {
            return base;
        }
        let slots_per_instance = u64::from(per_instance) * u64::from(self.target_utilization_pct);
        // running / (per_instance × utilization), rounded up
        let needed = (running * 100).div_ceil(slots_per_instance.max(1));
        base.max(needed.min(u64::from(self.max_instances)) as u32)
    }
}

/// Where a call ran, as provisioning sees it, measured once its instance is held.
pub(super) fn facts(
    spec: &super::functions::FunctionSpec,
    pool: &super::instance::Pool,
    lease: Option<&super::instance::Lease>,
) -> super::record::ProvisionFacts {
    let Some(lease) = lease else {
        return super::record::ProvisionFacts::default();
    };
    let provisioned = lease.instance.is_provisioned();
    let (instances, running) = pool.provisioned_load();
    let slots = instances * u64::from(spec.instance_concurrency);
    super::record::ProvisionFacts {
        mode: if provisioned { "Provision" } else { "OnDemand" },
        provisioned,
        spillover: !provisioned && spec.provision.is_on(),
        instances,
        running,
        utilization_permille: (running * 1000).checked_div(slots).unwrap_or(0),
    }
}

impl Platform {
    /// Keep each function's provisioned instances at its target, every second, and count
    /// them into the minute's metrics, until `stop` says so.
    pub async fn provision_loop(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        if !self.pools.values().any(|p| p.spec.provision.is_on()) {
            return;
        }
        crate::clock::every(Duration::from_secs(1), stop, || async {
            let now = crate::clock::now_us();
            // per tenant: its services' and its region's totals
            let mut services: HashMap<(Tenant, String), u64> = HashMap::new();
            let mut region: HashMap<Tenant, u64> = HashMap::new();
            for pool in self.pools.values() {
                let spec = &pool.spec;
                if !spec.provision.is_on() {
                    continue;
                }
                let (running, _) = pool.load();
                let target = spec
                    .provision
                    .target(now, running, spec.instance_concurrency)
                    .min(spec.max_instances);
                if let Err(e) = pool.provision(target).await {
                    tracing::warn!(function = %spec.platform_service(), error = %e, "a provisioned instance did not start");
                }
                let current = pool.provisioned();
                *services
                    .entry((spec.tenant_id, spec.service.clone()))
                    .or_default() += current;
                *region.entry(spec.tenant_id).or_default() += current;
                self.count_provisioned(pool, current, now);
            }
            for ((tenant, service), n) in services {
                let level = crate::monitor::catalog::Level::Service;
                self.count_provisioned_at(tenant, level, &service, n, now);
            }
            for (tenant, n) in region {
                let level = crate::monitor::catalog::Level::Region;
                self.count_provisioned_at(tenant, level, "", n, now);
            }
        })
        .await
    }

    fn count_provisioned(&self, pool: &super::instance::Pool, current: u64, now: u64) {
        let function = super::record::monitor_function(&pool.spec);
        let level = crate::monitor::catalog::Level::Function;
        self.write_aggregate(pool.spec.tenant_id, level, function, current, now);
    }

    fn count_provisioned_at(
        &self,
        tenant: Tenant,
        level: crate::monitor::catalog::Level,
        service: &str,
        n: u64,
        now: u64,
    ) {
        let function = crate::monitor::Function {
            service: service.to_owned(),
            function: String::new(),
            qualifier: String::new(),
        };
        self.write_aggregate(tenant, level, function, n, now);
    }

    fn write_aggregate(
        &self,
        tenant: Tenant,
        level: crate::monitor::catalog::Level,
        function: crate::monitor::Function,
        provisioned: u64,
        now: u64,
    ) {
        let m = Minute {
            max_provisioned_instances: provisioned,
            ..Minute::default()
        };
        let pipeline = self.pipeline.clone();
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            let levels = [level];
            let write = || pipeline.submit_aggregate(tenant, &levels, &function, now, &m);
            if let Err(e) = with_retries(&metrics, write).await {
                tracing::error!(error = %e, "provisioned instance count not stored after retries");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000_000;

    fn window(start: &str, end: &str, instances: u32) -> RawWindow {
        RawWindow {
            start: Some(start.into()),
            end: Some(end.into()),
            instances: Some(instances),
        }
    }

    #[test]
    fn schedule_windows_set_the_target_by_time_of_day() {
        let schedule = [window("08:00", "20:00", 3), window("22:00", "02:00", 1)];
        let p = Provision::check(Some(2), Some(&schedule), None, None, 4).unwrap();
        // a day's hours (UTC) and the target then
        let at = |h: u64| p.target(10_000 * 24 * HOUR + h * HOUR, 0, 1);
        assert_eq!(
            [0, 1, 2, 7, 8, 19, 20, 21, 22, 23].map(at),
            [1, 1, 2, 2, 3, 3, 2, 2, 1, 1]
        );
    }

    #[test]
    fn target_utilization_scales_with_running_calls() {
        // 60 %: 3 running calls on instances of 1 slot need 5 (capped at 4); 2 slots a
        // piece need 3
        let p = Provision::check(Some(1), None, Some(0.6), Some(4), 10).unwrap();
        assert_eq!(p.target(0, 0, 1), 1);
        assert_eq!(p.target(0, 3, 1), 4);
        assert_eq!(p.target(0, 3, 2), 3);
        assert_eq!(p.target(0, 1, 1), 2);
    }

    #[test]
    fn settings_are_checked() {
        let err = |r: Result<Provision, (&'static str, String)>| r.unwrap_err().0;
        assert_eq!(
            err(Provision::check(Some(5), None, None, None, 4)),
            "provisioned_instances"
        );
        assert_eq!(
            err(Provision::check(
                None,
                Some(&[window("8:00", "25:00", 1)]),
                None,
                None,
                4
            )),
            "provision_schedule"
        );
        assert_eq!(
            err(Provision::check(None, None, Some(1.5), None, 4)),
            "provision_target_utilization"
        );
        assert!(!Provision::check(None, None, None, None, 4).unwrap().is_on());
    }
}
