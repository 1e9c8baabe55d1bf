//! Security groups on the receiving side (docs/security-groups.md): after
//! the owner rule allowed a packet, a receiver that narrowed its access
//! (`INGRESS_SCOPED` in its endpoint) may still refuse its protocol and
//! port.
//!
//! Only then is `PORT_SCOPES` looked up, for (receiver, sender): absent,
//! the sender is not narrowed; present, the packet's protocol and
//! destination port must be opened; a packet it closes may still be the
//! reply of a tracked connection whose original direction is still allowed
//! (`conntrack::check_scope` asks `conntrack::reply_allowed`), else
//! `port_not_allowed`. Owners without
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
    maps::PORT_SCOPES,
    parse::{
        Packet,
        ipv4::Ipv4,
        l4::{self, L4},
    },
};

/// What the port scope says of a packet.
pub enum Scoped {
    /// Not narrowed, or its protocol and port are open.
    Open,
    /// Closed to it; it passes only as a tracked reply.
    Closed(L4),
}

/// What `dst`'s scope says of this packet from the container `src`,
/// which the owner rule allowed. A later fragment closed to its protocol
/// is refused here (it has no ports to be a reply by).
#[inline(always)]
pub fn judge(pkt: &Packet, ip: &Ipv4, src: Endpoint, dst: Endpoint) -> Result<Scoped, DropReason> {
    if dst.groups & policy::INGRESS_SCOPED == 0 || src.owner == SYSTEM_OWNER {
        return Ok(Scoped::Open);
    }
    let pair = ScopedPair {
        receiver: dst.owner,
        sender: src.owner,
    };
    let Some(scope) = (unsafe { PORT_SCOPES.get(pair) }) else {
        return Ok(Scoped::Open);
    };
    let protocol = ip.protocol();
    if ip.fragment_offset() != 0 {
        return if scope.opens_protocol(protocol) {
            Ok(Scoped::Open)
        } else {
            Err(DropReason::PortNotAllowed)
        };
    }
    let l4 = l4::parse(pkt, ip)?;
    if scope.opens(protocol, l4.dst_port) {
        Ok(Scoped::Open)
    } else {
        Ok(Scoped::Closed(l4))
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
