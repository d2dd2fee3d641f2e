//! The function registry: `[[functions]]` entries from the config file or `--functions
//! FILE`, checked into [`FunctionSpec`]s. Errors name the entry and the field.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::events::{self, Format, Subscription, Types};
use crate::duration;

/// One `[[functions]]` entry as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunction {
    pub service: Option<String>,
    pub name: Option<String>,
    /// A running HTTP server that is the function (one instance, never spawned).
    pub url: Option<String>,
    /// argv of a process to spawn per instance; it listens on `FC_SERVER_PORT`/`PORT`.
    pub command: Option<Vec<String>>,
    pub cwd: Option<PathBuf>,
    pub env: Option<BTreeMap<String, String>>,
    pub memory_mb: Option<u64>,
    pub timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub initializer: Option<bool>,
    pub instance_concurrency: Option<u32>,
    pub max_instances: Option<u32>,
    /// `[[functions.telemetry]]`: listeners of the function's telemetry events.
    pub telemetry: Option<Vec<RawTelemetry>>,
    /// Asynchronous calls: retries after a function error (0..=8), how long an event
    /// may wait, and where outcomes go (`http(s)://…` or `service/function`).
    pub async_retries: Option<u32>,
    pub max_event_age: Option<String>,
    /// Times one call chain may pass through the function before the next call is
    /// stopped (Lambda's recursive loop detection); 0 turns the guard off [default: 16].
    pub max_recursion_depth: Option<u32>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    /// Instances kept started ahead of traffic (`provision`), by schedule windows
    /// (`[[functions.provision_schedule]]`: `start`, `end` as `HH:MM` UTC, `instances`),
    /// and scaled up to keep running calls at a fraction of their slots.
    pub provisioned_instances: Option<u32>,
    /// The tenant (`--tenants`) the function, its spans, records, metrics and logs
    /// belong to [default: the default tenant, only without a tenants file].
    pub tenant: Option<String>,
    pub provision_schedule: Option<Vec<super::provision::RawWindow>>,
    pub provision_target_utilization: Option<f64>,
    pub provision_max_instances: Option<u32>,
}

/// Where an asynchronous call's outcome is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Url(String),
    /// Another function, called asynchronously with the outcome as its event.
    Function(String, String),
}

impl Destination {
    pub fn parse(v: &str) -> Result<Destination, String> {
        if v.starts_with("http://") || v.starts_with("https://") {
            return Ok(Destination::Url(v.to_owned()));
        }
        match v.split_once('/') {
            Some((s, f)) if valid_name(s) && valid_name(f) => {
                Ok(Destination::Function(s.to_owned(), f.to_owned()))
            }
            _ => Err(format!(
                "{v:?} is neither an http(s) URL nor service/function"
            )),
        }
    }
}

/// One `[[functions.telemetry]]` subscription as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub url: Option<String>,
    pub types: Option<Vec<String>>,
    pub format: Option<Format>,
    pub max_items: Option<u32>,
    pub max_bytes: Option<u32>,
    pub timeout_ms: Option<u32>,
}

impl RawTelemetry {
    /// Checked; the error names the field.
    pub fn check(&self) -> Result<Subscription, (&'static str, String)> {
        let url = self.url.clone().ok_or(("url", "required".to_owned()))?;
        events::check_url(&url).map_err(|e| ("url", e))?;
        let types =
            Types::parse(self.types.as_deref().unwrap_or_default()).map_err(|e| ("types", e))?;
        Ok(Subscription {
            url,
            types,
            format: self.format.unwrap_or(Format::Lambda),
            max_items: events::bounded("max_items", self.max_items, events::ITEMS)
                .map_err(|e| ("max_items", e))?,
            max_bytes: events::bounded("max_bytes", self.max_bytes, events::BYTES)
                .map_err(|e| ("max_bytes", e))?,
            timeout_ms: events::bounded("timeout_ms", self.timeout_ms, events::TIMEOUT_MS)
                .map_err(|e| ("timeout_ms", e))?,
        })
    }
}

/// A file given with `--functions`: only `[[functions]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionsFile {
    #[serde(default)]
    pub functions: Vec<RawFunction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    Url(String),
    Command {
        argv: Vec<String>,
        cwd: Option<PathBuf>,
        env: BTreeMap<String, String>,
    },
}

/// A checked function definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub service: String,
    pub name: String,
    pub runtime: Runtime,
    pub memory_mb: u64,
    pub timeout: Duration,
    pub idle_timeout: Duration,
    pub initializer: bool,
    pub instance_concurrency: u32,
    pub max_instances: u32,
    /// Listeners subscribed in the config (more may subscribe at run time).
    pub telemetry: Vec<Subscription>,
    pub async_retries: u32,
    pub max_event_age: Duration,
    pub max_recursion_depth: u32,
    pub on_success: Option<Destination>,
    pub on_failure: Option<Destination>,
    pub provision: super::provision::Provision,
    /// The tenant's name as written, and its id once the daemon resolved it (0: the
    /// default tenant).
    pub tenant: Option<String>,
    pub tenant_id: crate::store::keys::Tenant,
    /// A token of the tenant's for the function's own spans (set by the daemon, never
    /// configured): put in the endpoints the function is handed.
    pub ingest_token: Option<String>,
}

impl FunctionSpec {
    /// The platform's service name for this function's own spans.
    pub fn platform_service(&self) -> String {
        format!("FC:{}/{}", self.service, self.name)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("functions[{index}] ({label}): {field}: {message}")]
pub struct FunctionError {
    pub index: usize,
    pub label: String,
    pub field: &'static str,
    pub message: String,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Check every entry; the first problem is reported.
pub fn check(raw: &[RawFunction]) -> Result<Vec<FunctionSpec>, FunctionError> {
    let mut seen = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(index, f)| {
            let label = format!(
                "{}/{}",
                f.service.as_deref().unwrap_or("?"),
                f.name.as_deref().unwrap_or("?")
            );
            let err = |field: &'static str, message: String| FunctionError {
                index,
                label: label.clone(),
                field,
                message,
            };
            let service = f.service.clone().unwrap_or_default();
            if !valid_name(&service) {
                return Err(err(
                    "service",
                    "required: letters, digits, '-', '_' or '.'".into(),
                ));
            }
            let name = f.name.clone().unwrap_or_default();
            if !valid_name(&name) {
                return Err(err(
                    "name",
                    "required: letters, digits, '-', '_' or '.'".into(),
                ));
            }
            if !seen.insert((service.clone(), name.clone())) {
                return Err(err("name", "declared twice".into()));
            }
            let runtime = match (&f.url, &f.command) {
                (Some(url), None) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(err(
                            "url",
                            format!("{url:?} must start with http:// or https://"),
                        ));
                    }
                    if f.cwd.is_some() || f.env.is_some() {
                        return Err(err(
                            "cwd",
                            "cwd and env apply to command functions only".into(),
                        ));
                    }
                    Runtime::Url(url.trim_end_matches('/').to_owned())
                }
                (None, Some(argv)) => {
                    if argv.is_empty() || argv[0].is_empty() {
                        return Err(err("command", "must name a program".into()));
                    }
                    Runtime::Command {
                        argv: argv.clone(),
                        cwd: f.cwd.clone(),
                        env: f.env.clone().unwrap_or_default(),
                    }
                }
                _ => return Err(err("url", "give exactly one of url or command".into())),
            };
            let dur = |field: &'static str,
                       v: &Option<String>,
                       default: u64|
             -> Result<Duration, FunctionError> {
                match v {
                    None => Ok(Duration::from_secs(default)),
                    Some(text) => match duration::parse(text) {
                        Ok(d) if d.is_zero() => Err(err(field, "must be greater than 0".into())),
                        Ok(d) => Ok(d),
                        Err(e) => Err(err(field, e.to_string())),
                    },
                }
            };
            let memory_mb = f.memory_mb.unwrap_or(128);
            if !(64..=32768).contains(&memory_mb) {
                return Err(err(
                    "memory_mb",
                    format!("{memory_mb} is outside 64..=32768"),
                ));
            }
            let instance_concurrency = f.instance_concurrency.unwrap_or(1);
            if !(1..=200).contains(&instance_concurrency) {
                return Err(err(
                    "instance_concurrency",
                    format!("{instance_concurrency} is outside 1..=200"),
                ));
            }
            let max_instances = f.max_instances.unwrap_or(4);
            if !(1..=100).contains(&max_instances) {
                return Err(err(
                    "max_instances",
                    format!("{max_instances} is outside 1..=100"),
                ));
            }
            let telemetry = f
                .telemetry
                .iter()
                .flatten()
                .map(|t| t.check().map_err(|(field, m)| err(field, m)))
                .collect::<Result<Vec<_>, _>>()?;
            if telemetry.len() > events::MAX_LISTENERS {
                return Err(err(
                    "telemetry",
                    format!("at most {} listeners", events::MAX_LISTENERS),
                ));
            }
            let async_retries = f.async_retries.unwrap_or(2);
            if async_retries > 8 {
                return Err(err(
                    "async_retries",
                    format!("{async_retries} is outside 0..=8"),
                ));
            }
            let max_event_age = match &f.max_event_age {
                None => Duration::from_secs(6 * 3600),
                Some(_) => dur("max_event_age", &f.max_event_age, 0)?,
            };
            let destination = |field: &'static str, v: &Option<String>| {
                v.as_deref()
                    .map(Destination::parse)
                    .transpose()
                    .map_err(|m| err(field, m))
            };
            let provision = super::provision::Provision::check(
                f.provisioned_instances,
                f.provision_schedule.as_deref(),
                f.provision_target_utilization,
                f.provision_max_instances,
                max_instances,
            )
            .map_err(|(field, m)| err(field, m))?;
            Ok(FunctionSpec {
                tenant: f.tenant.clone(),
                tenant_id: 0,
                ingest_token: None,
                provision,
                async_retries,
                max_event_age,
                max_recursion_depth: f.max_recursion_depth.unwrap_or(16),
                on_success: destination("on_success", &f.on_success)?,
                on_failure: destination("on_failure", &f.on_failure)?,
                telemetry,
                service,
                name,
                runtime,
                memory_mb,
                timeout: dur("timeout", &f.timeout, 60)?,
                idle_timeout: dur("idle_timeout", &f.idle_timeout, 300)?,
                initializer: f.initializer.unwrap_or(false),
                instance_concurrency,
                max_instances,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(service: &str, name: &str) -> RawFunction {
        RawFunction {
            service: Some(service.into()),
            name: Some(name.into()),
            command: Some(vec!["python3".into(), "app.py".into()]),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_fields() {
        let specs = check(&[RawFunction {
            timeout: Some("10s".into()),
            initializer: Some(true),
            ..raw("demo", "hello")
        }])
        .unwrap();
        let s = &specs[0];
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!(s.idle_timeout, Duration::from_secs(300));
        assert_eq!(
            (s.memory_mb, s.instance_concurrency, s.max_instances),
            (128, 1, 4)
        );
        assert!(s.initializer);
        assert_eq!(s.platform_service(), "FC:demo/hello");
    }

    #[test]
    fn errors_name_entry_and_field() {
        let e = check(&[
            raw("demo", "a"),
            RawFunction {
                timeout: Some("soon".into()),
                ..raw("demo", "b")
            },
        ])
        .unwrap_err();
        assert_eq!(
            (e.index, e.field, e.label.as_str()),
            (1, "timeout", "demo/b")
        );
        assert!(
            e.to_string()
                .starts_with("functions[1] (demo/b): timeout: invalid duration"),
            "{e}"
        );
        let e = check(&[RawFunction {
            url: Some("http://x".into()),
            ..raw("demo", "a")
        }])
        .unwrap_err();
        assert_eq!(e.field, "url");
        let e = check(&[raw("demo", "a"), raw("demo", "a")]).unwrap_err();
        assert_eq!(e.message, "declared twice");
        let e = check(&[RawFunction {
            command: Some(vec![]),
            ..raw("demo", "a")
        }])
        .unwrap_err();
        assert_eq!(e.field, "command");
        let e = check(&[raw("de mo", "a")]).unwrap_err();
        assert_eq!(e.field, "service");
        let e = check(&[RawFunction {
            memory_mb: Some(1),
            ..raw("demo", "a")
        }])
        .unwrap_err();
        assert_eq!(e.field, "memory_mb");
    }
}
