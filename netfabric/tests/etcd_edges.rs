//! The etcd store's edges, against real single-member etcds started by the
//! tests on free loopback ports (killed on drop, also on panic):
//!
//! * user/password authentication on an etcd with `auth enable` (a root
//!   user and a netfabric user whose role covers only the prefix): the
//!   right password works and survives token expiry; a wrong one, none,
//!   or a prefix outside the role is refused (exit 1), nothing written;
//! * a change above etcd's `--max-txn-ops` (or `--max-request-bytes`) is
//!   refused whole, with a clear error, and one at the limit is applied;
//! * the connection to etcd broken after the commit was sent (a proxy in
//!   the test holds etcd's reply, or swallows the request, then cuts): the
//!   outcome is read back, so the commit is reported as landed iff it
//!   landed, and applied exactly once; the CLI exits 0 in both cases, and
//!   1 "outcome is unknown" when etcd cannot be read back.

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    process::{Child, Command, Output},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    thread::sleep,
    time::{Duration, Instant},
};

use netfabric::{
    MacAddr,
    state::HostSpec,
    store::{EtcdStore, Store as _, StoreError, StoreExt as _, etcd::cluster},
};

mod common;

use common::{BIN, etcd_data_dir, free_ports, init_test_logs};

/// One etcd member on loopback with `extra` flags; killed on drop.
struct OneEtcd {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Drop for OneEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OneEtcd {
    fn start(extra: &[&str]) -> OneEtcd {
        assert!(
            cluster::etcd_available(),
            "no etcd binary: `cargo xtask setup` installs etcd-server"
        );
        init_test_logs();
        let dir = etcd_data_dir("netfabric-etcd-edges-");
        let port = free_ports(1);
        let peer = port + 1;
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new(cluster::ETCD_BIN)
            .args(["--name", "e", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{port}")])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{port}"),
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args(["--initial-cluster", &format!("e=http://127.0.0.1:{peer}")])
            .args(["--logger", "zap", "--log-level", "warn"])
            .args(extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        let etcd = OneEtcd {
            child,
            _dir: dir,
            port,
        };
        let probe = EtcdStore::open(&etcd.url("")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = probe.load() {
            assert!(Instant::now() < deadline, "etcd not ready: {e}");
            sleep(Duration::from_millis(100));
        }
        etcd
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `etcd://[credentials@]127.0.0.1:<port>`
    fn url(&self, credentials: &str) -> String {
        format!("etcd://{credentials}{}", self.endpoint())
    }

    /// `etcdctl` against this member; asserts success.
    fn ctl(&self, args: &[&str]) -> Output {
        let out = Command::new("etcdctl")
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("etcdctl (Debian etcd-client)");
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
        out
    }
}

fn host(name: &str, n: u8) -> HostSpec {
    HostSpec {
        name: name.into(),
        zone: "z1".into(),
        number: Some(n.into()),
        subnet: None,
        uplink: "eth0".into(),
        underlay_ip: std::net::Ipv4Addr::new(192, 168, 51, n),
        underlay_mac: MacAddr([2, 0, 0xc0, 0xa8, 0x33, n]),
    }
}

/// Zone z1, host h1, owner alice.
fn seed(store: &EtcdStore) {
    store
        .apply(|s| {
            s.create_zone("z1", "10.1.0.0/16".parse().unwrap(), None)?;
            s.create_host(host("h1", 1))?;
            s.create_owner("alice")
        })
        .unwrap();
}

fn nf(store: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("running netfabric")
}

// ---- Authentication ---------------------------------------------------------

#[test]
fn user_and_password_auth_with_token_expiry_and_refusals() {
    // Tokens live 2 s: the second half of the test runs on an expired one.
    let etcd = OneEtcd::start(&["--auth-token-ttl", "2"]);
    etcd.ctl(&["user", "add", "root:rootpw"]);
    etcd.ctl(&["user", "grant-role", "root", "root"]);
    etcd.ctl(&["role", "add", "netfabric"]);
    etcd.ctl(&[
        "role",
        "grant-permission",
        "netfabric",
        "readwrite",
        "/netfabric/",
        "--prefix=true",
    ]);
    etcd.ctl(&["user", "add", "nf:nfpw"]);
    etcd.ctl(&["user", "grant-role", "nf", "netfabric"]);
    etcd.ctl(&["auth", "enable"]);

    let store = EtcdStore::open(&etcd.url("nf:nfpw@")).unwrap();
    seed(&store);
    let watch = store.watch(0).unwrap();
    let ((), rev) = store
        .apply(|s| s.create_container("web", "alice", "h1", None).map(|_| ()))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match watch.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Some(Ok(s)) if s.revision >= rev => {
                assert!(s.state.container("web").is_some());
                break;
            }
            Some(_) => {}
            None => panic!("the watch as user nf saw no revision {rev}"),
        }
    }

    // The token expires; the store and its watch carry on with a new one.
    sleep(Duration::from_secs(4));
    let (_, rev) = store.apply(|s| s.create_owner("bob")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match watch.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Some(Ok(s)) if s.revision >= rev => {
                assert!(s.state.owner("bob").is_some());
                break;
            }
            Some(_) => {}
            None => panic!("the watch saw no revision {rev} after the token expired"),
        }
    }
    let out = nf(&etcd.url("nf:nfpw@"), &["owner", "create", "carol"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let before = store.load().unwrap();
    // A wrong password, no credentials, a prefix outside the role: exit 1,
    // a message saying why, the password never shown, nothing written.
    let refusals: [(String, &str); 3] = [
        (etcd.url("nf:wrongpw@"), "authentication failed"),
        (etcd.url(""), "user name is empty"),
        (
            format!("{}/elsewhere/", etcd.url("nf:nfpw@")),
            "permission denied",
        ),
    ];
    for (url, why) in &refusals {
        let out = nf(url, &["owner", "create", "mallory"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}: {err}");
        assert!(err.contains(why), "{url}: expected {why:?} in: {err}");
        assert!(
            !err.contains("wrongpw") && !err.contains("nfpw"),
            "{url}: password shown: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{url}: {err}");
    }
    let after = store.load().unwrap();
    assert_eq!(after, before);
    let everything = etcd.ctl(&[
        "--user",
        "root:rootpw",
        "get",
        "/",
        "--prefix",
        "--keys-only",
    ]);
    let keys = String::from_utf8_lossy(&everything.stdout);
    assert!(
        !keys.contains("mallory") && !keys.contains("/elsewhere/"),
        "{keys}"
    );
}

// ---- The transaction limit --------------------------------------------------

#[test]
fn a_change_above_max_txn_ops_is_refused_whole_and_one_at_the_limit_applies() {
    let etcd = OneEtcd::start(&["--max-txn-ops", "16"]);
    let store = EtcdStore::open(&etcd.url("")).unwrap();
    seed(&store);
    let before = store.load().unwrap();

    // 15 owners: 15 keys + meta/next_owner_id + meta/commit = 17 operations.
    let err = store
        .apply(|s| (0..15).try_for_each(|i| s.create_owner(&format!("o{i}")).map(|_| ())))
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Refused { .. }), "{err:?}");
    assert!(
        message.contains("17 operations")
            && message.contains("--max-txn-ops")
            && message.contains("nothing was applied"),
        "{message}"
    );
    assert_eq!(
        store.load().unwrap(),
        before,
        "a refused change left a trace"
    );

    // 14 owners: 16 operations, exactly the limit.
    let ((), rev) = store
        .apply(|s| (0..14).try_for_each(|i| s.create_owner(&format!("o{i}")).map(|_| ())))
        .unwrap();
    let after = store.load().unwrap();
    assert_eq!(after.revision, rev);
    assert_eq!(after.state.owners.len(), before.state.owners.len() + 14);
}

#[test]
fn a_change_above_max_request_bytes_is_refused_whole() {
    let etcd = OneEtcd::start(&["--max-request-bytes", "1024"]);
    let store = EtcdStore::open(&etcd.url("")).unwrap();
    seed(&store);
    let before = store.load().unwrap();
    // 40 owners: about 40 * 60 bytes of keys and values, within the 128
    // operations but not within 1024 bytes.
    let err = store
        .apply(|s| (0..40).try_for_each(|i| s.create_owner(&format!("owner-{i}")).map(|_| ())))
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Refused { .. }), "{err:?}");
    assert!(
        message.contains("42 operations")
            && message.contains("--max-request-bytes")
            && message.contains("nothing was applied"),
        "{message}"
    );
    assert_eq!(
        store.load().unwrap(),
        before,
        "a refused change left a trace"
    );
}

// ---- A connection broken mid-commit -----------------------------------------

/// What the proxy does with the bytes of its connections.
const PASS: u8 = 0;
/// etcd's replies are dropped (requests go through).
const HOLD_REPLIES: u8 = 1;
/// Requests are dropped (never reach etcd).
const DROP_REQUESTS: u8 = 2;
/// New connections are closed at once (etcd looks down).
const REFUSE: u8 = 3;
/// Passes everything until a request naming `meta/commit` (a commit's
/// transaction) went through, then holds the replies.
const HOLD_AFTER_COMMIT: u8 = 4;
/// Passes everything until a request naming `meta/commit`, which it drops
/// with every request after it.
const DROP_COMMIT: u8 = 5;

/// A TCP proxy on loopback in front of etcd, whose connections the test
/// can cut at a chosen moment.
struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            mode: Arc::new(AtomicU8::new(PASS)),
            conns: Arc::default(),
            stop: Arc::default(),
        };
        let (mode, conns, stop) = (proxy.mode.clone(), proxy.conns.clone(), proxy.stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if mode.load(Ordering::SeqCst) == REFUSE {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                {
                    let mut c = conns.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                for (from, to, requests) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (server, client, false),
                ] {
                    let mode = mode.clone();
                    std::thread::spawn(move || pump(from, to, &mode, requests));
                }
            }
        });
        proxy
    }

    fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.port)
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// Breaks every open connection.
    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` (client to etcd if `requests`), dropping bytes as
/// the mode says.
fn pump(mut from: TcpStream, mut to: TcpStream, mode: &AtomicU8, requests: bool) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let commit = buf[..n].windows(11).any(|w| w == b"meta/commit");
        let drop = match mode.load(Ordering::SeqCst) {
            HOLD_REPLIES => !requests,
            DROP_REQUESTS => requests,
            HOLD_AFTER_COMMIT if requests && commit => {
                mode.store(HOLD_REPLIES, Ordering::SeqCst);
                false
            }
            DROP_COMMIT if requests && commit => {
                mode.store(DROP_REQUESTS, Ordering::SeqCst);
                true
            }
            _ => false,
        };
        if drop {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// The `mod_revision` of `/netfabric/<rel>` (0: no such key).
fn mod_revision(etcd: &OneEtcd, rel: &str) -> i64 {
    let out = etcd.ctl(&["get", &format!("/netfabric/{rel}"), "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["kvs"][0]["mod_revision"].as_i64().unwrap_or(0)
}

/// A change that is not idempotent: applied twice it makes two containers.
fn add_numbered_container(
    s: &mut netfabric::state::State,
) -> Result<String, netfabric::state::StateError> {
    let name = format!("c{}", s.containers.len());
    s.create_container(&name, "alice", "h1", None)?;
    Ok(name)
}

/// Commits [`add_numbered_container`] through `proxy` in `mode`, then cuts
/// the connection: once etcd has the container (`lands`), or after a
/// second. Returns what the commit reported, and the containers in etcd
/// before it.
fn commit_through_a_cut(
    etcd: &OneEtcd,
    proxy: &Proxy,
    via: &EtcdStore,
    mode: u8,
    lands: bool,
) -> (Result<(String, u64), StoreError>, usize) {
    let direct = EtcdStore::open(&etcd.url("")).unwrap();
    let before = direct.load().unwrap().state.containers.len();
    // The connection is up and the state cached: the commit's only request
    // is the transaction.
    via.load().unwrap();
    proxy.set(mode);
    let committer = via.clone();
    let commit = std::thread::spawn(move || committer.apply(add_numbered_container));
    if lands {
        let deadline = Instant::now() + Duration::from_secs(4);
        while direct.load().unwrap().state.containers.len() == before {
            assert!(Instant::now() < deadline, "the commit did not reach etcd");
            sleep(Duration::from_millis(20));
        }
    } else {
        sleep(Duration::from_secs(1));
        assert_eq!(
            direct.load().unwrap().state.containers.len(),
            before,
            "the proxy let the request through"
        );
    }
    // The reply is still held (or the request swallowed): break the
    // connection between request and reply.
    assert!(
        !commit.is_finished(),
        "the commit was answered through the proxy"
    );
    proxy.cut();
    proxy.set(PASS);
    (commit.join().unwrap(), before)
}

#[test]
fn a_commit_whose_connection_breaks_is_resolved_by_reading_back() {
    let etcd = OneEtcd::start(&[]);
    let direct = EtcdStore::open(&etcd.url("")).unwrap();
    seed(&direct);
    let proxy = Proxy::start(etcd.endpoint());
    let via = EtcdStore::open(&proxy.url()).unwrap();

    // Landed, reply lost: reported as committed at its own revision, and
    // not applied a second time.
    // Never reached etcd: applied by the retry, once.
    for (mode, lands) in [(HOLD_REPLIES, true), (DROP_REQUESTS, false)] {
        let (result, before) = commit_through_a_cut(&etcd, &proxy, &via, mode, lands);
        let (name, rev) = result.unwrap_or_else(|e| {
            panic!("landed {lands}: the commit must be reported as committed: {e}")
        });
        assert_eq!(
            rev as i64,
            mod_revision(&etcd, &format!("containers/{name}")),
            "landed {lands}"
        );
        let state = direct.load().unwrap().state;
        assert_eq!(
            state.containers.len(),
            before + 1,
            "landed {lands}: applied other than once: {:?}",
            state.containers
        );
    }
}

/// The answer is lost and etcd stays out of reach: the commit is reported
/// neither as done nor as not done, but as unknown (exit 1 for the CLI).
#[test]
fn a_commit_whose_outcome_cannot_be_read_back_is_reported_unknown() {
    let etcd = OneEtcd::start(&[]);
    let direct = EtcdStore::open(&etcd.url("")).unwrap();
    seed(&direct);
    let proxy = Proxy::start(etcd.endpoint());
    let via = EtcdStore::open(&proxy.url()).unwrap();
    via.load().unwrap();
    proxy.set(HOLD_REPLIES);
    let committer = via.clone();
    let commit = std::thread::spawn(move || {
        committer
            .apply(|s| s.create_container("limbo", "alice", "h1", None).map(|_| ()))
            .map(|((), rev)| rev)
    });
    let deadline = Instant::now() + Duration::from_secs(4);
    while direct.load().unwrap().state.container("limbo").is_none() {
        assert!(Instant::now() < deadline, "the commit did not reach etcd");
        sleep(Duration::from_millis(20));
    }
    proxy.set(REFUSE);
    proxy.cut();
    let err = commit.join().unwrap().unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(
        message.contains("outcome is unknown") && message.contains("could not be read back"),
        "{message}"
    );
}

/// The CLI through a connection cut between its commit's request and the
/// reply: exit 0 and the stored address printed iff the commit landed
/// (whether the request reached etcd or not), exit 1 "outcome is unknown"
/// if etcd cannot be read back.
#[test]
fn the_cli_reports_a_commit_with_a_lost_answer_as_it_ended() {
    let etcd = OneEtcd::start(&[]);
    let direct = EtcdStore::open(&etcd.url("")).unwrap();
    seed(&direct);
    let proxy = Proxy::start(etcd.endpoint());
    let create = |name: &str| {
        Command::new(BIN)
            .args(["--store", &proxy.url(), "container", "create", name])
            .args(["--owner", "alice", "--host", "h1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running netfabric")
    };
    let stored = |name: &str| {
        direct
            .load()
            .unwrap()
            .state
            .container(name)
            .map(|c| c.address)
    };

    for (name, mode) in [("landed", HOLD_AFTER_COMMIT), ("retried", DROP_COMMIT)] {
        proxy.set(mode);
        let mut cli = create(name);
        if mode == HOLD_AFTER_COMMIT {
            let deadline = Instant::now() + Duration::from_secs(4);
            while stored(name).is_none() {
                assert!(
                    Instant::now() < deadline,
                    "{name}: the commit did not reach etcd"
                );
                sleep(Duration::from_millis(20));
            }
        } else {
            sleep(Duration::from_secs(2));
            assert_eq!(
                stored(name),
                None,
                "{name}: the proxy let the commit through"
            );
        }
        assert!(
            cli.try_wait().unwrap().is_none(),
            "{name}: answered through the proxy"
        );
        proxy.cut();
        proxy.set(PASS);
        let out = cli.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}: {err}");
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let address = stored(name).expect("stored");
        assert_eq!(printed, address.to_string(), "{name}");
    }
    let state = direct.load().unwrap().state;
    assert_eq!(state.containers.len(), 2, "{:?}", state.containers);

    proxy.set(HOLD_AFTER_COMMIT);
    let cli = create("limbo");
    let deadline = Instant::now() + Duration::from_secs(4);
    while stored("limbo").is_none() {
        assert!(
            Instant::now() < deadline,
            "limbo: the commit did not reach etcd"
        );
        sleep(Duration::from_millis(20));
    }
    proxy.set(REFUSE);
    proxy.cut();
    let out = cli.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("outcome is unknown"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
