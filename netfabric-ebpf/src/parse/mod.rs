//! One small parser per header over a bounds-checked [`Packet`].

pub mod arp;
pub mod eth;
pub mod ipv4;
pub mod l4;
pub mod vlan;

use core::{
    mem::size_of,
    ptr::{null_mut, read_unaligned},
};

use aya_ebpf::{bindings::xdp_md, helpers::bpf_xdp_get_buff_len};
use netfabric_common::DropReason;

/// The packet bytes `[data, end)` of an XDP or TC context: the linear part,
/// which is all the parsers may touch.
#[derive(Clone, Copy)]
pub struct Packet {
    pub data: usize,
    pub end: usize,
    /// Length of the whole frame on the wire, including what is not linear
    /// (skb page fragments of GSO/SG packets, XDP multi-buffer fragments).
    /// Length checks (IPv4 total length) and byte counters use this, not
    /// `end - data`, or every non-linear packet would look truncated.
    pub frame_len: usize,
    /// XDP only (null for TC): the context, to ask for the length of a
    /// multi-buffer frame when the headers say it is longer than its linear
    /// part (see [`Packet::load_frame_len`]).
    xdp: *mut xdp_md,
}

impl Packet {
    /// A TC packet: `len` is `skb->len`, the whole frame.
    #[inline(always)]
    pub fn tc(data: usize, end: usize, len: usize) -> Self {
        Packet {
            data,
            end,
            frame_len: len,
            xdp: null_mut(),
        }
    }

    /// An XDP packet. `frame_len` starts as the linear part, which is the
    /// whole frame unless the frame is multi-buffer (jumbo frames on an
    /// uplink whose driver splits them): [`Packet::load_frame_len`] asks the
    /// kernel then, and only then, since it is a helper call.
    #[inline(always)]
    pub fn xdp(ctx: *mut xdp_md, data: usize, end: usize) -> Self {
        Packet {
            data,
            end,
            frame_len: end - data,
            xdp: ctx,
        }
    }

    /// Length of the whole frame (see [`Packet::frame_len`]).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.frame_len
    }

    /// XDP: replace the linear length with the whole frame's (fragments
    /// included). TC: nothing to do, `skb->len` is already whole.
    #[inline(always)]
    pub fn load_frame_len(&mut self) {
        if !self.xdp.is_null() {
            self.frame_len = unsafe { bpf_xdp_get_buff_len(self.xdp) } as usize;
        }
    }

    /// A pointer to a `T` at `offset`, or `Malformed` when the packet is too
    /// short. Every packet access goes through here (the verifier needs it).
    #[inline(always)]
    pub fn ptr_at<T>(&self, offset: usize) -> Result<*mut T, DropReason> {
        if self.data + offset + size_of::<T>() > self.end {
            return Err(DropReason::Malformed);
        }
        Ok((self.data + offset) as *mut T)
    }
}

/// A MAC as one integer: its six bytes in memory order in the low 48 bits.
/// Read with one 4-byte and one 2-byte load (misaligned accesses are allowed
/// in this build, see `build.rs`) and compared with one instruction.
#[inline(always)]
pub fn mac_bits(mac: *const [u8; 6]) -> u64 {
    let p = mac as *const u8;
    unsafe {
        u64::from(read_unaligned(p as *const u32))
            | (u64::from(read_unaligned(p.add(4) as *const u16)) << 32)
    }
}
