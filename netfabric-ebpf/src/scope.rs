//! Security groups on the receiving side (docs/security-groups.md): after
//! the owner rule allowed a packet, a receiver that narrowed its access
//! (`INGRESS_SCOPED` in its endpoint) may still refuse its protocol and
//! port.
//!
//! Only then is `PORT_SCOPES` looked up, for (receiver, sender): absent,
//! the sender is not narrowed; present, the packet's protocol and
//! destination port must be opened, or the packet must be the reply of a
//! tracked connection whose original direction is still allowed
//! (`conntrack::reply_allowed`), else `port_not_allowed`. Owners without
//! security groups pay one bit test. The system owner is never narrowed
//! (the agent writes no pair for it, and it is not looked up).
//!
//! A later fragment carries no ports: it passes a narrowed pair when the
//! scope opens its protocol on some port. Its first fragment, which has
//! the ports, was judged; without that one the receiver reassembles
//! nothing (Linux drops overlapping fragments, so a later one cannot
//! rewrite the ports either).

use netfabric_common::{DropReason, Endpoint, SYSTEM_OWNER, conntrack::ScopedPair, policy};

use crate::{
    conntrack::{self, Peer},
    maps::PORT_SCOPES,
    parse::{Packet, ipv4::Ipv4, l4},
};

/// May the container `src` reach the container `dst` with this packet's
/// protocol and port? Called after the owner rule allowed it.
#[inline(always)]
pub fn check(pkt: &Packet, ip: &Ipv4, src: Endpoint, dst: Endpoint) -> Result<(), DropReason> {
    if dst.groups & policy::INGRESS_SCOPED == 0 || src.owner == SYSTEM_OWNER {
        return Ok(());
    }
    let pair = ScopedPair {
        receiver: dst.owner,
        sender: src.owner,
    };
    let Some(scope) = (unsafe { PORT_SCOPES.get(pair) }) else {
        return Ok(());
    };
    let protocol = ip.protocol();
    if ip.fragment_offset() != 0 {
        return if scope.opens_protocol(protocol) {
            Ok(())
        } else {
            Err(DropReason::PortNotAllowed)
        };
    }
    let l4 = l4::parse(pkt, ip)?;
    if scope.opens(protocol, l4.dst_port)
        || conntrack::reply_allowed(&l4.key(ip), &l4, Peer::Container(src), dst)
    {
        Ok(())
    } else {
        Err(DropReason::PortNotAllowed)
    }
}

/// Would `receiver`'s scope for `sender` let `protocol` to destination
/// `port` through (no entry, or no `INGRESS_SCOPED`: yes)? What a tracked
/// connection's original direction is judged by on every reply, so that a
/// narrowed scope cuts it.
#[inline(always)]
pub fn opens(receiver: Endpoint, sender: u32, protocol: u8, port: u16) -> bool {
    if receiver.groups & policy::INGRESS_SCOPED == 0 || sender == SYSTEM_OWNER {
        return true;
    }
    let pair = ScopedPair {
        receiver: receiver.owner,
        sender,
    };
    match unsafe { PORT_SCOPES.get(pair) } {
        Some(scope) => scope.opens(protocol, port),
        None => true,
    }
}
