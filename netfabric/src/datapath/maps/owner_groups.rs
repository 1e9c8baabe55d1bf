//! `OWNER_GROUPS`: slot `owner % 65,536` → that owner's exact group keys,
//! so that the programs judge a pair of listed owners from two array
//! entries instead of a cold `GROUP_PAIRS` lookup. `GROUP_PAIRS` stays
//! complete: an owner without its entry (more groups than an entry holds,
//! a slot or a group key it would share) is judged by the pairs.

use std::collections::BTreeSet;

use aya::maps::IterableMap as _;
use netfabric_common::{self as common, OwnerGroups, owner_groups_index};

use super::{Change, DesiredMap, Entries, Result};
use crate::datapath::{Datapath, batch, map_err};

/// `OWNER_GROUPS` as the agent plans it: slot → the entry of the one
/// owner listed there (`agent::plan::OwnerGroupLists`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerGroupsMap;

impl DesiredMap for OwnerGroupsMap {
    const NAME: &'static str = common::OWNER_GROUPS;
    /// `owner_groups_index(owner)`.
    type Key = u32;
    type Value = OwnerGroups;

    fn set(dp: &mut Datapath, index: u32, groups: OwnerGroups) -> Result<()> {
        debug_assert_eq!(index, owner_groups_index(groups.owner));
        dp.set_owner_groups(groups)
    }

    fn clear(dp: &mut Datapath, index: u32) -> Result<()> {
        dp.clear_owner_groups(index)
    }

    fn read(dp: &Datapath, _zone_slots: &BTreeSet<u32>) -> Result<Entries<Self>> {
        Ok(dp.all_owner_groups()?.into_iter().collect())
    }

    /// A list answers for its owner's pairs (while the other owner is
    /// listed too), so it narrows with the pair removals: an entry that
    /// goes or changes owner is cleared; one of the same owner keeps only
    /// the keys both states have, the rest comes after the pairs are added.
    fn narrowing(
        index: u32,
        current: &OwnerGroups,
        desired: Option<&OwnerGroups>,
    ) -> Option<Change<Self>> {
        match desired {
            Some(want) if want.owner == current.owner => {
                let kept = shared_keys(current, want);
                (kept != *current).then_some(Change::Set {
                    key: index,
                    value: kept,
                })
            }
            _ => Some(Change::Clear { key: index }),
        }
    }

    /// Whatever the narrowing write left short of `desired`.
    fn widening(current: Option<&OwnerGroups>, desired: &OwnerGroups) -> bool {
        match current {
            Some(now) if now.owner == desired.owner => shared_keys(now, desired) != *desired,
            _ => true,
        }
    }
}

/// `current` with only the keys `desired` has too (in `current`'s order).
fn shared_keys(current: &OwnerGroups, desired: &OwnerGroups) -> OwnerGroups {
    let kept: Vec<u32> = current
        .keys()
        .iter()
        .copied()
        .filter(|k| desired.keys().contains(k))
        .collect();
    OwnerGroups::new(current.owner, &kept).unwrap_or(*current)
}

impl Datapath {
    /// An owner's exact groups (at `owner_groups_index(groups.owner)`):
    /// while both owners of a pair are listed, the programs judge it from
    /// the lists instead of `GROUP_PAIRS`, so a list must hold every group
    /// of its owner.
    pub fn set_owner_groups(&mut self, groups: OwnerGroups) -> Result<()> {
        self.owner_groups
            .set(owner_groups_index(groups.owner), groups, 0)
            .map_err(map_err(common::OWNER_GROUPS))
    }

    /// Empties slot `index`: its owner is judged by `GROUP_PAIRS` again.
    pub fn clear_owner_groups(&mut self, index: u32) -> Result<()> {
        self.owner_groups
            .set(index, OwnerGroups::default(), 0)
            .map_err(map_err(common::OWNER_GROUPS))
    }

    /// Every used slot: index → entry (65,536 slots in a few batch reads).
    pub fn all_owner_groups(&self) -> Result<Vec<(u32, OwnerGroups)>> {
        let raw = batch::read_all(self.owner_groups.map(), common::OWNER_GROUPS)?;
        Ok(raw
            .typed::<u32, OwnerGroups>()
            .filter(|(_, g)| g.owner != common::NO_OWNER)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::maps::{narrowing_of, widening_of};

    fn list(owner: u32, keys: &[u32]) -> OwnerGroups {
        OwnerGroups::new(owner, keys).expect("fits")
    }

    #[test]
    fn a_list_narrows_to_the_shared_keys_and_widens_to_the_rest() {
        let entries = |g: Option<OwnerGroups>| -> Entries<OwnerGroupsMap> {
            g.map(|g| (owner_groups_index(g.owner), g))
                .into_iter()
                .collect()
        };
        let i = owner_groups_index(7);
        let now = entries(Some(list(7, &[1, 2, 3])));
        // Loses 1, gains 4: first {2, 3}, then {2, 3, 4}.
        let want = entries(Some(list(7, &[2, 3, 4])));
        assert_eq!(
            narrowing_of::<OwnerGroupsMap>(i, &now, &want),
            Some(Change::Set {
                key: i,
                value: list(7, &[2, 3])
            })
        );
        assert_eq!(
            widening_of::<OwnerGroupsMap>(i, &now, &want),
            Some(Change::Set {
                key: i,
                value: list(7, &[2, 3, 4])
            })
        );
        // Only losing: the narrowing write is the whole change.
        let fewer = entries(Some(list(7, &[3])));
        assert!(narrowing_of::<OwnerGroupsMap>(i, &now, &fewer).is_some());
        assert_eq!(widening_of::<OwnerGroupsMap>(i, &now, &fewer), None);
        // Only gaining: nothing narrows.
        let more = entries(Some(list(7, &[1, 2, 3, 9])));
        assert_eq!(narrowing_of::<OwnerGroupsMap>(i, &now, &more), None);
        assert!(widening_of::<OwnerGroupsMap>(i, &now, &more).is_some());
        // Another owner on the slot, or none: cleared first.
        let other = entries(Some(list(7 + common::OWNER_GROUPS_ENTRIES, &[1])));
        assert_eq!(
            narrowing_of::<OwnerGroupsMap>(i, &now, &other),
            Some(Change::Clear { key: i })
        );
        assert!(widening_of::<OwnerGroupsMap>(i, &now, &other).is_some());
        assert_eq!(
            narrowing_of::<OwnerGroupsMap>(i, &now, &entries(None)),
            Some(Change::Clear { key: i })
        );
        assert_eq!(narrowing_of::<OwnerGroupsMap>(i, &now, &now), None);
        assert_eq!(widening_of::<OwnerGroupsMap>(i, &now, &now), None);
    }
}
