//! A full disk: writes are refused with 503 and `Retry-After`, reads keep working, and
//! writing resumes by itself once space comes back. The data directory is a small tmpfs
//! (mounting one needs root, as `make test` has in CI); the space is used up by a file
//! beside the store.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root): mount said {status}"
        );
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn one_span(trace: u128) -> Vec<u8> {
    batch(
        "disk-full",
        &[],
        &[TSpan {
            trace,
            id: 1,
            op: "op",
            start: now_us(),
            duration: 5,
            tags: vec![("payload", V::S("0123456789abcdef0123456789abcdef"))],
            ..Default::default()
        }],
    )
}

/// Fill the filesystem with one file until a write fails.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0x5au8; 1 << 16];
    while f.write_all(&block).is_ok() {}
    let small = [0x5au8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let fs = Tmpfs::mount("48m");
    let data = fs.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let d = Daemon::start_in(&data, &["--min-free-disk-bytes", "4194304"]);
    assert_eq!(d.post_thrift(one_span(0xd15c)).0, 202);

    let filler = fs.dir.path().join("filler");
    fill(&filler);

    // writes are refused, retriably, and say why
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut trace = 0xf000u128;
    let (status, msg, retry_after) = loop {
        trace += 1;
        let r = http()
            .post(format!("{}/api/traces", d.collector))
            .header("Content-Type", "application/x-thrift")
            .body(one_span(trace))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let msg = r.text().unwrap();
        if status != 202 {
            break (status, msg, retry);
        }
        assert!(
            Instant::now() < deadline,
            "writes still accepted on a full disk"
        );
    };
    assert_eq!(status, 503, "{msg}");
    assert!(msg.contains("disk is full"), "{msg}");
    assert_eq!(retry_after.as_deref(), Some("1"));

    // reads keep working
    let (status, v) = d.get("/api/traces/d15c");
    assert_eq!(status, 200, "{v}");
    assert_eq!(d.get("/healthz").0, 200);

    // space comes back: writing resumes without a restart
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let resumed = loop {
        trace += 1;
        let (status, _) = d.post_thrift(one_span(trace));
        if status == 202 {
            break trace;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume after space came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, _) = d.get(&format!("/api/traces/{resumed:x}"));
    assert_eq!(status, 200);
    assert_eq!(d.get("/api/traces/d15c").0, 200);
}
