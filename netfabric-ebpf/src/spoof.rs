//! Source checks: identity comes from the source address, so it must be
//! trustworthy (docs/policy.md#identity-comes-from-the-source-address). MACs are compared as [`mac_bits`].

use netfabric_common::{
    DropReason, FLAG_PRESENT, HostConfig,
    plan::{host_octet, next_hop_index},
};

use crate::{
    maps::NEXT_HOPS,
    parse::mac_bits,
    route::{is_local, local_port},
};

/// Is `ip` the address of the container behind port `ifindex`? Returns that
/// container's MAC.
#[inline(always)]
fn own_mac(host: &HostConfig, ip: u32, ifindex: u32) -> Option<u64> {
    if !is_local(host, ip) {
        return None;
    }
    match local_port(ip) {
        Some(p) if p.ifindex == ifindex => Some(mac_bits(&p.mac)),
        _ => None,
    }
}

/// IPv4 sent by the container behind `ifindex`: its own address and MAC only.
#[inline(always)]
pub fn check_container_ipv4(
    host: &HostConfig,
    ifindex: u32,
    eth_src: u64,
    src_ip: u32,
) -> Result<(), DropReason> {
    let mac = own_mac(host, src_ip, ifindex).ok_or(DropReason::SpoofedSourceIp)?;
    if mac != eth_src {
        return Err(DropReason::SpoofedSourceMac);
    }
    Ok(())
}

/// ARP sent by the container behind `ifindex`: sender IP, sender MAC and
/// Ethernet source must all be its own.
#[inline(always)]
pub fn check_container_arp(
    host: &HostConfig,
    ifindex: u32,
    eth_src: u64,
    sender_mac: u64,
    sender_ip: u32,
) -> Result<(), DropReason> {
    match own_mac(host, sender_ip, ifindex) {
        Some(mac) if mac == sender_mac && mac == eth_src => Ok(()),
        _ => Err(DropReason::SpoofedArp),
    }
}

/// A zone source arriving on the uplink must come from the underlay MAC of
/// the host whose /24 it claims; a source of another zone only through the
/// zone's router. This host's own /24 never arrives from outside.
#[inline(always)]
pub fn check_uplink_source(
    host: &HostConfig,
    eth_src: u64,
    src_ip: u32,
    src_zone: u32,
) -> Result<(), DropReason> {
    let expected = if src_zone == host.zone_slot {
        if host_octet(src_ip) == host.host_octet {
            return Err(DropReason::SpoofedWrongHost);
        }
        match NEXT_HOPS.get(next_hop_index(src_zone, host_octet(src_ip))) {
            Some(nh) if nh.flags & FLAG_PRESENT != 0 => mac_bits(&nh.mac),
            _ => return Err(DropReason::SpoofedWrongHost),
        }
    } else {
        // No router configured (all zeros): nothing may claim another
        // zone's source.
        match mac_bits(&host.zone_router_mac) {
            0 => return Err(DropReason::SpoofedWrongHost),
            router => router,
        }
    };
    if expected == eth_src {
        Ok(())
    } else {
        Err(DropReason::SpoofedWrongHost)
    }
}
