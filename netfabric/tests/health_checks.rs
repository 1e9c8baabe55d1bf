//! Health checks of service backends, end to end without the datapath
//! (root, namespaces; etcd started by the test):
//!
//! * the etcd board: reports are published beside the state (its revision
//!   does not move), watched, withdrawn, and a report whose agent stopped
//!   renewing it expires with its lease;
//! * from a backend's death to another watcher of the board: the agent's
//!   prober, in a namespace of the test's own, probes a real HTTP server
//!   (busybox httpd) in a second namespace, from 169.254.1.1 with the
//!   probes' mark (nftables in the two namespaces drop any other probe),
//!   by TCP and by HTTP; the server is killed and the board
//!   (file store and etcd) must show both checks down, then up again after
//!   a restart. The delays are printed, not asserted (performance belongs
//!   to the benchmark).

use std::{
    net::Ipv4Addr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use netfabric::{
    MacAddr,
    agent::health::{ProberConfig, probe, run},
    health::{Check, HealthReport, HealthView, ProbeTarget, TargetHealth, now_ms},
    state::HostSpec,
    store::{
        EtcdStore, FileStore, Store as _, StoreExt as _,
        etcd::{EtcdHealthBoard, LocalCluster, board_prefix, cluster},
        health_board::{BoardWatch, FileHealthBoard, HealthBoard},
    },
};

mod common;

use common::{TestNetns, etcd_data_dir, init_test_logs, require_root_and_bpffs};

struct Etcd {
    cluster: LocalCluster,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        assert!(
            cluster::etcd_available(),
            "no etcd binary: `cargo xtask setup` installs etcd-server"
        );
        init_test_logs();
        let dir = etcd_data_dir("netfabric-health-etcd-");
        let cluster = LocalCluster::start(dir.path(), 1).expect("starting etcd");
        Etcd { cluster, _dir: dir }
    }
}

fn report(host: &str, backend: Ipv4Addr, up: bool) -> HealthReport {
    HealthReport {
        host: host.into(),
        at_ms: now_ms(),
        targets: vec![TargetHealth {
            backend,
            port: 80,
            check: Check::Tcp,
            up,
            reason: None,
        }],
    }
}

/// Waits (at most `within`) for a view that satisfies `pred`; the last view
/// seen on timeout, in the panic message.
fn wait_view(
    watch: &BoardWatch,
    within: Duration,
    pred: impl Fn(&HealthView) -> bool,
) -> HealthView {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(item) = watch.recv_timeout(Duration::from_millis(100)) {
            let view = item.expect("a good view");
            if pred(&view) {
                return view;
            }
            last = Some(view);
        }
    }
    panic!("no matching view within {within:?}; last: {last:?}");
}

#[test]
fn etcd_board_publishes_beside_the_state_and_reports_expire_with_their_lease() {
    let etcd = Etcd::start();
    let url = etcd.cluster.url();
    let store = EtcdStore::open(&url).unwrap();
    store
        .apply(|s| {
            s.create_zone("z1", "10.1.0.0/16".parse().unwrap(), None)?;
            s.create_host(HostSpec {
                name: "h1".into(),
                zone: "z1".into(),
                number: Some(1),
                subnet: None,
                uplink: "eth0".into(),
                underlay_ip: Ipv4Addr::new(192, 168, 50, 1),
                underlay_mac: MacAddr([2, 0, 0xc0, 0xa8, 0x32, 1]),
            })
        })
        .unwrap();
    let revision = store.load().unwrap().revision;
    let state_watch = store.watch(revision).unwrap();

    let board = EtcdHealthBoard::new(&store).with_ttl(Duration::from_secs(2));
    assert_eq!(board.prefix(), board_prefix("/netfabric/"));
    let watch = board.watch().unwrap();
    let b1 = Ipv4Addr::new(10, 1, 1, 5);
    let b2 = Ipv4Addr::new(10, 1, 2, 5);
    wait_view(&watch, Duration::from_secs(10), |v| v.reports.is_empty());

    board.publish(&report("h1", b1, false)).unwrap();
    board.publish(&report("h2", b2, true)).unwrap();
    let view = wait_view(&watch, Duration::from_secs(10), |v| v.reports.len() == 2);
    assert!(!view.is_healthy(b1, 80));
    assert!(view.is_healthy(b2, 80));
    // Renewing (a heartbeat) keeps the same lease alive.
    board.publish(&report("h1", b1, true)).unwrap();
    wait_view(&watch, Duration::from_secs(10), |v| v.is_healthy(b1, 80));

    // The state did not move, and its watch saw nothing.
    assert_eq!(store.load().unwrap().revision, revision);
    assert!(
        state_watch
            .recv_timeout(Duration::from_millis(300))
            .is_none()
    );

    // A reader elsewhere (another client) sees the same.
    let other = EtcdHealthBoard::new(&EtcdStore::open(&url).unwrap());
    let view = wait_view(&other.watch().unwrap(), Duration::from_secs(10), |v| {
        v.reports.len() == 2
    });
    assert!(view.is_healthy(b1, 80));

    board.withdraw("h2").unwrap();
    wait_view(&watch, Duration::from_secs(10), |v| {
        v.reports.keys().eq(["h1"].iter())
    });

    // h1's agent dies: nobody renews its lease, and its report goes.
    let started = Instant::now();
    drop(board);
    wait_view(&watch, Duration::from_secs(15), |v| v.reports.is_empty());
    eprintln!(
        "a dead agent's report expired after {:?}",
        started.elapsed()
    );

    // A bad report is an error naming the board, not a guess.
    let bad_key = format!("{}h3", board_prefix("/netfabric/"));
    let out = Command::new("etcdctl")
        .args([
            "--endpoints",
            &etcd.cluster.members()[0].client_url(),
            "put",
            &bad_key,
            "{nope",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match watch.recv_timeout(Duration::from_millis(200)) {
            Some(Err(e)) => {
                assert!(e.to_string().contains("h3"), "{e}");
                break;
            }
            _ if Instant::now() > deadline => panic!("no error for the bad report"),
            _ => {}
        }
    }
}

/// Two namespaces joined by a veth: the prober's (`10.251.<n>.1` and
/// 169.254.1.1, the gateway address probes leave from) and the backend's
/// (`10.251.<n>.2`, routing 169.254.1.1 back over the veth).
struct Pair {
    prober: TestNetns,
    backend: TestNetns,
    backend_addr: Ipv4Addr,
}

fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(out.status.success(), "{cmd}: {out:?}");
}

impl Pair {
    fn new(tag: &str, n: u8) -> Pair {
        let id = std::process::id() % 100_000;
        let prober = TestNetns::new(&format!("nfhc-{tag}p-{id}"));
        let backend = TestNetns::new(&format!("nfhc-{tag}b-{id}"));
        let (p, b) = (&prober.0, &backend.0);
        let (vp, vb) = (format!("hc{tag}p{id}"), format!("hc{tag}b{id}"));
        sh(&format!(
            "ip -n {p} link add {vp} type veth peer name {vb} netns {b} && \
             ip -n {p} link set lo up && ip -n {b} link set lo up && \
             ip -n {p} addr add 10.251.{n}.1/24 dev {vp} && \
             ip -n {p} addr add 169.254.1.1/32 dev {vp} && \
             ip -n {b} addr add 10.251.{n}.2/24 dev {vb} && \
             ip -n {p} link set {vp} up && ip -n {b} link set {vb} up && \
             ip -n {b} route add 169.254.1.1/32 dev {vb}"
        ));
        // Only probes as the agent sends them get through: marked with
        // HEALTH_PROBE_MARK on the way out (the mark does not cross the
        // veth, so it is checked in the prober's namespace) and from the
        // gateway address on the way in.
        let mark = netfabric_common::service::HEALTH_PROBE_MARK;
        sh(&format!(
            "ip netns exec {p} nft 'add table ip t; \
               add chain ip t out {{ type filter hook output priority 0; }}; \
               add rule ip t out tcp dport 8080 meta mark != {mark:#x} drop' && \
             ip netns exec {b} nft 'add table ip t; \
               add chain ip t in {{ type filter hook input priority 0; }}; \
               add rule ip t in tcp dport 8080 ip saddr != 169.254.1.1 drop'"
        ));
        Pair {
            prober,
            backend,
            backend_addr: Ipv4Addr::new(10, 251, n, 2),
        }
    }

    /// busybox httpd serving `root` on port 8080 in the backend namespace.
    fn serve(&self, root: &Path) -> Server {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.backend.0,
                "busybox",
                "httpd",
                "-f",
                "-p",
            ])
            .arg(format!("{}:8080", self.backend_addr))
            .arg("-h")
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting busybox httpd");
        let server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.backend.0,
                    "ss",
                    "-Hltn",
                    "sport = :8080",
                ])
                .output()
                .unwrap();
            if !out.stdout.is_empty() {
                return server;
            }
            assert!(Instant::now() < deadline, "busybox httpd never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The HTTP server, killed on drop.
struct Server(Child);

impl Server {
    fn kill(&mut self) -> Instant {
        let _ = self.0.kill();
        let at = Instant::now();
        let _ = self.0.wait();
        at
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The agent's prober, running in `netns` on a thread of its own until
/// dropped.
struct ProberThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProberThread {
    fn start(netns: &str, targets: Vec<ProbeTarget>, board: Arc<dyn HealthBoard>) -> ProberThread {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let path = format!("/run/netns/{netns}");
        let thread = std::thread::spawn(move || {
            netfabric::port::netns::enter(Path::new(&path)).expect("entering the prober's netns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (_keep, rx) = tokio::sync::watch::channel(targets);
            rt.block_on(async move {
                tokio::select! {
                    () = run("hp".into(), ProberConfig::default(), rx, board) => {}
                    _ = stopped => {}
                }
            });
        });
        ProberThread {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for ProberThread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One probe from `netns` with `config`.
fn probe_in(netns: &str, target: ProbeTarget, config: ProberConfig) -> Result<(), String> {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        netfabric::port::netns::enter(Path::new(&path)).expect("entering the prober's netns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(probe(&target, &config))
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap()
}

/// Kills and restarts a probed server; the board, watched apart from the
/// prober, must show its checks down and then up.
fn death_reaches_the_board(
    tag: &str,
    n: u8,
    board: Arc<dyn HealthBoard>,
    reader: &dyn HealthBoard,
) {
    require_root_and_bpffs();
    let pair = Pair::new(tag, n);
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), "ok\n").unwrap();
    let mut server = pair.serve(root.path());
    let b = pair.backend_addr;
    let targets = vec![
        ProbeTarget {
            backend: b,
            port: 8080,
            check: Check::Tcp,
        },
        ProbeTarget {
            backend: b,
            port: 8080,
            check: Check::Http { path: "/".into() },
        },
    ];
    // The namespaces' filters let only the agent's probes through: the
    // same probe unmarked, or from another source, gets no answer.
    let http = targets[1].clone();
    assert_eq!(
        probe_in(&pair.prober.0, http.clone(), ProberConfig::default()),
        Ok(())
    );
    for config in [
        ProberConfig {
            mark: None,
            ..ProberConfig::default()
        },
        ProberConfig {
            source: None,
            ..ProberConfig::default()
        },
    ] {
        let r = probe_in(&pair.prober.0, http.clone(), config.clone());
        assert!(
            r.as_ref().is_err_and(|e| e.contains("no answer")),
            "{config:?}: {r:?}"
        );
    }

    let watch = reader.watch().unwrap();
    let _prober = ProberThread::start(&pair.prober.0, targets, board);
    let both = |v: &HealthView, up: bool| {
        v.reports
            .get("hp")
            .is_some_and(|r| r.targets.len() == 2 && r.targets.iter().all(|t| t.up == up))
    };
    wait_view(&watch, Duration::from_secs(10), |v| both(v, true));

    let mut delays = Vec::new();
    for _ in 0..3 {
        let killed = server.kill();
        let view = wait_view(&watch, Duration::from_secs(10), |v| both(v, false));
        delays.push(killed.elapsed());
        assert!(!view.is_healthy(b, 8080));
        let reasons: Vec<_> = view.reports["hp"]
            .targets
            .iter()
            .map(|t| t.reason.clone())
            .collect();
        assert!(reasons.iter().all(Option::is_some), "{reasons:?}");

        server = pair.serve(root.path());
        let started = Instant::now();
        let view = wait_view(&watch, Duration::from_secs(10), |v| both(v, true));
        assert!(view.is_healthy(b, 8080));
        eprintln!(
            "{tag}: back up on the board {:?} after the restart",
            started.elapsed()
        );
    }
    eprintln!("{tag}: from the backend's death to the board's watcher: {delays:?}");
}

#[test]
fn a_dead_backend_goes_down_on_the_file_board_and_up_after_a_restart() {
    init_test_logs();
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::in_dir(dir.path());
    let board = FileHealthBoard::for_store(&store);
    death_reaches_the_board("f", 1, Arc::new(board.clone()), &board);
}

#[test]
fn a_dead_backend_goes_down_on_the_etcd_board_and_up_after_a_restart() {
    let etcd = Etcd::start();
    let url = etcd.cluster.url();
    let publisher = EtcdHealthBoard::new(&EtcdStore::open(&url).unwrap());
    let reader = EtcdHealthBoard::new(&EtcdStore::open(&url).unwrap());
    death_reaches_the_board("e", 2, Arc::new(publisher), &reader);
}
