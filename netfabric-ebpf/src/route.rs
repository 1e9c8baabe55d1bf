//! Next hops and the L3 rewrite (MACs, TTL with incremental checksum).

use netfabric_common::{
    DropReason, FLAG_PRESENT, HostConfig, LocalPort, NextHop,
    plan::{container_octet, host_octet, next_hop_index},
};

use crate::{
    maps::{LOCAL_PORTS, NEXT_HOPS, ZONE_GATEWAYS},
    parse::{
        eth::{EthHdr, set_macs},
        ipv4::Ipv4,
    },
};

/// Is `addr` inside this host's /24?
#[inline(always)]
pub fn is_local(host: &HostConfig, addr: u32) -> bool {
    addr & 0xffff_ff00 == host.zone_prefix | (host.host_octet << 8)
}

/// The port of local container `addr` (which must be in this host's /24).
#[inline(always)]
pub fn local_port(addr: u32) -> Option<&'static LocalPort> {
    match LOCAL_PORTS.get(container_octet(addr)) {
        Some(p) if p.flags & FLAG_PRESENT != 0 => Some(p),
        _ => None,
    }
}

/// Where a packet for container `dst` in zone `dst_zone` leaves this host.
pub enum Egress {
    /// Into a container of this host, through its port.
    Port(&'static LocalPort),
    /// Out of the uplink, to a host of this zone or a zone's gateway.
    Uplink(&'static NextHop),
}

#[inline(always)]
pub fn egress(host: &HostConfig, dst: u32, dst_zone: u32) -> Result<Egress, DropReason> {
    if dst_zone == host.zone_slot {
        if host_octet(dst) == host.host_octet {
            return local_port(dst)
                .map(Egress::Port)
                .ok_or(DropReason::UnknownDestination);
        }
        return match NEXT_HOPS.get(next_hop_index(dst_zone, host_octet(dst))) {
            Some(nh) if nh.flags & FLAG_PRESENT != 0 => Ok(Egress::Uplink(nh)),
            _ => Err(DropReason::NoRoute),
        };
    }
    match ZONE_GATEWAYS.get(dst_zone) {
        Some(gw) if gw.flags & FLAG_PRESENT != 0 => Ok(Egress::Uplink(gw)),
        _ => Err(DropReason::NoRoute),
    }
}

/// Refuse to forward a packet whose TTL would reach zero.
#[inline(always)]
pub fn check_ttl(ip: &Ipv4) -> Result<(), DropReason> {
    if ip.ttl() <= 1 {
        Err(DropReason::TtlExceeded)
    } else {
        Ok(())
    }
}

/// Route one hop: new MACs, TTL - 1, checksum updated incrementally.
#[inline(always)]
pub fn rewrite(eth: *mut EthHdr, ip: &Ipv4, src_mac: &[u8; 6], dst_mac: &[u8; 6]) {
    set_macs(eth, src_mac, dst_mac);
    ip.decrement_ttl();
}
