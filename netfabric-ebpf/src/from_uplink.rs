//! The uplink: traffic from other hosts (and whatever the underlay routes to
//! this host), judged here and delivered by `from_uplink_tc`.
//!
//! Every IPv4 packet claiming a container source must come from that
//! container's host's underlay MAC (`spoofed_wrong_host` otherwise). IPv4 for
//! a container of this host is then checked against policy and TTL.
//! Everything else (the host's own traffic, ARP, IPv6, other protocols, other
//! hosts' addresses) passes to the stack untouched. A receiver with security
//! groups is then asked about the protocol and port (`conntrack::check_scope`). IPv4 whose header cannot
//! be parsed is dropped as `malformed`: its destination cannot be trusted,
//! and the stack would drop it too.
//!
//! A frame whose EtherType is a VLAN tag (802.1Q, 802.1ad, or the old QinQ
//! 0x9100) is looked under: one or two tags over IPv4 whose source or
//! destination is inside a zone is dropped as `vlan_tagged` (netfabric never
//! tags; the kernel would strip the tag, a VID-0 priority tag even without a
//! VLAN device, and route the packet past the source check), and so is a
//! deeper stack than that. Tagged traffic touching no zone (the host's own
//! VLANs) passes. A tag the kernel or the NIC already stripped into the skb
//! counts as the first of those two. Untagged IPv4 pays nothing for this:
//! the tag test sits on the non-IPv4 branch.
//!
//! Two programs run [`judge`]:
//! * `from_uplink` (XDP, this file) is the early-drop prefilter: it drops
//!   (and counts) what the judgement drops, before the kernel builds or
//!   aggregates anything, and passes everything else uncounted.
//! * `from_uplink_tc` (TC ingress, TCX) judges again, in full, whatever
//!   reaches it, after GRO: it counts every verdict and delivers into the
//!   container with `bpf_redirect_peer`, so a GSO/GRO super-packet stays
//!   whole and keeps its checksum state (an XDP redirect would cut it into
//!   frames and lose CHECKSUM_PARTIAL).
//!
//! So each packet is counted once, in direction `from_uplink`: by the
//! prefilter when it drops it, else by the TC program; and nothing the
//! prefilter passed goes unjudged (without the prefilter, TC alone decides
//! the same).
//!
//! Declared multi-buffer aware (`frags`), so it can run on uplinks with jumbo
//! MTUs; only the linear part is parsed.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use netfabric_common::{Direction, DropReason, Endpoint, HostConfig, LocalPort, Verdict};

use crate::{
    conntrack,
    metrics::record,
    parse::{
        Packet,
        eth::{self, EthHdr},
        ipv4::{self, Ipv4},
        vlan::{self, Inner},
    },
    policy::{Location, check, endpoint_in_zone, host_config, in_a_zone, locate, source_party},
    route::{check_ttl, is_local, local_port},
    spoof,
};

#[xdp(frags)]
pub fn from_uplink(ctx: XdpContext) -> u32 {
    let mut pkt = Packet::xdp(ctx.ctx, ctx.data(), ctx.data_end());
    match judge(&mut pkt, false) {
        // Counted by `from_uplink_tc`, which judges it again.
        Ok(_) => xdp_action::XDP_PASS,
        Err(reason) => {
            let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
            record(
                Direction::FromUplink,
                Verdict::Dropped(reason),
                &pkt,
                ifindex,
            );
            xdp_action::XDP_DROP
        }
    }
}

/// What the uplink does with a packet it does not drop.
pub enum Judged {
    /// Hand it to the host stack untouched.
    Stack,
    /// Deliver it into the container behind `port` (after the L3 rewrite).
    Deliver {
        eth: *mut EthHdr,
        ip: Ipv4,
        host: &'static HostConfig,
        port: &'static LocalPort,
        /// The source container's entry (`None`: outside every zone).
        src: Option<Endpoint>,
        /// The destination container's entry.
        dst: Endpoint,
    },
}

/// The uplink's decision (see the module doc). `stripped_tag`: the skb
/// carries a VLAN tag the kernel took out of the frame (TC only).
#[inline(always)]
pub fn judge(pkt: &mut Packet, stripped_tag: bool) -> Result<Judged, DropReason> {
    let (eth, ether_type) = eth::parse(pkt)?;
    if stripped_tag {
        pkt.load_frame_len();
        return judge_tagged(vlan::inner_stripped(pkt, ether_type)?);
    }
    if ether_type != eth::ETH_P_IP {
        // Counted with the whole frame's length (it may be multi-buffer).
        pkt.load_frame_len();
        if vlan::is_tag(ether_type) {
            return judge_tagged(vlan::inner(pkt)?);
        }
        return Ok(Judged::Stack);
    }
    let ip = ipv4::parse(pkt)?;
    let Ok(host) = host_config() else {
        return Ok(Judged::Stack);
    };

    // docs/policy.md#identity-comes-from-the-source-address: a packet claiming a container source must come from that
    // container's host, whatever its destination (so that nothing the stack
    // gets from here carries a forged container identity).
    let src_location = locate(host, ip.src);
    if let Location::Container { zone_slot, .. } = src_location {
        spoof::check_uplink_source(host, eth::src_mac(eth), ip.src, zone_slot)?;
    }
    if !is_local(host, ip.dst) {
        return Ok(Judged::Stack);
    }

    // From here on the packet is for this host's /24 (of this host's zone),
    // which only containers use.
    let dst = endpoint_in_zone(host.zone_slot, ip.dst).ok_or(DropReason::UnknownDestination)?;
    let port = local_port(ip.dst).ok_or(DropReason::UnknownDestination)?;
    let (src, src_groups) = source_party(&src_location)?;
    check(src, src_groups, dst)?;
    let src = match src_location {
        Location::Container { endpoint, .. } => Some(endpoint),
        _ => None,
    };
    check_ttl(&ip)?;
    // Last: a reply it lets through moves the connection table.
    if let Some(src) = src {
        conntrack::check_scope(pkt, &ip, src, dst)?;
    }
    Ok(Judged::Deliver {
        eth,
        ip,
        host,
        port,
        src,
        dst,
    })
}

/// A frame under one or more VLAN tags: it must not carry zone traffic.
#[inline(always)]
fn judge_tagged(inner: Inner) -> Result<Judged, DropReason> {
    match inner {
        Inner::Ipv4 { src, dst } if in_a_zone(src) || in_a_zone(dst) => Err(DropReason::VlanTagged),
        Inner::TooDeep => Err(DropReason::VlanTagged),
        Inner::Ipv4 { .. } | Inner::Other => Ok(Judged::Stack),
    }
}
