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
/// ICMP errors that quote the packet they answer (RFC 792): destination
/// unreachable (fragmentation needed among them), time exceeded, parameter
/// problem.
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

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
    /// An ICMP error that quotes the packet it answers ([`quoted_key`]).
    #[inline(always)]
    pub fn is_icmp_error(&self) -> bool {
        self.protocol == PROTO_ICMP
            && matches!(
                self.icmp_type,
                ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
            )
    }

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

/// The `CONNECTIONS` key of the packet an ICMP error behind `ip` quotes, as
/// that packet was sent (its `src` is whom the error is for): the quoted
/// IPv4 header and the first 8 bytes behind it (the ports, or the echo
/// request's identifier). `None` when the quote is not IPv4, is a later
/// fragment, carries another protocol or is cut short: such an error
/// answers nothing that is tracked. Call it for [`L4::is_icmp_error`].
#[inline(always)]
pub fn quoted_key(pkt: &Packet, ip: &Ipv4) -> Option<ConnKey> {
    // Behind the error's own 8-byte header.
    let at = ETH_HLEN + ip.header_len() + 8;
    let h: *const [u8; 20] = pkt.ptr_at(at).ok()?;
    let h = unsafe { &*h };
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let fragment_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    if h[0] >> 4 != 4 || ihl < 20 || fragment_offset != 0 {
        return None;
    }
    // `& 0x3c`: the verifier sees a bounded offset (ihl is 20..=60).
    let t: *const [u8; 8] = pkt.ptr_at(at + (ihl & 0x3c)).ok()?;
    let t = unsafe { &*t };
    let (src_port, dst_port) = match h[9] {
        PROTO_TCP | PROTO_UDP => (
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        ),
        // An echo request keys as the request itself does (`parse`).
        PROTO_ICMP if t[0] == ICMP_ECHO_REQUEST => (u16::from_be_bytes([t[4], t[5]]), 0),
        _ => return None,
    };
    Some(ConnKey {
        src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
        dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
        src_port,
        dst_port,
        protocol: h[9],
        _pad: [0; 3],
    })
}
