//! TLS through the real binary (issue 17): with `--tls-cert`/`--tls-key` from a test CA
//! (made here with the `openssl` command), curl reads the query API over HTTPS and HTTP/2,
//! a real OpenTelemetry exporter sends spans over HTTPS, and a certificate replaced on
//! disk is served without a restart.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server certificate for 127.0.0.1 named `cn`, signed by the test CA, into
/// server.pem and server.key (the key first, as a deploy tool would).
fn issue(dir: &Path, cn: &str) {
    sh(
        dir,
        &format!(
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout next.key \
               -out next.csr -subj '/CN={cn}' 2>/dev/null && \
             printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > ext.cnf && \
             openssl x509 -req -in next.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
               -out next.pem -days 1 -extfile ext.cnf 2>/dev/null && \
             cp next.key server.key && cp next.pem server.pem"
        ),
    );
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn served_cn(port: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {port} -servername localhost </dev/null 2>/dev/null \
             | openssl x509 -noout -subject"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The daemon on `dir/name` with TLS from `dir` (and `extra` arguments), and its ports.
fn start(dir: &Path, name: &str, extra: &[&str]) -> (Killed, serde_json::Value) {
    let data = dir.join(name);
    let child = serve_command(&data)
        .arg("--tls-cert")
        .arg(dir.join("server.pem"))
        .arg("--tls-key")
        .arg(dir.join("server.key"))
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Killed(child);
    let ports = data.join("ports.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ports.exists() {
        assert!(Instant::now() < deadline, "no ports.json");
        std::thread::sleep(Duration::from_millis(20));
    }
    let p = serde_json::from_str(&std::fs::read_to_string(&ports).unwrap()).unwrap();
    (guard, p)
}

#[test]
fn every_listener_speaks_tls_and_a_new_certificate_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sh(
        d,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout ca.key -out ca.pem -days 1 -subj '/CN=fctrace test CA' 2>/dev/null",
    );
    issue(d, "first");
    let (_guard, p) = start(d, "data", &[]);
    let port = |k: &str| p[k].as_str().unwrap().to_owned();
    let ca = d.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let query = format!("https://{}", port("query"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl(&["--cacert", ca, &format!("{query}/readyz")]).1 != "ready" {
        assert!(Instant::now() < deadline, "not ready over TLS");
        std::thread::sleep(Duration::from_millis(50));
    }
    // plain HTTP on a TLS port gets nothing
    assert!(!curl(&[&format!("http://{}/readyz", port("query"))])
        .1
        .contains("ready"));
    // HTTP/2 over TLS (ALPN)
    let (ok, version) = curl(&[
        "--cacert",
        ca,
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        &format!("{query}/api/services"),
    ]);
    assert!(ok);
    assert_eq!(version, "2");

    // a real exporter over HTTPS, trusting the test CA
    let python = python_venv("otlp");
    let out = Command::new(&python)
        .arg(format!(
            "{}/tests/e2e/python/otlp_export.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(["http", &format!("https://{}", port("otlp_http")), "tls-svc"])
        .env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca)
        // what `requests` (under the exporter) trusts when told nothing else
        .env("REQUESTS_CA_BUNDLE", ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (ok, body) = curl(&["--cacert", ca, &format!("{query}/api/traces/{trace}")]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        v["data"][0]["spans"].as_array().map(Vec::len),
        Some(2),
        "{body} {stderr}"
    );

    // a new certificate on disk: served without a restart
    assert!(served_cn(&port("otlp_http")).ends_with("CN = first"));
    issue(d, "second");
    while !served_cn(&port("otlp_http")).ends_with("CN = second") {
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "the new certificate was not picked up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served_cn(&port("query")).ends_with("CN = second"));
}

#[test]
fn ingest_ports_can_require_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sh(
        d,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout ca.key -out ca.pem -days 1 -subj '/CN=fctrace test CA' 2>/dev/null && \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout client.key \
           -out client.csr -subj '/CN=a client' 2>/dev/null && \
         printf 'extendedKeyUsage=clientAuth' > client.cnf && \
         openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
           -out client.pem -days 1 -extfile client.cnf 2>/dev/null",
    );
    issue(d, "server");
    let ca_path = d.join("ca.pem");
    let (_guard, p) = start(d, "data", &["--tls-client-ca", ca_path.to_str().unwrap()]);
    let ca = ca_path.to_str().unwrap();
    let port = |k: &str| p[k].as_str().unwrap().to_owned();
    let query = format!("https://{}/readyz", port("query"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl(&["--cacert", ca, &query]).1 != "ready" {
        assert!(Instant::now() < deadline, "not ready over TLS");
        std::thread::sleep(Duration::from_millis(50));
    }
    // the query port takes anyone with the CA; the ingest port only a client with a cert
    let otlp = format!("https://{}/v1/traces", port("otlp_http"));
    let (cert, key) = (d.join("client.pem"), d.join("client.key"));
    let post = |with_cert: bool| {
        let mut args = vec![
            "--cacert",
            ca,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            "{}",
        ];
        if with_cert {
            args.extend([
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ]);
        }
        args.push(&otlp);
        curl(&args).1
    };
    assert_eq!(post(true), "200");
    assert_ne!(post(false), "200");
}
