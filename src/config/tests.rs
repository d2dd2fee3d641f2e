use std::io::Write;

use super::*;

#[test]
fn flags_override_file_override_defaults() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "retention = \"1h\"\nquery_addr = \"127.0.0.1:1234\"\ndata_dir = \"/tmp/x\""
    )
    .unwrap();
    let args = ServeArgs {
        config: Some(f.path().to_owned()),
        data_dir: Some("/tmp/y".into()),
        ..Default::default()
    };
    let s = Settings::resolve(&args).unwrap();
    assert_eq!(s.retention, Duration::from_secs(3600));
    assert_eq!(s.query_addr, "127.0.0.1:1234");
    assert_eq!(s.data_dir, PathBuf::from("/tmp/y"));
    assert_eq!(s.collector_http_addr, "127.0.0.1:14268");
    assert!(s.sync_writes);
}

#[test]
fn errors_name_the_key() {
    let args = ServeArgs {
        retention: Some("forever".into()),
        ..Default::default()
    };
    let e = Settings::resolve(&args).unwrap_err().to_string();
    assert!(e.starts_with("retention:"), "{e}");
    let args = ServeArgs {
        query_addr: Some("nonsense".into()),
        ..Default::default()
    };
    let e = Settings::resolve(&args).unwrap_err().to_string();
    assert!(e.starts_with("query_addr:"), "{e}");

    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "retension = \"1h\"").unwrap();
    let args = ServeArgs {
        config: Some(f.path().to_owned()),
        ..Default::default()
    };
    let e = Settings::resolve(&args).unwrap_err().to_string();
    assert!(e.contains("retension"), "{e}");
}
