//! Security groups in a lab (needs root, bpffs, namespaces): a group scoped
//! to tcp/5432 carries a real TCP connection with data both ways and
//! refuses every other port (counted as `port_not_allowed`); `maps dump`
//! and `status` show the scope; changing the scope or removing the owner
//! from the group cuts an established connection at its next packet.

use std::{
    process::{Child, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

mod common;

use common::{Lab, in_ns, nf, ok, require_root_and_bpffs};
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&ok(out)).expect("JSON")
}

/// `port_not_allowed` drops counted on `host` (from containers).
fn port_refusals(store: &str, host: &str) -> f64 {
    let counters = json(&nf(&[
        "--store", store, "maps", "dump", "COUNTERS", "--host", host, "-o", "json",
    ]));
    counters
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["reason"] == "port_not_allowed")
        .map(|r| r["packets"].as_f64().unwrap_or(0.0))
        .sum()
}

/// Waits until `host`'s pinned PORT_SCOPES says `bob` may open exactly
/// `allow` towards alice (`None`: no entry).
fn wait_for_scope(store: &str, host: &str, allow: Option<&[&str]>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = json(&nf(&[
            "--store",
            store,
            "maps",
            "dump",
            "PORT_SCOPES",
            "--host",
            host,
            "-o",
            "json",
        ]));
        let got = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["receiver"] == "alice" && r["sender"] == "bob")
            .map(|r| r["allow"].clone());
        let want = allow.map(|a| serde_json::json!(a));
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host}: PORT_SCOPES alice<-bob is {got:?}, want {want:?}"
        );
        sleep(Duration::from_millis(100));
    }
}

/// One request and one answer over TCP from `client_ns` to `addr:port`:
/// what each end received (empty when the connection never opened).
fn exchange(server_ns: &str, client_ns: &str, addr: &str, port: u16) -> (String, String) {
    let server: Child = in_ns(
        server_ns,
        // Both ends keep their input open a second: a netcat whose input
        // ended at once sometimes quit before the other end's data arrived.
        &format!("(printf answer-from-alice; sleep 1) | timeout 5 nc -l -q 1 {port}"),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("nc -l");
    sleep(Duration::from_millis(300));
    let client = in_ns(
        client_ns,
        &format!("(printf request-from-bob; sleep 1) | timeout 4 nc -q 1 -w 2 {addr} {port}"),
    )
    .output()
    .expect("nc");
    let served = server.wait_with_output().expect("server");
    (
        String::from_utf8_lossy(&served.stdout).into_owned(),
        String::from_utf8_lossy(&client.stdout).into_owned(),
    )
}

/// A stream from `client_ns` to `addr:port`: 20,000 bytes every 100 ms for
/// 5 s, counted by the server (which gives up after 8 s). Returns (server,
/// client).
fn stream(server_ns: &str, client_ns: &str, addr: &str, port: u16) -> (Child, Child) {
    let server = in_ns(server_ns, &format!("timeout 8 nc -l {port} | wc -c"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("nc -l");
    sleep(Duration::from_millis(300));
    let client = in_ns(
        client_ns,
        &format!(
            "for i in $(seq 1 50); do head -c 20000 /dev/zero; sleep 0.1; done \
             | timeout 8 nc -q 1 {addr} {port}"
        ),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("nc");
    (server, client)
}

fn received(server: Child) -> u64 {
    let out = server.wait_with_output().expect("server");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_group_scoped_to_tcp_5432_opens_that_port_only_and_revocation_cuts_connections() {
    require_root_and_bpffs();
    let (lab, _) = Lab::up("sg", 2);
    let name = lab.name.clone();
    let store = format!("file://{}/state.json", lab.dir);
    let (h1, h2) = (format!("{name}-h1"), format!("{name}-h2"));
    // bob-web on h1 (10.1.1.2) reaches alice-db on h2 (10.1.2.1) through team.
    let bob = format!("nf-{name}-bob-web");
    let alice_db = format!("nf-{name}-alice-db");
    let nfs = |args: &[&str]| {
        let mut all = vec!["--store", store.as_str()];
        all.extend_from_slice(args);
        ok(&nf(&all))
    };
    nfs(&["group", "add-member", "team", "bob"]);
    nfs(&[
        "security-group",
        "set",
        "alice",
        "--via",
        "team",
        "--allow",
        "tcp/5432",
    ]);
    for h in [&h1, &h2] {
        wait_for_scope(&store, h, Some(&["tcp/5432"]));
    }

    // tcp/5432: a connection with data both ways.
    let (served, answered) = exchange(&alice_db, &bob, "10.1.2.1", 5432);
    assert_eq!(served, "request-from-bob", "alice's server got the request");
    assert_eq!(answered, "answer-from-alice", "bob got the answer");

    // Any other port: refused at bob's host and counted.
    let before = port_refusals(&store, &h1);
    let (served, answered) = exchange(&alice_db, &bob, "10.1.2.1", 5433);
    assert_eq!((served.as_str(), answered.as_str()), ("", ""));
    let after = port_refusals(&store, &h1);
    assert!(
        after > before,
        "tcp/5433 was not counted as port_not_allowed ({before} -> {after})"
    );

    // maps dump and status show it.
    let status = json(&nf(&[
        "--store", &store, "status", "--host", &h1, "-o", "json",
    ]));
    assert_eq!(
        status["security_groups"],
        serde_json::json!([{
            "owner": "alice",
            "via": "team",
            "allow": ["tcp/5432"],
            "narrows": ["bob"],
        }]),
        "{status}"
    );

    // An established connection is cut at its next packet when the scope
    // no longer opens its port...
    let (server, client) = stream(&alice_db, &bob, "10.1.2.1", 5432);
    sleep(Duration::from_millis(1000));
    let refused_before = port_refusals(&store, &h1);
    nfs(&[
        "security-group",
        "set",
        "alice",
        "--via",
        "team",
        "--allow",
        "tcp/6000",
    ]);
    let got = received(server);
    drop(client);
    assert!(
        got > 0 && got < 50 * 20_000,
        "the connection was not cut by the new scope: {got} bytes arrived"
    );
    assert!(port_refusals(&store, &h1) > refused_before);

    // ... and when the owner leaves the group.
    nfs(&[
        "security-group",
        "set",
        "alice",
        "--via",
        "team",
        "--allow",
        "tcp/5432",
    ]);
    for h in [&h1, &h2] {
        wait_for_scope(&store, h, Some(&["tcp/5432"]));
    }
    let (server, client) = stream(&alice_db, &bob, "10.1.2.1", 5432);
    sleep(Duration::from_millis(1000));
    nfs(&["group", "remove-member", "team", "bob"]);
    let got = received(server);
    drop(client);
    assert!(
        got > 0 && got < 50 * 20_000,
        "the connection was not cut when bob left team: {got} bytes arrived"
    );
    // The pair is gone with the group membership; the scope stays.
    for h in [&h1, &h2] {
        wait_for_scope(&store, h, None);
    }
    let list = json(&nf(&[
        "--store",
        &store,
        "security-group",
        "list",
        "-o",
        "json",
    ]));
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    drop(lab);
}

#[test]
fn replies_of_allowed_connections_pass_a_scoped_client_and_revocation_cuts_them() {
    require_root_and_bpffs();
    let (lab, _) = Lab::up("sr", 2);
    let name = lab.name.clone();
    let store = format!("file://{}/state.json", lab.dir);
    let h1 = format!("{name}-h1");
    // alice-web on h1 (10.1.1.1) and alice-db on h2 (10.1.2.1): alice
    // narrows her own containers to tcp/5432, so the replies of a
    // connection (to the client's ephemeral port) pass only as replies of
    // the tracked connection.
    let web = format!("nf-{name}-alice-web");
    let db = format!("nf-{name}-alice-db");
    let nfs = |args: &[&str]| {
        let mut all = vec!["--store", store.as_str()];
        all.extend_from_slice(args);
        ok(&nf(&all))
    };
    nfs(&[
        "security-group",
        "set",
        "alice",
        "--own",
        "--allow",
        "tcp/5432",
    ]);
    // The flag is in h1's endpoints once the scope is (scope first).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = json(&nf(&[
            "--store",
            &store,
            "maps",
            "dump",
            "ENDPOINTS",
            "--host",
            &h1,
            "-o",
            "json",
        ]));
        let flagged = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["owner"] == "alice")
            .all(|r| r["ingress_scoped"] == true);
        if flagged {
            break;
        }
        assert!(Instant::now() < deadline, "alice's endpoints never flagged");
        sleep(Duration::from_millis(100));
    }
    sleep(Duration::from_millis(300));

    let (served, answered) = exchange(&db, &web, "10.1.2.1", 5432);
    assert_eq!(served, "request-from-bob", "the server got the request");
    assert_eq!(
        answered, "answer-from-alice",
        "the reply to the client's port passed as the reply of a tracked connection"
    );
    let (served, answered) = exchange(&db, &web, "10.1.2.1", 5433);
    assert_eq!((served.as_str(), answered.as_str()), ("", ""));

    // A scope that no longer opens the port cuts the connection, replies
    // included.
    let (server, client) = stream(&db, &web, "10.1.2.1", 5432);
    sleep(Duration::from_millis(1000));
    nfs(&[
        "security-group",
        "set",
        "alice",
        "--own",
        "--allow",
        "tcp/6000",
    ]);
    let got = received(server);
    drop(client);
    assert!(
        got > 0 && got < 50 * 20_000,
        "the connection was not cut by the new scope: {got} bytes arrived"
    );
    drop(lab);
}
