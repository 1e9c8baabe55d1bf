//! Raw Ethernet frames sent from inside a namespace through an AF_PACKET
//! socket: what a malicious container can put on its port.
//!
//! The socket is created by a thread that entered the namespace; a socket
//! stays in the namespace it was created in, so it can be used from any
//! thread afterwards.

use std::{
    ffi::CString,
    io,
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use netfabric_common::checksum::ipv4_header_checksum;

use crate::netns::Netns;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// An AF_PACKET socket bound to one interface of one namespace. Sends only
/// (protocol 0: it receives nothing).
pub struct RawSender {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSender {
    /// Open a sender on `dev` inside `ns` (from a thread that enters `ns`).
    pub fn open(ns: &Netns, dev: &str) -> io::Result<RawSender> {
        std::thread::scope(|s| {
            s.spawn(|| {
                let _inside = ns.enter();
                let name =
                    CString::new(dev).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
                if ifindex == 0 {
                    return Err(io::Error::last_os_error());
                }
                let raw = unsafe {
                    libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)
                };
                if raw < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `raw` is a fresh socket we own.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                let addr = sockaddr_ll(ifindex as i32, 0, &[0; 6]);
                let rc = unsafe {
                    libc::bind(
                        fd.as_raw_fd(),
                        &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                        size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                if rc < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(RawSender {
                    fd,
                    ifindex: ifindex as i32,
                })
            })
            .join()
            .expect("raw sender thread panicked")
        })
    }

    /// Send one complete Ethernet frame (header included).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        assert!(frame.len() >= 14, "a frame needs an Ethernet header");
        let dst: [u8; 6] = frame[0..6].try_into().unwrap();
        let proto = u16::from_be_bytes([frame[12], frame[13]]);
        let addr = sockaddr_ll(self.ifindex, proto, &dst);
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != frame.len() {
            return Err(io::Error::other(format!(
                "short send: {n} of {}",
                frame.len()
            )));
        }
        Ok(())
    }
}

fn sockaddr_ll(ifindex: i32, proto: u16, dst: &[u8; 6]) -> libc::sockaddr_ll {
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto.to_be();
    addr.sll_ifindex = ifindex;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(dst);
    addr
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60.max(14 + payload.len()));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    // Minimum Ethernet frame (without FCS).
    f.resize(f.len().max(60), 0);
    f
}

/// An IPv4/UDP frame (valid header checksum, UDP checksum 0 = none).
pub fn ipv4_udp(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let tot_len = 20 + udp_len;
    let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&(tot_len as u16).to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let check = ipv4_header_checksum(&ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    ip.extend_from_slice(&40000u16.to_be_bytes());
    ip.extend_from_slice(&dst_port.to_be_bytes());
    ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    ethernet(eth_dst, eth_src, ETH_P_IP, &ip)
}

/// An ARP request (broadcast) for `target_ip`.
pub fn arp_request(
    eth_src: [u8; 6],
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    arp.extend_from_slice(&sender_mac);
    arp.extend_from_slice(&sender_ip.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target_ip.octets());
    ethernet(BROADCAST, eth_src, ETH_P_ARP, &arp)
}

/// An IPv6/UDP frame between two link-local addresses.
pub fn ipv6_udp(eth_src: [u8; 6], eth_dst: [u8; 6], dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
    ip.extend_from_slice(&[17, 64]);
    let mut src = [0u8; 16];
    src[0] = 0xfe;
    src[1] = 0x80;
    src[15] = 1;
    let mut dst = src;
    dst[15] = 2;
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(&40000u16.to_be_bytes());
    ip.extend_from_slice(&dst_port.to_be_bytes());
    ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
    // IPv6 requires a UDP checksum; its value does not matter to a port
    // that drops the frame first.
    ip.extend_from_slice(&[0xff, 0xff]);
    ip.extend_from_slice(payload);
    ethernet(eth_dst, eth_src, ETH_P_IPV6, &ip)
}

/// `frame` with VLAN tags `(TPID, VID)` inserted after its MAC addresses,
/// outermost first (802.1Q `0x8100`, 802.1ad `0x88a8`, old QinQ `0x9100`).
pub fn with_tags(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (tpid, vid) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&vid.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// Is `ether_type` a VLAN tag (802.1Q, 802.1ad, 0x9100)?
pub fn is_vlan_tag(ether_type: u16) -> bool {
    matches!(ether_type, 0x8100 | 0x88a8 | 0x9100)
}

/// `struct tpacket_auxdata` (linux/if_packet.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

const PACKET_AUXDATA: libc::c_int = 8;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const PACKET_OUTGOING: u8 = 4;

/// One frame a [`Capture`] saw.
#[derive(Clone, Debug)]
pub struct Captured {
    pub ifindex: i32,
    /// Sent by this namespace's interface rather than received.
    pub outgoing: bool,
    /// The frame as the socket got it (a tag the kernel moved into the skb
    /// is not in here: see `stripped_tag`).
    pub frame: Vec<u8>,
    /// The TCI of a tag the kernel (or a driver) moved out of the frame
    /// into the skb, from `PACKET_AUXDATA`.
    pub stripped_tag: Option<u16>,
}

impl Captured {
    /// Did this frame carry a VLAN tag on the wire, stripped or in-band?
    pub fn tagged(&self) -> bool {
        self.stripped_tag.is_some()
            || self
                .frame
                .get(12..14)
                .is_some_and(|t| is_vlan_tag(u16::from_be_bytes([t[0], t[1]])))
    }

    /// IPv4 source and destination under any in-band tags, if IPv4.
    pub fn ipv4_addresses(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let mut off = 12;
        loop {
            let t = self.frame.get(off..off + 2)?;
            let ether_type = u16::from_be_bytes([t[0], t[1]]);
            if is_vlan_tag(ether_type) {
                off += 4;
                continue;
            }
            if ether_type != ETH_P_IP {
                return None;
            }
            let ip = self.frame.get(off + 2..off + 22)?;
            return Some((
                Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
                Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            ));
        }
    }
}

/// An AF_PACKET socket receiving every frame on every interface of one
/// namespace (both directions), with the VLAN tag the kernel strips into
/// the skb reported through `PACKET_AUXDATA`: what `tcpdump -e` shows.
pub struct Capture {
    fd: OwnedFd,
}

impl Capture {
    /// Start capturing in `ns` (from a thread that enters `ns`).
    pub fn open_all(ns: &Netns) -> io::Result<Capture> {
        std::thread::scope(|s| {
            s.spawn(|| {
                let _inside = ns.enter();
                let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
                let raw = unsafe {
                    libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                        proto,
                    )
                };
                if raw < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `raw` is a fresh socket we own.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                let on: libc::c_int = 1;
                let rc = unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_PACKET,
                        PACKET_AUXDATA,
                        (&on as *const libc::c_int).cast(),
                        size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                if rc < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(Capture { fd })
            })
            .join()
            .expect("capture thread panicked")
        })
    }

    /// Every frame queued so far, waiting up to `quiet` for more after the
    /// last one.
    pub fn drain(&self, quiet: std::time::Duration) -> Vec<Captured> {
        let mut out = Vec::new();
        loop {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = quiet.as_millis().min(i32::MAX as u128) as libc::c_int;
            if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
                return out;
            }
            while let Some(c) = self.recv_one() {
                out.push(c);
            }
        }
    }

    fn recv_one(&self) -> Option<Captured> {
        let mut buf = vec![0u8; 65536];
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut cmsg_buf = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg_buf.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&cmsg_buf);
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return None;
        }
        buf.truncate(n as usize);
        let mut stripped_tag = None;
        // SAFETY: the control buffer was filled by recvmsg; the CMSG_*
        // macros stay within `msg_controllen`.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == PACKET_AUXDATA {
                    let aux: TpacketAuxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<TpacketAuxdata>());
                    if aux.tp_status & TP_STATUS_VLAN_VALID != 0 || aux.tp_vlan_tci != 0 {
                        stripped_tag = Some(aux.tp_vlan_tci);
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Some(Captured {
            ifindex: from.sll_ifindex,
            outgoing: from.sll_pkttype == PACKET_OUTGOING,
            frame: buf,
            stripped_tag,
        })
    }
}
