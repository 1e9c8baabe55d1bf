//! The agent's systemd unit in `deploy/systemd/`:
//! * `systemd-analyze verify` accepts it (a copy whose `ExecStart` is this
//!   build's binary, since verify requires an existing executable; its
//!   `Documentation=man:` page is looked up in `docs/man/`), with no
//!   warning at all;
//! * the agent does its whole job (load, attach the uplink, pin, fill the
//!   maps) with only the unit's `CapabilityBoundingSet`, and SIGTERM leaves
//!   the programs attached.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{BIN, ok, require_root_and_bpffs, unique_name};

/// `netfabric ARGS` on this test's own store only: an exported
/// `NETFABRIC_STORE` (as `lab up` suggests) would name another store, and
/// clap refuses it next to `--state-dir`.
fn nf(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("NETFABRIC_STORE")
        .output()
        .expect("running netfabric")
}

const INSTALLED_BIN: &str = "/usr/local/bin/netfabric";

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/netfabric-agent@.service")
}

fn unit_text() -> String {
    std::fs::read_to_string(unit_path()).expect("reading deploy/systemd/netfabric-agent@.service")
}

/// The value of `key=` in the unit (its last assignment).
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .unwrap_or_else(|| panic!("the unit sets no {key}="))
        .trim()
        .to_owned()
}

/// What `systemd-analyze verify` says about `unit_text` installed as
/// `netfabric-agent@.service`: `Ok(())` when it exits 0 and prints nothing.
fn verify(unit_text: &str) -> Result<(), String> {
    let tool = Path::new("/usr/bin/systemd-analyze");
    assert!(
        tool.exists(),
        "systemd-analyze is missing: install Debian's `systemd` package (cargo xtask setup)"
    );
    assert!(
        Command::new("sh")
            .args(["-c", "command -v man"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "man is missing (systemd-analyze verify checks Documentation=man:): install Debian's `man-db`"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let unit = dir.path().join("netfabric-agent@.service");
    std::fs::write(&unit, unit_text).expect("writing the unit copy");
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/man");
    let out = Command::new(tool)
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", &man)
        .current_dir(dir.path())
        .output()
        .expect("running systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("exit {}: {said}", out.status))
    }
}

/// The unit with `ExecStart` pointing at this build's binary.
fn unit_for_this_build() -> String {
    let unit = unit_text();
    assert_eq!(
        unit_value(&unit, "ExecStart"),
        format!("{INSTALLED_BIN} agent --host %i"),
        "the unit runs the installed binary's agent for host %i"
    );
    unit.replace(
        &format!("ExecStart={INSTALLED_BIN} "),
        &format!("ExecStart={BIN} "),
    )
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if let Err(problems) = verify(&unit_for_this_build()) {
        panic!("systemd-analyze verify reports problems in the agent's unit:\n{problems}");
    }
}

#[test]
fn systemd_analyze_verify_catches_a_broken_unit() {
    let good = unit_for_this_build();
    let typo = good.replace("RestartSec=", "RestartSecs=");
    assert!(verify(&typo).is_err(), "an unknown key went unreported");
    let missing = good.replace(BIN, "/nonexistent/netfabric");
    assert!(
        verify(&missing).is_err(),
        "a missing binary went unreported"
    );
}

#[test]
fn the_unit_keeps_the_datapath_on_stop_and_restarts_on_failure() {
    let unit = unit_text();
    assert_eq!(unit_value(&unit, "KillSignal"), "SIGTERM");
    assert_eq!(unit_value(&unit, "Restart"), "on-failure");
    assert!(
        !unit.contains("--detach-on-exit"),
        "stopping the unit must leave the datapath enforcing"
    );
}

/// Removes what the capability test made, also when it fails.
struct Sandbox {
    netns: String,
    bpffs: PathBuf,
    agent: Option<Child>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(agent) = &mut self.agent {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        // Unmounting the private bpffs drops its pins, so the links go too.
        let _ = Command::new("umount").arg(&self.bpffs).status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("starting a set-up command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Sandbox {
    /// Waits up to 10 s for `cond`; fails with the agent's log on a timeout
    /// or when the agent exits first.
    fn wait_for(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            let exited = self
                .agent
                .as_mut()
                .is_some_and(|a| a.try_wait().is_ok_and(|status| status.is_some()));
            if exited || start.elapsed() > Duration::from_secs(10) {
                let log = self.agent.take().map_or_else(String::new, |mut agent| {
                    let _ = agent.kill();
                    agent
                        .wait_with_output()
                        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                        .unwrap_or_default()
                });
                let why = if exited {
                    "the agent exited"
                } else {
                    "timed out"
                };
                panic!("{why} before {what}; it logged:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn the_agent_works_with_only_the_units_capabilities() {
    require_root_and_bpffs();
    let caps = unit_value(&unit_text(), "CapabilityBoundingSet");
    // setpriv's spelling: -all,+bpf,+perfmon,+net_admin
    let bounding: String = std::iter::once("-all".to_owned())
        .chain(caps.split_whitespace().map(|c| {
            let name = c.strip_prefix("CAP_").expect("CAP_ names in the unit");
            format!("+{}", name.to_lowercase())
        }))
        .collect::<Vec<_>>()
        .join(",");

    let name = unique_name("sd");
    let dir = tempfile::tempdir().expect("a temp dir");
    let bpffs = dir.path().join("bpffs");
    std::fs::create_dir(&bpffs).expect("creating the bpffs mount point");
    let mut sandbox = Sandbox {
        netns: format!("nf-{name}"),
        bpffs: bpffs.clone(),
        agent: None,
    };
    run(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&bpffs));
    run(Command::new("ip").args(["netns", "add", &sandbox.netns]));
    run(Command::new("ip").args([
        "-n",
        &sandbox.netns,
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "up0p",
    ]));
    for dev in ["up0", "up0p"] {
        run(Command::new("ip").args(["-n", &sandbox.netns, "link", "set", dev, "up"]));
    }

    let state_dir = dir.path().join("store");
    let store = state_dir.to_str().expect("a UTF-8 path");
    let host = format!("{name}-h1");
    for args in [
        vec!["zone", "create", "z1", "--prefix", "10.1.0.0/16"],
        vec![
            "host",
            "create",
            &host,
            "--zone",
            "z1",
            "--number",
            "1",
            "--uplink",
            "up0",
            "--underlay-ip",
            "192.0.2.1",
            "--underlay-mac",
            "02:00:c0:00:02:01",
        ],
        vec!["owner", "create", "alice"],
        vec![
            "container",
            "create",
            "web",
            "--owner",
            "alice",
            "--host",
            &host,
        ],
    ] {
        let mut full = vec!["--state-dir", store];
        full.extend(args);
        ok(&nf(&full));
    }

    let netns_path = format!("/run/netns/{}", sandbox.netns);
    let agent = Command::new("nsenter")
        .arg(format!("--net={netns_path}"))
        .args([
            "setpriv",
            "--bounding-set",
            &bounding,
            "--no-new-privs",
            "--",
        ])
        .arg(BIN)
        .args([
            "agent",
            "--host",
            &host,
            "--state-dir",
            store,
            "--metrics-addr",
            "",
        ])
        .arg("--bpffs")
        .arg(&bpffs)
        .env_remove("NETFABRIC_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the agent under setpriv");
    sandbox.agent = Some(agent);

    let pins = bpffs.join("netfabric").join(&host);
    // A veth uplink: the TC link only (no XDP prefilter on a veth).
    let uplink_link = pins.join("links/uplink-tc");
    sandbox.wait_for("it pinned the uplink's TC link", || uplink_link.exists());
    let bpffs_arg = bpffs.to_str().expect("a UTF-8 path");
    sandbox.wait_for("the container's endpoint was in ENDPOINTS", || {
        let out = nf(&[
            "--state-dir",
            store,
            "maps",
            "dump",
            "ENDPOINTS",
            "--host",
            &host,
            "--bpffs",
            bpffs_arg,
        ]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("10.1.1.1")
    });

    // Its DNS server listens on the gateway's port 53 (UDP and TCP).
    let netns = sandbox.netns.clone();
    sandbox.wait_for("the DNS server listens on 169.254.1.1:53", || {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "ss",
                "-Hlntu",
                "src",
                "169.254.1.1:53",
            ])
            .output()
            .expect("ss");
        let listening = String::from_utf8_lossy(&out.stdout).into_owned();
        ["udp", "tcp"]
            .iter()
            .all(|proto| listening.lines().any(|l| l.starts_with(proto)))
    });

    let agent = sandbox.agent.take().expect("the agent was started");
    let pid = i32::try_from(agent.id()).expect("a pid");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = agent.wait_with_output().expect("waiting for the agent");
    assert!(
        out.status.success(),
        "the agent with only {caps} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains("ERROR"),
        "the agent with only {caps} logged errors:\n{log}"
    );
    assert!(
        uplink_link.exists() && pins.join("ENDPOINTS").exists(),
        "SIGTERM must leave the links and maps pinned"
    );
}
