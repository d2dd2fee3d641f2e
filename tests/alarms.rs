//! Alarms through the real binary: a rule on a function's error rate goes to ALARM when
//! calls fail and back to OK when they stop, each transition POSTed to a real local HTTP
//! receiver; a bad rules file keeps the last good rules, a good one replaces them.

mod common;

use std::time::{Duration, Instant};

use common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn invoke(d: &Daemon, event: &str) -> u16 {
    http()
        .post(format!(
            "{}/2016-08-15/services/test/functions/al/invocations",
            d.gateway
        ))
        .body(event.to_owned())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn state_of(d: &Daemon, name: &str) -> Option<String> {
    let (_, v) = d.get("/api/v1/alarms");
    v["data"]["alarms"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)
        .map(|a| a["state"].as_str().unwrap().to_owned())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rules(name: &str, webhook: &str) -> String {
    format!(
        r#"{{"rules": [{{"name": "{name}", "metric": "FunctionFunctionErrorsRate",
            "service": "test", "function": "al", "comparison": ">", "threshold": 50,
            "periods": 1, "webhook": "{webhook}"}}]}}"#
    )
}

#[test]
fn an_alarm_fires_to_its_webhook_and_clears() {
    // The calls must fall in one minute (the rule looks at the current one): start
    // clear of the minute's end.
    let into_minute = now_us() / 1_000_000 % 60;
    if into_minute > 45 {
        std::thread::sleep(Duration::from_secs(60 - into_minute + 1));
    }
    let (url, got) = receiver();
    let tmp = tempfile::tempdir().unwrap();
    let functions = tmp.path().join("functions.toml");
    std::fs::write(
        &functions,
        format!(
            "[[functions]]\nservice = \"test\"\nname = \"al\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/behave.py\"]\n"
        ),
    )
    .unwrap();
    let alarms = tmp.path().join("alarms.json");
    std::fs::write(&alarms, rules("errors", &url)).unwrap();
    let d = Daemon::start_in(
        &tmp.path().join("data"),
        &[
            "--functions",
            functions.to_str().unwrap(),
            "--alarms",
            alarms.to_str().unwrap(),
            "--alarm-interval",
            "200ms",
        ],
    );
    // no calls yet: nothing to judge by
    assert_eq!(state_of(&d, "errors").as_deref(), Some("INSUFFICIENT_DATA"));

    // one call, failed: 100 % errors
    assert_eq!(invoke(&d, "crash"), 500);
    wait_for("ALARM", || {
        state_of(&d, "errors").as_deref() == Some("ALARM")
    });
    wait_for("the ALARM notification", || {
        got.lock().unwrap().iter().any(|n| n["to"] == "ALARM")
    });
    let n = got
        .lock()
        .unwrap()
        .iter()
        .find(|n| n["to"] == "ALARM")
        .cloned()
        .unwrap();
    assert_eq!(n["alarm"], "errors");
    assert_eq!(n["metric"], "FunctionFunctionErrorsRate");
    assert_eq!(n["from"], "INSUFFICIENT_DATA");
    assert_eq!(n["value"], 100.0);
    assert_eq!(n["threshold"], 50.0);

    // three successes: 25 % errors, the condition ends
    for _ in 0..3 {
        assert_eq!(invoke(&d, "ok"), 200);
    }
    wait_for("OK", || state_of(&d, "errors").as_deref() == Some("OK"));
    wait_for("the OK notification", || {
        got.lock().unwrap().iter().any(|n| n["to"] == "OK")
    });
    let (_, v) = d.get("/api/v1/alarms");
    let kinds: Vec<(String, String)> = v["data"]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap().into(),
                t["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("INSUFFICIENT_DATA".to_owned(), "ALARM".to_owned()),
            ("ALARM".to_owned(), "OK".to_owned())
        ]
    );
    wait_for("two notifications counted", || {
        d.metric("fctrace_alarm_notifications_total{outcome=\"sent\"}") == 2.0
    });

    // a bad file keeps the rules in force
    std::fs::write(&alarms, "{\"rules\": [{\"name\": \"x\"").unwrap();
    wait_for("the failed reload", || {
        d.metric("fctrace_alarm_rules_reloads_total{outcome=\"error\"}") == 1.0
    });
    assert_eq!(state_of(&d, "errors").as_deref(), Some("OK"));
    // a good one replaces them
    std::fs::write(&alarms, rules("errors2", &url)).unwrap();
    wait_for("the new rule", || state_of(&d, "errors2").is_some());
    assert_eq!(state_of(&d, "errors"), None);
}

#[test]
fn a_bad_rules_file_at_start_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let alarms = tmp.path().join("alarms.json");
    std::fs::write(
        &alarms,
        r#"{"rules": [{"name": "x", "metric": "FunctionNope", "comparison": ">", "threshold": 1}]}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fctrace"))
        .args(["serve", "--data-dir"])
        .arg(tmp.path().join("data"))
        .arg("--alarms")
        .arg(&alarms)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown metric \"FunctionNope\""), "{err}");
}
