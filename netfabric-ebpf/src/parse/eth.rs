//! Ethernet II.

use core::ptr::{read_unaligned, write_unaligned};

use netfabric_common::DropReason;

use super::{Packet, mac_bits};

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}

/// The Ethernet header and its EtherType (host order).
#[inline(always)]
pub fn parse(pkt: &Packet) -> Result<(*mut EthHdr, u16), DropReason> {
    let eth: *mut EthHdr = pkt.ptr_at(0)?;
    let ether_type = u16::from_be_bytes(unsafe { (*eth).ether_type });
    Ok((eth, ether_type))
}

/// The source MAC as [`mac_bits`].
#[inline(always)]
pub fn src_mac(eth: *const EthHdr) -> u64 {
    mac_bits(unsafe { &raw const (*eth).src })
}

/// Copy a MAC into the packet with one 4-byte and one 2-byte store (a plain
/// array assignment would become a call to a byte-loop `memmove` subprogram:
/// the pointers may alias).
#[inline(always)]
fn write_mac(to: *mut [u8; 6], mac: &[u8; 6]) {
    let (to, from) = (to as *mut u8, mac.as_ptr());
    unsafe {
        write_unaligned(to as *mut u32, read_unaligned(from as *const u32));
        write_unaligned(
            to.add(4) as *mut u16,
            read_unaligned(from.add(4) as *const u16),
        );
    }
}

/// Rewrite both MACs (routing: we are the previous hop).
#[inline(always)]
pub fn set_macs(eth: *mut EthHdr, src: &[u8; 6], dst: &[u8; 6]) {
    unsafe {
        write_mac(&raw mut (*eth).dst, dst);
        write_mac(&raw mut (*eth).src, src);
    }
}

/// Rewrite the destination MAC only.
#[inline(always)]
pub fn set_dst_mac(eth: *mut EthHdr, dst: &[u8; 6]) {
    unsafe { write_mac(&raw mut (*eth).dst, dst) }
}
