//! Event shapes against the platforms' documented examples.

use super::*;

#[test]
fn times_are_rfc3339_utc_with_milliseconds() {
    // FunctionGraph's example time
    assert_eq!(time(1_675_209_830_123_456), "2023-02-01T00:03:50.123Z");
    assert_eq!(time(0), "1970-01-01T00:00:00.000Z");
}

#[test]
fn xray_context_as_aws_documents_it() {
    let t = Tracing {
        trace_id: TraceId(0x5759e988bd862e3fe1be46a994272793),
        span_id: SpanId(0x53995c3f42cd8ad8),
        parent_id: SpanId(1),
        sampled: true,
    };
    assert_eq!(
        t.xray(),
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    );
}

#[test]
fn function_lines_in_both_shapes() {
    let e = Event::Function {
        at: 1_675_209_830_000_000,
        message: "[Function]this is a simple log.".into(),
    };
    assert_eq!(
        shape(&e, Format::FunctionGraph),
        json!({"name": "function", "startTime": "2023-02-01T00:03:50.000Z", "logs": "[Function]this is a simple log."})
    );
    assert_eq!(
        shape(&e, Format::Lambda),
        json!({"time": "2023-02-01T00:03:50.000Z", "type": "function", "record": "[Function]this is a simple log."})
    );
}

#[test]
fn buffering_is_held_to_the_platforms_bounds() {
    assert_eq!(bounded("max_items", None, ITEMS), Ok(10_000));
    assert_eq!(bounded("max_items", Some(1000), ITEMS), Ok(1000));
    assert!(bounded("max_items", Some(999), ITEMS).is_err());
    assert!(bounded("max_bytes", Some(1_048_577), BYTES).is_err());
    assert!(bounded("timeout_ms", Some(24), TIMEOUT_MS).is_err());
    assert!(Types::parse(&[]).is_err());
    assert!(Types::parse(&["platform".into(), "logs".into()]).is_err());
    assert!(check_url("localhost:8080").is_err());
}
