//! TC ingress (TCX) on the host's uplink: the full uplink judgement
//! ([`crate::from_uplink::judge`]) of everything the XDP prefilter passed,
//! after GRO, and delivery into the destination container with
//! `bpf_redirect_peer`. The skb keeps its GSO state and its checksum state
//! (CHECKSUM_PARTIAL from a veth, CHECKSUM_UNNECESSARY after GRO), so a
//! super-packet reaches the container whole, with no checksum computed in
//! software on the way. A peer redirect skips the port's egress hook
//! (`to_container`), so nothing is judged twice.
//!
//! A remote service member's reply to a client of this host, which
//! balanced the flow, is translated back to the VIP here
//! (`service::reply`), after the judgement.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_redirect_peer,
    macros::classifier,
    programs::TcContext,
};
use netfabric_common::{
    Direction, DropReason, Forward, Verdict,
    policy::{INGRESS_SCOPED, SERVICE_BACKEND},
};

use crate::{
    conntrack,
    from_container::linear_packet,
    from_uplink::{Judged, judge},
    metrics::record,
    parse::{Packet, l4},
    route::rewrite,
    service,
};

#[classifier]
pub fn from_uplink_tc(ctx: TcContext) -> i32 {
    let (ifindex, tagged) = unsafe { ((*ctx.skb.skb).ifindex, (*ctx.skb.skb).vlan_present != 0) };
    let mut pkt = linear_packet(&ctx);
    let (verdict, action) = match try_from_uplink_tc(&ctx, &mut pkt, tagged) {
        Ok((forward, action)) => (Verdict::Forwarded(forward), action),
        Err(reason) => (Verdict::Dropped(reason), TC_ACT_SHOT),
    };
    record(Direction::FromUplink, verdict, &pkt, ifindex);
    action
}

#[inline(always)]
fn try_from_uplink_tc(
    ctx: &TcContext,
    pkt: &mut Packet,
    tagged: bool,
) -> Result<(Forward, i32), DropReason> {
    match judge(pkt, tagged)? {
        Judged::Stack => Ok((Forward::Stack, TC_ACT_OK)),
        Judged::Deliver {
            eth,
            ip,
            host,
            port,
            src,
            dst,
        } => {
            if let Some(src) = src
                && src.groups & INGRESS_SCOPED != 0
            {
                // Its replies will be judged (on this host too) against the
                // sender's port scopes. Tracked before the rewrite: the key
                // holds addresses and ports only.
                let l4 = l4::parse(pkt, &ip)?;
                conntrack::track_scoped(&l4.key(&ip), &l4, src, dst);
            }
            rewrite(eth, &ip, &host.gateway_mac, &port.mac);
            if let Some(src) = src
                && src.groups & SERVICE_BACKEND != 0
            {
                service::reply(ctx, pkt, &ip)?;
            }
            Ok((
                Forward::Local,
                unsafe { bpf_redirect_peer(port.ifindex, 0) } as i32,
            ))
        }
    }
}
