//! The shipped Prometheus and Grafana files against a real Prometheus (Debian's package,
//! installed by `make test-deps`): it scrapes the real binary while functions are called,
//! and every expression of the Grafana dashboard returns data through Prometheus's HTTP
//! API; `promtool` accepts the alerting rules.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value as Json;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An instant query's result vector.
fn query(prom: &str, expr: &str) -> Vec<Json> {
    let v: Json = http()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn invoke(d: &Daemon, function: &str, event: &str) -> u16 {
    http()
        .post(format!(
            "{}/2016-08-15/services/dash/functions/{function}/invocations",
            d.gateway
        ))
        .body(event.to_owned())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// A cold start with its initializer, a success, a crash, and a 429 from a function
/// whose one instance is busy.
fn mix(d: &Daemon) {
    assert_eq!(invoke(d, "web", "ok"), 200);
    assert_eq!(invoke(d, "web", "ok"), 200);
    assert_eq!(invoke(d, "web", "crash"), 500);
    std::thread::scope(|s| {
        let slow = s.spawn(|| invoke(d, "one", "sleep"));
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(invoke(d, "one", "ok"), 429);
        assert_eq!(slow.join().unwrap(), 504);
    });
}

#[test]
fn prometheus_answers_every_dashboard_expression() {
    let rules = Path::new(ROOT).join("examples/prometheus/alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (Debian's prometheus package; make test-deps installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let tmp = tempfile::tempdir().unwrap();
    let functions = tmp.path().join("functions.toml");
    let behave = format!("{ROOT}/tests/e2e/functions/behave.py");
    std::fs::write(
        &functions,
        format!(
            "[[functions]]\nservice = \"dash\"\nname = \"web\"\ncommand = [\"python3\", \"{behave}\"]\n\
             initializer = true\nidle_timeout = \"1s\"\n\n\
             [[functions]]\nservice = \"dash\"\nname = \"one\"\ncommand = [\"python3\", \"{behave}\"]\n\
             max_instances = 1\ntimeout = \"2s\"\n"
        ),
    )
    .unwrap();
    let d = Daemon::start_in(
        &tmp.path().join("data"),
        &["--functions", functions.to_str().unwrap()],
    );

    // Prometheus, as shipped, with its target pointed at this daemon and a short interval.
    let shipped =
        std::fs::read_to_string(Path::new(ROOT).join("examples/prometheus/prometheus.yml"))
            .unwrap();
    let target = d.query.trim_start_matches("http://");
    let config = shipped
        .replace("fctrace:16686", target)
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("alerts.yml", rules.to_str().unwrap());
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(&cfg, config).unwrap();
    let port = free_port();
    let prom_url = format!("http://127.0.0.1:{port}");
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = http()
            .get(format!("{prom_url}/api/v1/query"))
            .query(&[("query", "up{job=\"fctrace\"}")])
            .send()
            .ok()
            .and_then(|r| r.json::<Json>().ok())
            .and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_owned)
            });
        if up.as_deref() == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped fctrace"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Two rounds, each seen by Prometheus before the next (web's instance is reaped in
    // between, so the second round starts cold again): every counter and histogram moves
    // while scraped.
    let scraped = |n: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = query(
                &prom_url,
                "faas_invocations_total{service=\"dash\",function=\"web\"}",
            );
            if r.first().and_then(|v| v["value"][1].as_str()) == Some(n) {
                return;
            }
            assert!(Instant::now() < deadline, "Prometheus never saw {n} calls");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    mix(&d);
    scraped("3");
    mix(&d);
    scraped("6");
    // web's instance was reaped while `one` ran into its timeout (web's idle timeout is
    // 1 s): the second round started cold too, so the initializer series moved
    assert_eq!(
        d.metric("faas_coldstarts_total{service=\"dash\",function=\"web\"}"),
        2.0
    );

    let dashboard: Json = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(ROOT).join("examples/grafana/dashboards/functions.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    for expr in exprs {
        // Grafana's interval variable, as it would fill it for a short range
        let e = expr.replace("$__rate_interval", "1m");
        let result = query(&prom_url, &e);
        assert!(!result.is_empty(), "no series for {e}");
        let values: Vec<f64> = result
            .iter()
            .filter_map(|r| r["value"][1].as_str()?.parse().ok())
            .collect();
        assert!(
            values.iter().any(|v| v.is_finite() && *v > 0.0),
            "{e}: {values:?}"
        );
    }
}
