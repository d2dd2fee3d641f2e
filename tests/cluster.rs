//! The cluster through the real binaries (issue 18, first part): a real `nats-server`
//! with JetStream, an ingest node and a store node of fctrace. A real OpenTelemetry SDK
//! and a Jaeger thrift batch of many traces go to the ingest node; every trace is found
//! on the store node by id and by search. With NATS gone the ingest node answers 503
//! with `Retry-After` and stores nothing; what it acknowledged before is all there. A
//! store node killed under load catches up on every acknowledged span after a restart.
//! The cluster's compose file is valid. (The whole cluster, with leases, a query node
//! and NATS failover, is `cluster_scale.rs`.)

mod common;

use std::path::Path;
use std::process::Command;

use common::gateway::eventually;
use common::nats::*;
use common::*;
use serde_json::Value as Json;

fn node(dir: &Path, role: &str, nats: &str) -> Daemon {
    Daemon::start_in(
        dir,
        &[
            "--role",
            role,
            "--nats-url",
            nats,
            "--partitions",
            "4",
            "--replicas",
            "1",
            "--node-id",
            &format!("{role}-1"),
        ],
    )
}

#[test]
fn spans_sent_to_an_ingest_node_are_found_on_the_store_node() {
    let python = python_venv("otlp");
    let dir = tempfile::tempdir().unwrap();
    let mut nats = start_nats(dir.path());
    let store = node(&dir.path().join("store"), "store", &nats.url);
    let ingest = node(&dir.path().join("ingest"), "ingest", &nats.url);

    // ready means connected, and for the store node caught up on every partition
    assert_eq!(ingest.get("/readyz").0, 200);
    assert_eq!(store.get("/readyz").0, 200);

    // a real SDK through the ingest node
    let sdk_trace = sdk_export(&python, &ingest.otlp_http, "cluster-sdk");

    // 40 traces of 3 spans in one thrift batch: spread over the 4 partitions
    let now = now_us();
    let spans: Vec<TSpan> = (1..=40u128)
        .flat_map(|t| {
            (1..=3u64).map(move |i| TSpan {
                trace: 0xc0de_0000 + t,
                id: i,
                parent: if i == 1 { 0 } else { 1 },
                op: "work",
                start: now + i,
                duration: 10,
                ..Default::default()
            })
        })
        .collect();
    let (status, body) = ingest.post_thrift(batch("cluster-thrift", &[], &spans));
    assert!((200..300).contains(&status), "{status} {body}");
    // the ingest node stores nothing itself
    let (_, v) = ingest.get("/api/services");
    assert_eq!(v["data"], serde_json::json!([]), "{v}");

    // every trace on the store node, by id
    for t in (1..=40u128).map(|t| 0xc0de_0000 + t) {
        let id = format!("{t:032x}");
        let v = eventually(&format!("trace {id} on the store node"), || {
            let (s, v) = store.get(&format!("/api/traces/{id}"));
            (s == 200).then_some(v)
        });
        assert_eq!(v["data"][0]["spans"].as_array().unwrap().len(), 3, "{id}");
    }
    let v = eventually("the SDK's trace on the store node", || {
        let (s, v) = store.get(&format!("/api/traces/{sdk_trace}"));
        (s == 200).then_some(v)
    });
    assert_eq!(operations_of(&v), ["handle", "query-db"]);
    // and by search
    let (_, v) = store.get("/api/traces?service=cluster-thrift&operation=work&limit=100");
    assert_eq!(trace_ids(&v).len(), 40, "{v}");
    let (_, v) =
        store.get("/api/traces?service=cluster-sdk&tags=%7B%22db.system%22%3A%22postgresql%22%7D");
    assert_eq!(trace_ids(&v), [sdk_trace]);

    // every message the ingest node published was committed by the store node once
    let published = ingest.metric("fctrace_cluster_messages_published_total{result=\"ok\"}");
    assert!(published >= 3.0, "{published}");
    eventually("the store node's commits", || {
        (store.metric("fctrace_cluster_messages_committed_total{result=\"ok\"}") == published)
            .then_some(())
    });
    assert_eq!(store.metric("fctrace_cluster_partitions_consumed"), 4.0);
    for p in 0..4 {
        assert_eq!(
            store.metric(&format!(
                "fctrace_cluster_consumer_pending{{partition=\"{p}\"}}"
            )),
            0.0
        );
    }

    // NATS gone: the ingest node refuses (503, retry later) and acknowledges nothing
    let _ = nats.child.kill();
    let _ = nats.child.wait();
    let late: Vec<TSpan> = (1..=3u64)
        .map(|i| TSpan {
            trace: 0xdead,
            id: i,
            op: "late",
            start: now_us(),
            duration: 1,
            ..Default::default()
        })
        .collect();
    let r = http()
        .post(format!("{}/api/traces", ingest.collector))
        .header("content-type", "application/x-thrift")
        .body(batch("cluster-thrift", &[], &late))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let (status, why) = ingest.get("/readyz");
    assert_eq!(status, 503);
    assert_eq!(why, "not connected to the cluster's log");
    assert!(
        ingest.metric("fctrace_cluster_messages_published_total{result=\"unavailable\"}") >= 1.0
    );
    // what was acknowledged before is all still there
    let (_, v) = store.get("/api/traces?service=cluster-thrift&operation=work&limit=100");
    assert_eq!(trace_ids(&v).len(), 40);
    assert_eq!(store.get(&format!("/api/traces/{:032x}", 0xdead)).0, 404);
}

#[test]
fn a_store_node_killed_under_load_catches_up_on_every_acknowledged_span() {
    let dir = tempfile::tempdir().unwrap();
    let nats = start_nats(dir.path());
    let store_dir = dir.path().join("store");
    let mut store = node(&store_dir, "store", &nats.url);
    let ingest = node(&dir.path().join("ingest"), "ingest", &nats.url);
    let mut acknowledged = Vec::new();
    for round in 0..30u128 {
        if round == 10 {
            // the store node dies mid-load; the ingest node goes on taking spans
            store.kill9();
        }
        let spans: Vec<TSpan> = (0..10u128)
            .map(|t| TSpan {
                trace: 0x5000 + round * 10 + t,
                id: 1,
                op: "load",
                start: now_us(),
                duration: 5,
                ..Default::default()
            })
            .collect();
        let (status, body) = ingest.post_thrift(batch("cluster-load", &[], &spans));
        assert!((200..300).contains(&status), "{status} {body}");
        acknowledged.extend(spans.iter().map(|s| s.trace));
    }
    // ready means caught up on every partition: everything acknowledged is there at once
    let store = node(&store_dir, "store", &nats.url);
    for t in acknowledged {
        assert_eq!(
            store.get(&format!("/api/traces/{t:032x}")).0,
            200,
            "trace {t:x} once the restarted store node is ready"
        );
    }
    drop(nats);
}

#[test]
fn the_cluster_compose_file_is_valid_and_names_its_roles() {
    let out = run(Command::new("node")
        .arg("validate_compose.js")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.cluster.yml"))
        .current_dir(node_clients()));
    let v: Json = serde_json::from_str(&out).unwrap();
    let services = v["services"].as_object().unwrap();
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ingest-1", "ingest-2", "nats-1", "nats-2", "nats-3", "query-1", "store-1", "store-2",
            "store-3"
        ]
    );
    let urls = "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222";
    for (name, s) in services {
        assert_eq!(s["healthcheck"], true, "{name} has a healthcheck");
        for p in s["ports"].as_array().unwrap() {
            assert!(p.as_str().unwrap().starts_with("127.0.0.1:"), "{name}: {p}");
        }
        let command: Vec<&str> = s["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let flag = |f: &str| {
            command
                .iter()
                .position(|a| *a == f)
                .and_then(|i| command.get(i + 1).copied())
        };
        if name.starts_with("nats-") {
            assert!(
                s["image"].as_str().unwrap().starts_with("nats:2."),
                "{name}"
            );
            assert!(command.contains(&"-js"), "{name}: JetStream on");
            assert_eq!(flag("--cluster_name"), Some("fctrace"));
        } else {
            assert_eq!(s["build"], ".", "{name} is built from this repository");
            assert_eq!(flag("--role"), Some(name.split('-').next().unwrap()));
            assert_eq!(flag("--node-id"), Some(name.as_str()));
            assert_eq!(flag("--nats-url"), Some(urls));
            assert_eq!(flag("--replicas"), Some("3"));
            if name.starts_with("store-") {
                // query nodes reach a store node by its service name
                assert_eq!(
                    flag("--advertise-addr"),
                    Some(format!("{name}:16689").as_str())
                );
            }
            for n in ["nats-1", "nats-2", "nats-3"] {
                assert_eq!(
                    s["depends_on"][n]["condition"], "service_healthy",
                    "{name} waits for {n}"
                );
            }
        }
    }
}
