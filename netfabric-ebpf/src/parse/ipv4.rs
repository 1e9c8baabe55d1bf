//! IPv4. Fragments and options are accepted (policy is on addresses only);
//! the header checksum is not verified here: it is updated incrementally on
//! forward, so a bad one stays bad and the receiving stack drops it.

use netfabric_common::DropReason;

use super::{Packet, eth::ETH_HLEN};

#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

pub struct Ipv4 {
    pub hdr: *mut Ipv4Hdr,
    /// Host byte order.
    pub src: u32,
    /// Host byte order.
    pub dst: u32,
}

/// Validate the IPv4 header after the Ethernet header: version 4, IHL of at
/// least 5 words and within the packet, total length covering the header and
/// within the frame (frames may carry padding after it). A total length
/// beyond the linear part makes XDP ask for the whole (multi-buffer) frame's
/// length, which then becomes `pkt.frame_len`.
#[inline(always)]
pub fn parse(pkt: &mut Packet) -> Result<Ipv4, DropReason> {
    let hdr: *mut Ipv4Hdr = pkt.ptr_at(ETH_HLEN)?;
    let (version_ihl, tot_len, src, dst) = unsafe {
        (
            (*hdr).version_ihl,
            u16::from_be_bytes((*hdr).tot_len) as usize,
            u32::from_be_bytes((*hdr).src),
            u32::from_be_bytes((*hdr).dst),
        )
    };
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 || tot_len < header_len {
        return Err(DropReason::Malformed);
    }
    if ETH_HLEN + tot_len > pkt.len() {
        pkt.load_frame_len();
        if ETH_HLEN + tot_len > pkt.len() {
            return Err(DropReason::Malformed);
        }
    }
    Ok(Ipv4 { hdr, src, dst })
}

impl Ipv4 {
    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        unsafe { (*self.hdr).ttl }
    }

    #[inline(always)]
    pub fn protocol(&self) -> u8 {
        unsafe { (*self.hdr).protocol }
    }

    /// The header's length in bytes (20 to 60; `parse` checked it).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        ((unsafe { (*self.hdr).version_ihl } & 0x0f) as usize) * 4
    }

    /// The datagram's length (header and payload), which `parse` checked
    /// against the frame.
    #[inline(always)]
    pub fn total_len(&self) -> usize {
        u16::from_be_bytes(unsafe { (*self.hdr).tot_len }) as usize
    }

    /// The fragment offset (in 8-byte units); 0 for an unfragmented packet
    /// and a first fragment.
    #[inline(always)]
    pub fn fragment_offset(&self) -> u16 {
        u16::from_be_bytes(unsafe { (*self.hdr).frag_off }) & 0x1fff
    }

    /// Decrement the TTL, updating the checksum incrementally (RFC 1624).
    #[inline(always)]
    pub fn decrement_ttl(&self) {
        unsafe {
            let check = u16::from_be_bytes((*self.hdr).check);
            (*self.hdr).check = netfabric_common::checksum::ttl_decrement(check).to_be_bytes();
            (*self.hdr).ttl -= 1;
        }
    }
}

/// Source and destination (host order) of a packet long enough to hold an
/// IPv4 header, unvalidated (for drop events).
#[inline(always)]
pub fn addresses(pkt: &Packet) -> Result<(u32, u32), DropReason> {
    let hdr: *const Ipv4Hdr = pkt.ptr_at(ETH_HLEN)?;
    unsafe {
        Ok((
            u32::from_be_bytes((*hdr).src),
            u32::from_be_bytes((*hdr).dst),
        ))
    }
}
