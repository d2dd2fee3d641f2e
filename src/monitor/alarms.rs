//! Alarms over the function metrics: rules from a file (`--alarms`, reloaded when it
//! changes; a bad file keeps the last good rules), evaluated every `--alarm-interval`
//! against the metrics store, with states `OK`, `ALARM` and `INSUFFICIENT_DATA`. Each
//! transition is kept (the last [`MAX_TRANSITIONS`]) and, when the rule names a webhook,
//! POSTed as JSON from a bounded queue with retries and backoff; outcomes are counted.
//!
//! A rule looks at the last `periods` periods of `period` seconds, the one being filled
//! included (metrics are served as they fill), and is in `ALARM` when at least
//! `datapoints_to_alarm` of the periods that have a value breach the threshold; with no
//! value at all it is `INSUFFICIENT_DATA`. This module decides states; the metrics come
//! from [`super::series`], and HTTP is the server's and `reqwest`'s.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::catalog::{self, Level};
use super::{series, Function};
use crate::store::keys::Tenant;

/// A tenant's id by name ("": the default tenant); `None` for a tenant that does not exist.
pub type TenantOf = dyn Fn(&str) -> Option<Tenant> + Send + Sync;
use crate::store::MetricSource;
use crate::telemetry::Metrics;

/// Transitions kept for `GET /api/v1/alarms`.
pub const MAX_TRANSITIONS: usize = 1000;
/// Notifications waiting to be sent; past this a transition's POST is dropped (counted).
pub const QUEUE: usize = 1024;
/// Attempts per notification, with backoff 0.5 s, 1 s, 2 s between them.
const ATTEMPTS: u32 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// The tenant whose metrics it watches (`--tenants`); empty: the default tenant.
    #[serde(default)]
    pub tenant: String,
    /// A metric of `GET /api/v1/metrics`, e.g. `FunctionFunctionErrorsRate`.
    pub metric: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub function: String,
    #[serde(default = "latest")]
    pub qualifier: String,
    /// How a period's minutes make its value: `value` (the metric over the period's
    /// calls, the default), or `sum`, `avg`, `max`, `min` of its per-minute values.
    #[serde(default = "value")]
    pub statistic: String,
    /// `>`, `>=`, `<`, `<=`
    pub comparison: String,
    pub threshold: f64,
    /// Seconds, a multiple of 60 (default 60).
    #[serde(default = "minute")]
    pub period: u64,
    /// Periods evaluated (default 1).
    #[serde(default = "one")]
    pub periods: u32,
    /// Breaching periods that make an alarm (default: `periods`).
    #[serde(default)]
    pub datapoints_to_alarm: Option<u32>,
    /// Where transitions are POSTed.
    #[serde(default)]
    pub webhook: Option<String>,
}

fn latest() -> String {
    "LATEST".into()
}
fn value() -> String {
    "value".into()
}
fn minute() -> u64 {
    60
}
fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<Rule>,
}

/// The rules of a file's text, checked: metric names exist, dimensions fit the level,
/// numbers make sense, names are unique.
pub fn parse(text: &str) -> Result<Vec<Rule>, String> {
    let file: RulesFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut names = std::collections::HashSet::new();
    for (i, r) in file.rules.iter().enumerate() {
        let at = |m: String| format!("rules[{i}] ({}): {m}", r.name);
        if r.name.is_empty() || !names.insert(r.name.as_str()) {
            return Err(at("a rule needs a name of its own".into()));
        }
        let (level, _) =
            catalog::find(&r.metric).ok_or_else(|| at(format!("unknown metric {:?}", r.metric)))?;
        if level != Level::Region && r.service.is_empty() {
            return Err(at("needs a service".into()));
        }
        if level == Level::Function && r.function.is_empty() {
            return Err(at("needs a function".into()));
        }
        if !matches!(r.comparison.as_str(), ">" | ">=" | "<" | "<=") {
            return Err(at("comparison must be >, >=, < or <=".into()));
        }
        if !matches!(
            r.statistic.as_str(),
            "value" | "sum" | "avg" | "max" | "min"
        ) {
            return Err(at("statistic must be value, sum, avg, max or min".into()));
        }
        if r.period == 0 || r.period % 60 != 0 || r.period > 86400 {
            return Err(at(
                "period must be a multiple of 60 seconds, at most a day".into()
            ));
        }
        if r.periods == 0 || r.periods > 1440 {
            return Err(at("periods must be 1 to 1440".into()));
        }
        if r.datapoints_to_alarm
            .is_some_and(|m| m == 0 || m > r.periods)
        {
            return Err(at("datapoints_to_alarm must be 1 to periods".into()));
        }
        if !r.threshold.is_finite() {
            return Err(at("threshold must be a number".into()));
        }
        if let Some(w) = &r.webhook {
            if !(w.starts_with("http://") || w.starts_with("https://")) {
                return Err(at("webhook must be an http(s) URL".into()));
            }
        }
    }
    Ok(file.rules)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Ok,
    Alarm,
    InsufficientData,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub alarm: String,
    pub metric: String,
    pub from: State,
    pub to: State,
    /// ms since the epoch
    pub at: u64,
    pub reason: String,
    /// The breaching or latest value that decided it.
    pub value: Option<f64>,
    pub threshold: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmView {
    #[serde(flatten)]
    pub rule: Rule,
    pub state: State,
    /// ms since the epoch of the last transition (0: never left its first state)
    pub since: u64,
}

pub struct Alarms {
    rules: RwLock<Arc<Vec<Rule>>>,
    states: Mutex<HashMap<String, (State, u64)>>,
    transitions: Mutex<VecDeque<Transition>>,
    queue: mpsc::Sender<(String, Transition)>,
}

impl Alarms {
    /// The alarms of `rules`, and the receiving end of their notification queue (for
    /// [`send_loop`]).
    pub fn new(rules: Vec<Rule>) -> (Arc<Alarms>, mpsc::Receiver<(String, Transition)>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let a = Alarms {
            rules: RwLock::new(Arc::new(rules)),
            states: Mutex::new(HashMap::new()),
            transitions: Mutex::new(VecDeque::new()),
            queue: tx,
        };
        (Arc::new(a), rx)
    }

    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
    }

    fn rules(&self) -> Arc<Vec<Rule>> {
        Arc::clone(&self.rules.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Every rule with its state, and the transitions, newest last.
    pub fn view(&self) -> (Vec<AlarmView>, Vec<Transition>) {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let rules = self
            .rules()
            .iter()
            .map(|r| {
                let (state, since) = states
                    .get(&r.name)
                    .copied()
                    .unwrap_or((State::InsufficientData, 0));
                AlarmView {
                    rule: r.clone(),
                    state,
                    since,
                }
            })
            .collect();
        let transitions = self
            .transitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        (rules, transitions)
    }

    /// Evaluate every rule at `now_us` (a rule's tenant found by `tenant_of`);
    /// transitions are kept and queued.
    pub fn evaluate(
        &self,
        store: &dyn MetricSource,
        metrics: &Metrics,
        now_us: u64,
        tenant_of: &TenantOf,
    ) {
        let rules = self.rules();
        // store reads first: the states' lock is not held across them
        let decided: Vec<_> = rules
            .iter()
            .filter_map(|rule| match decide(store, rule, now_us, tenant_of) {
                Ok(d) => Some((rule, d)),
                Err(e) => {
                    tracing::warn!(alarm = %rule.name, error = %e, "alarm not evaluated");
                    None
                }
            })
            .collect();
        // a query node that could not read every store node decides nothing this round:
        // part of the calls would pass for all of them
        let missed = store.missed();
        if !missed.is_empty() {
            tracing::warn!(missed = %missed.join("; "), "alarms not evaluated this round");
            return;
        }
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.retain(|name, _| rules.iter().any(|r| &r.name == name));
        for (rule, (to, value, reason)) in decided {
            let entry = states
                .entry(rule.name.clone())
                .or_insert((State::InsufficientData, 0));
            if entry.0 == to {
                continue;
            }
            let t = Transition {
                alarm: rule.name.clone(),
                metric: rule.metric.clone(),
                from: entry.0,
                to,
                at: now_us / 1000,
                reason,
                value,
                threshold: rule.threshold,
            };
            *entry = (to, now_us / 1000);
            tracing::info!(alarm = %rule.name, from = ?t.from, to = ?t.to, "alarm state changed");
            if let Some(url) = &rule.webhook {
                if self.queue.try_send((url.clone(), t.clone())).is_err() {
                    metrics.alarm_notification("dropped");
                }
            }
            let mut kept = self.transitions.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() >= MAX_TRANSITIONS {
                kept.pop_front();
            }
            kept.push_back(t);
        }
    }
}

fn breaches(rule: &Rule, v: f64) -> bool {
    match rule.comparison.as_str() {
        ">" => v > rule.threshold,
        ">=" => v >= rule.threshold,
        "<" => v < rule.threshold,
        _ => v <= rule.threshold,
    }
}

/// The state a rule is in at `now_us`, the value that decided it, and why.
fn decide(
    store: &dyn MetricSource,
    rule: &Rule,
    now_us: u64,
    tenant_of: &TenantOf,
) -> Result<(State, Option<f64>, String), crate::store::StoreError> {
    let Some((level, base)) = catalog::find(&rule.metric) else {
        return Ok((State::InsufficientData, None, "unknown metric".into()));
    };
    let Some(tenant) = tenant_of(&rule.tenant) else {
        return Ok((State::InsufficientData, None, "unknown tenant".into()));
    };
    let function = Function {
        service: rule.service.clone(),
        function: rule.function.clone(),
        qualifier: rule.qualifier.clone(),
    };
    let period_us = rule.period * 1_000_000;
    let current = now_us / period_us * period_us;
    let start = current.saturating_sub(period_us * (u64::from(rule.periods) - 1));
    let window = (start, now_us);
    let values: Vec<f64> = if rule.statistic == "value" {
        series(store, tenant, level, base, &function, window, rule.period)?
            .into_iter()
            .map(|p| p.value)
            .collect()
    } else {
        // per-minute values, combined within each period
        let minutes = series(store, tenant, level, base, &function, window, 60)?;
        let per = period_us / 1000;
        minutes
            .chunk_by(|a, b| a.timestamp_ms / per == b.timestamp_ms / per)
            .map(|g| {
                let vals = g.iter().map(|p| p.value);
                match rule.statistic.as_str() {
                    "sum" => vals.sum(),
                    "avg" => vals.sum::<f64>() / g.len() as f64,
                    "max" => vals.fold(f64::MIN, f64::max),
                    _ => vals.fold(f64::MAX, f64::min),
                }
            })
            .collect()
    };
    if values.is_empty() {
        return Ok((
            State::InsufficientData,
            None,
            format!("no datapoint in the last {} period(s)", rule.periods),
        ));
    }
    let breaching: Vec<f64> = values
        .iter()
        .copied()
        .filter(|&v| breaches(rule, v))
        .collect();
    let needed = rule.datapoints_to_alarm.unwrap_or(rule.periods) as usize;
    let (state, value) = if breaching.len() >= needed {
        (State::Alarm, breaching.last().copied())
    } else {
        (State::Ok, values.last().copied())
    };
    Ok((
        state,
        value,
        format!(
            "{} of {} datapoint(s) {} {} (needed {needed})",
            breaching.len(),
            values.len(),
            rule.comparison,
            rule.threshold
        ),
    ))
}

/// Evaluate every `interval` until `stop`.
pub async fn evaluate_loop(
    alarms: Arc<Alarms>,
    store: Arc<dyn MetricSource + Send + Sync>,
    metrics: Arc<Metrics>,
    tenant_of: Arc<TenantOf>,
    interval: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    crate::clock::every(interval, stop, || async {
        let (a, s, m, t) = (
            Arc::clone(&alarms),
            Arc::clone(&store),
            Arc::clone(&metrics),
            Arc::clone(&tenant_of),
        );
        let now = crate::clock::now_us();
        // store reads: off the async threads
        let _ = tokio::task::spawn_blocking(move || a.evaluate(&*s, &m, now, &*t)).await;
    })
    .await
}

/// POST each queued transition to its webhook, retrying with backoff; counts `sent`,
/// `failed` (after every attempt) and, in `evaluate`, `dropped` (queue full).
pub async fn send_loop(
    mut queue: mpsc::Receiver<(String, Transition)>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    loop {
        let (url, t) = tokio::select! {
            item = queue.recv() => match item { Some(i) => i, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let body = serde_json::to_vec(&t).unwrap_or_default();
        let mut delay = Duration::from_millis(500);
        let mut sent = false;
        for attempt in 1..=ATTEMPTS {
            let r = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                sent = true;
                break;
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        metrics.alarm_notification(if sent { "sent" } else { "failed" });
        if !sent {
            tracing::warn!(alarm = %t.alarm, url = %url, "alarm notification not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_checked() {
        let ok = r#"{"rules": [{"name": "e", "metric": "FunctionFunctionErrors",
            "service": "s", "function": "f", "comparison": ">=", "threshold": 1,
            "periods": 5, "datapoints_to_alarm": 3, "webhook": "http://127.0.0.1:1/h"}]}"#;
        let rules = parse(ok).unwrap();
        assert_eq!(rules[0].period, 60);
        assert_eq!(rules[0].qualifier, "LATEST");
        for (bad, why) in [
            (
                ok.replace("FunctionFunctionErrors", "Nope"),
                "unknown metric",
            ),
            (ok.replace(r#""function": "f","#, ""), "needs a function"),
            (ok.replace(">=", "=="), "comparison"),
            (
                ok.replace(r#""datapoints_to_alarm": 3"#, r#""datapoints_to_alarm": 6"#),
                "datapoints_to_alarm",
            ),
            (ok.replace("http://", "ftp://"), "webhook"),
            (
                ok.replace(r#""threshold": 1"#, r#""threshold": 1, "extra": 2"#),
                "unknown field",
            ),
            ("{".to_owned(), "EOF"),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
