//! One agent per host: an exclusive `flock` on a file beside (not in: bpffs
//! holds only BPF objects) the host's pins, and the agent's report for
//! `netfabric status`.
//!
//! Both live under [`RUN_DIR`] (`/run/netfabric/agents/`, root-only), named
//! `<host>-<hash of the absolute pin directory>`: agents of different hosts
//! or different bpffs mounts never share a lock, two agents for one pin
//! directory always do. The lock file holds the pid of its holder, so the
//! second agent can name the running one. The holder removes the file when
//! it exits; a lock taken on a file that was removed meanwhile is retried on
//! the new file, so two agents can never hold "the" lock at once.

use std::{
    fs::{self, File, OpenOptions, Permissions},
    io::{self, Read as _, Seek as _, Write as _},
    os::{
        fd::AsRawFd as _,
        unix::fs::{
            DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
        },
    },
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Where agents keep their locks and reports.
pub const RUN_DIR: &str = "/run/netfabric/agents";

#[derive(Debug, thiserror::Error)]
pub enum AgentLockError {
    #[error(
        "another agent already runs for host {host} (pid {pid}; it holds {path}): \
         stop it first, one agent per host"
    )]
    Held {
        host: String,
        pid: String,
        path: PathBuf,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing {path}: {reason} (it must be root's and writable by nobody else)")]
    Insecure { path: PathBuf, reason: String },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AgentLockError {
    let path = path.to_owned();
    move |source| AgentLockError::Io {
        action,
        path,
        source,
    }
}

/// `<host>-<16 hex digits>`: the file name stem of an agent's lock and
/// report. The hash is FNV-1a (64 bits) of the absolute pin directory.
pub fn key(pin_dir: &Path, host: &str) -> String {
    let abs = std::path::absolute(pin_dir).unwrap_or_else(|_| pin_dir.to_owned());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in abs.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{host}-{hash:016x}")
}

/// The lock file of the agent of `pin_dir` (in `run_dir`).
pub fn lock_path(run_dir: &Path, pin_dir: &Path, host: &str) -> PathBuf {
    run_dir.join(format!("{}.lock", key(pin_dir, host)))
}

/// The report file of the agent of `pin_dir` (in `run_dir`).
pub fn report_path(run_dir: &Path, pin_dir: &Path, host: &str) -> PathBuf {
    run_dir.join(format!("{}.json", key(pin_dir, host)))
}

/// Creates `run_dir` (0700) and refuses one that others could write.
fn ensure_run_dir(run_dir: &Path) -> Result<(), AgentLockError> {
    if !run_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(run_dir)
            .map_err(io_err("creating", run_dir))?;
        fs::set_permissions(run_dir, Permissions::from_mode(0o700))
            .map_err(io_err("setting the mode of", run_dir))?;
    }
    let meta = fs::metadata(run_dir).map_err(io_err("reading the metadata of", run_dir))?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(AgentLockError::Insecure {
            path: run_dir.to_owned(),
            reason: format!("owned by uid {}", meta.uid()),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(AgentLockError::Insecure {
            path: run_dir.to_owned(),
            reason: format!("mode {:04o} lets others write", meta.mode() & 0o7777),
        });
    }
    Ok(())
}

/// The lock of one host's agent, held until dropped (or the process dies).
#[derive(Debug)]
pub struct AgentLock {
    /// Open for as long as the lock is held (closing it releases it).
    _file: File,
    path: PathBuf,
    report: PathBuf,
}

impl AgentLock {
    /// Takes the lock of the agent of `pin_dir`, or says which process
    /// holds it. Never waits.
    pub fn acquire(run_dir: &Path, pin_dir: &Path, host: &str) -> Result<Self, AgentLockError> {
        ensure_run_dir(run_dir)?;
        let path = lock_path(run_dir, pin_dir, host);
        loop {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(io_err("opening the agent lock", &path))?;
            // SAFETY: flock on a descriptor we own; no memory involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(io_err("locking", &path)(err));
                }
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.lines().next().unwrap_or("").trim().to_owned();
                return Err(AgentLockError::Held {
                    host: host.to_owned(),
                    pid: if pid.is_empty() {
                        "unknown: it is starting".into()
                    } else {
                        pid
                    },
                    path,
                });
            }
            // The holder we waited for may have removed the file between our
            // open and our flock: then the lock is on a dead inode, and
            // someone else may lock the new file. Lock the file the name
            // points to.
            let ours = file.metadata().map_err(io_err("reading", &path))?;
            match fs::symlink_metadata(&path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {}
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("reading", &path)(e)),
            }
            file.set_permissions(Permissions::from_mode(0o600))
                .map_err(io_err("setting the mode of", &path))?;
            file.set_len(0).map_err(io_err("writing", &path))?;
            file.rewind().map_err(io_err("writing", &path))?;
            writeln!(file, "{}\n{}", std::process::id(), pin_dir.display())
                .map_err(io_err("writing", &path))?;
            return Ok(AgentLock {
                _file: file,
                path,
                report: report_path(run_dir, pin_dir, host),
            });
        }
    }

    /// Publishes what the agent enforces, for `netfabric status` (written
    /// to a temp file and renamed, so readers never see half of it).
    pub fn report(&self, report: &AgentReport) -> Result<(), AgentLockError> {
        let temp = self.report.with_extension("json.tmp");
        let _ = fs::remove_file(&temp);
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)
            .map_err(io_err("creating", &temp))?;
        let json = serde_json::to_vec_pretty(report).map_err(|e| AgentLockError::Io {
            action: "encoding",
            path: temp.clone(),
            source: io::Error::other(e),
        })?;
        file.write_all(&json).map_err(io_err("writing", &temp))?;
        fs::rename(&temp, &self.report).map_err(io_err("renaming", &self.report))
    }
}

impl Drop for AgentLock {
    fn drop(&mut self) {
        // Still holding the lock: nobody else can be using these names.
        let _ = fs::remove_file(&self.report);
        let _ = fs::remove_file(&self.path);
    }
}

/// What an agent enforces, as it reports it for `netfabric status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReport {
    pub pid: u32,
    pub host: String,
    /// Revision of the state the maps are kept equal to (`None` before the
    /// first valid state).
    pub enforced_revision: Option<u64>,
    /// Whether the last state read from the store was valid.
    pub state_valid: bool,
    /// Why the last state read was refused (the maps keep the last valid
    /// one).
    pub invalid_reason: Option<String>,
    /// Unix time (ms) of this report.
    pub at_ms: u64,
    /// The DNS server (`dns::DnsServer::summary`), `None` if none runs.
    #[serde(default)]
    pub dns: Option<String>,
}

/// Removes the lock and report of the agent of `pin_dir` if no agent holds
/// the lock (one killed with SIGKILL leaves them behind). Taking the lock
/// and dropping it does exactly that, safely against an agent starting now.
pub fn remove_if_unheld(run_dir: &Path, pin_dir: &Path, host: &str) {
    if lock_path(run_dir, pin_dir, host).exists() {
        drop(AgentLock::acquire(run_dir, pin_dir, host));
    }
}

/// Reads the report of the agent of `pin_dir`, if one is running (its lock
/// is held).
pub fn read_report(run_dir: &Path, pin_dir: &Path, host: &str) -> Option<AgentReport> {
    let bytes = fs::read(report_path(run_dir, pin_dir, host)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_host_and_pin_root() {
        let a = key(Path::new("/sys/fs/bpf/netfabric/h1"), "h1");
        assert_eq!(a, key(Path::new("/sys/fs/bpf/netfabric/h1"), "h1"));
        assert_ne!(a, key(Path::new("/sys/fs/bpf/netfabric/h2"), "h1"));
        assert_ne!(a, key(Path::new("/mnt/bpf/netfabric/h1"), "h1"));
        assert!(a.starts_with("h1-"));
    }

    #[test]
    fn a_second_lock_names_the_holder_and_the_lock_goes_with_it() {
        let run = tempfile::tempdir().unwrap();
        let pins = Path::new("/nonexistent/pins/hx");
        let first = AgentLock::acquire(run.path(), pins, "hx").unwrap();
        let err = AgentLock::acquire(run.path(), pins, "hx").unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        let path = lock_path(run.path(), pins, "hx");
        let mode = fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Held: left alone.
        remove_if_unheld(run.path(), pins, "hx");
        assert!(path.exists());
        drop(first);
        assert!(!path.exists());
        let _again = AgentLock::acquire(run.path(), pins, "hx").unwrap();
    }

    #[test]
    fn a_lock_left_by_a_killed_holder_is_removed() {
        let run = tempfile::tempdir().unwrap();
        let pins = Path::new("/nonexistent/pins/hy");
        let path = lock_path(run.path(), pins, "hy");
        fs::write(&path, "4242\n").unwrap();
        fs::write(report_path(run.path(), pins, "hy"), "{}").unwrap();
        remove_if_unheld(run.path(), pins, "hy");
        assert!(!path.exists());
        assert!(!report_path(run.path(), pins, "hy").exists());
    }
}
