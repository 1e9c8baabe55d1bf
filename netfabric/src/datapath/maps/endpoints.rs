//! `ENDPOINTS`: every container address of every zone → its owner and the
//! bloom of the owner's groups.

use std::{collections::BTreeSet, net::Ipv4Addr};

use aya::maps::IterableMap as _;
use netfabric_common::{self as common, Endpoint, plan::endpoint_index};

use super::{Change, DesiredMap, Entries, Result};
use crate::datapath::{Datapath, batch, check_slot, map_err};

/// `ENDPOINTS` as the agent plans it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints;

/// Where a container address sits in `ENDPOINTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    pub zone_slot: u32,
    /// The address's low 16 bits (host octet, container octet).
    pub low: u16,
}

impl EndpointKey {
    /// The key of `addr`, a container address of zone `zone_slot`.
    pub fn of(zone_slot: u32, addr: Ipv4Addr) -> Self {
        EndpointKey {
            zone_slot,
            low: (u32::from(addr) & 0xffff) as u16,
        }
    }
}

impl DesiredMap for Endpoints {
    const NAME: &'static str = common::ENDPOINTS;
    type Key = EndpointKey;
    /// The owner and its groups bloom (`agent::plan::Blooms`).
    type Value = Endpoint;

    fn set(dp: &mut Datapath, key: EndpointKey, e: Endpoint) -> Result<()> {
        dp.set_endpoint_groups(key.zone_slot, low_addr(key.low), e.owner, e.groups)
    }

    fn clear(dp: &mut Datapath, key: EndpointKey) -> Result<()> {
        dp.clear_endpoint(key.zone_slot, low_addr(key.low))
    }

    /// The zones in use only (65,536 slots each, in a few batch reads).
    fn read(dp: &Datapath, zone_slots: &BTreeSet<u32>) -> Result<Entries<Self>> {
        let mut out = Entries::<Self>::new();
        for &zone_slot in zone_slots {
            for (low, e) in dp.zone_endpoints(zone_slot)? {
                out.insert(EndpointKey { zone_slot, low }, e);
            }
        }
        Ok(out)
    }

    /// An endpoint that goes or changes owner is cleared first; a new
    /// groups bloom alone is written without clearing (its pairs are
    /// handled around it: narrowing pair removals before, pairs added
    /// after).
    fn narrowing(
        key: EndpointKey,
        current: &Endpoint,
        desired: Option<&Endpoint>,
    ) -> Option<Change<Self>> {
        (desired.map(|e| e.owner) != Some(current.owner)).then_some(Change::Clear { key })
    }
}

fn low_addr(low: u16) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(low))
}

impl Datapath {
    /// The owner of container `addr` and the bloom of the owner's groups
    /// (`agent::plan::Blooms`, `netfabric_common::policy::groups_bloom`):
    /// what the agent writes. Pairs whose blooms are disjoint are denied
    /// without a `GROUP_PAIRS` lookup, so the bloom must cover every group
    /// the owner is in. `groups` 0 is an unknown bloom (maps written
    /// before blooms existed): every pair is looked up.
    pub fn set_endpoint_groups(
        &mut self,
        zone_slot: u32,
        addr: Ipv4Addr,
        owner: u32,
        groups: u32,
    ) -> Result<()> {
        check_slot(zone_slot)?;
        let e = Endpoint { owner, groups };
        self.endpoints
            .set(endpoint_index(zone_slot, addr.into()), e, 0)
            .map_err(map_err(common::ENDPOINTS))
    }

    pub fn clear_endpoint(&mut self, zone_slot: u32, addr: Ipv4Addr) -> Result<()> {
        self.set_endpoint_groups(zone_slot, addr, common::NO_OWNER, 0)
    }

    pub fn endpoint(&self, zone_slot: u32, addr: Ipv4Addr) -> Result<Endpoint> {
        check_slot(zone_slot)?;
        self.endpoints
            .get(&endpoint_index(zone_slot, addr.into()), 0)
            .map_err(map_err(common::ENDPOINTS))
    }

    /// The occupied endpoints of zone `zone_slot`: low 16 address bits →
    /// endpoint (65,536 slots in a few batch reads).
    pub fn zone_endpoints(&self, zone_slot: u32) -> Result<Vec<(u16, Endpoint)>> {
        check_slot(zone_slot)?;
        let raw = batch::read_array_range(
            self.endpoints.map(),
            common::ENDPOINTS,
            endpoint_index(zone_slot, 0),
            1 << 16,
        )?;
        Ok(raw
            .typed::<u32, Endpoint>()
            .filter(|(_, e)| e.owner != common::NO_OWNER)
            .map(|(i, e)| (i as u16, e))
            .collect())
    }
}
