//! Jaeger thrift binary bodies: any bytes decode to spans or an error, within the caps
//! and a real memory budget, never a panic or an allocation past the budget.
#![no_main]

use fctrace::budget::MemoryBudget;
use fctrace::receive::jaeger_thrift::{decode_batch, ThriftProtocol};
use fctrace::receive::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let budget = MemoryBudget::new(64 << 20, 32 << 20);
    let mut mem = budget.reserve();
    let _ = decode_batch(data, ThriftProtocol::Binary, &Limits::default(), &mut mem);
});
