//! `CONNECTIONS`: the connections the programs track (an LRU hash written
//! by the programs only: a [`KernelMap`]). Userspace reads it (`maps
//! dump`, metrics) and may age or remove entries; nothing plans it.

use aya::maps::{IterableMap as _, MapError};
use netfabric_common::{
    self as common,
    conntrack::{ConnKey, ConnState, Connection, idle_timeout_ns},
};

use super::{KernelMap, Result};
use crate::datapath::{Datapath, batch, hash_remove, map_err};

/// `CONNECTIONS`: read in batches, never planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections;

impl KernelMap for Connections {
    const NAME: &'static str = common::CONNECTIONS;
    type Snapshot = Vec<(ConnKey, Connection)>;

    fn read(dp: &Datapath) -> Result<Self::Snapshot> {
        let raw = batch::read_all(dp.connections.map(), common::CONNECTIONS)?;
        Ok(raw.typed().collect())
    }
}

/// Is `conn` (of `key`) idle past its timeout at `now_ns`
/// (`CLOCK_MONOTONIC`, as the programs' `bpf_ktime_get_coarse_ns`)? The
/// programs treat such an entry as absent; the LRU reclaims it.
pub fn is_expired(key: &ConnKey, conn: &Connection, now_ns: u64) -> bool {
    now_ns.saturating_sub(conn.last_seen_ns) > idle_timeout_ns(key.protocol, conn.state)
}

/// The state's label, or `unknown(N)` for a number no program writes.
pub fn state_label(conn: &Connection) -> String {
    match ConnState::from_u8(conn.state) {
        Some(s) => s.label().to_owned(),
        None => format!("unknown({})", conn.state),
    }
}

impl Datapath {
    /// Every tracked connection (batched), expired ones included.
    pub fn connections(&self) -> Result<Vec<(ConnKey, Connection)>> {
        Connections::read(self)
    }

    /// How many entries the table holds now (expired ones included: the
    /// LRU reclaims them as new ones come).
    pub fn connection_count(&self) -> Result<usize> {
        Ok(batch::read_all(self.connections.map(), common::CONNECTIONS)?.count)
    }

    /// One connection's entry, if tracked.
    pub fn connection(&self, key: &ConnKey) -> Result<Option<Connection>> {
        match self.connections.get(key, 0) {
            Ok(c) => Ok(Some(c)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(common::CONNECTIONS)(e)),
        }
    }

    /// Writes one entry (tests age entries this way; the programs create
    /// them).
    pub fn set_connection(&mut self, key: &ConnKey, conn: &Connection) -> Result<()> {
        self.connections
            .insert(key, conn, 0)
            .map_err(map_err(common::CONNECTIONS))
    }

    /// Forgets one connection (absent: nothing to do).
    pub fn remove_connection(&mut self, key: &ConnKey) -> Result<()> {
        hash_remove(common::CONNECTIONS, self.connections.remove(key))
    }
}

/// `CLOCK_MONOTONIC` now, in ns: the programs' clock
/// (`bpf_ktime_get_coarse_ns` reads the same clock at tick resolution).
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
