//! Ethernet II.

use netfabric_common::DropReason;

use super::Packet;

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

/// Copy a MAC into the packet with six single-byte stores. A plain array
/// assignment becomes a call to a byte-loop `memmove` subprogram in BPF (the
/// pointers may alias), which cost more than the whole decision.
#[inline(always)]
fn write_mac(to: *mut [u8; 6], mac: &[u8; 6]) {
    let to = to as *mut u8;
    for (i, byte) in mac.iter().enumerate() {
        // Volatile keeps LLVM from folding the stores back into a memmove.
        unsafe { core::ptr::write_volatile(to.add(i), *byte) };
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
