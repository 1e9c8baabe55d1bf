//! `ZONE_GATEWAYS`: every other zone → the next hop towards it.

use std::{collections::BTreeSet, net::Ipv4Addr};

use aya::maps::IterableMap as _;
use netfabric_common::{self as common, NextHop};

use super::{
    DesiredMap, Entries, Result,
    next_hops::{UnderlayHop, present_hop},
};
use crate::datapath::{Datapath, batch, check_slot, map_err};

/// `ZONE_GATEWAYS` as the agent plans it: zone slot → next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneGateways;

impl DesiredMap for ZoneGateways {
    const NAME: &'static str = common::ZONE_GATEWAYS;
    /// The (other) zone's slot.
    type Key = u32;
    type Value = UnderlayHop;

    fn set(dp: &mut Datapath, slot: u32, hop: UnderlayHop) -> Result<()> {
        dp.set_zone_gateway(slot, hop.mac, hop.underlay)
    }

    fn clear(dp: &mut Datapath, slot: u32) -> Result<()> {
        dp.clear_zone_gateway(slot)
    }

    fn read(dp: &Datapath, _zone_slots: &BTreeSet<u32>) -> Result<Entries<Self>> {
        Ok(dp
            .all_zone_gateways()?
            .into_iter()
            .map(|(slot, h)| (slot, h.into()))
            .collect())
    }
}

impl Datapath {
    /// The gateway towards zone `zone_slot`, if set.
    pub fn zone_gateway(&self, zone_slot: u32) -> Result<Option<NextHop>> {
        check_slot(zone_slot)?;
        let h = self
            .zone_gateways
            .get(&zone_slot, 0)
            .map_err(map_err(common::ZONE_GATEWAYS))?;
        Ok((h.flags & common::FLAG_PRESENT != 0).then_some(h))
    }

    /// Where packets for zone `zone_slot` (another zone) are sent.
    pub fn set_zone_gateway(
        &mut self,
        zone_slot: u32,
        mac: [u8; 6],
        underlay: Ipv4Addr,
    ) -> Result<()> {
        check_slot(zone_slot)?;
        self.zone_gateways
            .set(zone_slot, present_hop(mac, underlay), 0)
            .map_err(map_err(common::ZONE_GATEWAYS))
    }

    pub fn clear_zone_gateway(&mut self, zone_slot: u32) -> Result<()> {
        check_slot(zone_slot)?;
        self.zone_gateways
            .set(zone_slot, NextHop::default(), 0)
            .map_err(map_err(common::ZONE_GATEWAYS))
    }

    /// Every zone gateway set: zone slot → hop (batched).
    pub fn all_zone_gateways(&self) -> Result<Vec<(u32, NextHop)>> {
        let raw = batch::read_all(self.zone_gateways.map(), common::ZONE_GATEWAYS)?;
        Ok(raw
            .typed::<u32, NextHop>()
            .filter(|(_, h)| h.flags & common::FLAG_PRESENT != 0)
            .collect())
    }
}
