//! `GROUP_PAIRS`: pairs of different non-system owners → how many groups
//! they share (a hash: only pairs that share one are present).

use std::collections::BTreeSet;

use aya::maps::IterableMap as _;
use netfabric_common::{self as common, OwnerPair};

use super::{Change, DesiredMap, Entries, Result};
use crate::datapath::{Datapath, batch, hash_insert, hash_remove};

/// `GROUP_PAIRS` as the agent plans it: owner pair → shared groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPairs;

impl DesiredMap for GroupPairs {
    const NAME: &'static str = common::GROUP_PAIRS;
    type Key = OwnerPair;
    /// The number of groups the two owners share (> 0).
    type Value = u32;

    fn set(dp: &mut Datapath, pair: OwnerPair, shared: u32) -> Result<()> {
        dp.set_group_pair(pair.low, pair.high, shared)
    }

    fn clear(dp: &mut Datapath, pair: OwnerPair) -> Result<()> {
        dp.remove_group_pair(pair.low, pair.high)
    }

    fn read(dp: &Datapath, _zone_slots: &BTreeSet<u32>) -> Result<Entries<Self>> {
        Ok(dp.group_pairs()?.into_iter().collect())
    }

    /// A pair that goes, or shares fewer groups, narrows.
    fn narrowing(pair: OwnerPair, current: &u32, desired: Option<&u32>) -> Option<Change<Self>> {
        match desired {
            None => Some(Change::Clear { key: pair }),
            Some(&n) if n < *current => Some(Change::Set {
                key: pair,
                value: n,
            }),
            Some(_) => None,
        }
    }

    /// Only a new pair, or one sharing more groups, is written afterwards
    /// (a lower count was written while narrowing).
    fn widening(current: Option<&u32>, desired: &u32) -> bool {
        current.is_none_or(|n| n < desired)
    }
}

impl Datapath {
    /// Record that owners `a` and `b` share `shared_groups` (> 0) groups.
    /// A full table is an error, never a silent allow or drop of the entry.
    pub fn set_group_pair(&mut self, a: u32, b: u32, shared_groups: u32) -> Result<()> {
        let pair = OwnerPair::new(a, b);
        hash_insert(
            common::GROUP_PAIRS,
            self.group_pairs_capacity,
            self.group_pairs.insert(pair, shared_groups, 0),
        )
    }

    /// Owners `a` and `b` no longer share any group.
    pub fn remove_group_pair(&mut self, a: u32, b: u32) -> Result<()> {
        hash_remove(
            common::GROUP_PAIRS,
            self.group_pairs.remove(&OwnerPair::new(a, b)),
        )
    }

    /// Every pair (batched).
    pub fn group_pairs(&self) -> Result<Vec<(OwnerPair, u32)>> {
        let raw = batch::read_all(self.group_pairs.map(), common::GROUP_PAIRS)?;
        Ok(raw.typed().collect())
    }

    pub fn group_pairs_capacity(&self) -> u32 {
        self.group_pairs_capacity
    }
}
