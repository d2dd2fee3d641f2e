//! Shared helpers for the black-box tests: start the real `fctrace` binary on port 0 with
//! a temporary data directory, find its ports in `ports.json`, and build Jaeger thrift
//! batches.
#![allow(dead_code)]

pub mod gateway;
pub mod nats;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/clients");
pub const E2E: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e");

/// Install the Node clients of `tests/e2e/node/package.json` (once), returning that folder.
/// A missing npm fails the test: the Makefile's `deps` installs Node.
pub fn node_clients() -> PathBuf {
    npm_install(&Path::new(E2E).join("node"))
}

/// `npm install` in `dir` unless every dependency of its package.json is there.
pub fn npm_install(dir: &Path) -> PathBuf {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = dir.to_owned();
    let pkg: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    let missing = pkg["dependencies"].as_object().unwrap().keys().any(|name| {
        !dir.join("node_modules")
            .join(name)
            .join("package.json")
            .exists()
    });
    if missing {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm must be installed to run the end-to-end tests (make deps installs it)");
        assert!(status.success(), "npm install failed in {}", dir.display());
    }
    dir
}

/// A virtualenv under `tests/e2e/python/.venv-NAME` with `NAME-requirements.txt` installed
/// (once per change of that file); returns its python.
pub fn python_venv(name: &str) -> PathBuf {
    let reqs = Path::new(E2E)
        .join("python")
        .join(format!("{name}-requirements.txt"));
    python_venv_from(name, &reqs)
}

/// A virtualenv `tests/e2e/python/.venv-NAME` with the given requirements file installed.
pub fn python_venv_from(name: &str, reqs: &Path) -> PathBuf {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let base = Path::new(E2E).join("python");
    let wanted = std::fs::read_to_string(reqs).expect("requirements file");
    let venv = base.join(format!(".venv-{name}"));
    let python = venv.join("bin/python");
    let stamp = venv.join("installed-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 -m venv");
    assert!(status.success(), "python3 -m venv failed");
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(reqs)
        .status()
        .expect("pip");
    assert!(status.success(), "pip install -r {} failed", reqs.display());
    std::fs::write(&stamp, wanted).unwrap();
    python
}

/// Run a command, fail the test with its stderr if it fails, return its trimmed stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub struct Daemon {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub collector: String,
    pub otlp_http: String,
    pub otlp_grpc: String,
    pub gateway: String,
    pub query: String,
    /// Every address in `ports.json`, by listener name.
    pub ports: Json,
    _tmp: Option<tempfile::TempDir>,
}

/// Start a daemon in a fresh temporary directory.
pub fn start_server() -> Daemon {
    start_server_with(&[])
}

pub fn start_server_with(args: &[&str]) -> Daemon {
    let tmp = tempfile::tempdir().expect("tempdir");
    Daemon::start_in(tmp.path(), args).owning(tmp)
}

/// `fctrace serve` on `dir` with every listener on an ephemeral port of 127.0.0.1.
pub fn serve_command(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fctrace"));
    c.arg("serve").arg("--data-dir").arg(dir);
    for name in [
        "collector-http",
        "query",
        "otlp-http",
        "otlp-grpc",
        "gateway",
        "sampling",
        "agent-compact",
        "agent-binary",
        "jaeger-grpc",
        "zipkin",
        "internal",
    ] {
        c.arg(format!("--{name}-addr")).arg("127.0.0.1:0");
    }
    c
}

impl Daemon {
    /// The daemon removes `tmp` when it is dropped (after its process is gone).
    pub fn owning(mut self, tmp: tempfile::TempDir) -> Daemon {
        self._tmp = Some(tmp);
        self
    }

    /// Start a daemon on an existing data directory (for restarts).
    pub fn start_in(dir: &Path, args: &[&str]) -> Daemon {
        let ports = dir.join("ports.json");
        let _ = std::fs::remove_file(&ports);
        let child = serve_command(dir)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn fctrace");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut child = Some(child);
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&ports) {
                break t;
            }
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("fctrace exited before it was ready: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "fctrace did not write ports.json in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let ports: Json = serde_json::from_str(&text).expect("ports.json is JSON");
        let addr = |k: &str| format!("http://{}", ports[k].as_str().expect("port in ports.json"));
        let d = Daemon {
            child,
            data_dir: dir.to_owned(),
            collector: addr("collector_http"),
            otlp_http: addr("otlp_http"),
            otlp_grpc: addr("otlp_grpc"),
            gateway: addr("gateway"),
            query: addr("query"),
            ports: ports.clone(),
            _tmp: None,
        };
        // ready: started, and in a cluster connected and (a store node) caught up
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http()
                .get(format!("{}/readyz", d.query))
                .send()
                .expect("readyz");
            if ready.status() == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not ready in 30 s: {}",
                ready.text().unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// `host:port` of a listener in `ports.json`.
    pub fn port(&self, name: &str) -> String {
        self.ports[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in ports.json"))
            .to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes.
    pub fn proc_status_bytes(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("daemon's /proc status");
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in /proc status"));
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    /// The value of one series of `/metrics` (0 when it is not there yet).
    pub fn metric(&self, series: &str) -> f64 {
        self.metric_as(series, None)
    }

    /// `metric` with a bearer token (with tenants, `/metrics` answers the admin token).
    pub fn metric_as(&self, series: &str, token: Option<&str>) -> f64 {
        let mut r = http().get(format!("{}/metrics", self.query));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let text = r
            .send()
            .expect("GET /metrics")
            .text()
            .expect("metrics text");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map(|v| v.trim().parse().expect("metric value"))
            .unwrap_or(0.0)
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        self.child.take().expect("running").wait().expect("wait")
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().expect("kill -9");
        let _ = c.wait();
    }

    pub fn get(&self, path_and_query: &str) -> (u16, Json) {
        let r = http()
            .get(format!("{}{}", self.query, path_and_query))
            .send()
            .expect("GET");
        let status = r.status().as_u16();
        let body = r.text().expect("body");
        let json = serde_json::from_str(&body).unwrap_or(Json::String(body));
        (status, json)
    }

    /// POST a thrift binary batch to the collector; returns status and body text.
    pub fn post_thrift(&self, body: Vec<u8>) -> (u16, String) {
        let r = http()
            .post(format!("{}/api/traces", self.collector))
            .header("Content-Type", "application/x-thrift")
            .body(body)
            .send()
            .expect("POST");
        (r.status().as_u16(), r.text().unwrap_or_default())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Sleep until a period of `period_ms` has just begun (periods counted from the epoch,
/// as the daemon counts its sampling periods).
pub fn wait_for_period_start(period_ms: u64) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    std::thread::sleep(Duration::from_millis(period_ms - ms % period_ms + 50));
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// A tag value in a test batch.
#[derive(Clone, Debug)]
pub enum V {
    S(&'static str),
    B(bool),
    I(i64),
    F(f64),
}

#[derive(Clone, Debug, Default)]
pub struct TSpan {
    pub trace: u128,
    pub id: u64,
    pub parent: u64,
    pub op: &'static str,
    pub start: u64,
    pub duration: u64,
    pub tags: Vec<(&'static str, V)>,
    pub logs: Vec<(u64, Vec<(&'static str, V)>)>,
}

fn value(v: &V) -> fctrace::model::Value {
    use fctrace::model::Value;
    match v {
        V::S(s) => Value::Str((*s).to_owned().into()),
        V::B(b) => Value::Bool(*b),
        V::I(i) => Value::I64(*i),
        V::F(f) => Value::F64(*f),
    }
}

fn kvs(list: &[(&'static str, V)]) -> Vec<fctrace::model::KeyValue> {
    list.iter()
        .map(|(k, v)| fctrace::model::KeyValue::new(*k, value(v)))
        .collect()
}

/// Encode a Jaeger `Batch` in thrift binary protocol, as a Jaeger client would.
pub fn batch(service: &str, process_tags: &[(&'static str, V)], spans: &[TSpan]) -> Vec<u8> {
    use fctrace::model::{Log, Process, RefType, Span, SpanId, SpanRef, TraceId};
    let process = std::sync::Arc::new(Process {
        service_name: service.to_owned(),
        tags: kvs(process_tags),
    });
    let spans: Vec<Span> = spans
        .iter()
        .map(|s| Span {
            trace_id: TraceId(s.trace),
            span_id: SpanId(s.id),
            operation_name: s.op.to_owned(),
            references: if s.parent == 0 {
                vec![]
            } else {
                vec![SpanRef {
                    ref_type: RefType::ChildOf,
                    trace_id: TraceId(s.trace),
                    span_id: SpanId(s.parent),
                }]
            },
            flags: 1,
            start_time: s.start,
            duration: s.duration,
            tags: kvs(&s.tags),
            logs: s
                .logs
                .iter()
                .map(|(ts, fields)| Log {
                    timestamp: *ts,
                    fields: kvs(fields),
                })
                .collect(),
            process: std::sync::Arc::clone(&process),
        })
        .collect();
    fctrace::bench::gen::thrift_batch(&spans)
}

/// The `data` array of a Jaeger envelope.
pub fn data(v: &Json) -> &Vec<Json> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array in {v}"))
}

/// Trace ids of a search answer, in order.
pub fn trace_ids(v: &Json) -> Vec<String> {
    data(v)
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_owned())
        .collect()
}

/// Find a tag in a Jaeger JSON tag list.
pub fn tag<'a>(tags: &'a Json, key: &str) -> Option<&'a Json> {
    tags.as_array()?.iter().find(|t| t["key"] == key)
}

/// A webhook receiver: every POST body it gets (JSON), answered 200.
pub fn receiver() -> (String, Arc<Mutex<Vec<Json>>>) {
    receiver_slow(Duration::ZERO)
}

/// A receiver that takes `delay` before it answers each POST (a slow listener).
pub fn receiver_slow(delay: Duration) -> (String, Arc<Mutex<Vec<Json>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&got);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            std::thread::sleep(delay);
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    seen.lock().unwrap().push(v);
                }
            }
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}
