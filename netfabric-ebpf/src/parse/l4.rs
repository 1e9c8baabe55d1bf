//! The transport header as far as the stateful policy needs it: ports (TCP,
//! UDP), the ICMP echo identifier, TCP flags. What connection tracking keys
//! on and security groups scope.

use netfabric_common::{
    DropReason,
    conntrack::{ConnKey, PROTO_ICMP, PROTO_TCP, PROTO_UDP},
};

use super::{Packet, eth::ETH_HLEN, ipv4::Ipv4};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;

/// One packet's transport identity. Aligned like a stack slot: the build
/// allows misaligned accesses, which the verifier accepts for packets and
/// map values but not for the stack.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct L4 {
    /// IP protocol number.
    pub protocol: u8,
    /// Host byte order. TCP/UDP: the ports. ICMP echo request: the
    /// identifier as `src_port`, 0 as `dst_port`; echo reply: the other way
    /// round (so a reply's reversed key is its request's). Anything else
    /// (other protocols, other ICMP types, later fragments): 0.
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags (byte 13 of the header); 0 for other protocols.
    pub tcp_flags: u8,
    /// ICMP type of an ICMP first fragment; 0 for other protocols (0 is
    /// also the echo reply: look at `protocol` first).
    pub icmp_type: u8,
    /// The ports above are known: a TCP/UDP first fragment, or ICMP echo.
    /// A later fragment, another protocol or ICMP type has none.
    pub has_ports: bool,
}

impl L4 {
    /// The `CONNECTIONS` key of this packet from `src` to `dst`.
    #[inline(always)]
    pub fn key(&self, ip: &Ipv4) -> ConnKey {
        ConnKey {
            src: ip.src,
            dst: ip.dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
            protocol: self.protocol,
            _pad: [0; 3],
        }
    }
}

/// Reads the transport header behind `ip`. A first fragment of TCP, UDP or
/// ICMP too short to hold the fields read here is `Malformed` (the stack
/// would drop it too); later fragments carry no transport header.
#[inline(always)]
pub fn parse(pkt: &Packet, ip: &Ipv4) -> Result<L4, DropReason> {
    let protocol = ip.protocol();
    let mut l4 = L4 {
        protocol,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        icmp_type: 0,
        has_ports: false,
    };
    if ip.fragment_offset() != 0 {
        return Ok(l4);
    }
    let at = ETH_HLEN + ip.header_len();
    match protocol {
        PROTO_TCP => {
            // Ports (4), sequence (4), acknowledgement (4), offset, flags.
            let h: *const [u8; 14] = pkt.ptr_at(at)?;
            let h = unsafe { &*h };
            l4.src_port = u16::from_be_bytes([h[0], h[1]]);
            l4.dst_port = u16::from_be_bytes([h[2], h[3]]);
            l4.tcp_flags = h[13];
            l4.has_ports = true;
        }
        PROTO_UDP => {
            let h: *const [u8; 4] = pkt.ptr_at(at)?;
            let h = unsafe { &*h };
            l4.src_port = u16::from_be_bytes([h[0], h[1]]);
            l4.dst_port = u16::from_be_bytes([h[2], h[3]]);
            l4.has_ports = true;
        }
        PROTO_ICMP => {
            // Type, code, checksum, identifier.
            let h: *const [u8; 6] = pkt.ptr_at(at)?;
            let h = unsafe { &*h };
            let id = u16::from_be_bytes([h[4], h[5]]);
            l4.icmp_type = h[0];
            match h[0] {
                ICMP_ECHO_REQUEST => {
                    l4.src_port = id;
                    l4.has_ports = true;
                }
                ICMP_ECHO_REPLY => {
                    l4.dst_port = id;
                    l4.has_ports = true;
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(l4)
}
