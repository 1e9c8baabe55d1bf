//! Services (docs/datapath.md#services, `netfabric_common::service`): a
//! container's packet to a VIP is balanced at the client's own host, in
//! `from_container`, before anything else looks at its destination.
//!
//! * [`balance`]: TCP/UDP to a VIP port the zone serves (`SERVICE_PORTS`)
//!   picks a backend: the client's open flow (`SERVICE_FLOWS`, forward
//!   entry) while it is fresh and its backend still a member of the
//!   service, else the Maglev slot of the client's 5-tuple
//!   (`SERVICE_TABLES`). The packet is then translated (destination
//!   address and port), so the whole pipeline after it (owner rule, port
//!   scope, connection tracking, route) judges the packet the backend will
//!   get: a client reaches a service only where it may reach the backend.
//! * [`commit`]: only for a packet that is forwarded, the flow's two
//!   entries are written (forward under the client's key, reverse under
//!   the backend's reply key) and the service's counters moved: a denied
//!   client never fills the LRU.
//! * [`reply`]: a packet of a service member (`SERVICE_BACKEND` in its
//!   endpoint) delivered to a container of this host is looked up under its
//!   own key as a reverse entry; found, its source becomes the VIP and
//!   service port again, so the client only ever sees the VIP.
//!
//! Addresses and ports are rewritten in place and the checksums updated by
//! the kernel's helpers (`bpf_l3_csum_replace`, `bpf_l4_csum_replace` with
//! the pseudo-header flag for the address): they know the skb's checksum
//! state, so a CHECKSUM_PARTIAL or GSO packet from a veth and a
//! CHECKSUM_COMPLETE one from a NIC stay right, and a UDP checksum of 0
//! (none) stays 0. The helpers may move the packet: every caller re-reads
//! it ([`Translated`]).
//!
//! A client is never balanced to itself: its packet would come back in
//! with its own address as source (a martian the container's stack
//! drops) and the backend's reply would go out through the container's
//! loopback, where nothing translates it back. Other slots are tried,
//! [`HAIRPIN_STRIDE`] apart ([`HAIRPIN_PROBES`]); a service whose only healthy backend is
//! the client itself is `no_backend` to it.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    helpers::bpf_ktime_get_coarse_ns,
    programs::TcContext,
};
use netfabric_common::{
    Counter, DropReason, HostConfig,
    conntrack::{ConnKey, ConnState, PROTO_TCP, PROTO_UDP, REFRESH_NS, idle_timeout_ns},
    service::{
        FLOW_FORWARD, FLOW_REVERSE, MAGLEV_SLOTS, NO_MEMBER, ServiceCounterKey, ServiceFlow,
        ServicePortKey, ServiceTable, is_service_address, slot_of,
    },
};

use crate::{
    maps::{SERVICE_COUNTERS, SERVICE_FLOWS, SERVICE_PORTS, SERVICE_TABLES},
    parse::{
        Packet,
        eth::{self, ETH_HLEN, EthHdr},
        ipv4::{self, Ipv4},
        l4,
    },
    policy::in_a_zone,
};

/// Slots tried, from the client's own Maglev slot on, when a slot names
/// the client itself (see the module doc). Each probe steps
/// [`HAIRPIN_STRIDE`] slots, far enough that neighbouring runs of one
/// member do not repeat (eight consecutive slots did name the client in a
/// test with two members): with two healthy members, all of them naming
/// the client has a chance of about 2^-32; the bound keeps the loop
/// small for the verifier.
pub const HAIRPIN_PROBES: usize = 32;
/// The step between hairpin probes: a prime, coprime with the table size.
pub const HAIRPIN_STRIDE: usize = 4_099;

/// Byte offsets of the checksum fields.
const IPV4_CHECK: usize = 10;
const TCP_CHECK: usize = 16;
const UDP_CHECK: usize = 6;

/// A packet balanced to a backend, translated, and what [`commit`] writes
/// if it is forwarded.
pub struct Balanced {
    /// The client's key to the VIP: the forward entry's.
    key: ConnKey,
    /// The forward entry (its `last_seen_ns` is the time of this packet).
    flow: ServiceFlow,
    /// Write both entries: the flow is new (or rebalanced), or its refresh
    /// is due.
    write: bool,
}

/// The packet again, after a helper may have moved it.
pub struct Translated {
    pub eth: *mut EthHdr,
    pub ip: Ipv4,
}

/// Is `addr` a VIP of some zone (host octet 0 of a zone's /16)? This host's
/// zone is known without the map.
#[inline(always)]
pub fn is_vip(host: &HostConfig, addr: u32) -> bool {
    is_service_address(addr) && (addr & 0xffff_0000 == host.zone_prefix || in_a_zone(addr))
}

#[inline(always)]
fn now() -> u64 {
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Idle past an established connection's timeout (a `last_seen_ns` ahead
/// of the clock, written by userspace with a finer clock, is fresh).
#[inline(always)]
fn expired(flow: &ServiceFlow, protocol: u8, now: u64) -> bool {
    now.saturating_sub(flow.last_seen_ns) > idle_timeout_ns(protocol, ConnState::Established as u8)
}

/// Balances a container's packet `ip` to a VIP (see the module doc) and
/// translates it to the backend. `no_backend`: not TCP or
/// UDP, a later fragment (no ports to balance by), a port the VIP does not
/// serve, a service without a table or without a healthy backend (other
/// than the client).
#[inline(always)]
pub fn balance(
    ctx: &TcContext,
    pkt: &mut Packet,
    ip: &Ipv4,
) -> Result<(Balanced, Translated), DropReason> {
    let protocol = ip.protocol();
    if (protocol != PROTO_TCP && protocol != PROTO_UDP) || ip.fragment_offset() != 0 {
        return Err(DropReason::NoBackend);
    }
    let l4 = l4::parse(pkt, ip)?;
    if !holds_checksum(ip, protocol) {
        return Err(DropReason::Malformed);
    }
    let port_key = ServicePortKey {
        vip: ip.dst,
        port: l4.dst_port,
        protocol,
        _pad: 0,
    };
    let svc = unsafe { SERVICE_PORTS.get(port_key) }.ok_or(DropReason::NoBackend)?;
    let table = unsafe { SERVICE_TABLES.get(svc.service) }.ok_or(DropReason::NoBackend)?;
    let key = l4.key(ip);
    let now = now();

    // The client's open flow, while fresh and its backend still a member
    // (healthy or not: a failed health check stops new flows only).
    let mut current = None;
    if let Some(f) = unsafe { SERVICE_FLOWS.get(key) }
        && f.kind == FLOW_FORWARD
        && f.service == svc.service
        && f.port == svc.target_port
        && table.members.get(f.member as usize) == Some(&f.addr)
        && !expired(f, protocol, now)
    {
        current = Some((
            f.member,
            f.addr,
            now.saturating_sub(f.last_seen_ns) >= REFRESH_NS,
        ));
    }
    let (member, backend, write) = match current {
        Some(c) => c,
        None => {
            let (member, backend) = pick(table, &key)?;
            (member, backend, true)
        }
    };
    let flow = ServiceFlow {
        last_seen_ns: now,
        addr: backend,
        port: svc.target_port,
        kind: FLOW_FORWARD,
        member,
        service: svc.service,
        _pad: 0,
    };
    let translated = rewrite(
        ctx,
        pkt,
        ip,
        protocol,
        Side::Destination,
        backend,
        svc.target_port,
    )?;
    Ok((Balanced { key, flow, write }, translated))
}

/// The member (index and address) of the client's Maglev slot, or of one
/// of the few after it when that one is the client itself. Checked
/// accesses (`get`): an index the verifier cannot bound would be a panic
/// path the program cannot have.
#[inline(always)]
fn pick(table: &ServiceTable, key: &ConnKey) -> Result<(u8, u32), DropReason> {
    // LLVM knows a remainder is below its divisor and drops the bounds
    // check below; the verifier does not know it and refuses the access.
    // A volatile read hides the bound from LLVM, so the check stays.
    let first = slot_of(key);
    let first = unsafe { core::ptr::read_volatile(&first) };
    let mut slot = first;
    let mut i = 0;
    while i < HAIRPIN_PROBES {
        let member = *table.slots.get(slot).ok_or(DropReason::NoBackend)?;
        if member == NO_MEMBER {
            return Err(DropReason::NoBackend);
        }
        let addr = *table
            .members
            .get(member as usize)
            .ok_or(DropReason::NoBackend)?;
        if addr == 0 {
            return Err(DropReason::NoBackend);
        }
        if addr != key.src {
            return Ok((member, addr));
        }
        slot += HAIRPIN_STRIDE;
        if slot >= MAGLEV_SLOTS {
            slot -= MAGLEV_SLOTS;
        }
        i += 1;
    }
    Err(DropReason::NoBackend)
}

/// The forwarded packet's flow: both entries written when new or due for a
/// refresh (a failed insert leaves the flow to be balanced again at its
/// next packet: the same backend while the table is the same), and the
/// service's counters for its backend moved by `bytes`.
#[inline(always)]
pub fn commit(b: &Balanced, bytes: u64) {
    let f = &b.flow;
    if b.write {
        let reverse_key = ConnKey {
            src: f.addr,
            dst: b.key.src,
            src_port: f.port,
            dst_port: b.key.src_port,
            protocol: b.key.protocol,
            _pad: [0; 3],
        };
        let reverse = ServiceFlow {
            addr: b.key.dst,
            port: b.key.dst_port,
            kind: FLOW_REVERSE,
            ..*f
        };
        let _ = SERVICE_FLOWS.insert(reverse_key, reverse, 0);
        let _ = SERVICE_FLOWS.insert(b.key, *f, 0);
    }
    let counter_key = ServiceCounterKey {
        service: f.service,
        backend: f.addr,
    };
    match SERVICE_COUNTERS.get_ptr_mut(counter_key) {
        // Per-CPU value: no other writer.
        Some(c) => unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        },
        None => {
            let _ = SERVICE_COUNTERS.insert(counter_key, Counter { packets: 1, bytes }, 0);
        }
    }
}

/// A packet from a service member to a client on this host: if it answers
/// a balanced flow (its key is a fresh reverse entry), its source becomes
/// the VIP and service port. `Ok(None)`: not a reply of a flow (or too
/// short to be translated), untouched.
#[inline(always)]
pub fn reply(
    ctx: &TcContext,
    pkt: &mut Packet,
    ip: &Ipv4,
) -> Result<Option<Translated>, DropReason> {
    let protocol = ip.protocol();
    if (protocol != PROTO_TCP && protocol != PROTO_UDP) || ip.fragment_offset() != 0 {
        return Ok(None);
    }
    // Too short to translate: a transport header cut before its checksum,
    // which the client's stack drops anyway.
    if !holds_checksum(ip, protocol) {
        return Ok(None);
    }
    let l4 = l4::parse(pkt, ip)?;
    let Some(f) = SERVICE_FLOWS.get_ptr_mut(l4.key(ip)) else {
        return Ok(None);
    };
    let f = unsafe { &mut *f };
    let now = now();
    if f.kind != FLOW_REVERSE || expired(f, protocol, now) {
        return Ok(None);
    }
    if now.saturating_sub(f.last_seen_ns) >= REFRESH_NS {
        f.last_seen_ns = now;
    }
    let (vip, port) = (f.addr, f.port);
    rewrite(ctx, pkt, ip, protocol, Side::Source, vip, port).map(Some)
}

/// Where the transport checksum of `protocol` (TCP or UDP) is.
#[inline(always)]
fn checksum_offset(protocol: u8) -> usize {
    if protocol == PROTO_TCP {
        TCP_CHECK
    } else {
        UDP_CHECK
    }
}

/// Does the datagram hold its transport checksum field (a TCP header of 14
/// bytes has the ports and flags the judgement reads, not yet its
/// checksum)? Judged by the IPv4 total length, which `ipv4::parse` checked
/// against the frame: the helpers never write into padding after the
/// datagram.
#[inline(always)]
fn holds_checksum(ip: &Ipv4, protocol: u8) -> bool {
    ip.header_len() + checksum_offset(protocol) + 2 <= ip.total_len()
}

/// Which end of the packet a translation rewrites.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

/// Rewrites one end's address and port of a TCP/UDP first fragment to
/// `addr` and `port` and updates the IPv4 and transport checksums with the
/// kernel's helpers; then reads the packet again.
#[inline(always)]
fn rewrite(
    ctx: &TcContext,
    pkt: &mut Packet,
    ip: &Ipv4,
    protocol: u8,
    side: Side,
    addr: u32,
    port: u16,
) -> Result<Translated, DropReason> {
    let l4_at = ETH_HLEN + ip.header_len();
    let check_at = l4_at + checksum_offset(protocol);
    let (addr_at, port_at) = match side {
        Side::Source => (ETH_HLEN + 12, l4_at),
        Side::Destination => (ETH_HLEN + 16, l4_at + 2),
    };
    let addr_ptr: *mut [u8; 4] = pkt.ptr_at(addr_at)?;
    let port_ptr: *mut [u8; 2] = pkt.ptr_at(port_at)?;
    // The helpers take the old and new values as they are in the packet
    // (network byte order).
    let (old_addr, old_port) =
        unsafe { (u32::from_ne_bytes(*addr_ptr), u16::from_ne_bytes(*port_ptr)) };
    let (new_addr, new_port) = (addr.to_be(), port.to_be());
    unsafe {
        *addr_ptr = new_addr.to_ne_bytes();
        *port_ptr = new_port.to_ne_bytes();
    }
    // A UDP checksum of 0 is "none" and stays so; a result of 0 is written
    // as 0xffff.
    let mangled = if protocol == PROTO_UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    let fixed = ctx
        .l3_csum_replace(ETH_HLEN + IPV4_CHECK, old_addr as u64, new_addr as u64, 4)
        .and_then(|()| {
            ctx.l4_csum_replace(
                check_at,
                old_addr as u64,
                new_addr as u64,
                BPF_F_PSEUDO_HDR as u64 | mangled | 4,
            )
        })
        .and_then(|()| {
            ctx.l4_csum_replace(check_at, old_port as u64, new_port as u64, mangled | 2)
        });
    // The helpers may have moved the packet: read it again, whatever they
    // returned (a failed one: a transport header too short for its
    // checksum, which the stack would drop too).
    *pkt = Packet::tc(ctx.data(), ctx.data_end(), ctx.len() as usize);
    fixed.map_err(|_| DropReason::Malformed)?;
    let (eth, _) = eth::parse(pkt)?;
    let ip = ipv4::parse(pkt)?;
    Ok(Translated { eth, ip })
}
