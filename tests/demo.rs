//! The demo stack: the compose file is valid against the Compose Specification's schema and
//! complete (no Docker engine runs here, so it is checked, not run), and `make demo`'s
//! script runs the same stack natively, producing stitched traces with one cold start per
//! new instance.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value as Json;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn compose_file_is_valid_and_every_service_is_complete() {
    let dir = node_clients();
    let out = run(Command::new("node")
        .arg("validate_compose.js")
        .arg(Path::new(ROOT).join("docker-compose.yml"))
        .current_dir(&dir));
    let v: Json = serde_json::from_str(&out).unwrap();
    let services = v["services"].as_object().unwrap();
    let names: HashSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        HashSet::from([
            "fctrace",
            "python-fn",
            "node-fn",
            "caller",
            "prometheus",
            "grafana"
        ])
    );
    for (name, s) in services {
        assert_eq!(s["healthcheck"], true, "{name} has a healthcheck");
        match s["build"].as_str() {
            Some(ctx) => {
                let dockerfile = s["dockerfile"].as_str().unwrap_or("Dockerfile");
                assert!(
                    Path::new(ROOT).join(ctx).join(dockerfile).is_file(),
                    "{name}: {ctx}/{dockerfile}"
                );
            }
            None => assert!(
                s["image"].as_str().is_some_and(|i| i.contains(':')),
                "{name}: a pinned image"
            ),
        }
        for p in s["ports"].as_array().unwrap() {
            assert!(
                p.as_str().unwrap().starts_with("127.0.0.1:"),
                "{name}: {p} is bound to localhost only"
            );
        }
        if name != "caller" {
            assert!(
                !s["ports"].as_array().unwrap().is_empty(),
                "{name} publishes its port"
            );
        }
    }
    let healthy =
        |svc: &str, on: &str| services[svc]["depends_on"][on]["condition"] == "service_healthy";
    assert!(healthy("fctrace", "python-fn") && healthy("fctrace", "node-fn"));
    assert!(healthy("caller", "fctrace") && healthy("grafana", "fctrace"));
    assert!(healthy("prometheus", "fctrace") && healthy("grafana", "prometheus"));
    assert_eq!(
        v["volumes"],
        serde_json::json!(["fctrace-data", "prometheus-data", "grafana-data"])
    );
    let fctrace_ports: Vec<&str> = services["fctrace"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for port in ["16686", "14268", "4318", "4317", "5778", "8000"] {
        assert!(
            fctrace_ports
                .iter()
                .any(|p| p.ends_with(&format!(":{port}"))),
            "fctrace publishes {port}"
        );
    }

    // The image: multi-stage, non-root, data volume, every port, a health check.
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    assert_eq!(
        dockerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count(),
        2
    );
    assert!(
        dockerfile.contains("USER fctrace") && dockerfile.contains("VOLUME [\"/var/lib/fctrace\"]")
    );
    assert!(dockerfile.contains("EXPOSE 14268 4318 4317 16686 5778 8000"));
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/healthz"));

    // The daemon's config in the stack parses, and its functions check out.
    let cfg =
        fctrace::config::FileConfig::load(&Path::new(ROOT).join("examples/compose/fctrace.toml"))
            .unwrap();
    let specs = fctrace::platform::functions::check(&cfg.functions).unwrap();
    assert_eq!(specs.len(), 2);
    let grafana =
        std::fs::read_to_string(Path::new(ROOT).join("examples/grafana/datasources.yml")).unwrap();
    assert!(grafana.contains("type: jaeger") && grafana.contains("url: http://fctrace:16686"));
}

fn parent(span: &Json) -> Option<&str> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")
        .map(|r| r["spanID"].as_str().unwrap())
}

#[test]
fn make_demo_runs_the_stack_natively() {
    let status = Command::new("make")
        .arg("examples")
        .current_dir(ROOT)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "make examples");
    let demo_dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(Path::new(ROOT).join("examples/demo.sh"))
        .env("FCTRACE_BIN", env!("CARGO_BIN_EXE_fctrace"))
        .env("DEMO_DATA", demo_dir.path())
        .env("DEMO_SECONDS", "10")
        .env("RUST_LOG", "warn")
        .envs(
            [
                "COLLECTOR_HTTP",
                "OTLP_HTTP",
                "OTLP_GRPC",
                "QUERY",
                "GATEWAY",
                "SAMPLING",
                "AGENT_COMPACT",
                "AGENT_BINARY",
                "JAEGER_GRPC",
                "ZIPKIN",
            ]
            .map(|n| (format!("FCTRACE_{n}_ADDR"), "127.0.0.1:0".to_owned())),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let ports = loop {
        if let Ok(t) = std::fs::read_to_string(demo_dir.path().join("ports.json")) {
            break serde_json::from_str::<Json>(&t).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the demo's fctrace did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let query = format!("http://{}", ports["query"].as_str().unwrap());
    let get = |path: &str| -> Json {
        http()
            .get(format!("{query}{path}"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };

    for (function, user_span) in [("python", "python-handler"), ("node", "node-handler")] {
        let trace = loop {
            let found = get(&format!("/api/traces?service=FC:demo/{function}&limit=50"));
            let stitched = found["data"].as_array().into_iter().flatten().find(|t| {
                let spans = t["spans"].as_array().unwrap();
                let inv = spans.iter().find(|s| s["operationName"] == "Invocation");
                let user = spans.iter().find(|s| s["operationName"] == user_span);
                matches!((inv, user), (Some(i), Some(u)) if parent(u) == i["spanID"].as_str())
            });
            if let Some(t) = stitched {
                break t.clone();
            }
            assert!(Instant::now() < deadline, "no stitched {function} trace");
            std::thread::sleep(Duration::from_millis(200));
        };
        // the caller's context: InvokeFunction is a child of the caller's span
        let root = trace["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["operationName"] == "InvokeFunction")
            .unwrap();
        assert!(
            parent(root).is_some(),
            "{function}: InvokeFunction under the caller's span"
        );
    }

    assert!(
        demo.wait().unwrap().success(),
        "the demo stops cleanly when its time is up"
    );
    let mut out = String::new();
    std::io::Read::read_to_string(&mut demo.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.contains("Open the UI:"), "{out}");

    // After the run: one cold start per instance, from the records and from the spans.
    let d = Daemon::start_in(demo_dir.path(), &[]);
    for function in ["python", "node"] {
        let (_, v) = d.get(&format!(
            "/api/v1/invocations?service=demo&function={function}&limit=1000"
        ));
        let recs = data(&v);
        assert!(recs.len() >= 3, "{function}: {} invocations", recs.len());
        let mut per_instance: HashMap<&str, usize> = HashMap::new();
        for r in recs {
            if r["isColdStart"] == true {
                *per_instance
                    .entry(r["instanceID"].as_str().unwrap())
                    .or_default() += 1;
            }
        }
        let instances: HashSet<&str> = recs
            .iter()
            .map(|r| r["instanceID"].as_str().unwrap())
            .collect();
        assert_eq!(
            per_instance.len(),
            instances.len(),
            "{function}: every instance started cold once"
        );
        assert!(
            per_instance.values().all(|n| *n == 1),
            "{function}: {per_instance:?}"
        );
        let (_, v) = d.get(&format!(
            "/api/traces?service=FC:demo/{function}&operation=ColdStart&limit=1000"
        ));
        assert_eq!(
            data(&v).len(),
            instances.len(),
            "{function}: ColdStart spans"
        );
    }
}
