//! Connection tracking: the state that lets a reply through where the owner
//! rule alone refuses it (docs/policy.md). Only two kinds of traffic are
//! tracked, because only their replies need it:
//!
//! * egress: a non-system container's packets to an address outside every
//!   zone (the reply from outside would be refused: only system containers
//!   may be reached from outside);
//! * scoped senders: packets from a container whose owner narrowed its own
//!   access (`INGRESS_SCOPED`), on the host that sends (`from_container`)
//!   and the host that receives (`from_uplink_tc`): the replies are judged
//!   against that owner's port scopes.
//!
//! A refused packet passes only through [`reply_allowed`], the one decision
//! every program shares. It needs all of: the reversed key tracked; not idle
//! past its timeout; both addresses still of the owners stored; and the
//! original direction still allowed by the *current* policy, judged again
//! on every packet (a revoked group, scope or egress cuts an established
//! connection at its next packet). Nothing is allowed because of a failed
//! insert or an evicted entry: no entry, no reply. An ICMP error quoting a
//! packet of a tracked connection (fragmentation needed, port unreachable,
//! time exceeded) passes by the same rule, keyed by the quoted packet.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use netfabric_common::{
    CONNECTIONS_CREATED_SLOT, DropReason, Endpoint, NO_OWNER,
    conntrack::{
        CONN_REPLIED, ConnKey, ConnState, Connection, PROTO_ICMP, PROTO_TCP, PROTO_UDP, REFRESH_NS,
        idle_timeout_ns,
    },
    policy::{EGRESS_DENIED, Party},
};

use crate::{
    maps::{CONNECTIONS, COUNTERS},
    parse::{
        Packet,
        ipv4::Ipv4,
        l4::{self, ICMP_ECHO_REQUEST, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    },
    policy::check,
    scope::{self, Scoped},
};

/// The far end of a connection as the policy sees it.
#[derive(Clone, Copy)]
pub enum Peer {
    /// An address outside every zone.
    Outside,
    /// A container, with its `ENDPOINTS` entry.
    Container(Endpoint),
}

impl Peer {
    /// The owner a [`Connection`] stores for this end.
    #[inline(always)]
    fn owner(&self) -> u32 {
        match self {
            Peer::Outside => NO_OWNER,
            Peer::Container(e) => e.owner,
        }
    }
}

#[inline(always)]
fn now() -> u64 {
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Idle past its timeout? A `last_seen_ns` ahead of the clock (written by
/// userspace with a finer clock) counts as just seen.
#[inline(always)]
fn expired(c: &Connection, protocol: u8, now: u64) -> bool {
    now.saturating_sub(c.last_seen_ns) > idle_timeout_ns(protocol, c.state)
}

/// Does this packet open a connection (and so may create an entry)? TCP:
/// a SYN without ACK; ICMP: an echo request (its id is the source port);
/// UDP: any datagram. A TCP packet of an untracked (e.g. evicted)
/// connection creates nothing: its replies stay refused.
#[inline(always)]
fn opens(l4: &L4) -> bool {
    match l4.protocol {
        PROTO_TCP => l4.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN,
        PROTO_ICMP => l4.icmp_type == ICMP_ECHO_REQUEST,
        PROTO_UDP => true,
        _ => false,
    }
}

/// The state after a packet with `tcp_flags` (0 for UDP/ICMP) in either
/// direction; `reply`: it answers the connection.
#[inline(always)]
fn next_state(state: u8, protocol: u8, tcp_flags: u8, reply: bool) -> u8 {
    if protocol == PROTO_TCP && tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        return ConnState::Closing as u8;
    }
    if reply && state == ConnState::Opening as u8 {
        return ConnState::Established as u8;
    }
    state
}

/// Track `l4`'s packet from `key.src` (a container of `src_owner`) to
/// `key.dst` (of `dst`), which the policy allowed. A live entry of the
/// same owners is refreshed (at most every [`REFRESH_NS`] unless its state
/// changes); an opening packet creates a new one, replacing a stale entry
/// (expired, or of other owners). A TCP SYN on a closing entry reopens it.
/// An insert that fails leaves no entry: the replies stay refused.
#[inline(always)]
pub fn track(key: &ConnKey, l4: &L4, src_owner: u32, dst: Peer) {
    if !l4.has_ports {
        return;
    }
    let dst_owner = dst.owner();
    let now = now();
    let opening = opens(l4);
    if let Some(c) = CONNECTIONS.get_ptr_mut(key) {
        let c = unsafe { &mut *c };
        let live = !expired(c, key.protocol, now)
            && c.src_owner == src_owner
            && c.dst_owner == dst_owner
            && !(opening && key.protocol == PROTO_TCP && c.state == ConnState::Closing as u8);
        if live {
            let state = next_state(c.state, key.protocol, l4.tcp_flags, false);
            if state != c.state || now.saturating_sub(c.last_seen_ns) >= REFRESH_NS {
                c.state = state;
                c.last_seen_ns = now;
            }
            return;
        }
    }
    if !opening {
        return;
    }
    let conn = Connection {
        last_seen_ns: now,
        src_owner,
        dst_owner,
        state: ConnState::Opening as u8,
        flags: 0,
        _pad: [0; 6],
    };
    if CONNECTIONS.insert(key, conn, 0).is_ok()
        && let Some(counter) = COUNTERS.get_ptr_mut(CONNECTIONS_CREATED_SLOT)
    {
        // Per-CPU slot: no other writer.
        unsafe { (*counter).packets += 1 };
    }
}

/// Track a packet of a sender whose owner narrowed what reaches it
/// (`INGRESS_SCOPED`), from the container `src` to the container `dst`,
/// only when the sender's scope would refuse its reverse: a packet the
/// peer may send unasked needs no state, and an entry made by a server's
/// answer (a UDP reply from an open port) would keep the client's side of
/// the exchange open after the scope is narrowed, as a "reply".
#[inline(always)]
pub fn track_scoped(key: &ConnKey, l4: &L4, src: Endpoint, dst: Endpoint) {
    if scope::opens(src, dst.owner, key.protocol, key.src_port) {
        return;
    }
    track(key, l4, src.owner, Peer::Container(dst));
}

/// The port scope's judgement of a packet from the container `src` to the
/// container `dst` that the owner rule allowed: a packet the scope closes
/// passes only as the reply of a tracked connection, else
/// `port_not_allowed`.
#[inline(always)]
pub fn check_scope(
    pkt: &Packet,
    ip: &Ipv4,
    src: Endpoint,
    dst: Endpoint,
) -> Result<(), DropReason> {
    match scope::judge(pkt, ip, src, dst)? {
        Scoped::Open => Ok(()),
        Scoped::Closed(l4)
            if reply_allowed(&l4.key(ip), &l4, Peer::Container(src), dst)
                || error_allowed(pkt, ip, &l4, Peer::Container(src), dst) =>
        {
            Ok(())
        }
        Scoped::Closed(_) => Err(DropReason::PortNotAllowed),
    }
}

/// May the packet `key` (with `l4`), from `from` to the container `to`,
/// which the rule refused, pass as the reply of a tracked connection? See
/// the module doc for what it takes. Updates the entry's state (a reply
/// establishes it, FIN/RST closes it) and age (rate-limited).
///
/// Every refusal that a reply may overcome goes through here: the owner
/// rule's (`to_container`, outside sources) and the port scopes'.
#[inline(always)]
pub fn reply_allowed(key: &ConnKey, l4: &L4, from: Peer, to: Endpoint) -> bool {
    if !l4.has_ports {
        return false;
    }
    let original = key.reversed();
    let Some(c) = CONNECTIONS.get_ptr_mut(original) else {
        return false;
    };
    let c = unsafe { &mut *c };
    let now = now();
    if expired(c, key.protocol, now)
        || c.src_owner != to.owner
        || c.dst_owner != from.owner()
        || !original_allowed(&original, to, from)
    {
        return false;
    }
    let state = next_state(c.state, key.protocol, l4.tcp_flags, true);
    if state != c.state
        || c.flags & CONN_REPLIED == 0
        || now.saturating_sub(c.last_seen_ns) >= REFRESH_NS
    {
        c.state = state;
        c.flags |= CONN_REPLIED;
        c.last_seen_ns = now;
    }
    true
}

/// May the ICMP error `l4` (behind `ip`), from `from` to the container
/// `to`, which the rule refused, pass as related to a tracked connection? The quoted
/// packet is one `to` sent: it must be `to`'s, open a live connection of
/// `to`'s owner towards `from`'s, and that connection's original direction
/// must still be allowed, as for a reply. Errors are how path MTU discovery
/// and unreachable ports reach the sender; they change no state (the
/// connection is not thereby answered).
#[inline(always)]
pub fn error_allowed(pkt: &Packet, ip: &Ipv4, l4: &L4, from: Peer, to: Endpoint) -> bool {
    if !l4.is_icmp_error() {
        return false;
    }
    let Some(quoted) = l4::quoted_key(pkt, ip) else {
        return false;
    };
    if quoted.src != ip.dst {
        return false;
    }
    let Some(c) = (unsafe { CONNECTIONS.get(quoted) }) else {
        return false;
    };
    !expired(c, quoted.protocol, now())
        && c.src_owner == to.owner
        && c.dst_owner == from.owner()
        && original_allowed(&quoted, to, from)
}

/// Would the connection's original direction (`key`, from the container
/// `src` to `dst`) be allowed now? Judged again on every reply, so that a
/// revocation cuts an established connection at its next packet.
#[inline(always)]
fn original_allowed(key: &ConnKey, src: Endpoint, dst: Peer) -> bool {
    match dst {
        Peer::Outside => src.groups & EGRESS_DENIED == 0,
        // The owner rule, then `d`'s port scope for `src.owner` on the
        // original direction's protocol and destination port.
        Peer::Container(d) => {
            check(Party::Owner(src.owner), src.groups, d).is_ok()
                && scope::opens(d, src.owner, key.protocol, key.dst_port)
        }
    }
}
