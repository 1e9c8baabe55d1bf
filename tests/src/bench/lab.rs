//! The end-to-end bench's lab: two hosts of zone 10.1.0.0/16 built from
//! network namespaces, laid out like [`crate::topology`] (underlay bridge,
//! uplink `up0`, host bridge `nfbr0` holding the containers' gateway,
//! container ports `nfc<octet>`) but with no datapath attached: each peer
//! (plain routing, netfabric, iptables, nftables) is put on top of it.
//!
//! Plain routing is the flannel host-gw way: IP forwarding on, each host
//! routes the other host's container /24 via that host's underlay address.
//! Netfabric bypasses those routes; the policy peers filter the routed
//! packets in the FORWARD hook.
//!
//! The routed-veths peer gets its own plumbing ([`Plumbing::RoutedVeths`]):
//! Calico's non-eBPF design, no host bridge, a /32 route per container port,
//! proxy ARP for the link-local gateway, and the kernel's default offloads
//! on every interface (the netfabric plumbing has them too, plus GRO on
//! both uplink ends).
//!
//! Everything lives in namespaces owned by [`Netns`] guards (never in the
//! root namespace): dropping the [`Lab`], also on panic, removes every
//! device, route, rule and attached program. Names carry the process id
//! ([`name`]); [`remove_stale`] deletes what a killed run left behind.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::{
    netns::Netns,
    topology::{
        CONTAINER_IFNAME, GATEWAY, HOST_BRIDGE, UPLINK, container_mac, gateway_mac, ip_in, mac_str,
        no_ipv6,
    },
};

/// How the lab's hosts and containers are wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plumbing {
    /// The product's layout ([`crate::topology::plumb_host`] and
    /// [`crate::topology::plumb_container`]): host bridge, the kernel's
    /// default offloads, GRO on both uplink ends.
    Netfabric,
    /// Calico without eBPF: every port a routed veth (its MAC the host's
    /// gateway MAC, as Calico gives every host-side veth one MAC), a /32
    /// route per container, proxy ARP answering for the link-local gateway;
    /// no ethtool change on the uplinks.
    RoutedVeths,
}

/// Underlay /24: `172.31.UNDERLAY_NET.<host>` (inside the lab's namespaces).
pub const UNDERLAY_NET: u8 = 251;
/// Prefix of every namespace the bench makes.
const PREFIX: &str = "nfb";

/// A namespace name unique to this process: `nfb<kind><pid>x<n>`.
pub fn name(kind: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let kind = kind.strip_prefix(PREFIX).unwrap_or(kind);
    format!(
        "{PREFIX}{kind}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Delete bench namespaces whose process is gone (a run killed by a signal
/// cannot unwind its guards).
pub fn remove_stale() {
    let Ok(out) = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = ns.strip_prefix(PREFIX) else {
            continue;
        };
        let digits: String = rest
            .trim_start_matches(|c: char| c.is_ascii_lowercase())
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("bench: removing stale namespace {ns}");
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .output();
        }
    }
}

pub fn uplink_mac(host: u8) -> [u8; 6] {
    crate::topology::uplink_mac(host)
}

pub fn underlay_ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 31, UNDERLAY_NET, host)
}

pub struct LabContainer {
    pub host: u8,
    pub octet: u8,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Host-side end of the veth, in the host namespace.
    pub port: String,
    pub port_ifindex: u32,
    /// `eth0` inside the container namespace.
    pub eth0_ifindex: u32,
    pub ns: Netns,
}

pub struct LabHost {
    pub octet: u8,
    pub ns: Netns,
    pub uplink_ifindex: u32,
}

/// Fields drop in declaration order: containers, hosts, underlay.
pub struct Lab {
    pub containers: Vec<LabContainer>,
    pub hosts: Vec<LabHost>,
    pub underlay: Netns,
}

/// The sending container, the receiver on the same host, the receiver on
/// the other host.
pub const SENDER: (u8, u8) = (1, 1);
pub const LOCAL_RECEIVER: (u8, u8) = (1, 2);
pub const REMOTE_RECEIVER: (u8, u8) = (2, 1);

impl Lab {
    /// Two hosts; containers [`SENDER`], [`LOCAL_RECEIVER`], [`REMOTE_RECEIVER`].
    pub fn build() -> Lab {
        Lab::build_with(Plumbing::Netfabric)
    }

    pub fn build_with(plumbing: Plumbing) -> Lab {
        Lab::build_containers(plumbing, &[SENDER, LOCAL_RECEIVER, REMOTE_RECEIVER])
    }

    /// Two hosts and the containers `(host, octet)` given (host 1 or 2).
    pub fn build_containers(plumbing: Plumbing, wanted: &[(u8, u8)]) -> Lab {
        let underlay = Netns::new(&name("u"));
        no_ipv6(&underlay);
        ip_in(&underlay, &["link", "add", "ubr", "type", "bridge"]);
        ip_in(&underlay, &["link", "set", "ubr", "up"]);
        let mut hosts = Vec::new();
        for h in 1..=2u8 {
            let ns = Netns::new(&name("h"));
            no_ipv6(&ns);
            match plumbing {
                Plumbing::Netfabric => {
                    crate::topology::plumb_host(&underlay, &ns, h, underlay_ip(h));
                }
                Plumbing::RoutedVeths => routed_host(&underlay, &ns, h),
            }
            // flannel host-gw: the other host's containers via its underlay IP.
            let other = 3 - h;
            ip_in(
                &ns,
                &[
                    "route",
                    "add",
                    &format!("10.1.{other}.0/24"),
                    "via",
                    &underlay_ip(other).to_string(),
                    "dev",
                    UPLINK,
                ],
            );
            ns.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
            // Same-host traffic is routed back out of the bridge it came
            // in on: no ICMP redirects (a per-host /32 route per port, as
            // Calico does, would not send them either).
            let bridge = (plumbing == Plumbing::Netfabric).then_some(HOST_BRIDGE);
            for conf in ["all", "default"].into_iter().chain(bridge) {
                ns.exec(&[
                    "sysctl",
                    "-q",
                    "-w",
                    &format!("net.ipv4.conf.{conf}.send_redirects=0"),
                ]);
            }
            let uplink_ifindex = ns.ifindex(UPLINK);
            hosts.push(LabHost {
                octet: h,
                ns,
                uplink_ifindex,
            });
        }
        let mut containers = Vec::new();
        for &(h, c) in wanted {
            let host = &hosts[usize::from(h - 1)].ns;
            let ns = Netns::new(&name("c"));
            no_ipv6(&ns);
            let ip = Ipv4Addr::new(10, 1, h, c);
            let mac = container_mac(h, c);
            let port = netfabric::conventions::port_name(ip);
            // Also GRO on the port: the generator's XDP_TX out of eth0
            // lands there.
            let port_ifindex = match plumbing {
                Plumbing::Netfabric => crate::topology::plumb_container(host, &ns, ip, mac, &port),
                Plumbing::RoutedVeths => routed_container(host, &ns, h, ip, mac, &port),
            };
            host.exec(&["ethtool", "-K", &port, "gro", "on"]);
            let eth0_ifindex = ns.ifindex(CONTAINER_IFNAME);
            containers.push(LabContainer {
                host: h,
                octet: c,
                ip,
                mac,
                port,
                port_ifindex,
                eth0_ifindex,
                ns,
            });
        }
        Lab {
            containers,
            hosts,
            underlay,
        }
    }

    pub fn container(&self, at: (u8, u8)) -> &LabContainer {
        self.containers
            .iter()
            .find(|c| (c.host, c.octet) == at)
            .expect("a lab container")
    }

    pub fn host(&self, octet: u8) -> &LabHost {
        &self.hosts[usize::from(octet - 1)]
    }

    /// Take back what only the packet generator needs: GRO on the ports
    /// (its `XDP_TX` out of a container's `eth0` lands on the port, which
    /// needs NAPI). TCP and round trips then run on each peer's own
    /// plumbing, where a port keeps the kernel's default (GRO off).
    pub fn generator_done(&self) {
        for c in &self.containers {
            self.host(c.host)
                .ns
                .exec(&["ethtool", "-K", &c.port, "gro", "off"]);
        }
    }
}

/// Host `h` of the routed-veths peer: uplink veth `up0` (fixed MAC,
/// underlay /24) into the underlay bridge with the kernel's default
/// offloads, no host bridge. A real host routes the link-local gateway out
/// of its default route, which is what lets proxy ARP answer for it on
/// every port; the lab's hosts have no default route, so a /32 towards the
/// underlay stands in for it (nothing is ever sent there).
fn routed_host(underlay: &Netns, ns: &Netns, h: u8) {
    crate::topology::plumb_uplink(underlay, ns, h, underlay_ip(h));
    ip_in(
        ns,
        &["route", "add", &format!("{GATEWAY}/32"), "dev", UPLINK],
    );
}

/// A routed-veths container: veth `port` / `eth0`, the container side like
/// the product's (`ip`/32, the link-local gateway on-link and as default
/// route); the host side keeps no address, answers ARP for the gateway by
/// proxy (at once: `proxy_delay` 0, as Calico sets it) and carries the
/// container's /32 route. Returns the port's ifindex.
fn routed_container(
    host: &Netns,
    ns: &Netns,
    h: u8,
    ip: Ipv4Addr,
    mac: [u8; 6],
    port: &str,
) -> u32 {
    let dev = CONTAINER_IFNAME;
    let gateway = GATEWAY.to_string();
    ip_in(
        host,
        &[
            "link", "add", port, "type", "veth", "peer", "name", dev, "netns", &ns.name,
        ],
    );
    ip_in(ns, &["link", "set", dev, "address", &mac_str(mac), "up"]);
    ip_in(ns, &["addr", "add", &format!("{ip}/32"), "dev", dev]);
    ip_in(ns, &["route", "add", &gateway, "dev", dev, "scope", "link"]);
    ip_in(
        ns,
        &["route", "add", "default", "via", &gateway, "dev", dev],
    );
    ip_in(
        host,
        &["link", "set", port, "address", &mac_str(gateway_mac(h))],
    );
    for knob in [
        format!("net.ipv4.conf.{port}.proxy_arp=1"),
        format!("net.ipv4.neigh.{port}.proxy_delay=0"),
    ] {
        host.exec(&["sysctl", "-q", "-w", &knob]);
    }
    ip_in(host, &["link", "set", port, "up"]);
    ip_in(host, &["route", "add", &format!("{ip}/32"), "dev", port]);
    host.ifindex(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::ping_from;

    fn stdout(out: std::process::Output) -> String {
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn routed_veths_route_without_a_bridge_on_default_offloads() {
        let lab = Lab::build_with(Plumbing::RoutedVeths);
        let sender = lab.container(SENDER);
        for to in [LOCAL_RECEIVER, REMOTE_RECEIVER] {
            let ip = lab.container(to).ip;
            assert_eq!(ping_from(&sender.ns, ip, 1, 2), 1, "{} -> {ip}", sender.ip);
        }
        let host = &lab.host(1).ns;
        assert!(
            !host
                .try_exec(&["ip", "link", "show", HOST_BRIDGE])
                .status
                .success(),
            "no host bridge"
        );
        // The gateway was learnt by proxy ARP: the port's MAC.
        let neigh = stdout(sender.ns.exec(&[
            "ip",
            "neigh",
            "show",
            &GATEWAY.to_string(),
            "dev",
            CONTAINER_IFNAME,
        ]));
        assert!(
            neigh.contains(&mac_str(gateway_mac(1))),
            "gateway neighbour: {neigh}"
        );
        let routes = stdout(host.exec(&["ip", "route", "show", "dev", &sender.port]));
        assert!(routes.contains(&format!("{} ", sender.ip)), "{routes}");
        let uplink = stdout(host.exec(&["ethtool", "-k", UPLINK]));
        assert!(uplink.contains("tx-checksumming: on"), "{uplink}");
        lab.generator_done();
        let port = stdout(host.exec(&["ethtool", "-k", &sender.port]));
        assert!(port.contains("generic-receive-offload: off"), "{port}");
    }
}
