//! Whether a store is reachable, shared between a [`Watch`](super::Watch)
//! and whoever reports it (the agent's log, `netfabric_store_up`, `status`).
//!
//! A watch marks it down when it loses the store and up again once it is
//! back (for etcd: when the watch is re-established), even if nothing
//! changed in between. The agent never acts on "down" other than reporting
//! it: it keeps enforcing the last state it applied (fail static).

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Reachability of a store, updated by its watch.
#[derive(Debug)]
pub struct StoreHealth {
    up: AtomicBool,
    /// Unix time in milliseconds since which `up` has had its value.
    since_ms: AtomicU64,
    /// Number of times the store was lost.
    outages: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Default for StoreHealth {
    fn default() -> Self {
        StoreHealth {
            up: AtomicBool::new(true),
            since_ms: AtomicU64::new(now_ms()),
            outages: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl StoreHealth {
    /// Whether the store was reachable the last time it was tried.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Since when the store has been unreachable (`None` while it is up).
    pub fn down_since(&self) -> Option<SystemTime> {
        (!self.is_up())
            .then(|| UNIX_EPOCH + Duration::from_millis(self.since_ms.load(Ordering::Relaxed)))
    }

    /// Since when the store has been in its current state (up or down).
    pub fn since(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.since_ms.load(Ordering::Relaxed))
    }

    /// How many times the store was lost since this process started.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// The last error seen (kept after the store came back).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Records that the store answered. Returns true on a down → up change.
    pub fn set_up(&self) -> bool {
        let changed = !self.up.swap(true, Ordering::Relaxed);
        if changed {
            self.since_ms.store(now_ms(), Ordering::Relaxed);
        }
        changed
    }

    /// Records that the store could not be reached. Returns true on an
    /// up → down change.
    pub fn set_down(&self, error: &str) -> bool {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error.to_owned());
        }
        let changed = self.up.swap(false, Ordering::Relaxed);
        if changed {
            self.since_ms.store(now_ms(), Ordering::Relaxed);
            self.outages.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_reported_once() {
        let h = StoreHealth::default();
        assert!(h.is_up() && h.down_since().is_none());
        assert!(h.set_down("refused"));
        assert!(!h.set_down("refused again"));
        assert!(h.down_since().is_some());
        assert_eq!(h.outages(), 1);
        assert_eq!(h.last_error().as_deref(), Some("refused again"));
        assert!(h.set_up());
        assert!(!h.set_up());
        assert!(h.is_up() && h.down_since().is_none());
    }
}
