//! One small parser per header over a bounds-checked [`Packet`].

pub mod arp;
pub mod eth;
pub mod ipv4;

use core::mem::size_of;

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
}

impl Packet {
    /// Length of the whole frame (see [`Packet::frame_len`]).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.frame_len
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

/// Compare two MACs without a `memcmp` call (none exists in BPF).
#[inline(always)]
pub fn mac_eq(a: &[u8; 6], b: &[u8; 6]) -> bool {
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5])
        == 0
}
