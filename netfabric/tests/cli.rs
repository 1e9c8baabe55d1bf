//! The `netfabric` binary against a temporary store: every bad input exits
//! non-zero with a message naming the field and leaves the store file
//! byte-identical; good input works, is idempotent, and concurrent creates
//! never share an address.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    path::Path,
    process::{Command, Output},
};

use netfabric::{
    state::State,
    store::{Store as _, StoreExt as _},
};

mod common;

use common::{BIN, FileStoreCli};

/// The CLI's file store (zone z1, hosts h1 and h2, owners alice and bob)
/// with group g1 {alice} and container web (alice on h1, 10.1.1.1).
fn lab() -> FileStoreCli {
    let lab = FileStoreCli::new();
    lab.ok(&["group", "create", "g1", "--member", "alice"]);
    let out = lab.ok(&[
        "container",
        "create",
        "web",
        "--owner",
        "alice",
        "--host",
        "h1",
    ]);
    assert_eq!(stdout(&out).trim(), "10.1.1.1");
    lab
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn host_args<'a>(name: &'a str, placement: &[&'a str], ip: &'a str, mac: &'a str) -> Vec<&'a str> {
    let mut args = vec!["host", "create", name, "--zone", "z1"];
    args.extend_from_slice(placement);
    args.extend_from_slice(&[
        "--uplink",
        "eth0",
        "--underlay-ip",
        ip,
        "--underlay-mac",
        mac,
    ]);
    args
}

#[test]
fn overlapping_zones_are_refused() {
    let lab = lab();
    lab.refused(
        &["zone", "create", "z2", "--prefix", "10.1.0.0/16"],
        "zones[z2].prefix",
    );
    let err = lab.refused(
        &["zone", "create", "z2", "--prefix", "10.0.0.0/8"],
        "zones[z2].prefix",
    );
    assert!(err.contains("not a /16"), "{err}");
    let err = lab.refused(
        &["zone", "create", "z2", "--prefix", "10.2.3.0/16"],
        "zones[z2].prefix",
    );
    assert!(err.contains("host bits"), "{err}");
}

#[test]
fn a_host_subnet_outside_its_zone_is_refused() {
    let lab = lab();
    let err = lab.refused(
        &host_args(
            "h3",
            &["--subnet", "10.2.3.0/24"],
            "192.168.50.13",
            "02:00:c0:a8:32:13",
        ),
        "hosts[h3].subnet",
    );
    assert!(err.contains("outside zone z1"), "{err}");
}

#[test]
fn a_host_number_outside_1_to_254_is_refused() {
    let lab = lab();
    for n in ["0", "255", "1000"] {
        let err = lab.refused(
            &host_args("h3", &["--number", n], "192.168.50.13", "02:00:c0:a8:32:13"),
            "hosts[h3].number",
        );
        assert!(err.contains(&format!("{n} is outside 1..=254")), "{err}");
    }
}

#[test]
fn duplicate_host_numbers_and_underlay_addresses_are_refused() {
    let lab = lab();
    lab.refused(
        &host_args(
            "h3",
            &["--number", "1"],
            "192.168.50.13",
            "02:00:c0:a8:32:13",
        ),
        "hosts[h3].number",
    );
    lab.refused(
        &host_args(
            "h3",
            &["--number", "3"],
            "192.168.50.11",
            "02:00:c0:a8:32:13",
        ),
        "hosts[h3].underlay_ip",
    );
    lab.refused(
        &host_args(
            "h3",
            &["--number", "3"],
            "192.168.50.13",
            "02:00:c0:a8:32:11",
        ),
        "hosts[h3].underlay_mac",
    );
    lab.refused(
        &host_args("h3", &["--number", "3"], "10.1.200.1", "02:00:c0:a8:32:13"),
        "hosts[h3].underlay_ip",
    );
    // The error names the new host even when its name sorts first.
    lab.refused(
        &host_args(
            "a3",
            &["--number", "2"],
            "192.168.50.13",
            "02:00:c0:a8:32:13",
        ),
        "hosts[a3].number",
    );
}

#[test]
fn duplicate_names_are_refused() {
    let lab = lab();
    lab.refused(
        &["zone", "create", "z1", "--prefix", "10.9.0.0/16"],
        "zones[z1]",
    );
    lab.refused(
        &host_args(
            "h1",
            &["--number", "9"],
            "192.168.50.19",
            "02:00:c0:a8:32:19",
        ),
        "hosts[h1]",
    );
    lab.refused(&["group", "create", "g1", "--member", "bob"], "groups[g1]");
    let err = lab.refused(
        &[
            "container",
            "create",
            "web",
            "--owner",
            "bob",
            "--host",
            "h2",
        ],
        "containers[web]",
    );
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn duplicate_and_misplaced_container_addresses_are_refused() {
    let lab = lab();
    let create = |address: &str| {
        vec![
            "container",
            "create",
            "db",
            "--owner",
            "alice",
            "--host",
            "h1",
            "--address",
        ]
        .into_iter()
        .chain([address])
        .map(str::to_owned)
        .collect::<Vec<String>>()
    };
    for (address, what) in [
        ("10.1.1.1", "already used by container web"),
        ("10.1.2.5", "outside host h1"),
        ("10.7.1.5", "outside host h1"),
        ("10.1.1.0", "network address"),
        ("10.1.1.255", "broadcast address"),
    ] {
        let args = create(address);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = lab.refused(&args, "containers[db].address");
        assert!(err.contains(what), "{address}: {err}");
    }
    // A free address of the host may be asked for.
    let out = lab.ok(&create("10.1.1.77")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(stdout(&out).trim(), "10.1.1.77");
}

#[test]
fn unknown_references_are_refused() {
    let lab = lab();
    lab.refused(
        &[
            "container",
            "create",
            "db",
            "--owner",
            "nobody",
            "--host",
            "h1",
        ],
        "containers[db].owner",
    );
    lab.refused(
        &[
            "container",
            "create",
            "db",
            "--owner",
            "alice",
            "--host",
            "h9",
        ],
        "containers[db].host",
    );
    let mut args = host_args(
        "h3",
        &["--number", "3"],
        "192.168.50.13",
        "02:00:c0:a8:32:13",
    );
    args[4] = "z9";
    lab.refused(&args, "hosts[h3].zone");
    lab.refused(
        &["group", "add-member", "no-group", "alice"],
        "groups[no-group]",
    );
    lab.refused(
        &["group", "remove-member", "no-group", "alice"],
        "groups[no-group]",
    );
    lab.refused(
        &["group", "add-member", "g1", "nobody"],
        "groups[g1].members",
    );
    lab.refused(
        &["group", "create", "g2", "--member", "nobody"],
        "groups[g2].members",
    );
    lab.refused(&["group", "delete", "no-group"], "groups[no-group]");
    lab.refused(&["container", "delete", "nothing"], "containers[nothing]");
    lab.refused(&["host", "delete", "h9"], "hosts[h9]");
    lab.refused(&["zone", "delete", "z9"], "zones[z9]");
    lab.refused(&["owner", "delete", "nobody"], "owners[nobody]");
}

#[test]
fn the_255th_container_on_a_host_is_refused() {
    let lab = lab();
    lab.store()
        .apply(|s| {
            for i in 0..254 {
                s.create_container(&format!("fill-{i}"), "bob", "h2", None)?;
            }
            Ok(())
        })
        .unwrap();
    let err = lab.refused(
        &[
            "container",
            "create",
            "extra",
            "--owner",
            "alice",
            "--host",
            "h2",
        ],
        "containers[extra].host",
    );
    assert!(err.contains("host h2 is full"), "{err}");
    // Another host still has room.
    lab.ok(&[
        "container",
        "create",
        "extra",
        "--owner",
        "alice",
        "--host",
        "h1",
    ]);
}

#[test]
fn malformed_names_are_refused() {
    let lab = lab();
    let long = "a".repeat(64);
    lab.refused(
        &["zone", "create", "Z1", "--prefix", "10.5.0.0/16"],
        "zones[Z1].name",
    );
    lab.refused(
        &host_args(
            "h_3",
            &["--number", "3"],
            "192.168.50.13",
            "02:00:c0:a8:32:13",
        ),
        "hosts[h_3].name",
    );
    lab.refused(&["owner", "create", "1alice"], "owners[1alice].name");
    lab.refused(&["owner", "create", &long], &format!("owners[{long}].name"));
    lab.refused(&["group", "create", "9g"], "groups[9g].name");
    lab.refused(
        &[
            "container",
            "create",
            "web.1",
            "--owner",
            "alice",
            "--host",
            "h1",
        ],
        "containers[web.1].name",
    );
    let err = lab.refused(&["owner", "create", "Alice"], "owners[Alice].name");
    assert!(err.contains("lowercase"), "{err}");
}

#[test]
fn deleting_what_is_in_use_is_refused() {
    let lab = lab();
    lab.refused(&["zone", "delete", "z1"], "zones[z1]");
    lab.refused(&["host", "delete", "h1"], "hosts[h1]");
    lab.refused(&["owner", "delete", "alice"], "owners[alice]");
    lab.refused(&["owner", "delete", "system"], "owners[system]");
    lab.ok(&["owner", "create", "carol"]);
    lab.ok(&["group", "add-member", "g1", "carol"]);
    let err = lab.refused(&["owner", "delete", "carol"], "owners[carol]");
    assert!(err.contains("groups g1"), "{err}");
}

#[test]
fn usage_errors_exit_2_and_change_nothing() {
    let lab = lab();
    lab.refused(
        &host_args(
            "h3",
            &["--number", "3"],
            "192.168.50.13",
            "zz:00:c0:a8:32:13",
        ),
        "--underlay-mac",
    );
    lab.refused(
        &["zone", "create", "z2", "--prefix", "10.2.0.0"],
        "--prefix",
    );
    lab.refused(&["zone", "create", "z2"], "--prefix");
    lab.refused(
        &[
            "zone",
            "create",
            "z2",
            "--prefix",
            "10.2.0.0/16",
            "--gateway-ip",
            "192.168.60.1",
        ],
        "--gateway-mac",
    );
    lab.refused(&["container", "list", "--output", "yaml"], "--output");
    lab.refused(&["container", "frobnicate"], "frobnicate");
    // A bad store URL.
    let out = Command::new(BIN)
        .args(["--store", "http://example.invalid/", "owner", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("http://example.invalid/"));
}

#[test]
fn an_unreadable_store_is_a_runtime_error() {
    let lab = lab();
    std::fs::write(lab.file(), "{ not json").unwrap();
    let out = lab.run(&["owner", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("state.json"), "{}", stderr(&out));
    let out = lab.run(&["owner", "create", "carol"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(std::fs::read(lab.file()).unwrap(), b"{ not json");
}

#[test]
fn create_is_idempotent_and_addresses_persist() {
    let lab = lab();
    let before = std::fs::read(lab.file()).unwrap();
    let out = lab.ok(&[
        "container",
        "create",
        "web",
        "--owner",
        "alice",
        "--host",
        "h1",
    ]);
    assert_eq!(stdout(&out).trim(), "10.1.1.1");
    lab.ok(&["zone", "create", "z1", "--prefix", "10.1.0.0/16"]);
    lab.ok(&["owner", "create", "alice"]);
    lab.ok(&["group", "create", "g1", "--member", "alice"]);
    lab.ok(&host_args(
        "h1",
        &["--number", "1"],
        "192.168.50.11",
        "02:00:c0:a8:32:11",
    ));
    assert_eq!(
        std::fs::read(lab.file()).unwrap(),
        before,
        "re-creating the same state changes nothing"
    );

    let db = lab.ok(&[
        "container",
        "create",
        "db",
        "--owner",
        "bob",
        "--host",
        "h1",
    ]);
    assert_eq!(stdout(&db).trim(), "10.1.1.2");
    lab.ok(&["container", "delete", "web"]);
    let again = lab.ok(&[
        "container",
        "create",
        "db",
        "--owner",
        "bob",
        "--host",
        "h1",
    ]);
    assert_eq!(stdout(&again).trim(), "10.1.1.2", "db keeps its address");
    let web = lab.ok(&[
        "container",
        "create",
        "web",
        "--owner",
        "alice",
        "--host",
        "h1",
    ]);
    assert_eq!(
        stdout(&web).trim(),
        "10.1.1.1",
        "the freed address is the lowest free one"
    );
}

#[test]
fn lists_print_tables_and_json() {
    let lab = lab();
    lab.ok(&["group", "add-member", "g1", "bob"]);
    lab.ok(&["group", "remove-member", "g1", "alice"]);

    let out = lab.ok(&["container", "list"]);
    let table = stdout(&out);
    assert!(
        table.contains("NAME") && table.contains("web") && table.contains("10.1.1.1"),
        "{table}"
    );

    let json = |args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&stdout(&lab.ok(args))).unwrap()
    };
    let containers = json(&["container", "list", "-o", "json"]);
    assert_eq!(containers[0]["name"], "web");
    assert_eq!(containers[0]["address"], "10.1.1.1");
    assert_eq!(
        json(&["zone", "list", "--output", "json"])[0]["prefix"],
        "10.1.0.0/16"
    );
    let hosts = json(&["host", "list", "--output", "json", "--zone", "z1"]);
    assert_eq!(hosts[1]["subnet"], "10.1.2.0/24");
    let owners = json(&["owner", "list", "--output", "json"]);
    let names: Vec<&str> = owners
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "system"]);
    assert_eq!(
        json(&["group", "list", "--output", "json"])[0]["members"],
        serde_json::json!(["bob"])
    );
    assert!(stdout(&lab.ok(&["container", "list", "--host", "h2"])).contains("NAME"));
    for noun in ["zone", "host", "owner", "group"] {
        lab.ok(&[noun, "list"]);
    }
}

#[test]
fn help_is_there_for_every_command() {
    for args in [
        vec!["--help"],
        vec!["zone", "--help"],
        vec!["host", "create", "--help"],
        vec!["owner", "--help"],
        vec!["group", "add-member", "--help"],
        vec!["container", "create", "--help"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Usage:"), "{args:?}");
    }
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no subcommand is a usage error");
}

fn spawn_creates(
    lab: &FileStoreCli,
    names: impl Iterator<Item = String>,
    host: &str,
) -> Vec<(String, Output)> {
    let children: Vec<_> = names
        .map(|name| {
            let child = Command::new(BIN)
                .arg("--state-dir")
                .arg(&lab.state_dir)
                .args([
                    "container",
                    "create",
                    &name,
                    "--owner",
                    "bob",
                    "--host",
                    host,
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (name, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(name, child)| (name, child.wait_with_output().unwrap()))
        .collect()
}

#[test]
fn concurrent_processes_get_distinct_addresses_until_the_host_is_full() {
    let lab = lab();
    // 40 processes at once on an empty host: all succeed, all distinct.
    let results = spawn_creates(&lab, (0..40).map(|i| format!("p{i}")), "h2");
    let mut addresses = BTreeSet::new();
    for (name, out) in &results {
        assert!(out.status.success(), "{name}: {}", stderr(out));
        let address: Ipv4Addr = stdout(out).trim().parse().unwrap();
        assert!(addresses.insert(address), "{address} handed out twice");
    }
    let expected: BTreeSet<Ipv4Addr> = (1..=40).map(|d| Ipv4Addr::new(10, 1, 2, d)).collect();
    assert_eq!(addresses, expected, "the lowest free addresses, each once");

    // Fill to 250, then 8 processes race for the last 4 addresses.
    lab.store()
        .apply(|s| {
            for i in 40..250 {
                s.create_container(&format!("p{i}"), "bob", "h2", None)?;
            }
            Ok(())
        })
        .unwrap();
    let results = spawn_creates(&lab, (0..8).map(|i| format!("late{i}")), "h2");
    let won: Vec<_> = results.iter().filter(|(_, o)| o.status.success()).collect();
    assert_eq!(won.len(), 4);
    for (name, out) in results.iter().filter(|(_, o)| !o.status.success()) {
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(out).contains(&format!("containers[{name}].host: host h2 is full")),
            "{}",
            stderr(out)
        );
    }
    let state: State = lab.store().load().unwrap().state;
    state.validate().unwrap();
    assert_eq!(state.containers_on("h2").count(), 254);
}

#[test]
fn the_store_flag_and_state_dir_agree() {
    let lab = lab();
    let url = format!("file://{}", lab.file().display());
    let out = Command::new(BIN)
        .args(["--store", &url, "container", "list", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("10.1.1.1"));
    let out = Command::new(BIN)
        .args(["--store", &url, "--state-dir", "/tmp", "owner", "list"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "--store and --state-dir conflict"
    );
    let _: &Path = lab.file().as_path();
}

#[test]
fn zones_in_special_ranges_are_refused_naming_the_allowed_ones() {
    let lab = lab();
    for prefix in [
        "0.0.0.0/16",
        "127.0.0.0/16",
        "169.254.0.0/16",
        "224.0.0.0/16",
        "239.255.0.0/16",
        "240.0.0.0/16",
        "255.255.0.0/16",
        "8.8.0.0/16",
    ] {
        let err = lab.refused(
            &["zone", "create", "z2", "--prefix", prefix],
            "zones[z2].prefix",
        );
        for allowed in [
            "10.0.0.0/8",
            "100.64.0.0/10",
            "172.16.0.0/12",
            "192.168.0.0/16",
        ] {
            assert!(
                err.contains(allowed),
                "{prefix}: {err} does not name {allowed}"
            );
        }
    }
    // (192.168.0.0/16 holds the lab's underlay addresses: refused for that.)
    for prefix in ["10.2.0.0/16", "100.64.0.0/16", "172.31.0.0/16"] {
        let name = format!("z{}", prefix.split('.').next().unwrap());
        lab.ok(&["zone", "create", &name, "--prefix", prefix]);
    }
}

#[test]
fn a_repeated_member_is_one_member() {
    let lab = lab();
    let out = lab.ok(&[
        "group", "create", "g2", "--member", "alice", "--member", "alice", "--member", "bob",
    ]);
    assert_eq!(stdout(&out).trim(), "group g2: 2 member(s)");
    let out = lab.ok(&[
        "group", "create", "g3", "--member", "bob", "--member", "bob",
    ]);
    assert_eq!(stdout(&out).trim(), "group g3: 1 member(s)");
    assert_eq!(
        lab.store()
            .load()
            .unwrap()
            .state
            .group("g3")
            .unwrap()
            .members
            .len(),
        1
    );
}

#[test]
fn errors_name_each_cause_once() {
    let lab = lab();
    std::fs::write(lab.file(), "{ not json").unwrap();
    let out = lab.run(&["owner", "create", "carol"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("key must be a string").count(), 1, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("file-not-dir");
    std::fs::write(&missing, "").unwrap();
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(missing.join("store"))
        .args(["owner", "create", "carol"])
        .env_remove("NETFABRIC_STORE")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
    let out = Command::new(BIN)
        .args(["--store", "http://example.invalid/", "owner", "list"])
        .env_remove("NETFABRIC_STORE")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("http://example.invalid/").count(), 1, "{err}");
}

#[test]
fn netfabric_store_names_the_store_unless_the_command_line_does() {
    let lab = lab();
    let url = format!("file://{}", lab.file().display());
    let elsewhere = tempfile::tempdir().unwrap();
    // The variable alone names the store.
    let out = Command::new(BIN)
        .args(["container", "list", "-o", "json"])
        .env("NETFABRIC_STORE", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("10.1.1.1"), "{}", stdout(&out));
    // --state-dir beats an exported variable instead of conflicting with it.
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(elsewhere.path())
        .args(["owner", "list", "-o", "json"])
        .env("NETFABRIC_STORE", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("alice"), "{}", stdout(&out));
    // So does --store.
    let out = Command::new(BIN)
        .args(["--store", &url, "owner", "list"])
        .env("NETFABRIC_STORE", "etcd://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("alice"), "{}", stdout(&out));
}

#[test]
fn a_report_piped_into_a_closed_reader_ends_quietly() {
    use std::os::{fd::FromRawFd as _, unix::process::ExitStatusExt as _};
    let lab = lab();
    // A pipe whose reader is already gone: the first write fails.
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe(2) returns.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here.
    let (reader, writer) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    drop(reader);
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(&lab.state_dir)
        .args(["container", "list"])
        .env_remove("NETFABRIC_STORE")
        .stdout(writer)
        .output()
        .unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}

#[test]
fn bad_dns_options_are_refused() {
    let lab = lab();
    let err = lab.refused(
        &[
            "agent",
            "--host",
            "h1",
            "--dns-upstream",
            "resolver.example",
        ],
        "--dns-upstream",
    );
    assert!(err.contains("not an IP address"), "{err}");
    lab.refused(
        &["agent", "--host", "h1", "--dns-upstream", "10.0.0.1:99999"],
        "--dns-upstream",
    );
    let err = lab.refused(
        &["agent", "--host", "h1", "--dns-domain", "a..b"],
        "--dns-domain",
    );
    assert!(err.contains("not a DNS name"), "{err}");
    lab.refused(
        &["agent", "--host", "h1", "--dns-domain", "."],
        "--dns-domain",
    );
    lab.refused(
        &[
            "container",
            "attach",
            "web",
            "--netns",
            "/run/netns/none",
            "--dns-domain",
            "bad..name",
        ],
        "--dns-domain",
    );
}

#[test]
fn security_groups_are_set_listed_and_deleted_and_bad_ones_refused() {
    let lab = lab();
    lab.ok(&["group", "add-member", "g1", "bob"]);
    let sg = |args: &[&str]| -> Vec<String> {
        let mut v = vec!["security-group".to_owned()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let refused = |args: &[&str], field: &str| {
        let args = sg(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.refused(&args, field)
    };
    // Bad rules name the flag; bad references the field; nothing applied.
    for bad in ["tcp", "tcp/0", "tcp/70000", "tcp/9-8", "icmp/8", "sctp/1"] {
        let err = refused(&["set", "alice", "--via", "g1", "--allow", bad], "--allow");
        assert!(err.contains(bad), "{err}");
    }
    refused(&["set", "alice", "--via", "g1"], "--allow");
    refused(&["set", "alice", "--allow", "icmp"], "--via");
    refused(
        &["set", "alice", "--via", "g1", "--own", "--allow", "icmp"],
        "--own",
    );
    refused(
        &["set", "alice", "--via", "g1", "--none", "--allow", "icmp"],
        "--none",
    );
    refused(
        &["set", "zed", "--via", "g1", "--allow", "icmp"],
        "security_groups[zed/g1].owner",
    );
    refused(
        &["set", "alice", "--via", "nope", "--allow", "icmp"],
        "security_groups[alice/nope].via",
    );
    refused(
        &["set", "system", "--own", "--allow", "icmp"],
        "security_groups[system/(own)].owner",
    );
    lab.ok(&["owner", "create", "carol"]);
    refused(
        &["set", "carol", "--via", "g1", "--allow", "icmp"],
        "security_groups[carol/g1].via",
    );
    let nine: Vec<String> = (0..9).map(|i| format!("tcp/{}", 100 + 2 * i)).collect();
    let mut args = vec!["set", "alice", "--via", "g1"];
    for r in &nine {
        args.extend(["--allow", r.as_str()]);
    }
    refused(&args, "security_groups[alice/g1].allow");
    refused(
        &["delete", "alice", "--via", "g1"],
        "security_groups[alice/g1]",
    );

    let out = lab.ok(&[
        "security-group",
        "set",
        "alice",
        "--via",
        "g1",
        "--allow",
        "tcp/5432",
        "--allow",
        "tcp/5433",
        "--allow",
        "icmp",
    ]);
    assert_eq!(
        stdout(&out).trim(),
        "security group alice/g1: tcp/5432-5433, icmp"
    );
    lab.ok(&["security-group", "set", "alice", "--own", "--none"]);
    let out = lab.ok(&["security-group", "list"]);
    let table = stdout(&out);
    assert!(
        table.contains("(own)") && table.contains("nothing"),
        "{table}"
    );
    assert!(table.contains("tcp/5432-5433, icmp"), "{table}");
    let out = lab.ok(&["security-group", "list", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"owner": "alice", "via": "own", "allow": []},
            {"owner": "alice", "via": {"group": "g1"}, "allow": ["tcp/5432-5433", "icmp"]},
        ])
    );
    let state = lab.store().load().unwrap().state;
    assert_eq!(state.security_groups.len(), 2);

    lab.ok(&["security-group", "delete", "alice", "--own"]);
    let out = lab.ok(&["group", "delete", "g1"]);
    assert!(
        stdout(&out).contains("1 security group"),
        "{}",
        stdout(&out)
    );
    assert!(lab.store().load().unwrap().state.security_groups.is_empty());
}

#[test]
fn an_owners_egress_is_set_at_creation_or_later_and_stored() {
    let lab = lab();
    let egress = |name: &str| {
        let state: State = lab.store().load().unwrap().state;
        state.owner(name).map(|o| o.egress)
    };
    use netfabric::state::Egress;
    assert_eq!(egress("alice"), Some(Egress::Allow), "allowed by default");
    // The default stays out of the file: a state from before the switch
    // reads the same.
    let file = std::fs::read_to_string(lab.file()).unwrap();
    assert!(!file.contains("egress"), "{file}");

    lab.ok(&["owner", "create", "batch", "--egress", "deny"]);
    assert_eq!(egress("batch"), Some(Egress::Deny));
    lab.ok(&["owner", "create", "batch", "--egress", "deny"]);
    lab.ok(&["owner", "create", "batch"]);
    let err = lab.refused(
        &["owner", "create", "batch", "--egress", "allow"],
        "owners[batch].egress",
    );
    assert!(err.contains("owner set batch --egress allow"), "{err}");

    let out = lab.ok(&["owner", "set", "alice", "--egress", "deny"]);
    assert_eq!(stdout(&out).trim(), "owner alice: egress deny");
    assert_eq!(egress("alice"), Some(Egress::Deny));
    let table = stdout(&lab.ok(&["owner", "list"]));
    assert!(table.contains("EGRESS"), "{table}");
    let json: serde_json::Value =
        serde_json::from_slice(&lab.ok(&["owner", "list", "-o", "json"]).stdout).unwrap();
    let alice = json
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "alice")
        .unwrap();
    assert_eq!(alice["egress"], "deny");
    lab.ok(&["owner", "set", "alice", "--egress", "allow"]);
    assert_eq!(egress("alice"), Some(Egress::Allow));

    lab.refused(
        &["owner", "set", "nobody", "--egress", "deny"],
        "owners[nobody]",
    );
    let out = lab.run(&["owner", "set", "alice", "--egress", "sometimes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--egress"), "{}", stderr(&out));
}
