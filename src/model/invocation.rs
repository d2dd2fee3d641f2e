//! The invocation record: what one gateway call did, as stored in the `invocations`
//! family and served by the call-analysis API. The platform fills it (`platform::record`);
//! this module owns only its shape and field names.

use serde::{Deserialize, Serialize};

/// What one invocation did, with the field names of the platforms' request-level
/// metric logs (call analysis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRecord {
    #[serde(rename = "serviceName")]
    pub service: String,
    #[serde(rename = "functionName")]
    pub function: String,
    pub qualifier: String,
    /// The service version the qualifier resolved to ("" until versions exist).
    pub version_id: String,
    pub request_id: String,
    /// `InvokeFunction` (an event) or `HttpInvoke` (an HTTP trigger).
    pub operation: String,
    /// `Sync` (asynchronous invocations come later).
    pub invocation_type: String,
    /// Start of the invocation, µs since the epoch.
    pub start_time: u64,
    pub duration_ms: f64,
    #[serde(rename = "memoryMB")]
    pub memory_mb: u64,
    /// Peak resident memory of the instance seen during the invocation (0 when unknown).
    #[serde(rename = "memoryUsageMB")]
    pub memory_usage_mb: f64,
    pub is_cold_start: bool,
    /// `Created` when this call started its instance, `Reused` when it found one warm,
    /// "" when it ran on none.
    pub instance_event: String,
    /// The initializer's time on a cold start (0 without one).
    pub initialization_duration_ms: f64,
    /// From the call's arrival to the function starting to run on its instance (cold
    /// start included); 0 when it never ran.
    pub schedule_latency_ms: f64,
    pub has_function_error: bool,
    pub error_type: Option<String>,
    pub status_code: u16,
    pub trace_context: String,
    pub is_sampled: bool,
    #[serde(rename = "instanceID")]
    pub instance_id: Option<String>,
    /// The machine the instance runs on.
    pub hostname: String,
    /// Where the gateway reached the instance.
    pub ip_address: String,
    /// The function's instances when the call started.
    pub active_instances: u64,
    /// `Provision` when it ran on a provisioned instance, `OnDemand` on another; "" when
    /// it ran on none.
    #[serde(default)]
    pub resource_mode: String,
    /// Which attempt of an asynchronous call this was (1 for synchronous calls).
    #[serde(default = "one")]
    pub attempt: u32,
    /// For asynchronous calls: `Retrying`, `Succeeded` or `Failed` after this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_status: Option<String>,
}

fn one() -> u32 {
    1
}
