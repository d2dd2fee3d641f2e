//! A function log line: one line an instance printed, as stored in the `logs` family and
//! served by the logs API. The platform captures it (`platform::logs`); this module owns
//! only its shape and field names.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// When the gateway read the line, µs since the epoch.
    pub time: u64,
    #[serde(rename = "instanceID")]
    pub instance_id: String,
    /// The request running on the instance when the line was printed; `None` for lines
    /// printed outside a request (start-up, between calls) or while several ran at once.
    pub request_id: Option<String>,
    /// `stdout`, `stderr`, or `platform` for the gateway's own request markers.
    pub stream: String,
    pub message: String,
    /// The line was longer than the platform keeps and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}
