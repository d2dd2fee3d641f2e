//! Jaeger agent datagrams (`emitBatch` in thrift compact, then binary): any bytes decode
//! to spans or an error, within the caps and a real memory budget, never a panic.
#![no_main]

use fctrace::budget::MemoryBudget;
use fctrace::receive::jaeger_thrift::{decode_emit_batch, ThriftProtocol};
use fctrace::receive::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let budget = MemoryBudget::new(64 << 20, 32 << 20);
    for protocol in [ThriftProtocol::Compact, ThriftProtocol::Binary] {
        let mut mem = budget.reserve();
        let _ = decode_emit_batch(data, protocol, &Limits::default(), &mut mem);
    }
});
