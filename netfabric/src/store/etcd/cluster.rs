//! A local etcd cluster on loopback: the lab's store (`lab up --store
//! etcd`), the tests' and the benchmark's. Members are `etcd` processes
//! (Debian package `etcd-server`) on free `127.0.0.1` ports with their data
//! under one directory; dropping a [`LocalCluster`] kills them unless
//! [`LocalCluster::detach`] handed them over (the lab records their pids
//! and `lab down` stops them).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::EtcdStore;
use crate::store::Store as _;

/// The etcd executable looked for in `PATH`.
pub const ETCD_BIN: &str = "etcd";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "{ETCD_BIN} not found in PATH: install the Debian package etcd-server (cargo xtask setup)"
    )]
    NoEtcd,
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the local etcd cluster did not become ready within {waited:?} (logs in {dir}): {last}"
    )]
    NotReady {
        waited: Duration,
        dir: PathBuf,
        last: String,
    },
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Io { action, source }
}

/// One member, as recorded (e.g. in the lab manifest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberRecord {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub pid: Option<u32>,
}

impl MemberRecord {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    token: String,
    members: Vec<MemberRecord>,
    children: Vec<Option<Child>>,
    detached: bool,
}

/// `n` free loopback ports (held until all are picked, so they differ).
fn free_ports(n: usize) -> Result<Vec<u16>, ClusterError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io("finding free loopback ports"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(io("finding free loopback ports"))
}

/// Whether `etcd` can be run.
pub fn etcd_available() -> bool {
    Command::new(ETCD_BIN)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl LocalCluster {
    /// Starts `members` etcd processes with data dirs and logs under `dir`
    /// and waits until the cluster answers (at most 30 s).
    pub fn start(dir: &Path, members: usize) -> Result<LocalCluster, ClusterError> {
        if !etcd_available() {
            return Err(ClusterError::NoEtcd);
        }
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let ports = free_ports(2 * members)?;
        let members: Vec<MemberRecord> = (0..members)
            .map(|i| MemberRecord {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.join(format!("etcd-m{i}")),
                log: dir.join(format!("etcd-m{i}.log")),
                pid: None,
            })
            .collect();
        for m in &members {
            // A fresh cluster: stale data would belong to another one.
            let _ = std::fs::remove_dir_all(&m.data_dir);
        }
        let mut cluster = LocalCluster {
            dir: dir.to_owned(),
            token: format!("netfabric-{}-{}", std::process::id(), ports[0]),
            children: members.iter().map(|_| None).collect(),
            members,
            detached: false,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i, "new")?;
        }
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Takes over members started elsewhere (e.g. recorded in a lab
    /// manifest): they can then be killed and restarted; dropping the
    /// result kills them.
    pub fn adopt(dir: &Path, members: Vec<MemberRecord>) -> LocalCluster {
        LocalCluster {
            dir: dir.to_owned(),
            token: String::new(),
            children: members.iter().map(|_| None).collect(),
            members,
            detached: false,
        }
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<(), ClusterError> {
        use std::os::unix::process::CommandExt as _;
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(io(format!("opening {}", m.log.display())))?;
        let err = log.try_clone().map_err(io("cloning the log file"))?;
        let child = Command::new(ETCD_BIN)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &self.initial_cluster()])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            // Loopback: fast failure detection.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            // Its own process group: a Ctrl-C meant for the caller does not
            // take the store down with it.
            .process_group(0)
            .spawn()
            .map_err(io(format!("starting {ETCD_BIN} {}", m.name)))?;
        self.members[i].pid = Some(child.id());
        self.children[i] = Some(child);
        Ok(())
    }

    /// Waits until a linearizable read through every live member's
    /// endpoints succeeds.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        let start = Instant::now();
        let store = EtcdStore::open(&self.url()).map_err(|e| ClusterError::NotReady {
            waited: Duration::ZERO,
            dir: self.dir.clone(),
            last: e.to_string(),
        })?;
        loop {
            let err = match store.load() {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if start.elapsed() > timeout {
                return Err(ClusterError::NotReady {
                    waited: start.elapsed(),
                    dir: self.dir.clone(),
                    last: err.to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `etcd://127.0.0.1:<c0>,127.0.0.1:<c1>,...`
    pub fn url(&self) -> String {
        url_of(&self.members)
    }

    pub fn members(&self) -> &[MemberRecord] {
        &self.members
    }

    /// The directory of data dirs and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills member `i` (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        } else if let Some(pid) = self.members[i].pid
            && is_member_process(&self.members[i], pid)
        {
            // SAFETY: kill(2) on a pid checked to be this member's etcd.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while is_member_process(&self.members[i], pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.members[i].pid = None;
    }

    /// Stops member `i` gracefully (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        } else {
            self.kill(i);
        }
        self.members[i].pid = None;
    }

    /// Kills every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts member `i` again on its data dir (after [`kill`](Self::kill)).
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        if self.members[i].pid.is_none() {
            self.spawn(i, "existing")?;
        }
        Ok(())
    }

    /// Restarts every stopped member and waits for the cluster.
    pub fn restart_all(&mut self) -> Result<(), ClusterError> {
        for i in 0..self.members.len() {
            self.restart(i)?;
        }
        self.wait_ready(Duration::from_secs(30))
    }

    /// Hands the processes over (they keep running after this value is
    /// gone); returns what to record to stop them later.
    pub fn detach(mut self) -> Vec<MemberRecord> {
        self.detached = true;
        self.members.clone()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.detached {
            self.kill_all();
        }
    }
}

/// The store URL of recorded members.
pub fn url_of(members: &[MemberRecord]) -> String {
    format!(
        "etcd://{}",
        members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Whether `pid` is the etcd process of `m` (so a recycled pid is never
/// killed).
pub fn is_member_process(m: &MemberRecord, pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains(ETCD_BIN) && c.contains(&*m.data_dir.to_string_lossy())
        })
        .unwrap_or(false)
}

/// Stops recorded members (SIGTERM, SIGKILL after 5 s) and removes their
/// data dirs.
pub fn stop_recorded(members: &[MemberRecord]) {
    let live: Vec<(u32, &MemberRecord)> = members
        .iter()
        .filter_map(|m| m.pid.filter(|&p| is_member_process(m, p)).map(|p| (p, m)))
        .collect();
    for (pid, _) in &live {
        // SAFETY: kill(2) on a pid checked to be this member's etcd.
        unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for (pid, m) in &live {
        while is_member_process(m, *pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_member_process(m, *pid) {
            // SAFETY: as above.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
    for m in members {
        let _ = std::fs::remove_dir_all(&m.data_dir);
    }
}
