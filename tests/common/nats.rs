//! The cluster's black-box helpers: real `nats-server` processes (one, or three in a
//! JetStream cluster), the OpenTelemetry SDK's export, and the leader of the span stream.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::gateway::eventually;
use super::http;

/// `nats-server` from Debian's package (`make test-deps` installs it).
pub fn nats_server_bin() -> PathBuf {
    for p in ["/usr/sbin/nats-server", "/usr/bin/nats-server"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("nats-server is not installed: run `make test-deps`");
}

pub struct Nats {
    pub child: Child,
    pub url: String,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One JetStream server on a free port, ready once it wrote its ports file.
pub fn start_nats(dir: &Path) -> Nats {
    let ports_dir = dir.join("ports");
    std::fs::create_dir_all(&ports_dir).unwrap();
    let child = Command::new(nats_server_bin())
        .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
        .arg(dir.join("js"))
        .arg("--ports_file_dir")
        .arg(&ports_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    let file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = loop {
        if let Some(url) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<Json>(&t).ok())
            .and_then(|v| v["nats"][0].as_str().map(str::to_owned))
        {
            break url;
        }
        assert!(Instant::now() < deadline, "nats-server wrote no ports file");
        std::thread::sleep(Duration::from_millis(50));
    };
    Nats { child, url }
}

/// The OpenTelemetry Python SDK's spans sent to `endpoint` (OTLP/HTTP); their trace id.
pub fn sdk_export(python: &Path, endpoint: &str, service: &str) -> String {
    super::run(
        Command::new(python)
            .arg(format!(
                "{}/tests/e2e/python/otlp_export.py",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args(["http", endpoint, service]),
    )
}

/// The operations of the one trace in a `/api/traces/{id}` answer, sorted (the SDK
/// export's are `handle` and `query-db`).
pub fn operations_of(v: &Json) -> Vec<String> {
    let mut ops: Vec<String> = v["data"][0]["spans"]
        .as_array()
        .map(|spans| {
            spans
                .iter()
                .filter_map(|s| s["operationName"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ops.sort();
    ops
}

/// A free port of 127.0.0.1 (bound and released: the servers below bind it again).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Three JetStream servers clustered on loopback: (server, client URL, monitoring URL).
pub fn start_nats_cluster(dir: &Path) -> Vec<(Nats, String)> {
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    (0..3)
        .map(|i| {
            let (client, route, monitor) = ports[i];
            let routes: Vec<String> = (0..3)
                .filter(|j| *j != i)
                .map(|j| format!("nats://127.0.0.1:{}", ports[j].1))
                .collect();
            let child = Command::new(nats_server_bin())
                .args(["-js", "-a", "127.0.0.1", "--name", &format!("n{i}")])
                .args(["-p", &client.to_string(), "-m", &monitor.to_string()])
                .args(["--cluster_name", "fctrace"])
                .args(["--cluster", &format!("nats://127.0.0.1:{route}")])
                .args(["--routes", &routes.join(",")])
                .arg("-sd")
                .arg(dir.join(format!("js{i}")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nats-server");
            (
                Nats {
                    child,
                    url: format!("nats://127.0.0.1:{client}"),
                },
                format!("http://127.0.0.1:{monitor}"),
            )
        })
        .collect()
}

/// The name of the server leading the span stream, from any server's monitoring port.
pub fn stream_leader(monitors: &[String]) -> String {
    eventually("the stream's leader", || {
        monitors.iter().find_map(|m| {
            let v: Json = http()
                .get(format!("{m}/jsz?streams=true"))
                .send()
                .ok()?
                .json()
                .ok()?;
            v["account_details"].as_array()?.iter().find_map(|a| {
                a["stream_detail"].as_array()?.iter().find_map(|s| {
                    (s["name"] == "FCTRACE_SPANS")
                        .then(|| s["cluster"]["leader"].as_str().map(str::to_owned))
                        .flatten()
                })
            })
        })
    })
}
