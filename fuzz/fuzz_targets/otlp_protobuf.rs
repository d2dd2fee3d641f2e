//! OTLP protobuf export requests: scanned, charged, decoded and mapped to model spans,
//! or refused; never a panic.
#![no_main]

use fctrace::budget::MemoryBudget;
use fctrace::receive::{decode_otlp, otlp::map_request, Limits, OtlpFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let budget = MemoryBudget::new(64 << 20, 32 << 20);
    let mut mem = budget.reserve();
    if let Ok(req) = decode_otlp(data, OtlpFormat::Protobuf, &Limits::default(), &mut mem) {
        let _ = map_request(req);
    }
});
