//! The health board on etcd ([`crate::store::health_board`]).
//!
//! Each host's report is the JSON of a [`HealthReport`] under
//! `<prefix without its last />.health/<host>`: `/netfabric.health/h1` for
//! the default prefix `/netfabric/`. It sits *beside* the state's prefix,
//! not under it: a key under the prefix would move the revision every
//! `update` guards on (conflicts every few seconds) and wake every agent's
//! state watch. An etcd role limited to the prefix needs this range too.
//!
//! The key is put under a lease of [`REPORT_TTL`], which every
//! publication renews (one keep-alive): a dead agent's report is deleted
//! by etcd when its lease runs out, and the watchers see the delete. A
//! lease etcd no longer knows (expired while this agent could not reach
//! etcd) is replaced by a new one.
//!
//! The watch reads the board's range, then watches it from the next
//! revision; a broken watch (etcd unreachable, compaction) sends one error
//! and resyncs the same way once etcd answers.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use etcd_client::{EventType, GetOptions, PutOptions, WatchOptions};

use super::{Backoff, EtcdFailure, EtcdStore, Inner, OP_TIMEOUT};
use crate::{
    health::{HealthReport, HealthView, REPORT_TTL},
    state::{StateError, is_valid_name},
    store::{
        StoreError,
        health_board::{BoardWatch, HealthBoard, ViewItem},
    },
};

/// The health board next to an [`EtcdStore`] (sharing its connection).
#[derive(Clone)]
pub struct EtcdHealthBoard {
    inner: Arc<Inner>,
    prefix: String,
    ttl: Duration,
    /// The lease of each host's report this board published (an agent
    /// publishes its own host only; tests publish several).
    leases: Arc<Mutex<BTreeMap<String, i64>>>,
    /// Kept so the client's runtime outlives the board.
    _store: EtcdStore,
}

impl std::fmt::Debug for EtcdHealthBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHealthBoard")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The board's key prefix for a state prefix (`/netfabric/` →
/// `/netfabric.health/`): `.` sorts before `/`, so the range is disjoint
/// from the state's.
pub fn board_prefix(state_prefix: &str) -> String {
    format!("{}.health/", state_prefix.trim_end_matches('/'))
}

impl EtcdHealthBoard {
    pub fn new(store: &EtcdStore) -> EtcdHealthBoard {
        EtcdHealthBoard {
            inner: store.inner.clone(),
            prefix: board_prefix(&store.inner.cfg.prefix),
            ttl: REPORT_TTL,
            leases: Arc::default(),
            _store: store.clone(),
        }
    }

    /// Reports live this long without a publication (whole seconds, at
    /// least 1; [`REPORT_TTL`] by default).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The key prefix of the board.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, host: &str) -> Result<String, StoreError> {
        if !is_valid_name(host) {
            return Err(StateError::MalformedName {
                field: "host".into(),
                value: host.to_owned(),
            }
            .into());
        }
        Ok(format!("{}{host}", self.prefix))
    }

    fn block<T: Send + 'static>(
        &self,
        action: &'static str,
        fut: impl std::future::Future<Output = Result<T, EtcdFailure>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        let since = std::time::Instant::now();
        let result = rx.recv().map_err(|_| StoreError::Unavailable {
            url: self.inner.url.clone(),
            action,
            reason: "the etcd client thread is gone".into(),
        })?;
        self.inner.note_answer(&result);
        result.map_err(|f| self.inner.failure(action, f, since))
    }
}

/// Renews `lease` (one keep-alive): whether etcd still has it.
async fn renew(inner: &Inner, lease: i64) -> Result<bool, EtcdFailure> {
    let mut client = inner.client().await?;
    let renewed = tokio::time::timeout(OP_TIMEOUT, async move {
        let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
        keeper.keep_alive().await?;
        Ok::<_, etcd_client::Error>(stream.message().await?.is_some_and(|r| r.ttl() > 0))
    })
    .await??;
    Ok(renewed)
}

impl HealthBoard for EtcdHealthBoard {
    fn publish(&self, report: &HealthReport) -> Result<(), StoreError> {
        let key = self.key(&report.host)?;
        let value = serde_json::to_vec(report).expect("a report serialises");
        let (inner, leases, ttl) = (
            self.inner.clone(),
            self.leases.clone(),
            self.ttl.as_secs() as i64,
        );
        let host = report.host.clone();
        self.block("publishing a health report to", async move {
            let held = leases
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&host)
                .copied();
            let lease = match held {
                // A lease etcd lost (or cannot renew) is replaced.
                Some(id) if renew(&inner, id).await.unwrap_or(false) => id,
                _ => {
                    let granted = inner
                        .request(|mut c| async move { c.lease_grant(ttl, None).await })
                        .await?;
                    leases
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(host, granted.id());
                    granted.id()
                }
            };
            inner
                .request(|mut c| {
                    let (key, value) = (key.clone(), value.clone());
                    async move {
                        c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                            .await
                    }
                })
                .await?;
            Ok(())
        })
    }

    fn withdraw(&self, host: &str) -> Result<(), StoreError> {
        let key = self.key(host)?;
        let inner = self.inner.clone();
        let lease = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(host);
        self.block("withdrawing a health report from", async move {
            inner
                .request(|mut c| {
                    let key = key.clone();
                    async move { c.delete(key, None).await }
                })
                .await?;
            if let Some(id) = lease {
                // The key is gone already; a lease etcd lost is no error.
                let _ = inner
                    .request(|mut c| async move { c.lease_revoke(id).await })
                    .await;
            }
            Ok(())
        })
    }

    fn watch(&self) -> Result<BoardWatch, StoreError> {
        let (inner, prefix) = (self.inner.clone(), self.prefix.clone());
        BoardWatch::spawn("netfabric-etcd-health-watch", move |tx, stop| {
            let task = inner.handle.spawn(watch_loop(inner.clone(), prefix, tx));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && !task.is_finished() {
                std::thread::sleep(Duration::from_millis(20));
            }
            task.abort();
        })
        .map_err(|source| StoreError::Io {
            action: "starting the health board watch for",
            path: self.inner.url.clone().into(),
            source,
        })
    }
}

/// Parses one report key; a bad one is named in the error.
fn parse(inner: &Inner, key: &[u8], host: &str, value: &[u8]) -> Result<HealthReport, StoreError> {
    let bad = |reason: String| StoreError::BadStored {
        url: inner.url.clone(),
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let report: HealthReport = serde_json::from_slice(value).map_err(|e| bad(e.to_string()))?;
    if report.host != host {
        return Err(bad(format!(
            "the key names host {host:?} but the report {:?}",
            report.host
        )));
    }
    Ok(report)
}

async fn watch_loop(inner: Arc<Inner>, prefix: String, tx: std::sync::mpsc::Sender<ViewItem>) {
    let mut backoff = Backoff::new();
    // Reports by host, and the keys that could not be read (by key).
    let mut view = HealthView::default();
    let mut bad: BTreeMap<String, StoreError> = Default::default();
    let mut failing = false;
    let send = |view: &HealthView, bad: &BTreeMap<String, StoreError>| {
        let item = match bad.values().next() {
            Some(e) => Err(StoreError::BadStored {
                url: inner.url.clone(),
                key: prefix.clone(),
                reason: e.to_string(),
            }),
            None => Ok(view.clone()),
        };
        tx.send(item).is_ok()
    };
    loop {
        // (Re)read the whole board.
        let end = super::prefix_end(prefix.as_bytes());
        let read = inner
            .request(|mut c| {
                let (start, end) = (prefix.clone(), end.clone());
                async move { c.get(start, Some(GetOptions::new().with_range(end))).await }
            })
            .await;
        let resp = match read {
            Ok(r) => r,
            Err(f) => {
                if !failing {
                    failing = true;
                    let lost = StoreError::Unavailable {
                        url: inner.url.clone(),
                        action: "watching the health board of",
                        reason: f.reason,
                    };
                    if tx.send(Err(lost)).is_err() {
                        return;
                    }
                }
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        failing = false;
        view.reports.clear();
        bad.clear();
        for kv in resp.kvs() {
            let host = String::from_utf8_lossy(&kv.key()[prefix.len()..]).into_owned();
            match parse(&inner, kv.key(), &host, kv.value()) {
                Ok(r) => {
                    view.reports.insert(host, r);
                }
                Err(e) => {
                    bad.insert(host, e);
                }
            }
        }
        if !send(&view, &bad) {
            return;
        }
        let start = resp.header().map(|h| h.revision()).unwrap_or(0) + 1;
        let stream = match inner.client().await {
            Ok(mut c) => {
                let opts = WatchOptions::new().with_prefix().with_start_revision(start);
                match tokio::time::timeout(OP_TIMEOUT, c.watch(prefix.as_bytes(), Some(opts))).await
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
                tracing::debug!(%reason, "health board watch failed; resyncing");
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        backoff = Backoff::new();
        let reason = loop {
            let resp = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => break "the watch stream ended".to_owned(),
                Err(e) => break EtcdFailure::from(e).reason,
            };
            if resp.canceled() {
                break format!("watch canceled: {}", resp.cancel_reason());
            }
            if resp.events().is_empty() {
                continue;
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let Some(rel) = kv.key().get(prefix.len()..) else {
                    continue;
                };
                let host = String::from_utf8_lossy(rel).into_owned();
                match ev.event_type() {
                    EventType::Put => match parse(&inner, kv.key(), &host, kv.value()) {
                        Ok(r) => {
                            bad.remove(&host);
                            view.reports.insert(host, r);
                        }
                        Err(e) => {
                            view.reports.remove(&host);
                            bad.insert(host, e);
                        }
                    },
                    EventType::Delete => {
                        view.reports.remove(&host);
                        bad.remove(&host);
                    }
                }
            }
            if !send(&view, &bad) {
                return;
            }
        };
        tracing::debug!(%reason, "health board watch ended; resyncing");
        tokio::time::sleep(backoff.next()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_is_beside_the_state_prefix() {
        for state in ["/netfabric/", "/", "/a/b/"] {
            let board = board_prefix(state);
            let end = super::super::prefix_end(state.as_bytes());
            let inside = board.as_bytes() >= state.as_bytes() && board.as_bytes() < end.as_slice();
            assert!(!inside, "{board} is inside {state}");
        }
        assert_eq!(board_prefix("/netfabric/"), "/netfabric.health/");
    }
}
