//! TC ingress on a container's host-side port: traffic a container sends.
//!
//! anti-spoofing → a VIP is balanced and translated to a backend
//! (`service`) → destination lookup → policy → TTL → route → port scope
//! (security groups; a reply of a tracked connection passes) → same-host
//! delivery
//! (`bpf_redirect_peer` into the destination container, a service
//! member's reply translated back to the VIP) or out of the uplink
//! to the next hop; destinations outside every zone go to the host stack.
//!
//! A container never sends a VLAN-tagged frame: the kernel strips the outer
//! tag into the skb before TC runs (`vlan_present`), and a stacked one is
//! still in the frame; either is `vlan_tagged` (a redirect would carry the
//! tag out of the uplink).

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_redirect_peer},
    macros::classifier,
    programs::TcContext,
};
use netfabric_common::{
    Direction, DropReason, Endpoint, Forward, SYSTEM_OWNER, Verdict,
    policy::{EGRESS_DENIED, INGRESS_SCOPED, Party, SERVICE_BACKEND},
    resolver::RESOLVER_ADDR,
};

use crate::{
    conntrack::{self, Peer},
    metrics::record,
    parse::{Packet, arp, eth, ipv4, l4, vlan},
    policy::{Location, check, endpoint_in_zone, host_config, locate},
    route::{self, Egress, check_ttl, rewrite},
    service, spoof,
};

/// Make the Ethernet header, the longest IPv4 header and the transport
/// header fields connection tracking and port scopes read (`parse::l4`)
/// linear (TC only).
#[inline(always)]
pub fn linear_packet(ctx: &TcContext) -> Packet {
    const WANT: usize = eth::ETH_HLEN + 60 + 14;
    let have = ctx.data_end() - ctx.data();
    let len = ctx.len() as usize;
    if have < WANT && len > have {
        let _ = ctx.pull_data(if len < WANT { len } else { WANT } as u32);
    }
    Packet::tc(ctx.data(), ctx.data_end(), len)
}

#[classifier]
pub fn from_container(ctx: TcContext) -> i32 {
    let (ifindex, tagged) = unsafe { ((*ctx.skb.skb).ifindex, (*ctx.skb.skb).vlan_present != 0) };
    let mut pkt = linear_packet(&ctx);
    let (verdict, action) = match try_from_container(&ctx, &mut pkt, ifindex, tagged) {
        Ok((forward, action)) => (Verdict::Forwarded(forward), action),
        Err(reason) => (Verdict::Dropped(reason), TC_ACT_SHOT),
    };
    record(Direction::FromContainer, verdict, &pkt, ifindex);
    action
}

#[inline(always)]
fn try_from_container(
    ctx: &TcContext,
    pkt: &mut Packet,
    ifindex: u32,
    tagged: bool,
) -> Result<(Forward, i32), DropReason> {
    let (eth, ether_type) = eth::parse(pkt)?;
    let eth_src = eth::src_mac(eth);
    let host = host_config()?;
    if tagged {
        return Err(DropReason::VlanTagged);
    }
    match ether_type {
        eth::ETH_P_IP => {}
        eth::ETH_P_ARP => {
            let (sender_mac, sender_ip) = arp::parse(pkt)?;
            spoof::check_container_arp(host, ifindex, eth_src, sender_mac, sender_ip)?;
            // Honest ARP goes on to the host bridge (gateway resolution).
            return Ok((Forward::Stack, TC_ACT_OK));
        }
        eth::ETH_P_IPV6 => return Err(DropReason::Ipv6NotSupported),
        t if vlan::is_tag(t) => return Err(DropReason::VlanTagged),
        _ => return Err(DropReason::Malformed),
    }

    let ip = ipv4::parse(pkt)?;
    spoof::check_container_ipv4(host, ifindex, eth_src, ip.src)?;
    // The source is in this host's /24 (checked above): its zone is ours.
    // A port whose address has no owner fails closed.
    let src = endpoint_in_zone(host.zone_slot, ip.src).ok_or(DropReason::UnknownSource)?;

    // A VIP: balanced and translated first; everything below judges the
    // packet the backend gets.
    let (eth, ip, balanced) = if service::is_vip(host, ip.dst) {
        let (balanced, t) = service::balance(ctx, pkt, &ip)?;
        (t.eth, t.ip, Some(balanced))
    } else {
        (eth, ip, None)
    };

    let (dst_zone, dst) = match locate(host, ip.dst) {
        Location::Container {
            zone_slot,
            endpoint,
        } => (zone_slot, endpoint),
        Location::Vacant => return Err(DropReason::UnknownDestination),
        // Outside every zone: the host stack routes (and NATs) it. Make sure
        // it is addressed to the host, not bridged to another port.
        Location::Outside => {
            egress(pkt, &ip, src)?;
            eth::set_dst_mac(eth, &host.gateway_mac);
            return Ok((Forward::Stack, TC_ACT_OK));
        }
    };

    check(Party::Owner(src.owner), src.groups, dst)?;
    check_ttl(&ip)?;
    let route = route::egress(host, ip.dst, dst_zone)?;
    // What touches the connection table comes last: only a packet that is
    // forwarded moves it.
    conntrack::check_scope(pkt, &ip, src, dst)?;
    if src.groups & INGRESS_SCOPED != 0 {
        // Its replies will be judged against the sender's port scopes.
        let l4 = l4::parse(pkt, &ip)?;
        conntrack::track_scoped(&l4.key(&ip), &l4, src, dst);
    }
    if let Some(balanced) = &balanced {
        service::commit(balanced, pkt.len() as u64);
    }
    match route {
        Egress::Port(port) => {
            rewrite(eth, &ip, &host.gateway_mac, &port.mac);
            // A service member answering a client of this host: back to
            // the VIP (after the judgement, which saw the real ends).
            if balanced.is_none() && src.groups & SERVICE_BACKEND != 0 {
                service::reply(ctx, pkt, &ip)?;
            }
            Ok((
                Forward::Local,
                unsafe { bpf_redirect_peer(port.ifindex, 0) } as i32,
            ))
        }
        Egress::Uplink(nh) => {
            rewrite(eth, &ip, &host.uplink_mac, &nh.mac);
            Ok((
                Forward::Remote,
                unsafe { bpf_redirect(host.uplink_ifindex, 0) } as i32,
            ))
        }
    }
}

/// A packet from the container `src` to an address outside every zone: an
/// owner denied egress may reach only the host's resolver; a non-system
/// owner's connection is tracked so that its replies from outside pass
/// (`to_container`). The resolver's replies pass without state.
#[inline(always)]
fn egress(pkt: &Packet, ip: &ipv4::Ipv4, src: Endpoint) -> Result<(), DropReason> {
    if ip.dst == RESOLVER_ADDR {
        return Ok(());
    }
    if src.groups & EGRESS_DENIED != 0 {
        return Err(DropReason::EgressDenied);
    }
    if src.owner != SYSTEM_OWNER {
        let l4 = l4::parse(pkt, ip)?;
        conntrack::track(&l4.key(ip), &l4, src.owner, Peer::Outside);
    }
    Ok(())
}
