//! `NEXT_HOPS`: every host of every zone → its underlay address and MAC.

use std::{collections::BTreeSet, net::Ipv4Addr};

use aya::maps::IterableMap as _;
use netfabric_common::{self as common, NextHop, plan::next_hop_index};

use super::{DesiredMap, Entries, Result};
use crate::datapath::{Datapath, batch, check_slot, map_err};

/// `NEXT_HOPS` as the agent plans it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHops;

/// Where a host sits in `NEXT_HOPS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextHopKey {
    pub zone_slot: u32,
    /// The host's number: the third octet of its /24.
    pub host_octet: u8,
}

/// A next hop on the underlay as the plan sees it: the MAC frames to it
/// are sent to and the underlay address it stands for (a `NEXT_HOPS` or
/// `ZONE_GATEWAYS` value without its flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnderlayHop {
    pub mac: [u8; 6],
    pub underlay: Ipv4Addr,
}

impl From<NextHop> for UnderlayHop {
    fn from(h: NextHop) -> Self {
        UnderlayHop {
            mac: h.mac,
            underlay: Ipv4Addr::from(h.underlay_ip),
        }
    }
}

impl DesiredMap for NextHops {
    const NAME: &'static str = common::NEXT_HOPS;
    type Key = NextHopKey;
    type Value = UnderlayHop;

    fn set(dp: &mut Datapath, key: NextHopKey, hop: UnderlayHop) -> Result<()> {
        dp.set_next_hop(key.zone_slot, key.host_octet, hop.mac, hop.underlay)
    }

    fn clear(dp: &mut Datapath, key: NextHopKey) -> Result<()> {
        dp.clear_next_hop(key.zone_slot, key.host_octet)
    }

    /// The zones in use only.
    fn read(dp: &Datapath, zone_slots: &BTreeSet<u32>) -> Result<Entries<Self>> {
        Ok(dp
            .all_next_hops()?
            .into_iter()
            .filter(|((slot, _), _)| zone_slots.contains(slot))
            .map(|((zone_slot, host_octet), h)| {
                (
                    NextHopKey {
                        zone_slot,
                        host_octet,
                    },
                    h.into(),
                )
            })
            .collect())
    }
}

pub(crate) fn present_hop(mac: [u8; 6], underlay: Ipv4Addr) -> NextHop {
    NextHop {
        underlay_ip: underlay.into(),
        mac,
        flags: common::FLAG_PRESENT,
    }
}

impl Datapath {
    /// Underlay next hop of host `host_octet` of zone `zone_slot`.
    pub fn set_next_hop(
        &mut self,
        zone_slot: u32,
        host_octet: u8,
        mac: [u8; 6],
        underlay: Ipv4Addr,
    ) -> Result<()> {
        check_slot(zone_slot)?;
        self.next_hops
            .set(
                next_hop_index(zone_slot, host_octet.into()),
                present_hop(mac, underlay),
                0,
            )
            .map_err(map_err(common::NEXT_HOPS))
    }

    pub fn clear_next_hop(&mut self, zone_slot: u32, host_octet: u8) -> Result<()> {
        check_slot(zone_slot)?;
        self.next_hops
            .set(
                next_hop_index(zone_slot, host_octet.into()),
                NextHop::default(),
                0,
            )
            .map_err(map_err(common::NEXT_HOPS))
    }

    /// The next hop of host `host_octet` of zone `zone_slot`, if set.
    pub fn next_hop(&self, zone_slot: u32, host_octet: u8) -> Result<Option<NextHop>> {
        check_slot(zone_slot)?;
        let h = self
            .next_hops
            .get(&next_hop_index(zone_slot, host_octet.into()), 0)
            .map_err(map_err(common::NEXT_HOPS))?;
        Ok((h.flags & common::FLAG_PRESENT != 0).then_some(h))
    }

    /// Every next hop set: (zone slot, host octet) → hop (batched).
    pub fn all_next_hops(&self) -> Result<Vec<((u32, u8), NextHop)>> {
        let raw = batch::read_all(self.next_hops.map(), common::NEXT_HOPS)?;
        Ok(raw
            .typed::<u32, NextHop>()
            .filter(|(_, h)| h.flags & common::FLAG_PRESENT != 0)
            .map(|(i, h)| ((i >> 8, i as u8), h))
            .collect())
    }
}
