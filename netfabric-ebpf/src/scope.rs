//! Security groups on the receiving side (docs/security-groups.md): after
//! the owner rule allowed a packet, a receiver that narrowed its access
//! (`INGRESS_SCOPED` in its endpoint) may still refuse its protocol and
//! port.
//!
//! Only then is `PORT_SCOPES` looked up, for (receiver, sender): absent,
//! the sender is not narrowed; present, the packet's protocol and
//! destination port must be opened, else `port_not_allowed`. Owners
//! without security groups pay one bit test. The system owner is never
//! narrowed (the agent writes no pair for it, and it is not looked up).
//!
//! A later fragment carries no ports: it passes a narrowed pair when the
//! scope opens its protocol on some port. Its first fragment, which has
//! the ports, was judged; without that one the receiver reassembles
//! nothing (Linux drops overlapping fragments, so a later one cannot
//! rewrite the ports either).

use netfabric_common::{
    DropReason, Endpoint, SYSTEM_OWNER,
    conntrack::{PROTO_ICMP, PROTO_TCP, PROTO_UDP, ScopedPair},
    policy,
};

use crate::{
    maps::PORT_SCOPES,
    parse::{Packet, eth::ETH_HLEN, ipv4::Ipv4},
};

/// May a container of `src_owner` reach `dst` with this packet's protocol
/// and port? Called after the owner rule allowed it.
#[inline(always)]
pub fn check(pkt: &Packet, ip: &Ipv4, src_owner: u32, dst: Endpoint) -> Result<(), DropReason> {
    if dst.groups & policy::INGRESS_SCOPED == 0 || src_owner == SYSTEM_OWNER {
        return Ok(());
    }
    let pair = ScopedPair {
        receiver: dst.owner,
        sender: src_owner,
    };
    let Some(scope) = (unsafe { PORT_SCOPES.get(pair) }) else {
        return Ok(());
    };
    let protocol = ip.protocol();
    let opened = if ip.fragment_offset() != 0 {
        scope.opens_protocol(protocol)
    } else {
        scope.opens(protocol, destination_port(pkt, ip, protocol)?)
    };
    if opened {
        Ok(())
    } else {
        Err(DropReason::PortNotAllowed)
    }
}

/// The destination port of a first fragment (0 for ICMP and other
/// protocols). A TCP, UDP or ICMP header too short for what
/// `parse::l4` reads (TCP up to its flags, 14 bytes; UDP 4; ICMP 6) is
/// `Malformed`, as there. Read here rather than through `parse::l4::L4`:
/// returning that struct made LLVM load it from the stack at a misaligned
/// offset, which the verifier refuses.
#[inline(always)]
fn destination_port(pkt: &Packet, ip: &Ipv4, protocol: u8) -> Result<u16, DropReason> {
    let at = ETH_HLEN + ip.header_len();
    match protocol {
        PROTO_TCP => {
            let h: *const [u8; 14] = pkt.ptr_at(at)?;
            let h = unsafe { &*h };
            Ok(u16::from_be_bytes([h[2], h[3]]))
        }
        PROTO_UDP => {
            let h: *const [u8; 4] = pkt.ptr_at(at)?;
            let h = unsafe { &*h };
            Ok(u16::from_be_bytes([h[2], h[3]]))
        }
        PROTO_ICMP => {
            let _: *const [u8; 6] = pkt.ptr_at(at)?;
            Ok(0)
        }
        _ => Ok(0),
    }
}
