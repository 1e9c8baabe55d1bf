//! One module per map: the userspace side of its key and value, how the
//! agent writes it, and how it is read back in batches.
//!
//! Two kinds of map:
//! * [`DesiredMap`]: filled by the agent from the desired state. Its
//!   entries are planned (`agent::plan::HostPlan` holds one
//!   [`Entries`] per map), diffed against what the map holds, and written
//!   one [`Change`] at a time.
//! * [`KernelMap`]: written by the programs (`COUNTERS`, `CONNECTIONS`,
//!   `SERVICE_FLOWS`, `SERVICE_COUNTERS`). Userspace only reads them (and, for maps
//!   that need it, ages and garbage-collects entries); they are never
//!   planned nor diffed.

pub mod connections;
pub mod counters;
pub mod endpoints;
pub mod group_pairs;
pub mod host_config;
pub mod local_ports;
pub mod next_hops;
pub mod owner_groups;
pub mod port_scopes;
pub mod service_counters;
pub mod service_flows;
pub mod service_ports;
pub mod service_tables;
pub mod zone_gateways;
pub mod zones;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
};

use super::{Datapath, DatapathError};

type Result<T, E = DatapathError> = std::result::Result<T, E>;

/// A map the agent fills from the desired state.
pub trait DesiredMap: Sized {
    /// The map's name in the eBPF object (`netfabric_common::maps`).
    const NAME: &'static str;
    /// An entry's key, as the plan names it (ordered like the map's index).
    type Key: Copy + Ord + Debug;
    /// An entry's value, as the plan names it (without presence flags).
    type Value: Copy + Eq + Debug;

    /// Writes one entry.
    fn set(dp: &mut Datapath, key: Self::Key, value: Self::Value) -> Result<()>;
    /// Empties one entry (an absent one stays absent).
    fn clear(dp: &mut Datapath, key: Self::Key) -> Result<()>;
    /// What the map holds: every present entry, for maps keyed by zone
    /// only those of `zone_slots` (the zones in use).
    fn read(dp: &Datapath, zone_slots: &BTreeSet<u32>) -> Result<Entries<Self>>;

    /// The change, if any, that must precede every widening write when an
    /// entry goes from `current` to `desired` (`None`: the entry goes).
    /// By default only a removal narrows.
    fn narrowing(
        key: Self::Key,
        current: &Self::Value,
        desired: Option<&Self::Value>,
    ) -> Option<Change<Self>> {
        let _ = current;
        desired.is_none().then_some(Change::Clear { key })
    }

    /// Whether `desired` must be written over `current` once the narrowing
    /// changes are done. By default: whenever it differs.
    fn widening(current: Option<&Self::Value>, desired: &Self::Value) -> bool {
        current != Some(desired)
    }
}

/// A map the programs write; userspace reads it (`Snapshot`), never plans
/// nor diffs it.
pub trait KernelMap {
    /// The map's name in the eBPF object (`netfabric_common::maps`).
    const NAME: &'static str;
    /// What one read gives, decoded.
    type Snapshot;
    fn read(dp: &Datapath) -> Result<Self::Snapshot>;
}

/// The entries of one [`DesiredMap`], in key order.
pub type Entries<M> = BTreeMap<<M as DesiredMap>::Key, <M as DesiredMap>::Value>;

/// One write to one entry of map `M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<M: DesiredMap> {
    Set { key: M::Key, value: M::Value },
    Clear { key: M::Key },
}

impl<M: DesiredMap> Change<M> {
    pub fn key(&self) -> M::Key {
        match *self {
            Change::Set { key, .. } | Change::Clear { key } => key,
        }
    }

    /// Writes it into the map.
    pub fn apply(&self, dp: &mut Datapath) -> Result<()> {
        match *self {
            Change::Set { key, value } => M::set(dp, key, value),
            Change::Clear { key } => M::clear(dp, key),
        }
    }

    /// Records it in `entries` (what the map now holds).
    pub fn record(&self, entries: &mut Entries<M>) {
        match *self {
            Change::Set { key, value } => {
                entries.insert(key, value);
            }
            Change::Clear { key } => {
                entries.remove(&key);
            }
        }
    }
}

/// The narrowing change of one key, if any ([`DesiredMap::narrowing`]).
pub fn narrowing_of<M: DesiredMap>(
    key: M::Key,
    current: &Entries<M>,
    desired: &Entries<M>,
) -> Option<Change<M>> {
    M::narrowing(key, current.get(&key)?, desired.get(&key))
}

/// The widening write of one key, if any ([`DesiredMap::widening`]).
pub fn widening_of<M: DesiredMap>(
    key: M::Key,
    current: &Entries<M>,
    desired: &Entries<M>,
) -> Option<Change<M>> {
    let value = *desired.get(&key)?;
    M::widening(current.get(&key), &value).then_some(Change::Set { key, value })
}

/// Every narrowing change from `current` to `desired`, in key order.
pub fn narrowing_all<M: DesiredMap>(
    current: &Entries<M>,
    desired: &Entries<M>,
) -> impl Iterator<Item = Change<M>> {
    current
        .iter()
        .filter_map(|(&key, value)| M::narrowing(key, value, desired.get(&key)))
}

/// Every widening write from `current` to `desired`, in key order.
pub fn widening_all<M: DesiredMap>(
    current: &Entries<M>,
    desired: &Entries<M>,
) -> impl Iterator<Item = Change<M>> {
    desired.iter().filter_map(|(&key, &value)| {
        M::widening(current.get(&key), &value).then_some(Change::Set { key, value })
    })
}
