//! The whole cluster on loopback (issue 18): three clustered `nats-server` processes,
//! two ingest, three store and one query fctrace process. A real OpenTelemetry SDK and
//! Jaeger thrift batches go through both ingest nodes; the store nodes share the
//! partitions (each owned by exactly one), and every trace is found through the query
//! node by id and by search; so are a function's invocation records, per-minute metrics,
//! log lines and the Monitor tab's RED series, invoked through an ingest node's
//! gateway. A store node killed with `kill -9` under load: the query
//! node reports its partitions in `errors` until the others take them over, then every
//! acknowledged span is readable again. The stream's NATS leader killed under load:
//! ingest answers some 503s, and nothing it acknowledged is lost.

mod common;

use std::time::{Duration, Instant};

use common::gateway::{behave_fn, eventually, invoke};
use common::nats::*;
use common::*;
use serde_json::Value as Json;

const PARTITIONS: u32 = 8;

/// 10 traces of 2 spans, numbered from `first`.
fn traces(first: u128, op: &'static str) -> Vec<TSpan> {
    (0..10u128)
        .flat_map(|t| {
            (1..=2u64).map(move |i| TSpan {
                trace: first + t,
                id: i,
                parent: if i == 1 { 0 } else { 1 },
                op,
                start: now_us(),
                duration: 5,
                ..Default::default()
            })
        })
        .collect()
}

/// Which store node owns each partition, from their `/metrics`; `None` for a partition
/// that no node or more than one node claims.
fn owners(stores: &[&Daemon]) -> Vec<Option<usize>> {
    (0..PARTITIONS)
        .map(|p| {
            let claims: Vec<usize> = stores
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.metric(&format!(
                        "fctrace_cluster_partition_owned{{partition=\"{p}\"}}"
                    )) == 1.0
                })
                .map(|(i, _)| i)
                .collect();
            (claims.len() == 1).then(|| claims[0])
        })
        .collect()
}

/// Every one of `ids` through the query node, whole (2 spans) and without errors.
fn all_found(query: &Daemon, ids: &[u128]) -> bool {
    ids.iter().all(|t| {
        let (s, v) = query.get(&format!("/api/traces/{t:032x}"));
        s == 200
            && v["errors"].is_null()
            && v["data"][0]["spans"].as_array().map(Vec::len) == Some(2)
    })
}

fn search(query: &Daemon, service: &str) -> Json {
    query
        .get(&format!("/api/traces?service={service}&limit=1000"))
        .1
}

#[test]
fn the_whole_cluster_on_loopback() {
    let python = python_venv("otlp");
    let dir = tempfile::tempdir().unwrap();
    let mut nats = start_nats_cluster(dir.path());
    let urls: Vec<String> = nats.iter().map(|(n, _)| n.url.clone()).collect();
    let urls = urls.join(",");
    let monitors: Vec<String> = nats.iter().map(|(_, m)| m.clone()).collect();
    let functions = dir.path().join("functions.toml");
    std::fs::write(&functions, behave_fn("fan", "")).unwrap();
    // evaluated by the query node, over every store node's aggregates
    let alarms = dir.path().join("alarms.json");
    std::fs::write(
        &alarms,
        r#"{"rules": [{"name": "fan-errors", "metric": "FunctionFunctionErrorsRate",
            "service": "test", "function": "fan", "comparison": ">", "threshold": 10,
            "periods": 1}]}"#,
    )
    .unwrap();
    let start = |name: &str, role: &str| {
        let partitions = PARTITIONS.to_string();
        let mut args = vec![
            "--role",
            role,
            "--nats-url",
            &urls,
            "--partitions",
            &partitions,
            "--replicas",
            "3",
            "--node-id",
            name,
        ];
        if role == "ingest" {
            args.extend(["--functions", functions.to_str().unwrap()]);
            args.extend(["--instance-metrics-interval", "200ms"]);
        }
        if role == "query" {
            args.extend([
                "--alarms",
                alarms.to_str().unwrap(),
                "--alarm-interval",
                "200ms",
            ]);
        }
        Daemon::start_in(&dir.path().join(name), &args)
    };
    let mut stores = [
        start("store-1", "store"),
        start("store-2", "store"),
        start("store-3", "store"),
    ];
    let ingest = [start("ingest-1", "ingest"), start("ingest-2", "ingest")];
    let query = start("query-1", "query");

    // the partitions settle: each owned by exactly one store node, every store node
    // owning some, and no handover under way (the same owners a second apart)
    let all: Vec<&Daemon> = stores.iter().collect();
    let mut before = Vec::new();
    let settled = within(Duration::from_secs(40), "the partitions to settle", || {
        let o = owners(&all);
        let mut holders: Vec<usize> = o.iter().flatten().copied().collect();
        holders.sort();
        holders.dedup();
        let stable = o.iter().all(Option::is_some) && holders.len() == 3 && o == before;
        before = o.clone();
        std::thread::sleep(Duration::from_secs(1));
        stable.then_some(o)
    });
    let owned: f64 = stores
        .iter()
        .map(|s| s.metric("fctrace_cluster_partitions_owned"))
        .sum();
    assert_eq!(owned, f64::from(PARTITIONS));

    // a real SDK and thrift batches through both ingest nodes
    let mut sdk = Vec::new();
    let mut acked: Vec<u128> = Vec::new();
    for (i, node) in ingest.iter().enumerate() {
        sdk.push(sdk_export(
            &python,
            &node.otlp_http,
            &format!("via-ingest-{i}"),
        ));
        let spans = traces(0x1000 + i as u128 * 100, "work");
        let (status, body) = node.post_thrift(batch("cluster-scale", &[], &spans));
        assert!((200..300).contains(&status), "{status} {body}");
        acked.extend((0..10).map(|t| 0x1000 + i as u128 * 100 + t));
    }

    // every trace through the query node: by id, and by search
    eventually("every thrift trace through the query node", || {
        all_found(&query, &acked).then_some(())
    });
    for (i, t) in sdk.iter().enumerate() {
        let v = eventually(&format!("SDK trace {t}"), || {
            let (s, v) = query.get(&format!("/api/traces/{t}"));
            (s == 200).then_some(v)
        });
        assert_eq!(operations_of(&v), ["handle", "query-db"], "{v}");
        let found = search(&query, &format!("via-ingest-{i}"));
        assert_eq!(trace_ids(&found), std::slice::from_ref(t), "{found}");
        // the same trace in OTLP JSON (api/v3) and as a tree
        assert_eq!(query.get(&format!("/api/v3/traces/{t}")).0, 200);
        assert_eq!(query.get(&format!("/api/v1/traces/{t}/tree")).0, 200);
    }
    let v = search(&query, "cluster-scale");
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(trace_ids(&v).len(), 20, "{v}");
    let (_, v) = query.get("/api/services");
    let services = v["data"].as_array().unwrap();
    for s in ["cluster-scale", "via-ingest-0", "via-ingest-1"] {
        assert!(services.iter().any(|x| x == s), "{s} in {v}");
    }
    let (_, v) = query.get("/api/operations?service=cluster-scale");
    assert_eq!(v["data"][0]["name"], "work", "{v}");

    // a function invoked through an ingest node's gateway: its records, metrics and
    // log lines are spread over the partitions, and the query node gathers them
    let mut requests = Vec::new();
    for event in ["ok", "ok", "ok", "ok", "ok", "crash"] {
        let a = invoke(&ingest[0], "test", "fan", event, &[]);
        assert!(
            a.status == 200 || a.status == 500,
            "{} {}",
            a.status,
            a.body
        );
        requests.push(a.header("x-fc-request-id").to_owned());
    }
    let records = eventually("six records through the query node", || {
        let (_, v) = query.get("/api/v1/invocations?service=test&function=fan&limit=100");
        (v["data"].as_array().map(Vec::len) == Some(6)).then_some(v)
    });
    assert!(records["errors"].is_null(), "{records}");
    let mut listed: Vec<&str> = records["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requestId"].as_str().unwrap())
        .collect();
    listed.sort();
    let mut sent: Vec<&str> = requests.iter().map(String::as_str).collect();
    sent.sort();
    assert_eq!(listed, sent);
    let failed = &requests[5];
    let (status, v) = query.get(&format!("/api/v1/invocations/{failed}"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["hasFunctionError"], true, "{v}");
    let calls: f64 = eventually("six calls in the function's metrics", || {
        let (_, v) = query
            .get("/api/v1/metrics/FunctionTotalInvocations?service=test&function=fan&period=60");
        let sum: f64 = v["data"]
            .as_array()?
            .iter()
            .filter_map(|p| p["value"].as_f64())
            .sum();
        (sum == 6.0).then_some(sum)
    });
    assert_eq!(calls, 6.0);
    let (status, v) = query.get(&format!("/api/v1/logs?requestId={failed}"));
    assert_eq!(status, 200, "{v}");
    assert!(v["errors"].is_null(), "{v}");
    let lines = v["data"].as_array().unwrap();
    assert!(!lines.is_empty(), "the request's platform lines: {v}");
    assert!(
        lines.iter().all(|l| l["requestId"] == failed.as_str()),
        "{v}"
    );
    // the Monitor tab's calls: the SDK's one server span, over Jaeger's default 600 s
    // rate window
    let (status, v) = query.get("/api/metrics/calls?service=via-ingest-0");
    assert_eq!(status, 200, "{v}");
    let rate: f64 = v["metrics"][0]["metricPoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["gaugeValue"]["doubleValue"].as_f64())
        .fold(0.0, f64::max);
    assert_eq!(rate, 1.0 / 600.0, "{v}");
    // the instance samples of the function, from whichever store nodes hold them
    let v = eventually(
        "the function's instance samples through the query node",
        || {
            let (status, v) = query.get("/api/v1/instances/metrics?service=test&function=fan");
            assert_eq!(status, 200, "{v}");
            (!v["data"].as_array()?.is_empty()).then_some(v)
        },
    );
    assert!(v["errors"].is_null(), "{v}");
    // one failed call of six: the query node's alarm fires (the store nodes, which see
    // some partitions each, do not evaluate alarms in a cluster)
    within(
        Duration::from_secs(20),
        "the alarm to fire on the query node",
        || {
            let (_, v) = query.get("/api/v1/alarms");
            v["data"]["transitions"]
                .as_array()?
                .iter()
                .any(|t| t["alarm"] == "fan-errors" && t["to"] == "ALARM")
                .then_some(())
        },
    );
    assert_eq!(stores[0].get("/api/v1/alarms").0, 501);
    // live instances are the gateway's, on the ingest node: refused, not empty
    assert_eq!(query.get("/api/v1/instances").0, 501);
    assert_eq!(ingest[0].get("/api/v1/instances").0, 200);

    // a store node that owns partitions killed under load: the query node says which
    // partitions it cannot read, the others take them over, and then every acknowledged
    // span is readable again
    let victim = settled.iter().flatten().copied().next().unwrap();
    let lost: Vec<u32> = (0..PARTITIONS)
        .filter(|p| settled[*p as usize] == Some(victim))
        .collect();
    let mut during = Json::Null;
    for round in 0..30u128 {
        if round == 5 {
            stores[victim].kill9();
        }
        if round == 6 {
            // the lease outlives its node by up to 6 s: the owner is known and silent
            during = search(&query, "cluster-scale");
        }
        let first = 0x2000 + round * 10;
        let spans = traces(first, "load");
        let (status, body) =
            ingest[(round % 2) as usize].post_thrift(batch("cluster-scale", &[], &spans));
        assert!((200..300).contains(&status), "{status} {body}");
        acked.extend(first..first + 10);
        std::thread::sleep(Duration::from_millis(50));
    }
    let errors = during["errors"].to_string();
    assert!(
        errors.contains(&format!("store-{}", victim + 1)) && errors.contains(&format!("{lost:?}")),
        "the dead node's partitions {lost:?} are reported: {during}"
    );
    // what it could read, it answered
    assert!(!trace_ids(&during).is_empty(), "{during}");
    let survivors: Vec<&Daemon> = stores
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, s)| s)
        .collect();
    eventually("the survivors own every partition", || {
        let o = owners(&survivors);
        o.iter().all(Option::is_some).then_some(())
    });
    eventually("every acknowledged trace after the takeover", || {
        all_found(&query, &acked).then_some(())
    });
    let v = search(&query, "cluster-scale");
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(trace_ids(&v).len(), acked.len(), "{v}");

    // the stream's NATS leader killed while both ingest nodes take batches: each answer
    // is an acknowledgement or a 503, and every acknowledged trace stays readable
    let leader = stream_leader(&monitors);
    let dead = nats
        .iter()
        .position(|(_, m)| {
            http()
                .get(format!("{m}/varz"))
                .send()
                .ok()
                .and_then(|r| r.json::<Json>().ok())
                .is_some_and(|v| v["server_name"] == leader.as_str())
        })
        .expect("the leader is one of ours");
    let (mut unavailable, mut acked_after) = (0, 0);
    let mut killed_at: Option<Instant> = None;
    let mut round = 0u128;
    while acked_after < 10 {
        if round == 5 {
            let _ = nats[dead].0.child.kill();
            let _ = nats[dead].0.child.wait();
            killed_at = Some(Instant::now());
        }
        assert!(
            killed_at.is_none_or(|t| t.elapsed() < Duration::from_secs(40)),
            "ingest took nothing for 40 s after the leader died ({unavailable} refused)"
        );
        let first = 0x3000 + round * 10;
        let spans = traces(first, "failover");
        let (status, body) =
            ingest[(round % 2) as usize].post_thrift(batch("cluster-failover", &[], &spans));
        match status {
            200..=299 => {
                acked.extend(first..first + 10);
                if killed_at.is_some() {
                    acked_after += 1;
                }
            }
            503 => unavailable += 1,
            other => panic!("{other}: {body}"),
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // the lease bucket's own leader is elected again too, and leases that lapsed
    // meanwhile are claimed again: slower than the stream's own failover
    within(
        Duration::from_secs(60),
        "every acknowledged trace after the leader died",
        || all_found(&query, &acked).then_some(()),
    );
}

/// Poll until `f` gives a value, at most `limit`.
fn within<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
