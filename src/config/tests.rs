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

#[test]
fn a_cluster_role_needs_its_log_and_sane_numbers() {
    use crate::cluster::Role;
    let role = |r: Role, extra: fn(&mut ServeArgs)| {
        let mut args = ServeArgs {
            role: Some(r),
            nats_url: Some("nats://a:4222, nats://b:4222".into()),
            ..Default::default()
        };
        extra(&mut args);
        Settings::resolve(&args)
    };
    // without a role there is no cluster, whatever else is given
    let s = role(Role::All, |_| {}).unwrap();
    assert_eq!(s.cluster, None);
    let s = role(Role::Store, |a| a.node_id = Some("store-7".into())).unwrap();
    let c = s.cluster.unwrap();
    assert_eq!(c.nats_urls, ["nats://a:4222", "nats://b:4222"]);
    assert_eq!((c.partitions, c.replicas), (16, 3));
    assert_eq!(c.node_id, "store-7");
    assert_eq!(
        role(Role::Ingest, |_| {}).unwrap().cluster.unwrap().node_id,
        "ingest"
    );
    let err = |r: Role, extra: fn(&mut ServeArgs)| role(r, extra).unwrap_err().to_string();
    assert!(err(Role::Ingest, |a| a.nats_url = None).starts_with("nats_url:"));
    assert!(err(Role::Ingest, |a| a.partitions = Some(0)).starts_with("partitions:"));
    assert!(err(Role::Ingest, |a| a.replicas = Some(6)).starts_with("replicas:"));
    assert!(err(Role::Store, |a| a.node_id = Some("a b".into())).starts_with("node_id:"));
    // a query node needs the cluster's NATS too; a store node's internal API has a default
    assert!(err(Role::Query, |a| a.nats_url = None).starts_with("nats_url:"));
    let c = role(Role::Store, |_| {}).unwrap().cluster.unwrap();
    assert_eq!(
        (c.internal_addr.as_str(), c.advertise_addr),
        ("127.0.0.1:16689", None)
    );
}
