//! `/api/v1/traces`' parameters: Jaeger's (service optional: every service when absent)
//! plus the criteria of an APM's trace search (Huawei APM's, which users arrive with):
//!
//! - time: `preset` = `20m` (the default when no `start`, `end` or `lookback` is given),
//!   `1h`, `3h`, `6h`, `1d`, `today`, `yesterday` (days in UTC shifted by `tz_offset`,
//!   minutes east of UTC, as a browser knows it), or `start`/`end`/`lookback` (custom);
//! - `application` (the service), `region`, `environment`, `component`, `instance`;
//! - `url` (a REST template such as `/items/{id}`, or a real URL) matched as a substring,
//!   or whole with `url_exact=true`; `http_method`, `http_status`;
//! - response time: `trace_duration_min`/`max` (durations: `100ms`, `2s`);
//! - `errors_only=true` or `successes_only=true`;
//! - `param=key=value` (repeatable) besides Jaeger's `tag=key:value` and `tags` (JSON);
//! - `traceID`: that trace, whatever the other criteria say;
//! - `sort=start|duration` and `order=desc|asc` (default: newest first).
//!
//! Parsing only; `summary` decides what passes and how rows look.

use std::time::Duration;

use super::params::{go_duration_us, parse_trace_query, single, ParamError, TraceQuery};
use super::summary::{Order, Sort, TraceFilters};

const MINUTE_US: u64 = 60_000_000;
const DAY_US: u64 = 1440 * MINUTE_US;

/// The window of a preset at `now_us`: `(start, end)` in µs.
pub fn preset_window(
    preset: &str,
    now_us: u64,
    tz_offset_min: i64,
) -> Result<(u64, u64), ParamError> {
    let last = |minutes: u64| Ok((now_us.saturating_sub(minutes * MINUTE_US), now_us));
    match preset {
        "20m" => last(20),
        "1h" => last(60),
        "3h" => last(180),
        "6h" => last(360),
        "1d" => last(1440),
        "today" | "yesterday" => {
            // midnight where the user is, in UTC µs
            let shift = tz_offset_min * MINUTE_US as i64;
            let local = now_us as i64 + shift;
            let midnight = (local - local.rem_euclid(DAY_US as i64) - shift).max(0) as u64;
            if preset == "today" {
                Ok((midnight, now_us))
            } else {
                Ok((midnight.saturating_sub(DAY_US), midnight.saturating_sub(1)))
            }
        }
        other => Err(ParamError(format!(
            "parameter 'preset' must be 20m, 1h, 3h, 6h, 1d, today or yesterday, got {other:?}"
        ))),
    }
}

fn flag(pairs: &[(String, String)], name: &str) -> Result<bool, ParamError> {
    match single(pairs, name)? {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(v) => Err(ParamError(format!(
            "parameter '{name}' must be true or false, got {v:?}"
        ))),
    }
}

fn text(pairs: &[(String, String)], name: &str) -> Result<Option<String>, ParamError> {
    Ok(single(pairs, name)?
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned))
}

pub fn parse_human_query(
    pairs: &[(String, String)],
    now_us: u64,
    retention: Duration,
) -> Result<(TraceQuery, TraceFilters), ParamError> {
    let mut q = parse_trace_query(pairs, now_us, retention)?;
    if let Some(app) = text(pairs, "application")? {
        if !q.service.is_empty() && q.service != app {
            return Err(ParamError(
                "parameters 'application' and 'service' name the same thing: give one".into(),
            ));
        }
        q.service = app;
    }
    let custom = ["start", "end", "lookback"]
        .iter()
        .any(|k| pairs.iter().any(|(n, _)| n == k));
    let preset = single(pairs, "preset")?;
    if preset.is_some() && custom {
        return Err(ParamError(
            "parameter 'preset' and 'start'/'end'/'lookback' both give the time: give one".into(),
        ));
    }
    if preset.is_some() || !custom {
        let tz: i64 = match single(pairs, "tz_offset")? {
            None => 0,
            Some(v) => v
                .parse()
                .ok()
                .filter(|m: &i64| m.abs() <= 18 * 60)
                .ok_or_else(|| {
                    ParamError(format!(
                        "parameter 'tz_offset' must be minutes east of UTC (-1080..=1080), got {v:?}"
                    ))
                })?,
        };
        (q.start, q.end) = preset_window(preset.unwrap_or("20m"), now_us, tz)?;
    }
    for v in pairs.iter().filter(|(k, _)| k == "param").map(|(_, v)| v) {
        let (key, value) = v
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| ParamError(format!("parameter 'param' must be key=value, got {v:?}")))?;
        q.tags.push((key.to_owned(), value.to_owned()));
    }
    let dur = |name: &str| {
        single(pairs, name)?
            .map(|v| go_duration_us(name, v))
            .transpose()
    };
    let f = TraceFilters {
        trace_duration_min: dur("trace_duration_min")?,
        trace_duration_max: dur("trace_duration_max")?,
        errors_only: flag(pairs, "errors_only")?,
        successes_only: flag(pairs, "successes_only")?,
        http_method: text(pairs, "http_method")?,
        http_status: text(pairs, "http_status")?,
        url: text(pairs, "url")?,
        url_exact: flag(pairs, "url_exact")?,
        region: text(pairs, "region")?,
        environment: text(pairs, "environment")?,
        component: text(pairs, "component")?,
        instance: text(pairs, "instance")?,
        sort: match single(pairs, "sort")? {
            None | Some("start") => Sort::Start,
            Some("duration") => Sort::Duration,
            Some(v) => {
                return Err(ParamError(format!(
                    "parameter 'sort' must be start or duration, got {v:?}"
                )))
            }
        },
        order: match single(pairs, "order")? {
            None | Some("desc") => Order::Desc,
            Some("asc") => Order::Asc,
            Some(v) => {
                return Err(ParamError(format!(
                    "parameter 'order' must be desc or asc, got {v:?}"
                )))
            }
        },
    };
    if f.errors_only && f.successes_only {
        return Err(ParamError(
            "parameters 'errors_only' and 'successes_only' exclude each other".into(),
        ));
    }
    if let (Some(a), Some(b)) = (f.trace_duration_min, f.trace_duration_max) {
        if a > b {
            return Err(ParamError(
                "parameter 'trace_duration_min' is greater than 'trace_duration_max'".into(),
            ));
        }
    }
    Ok((q, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-03T10:30:00Z
    const NOW: u64 = 1_796_293_800_000_000;
    const H: u64 = 3_600_000_000;

    #[test]
    fn presets_are_windows_ending_now_or_whole_days() {
        assert_eq!(preset_window("20m", NOW, 0).unwrap(), (NOW - H / 3, NOW));
        assert_eq!(preset_window("6h", NOW, 0).unwrap(), (NOW - 6 * H, NOW));
        let midnight = NOW - 10 * H - H / 2;
        assert_eq!(preset_window("today", NOW, 0).unwrap(), (midnight, NOW));
        assert_eq!(
            preset_window("yesterday", NOW, 0).unwrap(),
            (midnight - 24 * H, midnight - 1)
        );
        // at UTC+14:00 it is already 00:30 on the next day there
        assert_eq!(
            preset_window("today", NOW, 14 * 60).unwrap(),
            (NOW - H / 2, NOW)
        );
        // at UTC-11:00 it is 23:30 on the day before
        assert_eq!(
            preset_window("today", NOW, -11 * 60).unwrap(),
            (NOW - 23 * H - H / 2, NOW)
        );
        assert!(preset_window("2w", NOW, 0).is_err());
    }

    fn pairs(q: &str) -> Vec<(String, String)> {
        super::super::params::pairs(Some(q))
    }

    #[test]
    fn default_is_the_last_twenty_minutes_and_custom_wins() {
        let week = Duration::from_secs(7 * 86400);
        let (q, _) = parse_human_query(&pairs("service=a"), NOW, week).unwrap();
        assert_eq!((q.start, q.end), (NOW - H / 3, NOW));
        let (q, _) = parse_human_query(&pairs("lookback=2h"), NOW, week).unwrap();
        assert_eq!((q.start, q.end), (NOW - 2 * H, NOW));
        assert!(parse_human_query(&pairs("preset=1h&lookback=2h"), NOW, week).is_err());
        assert!(parse_human_query(&pairs("errors_only=1&successes_only=1"), NOW, week).is_err());
        let (q, f) = parse_human_query(
            &pairs("application=shop&param=a%3Db&order=asc&url_exact=true"),
            NOW,
            week,
        )
        .unwrap();
        assert_eq!(
            (q.service.as_str(), q.tags.clone()),
            ("shop", vec![("a".into(), "b".into())])
        );
        assert_eq!((f.order, f.url_exact), (Order::Asc, true));
    }
}
