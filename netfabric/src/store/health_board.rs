//! The health board (docs/health-checks.md): where every agent publishes
//! its host's [`HealthReport`] and every agent reads all of them, beside
//! the desired state and never inside it (reports change every few
//! seconds; the state's revision, its writers' guard and every agent's
//! plan must not move with them).
//!
//! * [`FileHealthBoard`] (file store): `<state dir>/health/<host>.json`,
//!   each replaced atomically (temp file + rename), read by polling the
//!   directory. A report older than [`REPORT_TTL`] (by its `at_ms`: every
//!   reader is on the same machine) counts as absent: its agent is gone.
//! * [`EtcdHealthBoard`](super::etcd::EtcdHealthBoard) (etcd store):
//!   `<prefix without its last />.health/<host>` (`/netfabric.health/h1`
//!   for the default prefix), written under a lease of [`REPORT_TTL`] that
//!   every publication renews: a dead agent's report expires with its
//!   lease, and the watch sees it go.
//!
//! Semantics for readers ([`crate::health::HealthView::is_healthy`]): a
//! backend with no current report is healthy; a report says up or down per
//! target.

use std::{
    collections::BTreeMap,
    fmt, fs, io,
    os::unix::fs::{
        DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::StoreError;
use crate::{
    health::{HealthReport, HealthView, REPORT_TTL},
    state::{StateError, is_valid_name},
};

/// Where the agents publish and read health reports.
pub trait HealthBoard: Send + Sync + fmt::Debug {
    /// Publishes (replaces) `report` as its host's; renews its lifetime.
    fn publish(&self, report: &HealthReport) -> Result<(), StoreError>;

    /// Removes `host`'s report (an agent leaving on purpose).
    fn withdraw(&self, host: &str) -> Result<(), StoreError>;

    /// A feed of every host's current reports: the whole view first, then
    /// again each time a report appears, changes or goes (expired included).
    fn watch(&self) -> Result<BoardWatch, StoreError>;
}

/// One item of a board's feed.
pub type ViewItem = Result<HealthView, StoreError>;

/// A board's feed, from a background thread that stops when this is
/// dropped.
pub struct BoardWatch {
    rx: mpsc::Receiver<ViewItem>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for BoardWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoardWatch").finish_non_exhaustive()
    }
}

impl BoardWatch {
    /// Runs `body` in a thread with the sender and a stop flag; the body
    /// returns soon after the flag is set or a send fails.
    pub fn spawn(
        name: &str,
        body: impl FnOnce(mpsc::Sender<ViewItem>, Arc<AtomicBool>) + Send + 'static,
    ) -> io::Result<BoardWatch> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || body(tx, flag))?;
        Ok(BoardWatch {
            rx,
            stop,
            thread: Some(thread),
        })
    }

    /// The next view (the latest of those waiting), or error; `None` on
    /// timeout or when the feed ended.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<ViewItem> {
        let mut item = self.rx.recv_timeout(timeout).ok()?;
        // Only the newest view matters; an error is never skipped.
        while item.is_ok() {
            match self.rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        Some(item)
    }
}

impl Drop for BoardWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The board of the store at `url` (as [`super::open`] takes it).
pub fn open(url: &str) -> Result<Box<dyn HealthBoard>, StoreError> {
    if url.starts_with("etcd://") || url.starts_with("etcds://") {
        let store = super::EtcdStore::open(url)?;
        return Ok(Box::new(super::etcd::EtcdHealthBoard::new(&store)));
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    Ok(Box::new(FileHealthBoard::for_store(
        &super::FileStore::from_path(path),
    )))
}

/// Mode of the board's directory and files: root only, as the state.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// The file store's board: one JSON file per host in `<state dir>/health/`.
#[derive(Debug, Clone)]
pub struct FileHealthBoard {
    dir: PathBuf,
    poll_interval: Duration,
    ttl: Duration,
}

impl FileHealthBoard {
    /// The board beside `store`'s state file.
    pub fn for_store(store: &super::FileStore) -> FileHealthBoard {
        let state_dir = store
            .path()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        FileHealthBoard::in_dir(state_dir.join("health"))
    }

    /// The board in `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> FileHealthBoard {
        FileHealthBoard {
            dir: dir.into(),
            poll_interval: Duration::from_millis(50),
            ttl: REPORT_TTL,
        }
    }

    /// How often the watch looks at the directory (50 ms by default).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How old a report may be before it counts as absent.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_owned();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    }

    fn report_path(&self, host: &str) -> Result<PathBuf, StoreError> {
        // The host name becomes a file name: only names the state accepts
        // (no `/`, no `..`).
        if !is_valid_name(host) {
            return Err(StateError::MalformedName {
                field: "host".into(),
                value: host.to_owned(),
            }
            .into());
        }
        Ok(self.dir.join(format!("{host}.json")))
    }

    fn ensure_dir(&self) -> Result<(), StoreError> {
        if !self.dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&self.dir)
                .map_err(self.io("creating the health board directory", &self.dir))?;
            // Exactly DIR_MODE, whatever the umask.
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(self.io("setting the mode of", &self.dir))?;
        }
        self.check_dir()
    }

    /// Refuses a board directory someone else could write to: whoever can
    /// plant a report can take any backend out of every service (the same
    /// rule as the state's directory). A missing directory is an empty
    /// board.
    fn check_dir(&self) -> Result<(), StoreError> {
        let meta = match fs::symlink_metadata(&self.dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io("reading the metadata of", &self.dir)(e)),
        };
        let insecure = |reason: String| StoreError::Insecure {
            path: self.dir.clone(),
            reason,
        };
        if !meta.is_dir() {
            return Err(insecure("it is not a directory".into()));
        }
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid && meta.uid() != 0 {
            return Err(insecure(format!(
                "it is owned by uid {}, not by root or uid {euid}",
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(insecure(format!(
                "its mode {mode:04o} lets other users write to it"
            )));
        }
        Ok(())
    }

    /// Every current report in the directory. A file that cannot be read
    /// or parsed is an error naming it (and no view is sent): a reader must
    /// not guess at what it says.
    fn read_view(&self) -> Result<HealthView, StoreError> {
        let mut view = HealthView::default();
        self.check_dir()?;
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(view),
            Err(e) => return Err(self.io("reading the health board", &self.dir)(e)),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        for entry in entries {
            let entry = entry.map_err(self.io("reading the health board", &self.dir))?;
            let path = entry.path();
            let Some(host) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|n| !n.starts_with('.'))
            else {
                continue;
            };
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                // Withdrawn between the listing and the read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("reading", &path)(e)),
            };
            let report: HealthReport =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::BadStored {
                    url: format!("file://{}", self.dir.display()),
                    key: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            if report.host != host {
                return Err(StoreError::BadStored {
                    url: format!("file://{}", self.dir.display()),
                    key: path.display().to_string(),
                    reason: format!(
                        "the file names host {host:?} but the report {:?}",
                        report.host
                    ),
                });
            }
            if now.saturating_sub(report.at_ms) > self.ttl.as_millis() as u64 {
                continue;
            }
            view.reports.insert(host.to_owned(), report);
        }
        Ok(view)
    }
}

impl HealthBoard for FileHealthBoard {
    fn publish(&self, report: &HealthReport) -> Result<(), StoreError> {
        let path = self.report_path(&report.host)?;
        self.ensure_dir()?;
        let temp = self.dir.join(format!(".{}.json.tmp", report.host));
        let bytes = serde_json::to_vec(report).expect("a report serialises");
        // No fsync: a report is worth REPORT_TTL; after a crash the next
        // one replaces whatever is left. The rename alone keeps readers
        // from seeing half a file.
        match fs::remove_file(&temp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io("removing the stale", &temp)(e)),
        }
        {
            use std::io::Write as _;
            let mut file = fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(FILE_MODE)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&temp)
                .map_err(self.io("creating", &temp))?;
            file.write_all(&bytes).map_err(self.io("writing", &temp))?;
        }
        fs::rename(&temp, &path).map_err(self.io("renaming into place", &path))
    }

    fn withdraw(&self, host: &str) -> Result<(), StoreError> {
        let path = self.report_path(host)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("removing", &path)(e)),
        }
    }

    fn watch(&self) -> Result<BoardWatch, StoreError> {
        let board = self.clone();
        BoardWatch::spawn("netfabric-health-watch", move |tx, stop| {
            // Each file's identity (inode, size, mtime): a publication
            // renames a new inode into place.
            type Identity = BTreeMap<PathBuf, (u64, u64, i64, i64)>;
            let identity = |dir: &Path| -> Identity {
                fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        let m = e.metadata().ok()?;
                        Some((e.path(), (m.ino(), m.len(), m.mtime(), m.mtime_nsec())))
                    })
                    .collect()
            };
            let mut last_identity: Option<Identity> = None;
            let mut last: Option<ViewItem> = None;
            while !stop.load(Ordering::Relaxed) {
                let now = identity(&board.dir);
                // Read when a file changed, and anyway each round while
                // some report is shown: it may have just expired.
                let shown = matches!(&last, Some(Ok(v)) if !v.reports.is_empty());
                if last_identity.as_ref() != Some(&now) || shown {
                    last_identity = Some(now);
                    let item = board.read_view();
                    let same = match (&last, &item) {
                        (Some(Ok(a)), Ok(b)) => a.reports == b.reports,
                        (Some(Err(a)), Err(b)) => a.to_string() == b.to_string(),
                        _ => false,
                    };
                    if !same {
                        let send = match &item {
                            Ok(v) => Ok(v.clone()),
                            Err(e) => Err(StoreError::BadStored {
                                url: format!("file://{}", board.dir.display()),
                                key: "health/".into(),
                                reason: e.to_string(),
                            }),
                        };
                        if tx.send(send).is_err() {
                            return;
                        }
                        last = Some(item);
                    }
                }
                std::thread::sleep(board.poll_interval);
            }
        })
        .map_err(self.io("starting the health board watch for", &self.dir))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::health::{Check, TargetHealth, now_ms};

    fn report(host: &str, up: bool) -> HealthReport {
        HealthReport {
            host: host.into(),
            at_ms: now_ms(),
            targets: vec![TargetHealth {
                backend: Ipv4Addr::new(10, 1, 1, 5),
                port: 80,
                check: Check::Tcp,
                up,
                reason: (!up).then(|| "connecting: refused".into()),
            }],
        }
    }

    fn next_view(watch: &BoardWatch) -> HealthView {
        watch
            .recv_timeout(Duration::from_secs(5))
            .expect("a view within 5 s")
            .expect("a good view")
    }

    #[test]
    fn reports_are_published_watched_withdrawn_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let board = FileHealthBoard::in_dir(dir.path().join("health"))
            .with_poll_interval(Duration::from_millis(10))
            .with_ttl(Duration::from_millis(800));
        let watch = board.watch().unwrap();
        assert!(next_view(&watch).reports.is_empty(), "an empty board first");

        board.publish(&report("h1", true)).unwrap();
        board.publish(&report("h2", false)).unwrap();
        let mut view = next_view(&watch);
        while view.reports.len() < 2 {
            view = next_view(&watch);
        }
        assert!(!view.is_healthy(Ipv4Addr::new(10, 1, 1, 5), 80));
        let meta = fs::metadata(dir.path().join("health/h2.json")).unwrap();
        assert_eq!(meta.mode() & 0o777, FILE_MODE);

        board.withdraw("h2").unwrap();
        let view = next_view(&watch);
        assert_eq!(view.reports.keys().collect::<Vec<_>>(), ["h1"]);
        assert!(view.is_healthy(Ipv4Addr::new(10, 1, 1, 5), 80));

        // h1 stops renewing: its report expires.
        let view = next_view(&watch);
        assert!(view.reports.is_empty(), "{view:?}");
    }

    #[test]
    fn a_bad_report_is_an_error_naming_its_file_and_bad_hosts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let board = FileHealthBoard::in_dir(dir.path());
        fs::write(dir.path().join("h9.json"), "{not json").unwrap();
        let e = board.read_view().unwrap_err();
        assert!(e.to_string().contains("h9.json"), "{e}");
        let e = board.publish(&report("../x", true)).unwrap_err();
        assert!(e.rejection().is_some(), "{e}");
    }

    #[test]
    fn a_board_directory_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let board = FileHealthBoard::in_dir(dir.path().join("health"));
        board.publish(&report("h1", true)).unwrap();
        let meta = fs::metadata(board.dir()).unwrap();
        assert_eq!(meta.mode() & 0o777, DIR_MODE);
        fs::set_permissions(board.dir(), fs::Permissions::from_mode(0o777)).unwrap();
        for e in [
            board.publish(&report("h1", false)).unwrap_err(),
            board.read_view().unwrap_err(),
        ] {
            assert!(matches!(e, StoreError::Insecure { .. }), "{e}");
        }
    }
}
