//! TC egress on a container's host-side port: what the host stack sends into
//! a container (the host itself, or packets from outside every zone that the
//! host routed). Traffic our own programs deliver bypasses this hook
//! (`bpf_redirect_peer`, XDP redirect), so nothing is judged twice, and no
//! path into a container goes unchecked.
//!
//! For the same reason no container traffic legitimately arrives here: a
//! source inside any zone reached the host stack through some interface
//! (a VLAN the kernel untagged, a tunnel, a second NIC, ...) where nothing
//! checked it, so it is forged (`spoofed_wrong_host`). Only sources outside
//! every zone remain, and they may reach system containers only, except the
//! replies of the host's DNS resolver (`netfabric_common::resolver`: from
//! 169.254.1.1, UDP or TCP source port 53), which reach every container,
//! and the replies of connections the container opened to outside
//! (`conntrack::reply_allowed`: tracked, and its owner still may egress),
//! with the ICMP errors about them (`conntrack::error_allowed`: path MTU
//! discovery needs "fragmentation needed").
//! Tagged frames are `vlan_tagged`, as on the ingress.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use netfabric_common::{Direction, DropReason, Forward, Verdict, policy::Party, resolver};

use crate::{
    conntrack::{self, Peer},
    from_container::linear_packet,
    metrics::record,
    parse::{Packet, eth, ipv4, l4, vlan},
    policy::{check, endpoint_in_zone, host_config, in_a_zone},
    route::{is_local, local_port},
};

#[classifier]
pub fn to_container(ctx: TcContext) -> i32 {
    let (ifindex, tagged) = unsafe { ((*ctx.skb.skb).ifindex, (*ctx.skb.skb).vlan_present != 0) };
    let mut pkt = linear_packet(&ctx);
    let (verdict, action) = match try_to_container(&mut pkt, ifindex, tagged) {
        Ok(forward) => (Verdict::Forwarded(forward), TC_ACT_OK),
        Err(reason) => (Verdict::Dropped(reason), TC_ACT_SHOT),
    };
    record(Direction::ToContainer, verdict, &pkt, ifindex);
    action
}

#[inline(always)]
fn try_to_container(pkt: &mut Packet, ifindex: u32, tagged: bool) -> Result<Forward, DropReason> {
    let (_, ether_type) = eth::parse(pkt)?;
    if tagged {
        return Err(DropReason::VlanTagged);
    }
    match ether_type {
        eth::ETH_P_IP => {}
        // The bridge answering the container's gateway ARP.
        eth::ETH_P_ARP => return Ok(Forward::Local),
        eth::ETH_P_IPV6 => return Err(DropReason::Ipv6NotSupported),
        t if vlan::is_tag(t) => return Err(DropReason::VlanTagged),
        _ => return Err(DropReason::Malformed),
    }
    let ip = ipv4::parse(pkt)?;
    let host = host_config()?;

    // Only the container behind this port may receive here.
    let port_matches =
        is_local(host, ip.dst) && local_port(ip.dst).is_some_and(|p| p.ifindex == ifindex);
    if !port_matches {
        return Err(DropReason::UnknownDestination);
    }
    let dst = endpoint_in_zone(host.zone_slot, ip.dst).ok_or(DropReason::UnknownDestination)?;
    // Container traffic never comes this way (see the module doc): any zone
    // source, vacant or not, is forged. Our own zone is checked without the
    // map, like `locate` does.
    if ip.src & 0xffff_0000 == host.zone_prefix || in_a_zone(ip.src) {
        return Err(DropReason::SpoofedWrongHost);
    }
    if resolver::is_resolver_reply(ip.src, ip.protocol(), source_port(pkt, &ip)) {
        return Ok(Forward::Local);
    }
    if check(Party::Outside, 0, dst).is_err() {
        // Only the reply of a connection the container opened to outside;
        // a transport header too short to read cannot be one.
        let Ok(l4) = l4::parse(pkt, &ip) else {
            return Err(DropReason::PolicyDenied);
        };
        if !conntrack::reply_allowed(&l4.key(&ip), &l4, Peer::Outside, dst)
            && !conntrack::error_allowed(pkt, &ip, &l4, Peer::Outside, dst)
        {
            return Err(DropReason::PolicyDenied);
        }
    }
    Ok(Forward::Local)
}

/// The UDP/TCP source port of the first fragment, `None` for a later one or
/// a packet too short to hold it.
#[inline(always)]
fn source_port(pkt: &Packet, ip: &ipv4::Ipv4) -> Option<u16> {
    if ip.fragment_offset() != 0 {
        return None;
    }
    let port: *const [u8; 2] = pkt.ptr_at(eth::ETH_HLEN + ip.header_len()).ok()?;
    Some(u16::from_be_bytes(unsafe { *port }))
}
