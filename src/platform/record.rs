//! Invocation records: one per invocation, sampled or not, stored in the `invocations`
//! column family (JSON values) with the call's share of the function metrics, and what
//! decides their fields (outcome, operation, host).

use std::sync::Arc;
use std::time::Duration;

use super::context::TraceDecision;
use super::functions::FunctionSpec;
use super::{error_type, Platform};
use crate::clock::now_us;
use crate::model::{InvocationRecord, SpanContext, SpanId};
use crate::monitor::minute::{Call, Outcome};
use crate::monitor::Function as MonitoredFunction;
use crate::pipeline::{with_retries, CallFacts};

impl Platform {
    /// Store a call's record and its metrics in the background (with retries): the
    /// caller's answer does not wait for a group commit.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &self,
        spec: &FunctionSpec,
        request_id: &str,
        start_us: u64,
        duration: Duration,
        decision: &TraceDecision,
        invoke_span: SpanId,
        flags: u8,
        o: Outcomes,
    ) {
        let ctx = SpanContext {
            trace_id: decision.trace_id,
            span_id: invoke_span,
            parent_span_id: decision.caller.unwrap_or_default(),
            flags,
        };
        let outcome = outcome_of(o.error_type);
        if let (Some(i), Some(url)) = (self.sampler.intelligent(), &decision.url) {
            let failed = matches!(outcome, Outcome::FunctionError | Outcome::ServerError);
            i.observe(url, now_us(), failed, duration.as_micros() as u64);
        }
        let rec = InvocationRecord {
            service: spec.service.clone(),
            function: spec.name.clone(),
            qualifier: QUALIFIER.into(),
            version_id: String::new(),
            request_id: request_id.to_owned(),
            operation: o.operation.to_owned(),
            invocation_type: if o.attempt.is_some() { "Async" } else { "Sync" }.into(),
            start_time: start_us,
            duration_ms: duration.as_secs_f64() * 1000.0,
            memory_mb: spec.memory_mb,
            memory_usage_mb: o.peak_rss as f64 / (1024.0 * 1024.0),
            is_cold_start: o.cold,
            instance_event: match (&o.instance_id, o.cold) {
                (None, _) => String::new(),
                (Some(_), true) => "Created".into(),
                (Some(_), false) => "Reused".into(),
            },
            initialization_duration_ms: o.init_us as f64 / 1000.0,
            schedule_latency_ms: o.schedule_us as f64 / 1000.0,
            has_function_error: outcome == Outcome::FunctionError,
            error_type: o.error_type.map(str::to_owned),
            status_code: o.status_code,
            trace_context: ctx.to_string(),
            is_sampled: decision.sampled,
            instance_id: o.instance_id,
            hostname: hostname().to_owned(),
            ip_address: o.ip_address,
            active_instances: o.instances,
            resource_mode: o.provision.mode.to_owned(),
            attempt: o.attempt.as_ref().map_or(1, |a| a.attempt),
            async_status: o.attempt.as_ref().map(|a| {
                match (o.error_type, a.last) {
                    (None, _) => "Succeeded",
                    (Some(_), true) => "Failed",
                    (Some(_), false) => "Retrying",
                }
                .to_owned()
            }),
        };
        let call = Call {
            latency_us: duration.as_micros() as u64,
            outcome,
            cold_start: o.cold,
            init_us: o.init_us,
            memory_usage_kb: o.peak_rss / 1024,
            memory_limit_mb: spec.memory_mb,
            concurrent: o.concurrent,
            instances: o.instances,
            billed_ms: o.billed_ms,
            provisioned: o.provision.provisioned,
            spillover: o.provision.spillover,
            provisioned_instances: o.provision.instances,
            provisioned_running: o.provision.running,
            provision_utilization_permille: o.provision.utilization_permille,
        };
        self.store_call(
            spec.tenant_id,
            CallFacts {
                record: Some(rec),
                function: Some(monitor_function(spec)),
                at_us: start_us,
                call,
                platform_concurrent: o.platform_concurrent,
            },
        );
    }

    pub(super) fn store_call(&self, tenant: crate::store::keys::Tenant, facts: CallFacts) {
        self.metrics
            .faas()
            .observe(facts.function.as_ref(), &facts.call);
        let pipeline = self.pipeline.clone();
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            let write = || pipeline.submit_call(tenant, &facts);
            if let Err(e) = with_retries(&metrics, write).await {
                tracing::error!(error = %e, "invocation record and metrics not stored after retries");
            }
        });
    }
}

/// Functions have one qualifier until versions and aliases exist.
pub(super) const QUALIFIER: &str = "LATEST";

pub(super) fn monitor_function(spec: &FunctionSpec) -> MonitoredFunction {
    MonitoredFunction {
        service: spec.service.clone(),
        function: spec.name.clone(),
        qualifier: QUALIFIER.into(),
    }
}

/// The error type of a call stopped by the recursion guard.
pub(super) const RECURSION_ERROR: &str = "RecursiveInvocationException";

/// How a call ended, for the metrics, from its error type: the function's own failures
/// (an initializer that fails is the function's code), the platform's (no instance
/// started) and throttles.
pub(super) fn outcome_of(error_type: Option<&str>) -> Outcome {
    match error_type {
        None => Outcome::Ok,
        Some(error_type::START) => Outcome::ServerError,
        Some("Throttled") => Outcome::ConcurrencyThrottle,
        Some("ResourceThrottled") => Outcome::ResourceThrottle,
        Some(RECURSION_ERROR) => Outcome::RecursionDropped,
        Some(_) => Outcome::FunctionError,
    }
}

/// What a call's record and metrics say beyond its identity and timing.
#[derive(Default)]
pub(super) struct Outcomes {
    pub(super) cold: bool,
    /// The initializer's time on a cold start.
    pub(super) init_us: u64,
    pub(super) peak_rss: u64,
    pub(super) error_type: Option<&'static str>,
    pub(super) status_code: u16,
    pub(super) instance_id: Option<String>,
    pub(super) ip_address: String,
    /// Calls on the function, and its instances, as the call started.
    pub(super) concurrent: u64,
    pub(super) instances: u64,
    pub(super) platform_concurrent: u64,
    pub(super) billed_ms: u64,
    /// From arrival to the function's run starting.
    pub(super) schedule_us: u64,
    pub(super) operation: &'static str,
    /// Which attempt of an asynchronous call (`None` for synchronous calls).
    pub(super) attempt: Option<super::queue::AsyncCall>,
    pub(super) provision: ProvisionFacts,
}

/// Where a call ran, as provisioning sees it (`provision`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ProvisionFacts {
    /// `Provision` or `OnDemand`; "" when it ran on no instance.
    pub(super) mode: &'static str,
    pub(super) provisioned: bool,
    /// On-demand, though the function has provisioning.
    pub(super) spillover: bool,
    /// The function's provisioned instances and the calls on them, this one included.
    pub(super) instances: u64,
    pub(super) running: u64,
    pub(super) utilization_permille: u64,
}

/// The record's `operation` for a trigger.
pub(super) fn operation_of(trigger: &str) -> &'static str {
    if trigger == "http" {
        "HttpInvoke"
    } else {
        "InvokeFunction"
    }
}

/// This machine's name, read once (instances run here).
pub(super) fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}
