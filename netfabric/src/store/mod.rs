//! Where the desired state lives (docs/store-and-agent.md#stores), behind the [`Store`] trait so
//! that the agent and the CLI do not care which store it is.
//!
//! * [`FileStore`]: the embedded default, one JSON file on one machine
//!   (`/var/lib/netfabric/state.json`), crash-safe by atomic replace.
//! * [`EtcdStore`]: the cluster store (`etcd://host:port[,host:port...]`),
//!   one key per object under a prefix, `update` as one etcd transaction
//!   guarded by the prefix's revision, `watch` from an etcd watch (see
//!   [`etcd`] for the key layout).
//!
//! Every committed state has a revision that only grows (unless someone
//! restores a backup of the file). A store validates the whole new state
//! before committing it, and a refused change leaves it exactly as it was;
//! what someone wrote behind its back (a file edited by hand, a key put
//! with etcdctl) is validated again by every reader: the watch reports an
//! invalid state as an error and the agent keeps its last valid one.

pub mod etcd;
mod file;
mod health;
pub mod health_board;

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

pub use etcd::EtcdStore;
pub use file::{DEFAULT_STATE_DIR, FileStore, STATE_FILE_NAME};
pub use health::StoreHealth;

use crate::state::{Changes, State, StateError};

/// Revision of a committed state: 0 for the initial (never written) state,
/// then +1 on every commit that changed something.
pub type Revision = u64;

/// A committed state and its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub state: State,
    pub revision: Revision,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The change was refused (bad input); nothing was applied.
    #[error(transparent)]
    Rejected(Box<StateError>),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state file {path} is not valid: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the state file {path} has format {found}; this netfabric reads format {expected}")]
    Format {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("the stored state is invalid (fix or restore {path}): {source}")]
    InvalidStored {
        path: PathBuf,
        #[source]
        source: Box<StateError>,
    },
    /// The store's directory or lock could be changed by someone else
    /// than its owner: nothing is read from or written to it.
    #[error(
        "refusing the store at {path}: {reason} (the store directory must be owned by root \
         (or the user running netfabric) and writable by nobody else: chmod 700 it)"
    )]
    Insecure { path: PathBuf, reason: String },
    #[error(
        "timed out after {waited:?} waiting for the lock {path} (another netfabric is writing?)"
    )]
    LockTimeout { path: PathBuf, waited: Duration },
    #[error(
        "the state changed under the lock (revision {expected} became {found}); gave up after retries"
    )]
    Conflict { expected: Revision, found: Revision },
    #[error("invalid store URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The store could not be reached (or did not answer in time).
    #[error("{action} {url}: the store is unreachable: {reason}")]
    Unavailable {
        url: String,
        action: &'static str,
        reason: String,
    },
    /// The store answered but refused the request (permissions, a
    /// transaction too large for etcd's `--max-txn-ops`, ...).
    #[error("{action} {url}: the store refused: {reason}")]
    Refused {
        url: String,
        action: &'static str,
        reason: String,
    },
    /// A key of the store holds something this netfabric cannot read.
    #[error("the store {url} holds a bad key {key:?}: {reason}")]
    BadStored {
        url: String,
        key: String,
        reason: String,
    },
}

impl From<StateError> for StoreError {
    fn from(e: StateError) -> Self {
        StoreError::Rejected(Box::new(e))
    }
}

impl StoreError {
    /// The validation error, when the error is a refused change (bad input)
    /// rather than a failure of the store.
    pub fn rejection(&self) -> Option<&StateError> {
        match self {
            StoreError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

/// A change to the state, as given to [`Store::update`].
pub type Change<'a> = dyn FnMut(&mut State) -> Result<(), StateError> + 'a;

/// A store of the desired state.
///
/// The trait is object-safe, so callers hold a `Box<dyn Store>` picked from
/// a URL by [`open`]. Use [`StoreExt::apply`] for changes that return a
/// value.
pub trait Store: Send + Sync + fmt::Debug {
    /// Where the store is, for messages (e.g. `file:///var/lib/netfabric/state.json`).
    fn url(&self) -> String;

    /// The current state and its revision. A store that was never written
    /// holds [`State::default`] at revision 0.
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Reads the current state, applies `change` to a copy, validates the
    /// whole result and commits it as the next revision. If `change` or the
    /// validation fails nothing is applied. If `change` leaves the state as
    /// it was, nothing is written and the current revision is returned.
    ///
    /// Changes are serialised: a concurrent `update` sees the result of this
    /// one. `change` may be called more than once (a store built on
    /// compare-and-swap retries it on a conflicting revision), so it must
    /// depend only on the state it is given.
    fn update(&self, change: &mut Change<'_>) -> Result<Revision, StoreError>;

    /// A feed of committed states: every state with a revision greater
    /// than `from`, whole or as the changes since the one before ([`Update`];
    /// intermediate revisions may be skipped: a watcher always gets the
    /// latest state, never a stale one). `watch(0)` delivers the
    /// current state first (if it was ever written). A state that does not
    /// validate is sent as an `Err` and never delivered. The file store
    /// also delivers a state whose revision went back (a restored backup)
    /// when its content differs from the last one delivered.
    fn watch(&self, from: Revision) -> Result<Watch, StoreError>;
}

/// Convenience on top of [`Store`].
pub trait StoreExt: Store {
    /// [`Store::update`] with a change that returns a value, e.g. the
    /// address `create_container` picked.
    fn apply<T>(
        &self,
        mut change: impl FnMut(&mut State) -> Result<T, StateError>,
    ) -> Result<(T, Revision), StoreError> {
        let mut out = None;
        let revision = self.update(&mut |state| {
            out = Some(change(state)?);
            Ok(())
        })?;
        let value = out.expect("a successful update ran the change");
        Ok((value, revision))
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// What a watch delivers: a whole state, or what changed since the state
/// it delivered before (etcd: the objects of one watch response). A feed
/// starts with a whole state, and sends one again after anything that
/// breaks the chain (a resync, an invalid state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    Whole(Snapshot),
    Changed {
        revision: Revision,
        changes: Changes,
    },
}

impl Update {
    pub fn revision(&self) -> Revision {
        match self {
            Update::Whole(s) => s.revision,
            Update::Changed { revision, .. } => *revision,
        }
    }
}

/// One item of a feed.
pub type FeedItem = Result<Update, StoreError>;

/// A change feed: committed states in revision order, from a background
/// thread that stops when the `Watch` is dropped. Read it either as
/// snapshots ([`Watch::recv`] and friends: each a whole state, built here
/// from the changes) or as updates ([`Watch::recv_updates_timeout`]: the
/// changes themselves, what an agent at zone scale needs); not both.
pub struct Watch {
    rx: mpsc::Receiver<FeedItem>,
    /// An item taken from `rx` but not returned yet (the error after a run
    /// of updates merged into one).
    held: Mutex<Option<FeedItem>>,
    /// The state delivered last to a snapshot reader, which the next
    /// changes apply to.
    current: Mutex<Option<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    health: Arc<StoreHealth>,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Watch {
    /// Builds a feed from a producer thread body. The body gets the sender
    /// and a stop flag and should return soon after the flag is set or the
    /// send fails (the watcher is gone).
    pub fn spawn(
        name: &str,
        body: impl FnOnce(mpsc::Sender<FeedItem>, Arc<AtomicBool>) + Send + 'static,
    ) -> std::io::Result<Watch> {
        Self::spawn_with_health(name, Arc::new(StoreHealth::default()), body)
    }

    /// [`Watch::spawn`] with the [`StoreHealth`] the body keeps up to date.
    pub fn spawn_with_health(
        name: &str,
        health: Arc<StoreHealth>,
        body: impl FnOnce(mpsc::Sender<FeedItem>, Arc<AtomicBool>) + Send + 'static,
    ) -> std::io::Result<Watch> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || body(tx, flag))?;
        Ok(Watch {
            rx,
            held: Mutex::new(None),
            current: Mutex::new(None),
            stop,
            thread: Some(thread),
            health,
        })
    }

    /// Whether the store behind this feed is reachable (shared; stays
    /// valid after the `Watch` is dropped).
    pub fn health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }

    fn take_held(&self) -> Option<FeedItem> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn next_item(&self, timeout: Option<Duration>) -> Option<FeedItem> {
        self.take_held().or_else(|| match timeout {
            Some(t) => self.rx.recv_timeout(t).ok(),
            None => self.rx.recv().ok(),
        })
    }

    /// The snapshot an update makes of the state delivered before.
    fn snapshot(&self, item: FeedItem) -> Result<Snapshot, StoreError> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match item? {
            Update::Whole(s) => {
                *current = Some(s.state.clone());
                Ok(s)
            }
            Update::Changed { revision, changes } => {
                let state = current.as_mut().expect("a feed starts with a whole state");
                state.apply_changes(&changes);
                Ok(Snapshot {
                    state: state.clone(),
                    revision,
                })
            }
        }
    }

    /// Waits for the next snapshot (or error). `None` when the feed ended.
    pub fn recv(&self) -> Option<Result<Snapshot, StoreError>> {
        self.next_item(None).map(|i| self.snapshot(i))
    }

    /// Waits at most `timeout`; `None` on timeout or when the feed ended.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Result<Snapshot, StoreError>> {
        self.next_item(Some(timeout)).map(|i| self.snapshot(i))
    }

    /// The next snapshot if one is waiting.
    pub fn try_recv(&self) -> Option<Result<Snapshot, StoreError>> {
        self.take_held()
            .or_else(|| self.rx.try_recv().ok())
            .map(|i| self.snapshot(i))
    }

    /// The next update, merged with those already waiting behind it: a
    /// consumer slower than the changes (an agent during a burst) handles
    /// one update per round, and the feed does not pile up. A whole state
    /// supersedes what came before it; changes after a whole state are
    /// applied to it; consecutive changes merge. An error is never merged
    /// over: it ends the run and is returned by the next call. `None` on
    /// timeout or when the feed ended.
    pub fn recv_updates_timeout(&self, timeout: Duration) -> Option<FeedItem> {
        let mut merged = match self.next_item(Some(timeout))? {
            Ok(u) => u,
            Err(e) => return Some(Err(e)),
        };
        while let Ok(item) = self.rx.try_recv() {
            merged = match (merged, item) {
                (_, Ok(Update::Whole(s))) => Update::Whole(s),
                (Update::Whole(mut s), Ok(Update::Changed { revision, changes })) => {
                    s.state.apply_changes(&changes);
                    s.revision = revision;
                    Update::Whole(s)
                }
                (
                    Update::Changed { mut changes, .. },
                    Ok(Update::Changed {
                        revision,
                        changes: later,
                    }),
                ) => {
                    changes.merge(later);
                    Update::Changed { revision, changes }
                }
                (merged, Err(e)) => {
                    *self
                        .held
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Err(e));
                    return Some(Ok(merged));
                }
            };
        }
        Some(Ok(merged))
    }
}

impl Iterator for Watch {
    type Item = Result<Snapshot, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.recv()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens the store named by `url`:
///
/// * `file:///path/to/state.json`, or `file:///path/to/dir/` (a trailing `/`
///   means "the directory", the file is `state.json` in it);
/// * a plain path is taken as `file://` too;
/// * `etcd://[user:pass@]host:port[,host:port...][/prefix][?ca=..&cert=..&key=..]`
///   or `etcds://...` (TLS): the cluster store, see [`EtcdStore`].
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    let bad = |reason: &str| StoreError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(rest) = url.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(bad(
                "a file URL needs an absolute path: file:///var/lib/netfabric/state.json",
            ));
        }
        return Ok(Box::new(FileStore::from_path(rest)));
    }
    if url.starts_with("etcd://") || url.starts_with("etcds://") {
        return Ok(Box::new(EtcdStore::open(url)?));
    }
    if url.contains("://") {
        return Err(bad(
            "unknown scheme (expected file://, etcd:// or etcds://)",
        ));
    }
    if url.is_empty() {
        return Err(bad("empty"));
    }
    Ok(Box::new(FileStore::from_path(url)))
}

/// The default store: `file:///var/lib/netfabric/state.json`.
pub fn default_url() -> String {
    format!(
        "file://{}",
        Path::new(DEFAULT_STATE_DIR).join(STATE_FILE_NAME).display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Container, Object, ObjectId};

    fn snap(revision: Revision) -> FeedItem {
        Ok(Update::Whole(Snapshot {
            state: State::default(),
            revision,
        }))
    }

    /// A change that adds (or replaces) container `name`.
    fn changed(revision: Revision, name: &str) -> FeedItem {
        let mut changes = Changes::default();
        let c = Container {
            name: name.into(),
            owner: "system".into(),
            host: "h".into(),
            address: std::net::Ipv4Addr::new(10, 1, 1, 1),
        };
        changes.record(
            ObjectId::Container(name.into()),
            None,
            Some(Object::Container(c)),
        );
        Ok(Update::Changed { revision, changes })
    }

    fn gone() -> FeedItem {
        Err(StoreError::Unavailable {
            url: "test".into(),
            action: "watching",
            reason: "gone".into(),
        })
    }

    fn feed(items: Vec<FeedItem>) -> Watch {
        let (sent_tx, sent_rx) = mpsc::channel();
        let watch = Watch::spawn("test-watch", move |tx, _stop| {
            for item in items {
                tx.send(item).unwrap();
            }
            sent_tx.send(()).unwrap();
        })
        .unwrap();
        sent_rx.recv().unwrap();
        watch
    }

    /// The revision and container names of an update.
    fn seen(item: Option<FeedItem>) -> Result<(Revision, Vec<String>), String> {
        match item.expect("an item") {
            Ok(Update::Whole(s)) => Ok((
                s.revision,
                s.state.containers.iter().map(|c| c.name.clone()).collect(),
            )),
            Ok(Update::Changed { revision, changes }) => Ok((
                revision,
                changes
                    .iter()
                    .filter_map(|c| match &c.after {
                        Some(Object::Container(c)) => Some(format!("+{}", c.name)),
                        _ => None,
                    })
                    .collect(),
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn updates_merge_up_to_an_error_and_a_whole_state_supersedes() {
        let watch = feed(vec![
            snap(1),
            changed(2, "a"),
            changed(3, "b"),
            gone(),
            changed(4, "c"),
            changed(5, "d"),
            snap(6),
            changed(7, "e"),
        ]);
        let wait = Duration::from_secs(5);
        // The whole state with both changes applied.
        assert_eq!(
            seen(watch.recv_updates_timeout(wait)),
            Ok((3, vec!["a".into(), "b".into()]))
        );
        assert!(seen(watch.recv_updates_timeout(wait)).is_err_and(|e| e.contains("gone")));
        // Changes 4 and 5 merged, then superseded by the whole state 6.
        assert_eq!(
            seen(watch.recv_updates_timeout(wait)),
            Ok((7, vec!["e".into()]))
        );
        assert!(
            watch
                .recv_updates_timeout(Duration::from_millis(50))
                .is_none()
        );
    }

    #[test]
    fn snapshot_readers_get_whole_states_built_from_the_changes() {
        let watch = feed(vec![snap(1), changed(2, "a"), gone(), changed(3, "b")]);
        let names = |s: Snapshot| {
            (
                s.revision,
                s.state
                    .containers
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>(),
            )
        };
        let wait = Duration::from_secs(5);
        assert_eq!(
            names(watch.recv_timeout(wait).unwrap().unwrap()),
            (1, vec![])
        );
        assert_eq!(
            names(watch.recv_timeout(wait).unwrap().unwrap()),
            (2, vec!["a".to_owned()])
        );
        assert!(watch.recv_timeout(wait).unwrap().is_err());
        assert_eq!(
            names(watch.recv_timeout(wait).unwrap().unwrap()),
            (3, vec!["a".to_owned(), "b".to_owned()])
        );
    }
}
