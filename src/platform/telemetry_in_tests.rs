//! Reading and gathering events of both shapes, against the platforms' documented examples.

use serde_json::json;

use super::*;

#[test]
fn functiongraph_report_as_documented() {
    // the documents' example (its stray spaces and `reportMetrics` included)
    let e = json!({
        "name": " platform.report",
        "startTime": "2023-02-01T00:03:50.000Z",
        "traceId": "69be64a7-0233-11e8-82e4-e5d37911193e",
        "endTime": " 2023-02-01T00:03:50.011Z ",
        "status": " success ",
        "reportMetrics": {"durationMs": 10.6, "billingDurationMS": 11, "memoryUsed": 23.4,
            " memorySize ": 128, "podName": "pool22-300-128-fusion-64774779-4g77v"}
    });
    let p = parse(&e).unwrap();
    assert_eq!(p.kind, Kind::Report);
    assert_eq!(
        p.request_id.as_deref(),
        Some("69be64a7-0233-11e8-82e4-e5d37911193e")
    );
    assert_eq!(p.status.as_deref(), Some("success"));
    assert_eq!(p.start, 1_675_209_830_000_000);
    assert_eq!(p.end, 1_675_209_830_011_000);
    let r = p.report.unwrap();
    assert_eq!(
        (r.duration_ms, r.billed_ms, r.used_mb, r.memory_mb),
        (10.6, 11.0, 23.4, 128)
    );
    assert_eq!(
        r.instance.as_deref(),
        Some("pool22-300-128-fusion-64774779-4g77v")
    );
}

#[test]
fn lambda_events_as_documented() {
    let start = json!({"time": "2022-10-12T00:00:15.064Z", "type": "platform.start",
        "record": {"requestId": "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa", "version": "$LATEST",
            "tracing": {"spanId": "54565fb41ac79632", "type": "X-Amzn-Trace-Id",
                "value": "Root=1-62e900b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"}}});
    let p = parse(&start).unwrap();
    assert_eq!(p.kind, Kind::Start);
    assert_eq!(
        p.trace,
        Some((
            TraceId(0x62e900b2710d76f009d6e7785905449a),
            SpanId(0x0efbd19962d95b05)
        ))
    );
    let report = json!({"time": "2022-10-12T00:01:15.000Z", "type": "platform.report",
        "record": {"requestId": "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa", "status": "success",
            "metrics": {"durationMs": 1500.0, "billedDurationMs": 1500, "memorySizeMB": 128,
                "maxMemoryUsedMB": 90, "initDurationMs": 200.5}}});
    let p = parse(&report).unwrap();
    assert_eq!(p.end - p.start, 1_500_000);
    assert_eq!(p.report.unwrap().init_ms, Some(200.5));
    for bad in [
        json!(1),
        json!({"type": "platform.start"}),
        json!({"name": "x", "startTime": "yesterday"}),
    ] {
        assert!(parse(&bad).is_err(), "{bad}");
    }
}

fn ev(kind: Kind, id: Option<&str>, start: u64, end: u64) -> Parsed {
    Parsed {
        kind,
        request_id: id.map(str::to_owned),
        start,
        end,
        status: Some("success".into()),
        trace: None,
        report: (kind == Kind::Report).then(|| ReportIn {
            duration_ms: (end - start) as f64 / 1000.0,
            init_ms: Some(5.0),
            ..ReportIn::default()
        }),
    }
}

#[test]
fn events_in_any_order_over_several_posts_make_one_request() {
    let g = Gatherer::default();
    // the report first, then (another post) Lambda's init events without a request id,
    // then the start
    let t = g.take("s", "f", &[ev(Kind::Report, Some("r1"), 2_000, 9_000)]);
    assert_eq!((t.used, t.new.len()), (1, 1));
    assert!(g.due().0.is_empty(), "not complete: no start, no init");
    g.take(
        "s",
        "f",
        &[
            ev(Kind::InitStart, None, 100, 100),
            ev(Kind::InitRuntimeDone, None, 1_900, 1_900),
        ],
    );
    let t = g.take("s", "f", &[ev(Kind::Start, Some("r1"), 2_000, 2_000)]);
    assert!(t.new.is_empty(), "r1 was seen already");
    std::thread::sleep(SETTLE);
    let (ready, expired) = g.due();
    assert_eq!((ready.len(), expired), (1, 0));
    let r = &ready[0];
    assert_eq!(
        r.run().unwrap(),
        Timed {
            start_us: 2_000,
            duration_us: 7_000
        }
    );
    let init = r.cold().unwrap().runtime_init.unwrap();
    assert_eq!(
        init,
        Timed {
            start_us: 100,
            duration_us: 1_800
        }
    );
    assert!(g.due().0.is_empty(), "built once");
}
