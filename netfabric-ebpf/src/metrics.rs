//! The one place where a verdict is counted and a drop reported.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use netfabric_common::{Direction, DropEvent, MONITOR_LOST_SLOT, Verdict};

use crate::maps::{COUNTERS, DROP_EVENTS};

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

/// Count `verdict` for a packet of `len` bytes and, for a drop, send an
/// event to the monitor (or count it as lost when the ring buffer is full).
#[inline(always)]
pub fn record(direction: Direction, verdict: Verdict, len: u32, ifindex: u32, seen: &Seen) {
    bump(verdict.counter_slot(direction), len as u64);
    if let Verdict::Dropped(reason) = verdict {
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
