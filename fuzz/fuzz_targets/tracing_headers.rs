//! The serverless trace context: `x-fc-tracing-opentracing-span-context` strings and the
//! baggage headers, from any bytes; parsed, written back and parsed again.
#![no_main]

use std::str::FromStr;

use fctrace::model::SpanContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    if let Some(first) = lines.next() {
        if let Ok(ctx) = SpanContext::from_str(first) {
            // what fctrace writes, it reads back the same
            let again = SpanContext::from_str(&ctx.to_string()).expect("own context parses");
            assert_eq!(again.to_string(), ctx.to_string());
        }
    }
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = format!(
            "x-fc-tracing-opentracing-span-context-baggage-{}",
            name.trim()
        );
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value.trim()),
        ) {
            headers.append(n, v);
        }
    }
    let _ = fctrace::platform::baggage(&headers);
});
