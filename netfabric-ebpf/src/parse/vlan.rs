//! 802.1Q / 802.1ad tags. netfabric never tags its own traffic: a tag on a
//! container's frame, or on uplink IPv4 that touches a zone, is an attempt to
//! get past the checks (the kernel strips the tag and may route what is
//! inside, with its source unchecked).

use netfabric_common::DropReason;

use super::{
    Packet,
    eth::{ETH_HLEN, ETH_P_IP},
    ipv4::Ipv4Hdr,
};

pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
/// The pre-standard QinQ outer tag some switches still send.
pub const ETH_P_QINQ: u16 = 0x9100;
pub const VLAN_HLEN: usize = 4;

#[repr(C)]
struct VlanHdr {
    tci: [u8; 2],
    ether_type: [u8; 2],
}

/// Is `ether_type` (host order) a VLAN tag the kernel would strip?
#[inline(always)]
pub fn is_tag(ether_type: u16) -> bool {
    ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD || ether_type == ETH_P_QINQ
}

/// What a tagged frame carries under its tags.
pub enum Inner {
    /// IPv4: source and destination, host order (the header is not
    /// validated: only whether the addresses touch a zone matters).
    Ipv4 { src: u32, dst: u32 },
    /// Anything else under one or two tags (ARP, IPv6, ... of the host's own
    /// VLANs).
    Other,
    /// More than two tags: deeper than this parser looks.
    TooDeep,
}

/// The EtherType of the tag at `offset`.
#[inline(always)]
fn inner_type(pkt: &Packet, offset: usize) -> Result<u16, DropReason> {
    let tag: *const VlanHdr = pkt.ptr_at(offset)?;
    Ok(u16::from_be_bytes(unsafe { (*tag).ether_type }))
}

/// Look under the one or two tags of a frame whose EtherType is a tag
/// ([`is_tag`]). A tag cut short, or IPv4 under the tags too short for its
/// addresses, is `Malformed`.
#[inline(always)]
pub fn inner(pkt: &Packet) -> Result<Inner, DropReason> {
    under(pkt, inner_type(pkt, ETH_HLEN)?, ETH_HLEN + VLAN_HLEN)
}

/// What a frame carries whose outer tag the kernel already stripped into the
/// skb (TC on a receiving interface): `ether_type` is the one that was under
/// that tag, so the frame itself may hold one more tag before a third is
/// [`Inner::TooDeep`], as in [`inner`].
#[inline(always)]
pub fn inner_stripped(pkt: &Packet, ether_type: u16) -> Result<Inner, DropReason> {
    under(pkt, ether_type, ETH_HLEN)
}

/// What follows one tag already read, whose inner EtherType is `ether_type`
/// and whose payload starts at `offset`: at most one more tag.
#[inline(always)]
fn under(pkt: &Packet, ether_type: u16, offset: usize) -> Result<Inner, DropReason> {
    let (mut ether_type, mut offset) = (ether_type, offset);
    if is_tag(ether_type) {
        ether_type = inner_type(pkt, offset)?;
        offset += VLAN_HLEN;
        if is_tag(ether_type) {
            return Ok(Inner::TooDeep);
        }
    }
    if ether_type != ETH_P_IP {
        return Ok(Inner::Other);
    }
    let ip: *const Ipv4Hdr = pkt.ptr_at(offset)?;
    let (src, dst) = unsafe { ((*ip).src, (*ip).dst) };
    Ok(Inner::Ipv4 {
        src: u32::from_be_bytes(src),
        dst: u32::from_be_bytes(dst),
    })
}
