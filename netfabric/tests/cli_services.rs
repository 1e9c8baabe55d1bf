//! `netfabric service ...` against a temporary file store: create, list,
//! add and remove backends, set, delete; every bad input exits 2 naming the
//! field and leaves the store file byte-identical.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use netfabric::store::{FileStore, Store as _};

const BIN: &str = env!("CARGO_BIN_EXE_netfabric");

struct Lab {
    _dir: tempfile::TempDir,
    state_dir: PathBuf,
}

impl Lab {
    /// Zone z1 (10.1.0.0/16), hosts h1 and h2, owners alice and bob,
    /// containers web-1 and web-2 (alice, h1 and h2), db (bob, h1).
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let lab = Lab {
            state_dir: dir.path().join("netfabric"),
            _dir: dir,
        };
        lab.ok(&["zone", "create", "z1", "--prefix", "10.1.0.0/16"]);
        for n in ["1", "2"] {
            lab.ok(&[
                "host",
                "create",
                &format!("h{n}"),
                "--zone",
                "z1",
                "--number",
                n,
                "--uplink",
                "eth0",
                "--underlay-ip",
                &format!("192.168.50.1{n}"),
                "--underlay-mac",
                &format!("02:00:c0:a8:32:1{n}"),
            ]);
        }
        lab.ok(&["owner", "create", "alice"]);
        lab.ok(&["owner", "create", "bob"]);
        for (c, o, h) in [
            ("web-1", "alice", "h1"),
            ("web-2", "alice", "h2"),
            ("db", "bob", "h1"),
        ] {
            lab.ok(&["container", "create", c, "--owner", o, "--host", h]);
        }
        lab
    }

    fn file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .env_remove("NETFABRIC_STORE")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "netfabric {args:?} failed: {}",
            stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A bad input: exit code 2, the message names `field`, nothing on
    /// stdout, and the store file byte-identical.
    fn refused(&self, args: &[&str], field: &str) -> String {
        let before = std::fs::read(self.file()).unwrap();
        let out = self.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "netfabric {args:?}: {err}");
        assert!(
            err.contains(field),
            "netfabric {args:?}: {err:?} does not name {field}"
        );
        assert!(out.stdout.is_empty(), "netfabric {args:?} printed");
        assert_eq!(
            std::fs::read(self.file()).unwrap(),
            before,
            "netfabric {args:?} changed the store"
        );
        err
    }

    fn services(&self) -> Vec<netfabric::state::Service> {
        FileStore::in_dir(&self.state_dir)
            .load()
            .unwrap()
            .state
            .services
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_service_is_created_listed_changed_and_deleted() {
    let lab = Lab::new();
    let create = [
        "service",
        "create",
        "api",
        "--owner",
        "alice",
        "--port",
        "tcp/80:8080",
        "--port",
        "udp/53",
        "--backend",
        "web-1",
        "--backend",
        "web-2",
        "--health",
        "http:/healthz",
    ];
    assert_eq!(lab.ok(&create).trim(), "10.1.0.1");
    // Idempotent.
    let before = std::fs::read(lab.file()).unwrap();
    assert_eq!(lab.ok(&create).trim(), "10.1.0.1");
    assert_eq!(std::fs::read(lab.file()).unwrap(), before);
    // No pinned host (an empty bpffs directory): no health column.
    let no_pins = tempfile::tempdir().unwrap();
    let no_pins = no_pins.path().to_str().unwrap();
    let table = lab.ok(&["service", "list", "--bpffs", no_pins]);
    for cell in [
        "api",
        "10.1.0.1",
        "tcp/80:8080, udp/53",
        "http:/healthz",
        "web-1#0, web-2#1",
    ] {
        assert!(table.contains(cell), "{cell} in {table}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&lab.ok(&["service", "list", "--bpffs", no_pins, "-o", "json"]))
            .unwrap();
    assert!(json[0].get("backend_health").is_none(), "{json}");
    assert_eq!(json[0]["vip"], "10.1.0.1");
    assert_eq!(json[0]["backends"][1]["member"], 1);
    assert_eq!(
        lab.ok(&[
            "service", "list", "--owner", "bob", "--bpffs", no_pins, "-o", "json"
        ])
        .trim(),
        "[]"
    );

    // Member indexes stay while backends come and go.
    lab.ok(&[
        "service",
        "remove-backend",
        "api",
        "web-1",
        "--owner",
        "alice",
    ]);
    lab.ok(&[
        "container",
        "create",
        "web-3",
        "--owner",
        "alice",
        "--host",
        "h2",
    ]);
    let out = lab.ok(&[
        "service",
        "add-backend",
        "api",
        "web-3",
        "web-1",
        "--owner",
        "alice",
    ]);
    assert!(out.contains("web-2#1, web-3#0, web-1#2"), "{out}");
    let out = lab.ok(&[
        "service",
        "set",
        "api",
        "--owner",
        "alice",
        "--port",
        "tcp/443:8443",
        "--health",
        "tcp",
    ]);
    assert!(out.contains("tcp/443:8443 health tcp"), "{out}");
    let svc = &lab.services()[0];
    assert_eq!(svc.ports.len(), 1);
    assert_eq!(svc.health, netfabric::state::HealthCheck::Tcp);

    // A second service takes the next VIP; a VIP asked for is kept.
    assert_eq!(
        lab.ok(&[
            "service", "create", "www", "--owner", "alice", "--port", "tcp/80"
        ])
        .trim(),
        "10.1.0.2"
    );
    assert_eq!(
        lab.ok(&[
            "service",
            "create",
            "pg",
            "--owner",
            "bob",
            "--port",
            "tcp/5432",
            "--backend",
            "db",
            "--vip",
            "10.1.0.77"
        ])
        .trim(),
        "10.1.0.77"
    );
    lab.ok(&["service", "delete", "www", "--owner", "alice"]);
    assert_eq!(lab.services().len(), 2);
}

#[test]
fn bad_services_are_refused_naming_the_field_and_nothing_is_applied() {
    let lab = Lab::new();
    lab.ok(&[
        "service",
        "create",
        "api",
        "--owner",
        "alice",
        "--port",
        "tcp/80",
        "--backend",
        "web-1",
    ]);
    let create = |extra: &[&'static str]| {
        let mut args = vec!["service", "create", "x", "--owner", "alice"];
        args.extend_from_slice(extra);
        args
    };
    for (args, field) in [
        (create(&["--port", "tcp/0"]), "--port"),
        (create(&["--port", "icmp/1"]), "--port"),
        (create(&["--port", "tcp/80:"]), "--port"),
        (create(&[]), "--port"),
        (
            create(&["--port", "tcp/80", "--health", "http:x"]),
            "--health",
        ),
        (
            create(&["--port", "tcp/80", "--backend", "db"]),
            "services[alice/x].backends",
        ),
        (
            create(&["--port", "tcp/80", "--backend", "ghost"]),
            "services[alice/x].backends",
        ),
        (
            create(&["--port", "tcp/80", "--port", "tcp/80:81"]),
            "services[alice/x].ports",
        ),
        (
            create(&["--port", "tcp/80", "--vip", "10.1.1.1"]),
            "services[alice/x].vip",
        ),
        (
            create(&["--port", "tcp/80", "--vip", "10.1.0.1"]),
            "services[alice/x].vip",
        ),
        (
            create(&["--port", "tcp/80", "--zone", "nope"]),
            "services[alice/x].zone",
        ),
        (
            vec![
                "service", "create", "x", "--owner", "nobody", "--port", "tcp/80",
            ],
            "services[nobody/x].owner",
        ),
        (
            vec![
                "service", "create", "web-1", "--owner", "alice", "--port", "tcp/80",
            ],
            "services[alice/web-1].name",
        ),
        (
            vec![
                "service", "create", "Bad", "--owner", "alice", "--port", "tcp/80",
            ],
            "services[alice/Bad].name",
        ),
        (
            vec![
                "service", "create", "api", "--owner", "alice", "--port", "tcp/81",
            ],
            "services[alice/api]",
        ),
        (
            vec!["service", "add-backend", "api", "db", "--owner", "alice"],
            "services[alice/api].backends",
        ),
        (
            vec![
                "service",
                "remove-backend",
                "api",
                "web-2",
                "--owner",
                "alice",
            ],
            "services[alice/api].backends",
        ),
        (
            vec!["service", "delete", "nope", "--owner", "alice"],
            "services[alice/nope]",
        ),
        (vec!["service", "set", "api", "--owner", "alice"], "--port"),
        (
            vec![
                "container",
                "create",
                "api",
                "--owner",
                "alice",
                "--host",
                "h1",
            ],
            "containers[api].name",
        ),
        (vec!["container", "delete", "web-1"], "containers[web-1]"),
        (vec!["owner", "delete", "alice"], "owners[alice]"),
    ] {
        lab.refused(&args, field);
    }
    let err = lab.refused(&["container", "delete", "web-1"], "containers[web-1]");
    assert!(
        err.contains("alice/api") && err.contains("remove-backend"),
        "{err}"
    );
}
