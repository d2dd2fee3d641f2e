//! Jaeger api_v2 `PostSpansRequest` bodies (the gRPC collector's): any bytes decode to
//! spans or an error, counted and charged before prost decodes, never a panic.
#![no_main]

use fctrace::budget::MemoryBudget;
use fctrace::receive::jaeger_proto::decode_post_spans;
use fctrace::receive::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let budget = MemoryBudget::new(64 << 20, 32 << 20);
    let mut mem = budget.reserve();
    let _ = decode_post_spans(data, &Limits::default(), &mut mem);
});
