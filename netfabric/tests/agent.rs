//! The agent's trust in its store and its host (needs root, bpffs,
//! namespaces): a hand-edited invalid state is refused (log, metric,
//! `status`) while the maps keep the last valid state; a restored backup is
//! applied; a second agent for one host is refused naming the first's pid;
//! an unknown `--host` leaves no pins behind, also for an agent embedded
//! with a plain configuration and a store.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use netfabric::{
    MacAddr,
    agent::lock,
    state::HostSpec,
    store::{FileStore, Store as _, StoreExt as _},
};

mod common;

use common::{BIN, free_ports, require_root_and_bpffs, unique_name};

const BPFFS: &str = netfabric::conventions::DEFAULT_BPFFS;

/// One host for an agent: a store in a temp dir, a namespace with a veth
/// uplink, and whatever the agents left (pins, locks), all removed on drop.
struct Host {
    name: String,
    netns: String,
    state: tempfile::TempDir,
    agents: Vec<Child>,
    logs: tempfile::TempDir,
}

impl Host {
    fn new(tag: &str) -> Host {
        let name = unique_name(tag);
        let netns = format!("nf-{name}");
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        for args in [
            vec!["netns", "add", &netns],
            vec![
                "-n", &netns, "link", "add", "up0", "type", "veth", "peer", "name", "up0p",
            ],
            vec!["-n", &netns, "link", "set", "up0", "up"],
            vec!["-n", &netns, "link", "set", "up0p", "up"],
        ] {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        let host = Host {
            name: format!("{name}-h1"),
            netns,
            state: tempfile::tempdir().unwrap(),
            agents: Vec::new(),
            logs: tempfile::tempdir().unwrap(),
        };
        host.store()
            .apply(|s| {
                s.create_zone("z1", "10.1.0.0/16".parse().unwrap(), None)?;
                s.create_host(HostSpec {
                    name: host.name.clone(),
                    zone: "z1".into(),
                    number: Some(1),
                    subnet: None,
                    uplink: "up0".into(),
                    underlay_ip: Ipv4Addr::new(192, 168, 77, 1),
                    underlay_mac: MacAddr([0x02, 0, 0xc0, 0xa8, 0x4d, 1]),
                })?;
                s.create_owner("alice")?;
                s.create_owner("bob")?;
                s.create_container("web", "alice", &host.name, None)
            })
            .unwrap();
        host
    }

    fn store(&self) -> FileStore {
        FileStore::in_dir(self.state.path()).with_poll_interval(Duration::from_millis(20))
    }

    fn pin_dir(&self, host: &str) -> PathBuf {
        netfabric::conventions::pin_dir(Path::new(BPFFS), host)
    }

    fn nf(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .arg("--state-dir")
            .arg(self.state.path())
            .args(args)
            .env_remove("NETFABRIC_STORE")
            .output()
            .unwrap()
    }

    /// Starts `netfabric agent --host <host>`; its stderr goes to a log
    /// file (see [`Host::log`]). Returns the index of the child.
    fn spawn_agent(&mut self, host: &str, metrics_port: u16) -> usize {
        let log = std::fs::File::create(self.log_path(self.agents.len())).unwrap();
        let child = Command::new(BIN)
            .arg("--state-dir")
            .arg(self.state.path())
            .args([
                "agent",
                "--host",
                host,
                "--netns",
                &format!("/run/netns/{}", self.netns),
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--rescan-ms",
                "100",
                "--detach-on-exit",
            ])
            .env_remove("NETFABRIC_STORE")
            .env("RUST_LOG", "netfabric=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agents.push(child);
        self.agents.len() - 1
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.logs.path().join(format!("agent{i}.log"))
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Waits for agent `i` to exit (at most `within`).
    fn exit_code(&mut self, i: usize, within: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.agents[i].try_wait().unwrap() {
                return status.code();
            }
            sleep(Duration::from_millis(50));
        }
        panic!("agent {i} still runs after {within:?}: {}", self.log(i));
    }

    /// ENDPOINTS as (address, owner id).
    fn endpoints(&self) -> Vec<(String, u64)> {
        let out = self.nf(&[
            "maps",
            "dump",
            "ENDPOINTS",
            "--host",
            &self.name,
            "-o",
            "json",
        ]);
        if !out.status.success() {
            return Vec::new();
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut rows: Vec<(String, u64)> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["address"].as_str().unwrap().to_owned(),
                    e["owner_id"].as_u64().unwrap(),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    fn owner_id(&self, owner: &str) -> u64 {
        u64::from(self.store().load().unwrap().state.owner(owner).unwrap().id)
    }

    /// Polls `check` for up to 10 s.
    fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if check() {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        panic!("not within 10 s: {what}\nagent log:\n{}", self.log(0));
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for child in &mut self.agents {
            if child.try_wait().ok().flatten().is_some() {
                // Reaped: its pid may be someone else's by now.
                continue;
            }
            // SAFETY: kill(2) on the pid of our own child, not reaped yet.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none()
                && started.elapsed() < Duration::from_secs(5)
            {
                sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for host in [self.name.clone(), format!("{}-nope", self.name)] {
            let pins = self.pin_dir(&host);
            let _ = std::fs::remove_dir_all(&pins);
            let run = Path::new(lock::RUN_DIR);
            let _ = std::fs::remove_file(lock::lock_path(run, &pins, &host));
            let _ = std::fs::remove_file(lock::report_path(run, &pins, &host));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

/// `GET /metrics`.
fn scrape(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
}

#[test]
fn an_invalid_state_is_refused_and_the_last_valid_one_kept() {
    require_root_and_bpffs();
    let mut host = Host::new("inv");
    let port = free_ports(0);
    host.spawn_agent(&host.name.clone(), port);
    let alice = host.owner_id("alice");
    let bob = host.owner_id("bob");
    host.eventually("web (alice) in ENDPOINTS", || {
        host.endpoints() == [("10.1.1.1".to_owned(), alice)]
    });
    // A backup of this state, then one more change the agent applies.
    let backup = std::fs::read(host.store().path()).unwrap();
    let backup_revision = host.store().load().unwrap().revision;
    host.store()
        .apply(|s| s.create_container("db", "bob", &host.name, None))
        .unwrap();
    host.eventually("db (bob) in ENDPOINTS", || host.endpoints().len() == 2);
    assert_eq!(
        metric(&scrape(port), "netfabric_store_state_valid").as_deref(),
        Some("1")
    );

    // By hand: an intruder holding alice's address (the CLI refuses this).
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(host.store().path()).unwrap()).unwrap();
    let revision = doc["revision"].as_u64().unwrap();
    doc["revision"] = (revision + 1).into();
    doc["state"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "intruder", "owner": "bob", "host": host.name, "address": "10.1.1.1"
        }));
    std::fs::write(
        host.store().path(),
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
    .unwrap();

    host.eventually("netfabric_store_state_valid 0", || {
        metric(&scrape(port), "netfabric_store_state_valid").as_deref() == Some("0")
    });
    // The maps still hold the last valid state: 10.1.1.1 is alice's.
    sleep(Duration::from_millis(500));
    assert_eq!(
        host.endpoints(),
        [("10.1.1.1".to_owned(), alice), ("10.1.1.2".to_owned(), bob)]
    );
    let log = host.log(0);
    assert!(
        log.contains("REFUSED") && log.contains("containers[intruder].address"),
        "{log}"
    );
    assert_eq!(
        metric(&scrape(port), "netfabric_store_state_revision"),
        Some(revision.to_string())
    );
    let out = host.nf(&["status", "--host", &host.name]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        status.contains("REFUSED the store's state")
            && status.contains(&format!("still enforcing revision {revision}"))
            && status.contains("STATE INVALID")
            && status.contains("containers[intruder].address"),
        "{status}"
    );
    let out = host.nf(&["status", "--host", &host.name, "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["hosts"][0]["agent"]["state_valid"], false, "{json}");
    // Program runs: counted only with kernel.bpf_stats_enabled=1; a 0 that
    // only means "not counted" must not be shown.
    let stats = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap();
    let uplink = &json["hosts"][0]["programs"][0];
    assert_eq!(uplink["program"], "from_uplink_tc", "{json}");
    if stats.trim() == "0" {
        assert!(uplink["run_count"].is_null(), "{json}");
        assert!(status.contains("runs: off"), "{status}");
    } else {
        assert!(uplink["run_count"].is_u64(), "{json}");
    }
    assert_eq!(json["store"]["state_valid"], false, "{json}");

    // An agent killed and restarted meanwhile: the pinned maps stay as
    // they were, and the new agent refuses the invalid state too.
    host.agents[0].kill().unwrap();
    host.agents[0].wait().unwrap();
    let port = free_ports(0);
    let second = host.spawn_agent(&host.name.clone(), port);
    host.eventually("the restarted agent refuses the state", || {
        metric(&scrape(port), "netfabric_store_state_valid").as_deref() == Some("0")
    });
    assert_eq!(
        host.endpoints(),
        [("10.1.1.1".to_owned(), alice), ("10.1.1.2".to_owned(), bob)]
    );
    let out = host.nf(&["status", "--host", &host.name]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains(&format!("running (pid {})", host.agents[second].id()))
            && status.contains("still enforcing the maps as pinned before it started"),
        "{status}"
    );
    assert!(host.log(second).contains("REFUSED"), "{}", host.log(second));

    // Restore the backup (an older revision): applied, and valid again.
    std::fs::write(host.store().path(), &backup).unwrap();
    host.eventually("the restored backup applied", || {
        host.endpoints() == [("10.1.1.1".to_owned(), alice)]
    });
    host.eventually("netfabric_store_state_valid 1", || {
        metric(&scrape(port), "netfabric_store_state_valid").as_deref() == Some("1")
    });
    assert_eq!(
        metric(&scrape(port), "netfabric_store_state_revision"),
        Some(backup_revision.to_string())
    );
    let out = host.nf(&["status", "--host", &host.name]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains(&format!(
            "enforcing the state of revision {backup_revision}"
        )) && !status.contains("INVALID"),
        "{status}"
    );
}

#[test]
fn a_second_agent_for_a_host_is_refused_and_an_unknown_host_leaves_nothing() {
    require_root_and_bpffs();
    let mut host = Host::new("two");
    let name = host.name.clone();
    let first = host.spawn_agent(&name, free_ports(0));
    let alice = host.owner_id("alice");
    host.eventually("the first agent applied the state", || {
        host.endpoints() == [("10.1.1.1".to_owned(), alice)]
    });
    let pid = host.agents[first].id();

    let second = host.spawn_agent(&name, free_ports(0));
    assert_eq!(host.exit_code(second, Duration::from_secs(10)), Some(1));
    let log = host.log(second);
    assert!(
        log.contains(&format!("pid {pid}")) && log.contains(&name),
        "{log}"
    );
    assert!(
        host.agents[first].try_wait().unwrap().is_none(),
        "the first agent keeps running"
    );
    assert_eq!(host.endpoints(), [("10.1.1.1".to_owned(), alice)]);

    let unknown = format!("{name}-nope");
    let third = host.spawn_agent(&unknown, free_ports(0));
    assert_eq!(host.exit_code(third, Duration::from_secs(10)), Some(2));
    let log = host.log(third);
    assert!(
        log.contains(&format!("--host {unknown}")) && log.contains(&name),
        "{log}"
    );
    let pins = host.pin_dir(&unknown);
    assert!(!pins.exists(), "{} was left behind", pins.display());
    assert!(
        !lock::lock_path(Path::new(lock::RUN_DIR), &pins, &unknown).exists(),
        "the lock of the refused agent was left behind"
    );
}

/// Removes what an embedded agent of `host` under `bpffs` may leave: its
/// pins and its lock files.
struct EmbeddedCleanup {
    pins: PathBuf,
    host: String,
}

impl Drop for EmbeddedCleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pins);
        let run = Path::new(lock::RUN_DIR);
        let _ = std::fs::remove_file(lock::lock_path(run, &self.pins, &self.host));
        let _ = std::fs::remove_file(lock::report_path(run, &self.pins, &self.host));
    }
}

/// The agent runs from a plain configuration and any store, no command line
/// involved (a CNI plugin or a test embeds it so); an unknown host is
/// refused with a typed error the CLI turns into exit 2, and nothing is left.
#[test]
fn an_embedded_agent_takes_a_config_and_a_store() {
    require_root_and_bpffs();
    let state = tempfile::tempdir().unwrap();
    let bpffs = tempfile::tempdir().unwrap();
    let store = FileStore::in_dir(state.path());
    store
        .apply(|s| s.create_zone("z1", "10.1.0.0/16".parse().unwrap(), None))
        .unwrap();
    let host = unique_name("emb");
    let pins = netfabric::conventions::pin_dir(bpffs.path(), &host);
    let _cleanup = EmbeddedCleanup {
        pins: pins.clone(),
        host: host.clone(),
    };
    let config = netfabric::agent::AgentConfig {
        host: host.clone(),
        netns: None,
        bpffs: bpffs.path().to_owned(),
        metrics_addr: None,
        detach_on_exit: true,
        rescan_interval: Duration::from_millis(100),
        maps_only: false,
        dns: None,
    };

    let err = netfabric::agent::run(config, Box::new(store)).unwrap_err();

    let unknown = err
        .downcast_ref::<netfabric::agent::UnknownHost>()
        .unwrap_or_else(|| panic!("not an UnknownHost: {err:#}"));
    assert_eq!(unknown.host, host);
    assert_eq!(unknown.known, "none");
    assert_eq!(
        netfabric::cli::exit_code(&err),
        std::process::ExitCode::from(netfabric::cli::EXIT_USAGE)
    );
    assert!(!pins.exists(), "{} was created", pins.display());
    assert!(
        !lock::lock_path(Path::new(lock::RUN_DIR), &pins, &host).exists(),
        "the lock of the refused agent was left behind"
    );
}

/// The plan of a host whose zone (slot 0) is full, with a second zone
/// (slot 5) partly used, next hops, a gateway, local ports and group pairs.
fn full_zone_plan() -> netfabric::agent::HostPlan {
    use netfabric::agent::plan::{EndpointKey, NextHopKey, PortEntry, UnderlayHop};
    use netfabric_common::{Endpoint, HostConfig, OwnerPair};
    let mut plan = netfabric::agent::HostPlan {
        host: Some(HostConfig {
            zone_prefix: 0x0a01_0000,
            zone_slot: 0,
            host_octet: 1,
            uplink_ifindex: 7,
            uplink_mac: [2, 0xfe, 0, 0, 0, 1],
            gateway_mac: [2, 0, 10, 1, 1, 0],
            ..HostConfig::default()
        }),
        ..Default::default()
    };
    plan.zones.insert(0x0a01, 0);
    plan.zones.insert(0x0a07, 5);
    for h in 1..=254u8 {
        for c in 1..=254u8 {
            let owner = 100 + u32::from(h) * 3 + u32::from(c) % 7;
            plan.endpoints.insert(
                EndpointKey {
                    zone_slot: 0,
                    low: u16::from_be_bytes([h, c]),
                },
                Endpoint {
                    owner,
                    groups: 0x8000_0000 | u32::from(c),
                },
            );
        }
        plan.next_hops.insert(
            NextHopKey {
                zone_slot: 0,
                host_octet: h,
            },
            UnderlayHop {
                mac: [2, 0xfe, 0, 0, 0, h],
                underlay: Ipv4Addr::new(172, 31, 0, h),
            },
        );
    }
    for low in [0x0101u16, 0x0102, 0xfefe] {
        plan.endpoints.insert(
            EndpointKey { zone_slot: 5, low },
            Endpoint {
                owner: 42,
                groups: 0,
            },
        );
    }
    plan.gateways.insert(
        5,
        UnderlayHop {
            mac: [2, 0xfd, 0, 0, 0, 9],
            underlay: Ipv4Addr::new(172, 31, 9, 9),
        },
    );
    for c in [1u8, 2, 254] {
        plan.local_ports.insert(
            c,
            PortEntry {
                ifindex: 1000 + u32::from(c),
                mac: [2, 0, 10, 1, 1, c],
            },
        );
    }
    for (a, b, n) in [(100, 101, 1), (103, 200, 2), (42, 107, 1)] {
        plan.group_pairs.insert(OwnerPair::new(a, b), n);
    }
    plan
}

#[test]
fn the_start_up_read_back_of_a_full_zone_is_what_was_written() {
    require_root_and_bpffs();
    use netfabric::{
        Datapath,
        agent::{self, HostPlan},
        datapath::LoadOptions,
    };
    let plan = full_zone_plan();
    let mut dp = Datapath::load(&LoadOptions::default()).unwrap();
    for op in HostPlan::default().diff(&plan) {
        agent::apply(&mut dp, &op).unwrap();
    }
    let t = Instant::now();
    let read = agent::read_maps(&dp).unwrap();
    // A measurement for the record (ARCHITECTURE.md), not an assertion.
    eprintln!(
        "read back {} endpoints in 2 zones: {:?}",
        read.endpoints.len(),
        t.elapsed()
    );
    assert_eq!(read.endpoints.len(), 254 * 254 + 3);
    assert_eq!(read, plan);
}

/// The ids of the BPF objects process `pid` holds a descriptor of: the
/// `prog_id:` or `map_id:` lines (`field`) of `/proc/<pid>/fdinfo`.
fn bpf_ids_held_by(pid: u32, field: &str) -> Vec<u32> {
    let mut ids = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(info) = std::fs::read_to_string(fd.unwrap().path()) else {
            continue;
        };
        ids.extend(
            info.lines()
                .filter_map(|l| l.strip_prefix(field))
                .map(|id| id.trim().parse::<u32>().unwrap()),
        );
    }
    ids
}

/// The names of the BPF programs process `pid` holds a descriptor of
/// (named by `loaded_programs()`).
fn programs_held_by(pid: u32) -> Vec<String> {
    let ids = bpf_ids_held_by(pid, "prog_id:");
    let mut names: Vec<String> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .map(|p| p.name_as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

/// The names of the BPF maps process `pid` holds a descriptor of (named
/// by `loaded_maps()`).
fn maps_held_by(pid: u32) -> Vec<String> {
    let ids = bpf_ids_held_by(pid, "map_id:");
    let mut names: Vec<String> = aya::maps::loaded_maps()
        .filter_map(Result::ok)
        .filter(|m| ids.contains(&m.id()))
        .map(|m| m.name_as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_agent_loads_only_the_product_programs() {
    require_root_and_bpffs();
    let mut host = Host::new("progs");
    let i = host.spawn_agent(&host.name.clone(), free_ports(0));
    let alice = host.owner_id("alice");
    host.eventually("web (alice) in ENDPOINTS", || {
        host.endpoints() == [("10.1.1.1".to_owned(), alice)]
    });
    let held = programs_held_by(host.agents[i].id());
    assert_eq!(
        held,
        [
            "from_container",
            "from_uplink",
            "from_uplink_tc",
            "to_container"
        ],
        "the agent holds exactly the product's programs (no baseline_*, bench_*)"
    );
    let maps = maps_held_by(host.agents[i].id());
    assert!(
        maps.iter().any(|m| m == "ENDPOINTS"),
        "the agent's maps are seen: {maps:?}"
    );
    assert!(
        !maps.iter().any(|m| m.starts_with("BENCH_")),
        "the agent creates no bench map: {maps:?}"
    );
}
