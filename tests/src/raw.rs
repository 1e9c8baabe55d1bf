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
