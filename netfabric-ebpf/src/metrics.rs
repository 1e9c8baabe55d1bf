//! The one place where a verdict is counted and a drop reported.
//!
//! The drop event is described here, from the packet, and only while a
//! monitor listens: the decision itself carries nothing for it (what it
//! would keep for the event costs registers and stack on every packet).

use aya_ebpf::helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};
use netfabric_common::{
    Direction, DropEvent, DropReason, MONITOR_LOST_SLOT, MonitorLease, NO_OWNER, Verdict,
};

use crate::{
    maps::{COUNTERS, DROP_EVENTS, MONITOR_LEASE},
    parse::{
        Packet, arp, eth, ipv4,
        vlan::{self, Inner},
    },
    policy::{Location, host_config, locate},
};

#[inline(always)]
fn bump(slot: u32, bytes: u64) {
    if let Some(counter) = COUNTERS.get_ptr_mut(slot) {
        // Per-CPU slot: no other writer, no atomics needed.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}

/// Does a monitor want drop events? Its lease is renewed every second; one
/// that died stops mattering when the lease runs out. No monitor costs one
/// array lookup, a monitor gone without ending its lease also a coarse clock
/// read (no clock source access).
#[inline(always)]
fn monitored() -> bool {
    match MONITOR_LEASE.get(0) {
        Some(lease) if lease.until_ns == MonitorLease::NONE.until_ns => false,
        Some(lease) if lease.until_ns == MonitorLease::FOREVER.until_ns => true,
        Some(lease) => (unsafe { bpf_ktime_get_coarse_ns() }) < lease.until_ns,
        None => false,
    }
}

/// Count `verdict` for `pkt` (its whole length) and, for a drop while a
/// monitor listens, send it an event (or count it as lost when the ring
/// buffer is full). `pkt` must be the packet as the decision saw it (drops
/// rewrite nothing, but a service's translation comes before the judgement:
/// a packet dropped after it is described as translated, to the backend).
#[inline(always)]
pub fn record(direction: Direction, verdict: Verdict, pkt: &Packet, ifindex: u32) {
    bump(verdict.counter_slot(direction), pkt.len() as u64);
    if let Verdict::Dropped(reason) = verdict
        && monitored()
    {
        report(direction, reason, pkt, ifindex);
    }
}

/// Who the dropped packet claims to be from and to: IPv4 source and
/// destination (also under one or two VLAN tags; ARP: sender and target)
/// and, for IPv4, their owners. The owner of a source that failed a source
/// check (or came tagged, unchecked) is left out: it would name the victim.
/// The monitor names the sending port from the event's ifindex instead.
#[inline(always)]
fn describe(pkt: &Packet, reason: DropReason) -> (u32, u32, u32, u32) {
    let Ok((_, ether_type)) = eth::parse(pkt) else {
        return (0, 0, NO_OWNER, NO_OWNER);
    };
    if ether_type == eth::ETH_P_ARP {
        return match arp::addresses(pkt) {
            Ok((sender, target)) => (sender, target, NO_OWNER, NO_OWNER),
            Err(_) => (0, 0, NO_OWNER, NO_OWNER),
        };
    }
    let addresses = if ether_type == eth::ETH_P_IP {
        ipv4::addresses(pkt)
    } else if vlan::is_tag(ether_type) {
        match vlan::inner(pkt) {
            Ok(Inner::Ipv4 { src, dst }) => Ok((src, dst)),
            _ => Err(DropReason::Malformed),
        }
    } else {
        Err(DropReason::Malformed)
    };
    let Ok((src, dst)) = addresses else {
        return (0, 0, NO_OWNER, NO_OWNER);
    };
    let Ok(host) = host_config() else {
        return (src, dst, NO_OWNER, NO_OWNER);
    };
    let owner = |addr| match locate(host, addr) {
        Location::Container { endpoint, .. } => endpoint.owner,
        _ => NO_OWNER,
    };
    let src_owner = if reason.source_unverified() {
        NO_OWNER
    } else {
        owner(src)
    };
    (src, dst, src_owner, owner(dst))
}

#[inline(always)]
fn report(direction: Direction, reason: DropReason, pkt: &Packet, ifindex: u32) {
    let (src_ip, dst_ip, src_owner, dst_owner) = describe(pkt, reason);
    let event = DropEvent {
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        src_ip,
        dst_ip,
        src_owner,
        dst_owner,
        ifindex,
        direction: direction as u8,
        reason: reason as u8,
        _pad: [0; 2],
        len: pkt.len() as u32,
        _pad2: 0,
    };
    if DROP_EVENTS.output::<DropEvent>(&event, 0).is_err() {
        bump(MONITOR_LOST_SLOT, 0);
    }
}
