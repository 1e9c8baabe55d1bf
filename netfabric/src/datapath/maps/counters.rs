//! `COUNTERS`: per-CPU packets and bytes by direction and verdict, plus the
//! monitor-lost slot. Written by the programs only (a [`KernelMap`]).

use std::collections::BTreeMap;

use aya::maps::IterableMap as _;
use netfabric_common::{
    self as common, CONNECTIONS_CREATED_SLOT, Counter, Direction, MONITOR_LOST_SLOT, Verdict,
};

use super::{KernelMap, Result};
use crate::datapath::{Datapath, batch};

/// `COUNTERS`: read and summed, never planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters;

impl KernelMap for Counters {
    const NAME: &'static str = common::COUNTERS;
    type Snapshot = CounterSnapshot;

    /// All counters summed over CPUs.
    fn read(dp: &Datapath) -> Result<CounterSnapshot> {
        let raw = batch::read_all(dp.counters.map(), common::COUNTERS)?;
        Ok(CounterSnapshot::from_raw(&raw))
    }
}

impl Datapath {
    /// All counters summed over CPUs.
    pub fn counters(&self) -> Result<CounterSnapshot> {
        Counters::read(self)
    }
}

/// Per-CPU counters summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Only non-zero entries.
    pub by_verdict: BTreeMap<(Direction, Verdict), Counter>,
    /// Drop events the ring buffer could not take.
    pub monitor_events_lost: u64,
    /// Connections the programs added to `CONNECTIONS` since the counters
    /// were created (an entry the LRU evicted stays counted).
    pub connections_created: u64,
}

impl CounterSnapshot {
    /// The one decoder of `COUNTERS` (as read by [`batch::read_all`]):
    /// per-CPU values summed, slots turned into (direction, verdict).
    pub fn from_raw(raw: &batch::RawEntries) -> CounterSnapshot {
        let mut snap = CounterSnapshot::default();
        for i in 0..raw.count {
            let slot: u32 = batch::pod(raw.key(i));
            let sum = batch::sum_per_cpu_u64(raw.value(i), std::mem::size_of::<Counter>());
            let sum = Counter {
                packets: sum[0],
                bytes: sum[1],
            };
            if slot == MONITOR_LOST_SLOT {
                snap.monitor_events_lost = sum.packets;
                continue;
            }
            if slot == CONNECTIONS_CREATED_SLOT {
                snap.connections_created = sum.packets;
                continue;
            }
            if sum.packets == 0 {
                continue;
            }
            if let Some(key) = Verdict::from_counter_slot(slot) {
                snap.by_verdict.insert(key, sum);
            }
        }
        snap
    }

    /// The non-zero counters in slot order (direction, then reason code,
    /// then forwards), as `status` and `maps dump` list them.
    pub fn in_slot_order(&self) -> Vec<((Direction, Verdict), Counter)> {
        let mut rows: Vec<_> = self.by_verdict.iter().map(|(k, c)| (*k, *c)).collect();
        rows.sort_by_key(|((d, v), _)| v.counter_slot(*d));
        rows
    }

    /// Packets and bytes for one direction and verdict (zero if never seen).
    pub fn get(&self, direction: Direction, verdict: Verdict) -> Counter {
        self.by_verdict
            .get(&(direction, verdict))
            .copied()
            .unwrap_or_default()
    }

    /// What happened between `earlier` and `self` (counters only grow).
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        let mut by_verdict = BTreeMap::new();
        for (k, now) in &self.by_verdict {
            let before = earlier.by_verdict.get(k).copied().unwrap_or_default();
            let d = Counter {
                packets: now.packets - before.packets,
                bytes: now.bytes - before.bytes,
            };
            if d.packets != 0 {
                by_verdict.insert(*k, d);
            }
        }
        CounterSnapshot {
            by_verdict,
            monitor_events_lost: self.monitor_events_lost - earlier.monitor_events_lost,
            connections_created: self.connections_created - earlier.connections_created,
        }
    }
}

// Keep the slot layout assumptions next to the decoder that relies on them.
const _: () = assert!(common::FORWARD_SLOT_BASE < common::SLOTS_PER_DIRECTION);
const _: () = {
    let mut i = 0;
    while i < common::DropReason::ALL.len() {
        assert!(common::DropReason::ALL[i] as u32 <= common::FORWARD_SLOT_BASE);
        i += 1;
    }
};
