//! A zone of three hosts built from network namespaces, with the real
//! datapath attached: the tier-3 test bed (docs/address-plan.md, docs/lab.md#what-the-lab-builds).
//!
//! ```text
//!             underlay netns: bridge `ubr`, ports h1 h2 h3
//!              |                  |                  |
//!   host h1: up0 (XDP)   host h2: up0 (XDP)   host h3: up0 (XDP)
//!     nfbr0 169.254.1.1    nfbr0 169.254.1.1    nfbr0 169.254.1.1
//!     ports nfcC (TCX)     ports nfcC (TCX)     ports nfcC (TCX)
//!      |                    |                    |
//!   containers 10.1.1.C  containers 10.1.2.C  containers 10.1.3.C (eth0)
//! ```
//!
//! Every interface is created inside a namespace owned by a [`Netns`] guard
//! (never in the root namespace), so dropping the [`Topology`] — also while
//! a test panics — removes everything. Interface names only need to be
//! unique inside their namespace; namespace names come from [`unique`].
//! One [`Datapath`] per host, loaded by the test process; dropping it
//! detaches its programs.
//!
//! Lab choices (see the notes on [`Topology::build`]): IPv6 is disabled in
//! every namespace so that kernel-generated IPv6 (DAD, MLD, RS) does not
//! show up in the exact drop counters, and GRO is on where XDP redirects
//! into a veth (docs/development.md#notes-from-this-kernel).

use std::{
    io::{Read, Write},
    net::Ipv4Addr,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    time::{Duration, Instant},
};

use aya::programs::XdpMode;
use netfabric::{
    agent::{
        self, HostPlan, Op,
        plan::{Blooms, Change, EndpointKey, NextHopKey, PortEntry, UnderlayHop},
    },
    conventions,
    datapath::{CounterSnapshot, Datapath, LoadOptions},
};
use netfabric_common::{Direction, Endpoint, HostConfig, OwnerPair, Verdict};

use crate::{
    netns::{Netns, sh},
    unique,
};

/// The zone's /16 and its slot.
pub const ZONE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);
pub const ZONE_SLOT: u32 = 0;
/// The product's names (gateway, host bridge, container device; see
/// `netfabric::conventions`), re-exported for the tests.
pub use netfabric::conventions::{CONTAINER_IFNAME, GATEWAY, HOST_BRIDGE};
/// The uplink inside a host namespace: test-only (the product takes the
/// uplink's name from the store).
pub const UPLINK: &str = "up0";

/// Owners.
pub const SYSTEM: u32 = netfabric_common::SYSTEM_OWNER;
pub const ALICE: u32 = 10;
pub const BOB: u32 = 11;
pub const CAROL: u32 = 12;

/// One container to create.
#[derive(Clone, Copy, Debug)]
pub struct ContainerSpec {
    /// Name used by the tests (not a kernel name).
    pub name: &'static str,
    /// Host octet (1..=3).
    pub host: u8,
    /// Container octet in the host's /24.
    pub octet: u8,
    pub owner: u32,
}

const fn spec(name: &'static str, host: u8, octet: u8, owner: u32) -> ContainerSpec {
    ContainerSpec {
        name,
        host,
        octet,
        owner,
    }
}

/// The standard set: alice on h1 (two) and h2, bob on h1 and h2, carol and
/// the system container on h3.
pub const STANDARD_CONTAINERS: [ContainerSpec; 7] = [
    spec("alice1", 1, 1, ALICE),
    spec("alice2", 1, 2, ALICE),
    spec("bob1", 1, 3, BOB),
    spec("alice3", 2, 1, ALICE),
    spec("bob2", 2, 2, BOB),
    spec("carol", 3, 1, CAROL),
    spec("system", 3, 2, SYSTEM),
];

/// Owner pairs that share a group: alice and carol are in one group.
pub const STANDARD_GROUP_PAIRS: [(u32, u32); 1] = [(ALICE, CAROL)];

/// Number of hosts in the zone.
pub const HOSTS: u8 = 3;

pub struct Container {
    pub name: &'static str,
    pub host: u8,
    pub owner: u32,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Host-side end of the veth, in the host namespace.
    pub port: String,
    pub port_ifindex: u32,
    pub ns: Netns,
}

pub struct Host {
    pub octet: u8,
    pub underlay_ip: Ipv4Addr,
    pub uplink_mac: [u8; 6],
    pub uplink_ifindex: u32,
    /// MAC of the host bridge: the containers' gateway.
    pub gateway_mac: [u8; 6],
    /// How the XDP prefilter is attached to the uplink: "driver" (native),
    /// "default" (kernel's choice, after native failed) or "none".
    pub xdp_mode: &'static str,
    pub datapath: Datapath,
    pub ns: Netns,
}

/// Counters of every host at one moment (index = host octet - 1).
#[derive(Clone, Debug)]
pub struct Snapshot(pub Vec<CounterSnapshot>);

impl Snapshot {
    /// Packets counted on host `host` for `direction`/`verdict` since `earlier`.
    pub fn delta(
        &self,
        earlier: &Snapshot,
        host: u8,
        direction: Direction,
        verdict: Verdict,
    ) -> u64 {
        let i = usize::from(host - 1);
        self.0[i].get(direction, verdict).packets - earlier.0[i].get(direction, verdict).packets
    }
}

/// Whether the uplinks get the XDP prefilter `from_uplink` (TC
/// `from_uplink_tc` is always attached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefilter {
    /// As the agent decides (`agent::links::wants_prefilter`): not on a
    /// veth, so not here.
    AsTheAgent,
    /// On every uplink, veths included.
    Always,
}

/// Fields drop in declaration order: containers, then hosts (datapaths
/// detach), then the underlay.
pub struct Topology {
    pub containers: Vec<Container>,
    pub hosts: Vec<Host>,
    pub underlay: Netns,
    /// The underlay /24 is `172.31.<underlay_net>.0/24`.
    pub underlay_net: u8,
}

/// The product's MAC of container `10.1.<host>.<octet>`.
pub fn container_mac(host: u8, octet: u8) -> [u8; 6] {
    conventions::container_mac(Ipv4Addr::new(10, 1, host, octet)).0
}

/// Test-only: the product takes underlay MACs from the store.
pub fn uplink_mac(host: u8) -> [u8; 6] {
    [0x02, 0xfe, 0x00, 0x00, 0x00, host]
}

/// The product's MAC of host `host`'s bridge (the containers' gateway).
pub fn gateway_mac(host: u8) -> [u8; 6] {
    conventions::bridge_mac(Ipv4Addr::new(10, 1, host, 0)).0
}

pub fn mac_str(m: [u8; 6]) -> String {
    netfabric::MacAddr(m).to_string()
}

pub fn ip_in(ns: &Netns, args: &[&str]) {
    let mut full = vec!["ip", "-n", ns.name.as_str()];
    full.extend_from_slice(args);
    sh(&full);
}

/// Plumb container namespace `ns` into host `host` the netfabric way: veth
/// `port` (host side, enslaved to the host bridge and up) / `eth0` with
/// `mac` and `ip`/32, the link-local gateway on-link and as default route,
/// GRO on `eth0` (XDP on the uplink redirects into the port: the container
/// end needs NAPI or the frames vanish). Returns the port's ifindex.
pub fn plumb_container(host: &Netns, ns: &Netns, ip: Ipv4Addr, mac: [u8; 6], port: &str) -> u32 {
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
    ns.exec(&["ethtool", "-K", dev, "gro", "on"]);
    ip_in(host, &["link", "set", port, "master", HOST_BRIDGE, "up"]);
    host.ifindex(port)
}

/// Host `h`'s uplink veth `up0` in `ns` (fixed MAC, `underlay_ip`/24, up),
/// its peer `h<h>` on the underlay bridge `ubr`, with the kernel's default
/// offloads; returns the peer's name.
pub fn plumb_uplink(underlay: &Netns, ns: &Netns, h: u8, underlay_ip: Ipv4Addr) -> String {
    let peer = format!("h{h}");
    ip_in(
        underlay,
        &[
            "link", "add", &peer, "type", "veth", "peer", "name", UPLINK, "netns", &ns.name,
        ],
    );
    ip_in(underlay, &["link", "set", &peer, "master", "ubr", "up"]);
    ip_in(
        ns,
        &[
            "link",
            "set",
            UPLINK,
            "address",
            &mac_str(uplink_mac(h)),
            "up",
        ],
    );
    ip_in(
        ns,
        &["addr", "add", &format!("{underlay_ip}/24"), "dev", UPLINK],
    );
    peer
}

/// Plumb host `h`'s namespace `ns` the netfabric way: uplink veth `up0`
/// (fixed MAC, `underlay_ip`/24) whose peer `h<h>` joins the bridge `ubr` of
/// `underlay`, and the host bridge `nfbr0` (gateway MAC, 169.254.1.1/32,
/// route to the host's /24). The kernel's default offloads (TSO/GSO, TX
/// checksum) everywhere; GRO on both uplink ends, so that a veth end
/// receives through NAPI and aggregates what it receives (a NIC does that
/// by default), and the uplink's TC program delivers super-packets.
pub fn plumb_host(underlay: &Netns, ns: &Netns, h: u8, underlay_ip: Ipv4Addr) {
    let peer = plumb_uplink(underlay, ns, h, underlay_ip);
    underlay.exec(&["ethtool", "-K", &peer, "gro", "on"]);
    ns.exec(&["ethtool", "-K", UPLINK, "gro", "on"]);
    ip_in(ns, &["link", "add", HOST_BRIDGE, "type", "bridge"]);
    ip_in(
        ns,
        &[
            "link",
            "set",
            HOST_BRIDGE,
            "address",
            &mac_str(gateway_mac(h)),
        ],
    );
    ip_in(
        ns,
        &["addr", "add", &format!("{GATEWAY}/32"), "dev", HOST_BRIDGE],
    );
    ip_in(ns, &["link", "set", HOST_BRIDGE, "up"]);
    ip_in(
        ns,
        &[
            "route",
            "add",
            &format!("10.1.{h}.0/24"),
            "dev",
            HOST_BRIDGE,
        ],
    );
}

/// Disable IPv6 in a fresh namespace (before its interfaces exist) so the
/// kernel sends no IPv6 of its own (DAD, MLD, router solicitations).
pub fn no_ipv6(ns: &Netns) {
    ns.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"]);
}

impl Topology {
    /// The standard zone: [`STANDARD_CONTAINERS`], [`STANDARD_GROUP_PAIRS`].
    pub fn standard() -> Topology {
        Topology::build(&STANDARD_CONTAINERS, &STANDARD_GROUP_PAIRS)
    }

    /// The standard zone with the XDP prefilter on every uplink, which the
    /// agent leaves off a veth uplink ([`Prefilter::Always`]).
    pub fn standard_with_prefilter() -> Topology {
        Topology::build_with(
            &STANDARD_CONTAINERS,
            &STANDARD_GROUP_PAIRS,
            Prefilter::Always,
        )
    }

    /// [`Topology::build_with`] the agent's choice of prefilter.
    pub fn build(containers: &[ContainerSpec], group_pairs: &[(u32, u32)]) -> Topology {
        Topology::build_with(containers, group_pairs, Prefilter::AsTheAgent)
    }

    /// Build three hosts of zone 10.1.0.0/16 (slot 0) with `containers`, load
    /// and fill one datapath per host (host config, zone, every endpoint of
    /// every host with the groups bloom the agent computes, every host's
    /// next hop, its own local ports, `group_pairs`) and attach TC to each
    /// uplink (and the XDP prefilter as `prefilter` says) and to each
    /// container port.
    pub fn build_with(
        containers: &[ContainerSpec],
        group_pairs: &[(u32, u32)],
        prefilter: Prefilter,
    ) -> Topology {
        crate::ensure_bpffs();
        static NET: AtomicU32 = AtomicU32::new(0);
        let underlay_net = (NET.fetch_add(1, Ordering::Relaxed) % 250 + 1) as u8;

        // Underlay: one bridge.
        let underlay = Netns::new(&unique("nfu"));
        no_ipv6(&underlay);
        ip_in(&underlay, &["link", "add", "ubr", "type", "bridge"]);
        ip_in(&underlay, &["link", "set", "ubr", "up"]);

        // Hosts: uplink on the underlay bridge, bridge for the containers.
        struct HostNs {
            octet: u8,
            ns: Netns,
            underlay_ip: Ipv4Addr,
            uplink_ifindex: u32,
        }
        let mut host_nss = Vec::new();
        for h in 1..=HOSTS {
            let ns = Netns::new(&unique("nfh"));
            no_ipv6(&ns);
            let underlay_ip = Ipv4Addr::new(172, 31, underlay_net, h);
            plumb_host(&underlay, &ns, h, underlay_ip);
            let uplink_ifindex = ns.ifindex(UPLINK);
            host_nss.push(HostNs {
                octet: h,
                ns,
                underlay_ip,
                uplink_ifindex,
            });
        }

        // Containers.
        let mut built = Vec::new();
        for c in containers {
            assert!(
                (1..=HOSTS).contains(&c.host),
                "container {} on unknown host {}",
                c.name,
                c.host
            );
            let host = &host_nss[usize::from(c.host - 1)].ns;
            let ns = Netns::new(&unique("nfc"));
            no_ipv6(&ns);
            let ip = Ipv4Addr::new(10, 1, c.host, c.octet);
            let mac = container_mac(c.host, c.octet);
            let port = conventions::port_name(ip);
            let port_ifindex = plumb_container(host, &ns, ip, mac, &port);
            built.push(Container {
                name: c.name,
                host: c.host,
                owner: c.owner,
                ip,
                mac,
                port,
                port_ifindex,
                ns,
            });
        }

        // The groups blooms the agent writes into `ENDPOINTS`, each pair
        // standing for one group of its two owners.
        let blooms = Blooms::of_groups(
            group_pairs
                .iter()
                .enumerate()
                .map(|(i, &(a, b))| (u32::try_from(i).expect("fewer than 2^32 pairs"), [a, b])),
        );

        // One datapath per host.
        let mut hosts = Vec::new();
        for hn in host_nss {
            let h = hn.octet;
            let mut dp = Datapath::load(&LoadOptions::default()).expect("loading the datapath");
            // What the agent of host h plans, written the agent's way.
            let mut plan = HostPlan {
                host: Some(HostConfig {
                    zone_prefix: ZONE.into(),
                    zone_slot: ZONE_SLOT,
                    host_octet: h.into(),
                    uplink_ifindex: hn.uplink_ifindex,
                    uplink_mac: uplink_mac(h),
                    gateway_mac: gateway_mac(h),
                    zone_router_mac: [0; 6],
                    flags: 0,
                }),
                ..HostPlan::default()
            };
            plan.zones.insert((u32::from(ZONE) >> 16) as u16, ZONE_SLOT);
            for c in &built {
                plan.endpoints.insert(
                    EndpointKey::of(ZONE_SLOT, c.ip),
                    Endpoint {
                        owner: c.owner,
                        groups: blooms.of(c.owner),
                    },
                );
            }
            for other in 1..=HOSTS {
                plan.next_hops.insert(
                    NextHopKey {
                        zone_slot: ZONE_SLOT,
                        host_octet: other,
                    },
                    UnderlayHop {
                        mac: uplink_mac(other),
                        underlay: Ipv4Addr::new(172, 31, underlay_net, other),
                    },
                );
            }
            for c in built.iter().filter(|c| c.host == h) {
                plan.local_ports.insert(
                    c.ip.octets()[3],
                    PortEntry {
                        ifindex: c.port_ifindex,
                        mac: c.mac,
                    },
                );
            }
            for &(a, b) in group_pairs {
                plan.group_pairs.insert(OwnerPair::new(a, b), 1);
            }
            for op in HostPlan::default().diff(&plan) {
                agent::apply(&mut dp, &op).unwrap_or_else(|e| panic!("applying {op:?}: {e}"));
            }

            let xdp_mode = {
                let _inside = hn.ns.enter();
                // Delivery first: the prefilter passes what it keeps.
                dp.attach_uplink_tc(UPLINK)
                    .expect("attaching TC to the uplink");
                let wanted = match prefilter {
                    Prefilter::AsTheAgent => netfabric::agent::links::wants_prefilter(UPLINK),
                    Prefilter::Always => true,
                };
                let mode = if !wanted {
                    "none"
                } else {
                    match dp.attach_uplink(UPLINK, XdpMode::Driver) {
                        Ok(_) => "driver",
                        Err(e) => {
                            eprintln!(
                                "host h{h}: native XDP on {UPLINK} failed ({e}); falling back to the default mode"
                            );
                            dp.attach_uplink(UPLINK, XdpMode::Default)
                                .expect("attaching XDP to the uplink");
                            "default"
                        }
                    }
                };
                for c in built.iter().filter(|c| c.host == h) {
                    dp.attach_port(&c.port).expect("attaching TC to a port");
                }
                mode
            };
            hosts.push(Host {
                octet: h,
                underlay_ip: hn.underlay_ip,
                uplink_mac: uplink_mac(h),
                uplink_ifindex: hn.uplink_ifindex,
                gateway_mac: gateway_mac(h),
                xdp_mode,
                datapath: dp,
                ns: hn.ns,
            });
        }

        Topology {
            containers: built,
            hosts,
            underlay,
            underlay_net,
        }
    }

    pub fn host(&self, octet: u8) -> &Host {
        &self.hosts[usize::from(octet - 1)]
    }

    pub fn host_mut(&mut self, octet: u8) -> &mut Host {
        &mut self.hosts[usize::from(octet - 1)]
    }

    pub fn container(&self, name: &str) -> &Container {
        self.containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    }

    /// Counters of every host.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(
            self.hosts
                .iter()
                .map(|h| h.datapath.counters().expect("reading counters"))
                .collect(),
        )
    }

    /// `from` connects to `dst:dst_port`, which reaches `to` listening on
    /// `listen_port` (the container's own address and port, or a service's
    /// VIP and port translated to them): a line each way, then `bulk` bytes
    /// that must arrive whole, in order, with no segment refused for its
    /// checksum on either side (a bad checksum is a corrupted or wrongly
    /// offloaded packet on the datapath).
    pub fn tcp_exchange(
        &self,
        from: &Container,
        to: &Container,
        (dst, dst_port): (Ipv4Addr, u16),
        listen_port: u16,
        bulk: usize,
    ) {
        let start = self.snapshot();
        let flow = format!("TCP {} -> {dst}:{dst_port} ({})", from.name, to.name);
        let csum_errors = (from.tcp_csum_errors(), to.tcp_csum_errors());
        let mut server = to.nc_listen(listen_port, false);
        let mut client = from.nc_connect(dst, dst_port, false);
        let hello = format!("hello from {}\n", from.name);
        client.send(hello.as_bytes());
        assert!(
            server.wait_for(hello.as_bytes(), Duration::from_secs(3)),
            "{flow}: line not received\n{}",
            self.diagnose(&start)
        );
        let answer = format!("answer from {}\n", to.name);
        server.send(answer.as_bytes());
        assert!(
            client.wait_for(answer.as_bytes(), Duration::from_secs(3)),
            "{flow}: answer not received\n{}",
            self.diagnose(&start)
        );
        let data: Vec<u8> = (0..bulk).map(|i| (i % 251) as u8).collect();
        client.send(&data);
        client.finish();
        let want = hello.len() + bulk;
        let t0 = Instant::now();
        assert!(
            server.wait_for_len(want, Duration::from_secs(10)),
            "{flow}: {} of {want} bytes arrived\n{}",
            server.received().len(),
            self.diagnose(&start)
        );
        let took = t0.elapsed();
        assert_eq!(
            (from.tcp_csum_errors(), to.tcp_csum_errors()),
            csum_errors,
            "{flow}: segments with bad checksums\n{}",
            self.diagnose(&start)
        );
        if took > Duration::from_secs(2) {
            println!("{flow}: bulk took {took:?}\n{}", self.diagnose(&start));
        }
        assert_eq!(
            &server.received()[hello.len()..],
            &data[..],
            "{flow}: bulk data corrupted"
        );
    }

    /// Everything the datapaths counted since `earlier`, per host, plus the
    /// kernel's view from inside each container (`nstat` drops and checksum
    /// errors, veth XDP statistics): for failure messages.
    pub fn diagnose(&self, earlier: &Snapshot) -> String {
        let now = self.snapshot();
        let mut out = String::new();
        for (i, s) in now.0.iter().enumerate() {
            let d = s.since(&earlier.0[i]);
            out += &format!("h{}:", i + 1);
            for ((dir, v), c) in &d.by_verdict {
                out += &format!(" {}/{}={}", dir.label(), v.reason_label(), c.packets);
            }
            out += "\n";
        }
        for c in &self.containers {
            let nstat = c.ns.try_exec(&[
                "nstat",
                "-az",
                "TcpInCsumErrors",
                "UdpInCsumErrors",
                "TcpRetransSegs",
                "IpInDiscards",
            ]);
            let nstat: Vec<_> = String::from_utf8_lossy(&nstat.stdout)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    Some(format!("{}={}", w.next()?, w.next()?))
                })
                .collect();
            let stats = c.ns.try_exec(&["ethtool", "-S", CONTAINER_IFNAME]);
            let xdp: Vec<_> = String::from_utf8_lossy(&stats.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| (l.contains("drop") || l.contains("err")) && !l.ends_with(": 0"))
                .map(str::to_owned)
                .collect();
            out += &format!("{}: {} {}\n", c.name, nstat.join(" "), xdp.join(" "));
        }
        out
    }

    /// Owners `a` and `b` share a group again, on every host (their blooms
    /// still overlap: the pair of [`Topology::build`] stays in them).
    pub fn set_group_pair(&mut self, a: u32, b: u32) {
        let op = Op::GroupPair(Change::Set {
            key: OwnerPair::new(a, b),
            value: 1,
        });
        for h in &mut self.hosts {
            agent::apply(&mut h.datapath, &op).expect("setting a group pair");
        }
    }

    /// Owners `a` and `b` no longer share a group, on every host.
    pub fn remove_group_pair(&mut self, a: u32, b: u32) {
        let op = Op::GroupPair(Change::Clear {
            key: OwnerPair::new(a, b),
        });
        for h in &mut self.hosts {
            agent::apply(&mut h.datapath, &op).expect("removing a group pair");
        }
    }
}

// ---- traffic ------------------------------------------------------------------

/// `ping -c count` from inside `ns`, waiting up to `wait_s` seconds for each
/// reply; returns the number of replies.
pub fn ping_from(ns: &Netns, to: Ipv4Addr, count: u32, wait_s: u32) -> u32 {
    let out = ns.try_exec(&[
        "ping",
        "-n",
        "-q",
        "-c",
        &count.to_string(),
        "-i",
        "0.2",
        "-W",
        &wait_s.to_string(),
        &to.to_string(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(", ")
        .find_map(|p| {
            p.strip_suffix(" received")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or_else(|| {
            panic!(
                "cannot parse ping output in {}: {text}{}",
                ns.name,
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

impl Container {
    /// Replies to `count` pings from this container to `to`.
    pub fn ping(&self, to: Ipv4Addr, count: u32, wait_s: u32) -> u32 {
        ping_from(&self.ns, to, count, wait_s)
    }

    /// The TTL of the reply to one ping from this container to `to`, if
    /// one came back (64 at the sender, minus one per routed hop).
    pub fn ping_reply_ttl(&self, to: Ipv4Addr) -> Option<u8> {
        let out = self
            .ns
            .try_exec(&["ping", "-n", "-c", "1", "-W", "2", &to.to_string()]);
        let text = String::from_utf8_lossy(&out.stdout);
        let ttl = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ttl="))?;
        ttl.parse().ok()
    }

    /// `TcpInCsumErrors` of this container's namespace: TCP segments that
    /// arrived with a bad checksum.
    pub fn tcp_csum_errors(&self) -> u64 {
        let out = self.ns.exec(&["nstat", "-az", "TcpInCsumErrors"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("TcpInCsumErrors"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .expect("TcpInCsumErrors in nstat output")
    }

    /// `nc -l` (TCP, or UDP with `udp`) on `port` inside this container,
    /// returned once the socket is bound.
    pub fn nc_listen(&self, port: u16, udp: bool) -> Nc {
        nc_listen_in(&self.ns, port, udp)
    }

    /// `nc` from this container to `to:port`.
    pub fn nc_connect(&self, to: Ipv4Addr, port: u16, udp: bool) -> Nc {
        nc_connect_in(&self.ns, to, port, udp)
    }
}

pub fn nc_listen_in(ns: &Netns, port: u16, udp: bool) -> Nc {
    let p = port.to_string();
    let mut args = vec!["nc", "-n", "-l"];
    if udp {
        args.push("-u");
    }
    args.push(&p);
    let nc = Nc::spawn(ns, &args);
    let ss_flags = if udp { "-Hlun" } else { "-Hltn" };
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let out = ns.try_exec(&["ss", ss_flags, &filter]);
        if !out.stdout.is_empty() {
            return nc;
        }
        assert!(
            Instant::now() < deadline,
            "nc never listened on {port} in {}",
            ns.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn nc_connect_in(ns: &Netns, to: Ipv4Addr, port: u16, udp: bool) -> Nc {
    let (p, ip) = (port.to_string(), to.to_string());
    let mut args = vec!["nc", "-n"];
    if udp {
        args.push("-u");
    } else {
        // Shut the sending side down once stdin closes (after `finish`).
        args.push("-N");
    }
    args.extend([ip.as_str(), p.as_str()]);
    Nc::spawn(ns, &args)
}

/// A running `nc` with its stdin and a collector of its stdout; killed on drop.
pub struct Nc {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Vec<u8>>,
    received: Vec<u8>,
}

impl Nc {
    fn spawn(ns: &Netns, args: &[&str]) -> Nc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {args:?} in {}: {e}", ns.name));
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("nc stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Nc {
            child,
            stdin,
            rx,
            received: Vec::new(),
        }
    }

    /// Write `data` to nc's stdin (sent to the peer).
    pub fn send(&mut self, data: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin.write_all(data).expect("writing to nc");
        stdin.flush().expect("flushing nc stdin");
    }

    /// Close nc's stdin (TCP: shut the sending side down).
    pub fn finish(&mut self) {
        self.stdin.take();
    }

    /// Everything received from the peer so far.
    pub fn received(&mut self) -> &[u8] {
        while let Ok(chunk) = self.rx.try_recv() {
            self.received.extend_from_slice(&chunk);
        }
        &self.received
    }

    /// Wait until the bytes received contain `needle`.
    pub fn wait_for(&mut self, needle: &[u8], timeout: Duration) -> bool {
        self.wait_until(timeout, |got| {
            got.windows(needle.len()).any(|w| w == needle)
        })
    }

    /// Wait until at least `len` bytes were received.
    pub fn wait_for_len(&mut self, len: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |got| got.len() >= len)
    }

    fn wait_until(&mut self, timeout: Duration, done: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self.received()) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.received.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Timeout) => return done(self.received()),
                // nc exited and its output is drained.
                Err(RecvTimeoutError::Disconnected) => return done(&self.received),
            }
        }
    }
}

impl Drop for Nc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
