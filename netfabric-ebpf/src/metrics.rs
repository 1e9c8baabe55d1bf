//! The one place where a verdict is counted and a drop reported.

use aya_ebpf::helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};
use netfabric_common::{Direction, DropEvent, MONITOR_LOST_SLOT, MonitorLease, Verdict};

use crate::maps::{COUNTERS, DROP_EVENTS, MONITOR_LEASE};

/// What the decision learned about the packet, for the drop event.
#[derive(Default)]
pub struct Seen {
    pub src_ip: u32,
    pub dst_ip: u32,
    pub src_owner: u32,
    pub dst_owner: u32,
}

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

/// Count `verdict` for a packet of `len` bytes and, for a drop while a
/// monitor listens, send it an event (or count it as lost when the ring
/// buffer is full).
#[inline(always)]
pub fn record(direction: Direction, verdict: Verdict, len: u32, ifindex: u32, seen: &Seen) {
    bump(verdict.counter_slot(direction), len as u64);
    if let Verdict::Dropped(reason) = verdict {
        if !monitored() {
            return;
        }
        let event = DropEvent {
            timestamp_ns: unsafe { bpf_ktime_get_ns() },
            src_ip: seen.src_ip,
            dst_ip: seen.dst_ip,
            src_owner: seen.src_owner,
            dst_owner: seen.dst_owner,
            ifindex,
            direction: direction as u8,
            reason: reason as u8,
            _pad: [0; 2],
            len,
            _pad2: 0,
        };
        if DROP_EVENTS.output::<DropEvent>(&event, 0).is_err() {
            bump(MONITOR_LOST_SLOT, 0);
        }
    }
}
