//! ARP for IPv4 over Ethernet.

use netfabric_common::DropReason;

use super::{Packet, eth::ETH_HLEN, mac_bits};

#[repr(C)]
pub struct ArpHdr {
    pub htype: [u8; 2],
    pub ptype: [u8; 2],
    pub hlen: u8,
    pub plen: u8,
    pub oper: [u8; 2],
    pub sender_mac: [u8; 6],
    pub sender_ip: [u8; 4],
    pub target_mac: [u8; 6],
    pub target_ip: [u8; 4],
}

/// Sender MAC (as [`mac_bits`]) and sender IP (host order) of an
/// Ethernet/IPv4 ARP packet.
#[inline(always)]
pub fn parse(pkt: &Packet) -> Result<(u64, u32), DropReason> {
    let arp: *const ArpHdr = pkt.ptr_at(ETH_HLEN)?;
    unsafe {
        if u16::from_be_bytes((*arp).htype) != 1
            || u16::from_be_bytes((*arp).ptype) != 0x0800
            || (*arp).hlen != 6
            || (*arp).plen != 4
        {
            return Err(DropReason::Malformed);
        }
        Ok((
            mac_bits(&raw const (*arp).sender_mac),
            u32::from_be_bytes((*arp).sender_ip),
        ))
    }
}

/// Sender and target IP (host order) of an ARP packet long enough to hold
/// them, unvalidated (for drop events).
#[inline(always)]
pub fn addresses(pkt: &Packet) -> Result<(u32, u32), DropReason> {
    let arp: *const ArpHdr = pkt.ptr_at(ETH_HLEN)?;
    unsafe {
        Ok((
            u32::from_be_bytes((*arp).sender_ip),
            u32::from_be_bytes((*arp).target_ip),
        ))
    }
}
