//! Which Telemetry API events one invocation makes, from what the gateway measured: the
//! init events of a cold start (`initStart`, `initRuntimeDone`, `initReport`), then
//! `start` when the function is handed the request, and `runtimeDone` and `report` once
//! it answered (after its last output lines, see `logs`). Shaping and sending is
//! `events`'.

use super::error_type;
use super::events::{Event, Report, Subscribers, Tracing};
use super::functions::FunctionSpec;
use super::instance::ColdStart;

/// The cold start's events; `started` says whether an instance came out of it.
pub fn init(
    subs: &Subscribers,
    cold: &ColdStart,
    spec: &FunctionSpec,
    request_id: &str,
    instance: &str,
    started: bool,
) {
    let steps = [cold.prepare_code, cold.runtime_init, cold.initializer];
    let Some(first) = steps.iter().flatten().next() else {
        return;
    };
    let end = steps
        .iter()
        .flatten()
        .map(|t| t.start_us + t.duration_us)
        .max()
        .unwrap_or(first.start_us);
    let status = if started { "success" } else { "error" };
    let runtime_done = cold
        .runtime_init
        .map_or(end, |t| t.start_us + t.duration_us);
    for e in [
        Event::InitStart {
            at: first.start_us,
            request_id: request_id.to_owned(),
            function: spec.name.clone(),
            instance: instance.to_owned(),
            memory_mb: spec.memory_mb,
        },
        Event::InitRuntimeDone {
            at: runtime_done,
            request_id: request_id.to_owned(),
            status,
        },
        Event::InitReport {
            start: first.start_us,
            end,
            request_id: request_id.to_owned(),
            status,
            instance: instance.to_owned(),
            memory_mb: spec.memory_mb,
        },
    ] {
        subs.offer(&e);
    }
}

/// The cold start's whole duration, first step to last, in ms.
pub fn init_ms(cold: &ColdStart) -> f64 {
    let steps = [cold.prepare_code, cold.runtime_init, cold.initializer];
    let start = steps.iter().flatten().map(|t| t.start_us).min();
    let end = steps
        .iter()
        .flatten()
        .map(|t| t.start_us + t.duration_us)
        .max();
    match (start, end) {
        (Some(s), Some(e)) => e.saturating_sub(s) as f64 / 1000.0,
        _ => 0.0,
    }
}

/// How the call ended, as the events say it: `success`, `timeout` or `error`.
pub fn status(error: Option<&str>) -> &'static str {
    match error {
        None => "success",
        Some(error_type::TIMEOUT) => "timeout",
        Some(_) => "error",
    }
}

/// What the end events need.
pub struct Ended<'a> {
    pub request_id: &'a str,
    pub instance: &'a str,
    pub run_start: u64,
    pub run_end: u64,
    pub error_type: Option<&'a str>,
    pub produced_bytes: u64,
    pub report: Report,
    pub tracing: Tracing,
}

/// `runtimeDone` and `report`.
pub fn end_events(e: &Ended) -> [Event; 2] {
    let status = status(e.error_type);
    [
        Event::RuntimeDone {
            start: e.run_start,
            end: e.run_end,
            request_id: e.request_id.to_owned(),
            status,
            error_type: e.error_type.map(str::to_owned),
            produced_bytes: e.produced_bytes,
            tracing: e.tracing,
        },
        Event::Report {
            start: e.run_start,
            end: e.run_end,
            request_id: e.request_id.to_owned(),
            status,
            instance: e.instance.to_owned(),
            report: e.report.clone(),
            tracing: e.tracing,
        },
    ]
}
