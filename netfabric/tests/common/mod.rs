//! Helpers shared by the integration tests that drive the `netfabric`
//! binary, labs and namespaces (root, bpffs). Each test file uses a subset.
#![allow(
    dead_code,
    reason = "each test crate uses a different subset of these helpers"
)]

use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_netfabric");

/// Run `netfabric ARGS`.
pub fn nf(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running netfabric")
}

/// The stdout of a command that must have succeeded.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A shell command inside network namespace `ns`.
pub fn in_ns(ns: &str, cmd: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "sh", "-c", cmd]);
    c
}

/// Did `count` pings from `ns` to `to` all get answered?
pub fn ping(ns: &str, to: &str, count: u32) -> bool {
    in_ns(ns, &format!("ping -c {count} -i 0.2 -W 1 {to}"))
        .output()
        .expect("ping")
        .status
        .success()
}

/// These tests need root, bpffs and namespaces (CI has them): fail loudly
/// rather than pass without checking anything.
pub fn require_root_and_bpffs() {
    // SAFETY: getuid has no preconditions.
    assert_eq!(unsafe { libc::getuid() }, 0, "these tests need root");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    assert!(
        mounts.lines().any(|l| l.contains(" /sys/fs/bpf bpf ")),
        "these tests need bpffs at /sys/fs/bpf (cargo xtask setup mounts it)"
    );
}

/// A lab name unique to this run: namespaces, pins and hosts derive from it,
/// so two runs on one machine cannot collide.
pub fn unique_name(tag: &str) -> String {
    format!("t{tag}{}", std::process::id() % 100_000)
}

/// `lab down` on drop, also when the test panics.
pub struct Lab {
    pub name: String,
    pub dir: String,
}

impl Lab {
    /// `netfabric lab up --hosts HOSTS`, named `t<tag><pid>` in
    /// `/tmp/netfabric-test-<name>`, taken down on drop; also what `lab up`
    /// printed.
    pub fn up(tag: &str, hosts: u32) -> (Lab, String) {
        let name = unique_name(tag);
        let lab = Lab {
            dir: format!("/tmp/netfabric-test-{name}"),
            name,
        };
        let printed = ok(&nf(&[
            "lab",
            "up",
            "--hosts",
            &hosts.to_string(),
            "--name",
            &lab.name,
            "--dir",
            &lab.dir,
        ]));
        (lab, printed)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = nf(&["lab", "down", "--name", &self.name, "--dir", &self.dir]);
    }
}

/// A loopback port nobody listens on now, and the `n` ports after it.
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = l.local_addr().unwrap().port();
        drop(l);
        if base > 60000 {
            continue;
        }
        if (0..=n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free loopback ports");
}

/// Test logs through the test harness's writer (`RUST_LOG` or
/// `netfabric=info`); a second call is a no-op.
pub fn init_test_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "netfabric=info".into()))
        .try_init();
}

/// A temporary directory for etcd members' data, on tmpfs when there is one
/// (fsync is then cheap), removed on drop.
pub fn etcd_data_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .unwrap()
}

/// A network namespace owned by the test, deleted on drop.
pub struct TestNetns(pub String);

impl TestNetns {
    pub fn new(name: &str) -> TestNetns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        TestNetns(name.to_owned())
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// The `netfabric` binary against a file store of its own in a temporary
/// directory (no agent, no root), with zone z1 (10.1.0.0/16), hosts h1 and
/// h2 and owners alice and bob: what the CLI tests build their cases on.
pub struct FileStoreCli {
    _dir: tempfile::TempDir,
    pub state_dir: std::path::PathBuf,
}

impl FileStoreCli {
    pub fn new() -> FileStoreCli {
        let dir = tempfile::tempdir().unwrap();
        let cli = FileStoreCli {
            state_dir: dir.path().join("netfabric"),
            _dir: dir,
        };
        cli.ok(&["zone", "create", "z1", "--prefix", "10.1.0.0/16"]);
        for n in ["1", "2"] {
            cli.ok(&[
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
        cli.ok(&["owner", "create", "alice"]);
        cli.ok(&["owner", "create", "bob"]);
        cli
    }

    pub fn file(&self) -> std::path::PathBuf {
        self.state_dir.join("state.json")
    }

    pub fn store(&self) -> netfabric::store::FileStore {
        netfabric::store::FileStore::in_dir(&self.state_dir)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .env_remove("NETFABRIC_STORE")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "netfabric {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// [`FileStoreCli::ok`]'s standard output.
    pub fn ok_stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.ok(args).stdout).into_owned()
    }

    /// Runs a bad input: exit code 2, the message names `field`, nothing
    /// on stdout, and the store file is byte-identical. Returns stderr.
    pub fn refused(&self, args: &[&str], field: &str) -> String {
        let before = std::fs::read(self.file()).unwrap();
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "netfabric {args:?}: {err}");
        assert!(
            err.contains(field),
            "netfabric {args:?}: {err:?} does not name {field}"
        );
        assert!(printed.is_empty(), "netfabric {args:?} printed {printed}");
        assert_eq!(
            std::fs::read(self.file()).unwrap(),
            before,
            "netfabric {args:?} changed the store"
        );
        err
    }
}
