//! The recursion guard (issue 19): a function that invokes itself through the gateway,
//! passing on the context it was given, is stopped when the chain passes through it more
//! than `max_recursion_depth` times (16 by default, as Lambda), with a clear error, and
//! the stop is counted as `RecursiveInvocationsDropped`.

mod common;

use common::gateway::{invoke, start_with_functions};
use common::*;
use serde_json::Value as Json;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn recurse_fn(name: &str, extra: &str) -> String {
    format!(
        "[[functions]]\nservice = \"test\"\nname = \"{name}\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/recurse.py\"]\ninstance_concurrency = 40\nmax_instances = 40\n{extra}\n"
    )
}

/// Follow the nested answers down to the call that was stopped; how many calls ran.
fn unwind(mut body: Json) -> (usize, u16, Json) {
    let mut ran = 0;
    loop {
        ran += 1;
        let status = body["status"].as_u64().unwrap() as u16;
        let inner: Json = serde_json::from_str(body["body"].as_str().unwrap()).unwrap();
        if status != 200 {
            return (ran, status, inner);
        }
        body = inner;
    }
}

#[test]
fn a_self_invoking_function_stops_at_the_limit() {
    let d = start_with_functions(
        &format!(
            "{}{}",
            recurse_fn("loop", ""),
            recurse_fn("short", "max_recursion_depth = 3")
        ),
        &[],
    );
    for (function, limit) in [("loop", 16), ("short", 3)] {
        let url = format!(
            "{}/2016-08-15/services/test/functions/{function}/invocations",
            d.gateway
        );
        let a = invoke(&d, "test", function, &url, &[]);
        assert_eq!(a.status, 200, "{}", a.body);
        let (ran, status, error) = unwind(serde_json::from_str(&a.body).unwrap());
        assert_eq!(ran, limit, "{function}: calls that ran");
        assert_eq!(status, 400, "{function}");
        assert_eq!(
            error["errorCode"], "RecursiveInvocationException",
            "{error}"
        );
        assert!(
            error["errorMessage"]
                .as_str()
                .unwrap()
                .contains(&format!("{} times", limit + 1)),
            "{error}"
        );
        let v = common::gateway::eventually("the dropped call counted", || {
            let (_, v) = d.get(&format!(
                "/api/v1/metrics/FunctionRecursiveInvocationsDropped?service=test&function={function}&period=3600"
            ));
            let n: f64 = data(&v).iter().filter_map(|p| p["value"].as_f64()).sum();
            (n >= 1.0).then_some(n)
        });
        assert_eq!(v, 1.0, "{function}");
    }
    assert_eq!(
        d.metric("fctrace_recursive_invocations_dropped_total{function=\"FC:test/loop\"}"),
        1.0
    );
}
