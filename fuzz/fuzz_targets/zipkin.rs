//! Zipkin bodies: the same bytes as v2 JSON, v1 JSON and v2 protobuf, each decoded within
//! the caps and a real memory budget and mapped to the model, never a panic.
#![no_main]

use fctrace::budget::MemoryBudget;
use fctrace::receive::{zipkin, zipkin_v1, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let budget = MemoryBudget::new(64 << 20, 32 << 20);
    let limits = Limits::default();
    let mut mem = budget.reserve();
    if let Ok(spans) = zipkin::decode_json_v2(data, &limits, &mut mem) {
        let _ = zipkin::to_model(spans);
    }
    let mut mem = budget.reserve();
    if let Ok(spans) = zipkin_v1::decode_json_v1(data, &limits, &mut mem) {
        let _ = zipkin::to_model(spans);
    }
    let mut mem = budget.reserve();
    if let Ok(spans) = zipkin::decode_proto(data, &limits, &mut mem) {
        let _ = zipkin::to_model(spans);
    }
});
