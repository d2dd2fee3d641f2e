//! Invocation records: one per invocation, sampled or not, stored in the `invocations`
//! column family (JSON values) and read back newest first.

use serde::{Deserialize, Serialize};

/// What one invocation did, as a function console lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRecord {
    pub service: String,
    pub function: String,
    pub qualifier: String,
    pub request_id: String,
    /// Start of the invocation, µs since the epoch.
    pub start_time: u64,
    pub duration_ms: f64,
    #[serde(rename = "memoryMB")]
    pub memory_mb: u64,
    /// Peak resident memory of the instance seen during the invocation (0 when unknown).
    #[serde(rename = "memoryUsageMB")]
    pub memory_usage_mb: f64,
    pub is_cold_start: bool,
    pub initialization_duration_ms: f64,
    pub has_function_error: bool,
    pub error_type: Option<String>,
    pub status_code: u16,
    pub trace_context: String,
    pub is_sampled: bool,
    pub instance_id: Option<String>,
}
