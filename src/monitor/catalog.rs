//! The metrics fctrace serves, with the names function platforms publish
//! (`FunctionTotalInvocations`, `ServiceLatencyP99`, `RegionConcurrentCount`, ...): each
//! one a function of a period's [`Minute`] aggregate at one dimension level.
//!
//! The same base metric exists at three levels: `Function` (service + function +
//! qualifier), `Service` and `Region` (the whole platform); its name is the level's
//! prefix and the base name. This module owns names, units, meanings and how each value
//! is computed; it reads no store.

use super::minute::Minute;

/// Which calls a metric aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Function,
    Service,
    Region,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Function, Level::Service, Level::Region];

    pub fn prefix(self) -> &'static str {
        match self {
            Level::Function => "Function",
            Level::Service => "Service",
            Level::Region => "Region",
        }
    }

    /// The query parameters that pick one series at this level.
    pub fn dimensions(self) -> &'static [&'static str] {
        match self {
            Level::Function => &["service", "function", "qualifier"],
            Level::Service => &["service"],
            Level::Region => &[],
        }
    }

    /// The byte that starts this level's keys.
    pub fn tag(self) -> u8 {
        match self {
            Level::Function => b'F',
            Level::Service => b'S',
            Level::Region => b'R',
        }
    }
}

/// One base metric: its name after the level prefix, unit, meaning and value.
#[derive(Clone, Copy)]
pub struct Base {
    pub name: &'static str,
    pub unit: &'static str,
    pub meaning: &'static str,
    /// The period's value; `None` when the period has nothing to say (an average of no
    /// calls), and then no datapoint is served.
    pub value: fn(&Minute) -> Option<f64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn avg(sum: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum as f64 / n as f64)
}

fn rate(part: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| 100.0 * part as f64 / of as f64)
}

/// Every base metric. Counts are sums over the period, maxima the largest seen in it.
pub const BASES: &[Base] = &[
    Base {
        name: "EnqueueCount",
        unit: "count",
        meaning: "asynchronous calls queued",
        value: |m| Some(m.enqueued as f64),
    },
    Base {
        name: "DequeueCount",
        unit: "count",
        meaning: "asynchronous calls taken from the queue to run",
        value: |m| Some(m.dequeued as f64),
    },
    Base {
        name: "AsyncMessageLatencyAvg",
        unit: "ms",
        meaning: "mean time an asynchronous call waited in the queue",
        value: |m| avg(m.async_wait_sum_us, m.dequeued).map(|us| us / 1000.0),
    },
    Base {
        name: "AsyncMessageLatencyMax",
        unit: "ms",
        meaning: "longest time an asynchronous call waited in the queue",
        value: |m| (m.dequeued > 0).then(|| ms(m.async_wait_max_us)),
    },
    Base {
        name: "AsyncMessagesInQueue",
        unit: "count",
        meaning: "the largest backlog of queued asynchronous calls seen",
        value: |m| Some(m.async_backlog_max as f64),
    },
    Base {
        name: "AsyncEventExpiredDropped",
        unit: "count",
        meaning: "asynchronous calls dropped: older than the function's max_event_age",
        value: |m| Some(m.async_expired as f64),
    },
    Base {
        name: "DestinationSucceed",
        unit: "count",
        meaning: "asynchronous outcomes delivered to their destination",
        value: |m| Some(m.destinations_ok as f64),
    },
    Base {
        name: "DestinationErrors",
        unit: "count",
        meaning: "asynchronous outcomes their destination did not take",
        value: |m| Some(m.destination_errors as f64),
    },
    Base {
        name: "TotalInvocations",
        unit: "count",
        meaning: "calls received, whatever their outcome (refused ones included)",
        value: |m| Some(m.invocations as f64),
    },
    Base {
        name: "FunctionErrors",
        unit: "count",
        meaning: "calls the function failed: unhandled error, timeout, out of memory",
        value: |m| Some(m.function_errors as f64),
    },
    Base {
        name: "ServerErrors",
        unit: "count",
        meaning: "calls the platform failed: no instance could be started",
        value: |m| Some(m.server_errors as f64),
    },
    Base {
        name: "ClientErrors",
        unit: "count",
        meaning: "calls refused for the caller's fault (4xx): unknown function, event too large, caller gone",
        value: |m| Some(m.client_errors as f64),
    },
    Base {
        name: "ConcurrencyThrottles",
        unit: "count",
        meaning: "calls refused with 429 because every instance of the function was busy",
        value: |m| Some(m.concurrency_throttles as f64),
    },
    Base {
        name: "ResourceThrottles",
        unit: "count",
        meaning: "calls refused with 503 by the platform-wide limit (--max-concurrent-invocations)",
        value: |m| Some(m.resource_throttles as f64),
    },
    Base {
        name: "RecursiveInvocationsDropped",
        unit: "count",
        meaning: "calls stopped because the call chain passed through the function more than max_recursion_depth times (Lambda's recursive loop detection)",
        value: |m| Some(m.recursion_dropped as f64),
    },
    Base {
        name: "Throttles",
        unit: "count",
        meaning: "concurrency and resource throttles together",
        value: |m| Some((m.concurrency_throttles + m.resource_throttles) as f64),
    },
    Base {
        name: "LatencyAvg",
        unit: "ms",
        meaning: "mean end-to-end time of a call in the platform, platform time included",
        value: |m| avg(m.latency_sum_us, m.invocations).map(|us| us / 1000.0),
    },
    Base {
        name: "LatencyMax",
        unit: "ms",
        meaning: "longest end-to-end time of a call",
        value: |m| (m.invocations > 0).then(|| ms(m.latency_max_us)),
    },
    Base {
        name: "LatencyP50",
        unit: "ms",
        meaning: "median end-to-end time, from a histogram of 4 % buckets",
        value: |m| m.latency_quantile(0.5).map(|us| us / 1000.0),
    },
    Base {
        name: "LatencyP90",
        unit: "ms",
        meaning: "90th percentile of end-to-end time (4 % buckets)",
        value: |m| m.latency_quantile(0.9).map(|us| us / 1000.0),
    },
    Base {
        name: "LatencyP99",
        unit: "ms",
        meaning: "99th percentile of end-to-end time (4 % buckets)",
        value: |m| m.latency_quantile(0.99).map(|us| us / 1000.0),
    },
    Base {
        name: "ColdStarts",
        unit: "count",
        meaning: "calls that had to start a new instance",
        value: |m| Some(m.cold_starts as f64),
    },
    Base {
        name: "InitDurationAvg",
        unit: "ms",
        meaning: "mean time of the initializer on cold starts that ran one",
        value: |m| avg(m.init_sum_us, m.init_count).map(|us| us / 1000.0),
    },
    Base {
        name: "InitDurationMax",
        unit: "ms",
        meaning: "longest initializer on a cold start",
        value: |m| (m.init_count > 0).then(|| ms(m.init_max_us)),
    },
    Base {
        name: "MaxMemoryUsage",
        unit: "MB",
        meaning: "largest resident memory of an instance seen during a call",
        value: |m| (m.invocations > 0).then(|| m.max_memory_kb as f64 / 1024.0),
    },
    Base {
        name: "MemoryLimitMB",
        unit: "MB",
        meaning: "the memory limit of the functions called",
        value: |m| (m.invocations > 0).then_some(m.memory_limit_mb as f64),
    },
    Base {
        name: "ConcurrentRequests",
        unit: "count",
        meaning: "most calls running at once (at a call's start)",
        value: |m| (m.invocations > 0).then_some(m.max_concurrent as f64),
    },
    Base {
        name: "OndemandActiveInstance",
        unit: "count",
        meaning: "most instances of the function alive at once (at a call's start)",
        value: |m| (m.invocations > 0).then_some(m.max_instances as f64),
    },
    Base {
        name: "ProvisionedCurrentInstance",
        unit: "count",
        meaning: "most provisioned instances seen (counted each second, and at each call)",
        value: |m| Some(m.max_provisioned_instances as f64),
    },
    Base {
        name: "ProvisionInvocations",
        unit: "count",
        meaning: "calls that ran on provisioned instances",
        value: |m| Some(m.provision_invocations as f64),
    },
    Base {
        name: "ProvisionSpilloverInvocations",
        unit: "count",
        meaning: "calls of functions with provisioning that ran on on-demand instances",
        value: |m| Some(m.spillover_invocations as f64),
    },
    Base {
        name: "ProvisionedConcurrentRequests",
        unit: "count",
        meaning: "most calls running on provisioned instances at once (at a call's start)",
        value: |m| (m.invocations > 0).then_some(m.max_provisioned_concurrent as f64),
    },
    Base {
        name: "ProvisionUtilization",
        unit: "ratio",
        meaning: "largest share of the provisioned instances' slots in use (at a call's start)",
        value: |m| {
            (m.invocations > 0).then_some(m.max_provision_utilization_permille as f64 / 1000.0)
        },
    },
    Base {
        name: "Cost",
        unit: "MB*ms",
        meaning: "memory limit times billed time (the run, rounded up to the ms), summed",
        value: |m| Some(m.cost_mb_ms as f64),
    },
    Base {
        name: "FunctionErrorsRate",
        unit: "percent",
        meaning: "function errors per call received",
        value: |m| rate(m.function_errors, m.invocations),
    },
    Base {
        name: "ServerErrorsRate",
        unit: "percent",
        meaning: "server errors per call received",
        value: |m| rate(m.server_errors, m.invocations),
    },
    Base {
        name: "ClientErrorsRate",
        unit: "percent",
        meaning: "client errors per call received",
        value: |m| rate(m.client_errors, m.invocations),
    },
    Base {
        name: "ThrottlesRate",
        unit: "percent",
        meaning: "throttled calls per call received",
        value: |m| rate(m.concurrency_throttles + m.resource_throttles, m.invocations),
    },
];

/// `RegionConcurrentCount`: the platform's name for the region's concurrency, served
/// besides `RegionConcurrentRequests`.
const REGION_CONCURRENT_COUNT: Base = Base {
    name: "ConcurrentCount",
    unit: "count",
    meaning: "most calls running at once on the whole platform",
    value: |m| (m.invocations > 0).then_some(m.max_concurrent as f64),
};

/// A metric by its full name (`FunctionLatencyP99`).
pub fn find(name: &str) -> Option<(Level, &'static Base)> {
    if name == "RegionConcurrentCount" {
        return Some((Level::Region, &REGION_CONCURRENT_COUNT));
    }
    Level::ALL.into_iter().find_map(|level| {
        let base = name.strip_prefix(level.prefix())?;
        BASES.iter().find(|b| b.name == base).map(|b| (level, b))
    })
}

/// Every metric: (full name, level, base).
pub fn all() -> impl Iterator<Item = (String, Level, &'static Base)> {
    Level::ALL
        .into_iter()
        .flat_map(|level| {
            BASES
                .iter()
                .map(move |b| (format!("{}{}", level.prefix(), b.name), level, b))
        })
        .chain(std::iter::once((
            "RegionConcurrentCount".to_owned(),
            Level::Region,
            &REGION_CONCURRENT_COUNT,
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_their_level_and_base() {
        let (level, base) = find("FunctionTotalInvocations").unwrap();
        assert_eq!((level, base.name), (Level::Function, "TotalInvocations"));
        // "FunctionFunctionErrors": the level prefix, then a base that starts the same
        let (level, base) = find("FunctionFunctionErrors").unwrap();
        assert_eq!((level, base.name), (Level::Function, "FunctionErrors"));
        assert_eq!(find("ServiceLatencyP99").unwrap().0, Level::Service);
        assert_eq!(find("RegionConcurrentCount").unwrap().0, Level::Region);
        assert!(find("FunctionNope").is_none());
        assert!(find("Latency").is_none());
        let names: Vec<String> = all().map(|(n, _, _)| n).collect();
        assert_eq!(names.len(), 3 * BASES.len() + 1);
        for n in &names {
            assert!(find(n).is_some(), "{n}");
        }
    }

    #[test]
    fn rates_and_averages_of_no_calls_say_nothing() {
        let empty = Minute::default();
        for name in [
            "FunctionLatencyAvg",
            "FunctionThrottlesRate",
            "FunctionInitDurationAvg",
        ] {
            assert_eq!((find(name).unwrap().1.value)(&empty), None, "{name}");
        }
        assert_eq!(
            (find("FunctionTotalInvocations").unwrap().1.value)(&empty),
            Some(0.0)
        );
    }
}
