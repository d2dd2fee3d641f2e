//! Jaeger sampling strategies files: any text parses to rules or an error; parsed rules
//! answer every lookup.
#![no_main]

use fctrace::sampling::strategies::Strategies;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(s) = Strategies::parse(text) {
            let service = s.for_service("fuzz");
            let _ = service.operation_probability("op");
        }
    }
});
