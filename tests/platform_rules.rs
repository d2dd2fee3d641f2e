//! Sampling rules as the platforms write them (issue 19): Function Compute's documented
//! default file, verbatim with its trailing comma, starts the daemon and is served; a rule
//! for the platform's tracing service `fc-tracing` governs the gateway's sampling and a
//! function's own rule overrides it; what is still not JSON is refused with line and column.

mod common;

use std::process::Command;

use common::gateway::{behave_fn, invoke, record};
use common::*;
use serde_json::{json, Value as Json};

/// Function Compute's default sampling rules, exactly as its documentation prints them.
const FC_DEFAULT: &str = r#"{
  "default_strategy": {
    "type": "ratelimiting",
    "param": 1,
  }
}"#;

#[test]
fn the_documented_default_file_is_read_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("fc.json");
    std::fs::write(&rules, FC_DEFAULT).unwrap();
    let d = Daemon::start_in(
        &dir.path().join("data"),
        &["--sampling-strategies", rules.to_str().unwrap()],
    );
    let url = format!("http://{}/sampling?service=fc-tracing", d.port("sampling"));
    let v: Json = http().get(url).send().unwrap().json().unwrap();
    assert_eq!(
        v,
        json!({"strategyType": "RATE_LIMITING", "rateLimitingSampling": {"maxTracesPerSecond": 1}})
    );

    // not JSON in another way: refused at start, with where
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\n  // fine\n  'default_strategy': {}\n}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fctrace"))
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data2"))
        .arg("--sampling-strategies")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3 column 3"), "{err}");
}

#[test]
fn fc_tracing_rule_governs_the_gateway_and_a_function_rule_wins() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("s.json");
    std::fs::write(
        &rules,
        r#"{
  // the platform's tracing service: sample nothing
  "service_strategies": [
    {"service": "fc-tracing", "type": "probabilistic", "param": 0},
    {"service": "FC:test/own", "type": "probabilistic", "param": 1},
  ],
  "default_strategy": {"type": "probabilistic", "param": 1},
}"#,
    )
    .unwrap();
    let functions = dir.path().join("functions.toml");
    std::fs::write(
        &functions,
        format!("{}{}", behave_fn("governed", ""), behave_fn("own", "")),
    )
    .unwrap();
    let d = Daemon::start_in(
        &dir.path().join("data"),
        &[
            "--functions",
            functions.to_str().unwrap(),
            "--sampling-strategies",
            rules.to_str().unwrap(),
        ],
    );
    let sampled = |function: &str| -> Vec<bool> {
        (0..3)
            .map(|_| {
                let a = invoke(&d, "test", function, "ok", &[]);
                assert_eq!(a.status, 200, "{}", a.body);
                let rid = a.header("x-fc-request-id").to_owned();
                record(&d, "test", function, &rid)["isSampled"] == true
            })
            .collect()
    };
    assert_eq!(sampled("governed"), [false, false, false]);
    assert_eq!(sampled("own"), [true, true, true]);
}
