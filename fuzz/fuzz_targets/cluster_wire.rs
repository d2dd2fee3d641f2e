//! What crosses the cluster's network: a log message (`EncodedBatch::from_wire`, what a
//! store node consumes) and a store node's traces answer (`traces_from_wire`, what a
//! query node reads). Either is an error or a value, never a panic or an allocation
//! beyond the input's size; a batch that decodes encodes back to the same bytes.
#![no_main]

use fctrace::store::trace_wire::traces_from_wire;
use fctrace::store::EncodedBatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = EncodedBatch::from_wire(data) {
        assert_eq!(batch.to_wire(), data);
    }
    let _ = traces_from_wire(data);
});
