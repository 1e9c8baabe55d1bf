//! Packet builders for the datapath fixtures (built with `etherparse`), the
//! targeted corruptions the malformed fixtures need, and independent checks
//! of what a forwarding program wrote (MACs, TTL, IPv4 header checksum).

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, Ipv4HeaderSlice, Ipv4Options,
    PacketBuilder, UdpHeader,
};

pub type Mac = [u8; 6];

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
/// The pre-standard QinQ outer tag.
pub const ETH_P_QINQ: u16 = 0x9100;
pub const ETH_P_LLDP: u16 = 0x88cc;

/// Is `ether_type` a VLAN tag the kernel strips (802.1Q, 802.1ad, 0x9100)?
pub fn is_vlan_tag(ether_type: u16) -> bool {
    matches!(ether_type, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ)
}

/// A locally administered MAC `02:00:a:b:c:d`.
pub const fn mac(a: u8, b: u8, c: u8, d: u8) -> Mac {
    [0x02, 0x00, a, b, c, d]
}

/// An IPv4/UDP frame, described field by field.
#[derive(Clone, Debug)]
pub struct Ipv4Frame {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// UDP payload bytes (the UDP header comes on top).
    pub payload: usize,
    /// IPv4 options (a multiple of 4 bytes, at most 40).
    pub options: Vec<u8>,
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// VLAN tags between the Ethernet and IPv4 headers, outermost first:
    /// (TPID, VID).
    pub tags: Vec<(u16, u16)>,
    /// Extra bytes after the IPv4 datagram (Ethernet padding).
    pub trailer: usize,
}

impl Ipv4Frame {
    pub fn new(src_mac: Mac, dst_mac: Mac, src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Ipv4Frame {
            src_mac,
            dst_mac,
            src,
            dst,
            ttl: 64,
            payload: 32,
            options: Vec::new(),
            more_fragments: false,
            frag_offset: 0,
            tags: Vec::new(),
            trailer: 0,
        }
    }

    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn payload(mut self, payload: usize) -> Self {
        self.payload = payload;
        self
    }

    pub fn options(mut self, options: &[u8]) -> Self {
        self.options = options.to_vec();
        self
    }

    pub fn fragment(mut self, more_fragments: bool, offset: u16) -> Self {
        self.more_fragments = more_fragments;
        self.frag_offset = offset;
        self
    }

    /// Add an 802.1Q tag with VLAN id `id` (inside any tag added before).
    pub fn vlan(self, id: u16) -> Self {
        self.tag(ETH_P_8021Q, id)
    }

    /// Add a tag of type `tpid` (802.1Q, 802.1ad, ...) with VLAN id `id`,
    /// inside any tag added before.
    pub fn tag(mut self, tpid: u16, id: u16) -> Self {
        assert!(id < 4096, "VLAN id {id}");
        self.tags.push((tpid, id));
        self
    }

    pub fn trailer(mut self, bytes: usize) -> Self {
        self.trailer = bytes;
        self
    }

    /// Total frame length this description builds.
    pub fn len(&self) -> usize {
        ETH_HLEN + 4 * self.tags.len() + 20 + self.options.len() + 8 + self.payload + self.trailer
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        let eth_type = self.tags.first().map_or(ETH_P_IP, |(tpid, _)| *tpid);
        Ethernet2Header {
            source: self.src_mac,
            destination: self.dst_mac,
            ether_type: EtherType(eth_type),
        }
        .write(&mut out)
        .expect("ethernet header");
        for (i, (_, id)) in self.tags.iter().enumerate() {
            let next = self.tags.get(i + 1).map_or(ETH_P_IP, |(tpid, _)| *tpid);
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&next.to_be_bytes());
        }
        let udp_len = 8 + self.payload;
        let mut ip = Ipv4Header::new(
            udp_len as u16,
            self.ttl,
            IpNumber::UDP,
            self.src.octets(),
            self.dst.octets(),
        )
        .expect("ipv4 header");
        ip.identification = 0x1234;
        ip.options = Ipv4Options::try_from(&self.options[..]).expect("ipv4 options");
        ip.set_payload_len(udp_len).expect("ipv4 payload length");
        ip.more_fragments = self.more_fragments;
        ip.fragment_offset = IpFragOffset::try_new(self.frag_offset).expect("fragment offset");
        ip.header_checksum = ip.calc_header_checksum();
        ip.write(&mut out).expect("ipv4 header");
        let udp = UdpHeader::without_ipv4_checksum(40000, 7, self.payload).expect("udp header");
        udp.write(&mut out).expect("udp header");
        out.extend((0..self.payload).map(|i| (i % 251) as u8));
        out.extend(std::iter::repeat_n(0u8, self.trailer));
        out
    }
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Clone, Debug)]
pub struct ArpFrame {
    pub eth_src: Mac,
    pub eth_dst: Mac,
    /// 1 request, 2 reply.
    pub oper: u16,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_mac: Mac,
    pub target_ip: Ipv4Addr,
    /// Hardware type (1 = Ethernet).
    pub htype: u16,
    /// Protocol type (0x0800 = IPv4).
    pub ptype: u16,
}

impl ArpFrame {
    /// A request "who has `target_ip`, tell `sender_ip`" from `mac`.
    pub fn request(mac: Mac, ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        ArpFrame {
            eth_src: mac,
            eth_dst: [0xff; 6],
            oper: 1,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: [0; 6],
            target_ip,
            htype: 1,
            ptype: 0x0800,
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(42);
        Ethernet2Header {
            source: self.eth_src,
            destination: self.eth_dst,
            ether_type: EtherType::ARP,
        }
        .write(&mut out)
        .expect("ethernet header");
        out.extend_from_slice(&self.htype.to_be_bytes());
        out.extend_from_slice(&self.ptype.to_be_bytes());
        out.extend_from_slice(&[6, 4]);
        out.extend_from_slice(&self.oper.to_be_bytes());
        out.extend_from_slice(&self.sender_mac);
        out.extend_from_slice(&self.sender_ip.octets());
        out.extend_from_slice(&self.target_mac);
        out.extend_from_slice(&self.target_ip.octets());
        out
    }
}

/// An IPv6/UDP frame.
pub fn ipv6(src_mac: Mac, dst_mac: Mac, src: Ipv6Addr, dst: Ipv6Addr, payload: usize) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src.octets(), dst.octets(), 64)
        .udp(40000, 7);
    let body: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let mut out = Vec::with_capacity(builder.size(payload));
    builder.write(&mut out, &body).expect("ipv6 frame");
    out
}

/// An Ethernet frame with any EtherType and an opaque body.
pub fn raw_ethernet(src_mac: Mac, dst_mac: Mac, ether_type: u16, body: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_HLEN + body);
    Ethernet2Header {
        source: src_mac,
        destination: dst_mac,
        ether_type: EtherType(ether_type),
    }
    .write(&mut out)
    .expect("ethernet header");
    out.extend((0..body).map(|i| i as u8));
    out
}

// ---- corruptions (on an untagged IPv4 frame) ---------------------------------

/// Recompute the IPv4 header checksum over the first `IHL` words (bounded by
/// the frame), so a corrupted frame has exactly one defect.
pub fn refresh_checksum(frame: &mut [u8]) {
    let ihl = (frame[ETH_HLEN] & 0x0f) as usize * 4;
    let end = (ETH_HLEN + ihl.max(20)).min(frame.len());
    frame[ETH_HLEN + 10] = 0;
    frame[ETH_HLEN + 11] = 0;
    let c = checksum(&frame[ETH_HLEN..end]);
    frame[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
}

pub fn set_ihl(mut frame: Vec<u8>, ihl: u8) -> Vec<u8> {
    frame[ETH_HLEN] = (frame[ETH_HLEN] & 0xf0) | (ihl & 0x0f);
    refresh_checksum(&mut frame);
    frame
}

pub fn set_version(mut frame: Vec<u8>, version: u8) -> Vec<u8> {
    frame[ETH_HLEN] = (version << 4) | (frame[ETH_HLEN] & 0x0f);
    refresh_checksum(&mut frame);
    frame
}

pub fn set_total_len(mut frame: Vec<u8>, total_len: u16) -> Vec<u8> {
    frame[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&total_len.to_be_bytes());
    refresh_checksum(&mut frame);
    frame
}

/// A transport header as connection tracking reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A 20-byte TCP header with these flags (FIN 0x01, SYN 0x02, RST
    /// 0x04, ACK 0x10).
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP echo request (type 8) or reply (type 0) with identifier `id`.
    Echo {
        request: bool,
        id: u16,
    },
    /// Another ICMP type (e.g. 3, destination unreachable): no identifier.
    Icmp {
        icmp_type: u8,
    },
    /// An ICMP error (`icmp_type` 3, 11 or 12) quoting the packet `quoted`
    /// as it was sent: its 20-byte IPv4 header and 8 bytes of its TCP or
    /// UDP header (ports) or ICMP echo request (identifier: the key's
    /// `src_port`).
    IcmpError {
        icmp_type: u8,
        quoted: netfabric_common::conntrack::ConnKey,
    },
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// `frame` (IPv4, built with at least 20 bytes of payload) carrying `t`
/// right after its IPv4 header: the protocol field, the header's bytes and
/// the IPv4 checksum are written (transport checksums are left at 0: the
/// programs never read them).
pub fn with_transport(mut frame: Vec<u8>, t: Transport) -> Vec<u8> {
    let ihl = usize::from(frame[ETH_HLEN] & 0x0f) * 4;
    let at = ETH_HLEN + ihl;
    let (proto, header): (u8, Vec<u8>) = match t {
        Transport::Tcp {
            sport,
            dport,
            flags,
        } => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[4..8].copy_from_slice(&0x1000_0000u32.to_be_bytes());
            h[12] = 5 << 4;
            h[13] = flags;
            h[14..16].copy_from_slice(&64240u16.to_be_bytes());
            (6, h)
        }
        Transport::Udp { sport, dport } => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            let len = (frame.len() - at) as u16;
            h[4..6].copy_from_slice(&len.to_be_bytes());
            (17, h)
        }
        Transport::Echo { request, id } => {
            let mut h = vec![0u8; 8];
            h[0] = if request { 8 } else { 0 };
            h[4..6].copy_from_slice(&id.to_be_bytes());
            h[6..8].copy_from_slice(&1u16.to_be_bytes());
            (1, h)
        }
        Transport::Icmp { icmp_type } => {
            let mut h = vec![0u8; 8];
            h[0] = icmp_type;
            (1, h)
        }
        Transport::IcmpError { icmp_type, quoted } => {
            // ICMP header (type, code, checksum, unused), then the quote.
            let mut h = vec![0u8; 8 + 20 + 8];
            h[0] = icmp_type;
            h[1] = if icmp_type == 3 { 4 } else { 0 };
            let q = &mut h[8..];
            q[0] = 0x45;
            q[2..4].copy_from_slice(&1400u16.to_be_bytes());
            q[6] = 0x40;
            q[8] = 64;
            q[9] = quoted.protocol;
            q[12..16].copy_from_slice(&quoted.src.to_be_bytes());
            q[16..20].copy_from_slice(&quoted.dst.to_be_bytes());
            let sum = checksum(&q[..20]);
            q[10..12].copy_from_slice(&sum.to_be_bytes());
            let t = &mut q[20..];
            if quoted.protocol == 1 {
                t[0] = 8;
                t[4..6].copy_from_slice(&quoted.src_port.to_be_bytes());
            } else {
                t[0..2].copy_from_slice(&quoted.src_port.to_be_bytes());
                t[2..4].copy_from_slice(&quoted.dst_port.to_be_bytes());
            }
            (1, h)
        }
    };
    assert!(
        frame.len() >= at + header.len(),
        "payload too short for {t:?}"
    );
    frame[ETH_HLEN + 9] = proto;
    frame[at..at + header.len()].copy_from_slice(&header);
    refresh_checksum(&mut frame);
    frame
}

pub fn truncate(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    frame.truncate(len);
    frame
}

// ---- independent checks ---------------------------------------------------------

/// RFC 791 one's complement sum over `bytes`, complemented (written without
/// the code under test).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for chunk in bytes.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u64::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Is the IPv4 header of `frame` (untagged) valid per its checksum? Checked
/// twice: by etherparse's own recompute and by a plain one's complement sum.
pub fn ipv4_checksum_ok(frame: &[u8]) -> Result<(), String> {
    let ip = &frame[ETH_HLEN..];
    let slice = Ipv4HeaderSlice::from_slice(ip).map_err(|e| format!("etherparse: {e}"))?;
    let stored = slice.header_checksum();
    let recomputed = slice.to_header().calc_header_checksum();
    if stored != recomputed {
        return Err(format!(
            "IPv4 checksum {stored:#06x}, etherparse recomputes {recomputed:#06x}"
        ));
    }
    let ihl = slice.slice().len();
    if checksum(&ip[..ihl]) != 0 {
        return Err("IPv4 header does not sum to 0xffff".into());
    }
    Ok(())
}

/// `input` routed one hop: new MACs, TTL - 1, valid header checksum, every
/// other byte unchanged.
pub fn routed(input: &[u8], new_src: Mac, new_dst: Mac) -> Vec<u8> {
    let mut out = input.to_vec();
    out[0..6].copy_from_slice(&new_dst);
    out[6..12].copy_from_slice(&new_src);
    out[ETH_HLEN + 8] -= 1;
    out
}

/// Compare what a forwarding program produced against the expected routed
/// frame, checking the IPv4 checksum independently (not byte-compared, so a
/// wrong checksum shows as such).
pub fn check_routed(input: &[u8], output: &[u8], new_src: Mac, new_dst: Mac) -> Result<(), String> {
    if output.len() != input.len() {
        return Err(format!("length {} → {}", input.len(), output.len()));
    }
    let want = routed(input, new_src, new_dst);
    if output[0..6] != want[0..6] {
        return Err(format!(
            "dst MAC {:02x?}, want {:02x?}",
            &output[0..6],
            &want[0..6]
        ));
    }
    if output[6..12] != want[6..12] {
        return Err(format!(
            "src MAC {:02x?}, want {:02x?}",
            &output[6..12],
            &want[6..12]
        ));
    }
    let slice = Ipv4HeaderSlice::from_slice(&output[ETH_HLEN..]).map_err(|e| format!("{e}"))?;
    if slice.ttl() != input[ETH_HLEN + 8] - 1 {
        return Err(format!("TTL {} → {}", input[ETH_HLEN + 8], slice.ttl()));
    }
    ipv4_checksum_ok(output)?;
    let csum = ETH_HLEN + 10..ETH_HLEN + 12;
    for (i, (a, b)) in output.iter().zip(want.iter()).enumerate() {
        if a != b && !csum.contains(&i) {
            return Err(format!("byte {i} is {a:#04x}, want {b:#04x}"));
        }
    }
    Ok(())
}

/// A short hex rendering for failure messages.
pub fn hex(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 64 {
        s.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    s
}
