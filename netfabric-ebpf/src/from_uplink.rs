//! XDP on the uplink: traffic from other hosts (and whatever the underlay
//! routes to this host).
//!
//! Every IPv4 packet claiming a container source must come from that
//! container's host's underlay MAC (`spoofed_wrong_host` otherwise). IPv4 for
//! a container of this host is then checked against policy, rewritten and
//! redirected straight into the container's port. Everything else (the
//! host's own traffic, ARP, IPv6, other protocols, other hosts' addresses)
//! passes to the stack untouched. IPv4 whose header cannot be parsed is
//! dropped as `malformed`: its destination cannot be trusted, and the stack
//! would drop it too.
//!
//! A frame whose EtherType is a VLAN tag (802.1Q, 802.1ad, or the old QinQ
//! 0x9100) is looked under: one or two tags over IPv4 whose source or
//! destination is inside a zone is dropped as `vlan_tagged` (netfabric never
//! tags; the kernel would strip the tag, a VID-0 priority tag even without a
//! VLAN device, and route the packet past the source check), and so is a
//! deeper stack than that. Tagged traffic touching no zone (the host's own
//! VLANs) passes. A NIC that strips tags itself (rx VLAN offload) hands XDP
//! plain IPv4, which the checks above cover. Untagged IPv4 pays nothing for
//! this: the tag test sits on the non-IPv4 branch.
//!
//! Declared multi-buffer aware (`frags`), so it can run on uplinks with jumbo
//! MTUs; only the linear part is parsed.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_redirect, macros::xdp, programs::XdpContext};
use netfabric_common::{Direction, DropReason, Forward, Verdict};

use crate::{
    metrics::record,
    parse::{
        Packet, eth, ipv4,
        vlan::{self, Inner},
    },
    policy::{Location, check, endpoint_in_zone, host_config, in_a_zone, locate, source_party},
    route::{check_ttl, is_local, local_port, rewrite},
    spoof,
};

#[xdp(frags)]
pub fn from_uplink(ctx: XdpContext) -> u32 {
    let mut pkt = Packet::xdp(ctx.ctx, ctx.data(), ctx.data_end());
    let (verdict, action) = match try_from_uplink(&mut pkt) {
        Ok((forward, action)) => (Verdict::Forwarded(forward), action),
        Err(reason) => (Verdict::Dropped(reason), xdp_action::XDP_DROP),
    };
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    record(Direction::FromUplink, verdict, &pkt, ifindex);
    action
}

const PASS: Result<(Forward, u32), DropReason> = Ok((Forward::Stack, xdp_action::XDP_PASS));

#[inline(always)]
fn try_from_uplink(pkt: &mut Packet) -> Result<(Forward, u32), DropReason> {
    let (eth, ether_type) = eth::parse(pkt)?;
    if ether_type != eth::ETH_P_IP {
        // Counted with the whole frame's length (it may be multi-buffer).
        pkt.load_frame_len();
        if vlan::is_tag(ether_type) {
            return judge_tagged(pkt);
        }
        return PASS;
    }
    let ip = ipv4::parse(pkt)?;
    let Ok(host) = host_config() else {
        return PASS;
    };

    // docs/policy.md#identity-comes-from-the-source-address: a packet claiming a container source must come from that
    // container's host, whatever its destination (so that nothing the stack
    // gets from here carries a forged container identity).
    let src_location = locate(host, ip.src);
    if let Location::Container { zone_slot, .. } = src_location {
        spoof::check_uplink_source(host, eth::src_mac(eth), ip.src, zone_slot)?;
    }
    if !is_local(host, ip.dst) {
        return PASS;
    }

    // From here on the packet is for this host's /24 (of this host's zone),
    // which only containers use.
    let dst = endpoint_in_zone(host.zone_slot, ip.dst).ok_or(DropReason::UnknownDestination)?;
    let port = local_port(ip.dst).ok_or(DropReason::UnknownDestination)?;
    let (src, src_groups) = source_party(&src_location)?;
    check(src, src_groups, dst)?;
    check_ttl(&ip)?;
    rewrite(eth, &ip, &host.gateway_mac, &port.mac);
    Ok((Forward::Local, unsafe { bpf_redirect(port.ifindex, 0) }
        as u32))
}

/// A frame under one or more VLAN tags: it must not carry zone traffic.
#[inline(always)]
fn judge_tagged(pkt: &Packet) -> Result<(Forward, u32), DropReason> {
    match vlan::inner(pkt)? {
        Inner::Ipv4 { src, dst } if in_a_zone(src) || in_a_zone(dst) => Err(DropReason::VlanTagged),
        Inner::TooDeep => Err(DropReason::VlanTagged),
        Inner::Ipv4 { .. } | Inner::Other => PASS,
    }
}
