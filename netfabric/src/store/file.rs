//! The embedded store: one JSON file.
//!
//! ## Layout
//! `<dir>/state.json` holds
//! `{"format": 1, "revision": N, "state": {zones, hosts, owners, groups, containers, next_owner_id}}`;
//! `<dir>/state.json.lock` is the lock file (never removed);
//! `<dir>/.state.json.tmp` is the next version while it is being written.
//!
//! ## Who may touch it
//! The state says who may talk to whom, so only its owner (root) may read
//! or change it: the directory is created 0700 and the state, lock and temp
//! files 0600, whatever the umask. A directory that someone else could write
//! (group/other-writable, or owned by another user) is refused for reading
//! and writing: whoever can rename files in it could swap the state or plant
//! a symlink. The temp file is created with `O_EXCL|O_NOFOLLOW` after
//! removing any stale one, so a planted symlink is never followed.
//!
//! ## Crash safety
//! A commit writes the whole new file to the temp file, `fsync`s it, renames
//! it over `state.json` (atomic on POSIX file systems) and `fsync`s the
//! directory so the rename itself is durable. A writer killed at any point
//! leaves either the old file or the new one, never a mix; a stale temp file
//! is simply overwritten by the next commit. Readers need no lock: they open
//! whichever complete file the name points to.
//!
//! ## Concurrency
//! Writers take an exclusive `flock` on the lock file for the whole
//! read-modify-write, so two concurrent `container create` never pick the
//! same address. Under the lock the writer also checks, just before the
//! rename, that the revision on disk is still the one it read (a writer that
//! bypassed the lock would be caught and the update retried).
//!
//! ## Change feed
//! [`FileStore::watch`] polls the file's identity (inode, size, mtime) every
//! [`FileStore::poll_interval`] and reads it when it changed; every commit
//! renames a new inode into place, so no commit goes unnoticed. A state is
//! delivered when its content differs from the last one delivered, whatever
//! its revision: a restored backup (a revision at or below one already seen)
//! is delivered too, with a warning, and so are the commits after it. A
//! state that does not validate is reported as `Err(InvalidStored)` and not
//! delivered: the agent keeps the last valid one.

use std::{
    fs::{self, File, OpenOptions, Permissions},
    io::{self, Read, Write},
    os::{
        fd::AsRawFd,
        unix::fs::{DirBuilderExt as _, MetadataExt, OpenOptionsExt as _, PermissionsExt as _},
    },
    path::{Path, PathBuf},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::{Change, Revision, Snapshot, Store, StoreError, Update, Watch};
use crate::state::State;

/// Default directory of the embedded store.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netfabric";
/// Name of the state file in its directory.
pub const STATE_FILE_NAME: &str = "state.json";
/// Format of the state file this code reads and writes.
pub const FORMAT: u32 = 1;

/// Mode of the store directory.
const DIR_MODE: u32 = 0o700;
/// Mode of the state, lock and temp files.
const FILE_MODE: u32 = 0o600;

const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
const CONFLICT_RETRIES: usize = 3;

/// The state file, as stored.
#[derive(Serialize)]
struct FileOut<'a> {
    format: u32,
    revision: Revision,
    state: &'a State,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    format: u32,
    revision: Revision,
    state: State,
}

/// The embedded store: a JSON file replaced atomically on every commit.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    poll_interval: Duration,
}

impl FileStore {
    /// The store whose state file is `path`. A path ending in `/`, or an
    /// existing directory, means `<path>/state.json`.
    pub fn from_path(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        let is_dir = path.as_os_str().to_string_lossy().ends_with('/') || path.is_dir();
        let path = if is_dir {
            path.join(STATE_FILE_NAME)
        } else {
            path.to_owned()
        };
        FileStore {
            path,
            poll_interval: Duration::from_millis(100),
        }
    }

    /// The store in directory `dir` (`<dir>/state.json`).
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        Self::from_path(dir.as_ref().join(STATE_FILE_NAME))
    }

    /// How often [`watch`](Store::watch) looks for a new revision.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    fn sibling(&self, name: &str) -> PathBuf {
        let file = self
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| STATE_FILE_NAME.to_owned());
        self.dir().join(name.replace("{}", &file))
    }

    /// The lock file writers `flock`.
    pub fn lock_path(&self) -> PathBuf {
        self.sibling("{}.lock")
    }

    fn temp_path(&self) -> PathBuf {
        self.sibling(".{}.tmp")
    }

    fn io(&self, action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_owned();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    }

    fn insecure(&self, path: &Path, reason: String) -> StoreError {
        StoreError::Insecure {
            path: path.to_owned(),
            reason,
        }
    }

    /// Refuses a store directory that anyone but its owner could change, or
    /// whose owner is neither root nor this process's user. A missing
    /// directory is fine (nothing to read yet; writers create it).
    fn check_dir(&self) -> Result<(), StoreError> {
        let dir = self.dir();
        let meta = match fs::metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io("reading the metadata of", &dir)(e)),
        };
        self.check_owner_and_mode(&dir, &meta)
    }

    fn check_owner_and_mode(&self, path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
        self.check_owner(path, meta)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(self.insecure(
                path,
                format!("its mode {mode:04o} lets other users write to it"),
            ));
        }
        Ok(())
    }

    fn check_owner(&self, path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid && meta.uid() != 0 {
            return Err(self.insecure(
                path,
                format!(
                    "it is owned by uid {}, not by root or uid {euid}",
                    meta.uid()
                ),
            ));
        }
        Ok(())
    }

    /// Creates the store directory (0700 whatever the umask) if it is
    /// missing, then checks it.
    fn ensure_dir(&self) -> Result<(), StoreError> {
        let dir = self.dir();
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&dir)
                .map_err(self.io("creating the store directory", &dir))?;
            // The umask may have taken bits away from DIR_MODE: set it
            // exactly (root-only, and still usable by its owner).
            fs::set_permissions(&dir, Permissions::from_mode(DIR_MODE))
                .map_err(self.io("setting the mode of", &dir))?;
        }
        self.check_dir()
    }

    /// Reads the state file; a missing file is the initial state, revision 0.
    fn read(&self) -> Result<Snapshot, StoreError> {
        self.check_dir()?;
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Snapshot {
                    state: State::default(),
                    revision: 0,
                });
            }
            Err(e) => return Err(self.io("reading", &self.path)(e)),
        };
        self.parse(&bytes)
    }

    fn parse(&self, bytes: &[u8]) -> Result<Snapshot, StoreError> {
        // Check the format first, so a newer file gets a clear message
        // rather than "unknown field".
        #[derive(Deserialize)]
        struct Header {
            format: u32,
        }
        let corrupt = |source| StoreError::Corrupt {
            path: self.path.clone(),
            source,
        };
        let header: Header = serde_json::from_slice(bytes).map_err(corrupt)?;
        if header.format != FORMAT {
            return Err(StoreError::Format {
                path: self.path.clone(),
                found: header.format,
                expected: FORMAT,
            });
        }
        let file: FileIn = serde_json::from_slice(bytes).map_err(corrupt)?;
        debug_assert_eq!(file.format, FORMAT);
        Ok(Snapshot {
            state: file.state,
            revision: file.revision,
        })
    }

    /// The revision of the state file without parsing all of it: the file
    /// starts with `{"format": .., "revision": N,` as this code writes it;
    /// any other layout falls back to a full read.
    fn peek_revision(&self) -> Result<Revision, StoreError> {
        let mut head = [0u8; 128];
        let n = match File::open(&self.path) {
            Ok(mut file) => {
                let mut n = 0;
                while n < head.len() {
                    match file.read(&mut head[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(self.io("reading", &self.path)(e)),
                    }
                }
                n
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io("reading", &self.path)(e)),
        };
        let head = &head[..n];
        const KEY: &[u8] = b"\"revision\":";
        let parsed = head
            .windows(KEY.len())
            .position(|w| w == KEY)
            .and_then(|at| {
                let rest = &head[at + KEY.len()..];
                let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                let terminated = rest
                    .get(digits)
                    .is_some_and(|b| *b == b',' || b.is_ascii_whitespace());
                (digits > 0 && terminated)
                    .then(|| std::str::from_utf8(&rest[..digits]).ok()?.parse().ok())
                    .flatten()
            });
        match parsed {
            Some(revision) => Ok(revision),
            None => Ok(self.read()?.revision),
        }
    }

    /// Takes the writers' lock, waiting at most [`LOCK_TIMEOUT`].
    fn lock(&self) -> Result<File, StoreError> {
        self.ensure_dir()?;
        let path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(self.io("opening the lock file", &path))?;
        // A lock file someone else owns or may open would let them hold the
        // lock and block every write: root-only, whatever the umask (and
        // whatever mode an older netfabric left it with).
        let meta = file
            .metadata()
            .map_err(self.io("reading the metadata of", &path))?;
        self.check_owner(&path, &meta)?;
        if meta.mode() & 0o777 != FILE_MODE {
            file.set_permissions(Permissions::from_mode(FILE_MODE))
                .map_err(self.io("setting the mode of", &path))?;
        }
        let start = Instant::now();
        let mut backoff = Duration::from_millis(1);
        loop {
            // SAFETY: flock on a file descriptor we own; no memory involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(file);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {}
                _ => return Err(self.io("locking", &path)(err)),
            }
            if start.elapsed() >= LOCK_TIMEOUT {
                return Err(StoreError::LockTimeout {
                    path,
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(20));
        }
        // The lock is released when the returned file is closed (or the
        // process dies).
    }

    /// Writes `state` as `revision`: temp file, fsync, rename, fsync dir.
    fn commit(&self, state: &State, revision: Revision) -> Result<(), StoreError> {
        let mut bytes = serde_json::to_vec_pretty(&FileOut {
            format: FORMAT,
            revision,
            state,
        })
        .map_err(|source| StoreError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        bytes.push(b'\n');
        let temp = self.temp_path();
        // A stale temp file (a writer killed mid-commit) or anything planted
        // there goes first; removing a symlink never touches its target.
        match fs::remove_file(&temp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io("removing the stale", &temp)(e)),
        }
        {
            // O_EXCL: a file (or symlink) that appeared since is an error,
            // never opened; O_NOFOLLOW for good measure.
            let mut file = OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(FILE_MODE)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&temp)
                .map_err(self.io("creating", &temp))?;
            file.set_permissions(Permissions::from_mode(FILE_MODE))
                .map_err(self.io("setting the mode of", &temp))?;
            file.write_all(&bytes).map_err(self.io("writing", &temp))?;
            file.sync_all().map_err(self.io("syncing", &temp))?;
        }
        fs::rename(&temp, &self.path).map_err(self.io("renaming into place", &self.path))?;
        let dir = self.dir();
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io("syncing the directory", &dir))?;
        Ok(())
    }
}

impl Store for FileStore {
    fn url(&self) -> String {
        let abs = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        format!("file://{}", abs.display())
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        self.read()
    }

    fn update(&self, change: &mut Change<'_>) -> Result<Revision, StoreError> {
        let _lock = self.lock()?;
        let mut conflict = (0, 0);
        for _ in 0..CONFLICT_RETRIES {
            let current = self.read()?;
            let mut next = current.state.clone();
            change(&mut next)?;
            if next == current.state {
                return Ok(current.revision);
            }
            // Validate before sorting: new objects are last, so a duplicate
            // is reported on the new object rather than on the old one.
            if let Err(e) = next.validate() {
                // A state file broken by hand is the store's problem, not
                // the change's: say so.
                if let Err(source) = current.state.validate() {
                    return Err(StoreError::InvalidStored {
                        path: self.path.clone(),
                        source: Box::new(source),
                    });
                }
                return Err(e.into());
            }
            next.normalize();
            // Compare: nobody may have written since we read (all writers
            // hold the lock; this catches one that did not).
            let now = self.peek_revision()?;
            if now != current.revision {
                tracing::warn!(
                    expected = current.revision,
                    found = now,
                    path = %self.path.display(),
                    "state file changed under the lock; retrying"
                );
                conflict = (current.revision, now);
                continue;
            }
            let revision = current.revision + 1;
            self.commit(&next, revision)?;
            tracing::debug!(revision, path = %self.path.display(), "committed");
            return Ok(revision);
        }
        Err(StoreError::Conflict {
            expected: conflict.0,
            found: conflict.1,
        })
    }

    fn watch(&self, from: Revision) -> Result<Watch, StoreError> {
        let store = self.clone();
        Watch::spawn("netfabric-store-watch", move |tx, stop| {
            let mut feed = Feed::new(from);
            let mut last_identity = None;
            while !stop.load(Ordering::Relaxed) {
                let identity = fs::metadata(&store.path)
                    .ok()
                    .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
                if identity.is_some() && identity != last_identity {
                    last_identity = identity;
                    let read = store.read().and_then(|snapshot| {
                        snapshot
                            .state
                            .validate()
                            .map_err(|source| StoreError::InvalidStored {
                                path: store.path.clone(),
                                source: Box::new(source),
                            })?;
                        Ok(snapshot)
                    });
                    if let Some(item) = feed.next(read, &store.path)
                        && tx.send(item.map(Update::Whole)).is_err()
                    {
                        return;
                    }
                }
                std::thread::sleep(store.poll_interval);
            }
        })
        .map_err(self.io("starting the watch thread for", &self.path))
    }
}

/// What the file watch has delivered, to decide what to send next.
struct Feed {
    /// Revision of the last state delivered (or the watch's `from`).
    revision: Revision,
    /// The last state delivered (`None` before the first).
    state: Option<State>,
    /// The last read failed (or did not validate): the next good state is
    /// delivered even if it equals the last one delivered, so that the
    /// watcher learns the store is good again.
    failed: bool,
}

impl Feed {
    fn new(from: Revision) -> Self {
        Feed {
            revision: from,
            state: None,
            failed: false,
        }
    }

    /// The item to send for a read of the file, if any.
    fn next(
        &mut self,
        read: Result<Snapshot, StoreError>,
        path: &Path,
    ) -> Option<Result<Snapshot, StoreError>> {
        let snapshot = match read {
            Ok(s) => s,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let deliver = match &self.state {
            // First read: the watcher already has `from` and older.
            None => snapshot.revision > self.revision,
            Some(last) => {
                self.failed || snapshot.revision > self.revision || *last != snapshot.state
            }
        };
        if !deliver {
            // Remembered even when not delivered, so that a later restore
            // is told apart by its content.
            self.state.get_or_insert(snapshot.state);
            return None;
        }
        if self.state.is_some() && snapshot.revision <= self.revision && !self.failed {
            tracing::warn!(
                path = %path.display(),
                revision = snapshot.revision,
                previous = self.revision,
                "the state file went back to an older revision with other content \
                 (a restored backup?); applying it"
            );
        }
        self.failed = false;
        self.revision = snapshot.revision;
        self.state = Some(snapshot.state.clone());
        Some(Ok(snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_revision_reads_the_header_or_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::in_dir(dir.path());
        assert_eq!(store.peek_revision().unwrap(), 0);
        store.commit(&State::default(), 41).unwrap();
        assert_eq!(store.peek_revision().unwrap(), 41);
        // Another layout (hand-written, compact, keys reordered).
        let state = serde_json::to_string(&State::default()).unwrap();
        fs::write(
            store.path(),
            format!("{{\"state\":{state},\"format\":1,\"revision\":1234567}}"),
        )
        .unwrap();
        assert_eq!(store.peek_revision().unwrap(), 1234567);
        assert_eq!(store.load().unwrap().revision, 1234567);
    }

    #[test]
    fn a_newer_format_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::in_dir(dir.path());
        fs::write(store.path(), r#"{"format": 2, "revision": 1, "state": {}}"#).unwrap();
        let err = store.load().unwrap_err();
        assert!(matches!(err, StoreError::Format { found: 2, .. }), "{err}");
    }
}
