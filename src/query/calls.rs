//! Call analysis over invocation records: the filters of `GET /api/v1/invocations`
//! and the grouped statistics of `GET /api/v1/invocations/aggregate`, computed over the
//! records of a window (at most [`MAX_SCANNED`] of them). This is the request-level view
//! of the platforms' call analysis; the per-minute metrics (`monitor`) never scan
//! records. Reads only.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

use super::params::{single, ParamError};
use crate::model::InvocationRecord;

/// Records one question may read.
pub const MAX_SCANNED: usize = 100_000;
/// Fields one aggregate may group by.
pub const MAX_GROUP_BY: usize = 8;

/// The record fields a question may name (as the records spell them).
pub const FIELDS: &[&str] = &[
    "serviceName",
    "functionName",
    "qualifier",
    "versionId",
    "requestId",
    "operation",
    "invocationType",
    "startTime",
    "durationMs",
    "memoryMB",
    "memoryUsageMB",
    "isColdStart",
    "instanceEvent",
    "initializationDurationMs",
    "scheduleLatencyMs",
    "hasFunctionError",
    "errorType",
    "statusCode",
    "traceContext",
    "isSampled",
    "instanceID",
    "hostname",
    "ipAddress",
    "activeInstances",
];

/// Which records a list keeps.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallFilter {
    pub has_function_error: Option<bool>,
    pub error_type: Option<String>,
    pub is_cold_start: Option<bool>,
    pub status_code: Option<u16>,
    pub min_duration_ms: Option<f64>,
    pub max_duration_ms: Option<f64>,
}

fn boolean(pairs: &[(String, String)], name: &str) -> Result<Option<bool>, ParamError> {
    match single(pairs, name)? {
        None => Ok(None),
        Some("true") | Some("1") => Ok(Some(true)),
        Some("false") | Some("0") => Ok(Some(false)),
        Some(v) => Err(ParamError(format!(
            "parameter '{name}' must be true or false, got {v:?}"
        ))),
    }
}

fn number(pairs: &[(String, String)], name: &str) -> Result<Option<f64>, ParamError> {
    single(pairs, name)?
        .map(|v| {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| {
                    ParamError(format!(
                        "parameter '{name}' must be a number of ms, got {v:?}"
                    ))
                })
        })
        .transpose()
}

impl CallFilter {
    /// `hasFunctionError`, `errorType`, `isColdStart`, `statusCode`, `minDurationMs`,
    /// `maxDurationMs`.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ParamError> {
        let status_code = single(pairs, "statusCode")?
            .map(|v| {
                v.parse::<u16>().map_err(|_| {
                    ParamError(format!(
                        "parameter 'statusCode' must be an HTTP status, got {v:?}"
                    ))
                })
            })
            .transpose()?;
        let f = CallFilter {
            has_function_error: boolean(pairs, "hasFunctionError")?,
            error_type: single(pairs, "errorType")?.map(str::to_owned),
            is_cold_start: boolean(pairs, "isColdStart")?,
            status_code,
            min_duration_ms: number(pairs, "minDurationMs")?,
            max_duration_ms: number(pairs, "maxDurationMs")?,
        };
        if let (Some(lo), Some(hi)) = (f.min_duration_ms, f.max_duration_ms) {
            if lo > hi {
                return Err(ParamError(
                    "parameter 'minDurationMs' is greater than 'maxDurationMs'".into(),
                ));
            }
        }
        Ok(f)
    }

    pub fn keeps(&self, r: &InvocationRecord) -> bool {
        self.has_function_error
            .is_none_or(|v| r.has_function_error == v)
            && self
                .error_type
                .as_deref()
                .is_none_or(|v| r.error_type.as_deref() == Some(v))
            && self.is_cold_start.is_none_or(|v| r.is_cold_start == v)
            && self.status_code.is_none_or(|v| r.status_code == v)
            && self.min_duration_ms.is_none_or(|v| r.duration_ms >= v)
            && self.max_duration_ms.is_none_or(|v| r.duration_ms <= v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    P50,
    P90,
    P99,
}

impl Stat {
    fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "count" => Stat::Count,
            "sum" => Stat::Sum,
            "avg" => Stat::Avg,
            "min" => Stat::Min,
            "max" => Stat::Max,
            "p50" => Stat::P50,
            "p90" => Stat::P90,
            "p99" => Stat::P99,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Stat::Count => "count",
            Stat::Sum => "sum",
            Stat::Avg => "avg",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::P50 => "p50",
            Stat::P90 => "p90",
            Stat::P99 => "p99",
        }
    }
}

/// What an aggregate computes.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    pub group_by: Vec<String>,
    /// A numeric field (default `durationMs`).
    pub field: String,
    pub stats: Vec<Stat>,
    /// Seconds per time bucket; `None`: the whole window is one.
    pub period: Option<u64>,
}

impl Aggregation {
    /// `groupBy` (comma-separated, up to 8 fields), `field`, `stats` (comma-separated:
    /// count, sum, avg, min, max, p50, p90, p99; default count) and `period` (seconds).
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ParamError> {
        let known = |f: &str| -> Result<String, ParamError> {
            if FIELDS.contains(&f) {
                Ok(f.to_owned())
            } else {
                Err(ParamError(format!(
                    "unknown record field {f:?}; fields are {}",
                    FIELDS.join(", ")
                )))
            }
        };
        let group_by: Vec<String> = match single(pairs, "groupBy")? {
            None | Some("") => Vec::new(),
            Some(v) => v
                .split(',')
                .map(|f| known(f.trim()))
                .collect::<Result<_, _>>()?,
        };
        if group_by.len() > MAX_GROUP_BY {
            return Err(ParamError(format!(
                "groupBy names {} fields; at most {MAX_GROUP_BY}",
                group_by.len()
            )));
        }
        let field = known(single(pairs, "field")?.unwrap_or("durationMs"))?;
        let stats = match single(pairs, "stats")? {
            None => vec![Stat::Count],
            Some(v) => v
                .split(',')
                .map(|s| {
                    Stat::parse(s.trim()).ok_or_else(|| {
                        ParamError(format!(
                            "unknown statistic {s:?}; use count, sum, avg, min, max, p50, p90, p99"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let period = single(pairs, "period")?
            .map(|v| {
                v.parse::<u64>().ok().filter(|&p| p >= 1).ok_or_else(|| {
                    ParamError(format!("parameter 'period' must be seconds, got {v:?}"))
                })
            })
            .transpose()?;
        Ok(Aggregation {
            group_by,
            field,
            stats,
            period,
        })
    }
}

/// One group's statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Start of the row's period (ms), when the aggregate has periods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The group's value of each `groupBy` field.
    pub group: BTreeMap<String, Json>,
    #[serde(flatten)]
    pub stats: BTreeMap<&'static str, f64>,
}

/// Group `records` and compute the statistics of each group, ordered by period and group.
pub fn aggregate(records: &[InvocationRecord], a: &Aggregation) -> Vec<Row> {
    /// A group's field values, the values of the field its statistics are of, its count.
    type Group = (BTreeMap<String, Json>, Vec<f64>, u64);
    // (period, the group's values as text): the order rows come in
    let mut groups: BTreeMap<(Option<u64>, Vec<String>), Group> = BTreeMap::new();
    for r in records {
        let Ok(Json::Object(fields)) = serde_json::to_value(r) else {
            continue;
        };
        let timestamp = a
            .period
            .map(|p| r.start_time / 1000 / (p * 1000) * (p * 1000));
        let values: Vec<Json> = a
            .group_by
            .iter()
            .map(|f| fields.get(f).cloned().unwrap_or(Json::Null))
            .collect();
        let key = (timestamp, values.iter().map(Json::to_string).collect());
        let entry = groups.entry(key).or_insert_with(|| {
            let group = a.group_by.iter().cloned().zip(values).collect();
            (group, Vec::new(), 0)
        });
        entry.2 += 1;
        if let Some(v) = fields.get(&a.field).and_then(Json::as_f64) {
            entry.1.push(v);
        }
    }
    groups
        .into_iter()
        .map(|((timestamp, _), (group, mut values, count))| {
            values.sort_by(f64::total_cmp);
            let n = values.len();
            let rank = |q: f64| values[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
            let stats = a
                .stats
                .iter()
                .filter_map(|&s| {
                    let v = match s {
                        Stat::Count => Some(count as f64),
                        _ if n == 0 => None,
                        Stat::Sum => Some(values.iter().sum()),
                        Stat::Avg => Some(values.iter().sum::<f64>() / n as f64),
                        Stat::Min => values.first().copied(),
                        Stat::Max => values.last().copied(),
                        Stat::P50 => Some(rank(0.5)),
                        Stat::P90 => Some(rank(0.9)),
                        Stat::P99 => Some(rank(0.99)),
                    };
                    v.map(|v| (s.name(), v))
                })
                .collect();
            Row {
                timestamp,
                group,
                stats,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        function: &str,
        start_ms: u64,
        duration_ms: f64,
        error: Option<&str>,
    ) -> InvocationRecord {
        serde_json::from_value(serde_json::json!({
            "serviceName": "s", "functionName": function, "qualifier": "LATEST",
            "versionId": "", "requestId": format!("{function}{start_ms}"),
            "operation": "InvokeFunction", "invocationType": "Sync",
            "startTime": start_ms * 1000, "durationMs": duration_ms, "memoryMB": 128,
            "memoryUsageMB": 10.0, "isColdStart": false, "instanceEvent": "Reused",
            "initializationDurationMs": 0.0, "scheduleLatencyMs": 0.0,
            "hasFunctionError": error.is_some(), "errorType": error, "statusCode": 200,
            "traceContext": "", "isSampled": false, "instanceID": null,
            "hostname": "h", "ipAddress": "", "activeInstances": 1
        }))
        .unwrap()
    }

    fn pairs(q: &str) -> Vec<(String, String)> {
        super::super::params::pairs(Some(q))
    }

    #[test]
    fn groups_by_period_and_fields_with_nearest_rank_percentiles() {
        let mut records: Vec<InvocationRecord> =
            (1..=100).map(|i| rec("a", 1_000, i as f64, None)).collect();
        records.push(rec("a", 61_000, 7.0, Some("FunctionTimeoutError")));
        records.push(rec("b", 1_000, 3.0, None));
        let a = Aggregation::parse(&pairs(
            "groupBy=functionName,errorType&stats=count,p50,p99,min,max,avg,sum&period=60",
        ))
        .unwrap();
        let rows = aggregate(&records, &a);
        assert_eq!(rows.len(), 3);
        let first = &rows[0];
        assert_eq!(first.timestamp, Some(0));
        assert_eq!(first.group["functionName"], "a");
        assert_eq!(first.group["errorType"], Json::Null);
        // 1..=100 ms: nearest rank
        for (stat, want) in [
            ("count", 100.0),
            ("p50", 50.0),
            ("p99", 99.0),
            ("min", 1.0),
            ("max", 100.0),
            ("avg", 50.5),
            ("sum", 5050.0),
        ] {
            assert_eq!(first.stats[stat], want, "{stat}");
        }
        assert_eq!(rows[1].group["functionName"], "b");
        assert_eq!(rows[2].timestamp, Some(60_000));
        assert_eq!(rows[2].group["errorType"], "FunctionTimeoutError");
    }

    #[test]
    fn filters_keep_what_they_name() {
        let f = CallFilter::parse(&pairs("hasFunctionError=true&minDurationMs=5")).unwrap();
        assert!(f.keeps(&rec("a", 0, 6.0, Some("FunctionUnhandledError"))));
        assert!(!f.keeps(&rec("a", 0, 4.0, Some("FunctionUnhandledError"))));
        assert!(!f.keeps(&rec("a", 0, 6.0, None)));
        assert!(CallFilter::parse(&pairs("statusCode=abc")).is_err());
        assert!(Aggregation::parse(&pairs("field=nosuch")).is_err());
        assert!(Aggregation::parse(&pairs("period=0")).is_err());
    }
}
