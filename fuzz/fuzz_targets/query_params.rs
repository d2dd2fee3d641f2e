//! Query strings of the Jaeger, human and v3 search APIs: any bytes parse to a query or
//! a 400's message.
#![no_main]

use std::time::Duration;

use fctrace::query::params;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let pairs = params::pairs(Some(&raw));
    let now = 1_800_000_000_000_000;
    let retention = Duration::from_secs(72 * 3600);
    let _ = params::parse_trace_query(&pairs, now, retention);
    let _ = params::parse_human_query(&pairs, now, retention);
    let _ = params::parse_v3_query(&pairs, now, retention);
});
