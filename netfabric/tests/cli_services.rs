//! `netfabric service ...` against a temporary file store: create, list,
//! add and remove backends, set, delete; every bad input exits 2 naming the
//! field and leaves the store file byte-identical.

use netfabric::store::Store as _;

mod common;

use common::FileStoreCli;

/// The CLI's file store (zone z1, hosts h1 and h2, owners alice and bob)
/// with containers web-1 and web-2 (alice, h1 and h2) and db (bob, h1).
fn lab() -> FileStoreCli {
    let lab = FileStoreCli::new();
    for (c, o, h) in [
        ("web-1", "alice", "h1"),
        ("web-2", "alice", "h2"),
        ("db", "bob", "h1"),
    ] {
        lab.ok_stdout(&["container", "create", c, "--owner", o, "--host", h]);
    }
    lab
}

fn services(lab: &FileStoreCli) -> Vec<netfabric::state::Service> {
    lab.store().load().unwrap().state.services
}

#[test]
fn a_service_is_created_listed_changed_and_deleted() {
    let lab = lab();
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
    assert_eq!(lab.ok_stdout(&create).trim(), "10.1.0.1");
    // Idempotent.
    let before = std::fs::read(lab.file()).unwrap();
    assert_eq!(lab.ok_stdout(&create).trim(), "10.1.0.1");
    assert_eq!(std::fs::read(lab.file()).unwrap(), before);
    // No pinned host (an empty bpffs directory): no health column.
    let no_pins = tempfile::tempdir().unwrap();
    let no_pins = no_pins.path().to_str().unwrap();
    let table = lab.ok_stdout(&["service", "list", "--bpffs", no_pins]);
    for cell in [
        "api",
        "10.1.0.1",
        "tcp/80:8080, udp/53",
        "http:/healthz",
        "web-1#0, web-2#1",
    ] {
        assert!(table.contains(cell), "{cell} in {table}");
    }
    let json: serde_json::Value = serde_json::from_str(
        &lab.ok_stdout(&["service", "list", "--bpffs", no_pins, "-o", "json"]),
    )
    .unwrap();
    assert!(json[0].get("backend_health").is_none(), "{json}");
    assert_eq!(json[0]["vip"], "10.1.0.1");
    assert_eq!(json[0]["backends"][1]["member"], 1);
    assert_eq!(
        lab.ok_stdout(&[
            "service", "list", "--owner", "bob", "--bpffs", no_pins, "-o", "json"
        ])
        .trim(),
        "[]"
    );

    // Member indexes stay while backends come and go.
    lab.ok_stdout(&[
        "service",
        "remove-backend",
        "api",
        "web-1",
        "--owner",
        "alice",
    ]);
    lab.ok_stdout(&[
        "container",
        "create",
        "web-3",
        "--owner",
        "alice",
        "--host",
        "h2",
    ]);
    let out = lab.ok_stdout(&[
        "service",
        "add-backend",
        "api",
        "web-3",
        "web-1",
        "--owner",
        "alice",
    ]);
    assert!(out.contains("web-2#1, web-3#0, web-1#2"), "{out}");
    let out = lab.ok_stdout(&[
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
    let svc = &services(&lab)[0];
    assert_eq!(svc.ports.len(), 1);
    assert_eq!(svc.health, netfabric::state::HealthCheck::Tcp);

    // A second service takes the next VIP; a VIP asked for is kept.
    assert_eq!(
        lab.ok_stdout(&[
            "service", "create", "www", "--owner", "alice", "--port", "tcp/80"
        ])
        .trim(),
        "10.1.0.2"
    );
    assert_eq!(
        lab.ok_stdout(&[
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
    lab.ok_stdout(&["service", "delete", "www", "--owner", "alice"]);
    assert_eq!(services(&lab).len(), 2);
}

#[test]
fn bad_services_are_refused_naming_the_field_and_nothing_is_applied() {
    let lab = lab();
    lab.ok_stdout(&[
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
