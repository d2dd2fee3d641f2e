//! Nothing acknowledged is lost and nothing invisible is acknowledged: overlapping
//! batches add spans, spans outside the retention window are refused visibly, `kill -9`
//! in the middle of sustained load loses no acknowledged span, admin endpoints need
//! their token.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

fn span(trace: u128, id: u64, start: u64) -> TSpan {
    TSpan {
        trace,
        id,
        parent: if id == 1 { 0 } else { 1 },
        op: "work",
        start,
        duration: 10,
        ..Default::default()
    }
}

fn span_ids(d: &Daemon, trace: u128) -> Vec<String> {
    let (status, v) = d.get(&format!("/api/traces/{trace:x}"));
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{v}");
    let mut ids: Vec<String> = data(&v)[0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spanID"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_resent_or_overlapping_batch_adds_spans_and_never_replaces_them() {
    let d = start_server();
    let t = now_us() - 1_000_000;
    // the second batch repeats the first one's earliest span (a partial re-send)
    let first = batch("overlap", &[], &[span(0x0e1, 1, t), span(0x0e1, 2, t + 10)]);
    let second = batch("overlap", &[], &[span(0x0e1, 1, t), span(0x0e1, 3, t + 20)]);
    assert_eq!(d.post_thrift(first.clone()).0, 202);
    assert_eq!(d.post_thrift(second).0, 202);
    // and the first batch again, whole
    assert_eq!(d.post_thrift(first).0, 202);
    assert_eq!(
        span_ids(&d, 0x0e1),
        vec!["0000000000000001", "0000000000000002", "0000000000000003"]
    );
    // after a restart too (numbers continue, nothing is overwritten)
    let dir = d.data_dir.clone();
    let mut d = d;
    assert!(d.terminate().success());
    let d = Daemon::start_in(&dir, &[]);
    let again = batch("overlap", &[], &[span(0x0e1, 1, t), span(0x0e1, 4, t + 30)]);
    assert_eq!(d.post_thrift(again).0, 202);
    assert_eq!(span_ids(&d, 0x0e1).len(), 4);
}

#[test]
fn spans_outside_the_retention_window_are_refused_visibly() {
    let d = start_server_with(&["--retention", "1h", "--max-future-skew", "10m"]);
    let now = now_us();
    let old = now - 2 * 3600 * 1_000_000;
    let future = now + 3600 * 1_000_000;

    // thrift: the batch is refused whole (Jaeger's API has no partial answer), naming it
    let (status, msg) = d.post_thrift(batch(
        "window",
        &[],
        &[span(0xa1, 1, now), span(0xa1, 2, old)],
    ));
    assert_eq!(status, 400);
    assert!(
        msg.contains("span 1 of the batch: start time is older than the retention window"),
        "{msg}"
    );
    let (status, msg) = d.post_thrift(batch("window", &[], &[span(0xa2, 1, future)]));
    assert_eq!(status, 400);
    assert!(msg.contains("further in the future"), "{msg}");
    assert!(span_ids(&d, 0xa1).is_empty() && span_ids(&d, 0xa2).is_empty());

    // OTLP: partial success names the refused span; the other is stored
    let ns = |us: u64| (us * 1000).to_string();
    let body = serde_json::json!({"resourceSpans": [{"resource": {"attributes": [
    {"key": "service.name", "value": {"stringValue": "window"}}]},
    "scopeSpans": [{"spans": [
        {"traceId": "000000000000000000000000000000b1", "spanId": "0000000000000001",
         "name": "fresh", "startTimeUnixNano": ns(now), "endTimeUnixNano": ns(now + 5)},
        {"traceId": "000000000000000000000000000000b2", "spanId": "0000000000000001",
         "name": "stale", "startTimeUnixNano": ns(old), "endTimeUnixNano": ns(old + 5)}
    ]}]}]});
    let r = http()
        .post(format!("{}/v1/traces", d.otlp_http))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "1", "{answer}");
    let why = answer["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        why.contains("span 1 of the batch: start time is older than the retention window"),
        "{why}"
    );
    assert_eq!(span_ids(&d, 0xb1), vec!["0000000000000001"]);
    assert!(span_ids(&d, 0xb2).is_empty());

    // counted by reason
    assert_eq!(
        d.metric("fctrace_spans_refused_total{reason=\"too_old\"}"),
        2.0
    );
    assert_eq!(
        d.metric("fctrace_spans_refused_total{reason=\"too_new\"}"),
        1.0
    );
}

#[test]
fn admin_endpoints_are_off_without_a_token_and_need_it_with_one() {
    let compact = |d: &Daemon, auth: Option<&str>| {
        let mut r = http().post(format!("{}/api/admin/compact", d.query));
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let d = start_server();
    assert_eq!(compact(&d, None).0, 404);
    assert_eq!(compact(&d, Some("Bearer anything-at-all-here")).0, 404);

    let token = "s3cret-admin-token-0123";
    let d = start_server_with(&["--admin-token", token]);
    let (status, msg) = compact(&d, None);
    assert_eq!(status, 401);
    assert!(msg.contains("Authorization: Bearer"), "{msg}");
    assert_eq!(compact(&d, Some("Bearer s3cret-admin-token-0124")).0, 401);
    assert_eq!(compact(&d, Some(token)).0, 401);
    let (status, body) = compact(&d, Some(&format!("Bearer {token}")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"compacted":true}"#);

    // from a file, first line
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let d = start_server_with(&["--admin-token-file", file.to_str().unwrap()]);
    assert_eq!(compact(&d, Some(&format!("Bearer {token}"))).0, 200);
}

#[test]
fn kill_9_during_sustained_load_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<Vec<u128>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    for round in 0..3 {
        let mut d = Daemon::start_in(tmp.path(), &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let acked_this_round = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (url, stop, acked, next, count) = (
                    format!("{}/api/traces", d.collector),
                    Arc::clone(&stop),
                    Arc::clone(&acked),
                    Arc::clone(&next),
                    Arc::clone(&acked_this_round),
                );
                std::thread::spawn(move || {
                    let client = http();
                    let start = now_us() - 1_000_000;
                    while !stop.load(Ordering::SeqCst) {
                        let trace = 0x10_0000 + next.fetch_add(1, Ordering::SeqCst) as u128;
                        let spans: Vec<TSpan> =
                            (1..=20).map(|i| span(trace, i, start + i)).collect();
                        let r = client
                            .post(&url)
                            .header("Content-Type", "application/x-thrift")
                            .body(batch("kill-load", &[], &spans))
                            .send();
                        match r {
                            Ok(r) if r.status() == 202 => {
                                acked.lock().unwrap().push(trace);
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(_) => {}
                            // the daemon is gone: this round is over
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        // kill it while the writers are in full flight
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked_this_round.load(Ordering::SeqCst) < 50 {
            assert!(
                Instant::now() < deadline,
                "round {round}: no load acknowledged"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        d.kill9();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
    }
    let d = Daemon::start_in(tmp.path(), &[]);
    let acked = acked.lock().unwrap();
    assert!(acked.len() >= 150);
    for &t in acked.iter() {
        assert_eq!(
            span_ids(&d, t).len(),
            20,
            "trace {t:x} after three kill -9s"
        );
    }
}
