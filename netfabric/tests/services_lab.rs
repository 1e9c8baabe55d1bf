//! Services in a two-host lab (needs root, bpffs, namespaces): a service
//! created with the CLI reaches every agent's maps (`maps dump`), `status`
//! and `/metrics`; a backend removed leaves every host's table, the
//! service deleted leaves no entry. How soon is not asserted (timing
//! belongs in the bench).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::Value;

mod common;

use common::{Lab, free_ports, nf, ok, require_root_and_bpffs, unique_name};

fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(200));
    }
}

fn dump(store: &str, map: &str, host: &str) -> Vec<Value> {
    let out = nf(&[
        "--store", store, "maps", "dump", map, "--host", host, "-o", "json",
    ]);
    if !out.status.success() {
        return Vec::new();
    }
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn a_service_reaches_every_agent_and_leaves_again() {
    require_root_and_bpffs();
    let name = unique_name("svc");
    let dir = format!("/tmp/netfabric-test-{name}");
    let base = free_ports(2);
    let _lab = Lab {
        name: name.clone(),
        dir: dir.clone(),
    };
    ok(&nf(&[
        "lab",
        "up",
        "--hosts",
        "2",
        "--name",
        &name,
        "--dir",
        &dir,
        "--metrics-port-base",
        &base.to_string(),
    ]));
    let store = format!("file://{dir}/state.json");
    let hosts = [format!("{name}-h1"), format!("{name}-h2")];
    // alice-web on h1, alice-db on h2 (named after the lab).
    let (web, db) = (format!("{name}-alice-web"), format!("{name}-alice-db"));
    let vip = ok(&nf(&[
        "--store",
        &store,
        "service",
        "create",
        "api",
        "--owner",
        "alice",
        "--port",
        "tcp/80:8080",
        "--backend",
        &web,
        "--backend",
        &db,
    ]));
    let vip = vip.trim().to_owned();
    assert!(vip.ends_with(".0.1"), "{vip}");
    for host in &hosts {
        let ports = wait_for("SERVICE_PORTS", Duration::from_secs(20), || {
            let rows = dump(&store, "SERVICE_PORTS", host);
            (rows.len() == 1).then_some(rows)
        });
        assert_eq!(ports[0]["service"], "api", "{host}: {ports:?}");
        assert_eq!(ports[0]["vip"], vip.as_str());
        assert_eq!(ports[0]["target_port"], 8080);
        let tables = dump(&store, "SERVICE_TABLES", host);
        let members: Vec<&str> = tables
            .iter()
            .filter_map(|r| r["container"].as_str())
            .collect();
        assert_eq!(members, [web.as_str(), db.as_str()], "{host}: {tables:?}");
        // No report: both healthy, the table shared between them.
        assert!(
            tables.iter().all(|r| r["slots"].as_u64() > Some(8000)),
            "{tables:?}"
        );
        let endpoints = dump(&store, "ENDPOINTS", host);
        assert!(!endpoints.is_empty(), "{host}: no endpoints");
    }
    let list = ok(&nf(&[
        "--store", &store, "service", "list", "--host", &hosts[0], "-o", "json",
    ]));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["health_seen_by"], hosts[0].as_str(), "{list}");
    assert_eq!(list[0]["backend_health"][&web], "up", "{list}");
    assert_eq!(list[0]["backend_health"][&db], "up", "{list}");
    let status = ok(&nf(&["--store", &store, "status", "--host", &hosts[0]]));
    assert!(
        status.contains("alice/api") && status.contains(&db),
        "{status}"
    );
    let metrics = wait_for("the agent's /metrics", Duration::from_secs(10), || {
        http_get(&format!("127.0.0.1:{}", base + 1), "/metrics").ok()
    });
    for needle in [
        "netfabric_map_entries{map=\"SERVICE_PORTS\"} 1",
        "netfabric_map_entries{map=\"SERVICE_TABLES\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }

    // The health board (as h2's prober would publish it) says alice-db is
    // down on the health port: every agent's table keeps it as a member
    // without a slot, and takes it back when the report says up.
    let db_address: String = ok(&nf(&["--store", &store, "container", "list", "-o", "json"]))
        .parse::<Value>()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == db.as_str())
        .map(|c| c["address"].as_str().unwrap().to_owned())
        .unwrap();
    let board = netfabric::store::health_board::FileHealthBoard::for_store(
        &netfabric::store::FileStore::from_path(format!("{dir}/state.json")),
    );
    let report = |up: bool| netfabric::health::HealthReport {
        host: hosts[1].clone(),
        at_ms: netfabric::health::now_ms(),
        targets: vec![netfabric::health::TargetHealth {
            backend: db_address.parse().unwrap(),
            port: 8080,
            check: netfabric::health::Check::Tcp,
            up,
            reason: (!up).then(|| "refused".to_owned()),
        }],
    };
    use netfabric::store::health_board::HealthBoard as _;
    board.publish(&report(false)).unwrap();
    for host in &hosts {
        let tables = wait_for("the member down", Duration::from_secs(20), || {
            let rows = dump(&store, "SERVICE_TABLES", host);
            rows.iter()
                .any(|r| r["container"] == db.as_str() && r["slots"] == 0)
                .then_some(rows)
        });
        let web_row = tables
            .iter()
            .find(|r| r["container"] == web.as_str())
            .unwrap();
        assert_eq!(web_row["slots"], 65_537, "{host}: {tables:?}");
    }
    let list: Value = serde_json::from_str(&ok(&nf(&[
        "--store", &store, "service", "list", "--host", &hosts[0], "-o", "json",
    ])))
    .unwrap();
    assert_eq!(list[0]["backend_health"][&db], "down", "{list}");
    board.publish(&report(true)).unwrap();
    for host in &hosts {
        wait_for("the member up again", Duration::from_secs(20), || {
            dump(&store, "SERVICE_TABLES", host)
                .iter()
                .all(|r| r["slots"].as_u64() > Some(8000))
                .then_some(())
        });
    }
    board.withdraw(&hosts[1]).unwrap();

    // alice-web leaves: every host's table keeps alice-db alone, at its
    // member index.
    ok(&nf(&[
        "--store",
        &store,
        "service",
        "remove-backend",
        "api",
        &web,
        "--owner",
        "alice",
    ]));
    for host in &hosts {
        let tables = wait_for("the member gone", Duration::from_secs(20), || {
            let rows = dump(&store, "SERVICE_TABLES", host);
            (rows.len() == 1).then_some(rows)
        });
        assert_eq!(tables[0]["container"], db.as_str());
        assert_eq!(tables[0]["member"], 1);
    }
    // A backend cannot be deleted while it is one.
    let out = nf(&["--store", &store, "container", "delete", &db]);
    assert_eq!(out.status.code(), Some(2));
    ok(&nf(&[
        "--store", &store, "service", "delete", "api", "--owner", "alice",
    ]));
    for host in &hosts {
        wait_for("no service entry", Duration::from_secs(20), || {
            (dump(&store, "SERVICE_PORTS", host).is_empty()
                && dump(&store, "SERVICE_TABLES", host).is_empty())
            .then_some(())
        });
    }
}
