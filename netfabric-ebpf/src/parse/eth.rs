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

/// Rewrite both MACs (routing: we are the previous hop).
#[inline(always)]
pub fn set_macs(eth: *mut EthHdr, src: &[u8; 6], dst: &[u8; 6]) {
    unsafe {
        (*eth).dst = *dst;
        (*eth).src = *src;
    }
}
