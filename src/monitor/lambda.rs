//! Lambda's (CloudWatch's) metric names, answered from the same aggregates as the
//! platform's own: `Invocations`, `Errors`, `Throttles`, `Duration`,
//! `ConcurrentExecutions`, `UnreservedConcurrentExecutions`, `AsyncEventsReceived`,
//! `AsyncEventAge`, `AsyncEventsDropped`, `DestinationDeliveryFailures`,
//! `DeadLetterErrors`, `RecursiveInvocationsDropped`, and for provisioned instances
//! `ProvisionedConcurrencyInvocations`, `ProvisionedConcurrencySpilloverInvocations` (also
//! as `SpilloverInvocations`), `ProvisionedConcurrentExecutions` and
//! `ProvisionedConcurrencyUtilization`.
//!
//! A name has no level prefix: the dimensions given pick the level (a function, a
//! service, or the region), as CloudWatch's `FunctionName` dimension does. Each has the
//! statistics Lambda documents for it, the first the default; a statistic is the platform
//! metric it equals (`Duration` Average is `LatencyAvg`), so both names answer alike by
//! construction, or, where the platform has no such metric, a value of its own.

use super::catalog::{self, Base};
use super::minute::Minute;

/// How one statistic of a Lambda metric is computed.
#[derive(Clone, Copy)]
enum Stat {
    /// The platform's base metric of that name.
    Same(&'static str),
    Own(Base),
}

struct Metric {
    name: &'static str,
    /// (statistic, value); the first is the default.
    stats: &'static [(&'static str, Stat)],
    region_only: bool,
}

const METRICS: &[Metric] = &[
    Metric {
        name: "Invocations",
        stats: &[(
            "Sum",
            Stat::Own(Base {
                name: "Invocations",
                unit: "count",
                meaning: "calls that ran the function's code, failing or not (throttled and refused calls are not invocations, as on Lambda)",
                value: |m| {
                    Some(m.invocations.saturating_sub(
                        m.concurrency_throttles
                            + m.resource_throttles
                            + m.client_errors
                            + m.server_errors,
                    ) as f64)
                },
            }),
        )],
        region_only: false,
    },
    Metric {
        name: "Errors",
        stats: &[("Sum", Stat::Same("FunctionErrors"))],
        region_only: false,
    },
    Metric {
        name: "Throttles",
        stats: &[("Sum", Stat::Same("Throttles"))],
        region_only: false,
    },
    Metric {
        name: "Duration",
        stats: &[
            ("Average", Stat::Same("LatencyAvg")),
            ("Maximum", Stat::Same("LatencyMax")),
            ("p50", Stat::Same("LatencyP50")),
            ("p90", Stat::Same("LatencyP90")),
            ("p99", Stat::Same("LatencyP99")),
        ],
        region_only: false,
    },
    Metric {
        name: "ConcurrentExecutions",
        stats: &[("Maximum", Stat::Same("ConcurrentRequests"))],
        region_only: false,
    },
    Metric {
        // fctrace reserves no concurrency: every call is unreserved
        name: "UnreservedConcurrentExecutions",
        stats: &[("Maximum", Stat::Same("ConcurrentRequests"))],
        region_only: true,
    },
    Metric {
        name: "AsyncEventsReceived",
        stats: &[("Sum", Stat::Same("EnqueueCount"))],
        region_only: false,
    },
    Metric {
        name: "AsyncEventAge",
        stats: &[
            ("Average", Stat::Same("AsyncMessageLatencyAvg")),
            ("Maximum", Stat::Same("AsyncMessageLatencyMax")),
        ],
        region_only: false,
    },
    Metric {
        name: "AsyncEventsDropped",
        stats: &[("Sum", Stat::Same("AsyncEventExpiredDropped"))],
        region_only: false,
    },
    Metric {
        name: "DestinationDeliveryFailures",
        stats: &[("Sum", Stat::Same("DestinationErrors"))],
        region_only: false,
    },
    Metric {
        name: "DeadLetterErrors",
        stats: &[(
            "Sum",
            Stat::Own(Base {
                name: "DeadLetterErrors",
                unit: "count",
                meaning: "always 0: fctrace has no dead-letter queue (on_failure destinations are DestinationDeliveryFailures)",
                value: |_: &Minute| Some(0.0),
            }),
        )],
        region_only: false,
    },
    Metric {
        name: "RecursiveInvocationsDropped",
        stats: &[("Sum", Stat::Same("RecursiveInvocationsDropped"))],
        region_only: false,
    },
    Metric {
        name: "ProvisionedConcurrencyInvocations",
        stats: &[("Sum", Stat::Same("ProvisionInvocations"))],
        region_only: false,
    },
    Metric {
        name: "ProvisionedConcurrencySpilloverInvocations",
        stats: &[("Sum", Stat::Same("ProvisionSpilloverInvocations"))],
        region_only: false,
    },
    Metric {
        name: "SpilloverInvocations",
        stats: &[("Sum", Stat::Same("ProvisionSpilloverInvocations"))],
        region_only: false,
    },
    Metric {
        name: "ProvisionedConcurrentExecutions",
        stats: &[("Maximum", Stat::Same("ProvisionedConcurrentRequests"))],
        region_only: false,
    },
    Metric {
        name: "ProvisionedConcurrencyUtilization",
        stats: &[("Maximum", Stat::Same("ProvisionUtilization"))],
        region_only: false,
    },
];

/// A Lambda metric's statistic (its default when `statistic` is `None`) as the base it
/// is computed by; `Err` says why not (an unknown statistic lists the known ones).
/// `Ok(None)` for a name that is not Lambda's.
pub fn find(name: &str, statistic: Option<&str>) -> Result<Option<(Base, bool)>, String> {
    let Some(m) = METRICS.iter().find(|m| m.name == name) else {
        return Ok(None);
    };
    let stat = match statistic {
        None => &m.stats[0],
        Some(s) => m
            .stats
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let known: Vec<&str> = m.stats.iter().map(|(n, _)| *n).collect();
                format!("{name} has the statistics {}; got {s:?}", known.join(", "))
            })?,
    };
    let base = match stat.1 {
        Stat::Own(b) => b,
        Stat::Same(base) => {
            let (_, b) = catalog::find(&format!("Function{base}"))
                .ok_or_else(|| format!("{name}: no platform metric {base}"))?;
            Base { ..*b }
        }
    };
    Ok(Some((base, m.region_only)))
}

/// Every Lambda name with its statistics, for the metric list.
pub fn names() -> impl Iterator<Item = (&'static str, Vec<&'static str>)> {
    METRICS
        .iter()
        .map(|m| (m.name, m.stats.iter().map(|(s, _)| *s).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statistic_resolves() {
        for (name, stats) in names() {
            for s in stats {
                assert!(find(name, Some(s)).unwrap().is_some(), "{name} {s}");
            }
        }
        assert!(find("Duration", Some("median"))
            .err()
            .unwrap()
            .contains("Average"));
        assert!(find("FunctionLatencyAvg", None).unwrap().is_none());
        let m = Minute {
            invocations: 10,
            concurrency_throttles: 2,
            client_errors: 1,
            ..Minute::default()
        };
        let (b, _) = find("Invocations", None).unwrap().unwrap();
        assert_eq!((b.value)(&m), Some(7.0));
    }
}
