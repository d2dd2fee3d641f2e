//! OTLP protobuf export requests: scanned, charged, decoded and mapped to model spans,
//! or refused; never a panic. And differential: whatever the scan lets through, the
//! direct decoder (`otlp_wire`) must answer as prost's decode and the shared mapping do.
#![no_main]

use fctrace::budget::MemoryBudget;
use fctrace::receive::{decode_otlp, otlp::map_request, Limits, OtlpFormat};
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let budget = MemoryBudget::new(64 << 20, 32 << 20);
    let mut mem = budget.reserve();
    let limits = Limits::default();
    let direct = decode_otlp(data, OtlpFormat::Protobuf, &limits, &mut mem);
    if fctrace::receive::otlp_cost::scan_protobuf(data, &limits).is_err() {
        assert!(direct.is_err());
        return;
    }
    match (direct, ExportTraceServiceRequest::decode(data)) {
        (Ok(d), Ok(req)) => {
            let p = map_request(req);
            // compared as text: a NaN attribute is equal to itself there
            assert_eq!(format!("{:?}", d.spans), format!("{:?}", p.spans));
            assert_eq!(d.rejected, p.rejected);
        }
        (Err(_), Err(_)) => {}
        (d, p) => panic!("direct decoder {:?} but prost {:?}", d.map(|m| m.spans.len()), p.map(|_| ())),
    }
});
