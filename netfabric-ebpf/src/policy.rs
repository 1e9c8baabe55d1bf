//! Who owns an address, and may two parties talk (docs/policy.md#the-rule). The rule itself
//! is `netfabric_common::policy::allows`, shared with the reference model.

use netfabric_common::{
    DropReason, Endpoint, HostConfig, NO_OWNER, OwnerGroups, OwnerPair, owner_groups_index,
    plan::{endpoint_index, zone_prefix_index},
    policy::{Party, allows, lists_share_a_group, may_share_group},
};

use crate::maps::{ENDPOINTS, GROUP_PAIRS, OWNER_GROUPS, ZONE_BY_PREFIX};

/// Where an address sits in the address plan.
pub enum Location {
    /// Outside every zone.
    Outside,
    /// A container in zone slot `zone_slot`: its `ENDPOINTS` entry (owner
    /// and groups bloom).
    Container { zone_slot: u32, endpoint: Endpoint },
    /// Inside a zone, but no container has this address.
    Vacant,
}

/// Two array lookups indexed by address bits; no hashing. An address of
/// this host's own zone (the common case) skips the first: its slot is in
/// `host`.
#[inline(always)]
pub fn locate(host: &HostConfig, addr: u32) -> Location {
    let zone = if addr & 0xffff_0000 == host.zone_prefix {
        host.zone_slot
    } else {
        match ZONE_BY_PREFIX.get(zone_prefix_index(addr)) {
            Some(&z) if z != 0 => z - 1,
            _ => return Location::Outside,
        }
    };
    match endpoint_in_zone(zone, addr) {
        Some(endpoint) => Location::Container {
            zone_slot: zone,
            endpoint,
        },
        None => Location::Vacant,
    }
}

/// Is `addr` inside any zone (this host's included: the agent writes every
/// zone into `ZONE_BY_PREFIX`)? One array lookup, no host configuration
/// needed.
#[inline(always)]
pub fn in_a_zone(addr: u32) -> bool {
    matches!(ZONE_BY_PREFIX.get(zone_prefix_index(addr)), Some(&z) if z != 0)
}

/// The `ENDPOINTS` entry (owner, groups bloom) of `addr`, known to be in
/// zone `zone_slot`, if a container has it: one array lookup.
#[inline(always)]
pub fn endpoint_in_zone(zone_slot: u32, addr: u32) -> Option<Endpoint> {
    match ENDPOINTS.get(endpoint_index(zone_slot, addr)) {
        Some(e) if e.owner != NO_OWNER => Some(*e),
        _ => None,
    }
}

/// May `src` (with groups bloom `src_groups`; unused for `Outside`) reach a
/// container of `dst`? Only when two different non-system owners meet whose
/// group blooms overlap (disjoint blooms: no shared group, denied without
/// more) are their groups looked at: [`shares_a_group`].
#[inline(always)]
pub fn check(src: Party, src_groups: u32, dst: Endpoint) -> Result<(), DropReason> {
    let shares_group =
        |pair: &OwnerPair| may_share_group(src_groups, dst.groups) && shares_a_group(pair);
    if allows(src, Party::Owner(dst.owner), shares_group) {
        Ok(())
    } else {
        Err(DropReason::PolicyDenied)
    }
}

/// Do the two owners of `pair` share a group? Both listed in
/// `OWNER_GROUPS`: their exact lists say (two entries of a 2 MiB array, one
/// cache line each); otherwise the one hash lookup in `GROUP_PAIRS`, which
/// holds every pair (a cold lookup reads a bucket and then an element, each
/// anywhere in tens of MiB: about twice the cost of the lists when cold).
#[inline(always)]
fn shares_a_group(pair: &OwnerPair) -> bool {
    match (owner_groups(pair.low), owner_groups(pair.high)) {
        (Some(a), Some(b)) => lists_share_a_group(a, b),
        _ => unsafe { GROUP_PAIRS.get(pair) }.is_some(),
    }
}

/// `owner`'s exact group list, if its slot holds it.
#[inline(always)]
fn owner_groups(owner: u32) -> Option<&'static OwnerGroups> {
    match OWNER_GROUPS.get(owner_groups_index(owner)) {
        Some(g) if g.owner == owner && owner != NO_OWNER => Some(g),
        _ => None,
    }
}

/// The policy party of a source at `location` and its groups bloom; a
/// vacant zone address is `UnknownSource`.
#[inline(always)]
pub fn source_party(location: &Location) -> Result<(Party, u32), DropReason> {
    match *location {
        Location::Container { endpoint, .. } => Ok((Party::Owner(endpoint.owner), endpoint.groups)),
        Location::Vacant => Err(DropReason::UnknownSource),
        Location::Outside => Ok((Party::Outside, 0)),
    }
}

/// This host's identity, or `NoRoute` while the agent has not configured it
/// (fail closed).
#[inline(always)]
pub fn host_config() -> Result<&'static HostConfig, DropReason> {
    match crate::maps::HOST_CONFIG.get(0) {
        Some(h) if h.flags & netfabric_common::FLAG_PRESENT != 0 => Ok(h),
        _ => Err(DropReason::NoRoute),
    }
}
