//! OTLP/JSON export requests: charged, parsed, decoded and mapped, or refused; never a
//! panic.
#![no_main]

use fctrace::budget::MemoryBudget;
use fctrace::receive::{decode_otlp, Limits, OtlpFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let budget = MemoryBudget::new(64 << 20, 32 << 20);
    let mut mem = budget.reserve();
    let _ = decode_otlp(data, OtlpFormat::Json, &Limits::default(), &mut mem);
});
