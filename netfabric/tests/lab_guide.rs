//! What `lab up` prints is what a new user pastes: every suggested command,
//! run through a shell exactly as printed (after the printed `export
//! NETFABRIC_STORE=...` line), must do what its comment says. Needs root,
//! bpffs and namespaces.

use std::{
    process::{Command, Output},
    thread::sleep,
    time::Duration,
};

mod common;

use common::{Lab, require_root_and_bpffs};

/// Run one printed line in a fresh shell that first ran the printed export.
fn paste(export: &str, line: &str) -> Output {
    Command::new("sh")
        .args(["-c", &format!("{export}\n{line}")])
        .env_remove("NETFABRIC_STORE")
        .output()
        .expect("sh")
}

fn show(out: &Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The printed command lines (two-space indented, not comments) in order.
fn commands(printed: &str) -> Vec<String> {
    printed
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains(' '))
        // The container table rows are indented too: commands start with a
        // program name followed by an argument, table rows with a lab name.
        .filter(|l| {
            l.starts_with("export ")
                || l.starts_with("ip netns exec ")
                || l.starts_with("curl ")
                || l.starts_with('/')
        })
        .map(|l| {
            // Drop a trailing `# comment`.
            l.split("   #").next().unwrap_or(l).trim().to_owned()
        })
        .collect()
}

#[test]
fn every_command_lab_up_prints_works_when_pasted() {
    require_root_and_bpffs();
    let (lab, printed) = Lab::up("g", 3);
    let (name, dir) = (lab.name.clone(), lab.dir.clone());
    let lines = commands(&printed);
    let export = lines
        .iter()
        .find(|l| l.starts_with("export NETFABRIC_STORE="))
        .unwrap_or_else(|| panic!("no export line in:\n{printed}"))
        .clone();
    assert_eq!(
        export,
        format!("export NETFABRIC_STORE=file://{dir}/state.json")
    );
    assert!(
        !printed.contains("--store"),
        "suggestions still need --store:\n{printed}"
    );

    let pings: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("ip netns exec "))
        .collect();
    assert_eq!(pings.len(), 3, "allowed, denied, system pings:\n{printed}");
    let (allowed, denied, system) = (pings[0], pings[1], pings[2]);
    let add_member = lines
        .iter()
        .find(|l| l.ends_with("group add-member team bob"))
        .unwrap_or_else(|| panic!("no group add-member line in:\n{printed}"));

    let out = paste(&export, allowed);
    assert!(out.status.success(), "allowed ping: {}", show(&out));
    let out = paste(&export, denied);
    assert!(!out.status.success(), "denied ping passed: {}", show(&out));
    let out = paste(&export, system);
    assert!(out.status.success(), "system ping: {}", show(&out));

    let out = paste(&export, add_member);
    assert!(out.status.success(), "{add_member}: {}", show(&out));
    // The agents apply the change asynchronously (well under a second).
    let joined = (0..10).any(|_| {
        let passed = paste(&export, denied).status.success();
        if !passed {
            sleep(Duration::from_millis(300));
        }
        passed
    });
    assert!(
        joined,
        "the denied ping still fails after bob joined `team`"
    );

    // Everything else: the CLI, the observability commands and the metrics.
    let mut ran = 0;
    for line in &lines {
        if line.starts_with("export ") || line.starts_with("ip netns exec ") || line == add_member {
            continue;
        }
        ran += 1;
        if line.contains(" monitor ") {
            // Runs until interrupted: still running after 2 s, having said
            // it is monitoring, means it found the host, the store and the
            // lease.
            let out = paste(&export, &format!("timeout 2 {line}"));
            assert_eq!(out.status.code(), Some(124), "{line}: {}", show(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.starts_with("monitoring drops on"),
                "{line}: {}",
                show(&out)
            );
            assert!(!stderr.contains("error"), "{line}: {}", show(&out));
            continue;
        }
        let out = paste(&export, line);
        assert!(out.status.success(), "{line}: {}", show(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.trim().is_empty(), "{line} printed nothing");
        if line.ends_with(" container list") {
            assert!(stdout.contains(&format!("{name}-alice-web")), "{stdout}");
        }
        if line.starts_with("curl ") {
            assert!(stdout.contains("netfabric_packets_total"), "{stdout}");
        }
    }
    // container list, lab status, status, maps list, two dumps, monitor and
    // one metrics URL per host.
    assert!(ran >= 10, "only {ran} commands found in:\n{printed}");
}
