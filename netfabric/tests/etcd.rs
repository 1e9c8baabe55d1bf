//! The store on a real etcd: clusters of three `etcd` processes started by
//! the tests on free loopback ports with temporary data dirs, killed on drop
//! (also on panic).
//!
//! * store semantics: layout under a prefix, refused changes, a watch that
//!   survives a killed member and a compaction (full resync) without missing
//!   or repeating a change;
//! * concurrent CLIs (processes talking to different members) allocating on
//!   one host never collide;
//! * one member of three killed: writes and watches go on;
//! * a lab on etcd (root, bpffs): agents converge after a burst; all of etcd
//!   stopped: the datapath keeps enforcing (denied stays denied, allowed keeps
//!   talking), an agent restarted meanwhile comes up from its pinned maps,
//!   and a change made once etcd is back reaches every agent;
//! * TLS with client certificates, also on an etcd with auth enabled (the
//!   certificate's CN is the user; a prefix outside its role is refused).
//!
//! User/password auth, the transaction limit and lost commit answers are in
//! `etcd_edges.rs`.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    thread::sleep,
    time::{Duration, Instant},
};

use netfabric::{
    MacAddr,
    state::{HostSpec, State},
    store::{
        EtcdStore, Snapshot, Store as _, StoreExt as _,
        etcd::{LocalCluster, cluster},
    },
};

mod common;
// The propagation benchmark lives with the other benchmarks in
// `netfabric-tests` (which depends on this crate, so it cannot be a
// dependency here); this test runs it to see agents on etcd converge.
#[path = "../../tests/src/propagation.rs"]
mod propagation;

use propagation::PinnedEndpoints;

use common::{BIN, etcd_data_dir, free_ports, init_test_logs, ok, ping};

/// The etcd tests need the etcd binary: fail loudly rather than pass
/// without checking anything. Always true when it returns.
fn etcd_or_skip() -> bool {
    assert!(
        cluster::etcd_available(),
        "no etcd binary: `cargo xtask setup` installs etcd-server"
    );
    true
}

/// A cluster and its data dir, removed in that order.
struct Etcd {
    cluster: LocalCluster,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        init_test_logs();
        let dir = etcd_data_dir("netfabric-etcd-");
        let cluster = LocalCluster::start(dir.path(), 3).expect("starting etcd");
        Etcd { cluster, _dir: dir }
    }

    fn url(&self) -> String {
        self.cluster.url()
    }

    /// A URL naming only member `i`.
    fn member_url(&self, i: usize) -> String {
        format!("etcd://127.0.0.1:{}", self.cluster.members()[i].client_port)
    }
}

fn host(name: &str, n: u8) -> HostSpec {
    HostSpec {
        name: name.into(),
        zone: "z1".into(),
        number: Some(n.into()),
        subnet: None,
        uplink: "eth0".into(),
        underlay_ip: Ipv4Addr::new(192, 168, 50, n),
        underlay_mac: MacAddr([2, 0, 0xc0, 0xa8, 0x32, n]),
    }
}

/// Zone z1, hosts h1 and h2, owners alice and bob.
fn seed(store: &EtcdStore) {
    store
        .apply(|s| {
            s.create_zone("z1", "10.1.0.0/16".parse().unwrap(), None)?;
            s.create_host(host("h1", 1))?;
            s.create_host(host("h2", 2))?;
            s.create_owner("alice")?;
            s.create_owner("bob")
        })
        .unwrap();
}

/// Waits for a snapshot of the watch at least at `revision`; returns it.
fn wait_for(watch: &netfabric::store::Watch, revision: u64, seen: &mut Vec<u64>) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no snapshot at revision {revision}; saw {seen:?}"
        );
        match watch.recv_timeout(left.min(Duration::from_millis(200))) {
            Some(Ok(s)) => {
                assert!(
                    seen.last().is_none_or(|l| *l < s.revision),
                    "revision {} after {seen:?}: repeated or out of order",
                    s.revision
                );
                seen.push(s.revision);
                if s.revision >= revision {
                    return s;
                }
            }
            Some(Err(e)) => eprintln!("watch: {e}"),
            None => {}
        }
    }
}

#[test]
fn store_semantics_watch_across_a_killed_member_and_a_compaction() {
    if !etcd_or_skip() {
        return;
    }
    let mut etcd = Etcd::start();
    let store = EtcdStore::open(&etcd.url()).unwrap();
    let empty = store.load().unwrap();
    assert_eq!(empty.state, State::default());
    assert_eq!(empty.revision, 0);
    seed(&store);
    let snap = store.load().unwrap();
    assert!(snap.revision > 0);
    assert_eq!(snap.state.hosts.len(), 2);

    // Refused: nothing applied, the same revision.
    let err = store
        .apply(|s| s.create_zone("z1", "10.2.0.0/16".parse().unwrap(), None))
        .unwrap_err();
    assert!(err.rejection().is_some(), "{err}");
    assert_eq!(store.load().unwrap().revision, snap.revision);
    // A no-op changes nothing either.
    assert_eq!(store.update(&mut |_| Ok(())).unwrap(), snap.revision);

    // Another prefix is another store.
    let other = EtcdStore::open(&format!("{}/elsewhere", etcd.url())).unwrap();
    assert_eq!(other.load().unwrap().state, State::default());

    // A watcher that talks only to member 0, from the start.
    let watched = EtcdStore::open(&etcd.member_url(0)).unwrap();
    let watch = watched.watch(0).unwrap();
    let health = watch.health();
    let mut seen = Vec::new();
    let first = wait_for(&watch, snap.revision, &mut seen);
    assert_eq!(first.state, snap.state);

    // Member 0 goes away; changes go on through the others; the history
    // is compacted; member 0 comes back: the watcher resyncs in full.
    etcd.cluster.kill(0);
    let mut last = 0;
    for i in 0..5 {
        let ((), rev) = store
            .apply(|s| {
                s.create_container(&format!("c{i}"), "alice", "h1", None)
                    .map(|_| ())
            })
            .unwrap();
        last = rev;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while health.is_up() && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    assert!(
        !health.is_up(),
        "the watch did not notice member 0 was gone"
    );
    store.compact().unwrap();
    etcd.cluster.restart(0).unwrap();
    let got = wait_for(&watch, last, &mut seen);
    assert_eq!(got.state, store.load().unwrap().state);
    assert!(health.is_up());
    assert!(health.outages() >= 1);

    // A watch that keeps its connection sees each later change once.
    let ((), rev) = store.apply(|s| s.delete_container("c0")).unwrap();
    let got = wait_for(&watch, rev, &mut seen);
    assert!(got.state.container("c0").is_none());
}

/// Services on etcd: stored under `services/<owner>/<name>`, read back
/// and delivered by a watch as they were written; a refused service change
/// applies nothing.
#[test]
fn services_round_trip_through_etcd_and_its_watch() {
    if !etcd_or_skip() {
        return;
    }
    let etcd = Etcd::start();
    let store = EtcdStore::open(&etcd.url()).unwrap();
    seed(&store);
    let watch = store.watch(0).unwrap();
    let mut seen = Vec::new();
    let (vip, rev) = store
        .apply(|s| {
            s.create_container("web-1", "alice", "h1", None)?;
            s.create_container("web-2", "alice", "h2", None)?;
            s.create_service(netfabric::state::ServiceSpec {
                name: "api".into(),
                owner: "alice".into(),
                zone: None,
                vip: None,
                ports: vec!["tcp/80:8080".parse().unwrap(), "udp/53".parse().unwrap()],
                backends: vec!["web-1".into(), "web-2".into()],
                health: "http:/healthz".parse().unwrap(),
            })
        })
        .unwrap();
    assert_eq!(vip, Ipv4Addr::new(10, 1, 0, 1));
    let loaded = store.load().unwrap();
    let svc = loaded.state.service("alice", "api").unwrap().clone();
    assert_eq!(svc.vip, vip);
    assert_eq!(svc.backends.len(), 2);
    assert_eq!(svc.health.to_string(), "http:/healthz");
    assert_eq!(wait_for(&watch, rev, &mut seen).state, loaded.state);

    // Refused (a backend of another owner, a backend deleted): the same
    // revision.
    let err = store
        .apply(|s| {
            s.create_container("db", "bob", "h1", None)?;
            s.add_service_backends("alice", "api", &["db".into()])
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("services[alice/api].backends"),
        "{err}"
    );
    let err = store.apply(|s| s.delete_container("web-1")).unwrap_err();
    assert!(err.to_string().contains("alice/api"), "{err}");
    assert_eq!(store.load().unwrap().revision, rev);

    // A backend leaves, another service takes the next VIP; the watch
    // follows key by key.
    let ((), rev) = store
        .apply(|s| {
            s.remove_service_backends("alice", "api", &["web-1".into()])?;
            s.create_service(netfabric::state::ServiceSpec {
                name: "www".into(),
                owner: "bob".into(),
                zone: None,
                vip: None,
                ports: vec!["tcp/80".parse().unwrap()],
                backends: vec![],
                health: Default::default(),
            })
            .map(drop)
        })
        .unwrap();
    let got = wait_for(&watch, rev, &mut seen);
    assert_eq!(got.state, store.load().unwrap().state);
    let api = got.state.service("alice", "api").unwrap();
    assert_eq!(api.backends.len(), 1);
    assert_eq!(api.backends[0].member, 1, "web-2 keeps its member index");
    assert_eq!(
        got.state.service("bob", "www").unwrap().vip,
        Ipv4Addr::new(10, 1, 0, 2)
    );
    let ((), rev) = store.apply(|s| s.delete_service("alice", "api")).unwrap();
    let got = wait_for(&watch, rev, &mut seen);
    assert!(got.state.service("alice", "api").is_none());
    assert_eq!(got.state.services.len(), 1);
}

fn nf(store: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("running netfabric")
}

#[test]
fn concurrent_clis_on_different_members_never_share_an_address() {
    if !etcd_or_skip() {
        return;
    }
    let etcd = Etcd::start();
    seed(&EtcdStore::open(&etcd.url()).unwrap());
    // Four "machines", each a stream of CLI processes, each talking to
    // another member first.
    const WORKERS: usize = 4;
    const EACH: usize = 12;
    let urls: Vec<String> = (0..WORKERS)
        .map(|w| {
            let mut eps: Vec<String> = (0..3)
                .map(|i| {
                    format!(
                        "127.0.0.1:{}",
                        etcd.cluster.members()[(w + i) % 3].client_port
                    )
                })
                .collect();
            eps.truncate(if w % 2 == 0 { 1 } else { 3 });
            format!("etcd://{}", eps.join(","))
        })
        .collect();
    let results: Vec<(String, Ipv4Addr)> = std::thread::scope(|s| {
        let handles: Vec<_> = urls
            .iter()
            .enumerate()
            .map(|(w, url)| {
                s.spawn(move || {
                    (0..EACH)
                        .map(|i| {
                            let name = format!("w{w}-c{i}");
                            let out = nf(
                                url,
                                &[
                                    "container",
                                    "create",
                                    &name,
                                    "--owner",
                                    "bob",
                                    "--host",
                                    "h2",
                                ],
                            );
                            assert!(
                                out.status.success(),
                                "{name}: {}",
                                String::from_utf8_lossy(&out.stderr)
                            );
                            let addr = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
                            (name, addr)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut addresses = BTreeSet::new();
    for (name, addr) in &results {
        assert!(addresses.insert(*addr), "{addr} handed out twice ({name})");
    }
    let expected: BTreeSet<Ipv4Addr> = (1..=(WORKERS * EACH) as u8)
        .map(|d| Ipv4Addr::new(10, 1, 2, d))
        .collect();
    assert_eq!(addresses, expected, "the lowest free addresses, each once");
    let state = EtcdStore::open(&etcd.url()).unwrap().load().unwrap().state;
    for (name, addr) in &results {
        assert_eq!(state.container(name).map(|c| c.address), Some(*addr));
    }
}

#[test]
fn one_member_of_three_killed_leaves_the_cluster_working() {
    if !etcd_or_skip() {
        return;
    }
    let mut etcd = Etcd::start();
    let url = etcd.url();
    let store = EtcdStore::open(&url).unwrap();
    seed(&store);
    let watch = store.watch(0).unwrap();
    let mut seen = Vec::new();
    wait_for(&watch, store.load().unwrap().revision, &mut seen);
    for victim in 0..3 {
        etcd.cluster.kill(victim);
        // CLIs and the library both still write; the watch still delivers.
        let name = format!("k{victim}");
        let out = nf(
            &url,
            &[
                "container",
                "create",
                &name,
                "--owner",
                "alice",
                "--host",
                "h1",
            ],
        );
        assert!(
            out.status.success(),
            "with m{victim} down: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ((), rev) = store
            .apply(|s| {
                s.create_container(&format!("{name}-lib"), "bob", "h2", None)
                    .map(|_| ())
            })
            .unwrap();
        let got = wait_for(&watch, rev, &mut seen);
        assert!(got.state.container(&name).is_some());
        etcd.cluster.restart(victim).unwrap();
        etcd.cluster.wait_ready(Duration::from_secs(20)).unwrap();
    }
    // Two of three down: no quorum, writes fail (bounded, exit 1), nothing
    // half-applied.
    etcd.cluster.kill(0);
    etcd.cluster.kill(1);
    let t = Instant::now();
    let out = nf(
        &etcd.member_url(2),
        &[
            "container",
            "create",
            "nq",
            "--owner",
            "alice",
            "--host",
            "h1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(30));
    etcd.cluster.restart_all().unwrap();
    assert!(store.load().unwrap().state.container("nq").is_none());
}

// ---- the lab on etcd ------------------------------------------------------

/// Tears the lab down and stops what the test started, even on panic.
struct LabGuard {
    name: String,
    dir: String,
    agents: Vec<Child>,
    etcd: Option<LocalCluster>,
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = Command::new(BIN)
            .args(["lab", "down", "--name", &self.name, "--dir", &self.dir])
            .output();
        // Members restarted by the test are not in the manifest.
        drop(self.etcd.take());
    }
}

#[test]
fn lab_on_etcd_converges_fails_static_and_catches_up() {
    common::require_root_and_bpffs();
    if !etcd_or_skip() {
        return;
    }
    let name = common::unique_name("e");
    let name = name.as_str();
    let dir = format!("/tmp/netfabric-test-{name}");
    let mut lab = LabGuard {
        name: name.to_owned(),
        dir: dir.clone(),
        agents: Vec::new(),
        etcd: None,
    };
    ok(&Command::new(BIN)
        .args([
            "--store", "etcd", "lab", "up", "--hosts", "3", "--name", name, "--dir", &dir,
        ])
        .output()
        .unwrap());
    let manifest: netfabric::lab::Manifest =
        serde_json::from_slice(&std::fs::read(format!("{dir}/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.etcd.len(), 3);
    let url = manifest.store_url.clone();
    assert!(url.starts_with("etcd://"), "{url}");
    lab.etcd = Some(LocalCluster::adopt(
        &PathBuf::from(&dir).join("etcd"),
        manifest.etcd.clone(),
    ));
    let store = EtcdStore::open(&url).unwrap();
    let pins: Vec<PathBuf> = manifest.hosts.iter().map(|h| h.pin_dir.clone()).collect();
    let aw = format!("nf-{name}-alice-web");
    // alice-db on h2 (10.1.2.1), bob-web on h1 (10.1.1.2).
    assert!(ping(&aw, "10.1.2.1", 2), "same owner across hosts");
    assert!(!ping(&aw, "10.1.1.2", 1), "alice -> bob is denied");

    // Agents converge after a burst (and the measurement works).
    let report = propagation::measure(&store, &pins, 5, 300, Duration::from_secs(20)).unwrap();
    eprintln!("{report}");
    assert_eq!(report.burst.n, 300);

    // All of etcd stopped: the datapath keeps enforcing.
    let etcd = lab.etcd.as_mut().unwrap();
    etcd.kill_all();
    sleep(Duration::from_millis(500));
    assert!(ping(&aw, "10.1.2.1", 3), "allowed pair, etcd down");
    assert!(!ping(&aw, "10.1.1.2", 2), "denied pair, etcd down");
    // A CLI fails, clearly and in bounded time.
    let t = Instant::now();
    let out = Command::new(BIN)
        .args(["--store", &url, "owner", "create", "carol"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unreachable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.elapsed() < Duration::from_secs(20));

    // An agent restarted while etcd is down comes up from its pinned state.
    let h1 = manifest.hosts[0].clone();
    // SAFETY: kill(2) of the lab's agent pid.
    unsafe { libc::kill(h1.agent_pid.unwrap() as i32, libc::SIGKILL) };
    sleep(Duration::from_millis(200));
    let log = std::fs::File::create(format!("{dir}/agent-{}.restart.log", h1.name)).unwrap();
    lab.agents.push(
        Command::new(BIN)
            .args(["agent", "--host", &h1.name, "--store", &url])
            .arg("--netns")
            .arg(format!("/run/netns/{}", h1.netns))
            .env("RUST_LOG", "netfabric=info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    sleep(Duration::from_millis(1500));
    assert!(
        lab.agents[0].try_wait().unwrap().is_none(),
        "the agent must run without its store"
    );
    assert!(
        ping(&aw, "10.1.2.1", 3),
        "allowed pair after the agent restart"
    );
    assert!(
        !ping(&aw, "10.1.1.2", 2),
        "denied pair after the agent restart"
    );
    let restart_log =
        std::fs::read_to_string(format!("{dir}/agent-{}.restart.log", h1.name)).unwrap();
    assert!(restart_log.contains("unreachable"), "{restart_log}");

    // etcd returns; a change made then reaches every agent.
    lab.etcd.as_mut().unwrap().restart_all().unwrap();
    let t = Instant::now();
    ok(&Command::new(BIN)
        .args(["--store", &url, "group", "add-member", "team", "bob"])
        .output()
        .unwrap());
    let (addr, _) = store
        .apply(|s| s.create_container("after", "bob", &h1.name, None))
        .unwrap();
    let state = store.load().unwrap().state;
    let bob = state.owner("bob").unwrap().id;
    let slot = state.zones[0].slot;
    let maps: Vec<PinnedEndpoints> = pins
        .iter()
        .map(|p| PinnedEndpoints::open(p).unwrap())
        .collect();
    loop {
        if maps.iter().all(|m| m.owner(slot, addr).unwrap() == bob) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the change after etcd returned did not reach every agent"
        );
        sleep(Duration::from_millis(50));
    }
    eprintln!(
        "after etcd returned: applied everywhere in {:?}",
        t.elapsed()
    );
    assert!(ping(&aw, "10.1.1.2", 2), "alice and bob now share team");
    let restart_log =
        std::fs::read_to_string(format!("{dir}/agent-{}.restart.log", h1.name)).unwrap();
    assert!(restart_log.contains("reachable again"), "{restart_log}");
    drop(lab);
    assert!(
        !Path::new(&format!("{dir}/etcd/etcd-m0")).exists(),
        "lab down removes the etcd data"
    );
}

// ---- TLS ------------------------------------------------------------------

/// One etcd member serving clients over TLS with client certificates.
struct TlsEtcd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsEtcd {
    fn start() -> TlsEtcd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=nf-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        for (name, eku) in [("server", "serverAuth"), ("client", "clientAuth")] {
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            );
            std::fs::write(
                d.join(format!("{name}.ext")),
                format!(
                    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={eku}\nbasicConstraints=CA:FALSE\n"
                ),
            )
            .unwrap();
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "1",
                    "-extfile",
                    &format!("{name}.ext"),
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
        let (port, peer) = (free_ports(0), free_ports(0));
        let log = std::fs::File::create(d.join("etcd.log")).unwrap();
        let child = Command::new(cluster::ETCD_BIN)
            .args(["--name", "s", "--data-dir"])
            .arg(d.join("data"))
            .args(["--listen-client-urls", &format!("https://127.0.0.1:{port}")])
            .args([
                "--advertise-client-urls",
                &format!("https://127.0.0.1:{port}"),
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args(["--initial-cluster", &format!("s=http://127.0.0.1:{peer}")])
            .arg("--cert-file")
            .arg(d.join("server.pem"))
            .arg("--key-file")
            .arg(d.join("server.key"))
            .arg("--trusted-ca-file")
            .arg(d.join("ca.pem"))
            .arg("--client-cert-auth")
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        TlsEtcd { child, dir, port }
    }

    fn url(&self) -> String {
        let d = self.dir.path().display();
        format!(
            "etcds://127.0.0.1:{}/tls-test?ca={d}/ca.pem&cert={d}/client.pem&key={d}/client.key",
            self.port
        )
    }
}

#[test]
fn tls_with_client_certificates() {
    if !etcd_or_skip() {
        return;
    }
    let etcd = TlsEtcd::start();
    let store = EtcdStore::open(&etcd.url()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = store.load() {
        assert!(Instant::now() < deadline, "TLS etcd not ready: {e}");
        sleep(Duration::from_millis(100));
    }
    seed(&store);
    let watch = store.watch(0).unwrap();
    let mut seen = Vec::new();
    let ((), rev) = store
        .apply(|s| s.create_container("tls", "alice", "h1", None).map(|_| ()))
        .unwrap();
    assert!(
        wait_for(&watch, rev, &mut seen)
            .state
            .container("tls")
            .is_some()
    );
    // Without TLS, or without a client certificate, nothing is read.
    let plain = EtcdStore::open(&format!("etcd://127.0.0.1:{}/tls-test", etcd.port)).unwrap();
    assert!(plain.load().is_err());
    let d = etcd.dir.path().display();
    let no_cert = EtcdStore::open(&format!(
        "etcds://127.0.0.1:{}/tls-test?ca={d}/ca.pem",
        etcd.port
    ))
    .unwrap();
    assert!(no_cert.load().is_err());
}

/// TLS with client certificates on an etcd with `auth enable`: etcd takes
/// the certificate's CN (`client`) as the user, so the store works without
/// a password on the prefix its role covers, and is refused (exit 1,
/// nothing written) on another.
#[test]
fn tls_client_certificate_is_the_user_when_auth_is_enabled() {
    if !etcd_or_skip() {
        return;
    }
    let etcd = TlsEtcd::start();
    let d = etcd.dir.path();
    let ctl = |args: &[&str]| {
        let out = Command::new("etcdctl")
            .arg(format!("--endpoints=https://127.0.0.1:{}", etcd.port))
            .arg(format!("--cacert={}", d.join("ca.pem").display()))
            .arg(format!("--cert={}", d.join("client.pem").display()))
            .arg(format!("--key={}", d.join("client.key").display()))
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("etcdctl (Debian etcd-client)");
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
        out
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Command::new("etcdctl")
        .arg(format!("--endpoints=https://127.0.0.1:{}", etcd.port))
        .arg(format!("--cacert={}", d.join("ca.pem").display()))
        .arg(format!("--cert={}", d.join("client.pem").display()))
        .arg(format!("--key={}", d.join("client.key").display()))
        .args(["endpoint", "health"])
        .env("ETCDCTL_API", "3")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(Instant::now() < deadline, "TLS etcd not ready");
        sleep(Duration::from_millis(100));
    }
    ctl(&["user", "add", "root:rootpw"]);
    ctl(&["user", "grant-role", "root", "root"]);
    ctl(&["role", "add", "netfabric"]);
    ctl(&[
        "role",
        "grant-permission",
        "netfabric",
        "readwrite",
        "/tls-test/",
        "--prefix=true",
    ]);
    // The password is never used: the certificate authenticates.
    ctl(&["user", "add", "client:unused-password"]);
    ctl(&["user", "grant-role", "client", "netfabric"]);
    ctl(&["auth", "enable"]);

    let store = EtcdStore::open(&etcd.url()).unwrap();
    seed(&store);
    let out = nf(&etcd.url(), &["owner", "create", "carol"]);
    ok(&out);
    assert!(store.load().unwrap().state.owner("carol").is_some());

    let elsewhere = etcd.url().replace("/tls-test?", "/elsewhere/?");
    let out = nf(&elsewhere, &["owner", "create", "mallory"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    let keys = ctl(&[
        "--user",
        "root:rootpw",
        "get",
        "/",
        "--prefix",
        "--keys-only",
    ]);
    let keys = String::from_utf8_lossy(&keys.stdout);
    assert!(
        keys.contains("/tls-test/owners/carol") && !keys.contains("/elsewhere/"),
        "{keys}"
    );
}

/// etcd down (nothing listens on its port): the CLI gives up within the
/// documented 5 s (asserted < 8 s), exit 1, with a message a person can act
/// on rather than a transport error's debug dump.
#[test]
fn with_etcd_down_the_cli_gives_up_quickly_and_clearly() {
    let port = free_ports(0);
    let url = format!("etcd://127.0.0.1:{port}");
    for args in [&["owner", "list"][..], &["owner", "create", "alice"][..]] {
        let started = Instant::now();
        let out = nf(&url, args);
        let took = started.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(took < Duration::from_secs(8), "{args:?} took {took:?}");
        assert!(
            err.contains("unreachable")
                && err.contains(&format!("127.0.0.1:{port}"))
                && err.contains("Connection refused"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("tonic") && !err.contains("ConnectError"),
            "{args:?}: raw transport error: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

/// `etcdctl` against `endpoint` (host:port).
fn etcdctl(endpoint: &str, args: &[&str]) -> Output {
    let out = Command::new("etcdctl")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()
        .expect("etcdctl (Debian etcd-client)");
    assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
    out
}

/// A state made invalid behind netfabric's back (a key put by hand: a
/// second container holding an address) is reported by the watch, never
/// delivered, and refused as a base for changes; removing it delivers the
/// valid state again.
#[test]
fn an_invalid_state_put_by_hand_is_refused_until_it_is_fixed() {
    if !etcd_or_skip() {
        return;
    }
    let etcd = Etcd::start();
    let store = EtcdStore::open(&etcd.url()).unwrap();
    seed(&store);
    let ((), _) = store
        .apply(|s| s.create_container("web", "alice", "h1", None).map(|_| ()))
        .unwrap();
    let watch = store.watch(0).unwrap();
    let mut seen = Vec::new();
    let good = wait_for(&watch, store.load().unwrap().revision, &mut seen);

    let endpoint = format!("127.0.0.1:{}", etcd.cluster.members()[0].client_port);
    let web = etcdctl(
        &endpoint,
        &["get", "--print-value-only", "/netfabric/containers/web"],
    );
    let mut intruder: serde_json::Value = serde_json::from_slice(&web.stdout).unwrap();
    intruder["owner"] = "bob".into();
    if intruder.get("name").is_some() {
        intruder["name"] = "intruder".into();
    }
    etcdctl(
        &endpoint,
        &[
            "put",
            "/netfabric/containers/intruder",
            &intruder.to_string(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match watch.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Some(Err(netfabric::store::StoreError::InvalidStored { source, .. })) => {
                // Keys come sorted: whichever of the two is named, the
                // message names the other.
                let message = source.to_string();
                assert!(
                    source.field().ends_with("].address")
                        && message.contains("10.1.1.1")
                        && message.contains("intruder")
                        && message.contains("web"),
                    "{message}"
                );
                break;
            }
            Some(Ok(s)) => panic!("an invalid state was delivered: {s:?}"),
            Some(Err(e)) => eprintln!("watch: {e}"),
            None => panic!("the invalid state was not reported within 10 s"),
        }
    }
    let err = store.apply(|s| s.create_owner("carol")).unwrap_err();
    assert!(
        matches!(err, netfabric::store::StoreError::InvalidStored { .. }),
        "{err}"
    );
    etcdctl(&endpoint, &["del", "/netfabric/containers/intruder"]);
    let back = wait_for(&watch, 0, &mut seen);
    assert_eq!(back.state, good.state);
}

/// etcd restored from a backup (its data dir copied back while stopped):
/// its revisions go back below what the watch has seen. The watch must
/// deliver the restored state and the changes after it, not wait silently
/// for the revision to pass the old maximum.
#[test]
fn etcd_restored_from_a_backup_is_delivered() {
    if !etcd_or_skip() {
        return;
    }
    init_test_logs();
    let dir = etcd_data_dir("netfabric-etcd-restore-");
    let mut cluster = LocalCluster::start(dir.path(), 1).expect("starting etcd");
    let store = EtcdStore::open(&cluster.url()).unwrap();
    seed(&store);
    let ((), backup_revision) = store
        .apply(|s| s.create_container("web", "alice", "h1", None).map(|_| ()))
        .unwrap();
    let data = cluster.members()[0].data_dir.clone();
    let backup = dir.path().join("backup");
    cluster.stop(0);
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&backup)
        .status()
        .unwrap();
    assert!(cp.success());
    cluster.restart_all().unwrap();
    for i in 0..5 {
        store
            .apply(|s| s.create_owner(&format!("o{i}")).map(|_| ()))
            .unwrap();
    }
    let latest = store.load().unwrap().revision;
    let watch = store.watch(0).unwrap();
    let mut seen = Vec::new();
    let before = wait_for(&watch, latest, &mut seen);
    assert!(before.state.owner("o4").is_some());

    // Restore: the data dir as it was at backup_revision.
    cluster.stop(0);
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&backup, &data).unwrap();
    cluster.restart_all().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let restored = loop {
        assert!(
            Instant::now() < deadline,
            "the restored state was not delivered"
        );
        match watch.recv_timeout(Duration::from_millis(200)) {
            Some(Ok(s)) if s.state.owner("o0").is_none() => break s,
            Some(Ok(s)) => eprintln!("watch: revision {}", s.revision),
            Some(Err(e)) => eprintln!("watch: {e}"),
            None => {}
        }
    };
    assert!(
        restored.revision < latest,
        "{} >= {latest}",
        restored.revision
    );
    assert!(restored.revision >= backup_revision);
    assert!(restored.state.container("web").is_some());
    // A change after the restore (its revision at or below the old
    // maximum) is delivered too.
    let ((), revision) = store
        .apply(|s| s.create_owner("after").map(|_| ()))
        .unwrap();
    assert!(
        revision <= latest,
        "{revision} > {latest}: not a revision the watch had seen"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "the change after the restore was not delivered"
        );
        if let Some(Ok(s)) = watch.recv_timeout(Duration::from_millis(200))
            && s.state.owner("after").is_some()
        {
            assert_eq!(s.revision, revision);
            break;
        }
    }
}
