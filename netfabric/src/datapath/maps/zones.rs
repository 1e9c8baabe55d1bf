//! `ZONE_BY_PREFIX`: the top 16 bits of an address → its zone's slot + 1
//! (0: not a zone).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use aya::maps::IterableMap as _;
use netfabric_common::{self as common, plan::zone_prefix_index};

use super::{DesiredMap, Entries, Result};
use crate::datapath::{Datapath, batch, check_slot, map_err};

/// `ZONE_BY_PREFIX` as the agent plans it: top 16 address bits → zone slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zones;

impl DesiredMap for Zones {
    const NAME: &'static str = common::ZONE_BY_PREFIX;
    /// The /16's top 16 bits (`0x0a01` for 10.1.0.0/16).
    type Key = u16;
    /// The zone slot.
    type Value = u32;

    fn set(dp: &mut Datapath, key: u16, slot: u32) -> Result<()> {
        dp.set_zone(prefix_addr(key), slot)
    }

    fn clear(dp: &mut Datapath, key: u16) -> Result<()> {
        dp.clear_zone(prefix_addr(key))
    }

    fn read(dp: &Datapath, _zone_slots: &BTreeSet<u32>) -> Result<Entries<Self>> {
        dp.zones()
    }

    /// A prefix that moves to another slot is cleared first.
    fn narrowing(key: u16, current: &u32, desired: Option<&u32>) -> Option<super::Change<Self>> {
        (desired != Some(current)).then_some(super::Change::Clear { key })
    }
}

fn prefix_addr(top16: u16) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(top16) << 16)
}

impl Datapath {
    /// Declare the /16 starting at `prefix` as zone slot `slot`.
    pub fn set_zone(&mut self, prefix: Ipv4Addr, slot: u32) -> Result<()> {
        check_slot(slot)?;
        self.zone_by_prefix
            .set(zone_prefix_index(prefix.into()), slot + 1, 0)
            .map_err(map_err(common::ZONE_BY_PREFIX))
    }

    pub fn clear_zone(&mut self, prefix: Ipv4Addr) -> Result<()> {
        self.zone_by_prefix
            .set(zone_prefix_index(prefix.into()), 0, 0)
            .map_err(map_err(common::ZONE_BY_PREFIX))
    }

    /// Zone slot of the /16 containing `addr`, if it is a zone.
    pub fn zone_of(&self, addr: Ipv4Addr) -> Result<Option<u32>> {
        let v = self
            .zone_by_prefix
            .get(&zone_prefix_index(addr.into()), 0)
            .map_err(map_err(common::ZONE_BY_PREFIX))?;
        Ok(v.checked_sub(1))
    }

    /// Every zone: top 16 address bits → zone slot (batched).
    pub fn zones(&self) -> Result<BTreeMap<u16, u32>> {
        let raw = batch::read_all(self.zone_by_prefix.map(), common::ZONE_BY_PREFIX)?;
        Ok(raw
            .typed::<u32, u32>()
            .filter_map(|(prefix, v)| Some((u16::try_from(prefix).ok()?, v.checked_sub(1)?)))
            .collect())
    }
}
