//! The cluster store on etcd (docs/store-and-agent.md#the-etcd-store), like Calico and flannel.
//!
//! ## Key layout
//! Under a prefix (`/netfabric/` by default, or the URL's path), one key
//! per object, its value the object as JSON (the same fields as in the
//! file store):
//!
//! | key | value |
//! |---|---|
//! | `<prefix>zones/<name>` | [`Zone`] |
//! | `<prefix>hosts/<name>` | [`Host`] |
//! | `<prefix>owners/<name>` | [`Owner`] (`owners/system` included) |
//! | `<prefix>groups/<name>` | [`Group`] |
//! | `<prefix>containers/<name>` | [`Container`] |
//! | `<prefix>security-groups/<owner>/via/<group>`, `<prefix>security-groups/<owner>/own` | [`SecurityGroup`] |
//! | `<prefix>services/<owner>/<name>` | [`Service`] |
//! | `<prefix>meta/next_owner_id` | decimal |
//! | `<prefix>meta/commit` | `{"by": "<pid>@<host>", "at_ms": N, "id": "<unique>"}`, written by every commit |
//!
//! An empty prefix is the initial state ([`State::default`], revision 0);
//! the first commit writes every key.
//!
//! ## Revisions
//! A snapshot's revision is etcd's revision of the last change under the
//! prefix (the largest `mod_revision` of its keys; `meta/commit` makes a
//! commit that only deletes keys visible too).
//!
//! ## Transactions
//! [`update`](Store::update) reads the whole prefix at one etcd revision
//! `R`, applies the change, validates the whole new state and writes only
//! the keys that changed, plus `meta/commit`, in **one** transaction whose
//! guard is `mod_revision(prefix…) < R + 1`: it commits only if no key under
//! the prefix was created or changed since `R` (and since every commit
//! writes `meta/commit`, no netfabric commit at all). Otherwise the change
//! is re-applied to a fresh read (jittered backoff, up to 30 s). Changes are
//! therefore serialisable over the whole state, which is what the validation
//! needs (a container create races with a host delete, not only with
//! another create on that host); in particular two CLIs on two machines can
//! never hand out the same address.
//!
//! A transaction holds at most etcd's `--max-txn-ops` operations (128 by
//! default; the server does not tell its limit, so its refusal is the
//! check). A change with more (keys changed + `meta/commit`) is refused
//! whole with [`StoreError::Refused`] naming the count and the flag:
//! splitting it would let readers see half a change and could not keep the
//! one-revision guard, so nothing is applied. Every CLI command writes a
//! few keys.
//!
//! ## A commit whose answer is lost
//! The transaction may have landed even though its answer never came (the
//! connection broke or timed out after the request left). Every commit
//! carries a unique id in `meta/commit`; on such a failure the store first
//! *fences* (an unguarded put of `meta/commit`: from then on the lost
//! transaction's guard can only fail, even if it is still on its way), then
//! walks back the `meta/commit` values written since the guard's revision.
//! Its id among them: the commit landed and is reported at its revision,
//! never re-applied. Not among them: it never will land, and the change is
//! retried on a fresh read. If etcd cannot be read back before the
//! deadline, the outcome is reported as unknown ([`StoreError::Unavailable`]),
//! never as done or not done.
//!
//! ## Authentication
//! A user in the URL (`etcd://user:pass@...`) gets a token when the client
//! connects; an expired token (etcd's `--auth-token-ttl`) is renewed
//! automatically. TLS client certificates come from `?ca=&cert=&key=`.
//!
//! ## Watch
//! [`watch`](Store::watch) reads the prefix at revision `R` (one snapshot),
//! then watches the prefix from `R + 1`. Every event moves the next
//! revision to watch from past it. A watch that breaks (connection lost,
//! member killed) or cannot be made is followed by a full resync: the
//! prefix is read again and a snapshot is sent only if it is newer or its
//! content differs from the mirror, so nothing is missed or seen twice. The
//! resync also catches an etcd restored from a backup, whose revisions went
//! back below the last one delivered: its state is delivered whatever its
//! revision (a watch from a revision etcd has not reached would wait
//! silently; a watch created on an etcd behind it resyncs too). If the
//! watch's revision was compacted, etcd cancels it with `compact_revision`
//! and the feed resyncs the same way. Responses that arrive together are
//! coalesced into one snapshot.
//!
//! While etcd cannot be reached the feed sends one `Err(Unavailable)`,
//! marks its [`StoreHealth`] down, and retries with backoff (100 ms to
//! 2 s); once the watch is re-established the health is up again.
//!
//! ## Threads and namespaces
//! The etcd client runs on a private single-threaded tokio runtime in a
//! thread started by [`EtcdStore::open`]; every request is a task on it. So
//! the sockets to etcd are made in the network namespace the store was
//! opened in (the agent opens it before joining a lab host's namespace).

pub mod cluster;
mod health;
mod url;

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    TlsOptions, Txn, TxnOp, WatchOptions,
};
use futures::FutureExt as _;
use serde::{Serialize, de::DeserializeOwned};

pub use cluster::LocalCluster;
pub use health::{EtcdHealthBoard, board_prefix};
pub use url::{DEFAULT_PREFIX, EtcdConfig, TlsFiles, redact};

use super::{Change, Revision, Snapshot, Store, StoreError, StoreHealth, Update, Watch};
use crate::state::{
    Changes, Container, FollowedState, Group, Host, Object, Owner, SecurityGroup, Service, State,
    Via, Zone,
};

/// Longest wait for one etcd request.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait to open a connection to one member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `update` retries conflicts.
const CONFLICT_DEADLINE: Duration = Duration::from_secs(30);
/// How long `load`/`update` retry an etcd that answers but cannot serve
/// (no leader): long enough to ride out a leader election after a member
/// dies on a loaded machine (5 s was seen to fail there).
const UNAVAILABLE_DEADLINE: Duration = Duration::from_secs(12);
/// How long `load`/`update` retry while no member has ever answered this
/// process (nothing listening, host down): a CLI run with etcd down gives up
/// after this, not after the election allowance above.
const FIRST_CONTACT_DEADLINE: Duration = Duration::from_secs(5);
/// Keys per page when reading the prefix.
const PAGE: i64 = 2000;

const NEXT_OWNER_ID: &str = "meta/next_owner_id";
const COMMIT: &str = "meta/commit";

/// The etcd store. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

struct Inner {
    cfg: EtcdConfig,
    url: String,
    handle: tokio::runtime::Handle,
    client: tokio::sync::Mutex<Option<Client>>,
    /// The prefix as this process last read or wrote it: `update` tries it
    /// first (the transaction's guard catches a stale one).
    cache: Mutex<Option<Arc<Read>>>,
    /// Some member answered a request of this process (then an unreachable
    /// etcd is more likely a leader election than etcd being down).
    answered: std::sync::atomic::AtomicBool,
    shutdown: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.lock().ok().and_then(|mut s| s.take()) {
            let _ = tx.send(());
        }
    }
}

/// The prefix read at one revision.
#[derive(Debug, Clone)]
struct Read {
    /// Key (without the prefix) → value.
    kvs: BTreeMap<String, Vec<u8>>,
    /// etcd's revision the read was made at.
    at: i64,
    /// The largest mod_revision under the prefix (0: empty).
    revision: i64,
}

/// A failed etcd request: worth retrying or not.
#[derive(Debug)]
struct EtcdFailure {
    retryable: bool,
    /// No member answered at all (connection refused or timed out, no
    /// reply): as opposed to a member that answered with an error.
    unreachable: bool,
    /// The request never left this process: no connection to the member
    /// the balancer picked could be made. A commit that failed so did not
    /// land, and repeating any request is safe.
    not_sent: bool,
    reason: String,
}

/// How many times one request is repeated at once when it was not sent
/// (the balancer picks among the members at random, so a repeat most
/// likely reaches a live one): a dead member of three then costs nothing
/// but a refused connection, not a backoff.
const NOT_SENT_REPEATS: u32 = 8;

/// Whether the error chain holds tonic's marker for a connection that
/// could not be established (refused, timed out, TLS handshake failed).
fn is_connect_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The innermost cause of an error (`Connection refused (os error 111)`),
/// which is what a person needs from a transport error's long chain.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl From<etcd_client::Error> for EtcdFailure {
    fn from(e: etcd_client::Error) -> Self {
        use etcd_client::Error as E;
        let retryable = match &e {
            E::TransportError(_) | E::IoError(_) | E::WatchError(_) => true,
            E::GRpcStatus(s) => matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::Aborted
                    | tonic::Code::Cancelled
                    | tonic::Code::Internal
            ),
            _ => false,
        };
        let unreachable = match &e {
            E::TransportError(_) | E::IoError(_) => true,
            // tonic reports a failed connection as an UNAVAILABLE status
            // carrying the transport error; a member's own refusal (no
            // leader) carries none.
            E::GRpcStatus(s) => std::error::Error::source(s).is_some(),
            _ => false,
        };
        let reason = match &e {
            E::GRpcStatus(s) if unreachable => match std::error::Error::source(s) {
                Some(cause) => format!("no answer: {}", root_cause(cause)),
                None => format!("no answer: {}", s.message()),
            },
            _ if unreachable => format!("no answer: {}", root_cause(&e)),
            _ => e.to_string(),
        };
        EtcdFailure {
            retryable,
            unreachable,
            not_sent: match &e {
                E::GRpcStatus(s) => is_connect_error(s),
                E::TransportError(t) => is_connect_error(t),
                _ => false,
            },
            reason,
        }
    }
}

impl From<tokio::time::error::Elapsed> for EtcdFailure {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        // Connections that cannot be made fail within CONNECT_TIMEOUT as
        // transport errors; a request that outlives OP_TIMEOUT went to a
        // member that took it but was slow to answer (an election on a
        // loaded machine): that gets the longer allowance.
        EtcdFailure {
            retryable: true,
            unreachable: false,
            not_sent: false,
            reason: format!("no answer within {OP_TIMEOUT:?}"),
        }
    }
}

impl EtcdStore {
    /// Opens the store named by an `etcd://` or `etcds://` URL. Does not
    /// contact etcd (unless the URL has a user, whose token is fetched):
    /// an unreachable etcd shows in the first request or watch.
    pub fn open(url: &str) -> Result<EtcdStore, StoreError> {
        let cfg = EtcdConfig::parse(url)?;
        Self::with_config(cfg)
    }

    /// Opens the store described by `cfg`.
    pub fn with_config(cfg: EtcdConfig) -> Result<EtcdStore, StoreError> {
        let url = cfg.display_url();
        let io = |source| StoreError::Io {
            action: "starting the etcd client thread for",
            path: url.clone().into(),
            source,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io)?;
        let handle = rt.handle().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("netfabric-etcd".into())
            .spawn(move || {
                ignore_sigpipe_in_this_thread();
                rt.block_on(async {
                    let _ = rx.await;
                });
            })
            .map_err(io)?;
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                cfg,
                url,
                handle,
                client: tokio::sync::Mutex::new(None),
                cache: Mutex::new(None),
                answered: std::sync::atomic::AtomicBool::new(false),
                shutdown: Mutex::new(Some(tx)),
            }),
        })
    }

    /// The configuration (endpoints, prefix, ...).
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.cfg
    }

    /// Runs `fut` on the client's runtime and waits for it.
    fn block<T: Send + 'static>(
        &self,
        action: &'static str,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.inner.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| StoreError::Unavailable {
            url: self.inner.url.clone(),
            action,
            reason: "the etcd client thread is gone".into(),
        })
    }

    fn cached(&self) -> Option<Arc<Read>> {
        self.inner.cache.lock().ok().and_then(|c| c.clone())
    }

    fn set_cache(&self, read: Option<Arc<Read>>) {
        if let Ok(mut c) = self.inner.cache.lock() {
            *c = read;
        }
    }

    /// Runs the request `call` makes, retrying an unreachable etcd (a dead
    /// member behind the balanced channel, no leader yet) for a while.
    fn retrying<T, F, Fut>(&self, action: &'static str, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, EtcdFailure>> + Send + 'static,
    {
        let since = Instant::now();
        let mut backoff = Backoff::new();
        loop {
            let result = self.block(action, call(self.inner.clone()))?;
            self.inner.note_answer(&result);
            match result {
                Ok(v) => return Ok(v),
                Err(f) => match self.inner.retry_after(&f, since, &mut backoff) {
                    Some(pause) => {
                        tracing::debug!(reason = %f.reason, "{action}: etcd request failed; retrying");
                        std::thread::sleep(pause);
                    }
                    None => return Err(self.inner.failure(action, f, since)),
                },
            }
        }
    }

    /// Finds out whether the commit `id` (guarded on revision `after`),
    /// whose transaction failed with `failed`, landed: retries an
    /// unreachable etcd until the deadline counted from `since`, then gives
    /// up with an error saying the outcome is unknown.
    fn resolve(
        &self,
        after: i64,
        id: &str,
        failed: &EtcdFailure,
        since: Instant,
        backoff: &mut Backoff,
    ) -> Result<Option<i64>, StoreError> {
        loop {
            let (inner, id) = (self.inner.clone(), id.to_owned());
            let result = self.block("checking whether a commit landed in", async move {
                inner.resolve(after, &id).await
            })?;
            self.inner.note_answer(&result);
            match result {
                Ok(landed) => return Ok(landed),
                Err(f) => match self.inner.retry_after(&f, since, backoff) {
                    Some(pause) => {
                        tracing::debug!(reason = %f.reason, "reading back a commit failed; retrying");
                        std::thread::sleep(pause);
                    }
                    None => {
                        return Err(StoreError::Unavailable {
                            url: self.inner.url.clone(),
                            action: "writing",
                            reason: format!(
                                "the commit's outcome is unknown: its request got no \
                                 answer ({}) and whether it landed could not be read back \
                                 ({}); read the state before repeating it",
                                failed.reason, f.reason
                            ),
                        });
                    }
                },
            }
        }
    }

    /// Reads the prefix, retrying an unreachable etcd for a while.
    fn read_retrying(&self, action: &'static str) -> Result<Arc<Read>, StoreError> {
        let r = Arc::new(self.retrying(action, |inner| async move { inner.read().await })?);
        self.set_cache(Some(r.clone()));
        Ok(r)
    }

    /// Deletes every key under the prefix (tests and the lab).
    pub fn wipe(&self) -> Result<(), StoreError> {
        self.set_cache(None);
        self.retrying("wiping", |inner| async move {
            let prefix = inner.cfg.prefix.clone();
            inner
                .request(|mut c| {
                    let prefix = prefix.clone();
                    async move {
                        c.delete(
                            prefix,
                            Some(etcd_client::DeleteOptions::new().with_prefix()),
                        )
                        .await
                    }
                })
                .await?;
            Ok(())
        })
    }

    /// Compacts etcd's history up to its current revision (tests: forces a
    /// watcher behind it into a full resync).
    pub fn compact(&self) -> Result<i64, StoreError> {
        self.retrying("compacting", |inner| async move {
            let rev = inner
                .request(|mut c| async move { c.get("/", None).await })
                .await?
                .header()
                .map(|h| h.revision())
                .unwrap_or(0);
            inner
                .request(|mut c| async move {
                    c.compact(
                        rev,
                        Some(etcd_client::CompactionOptions::new().with_physical()),
                    )
                    .await
                })
                .await?;
            Ok(rev)
        })
    }
}

/// Blocks SIGPIPE in the calling thread. The CLI restores SIGPIPE's default
/// action (a report piped into `head` ends quietly), and a write to a
/// connection etcd (or something in between) reset raises SIGPIPE in the
/// writing thread: it would kill the process without a word in the middle of
/// a commit. Blocked, the write fails with EPIPE like any broken connection.
/// All of the client's sockets are written from this runtime's thread.
fn ignore_sigpipe_in_this_thread() {
    // SAFETY: sigemptyset/sigaddset initialise a local set;
    // pthread_sigmask changes only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

impl Inner {
    /// Records whether a member answered (a result, or an error of its own).
    fn note_answer<T>(&self, result: &Result<T, EtcdFailure>) {
        let answered = match result {
            Ok(_) => true,
            Err(f) => !f.unreachable,
        };
        if answered {
            self.answered
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// How long to wait before retrying `f` (failing since `since`), or
    /// `None` to give up: a retry is never started past the deadline.
    fn retry_after(
        &self,
        f: &EtcdFailure,
        since: Instant,
        backoff: &mut Backoff,
    ) -> Option<Duration> {
        if !f.retryable {
            return None;
        }
        let left = self.deadline(f).checked_sub(since.elapsed())?;
        (!left.is_zero()).then(|| backoff.next().min(left))
    }

    fn deadline(&self, f: &EtcdFailure) -> Duration {
        if f.unreachable && !self.answered.load(std::sync::atomic::Ordering::Relaxed) {
            FIRST_CONTACT_DEADLINE
        } else {
            UNAVAILABLE_DEADLINE
        }
    }

    fn failure(&self, action: &'static str, f: EtcdFailure, since: Instant) -> StoreError {
        if f.retryable {
            let endpoints = self.cfg.endpoints.join(", ");
            StoreError::Unavailable {
                url: self.url.clone(),
                action,
                reason: format!(
                    "{} (tried {endpoints} for {:.1} s; is etcd running?)",
                    f.reason,
                    since.elapsed().as_secs_f64()
                ),
            }
        } else {
            StoreError::Refused {
                url: self.url.clone(),
                action,
                reason: f.reason,
            }
        }
    }

    /// Sends one request (`call` makes it on a client), within
    /// [`OP_TIMEOUT`]. A request that was not sent is repeated at once, a
    /// few times within [`CONNECT_TIMEOUT`]: the balancer most likely picks
    /// a live member next.
    async fn request<T, F, Fut>(&self, mut call: F) -> Result<T, EtcdFailure>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = Instant::now();
        let mut sent = 0;
        loop {
            let c = self.client().await?;
            let f = EtcdFailure::from(match tokio::time::timeout(OP_TIMEOUT, call(c)).await? {
                Ok(v) => return Ok(v),
                Err(e) => e,
            });
            sent += 1;
            if !f.not_sent || sent >= NOT_SENT_REPEATS || started.elapsed() >= CONNECT_TIMEOUT {
                return Err(f);
            }
            tracing::debug!(reason = %f.reason, "etcd request not sent; repeating it");
        }
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.cfg.prefix)
    }

    async fn client(&self) -> Result<Client, EtcdFailure> {
        let mut slot = self.client.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            // etcd refuses pings more often than every 5 s by default.
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_require_leader(true);
        if let Some((user, pass)) = &self.cfg.user {
            // etcd's simple tokens expire (`--auth-token-ttl`, 300 s idle):
            // a long-lived agent gets a new one instead of failing.
            opts = opts.with_user(user, pass).with_auto_token_refresh(true);
        }
        let scheme = match &self.cfg.tls {
            Some(files) => {
                opts = opts.with_tls(tls_options(files)?);
                "https"
            }
            None => "http",
        };
        let endpoints: Vec<String> = self
            .cfg
            .endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let client =
            tokio::time::timeout(OP_TIMEOUT, Client::connect(endpoints, Some(opts))).await??;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Whether the commit `id`, whose transaction was guarded on revision
    /// `after`, landed: `Some(its revision)` or `None`. First fences: an
    /// unconditional put of `meta/commit` moves the prefix past `after`, so
    /// the commit's guard fails from then on even if its request is still
    /// on its way (etcd checks guards when it applies a transaction). The
    /// commit can then only be among the `meta/commit` values written
    /// between `after` and the fence: walk them back.
    async fn resolve(&self, after: i64, id: &str) -> Result<Option<i64>, EtcdFailure> {
        let key = self.key(COMMIT);
        let fence_value = commit_value(&commit_id());
        let fence = self
            .request(|mut c| {
                let (key, value) = (key.clone(), fence_value.clone());
                async move { c.put(key, value, None).await }
            })
            .await?;
        // Without the fence's revision nothing can be concluded.
        let fenced_at = fence.header().map(|h| h.revision()).ok_or(EtcdFailure {
            retryable: false,
            unreachable: false,
            not_sent: false,
            reason: "etcd's answer to the fence carries no revision".into(),
        })?;
        let mut at = fenced_at - 1;
        while at > after {
            let resp = self
                .request(|mut c| {
                    let key = key.clone();
                    async move { c.get(key, Some(GetOptions::new().with_revision(at))).await }
                })
                .await?;
            let Some(kv) = resp.kvs().first() else {
                return Ok(None);
            };
            if kv.mod_revision() <= after {
                return Ok(None);
            }
            if commit_id_of(kv.value()).as_deref() == Some(id) {
                return Ok(Some(kv.mod_revision()));
            }
            at = kv.mod_revision() - 1;
        }
        Ok(None)
    }

    /// Reads the whole prefix at one revision (in pages).
    async fn read(&self) -> Result<Read, EtcdFailure> {
        let prefix = self.cfg.prefix.as_bytes();
        let end = prefix_end(prefix);
        let mut start = prefix.to_vec();
        let mut at = 0;
        let mut kvs = BTreeMap::new();
        let mut revision = 0;
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if at != 0 {
                opts = opts.with_revision(at);
            }
            let resp = self
                .request(|mut c| {
                    let (start, opts) = (start.clone(), opts.clone());
                    async move { c.get(start, Some(opts)).await }
                })
                .await?;
            if at == 0 {
                at = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            for kv in resp.kvs() {
                revision = revision.max(kv.mod_revision());
                let rel = String::from_utf8_lossy(&kv.key()[prefix.len()..]).into_owned();
                kvs.insert(rel, kv.value().to_vec());
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok(Read { kvs, at, revision })
    }
}

fn tls_options(files: &TlsFiles) -> Result<TlsOptions, EtcdFailure> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| EtcdFailure {
            retryable: false,
            unreachable: false,
            not_sent: true,
            reason: format!("reading {}: {e}", p.display()),
        })
    };
    let mut tls = TlsOptions::new();
    if let Some(ca) = &files.ca {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(tls)
}

/// The end of the key range `prefix…` (the prefix with its last byte +1).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Exponential backoff with jitter, 20 ms .. 2 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(20))
    }

    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
        // Jitter from the clock: enough to de-synchronise competing CLIs.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|t| t.subsec_nanos())
            .unwrap_or(0);
        d / 2 + d.mul_f64(f64::from(nanos % 1000) / 2000.0)
    }
}

// ---- Encoding: state <-> keys --------------------------------------------

/// The key (without prefix) of a security group: one per (owner, via).
fn security_group_key(sg: &SecurityGroup) -> String {
    match &sg.via {
        Via::Own => format!("security-groups/{}/own", sg.owner),
        Via::Group(g) => format!("security-groups/{}/via/{g}", sg.owner),
    }
}

/// The key (without prefix) of a service: one per (owner, name).
fn service_key(svc: &Service) -> String {
    format!("services/{}/{}", svc.owner, svc.name)
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("the state serialises")
}

/// The keys (without prefix) and values of `state`.
fn encode(state: &State) -> BTreeMap<String, Vec<u8>> {
    let mut kvs = BTreeMap::new();
    for z in &state.zones {
        kvs.insert(format!("zones/{}", z.name), json(z));
    }
    for h in &state.hosts {
        kvs.insert(format!("hosts/{}", h.name), json(h));
    }
    for o in &state.owners {
        kvs.insert(format!("owners/{}", o.name), json(o));
    }
    for g in &state.groups {
        kvs.insert(format!("groups/{}", g.name), json(g));
    }
    for c in &state.containers {
        kvs.insert(format!("containers/{}", c.name), json(c));
    }
    for sg in &state.security_groups {
        kvs.insert(security_group_key(sg), json(sg));
    }
    for svc in &state.services {
        kvs.insert(service_key(svc), json(svc));
    }
    kvs.insert(
        NEXT_OWNER_ID.to_owned(),
        state.next_owner_id.to_string().into_bytes(),
    );
    kvs
}

/// Whether a key is one [`encode`] writes (other `meta/` keys are kept as
/// they are).
fn is_object_key(rel: &str) -> bool {
    rel == NEXT_OWNER_ID
        || [
            "zones/",
            "hosts/",
            "owners/",
            "groups/",
            "containers/",
            "security-groups/",
            "services/",
        ]
        .iter()
        .any(|p| rel.starts_with(p))
}

/// Reads one key. `Ok(None)`: a key with no object (`meta/commit`, other
/// `meta/` keys).
fn decode(rel: &str, value: &[u8]) -> Result<Option<Object>, String> {
    fn named<T: DeserializeOwned>(
        value: &[u8],
        name: &str,
        of: impl Fn(&T) -> &str,
    ) -> Result<T, String> {
        let v: T = serde_json::from_slice(value).map_err(|e| e.to_string())?;
        if of(&v) != name {
            return Err(format!("the key names {name:?} but the value {:?}", of(&v)));
        }
        Ok(v)
    }
    let (kind, name) = rel.split_once('/').unwrap_or((rel, ""));
    let obj = match kind {
        "zones" => Object::Zone(named(value, name, |z: &Zone| &z.name)?),
        "hosts" => Object::Host(named(value, name, |h: &Host| &h.name)?),
        "owners" => Object::Owner(named(value, name, |o: &Owner| &o.name)?),
        "groups" => Object::Group(named(value, name, |g: &Group| &g.name)?),
        "containers" => Object::Container(named(value, name, |c: &Container| &c.name)?),
        "security-groups" => {
            let sg: SecurityGroup = serde_json::from_slice(value).map_err(|e| e.to_string())?;
            let expected = security_group_key(&sg);
            if rel != expected {
                return Err(format!(
                    "the key names {rel:?} but the value is security group {} (key {expected:?})",
                    sg.id()
                ));
            }
            Object::SecurityGroup(sg)
        }
        "services" => {
            let svc: Service = serde_json::from_slice(value).map_err(|e| e.to_string())?;
            let expected = service_key(&svc);
            if rel != expected {
                return Err(format!(
                    "the key names {rel:?} but the value is service {} (key {expected:?})",
                    svc.id()
                ));
            }
            Object::Service(svc)
        }
        "meta" if rel == NEXT_OWNER_ID => Object::NextOwnerId(
            std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or("expected a number")?,
        ),
        "meta" => return Ok(None),
        _ => {
            return Err(
                "not a netfabric key (zones/, hosts/, owners/, groups/, containers/, \
                 security-groups/, services/, meta/)"
                    .into(),
            );
        }
    };
    Ok(Some(obj))
}

/// Builds the state from its objects (key order: sorted by name).
fn assemble<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Result<State, String> {
    let mut s = State {
        owners: Vec::new(),
        next_owner_id: 0,
        ..State::default()
    };
    let mut any = false;
    let mut next = None;
    for o in objects {
        any = true;
        match o {
            Object::Zone(z) => s.zones.push(z.clone()),
            Object::Host(h) => s.hosts.push(h.clone()),
            Object::Owner(o) => s.owners.push(o.clone()),
            Object::Group(g) => s.groups.push(g.clone()),
            Object::Container(c) => s.containers.push(c.clone()),
            Object::SecurityGroup(g) => s.security_groups.push(g.clone()),
            Object::Service(svc) => s.services.push(svc.clone()),
            Object::NextOwnerId(n) => next = Some(*n),
        }
    }
    if !any {
        return Ok(State::default());
    }
    s.next_owner_id = next.ok_or(format!("{NEXT_OWNER_ID} is missing"))?;
    // Key order is name order for every list but security groups and
    // services (`a-b/` sorts before `a/`).
    s.normalize();
    Ok(s)
}

impl Inner {
    fn bad_key(&self, rel: &str, reason: String) -> StoreError {
        StoreError::BadStored {
            url: self.url.clone(),
            key: self.key(rel),
            reason,
        }
    }

    fn state_of(&self, kvs: &BTreeMap<String, Vec<u8>>) -> Result<State, StoreError> {
        let mut objects = Vec::with_capacity(kvs.len());
        for (k, v) in kvs {
            if let Some(o) = decode(k, v).map_err(|r| self.bad_key(k, r))? {
                objects.push(o);
            }
        }
        assemble(&objects).map_err(|r| self.bad_key(NEXT_OWNER_ID, r))
    }
}

/// A commit id no other commit has: the read-back after a lost answer
/// recognises this process's commit by it.
fn commit_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let random = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos:x}-{n}-{}", std::process::id(), random.trim())
}

/// The value of `meta/commit` for the commit `id`.
fn commit_value(id: &str) -> Vec<u8> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    json(&serde_json::json!({
        "by": format!("{}@{}", std::process::id(), host.trim()),
        "at_ms": at_ms,
        "id": id,
    }))
}

/// The commit id in a `meta/commit` value (none in values written before
/// ids existed, or by hand).
fn commit_id_of(value: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    v.get("id")?.as_str().map(str::to_owned)
}

/// etcd's refusal of a transaction with more operations than its
/// `--max-txn-ops` (error text of etcd's `ErrTooManyOps`).
fn is_too_many_ops(reason: &str) -> bool {
    reason.contains("too many operations in txn request")
}

/// etcd's refusal of a request larger than its `--max-request-bytes`.
fn is_too_large(reason: &str) -> bool {
    reason.contains("request is too large")
}

impl Store for EtcdStore {
    fn url(&self) -> String {
        self.inner.url.clone()
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        let read = self.read_retrying("reading")?;
        Ok(Snapshot {
            state: self.inner.state_of(&read.kvs)?,
            revision: read.revision as Revision,
        })
    }

    fn update(&self, change: &mut Change<'_>) -> Result<Revision, StoreError> {
        let start = Instant::now();
        let mut backoff = Backoff::new();
        let mut conflicts = 0u32;
        let mut unavailable_since: Option<Instant> = None;
        loop {
            let (read, from_cache) = match self.cached() {
                Some(r) => (r, true),
                None => (self.read_retrying("reading")?, false),
            };
            let current = self.inner.state_of(&read.kvs)?;
            let mut next = current.clone();
            let outcome = change(&mut next).map_err(StoreError::from).and_then(|()| {
                if next == current {
                    return Ok(false);
                }
                // As the file store: validate before sorting, so a duplicate
                // is reported on the new object.
                if let Err(e) = next.validate() {
                    if let Err(source) = current.validate() {
                        return Err(StoreError::InvalidStored {
                            path: self.inner.url.clone().into(),
                            source: Box::new(source),
                        });
                    }
                    return Err(e.into());
                }
                Ok(true)
            });
            // A refusal or a no-op must hold for the current state, not a
            // possibly stale copy: decide on a fresh read.
            if from_cache && !matches!(outcome, Ok(true)) {
                self.set_cache(None);
                continue;
            }
            if !outcome? {
                return Ok(read.revision as Revision);
            }
            next.normalize();
            let new_kvs = encode(&next);
            let mut ops = Vec::new();
            for (k, v) in &new_kvs {
                if read.kvs.get(k) != Some(v) {
                    ops.push(TxnOp::put(self.inner.key(k), v.clone(), None));
                }
            }
            for k in read.kvs.keys() {
                if is_object_key(k) && !new_kvs.contains_key(k) {
                    ops.push(TxnOp::delete(self.inner.key(k), None));
                }
            }
            let id = commit_id();
            let commit = commit_value(&id);
            ops.push(TxnOp::put(self.inner.key(COMMIT), commit.clone(), None));
            let op_count = ops.len();
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    self.inner.cfg.prefix.as_bytes(),
                    CompareOp::Less,
                    read.at + 1,
                )
                .with_prefix()])
                .and_then(ops);
            let inner = self.inner.clone();
            let result = self.block("writing", async move {
                let resp = inner
                    .request(|mut c| {
                        let txn = txn.clone();
                        async move { c.txn(txn).await }
                    })
                    .await?;
                Ok::<_, EtcdFailure>((
                    resp.succeeded(),
                    resp.header().map(|h| h.revision()).unwrap_or(0),
                ))
            })?;
            self.inner.note_answer(&result);
            match result {
                Ok((true, revision)) => {
                    let mut kvs: BTreeMap<String, Vec<u8>> = read
                        .kvs
                        .iter()
                        .filter(|(k, _)| !is_object_key(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    kvs.extend(new_kvs);
                    kvs.insert(COMMIT.to_owned(), commit);
                    self.set_cache(Some(Arc::new(Read {
                        kvs,
                        at: revision,
                        revision,
                    })));
                    tracing::debug!(revision, conflicts, store = %self.inner.url, "committed");
                    return Ok(revision as Revision);
                }
                Ok((false, _)) => {
                    self.set_cache(None);
                    conflicts += 1;
                    if start.elapsed() > CONFLICT_DEADLINE {
                        return Err(StoreError::Conflict {
                            expected: read.revision as Revision,
                            found: 0,
                        });
                    }
                    tracing::debug!(
                        conflicts,
                        "etcd: the state changed since it was read; retrying"
                    );
                    std::thread::sleep(backoff.next());
                }
                Err(f) if !f.retryable => {
                    self.set_cache(None);
                    let too_big = if is_too_many_ops(&f.reason) {
                        Some(format!(
                            "the change is one transaction of {op_count} operations ({} keys \
                             changed, plus meta/commit), more than this etcd accepts (its \
                             --max-txn-ops, 128 by default",
                            op_count - 1
                        ))
                    } else if is_too_large(&f.reason) {
                        Some(format!(
                            "the change is one transaction of {op_count} operations, more \
                             bytes than this etcd accepts (its --max-request-bytes, 1.5 MiB \
                             by default"
                        ))
                    } else {
                        None
                    };
                    if let Some(what) = too_big {
                        return Err(StoreError::Refused {
                            url: self.inner.url.clone(),
                            action: "writing",
                            reason: format!(
                                "{what}; etcd said: {}); nothing was applied: raise the \
                                 limit on every member or make the change in smaller steps",
                                f.reason
                            ),
                        });
                    }
                    return Err(self.inner.failure("writing", f, Instant::now()));
                }
                Err(f) => {
                    self.set_cache(None);
                    let since = *unavailable_since.get_or_insert_with(Instant::now);
                    // Unless it was never sent, the request may have reached
                    // etcd and only its answer been lost: find out before
                    // trying again, so a commit is neither applied twice
                    // nor reported lost.
                    if f.not_sent {
                        tracing::debug!(reason = %f.reason, "etcd txn was not sent");
                    } else if let Some(revision) =
                        self.resolve(read.at, &id, &f, since, &mut backoff)?
                    {
                        tracing::info!(
                            revision,
                            reason = %f.reason,
                            store = %self.inner.url,
                            "the answer to a commit was lost; read back: it landed"
                        );
                        return Ok(revision as Revision);
                    }
                    let Some(pause) = self.inner.retry_after(&f, since, &mut backoff) else {
                        return Err(self.inner.failure("writing", f, since));
                    };
                    tracing::debug!(reason = %f.reason, "etcd txn failed and did not land; retrying");
                    std::thread::sleep(pause);
                }
            }
        }
    }

    fn watch(&self, from: Revision) -> Result<Watch, StoreError> {
        let inner = self.inner.clone();
        let health = Arc::new(StoreHealth::default());
        let task_health = health.clone();
        Watch::spawn_with_health("netfabric-etcd-watch", health, move |tx, stop| {
            let task = inner
                .handle
                .spawn(watch_loop(inner.clone(), from, tx, task_health));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && !task.is_finished() {
                std::thread::sleep(Duration::from_millis(20));
            }
            task.abort();
        })
        .map_err(|source| StoreError::Io {
            action: "starting the watch thread for",
            path: self.inner.url.clone().into(),
            source,
        })
    }
}

// ---- Watch ---------------------------------------------------------------

type Feed = mpsc::Sender<Result<Update, StoreError>>;

/// What the watch knows: every object by key, keys it could not read, and
/// the state it follows change by change.
#[derive(Default)]
struct Mirror {
    objects: BTreeMap<String, Object>,
    bad: BTreeMap<String, String>,
    /// The state built from `objects` and kept up to date with `pending`
    /// (`None`: build it whole at the next send).
    followed: Option<FollowedState>,
    /// Object changes since the last send.
    pending: Changes,
    /// The watcher did not get the last state (it was invalid): the next
    /// valid one goes out whole.
    behind: bool,
}

impl Mirror {
    fn set(&mut self, rel: &str, value: &[u8]) {
        let before = self.objects.remove(rel);
        self.bad.remove(rel);
        match decode(rel, value) {
            Ok(Some(o)) => {
                self.pending.record(o.id(), before, Some(o.clone()));
                self.objects.insert(rel.to_owned(), o);
            }
            Ok(None) => {}
            Err(reason) => {
                // The state is unusable until the key is fixed; then it is
                // built whole again.
                self.followed = None;
                self.bad.insert(rel.to_owned(), reason);
            }
        }
    }

    fn remove(&mut self, rel: &str) {
        if let Some(before) = self.objects.remove(rel) {
            self.pending.record(before.id(), Some(before), None);
        }
        self.bad.remove(rel);
    }

    /// What to send the watcher, if every key is readable and the state
    /// valid: the changes since the last send, or the whole state when the
    /// watcher cannot follow changes from what it has.
    fn update(&mut self, inner: &Inner, revision: i64) -> Result<Update, StoreError> {
        if let Some((k, reason)) = self.bad.iter().next() {
            return Err(inner.bad_key(k, reason.clone()));
        }
        let invalid = |source| StoreError::InvalidStored {
            path: inner.url.clone().into(),
            source: Box::new(source),
        };
        let changes = std::mem::take(&mut self.pending);
        let whole = match &mut self.followed {
            Some(followed) => {
                if let Err(e) = followed.apply(&changes) {
                    self.behind = true;
                    return Err(invalid(e));
                }
                std::mem::take(&mut self.behind)
            }
            None => {
                let state =
                    assemble(self.objects.values()).map_err(|r| inner.bad_key(NEXT_OWNER_ID, r))?;
                let (followed, verdict) = FollowedState::new(state);
                self.followed = Some(followed);
                if let Err(e) = verdict {
                    self.behind = true;
                    return Err(invalid(e));
                }
                self.behind = false;
                true
            }
        };
        let revision = revision as Revision;
        if whole {
            let state = self.followed.as_ref().map(|f| f.state().clone());
            return Ok(Update::Whole(Snapshot {
                state: state.expect("followed above"),
                revision,
            }));
        }
        Ok(Update::Changed { revision, changes })
    }
}

/// What to do after a watch response.
enum Flow {
    Go,
    /// The revision to continue from was compacted: read everything again.
    Resync,
    /// The watch ended: make a new one.
    Rewatch(String),
}

async fn watch_loop(inner: Arc<Inner>, from: Revision, tx: Feed, health: Arc<StoreHealth>) {
    let from = from as i64;
    let mut mirror = Mirror::default();
    // The revision to watch from; None: (re)read everything first.
    let mut next: Option<i64> = None;
    let mut last_sent = from;
    let mut backoff = Backoff::new();
    let prefix_len = inner.cfg.prefix.len();

    // Sends a state; false when the receiver is gone.
    // Sends the mirror's state at `revision` if it is newer than the last
    // one sent, or whatever its revision with `force` (etcd went back).
    let send = |mirror: &mut Mirror, revision: i64, last_sent: &mut i64, force: bool| -> bool {
        if revision <= *last_sent && !force {
            return true;
        }
        match mirror.update(&inner, revision) {
            Ok(update) => {
                *last_sent = revision;
                tx.send(Ok(update)).is_ok()
            }
            Err(e) => {
                tracing::error!(error = %e, "the state in etcd is not usable; keeping the last one");
                tx.send(Err(e)).is_ok()
            }
        }
    };
    let lost = |reason: String| -> bool {
        if health.set_down(&reason) {
            tracing::warn!(store = %inner.url, %reason, "store unreachable; keeping the last state (fail static)");
            return tx
                .send(Err(StoreError::Unavailable {
                    url: inner.url.clone(),
                    action: "watching",
                    reason,
                }))
                .is_ok();
        }
        true
    };

    loop {
        let start = match next {
            Some(r) => r,
            None => match inner.read().await {
                Ok(read) => {
                    let before = std::mem::take(&mut mirror);
                    for (k, v) in &read.kvs {
                        mirror.set(k, v);
                    }
                    if health.set_up() {
                        tracing::info!(store = %inner.url, "store reachable again");
                    }
                    // After a resync, a change the read shows only as a
                    // missing key (deleted by hand) still counts: send it at
                    // the read's revision. So does a state older than the
                    // last one sent (etcd restored from a backup: its
                    // revisions went back), whatever its revision.
                    let changed = last_sent > from
                        && (before.objects != mirror.objects || before.bad != mirror.bad);
                    let revision = if read.revision <= last_sent && changed {
                        read.at
                    } else {
                        read.revision
                    };
                    let went_back = changed && revision <= last_sent;
                    if went_back {
                        tracing::warn!(
                            store = %inner.url,
                            revision,
                            last_sent,
                            "etcd's revision went back (restored from a backup?); applying its state"
                        );
                    }
                    if !send(&mut mirror, revision, &mut last_sent, went_back) {
                        return;
                    }
                    next = Some(read.at + 1);
                    read.at + 1
                }
                Err(f) => {
                    if !lost(f.reason) {
                        return;
                    }
                    tokio::time::sleep(backoff.next()).await;
                    continue;
                }
            },
        };
        let stream = match inner.client().await {
            Ok(mut c) => {
                let opts = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(start)
                    .with_progress_notify();
                match tokio::time::timeout(
                    OP_TIMEOUT,
                    c.watch(inner.cfg.prefix.as_bytes(), Some(opts)),
                )
                .await
                {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => Err(EtcdFailure::from(e).reason),
                    Err(e) => Err(EtcdFailure::from(e).reason),
                }
            }
            Err(f) => Err(f.reason),
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(reason) => {
                if !lost(reason) {
                    return;
                }
                tokio::time::sleep(backoff.next()).await;
                // As after a broken watch: etcd may come back from a backup.
                next = None;
                continue;
            }
        };
        // Events of this watch.
        let flow = loop {
            let mut changed = None;
            let mut handle = |resp: etcd_client::WatchResponse,
                              next: &mut Option<i64>,
                              mirror: &mut Mirror|
             -> Flow {
                if resp.created() && health.set_up() {
                    tracing::info!(store = %inner.url, "store reachable again; watching from revision {start}");
                }
                // etcd is behind the revision this watch continues from: it
                // came back from a backup, and the watch would wait silently
                // for the revision to catch up. Read everything again.
                if resp.created()
                    && let Some(header) = resp.header()
                    && header.revision() + 1 < start
                {
                    tracing::warn!(
                        store = %inner.url,
                        etcd_revision = header.revision(),
                        watch_from = start,
                        "etcd's revision is behind this watch (restored from a backup?); full resync"
                    );
                    return Flow::Resync;
                }
                if resp.canceled() {
                    if resp.compact_revision() > 0 {
                        tracing::warn!(
                            compact_revision = resp.compact_revision(),
                            "etcd compacted the revisions this watch needed; full resync"
                        );
                        return Flow::Resync;
                    }
                    return Flow::Rewatch(format!("watch canceled: {}", resp.cancel_reason()));
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let key = kv.key();
                    if key.len() < prefix_len {
                        continue;
                    }
                    let rel = String::from_utf8_lossy(&key[prefix_len..]).into_owned();
                    match ev.event_type() {
                        EventType::Put => mirror.set(&rel, kv.value()),
                        EventType::Delete => mirror.remove(&rel),
                    }
                    let rev = kv.mod_revision();
                    *next = Some(next.unwrap_or(0).max(rev + 1));
                    changed = Some(changed.unwrap_or(0).max(rev));
                }
                Flow::Go
            };
            let first = match stream.message().await {
                Ok(Some(resp)) => handle(resp, &mut next, &mut mirror),
                Ok(None) => Flow::Rewatch("the watch stream ended".into()),
                Err(e) => Flow::Rewatch(EtcdFailure::from(e).reason),
            };
            if !matches!(first, Flow::Go) {
                break first;
            }
            // Coalesce what is already waiting into one snapshot.
            let mut flow = Flow::Go;
            while let Some(more) = stream.message().now_or_never() {
                flow = match more {
                    Ok(Some(resp)) => handle(resp, &mut next, &mut mirror),
                    Ok(None) => Flow::Rewatch("the watch stream ended".into()),
                    Err(e) => Flow::Rewatch(EtcdFailure::from(e).reason),
                };
                if !matches!(flow, Flow::Go) {
                    break;
                }
            }
            if let Some(rev) = changed {
                backoff = Backoff::new();
                if !send(&mut mirror, rev, &mut last_sent, false) {
                    return;
                }
            }
            if !matches!(flow, Flow::Go) {
                break flow;
            }
        };
        match flow {
            Flow::Go => {}
            Flow::Resync => next = None,
            Flow::Rewatch(reason) => {
                if !lost(reason) {
                    return;
                }
                tokio::time::sleep(backoff.next()).await;
                // Read everything again rather than watch on from the next
                // revision: etcd may have come back from a backup with
                // revisions behind ours, and a watch from a revision it has
                // not reached yet would wait silently.
                next = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{MacAddr, state::HostSpec};

    fn sample() -> State {
        let mut s = State::default();
        s.create_zone("z1", "10.1.0.0/16".parse().unwrap(), None)
            .unwrap();
        s.create_host(HostSpec {
            name: "h1".into(),
            zone: "z1".into(),
            number: Some(1),
            subnet: None,
            uplink: "eth0".into(),
            underlay_ip: Ipv4Addr::new(192, 168, 0, 1),
            underlay_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        })
        .unwrap();
        s.create_owner("alice").unwrap();
        s.create_group("g", &["alice".into()]).unwrap();
        s.create_container("web", "alice", "h1", None).unwrap();
        s.create_owner("a-b").unwrap();
        s.create_group("team", &["alice".into(), "a-b".into()])
            .unwrap();
        for (owner, via, allow) in [
            ("alice", Via::Group("team".into()), "tcp/5432"),
            ("alice", Via::Own, "icmp"),
            ("a-b", Via::Group("team".into()), "udp/53"),
        ] {
            s.set_security_group(owner, via, &[allow.parse().unwrap()])
                .unwrap();
        }
        s.create_owner("a-c").unwrap();
        s.create_container("web-2", "alice", "h1", None).unwrap();
        for (owner, name, backends) in [
            ("alice", "api", vec!["web".to_owned(), "web-2".to_owned()]),
            ("a-c", "api", vec![]),
        ] {
            s.create_service(crate::state::ServiceSpec {
                name: name.into(),
                owner: owner.into(),
                zone: None,
                vip: None,
                ports: vec!["tcp/80:8080".parse().unwrap(), "udp/53".parse().unwrap()],
                backends,
                health: "http:/healthz".parse().unwrap(),
            })
            .unwrap();
        }
        s.validate().unwrap();
        s.normalize();
        s
    }

    #[test]
    fn services_are_keyed_by_owner_and_name_and_round_trip() {
        let s = sample();
        let kvs = encode(&s);
        let api = &kvs["services/alice/api"];
        assert_eq!(
            String::from_utf8_lossy(api),
            r#"{"name":"api","owner":"alice","zone":"z1","vip":"10.1.0.1","ports":["tcp/80:8080","udp/53"],"backends":[{"container":"web","member":0},{"container":"web-2","member":1}],"health":{"http":{"path":"/healthz"}}}"#
        );
        assert!(kvs.contains_key("services/a-c/api"));
        assert_eq!(
            decode("services/alice/api", api),
            Ok(Some(Object::Service(
                s.service("alice", "api").unwrap().clone()
            )))
        );
        let err = decode("services/bob/api", api).unwrap_err();
        assert!(err.contains("services/bob/api"), "{err}");
        let objects: Vec<Object> = kvs
            .iter()
            .filter_map(|(k, v)| decode(k, v).unwrap())
            .collect();
        assert_eq!(assemble(&objects).unwrap(), s);
    }

    #[test]
    fn encode_decode_round_trip() {
        let s = sample();
        let kvs = encode(&s);
        assert!(kvs.contains_key("containers/web"));
        assert!(kvs.contains_key("owners/system"));
        assert!(kvs.contains_key("security-groups/alice/via/team"));
        assert!(kvs.contains_key("security-groups/alice/own"));
        assert_eq!(kvs["meta/next_owner_id"], b"5");
        let objects: Vec<Object> = kvs
            .iter()
            .filter_map(|(k, v)| decode(k, v).unwrap())
            .collect();
        assert_eq!(assemble(&objects).unwrap(), s);
        assert_eq!(assemble(&[]).unwrap(), State::default());
        assert_eq!(decode(COMMIT, b"{}"), Ok(None));
    }

    #[test]
    fn an_owners_egress_round_trips_and_its_default_is_not_written() {
        let mut s = sample();
        assert!(!String::from_utf8_lossy(&encode(&s)["owners/alice"]).contains("egress"));
        s.set_owner_egress("alice", crate::state::Egress::Deny)
            .unwrap();
        let kvs = encode(&s);
        assert_eq!(
            kvs["owners/alice"],
            br#"{"name":"alice","id":2,"egress":"deny"}"#
        );
        let objects: Vec<Object> = kvs
            .iter()
            .filter_map(|(k, v)| decode(k, v).unwrap())
            .collect();
        assert_eq!(assemble(&objects).unwrap(), s);
        let err = decode(
            "owners/alice",
            br#"{"name":"alice","id":2,"egress":"maybe"}"#,
        )
        .unwrap_err();
        assert!(err.contains("egress") || err.contains("maybe"), "{err}");
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(decode("containers/web", b"{").is_err());
        let other = serde_json::to_vec(&sample().containers[0]).unwrap();
        let err = decode("containers/db", &other).unwrap_err();
        assert!(err.contains("\"db\""), "{err}");
        assert!(decode("things/x", b"{}").is_err());
        let sg = serde_json::to_vec(&sample().security_groups[0]).unwrap();
        let err = decode("security-groups/bob/own", &sg).unwrap_err();
        assert!(err.contains("security-groups/bob/own"), "{err}");
        assert!(decode("security-groups/a-b/via/team", &sg).is_ok());
        assert!(decode(NEXT_OWNER_ID, b"x").is_err());
    }

    #[test]
    fn commit_ids_are_unique_and_read_back_from_the_value() {
        let (a, b) = (commit_id(), commit_id());
        assert_ne!(a, b);
        assert_eq!(commit_id_of(&commit_value(&a)).as_deref(), Some(a.as_str()));
        // A value without an id (older netfabric, put by hand) is nobody's.
        assert_eq!(commit_id_of(br#"{"by":"1@h","at_ms":2}"#), None);
        assert_eq!(commit_id_of(b"garbage"), None);
    }

    #[test]
    fn a_refused_connection_is_not_sent_and_a_members_refusal_is_answered() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let status = tonic::Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        let f = EtcdFailure::from(etcd_client::Error::GRpcStatus(status));
        assert!(f.not_sent && f.unreachable && f.retryable, "{f:?}");
        assert!(f.reason.contains("Connection refused"), "{f:?}");

        // A connection that broke after the request left: not known unsent.
        let reset = std::io::Error::from_raw_os_error(libc::ECONNRESET);
        let status = tonic::Status::from_error(Box::new(reset));
        let f = EtcdFailure::from(etcd_client::Error::GRpcStatus(status));
        assert!(!f.not_sent && f.retryable, "{f:?}");

        let no_leader = tonic::Status::unavailable("etcdserver: no leader");
        let f = EtcdFailure::from(etcd_client::Error::GRpcStatus(no_leader));
        assert!(!f.not_sent && !f.unreachable && f.retryable, "{f:?}");
    }

    #[test]
    fn etcds_size_refusals_are_recognised() {
        assert!(is_too_many_ops(
            "grpc request error: code: 'Client specified an invalid argument', message: \"etcdserver: too many operations in txn request\""
        ));
        assert!(is_too_large("etcdserver: request is too large"));
        assert!(!is_too_many_ops("etcdserver: permission denied"));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/netfabric/"), b"/netfabric0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
    }
}
