//! Inbound and outbound trace context, against the formats' own documented examples.

use std::sync::Arc;

use super::*;
use crate::sampling::Rules;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// (trace id, caller span, sampled, format, warnings) for these headers.
fn decide(pairs: &[(&str, &str)]) -> (u128, Option<u64>, bool, Option<&'static str>, usize) {
    // a sampler that has already spent its one trace a second: fresh traces are not sampled
    let sampler = HeadSampler::new(Arc::new(Rules::load(None).unwrap()));
    sampler.decide("FC:s/f", "InvokeFunction", TraceId(9));
    let d = decide_trace(&headers(pairs), &sampler, "FC:s/f", "invoke");
    (
        d.trace_id.0,
        d.caller.map(|s| s.0),
        d.sampled,
        d.format,
        d.warnings.len(),
    )
}

#[test]
fn w3c_traceparent_as_the_spec_shows_it() {
    let got = decide(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )]);
    assert_eq!(
        got,
        (
            0x4bf92f3577b34da6a3ce929d0e0e4736,
            Some(0x00f067aa0ba902b7),
            true,
            Some("traceparent"),
            0
        )
    );
    // not sampled by the caller: its decision wins
    let got = decide(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )]);
    assert!(!got.2);
    // a later version may append fields; version 00 may not
    assert_eq!(
        decide(&[(
            "traceparent",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        )])
        .3,
        Some("traceparent")
    );
    for bad in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "garbage",
    ] {
        let (_, caller, sampled, format, warnings) = decide(&[("traceparent", bad)]);
        assert_eq!(
            (caller, sampled, format, warnings),
            (None, false, None, 1),
            "{bad}"
        );
    }
}

#[test]
fn jaeger_b3_and_xray_contexts() {
    assert_eq!(
        decide(&[(
            "uber-trace-id",
            "5f22f355044a957a%3A2b3b4c5d6e7f8091%3A0%3A1"
        )]),
        (
            0x5f22f355044a957a,
            Some(0x2b3b4c5d6e7f8091),
            true,
            Some("uber-trace-id"),
            0
        )
    );
    assert_eq!(
        decide(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"
        )]),
        (
            0x80f198ee56343ba864fe8b2a57d3eff7,
            Some(0xe457b5a2e4d86bd1),
            true,
            Some("b3"),
            0
        )
    );
    assert_eq!(
        decide(&[
            ("X-B3-TraceId", "80f198ee56343ba8"),
            ("X-B3-SpanId", "e457b5a2e4d86bd1"),
            ("X-B3-Sampled", "1"),
        ]),
        (
            0x80f198ee56343ba8,
            Some(0xe457b5a2e4d86bd1),
            true,
            Some("x-b3-traceid"),
            0
        )
    );
    // the example of AWS's X-Ray documentation
    assert_eq!(
        decide(&[(
            "X-Amzn-Trace-Id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        )]),
        (
            0x5759e988bd862e3fe1be46a994272793,
            Some(0x53995c3f42cd8ad8),
            true,
            Some("x-amzn-trace-id"),
            0
        )
    );
    // b3 "0" alone: a fresh trace the caller asked not to sample
    let (_, caller, sampled, format, _) = decide(&[("b3", "0")]);
    assert_eq!((caller, sampled, format), (None, false, None));
    // "d" (debug) is sampled even though the sampler has no room left
    assert!(decide(&[("b3", "80f198ee56343ba8-e457b5a2e4d86bd1-d")]).2);
    // sampling deferred: the function's strategy decides (and has no room left)
    assert!(!decide(&[("b3", "80f198ee56343ba8-e457b5a2e4d86bd1")]).2);
    assert_eq!(
        decide(&[(
            "X-Amzn-Trace-Id",
            "Root=1-5759e988-bd862e3fe1be46a99427279;Parent=53995c3f42cd8ad8"
        )])
        .4,
        1
    );
}

#[test]
fn the_platform_header_wins_and_a_malformed_one_falls_through() {
    let both = [
        (CONTEXT_HEADER, "1a:2b:0:1"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    assert_eq!(decide(&both).0, 0x1a);
    let (trace, _, _, format, warnings) = decide(&[
        (CONTEXT_HEADER, "nonsense"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ]);
    assert_eq!(
        (trace, format, warnings),
        (0x4bf92f3577b34da6a3ce929d0e0e4736, Some("traceparent"), 1)
    );
}

#[test]
fn baggage_from_every_format_sorted_first_source_wins() {
    let h = headers(&[
        (&format!("{BAGGAGE_PREFIX}userid"), "from-fc"),
        ("baggage", "userid=from-w3c, serverNode=DF%2028;prop=1"),
        ("baggage", "isProduction=false"),
        ("uberctx-tenant", "acme%20co"),
    ]);
    assert_eq!(
        baggage(&h),
        vec![
            ("isProduction".to_owned(), "false".to_owned()),
            ("serverNode".to_owned(), "DF 28".to_owned()),
            ("tenant".to_owned(), "acme co".to_owned()),
            ("userid".to_owned(), "from-fc".to_owned()),
        ]
    );
    let many: String = (0..200).map(|i| format!("k{i}=v,")).collect();
    assert_eq!(baggage(&headers(&[("baggage", &many)])).len(), 64);
}

#[test]
fn outbound_context_in_both_forms() {
    let sampler = HeadSampler::new(Arc::new(Rules::load(None).unwrap()));
    let d = decide_trace(
        &headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]),
        &sampler,
        "FC:s/f",
        "invoke",
    );
    let mut h = HeaderMap::new();
    let items = vec![("k".to_owned(), "a b,c".to_owned())];
    outbound(&mut h, &d, SpanId(0xabc), SpanId(0xdef), 1, &items);
    let get = |n: &str| h.get(n).unwrap().to_str().unwrap().to_owned();
    assert_eq!(
        get("traceparent"),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"
    );
    assert_eq!(get("tracestate"), "congo=t61rcWkgMzE");
    assert_eq!(get("baggage"), "k=a%20b%2Cc");
    assert_eq!(
        get(CONTEXT_HEADER),
        "4bf92f3577b34da6a3ce929d0e0e4736:0000000000000abc:0000000000000def:1"
    );
    // a fresh 64-bit trace is zero-padded to W3C's 32 digits
    let fresh = decide_trace(&HeaderMap::new(), &sampler, "FC:s/g", "invoke");
    let mut h = HeaderMap::new();
    outbound(&mut h, &fresh, SpanId(1), SpanId(2), 0, &[]);
    let tp = h.get("traceparent").unwrap().to_str().unwrap();
    assert_eq!(
        tp,
        format!("00-{:032x}-0000000000000001-00", fresh.trace_id.0)
    );
    assert!(tp[3..19].chars().all(|c| c == '0'));
    assert!(h.get("baggage").is_none() && h.get("tracestate").is_none());
}

#[test]
fn inbound_context_headers_are_not_relayed() {
    for name in [
        "traceparent",
        "tracestate",
        "baggage",
        "uber-trace-id",
        "uberctx-x",
        "b3",
        "x-b3-sampled",
        "x-amzn-trace-id",
        "x-fc-request-id",
    ] {
        assert!(is_context_header(name), "{name}");
    }
    assert!(!is_context_header("content-type"));
}
