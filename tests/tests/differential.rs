//! Differential test: thousands of random packets over random zone states,
//! run through the real programs (BPF_PROG_TEST_RUN, real maps) and through
//! the userspace reference model (`netfabric_tests::model`, written from
//! docs/policy.md#the-rule, docs/datapath.md#decision-order). Action, verdict counter (exactly one, with the right bytes),
//! drop event and output bytes must agree on every case. Group memberships
//! (and containers) change between packets, in the model and in the maps.
//!
//! Seeded: `NETFABRIC_SEED=<u64>` reproduces a run (the seed is printed).
//! Run: `cargo test -p netfabric-tests --test differential -- --nocapture`

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr},
};

use netfabric::datapath::{Datapath, LoadOptions, maps::connections::monotonic_now_ns};
use netfabric_common::{
    DropReason, MAX_ZONES, SYSTEM_OWNER, Verdict,
    conntrack::{CONN_REPLIED, ConnKey, ConnState, idle_timeout_ns},
};
use netfabric_tests::{
    ensure_bpffs,
    model::{
        Harness, HostModel, Model, PairChange, PortModel, Prog, ScopeRule, ScopeVia, ZoneModel,
        check, dummies,
    },
    netns::Netns,
    packets::{
        ArpFrame, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_LLDP, ETH_P_QINQ,
        Ipv4Frame, Mac, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Transport, hex, ipv6, raw_ethernet,
        refresh_checksum, set_ihl, set_total_len, set_version, truncate, with_transport,
    },
    unique,
};

const DEFAULT_SEED: u64 = 0x6e65_7466_6162_7269;
const STATES: usize = 24;
const PACKETS_PER_STATE: usize = 500;
const DEVICES: usize = 12;

/// SplitMix64: small, seeded, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: u32, hi_incl: u32) -> u32 {
        lo + (self.next() % u64::from(hi_incl - lo + 1)) as u32
    }

    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn mac(&mut self) -> Mac {
        let b = self.next().to_be_bytes();
        [0x02, b[0], b[1], b[2], b[3], b[4]]
    }
}

/// One random world: the model plus the address/MAC pools packets draw from.
struct Scenario {
    model: Model,
    /// This host's container octets with a port, and the port's device.
    local_ports: Vec<(u8, u32)>,
    /// Devices with no port.
    strays: Vec<u32>,
    addrs: Vec<Ipv4Addr>,
    macs: Vec<Mac>,
    owners: Vec<u32>,
    groups: Vec<u32>,
    /// Addresses outside every zone (connections to them are tracked).
    outside: Vec<Ipv4Addr>,
}

fn zone_addr(prefix: Ipv4Addr, h: u8, c: u8) -> Ipv4Addr {
    let p = prefix.octets();
    Ipv4Addr::new(p[0], p[1], h, c)
}

fn scenario(rng: &mut Rng, devices: &[u32]) -> Scenario {
    let mut m = Model::default();
    // Zones: ours, one other (gateway or not), sometimes a third.
    let mut slots: Vec<u32> = (0..MAX_ZONES).collect();
    let mut prefixes: Vec<u8> = (1..=250).collect();
    let mut take_slot = |rng: &mut Rng| slots.remove(rng.below(slots.len()));
    let mut take_prefix = |rng: &mut Rng| {
        let b = prefixes.remove(rng.below(prefixes.len()));
        Ipv4Addr::new(10, b, 0, 0)
    };
    let our_slot = take_slot(rng);
    let our_prefix = take_prefix(rng);
    m.zones.insert(
        our_slot,
        ZoneModel {
            prefix: our_prefix,
            gateway: None,
        },
    );
    let mut other_zones = Vec::new();
    for _ in 0..rng.range(1, 2) {
        let slot = take_slot(rng);
        let prefix = take_prefix(rng);
        let gateway = rng.chance(60).then(|| rng.mac());
        m.zones.insert(slot, ZoneModel { prefix, gateway });
        other_zones.push((slot, prefix));
    }
    let host_octet = rng.range(1, 254) as u8;
    let router_mac = if rng.chance(25) { [0; 6] } else { rng.mac() };
    let host = HostModel {
        zone_prefix: our_prefix,
        zone_slot: our_slot,
        host_octet,
        uplink_ifindex: 4000 + rng.range(0, 100),
        uplink_mac: rng.mac(),
        gateway_mac: rng.mac(),
        router_mac,
    };
    m.next_hops.insert((our_slot, host_octet), host.uplink_mac);

    // Owners: the system owner and a few users; groups over them.
    let mut owners = vec![SYSTEM_OWNER];
    for _ in 0..rng.range(3, 6) {
        owners.push(rng.range(2, 10_000));
    }
    owners.sort_unstable();
    owners.dedup();
    let groups: Vec<u32> = (1..=rng.range(1, 4)).collect();
    for &g in &groups {
        for &o in &owners {
            if rng.chance(35) {
                m.add_member(g, o);
            }
        }
    }
    let user = |rng: &mut Rng| {
        if rng.chance(15) {
            SYSTEM_OWNER
        } else {
            owners[rng.below(owners.len())]
        }
    };

    let mut addrs = Vec::new();
    let mut macs = vec![host.uplink_mac, host.gateway_mac, router_mac, rng.mac()];
    // This host: containers on a small pool of octets so vacancies are hit.
    let mut octets: Vec<u8> = (1..=254).collect();
    let mut free_devices: Vec<u32> = devices.to_vec();
    let mut local_ports = Vec::new();
    for _ in 0..rng.range(4, 9) {
        let c = octets.remove(rng.below(octets.len()));
        let addr = zone_addr(our_prefix, host_octet, c);
        addrs.push(addr);
        let owned = rng.chance(92);
        if owned {
            m.owners.insert(addr, user(rng));
        }
        // Most containers have a port; a few are not attached yet, and an
        // unowned address keeps its port only sometimes (being deleted).
        if (owned && rng.chance(88)) || (!owned && rng.chance(50)) {
            if free_devices.is_empty() {
                continue;
            }
            let ifindex = free_devices.remove(rng.below(free_devices.len()));
            let mac = rng.mac();
            macs.push(mac);
            m.ports.insert(c, PortModel { ifindex, mac });
            local_ports.push((c, ifindex));
        }
    }
    for _ in 0..3 {
        addrs.push(zone_addr(our_prefix, host_octet, rng.pick(&octets)));
    }
    addrs.push(zone_addr(our_prefix, host_octet, 0));
    addrs.push(zone_addr(our_prefix, host_octet, 255));
    // Other hosts of our zone, some without a next hop.
    for _ in 0..rng.range(2, 4) {
        let h = loop {
            let h = rng.range(1, 254) as u8;
            if h != host_octet {
                break h;
            }
        };
        if rng.chance(80) {
            let mac = rng.mac();
            macs.push(mac);
            m.next_hops.insert((our_slot, h), mac);
        }
        for _ in 0..rng.range(2, 5) {
            let addr = zone_addr(our_prefix, h, rng.range(1, 254) as u8);
            if rng.chance(85) {
                m.owners.insert(addr, user(rng));
            }
            addrs.push(addr);
        }
    }
    // Containers of the other zones (their next hops are not ours to use).
    for (slot, prefix) in &other_zones {
        for _ in 0..rng.range(2, 5) {
            let addr = zone_addr(*prefix, rng.range(1, 254) as u8, rng.range(1, 254) as u8);
            if rng.chance(85) {
                m.owners.insert(addr, user(rng));
            }
            addrs.push(addr);
        }
        if rng.chance(50) {
            m.next_hops
                .insert((*slot, rng.range(1, 254) as u8), rng.mac());
        }
        if let Some(gw) = m.zones[slot].gateway {
            macs.push(gw);
        }
    }
    // Outside every zone: the internet, underlay addresses, an unused /16.
    let outside = vec![
        Ipv4Addr::new(8, 8, 8, 8),
        Ipv4Addr::new(192, 168, 0, rng.range(1, 254) as u8),
        Ipv4Addr::new(10, 251, rng.range(0, 255) as u8, 1),
        Ipv4Addr::new(255, 255, 255, 255),
        Ipv4Addr::UNSPECIFIED,
    ];
    addrs.extend(&outside);
    // Some owners are denied egress from the start.
    for &o in &owners {
        if rng.chance(25) {
            m.egress_denied.insert(o);
        }
    }
    let strays = free_devices;
    m.host = Some(host);
    // A few containers without a groups bloom (unknown: looked up always).
    let owned: Vec<Ipv4Addr> = m.owners.keys().copied().collect();
    for addr in owned {
        if rng.chance(15) {
            m.unknown_blooms.insert(addr);
        }
    }
    // Security groups of a few receivers (never the system owner), via a
    // group or their own containers.
    let users: Vec<u32> = owners
        .iter()
        .copied()
        .filter(|&o| o != SYSTEM_OWNER)
        .collect();
    for _ in 0..rng.range(0, 3) {
        let receiver = rng.pick(&users);
        let via = random_via(rng, &groups);
        let rules = random_rules(rng);
        m.security_groups.insert((receiver, via), rules);
    }
    Scenario {
        model: m,
        local_ports,
        strays,
        addrs,
        macs,
        owners,
        groups,
        outside,
    }
}

/// A random packet for `prog`, biased towards what the program sees.
fn packet(rng: &mut Rng, s: &Scenario, prog: Prog) -> Vec<u8> {
    let host = s.model.host.as_ref().expect("configured");
    if let Some(p) = flow_packet(rng, s, prog) {
        return p;
    }
    let port_of = |ifindex: u32| s.model.ports.iter().find(|(_, p)| p.ifindex == ifindex);
    let own = |ifindex: u32| {
        port_of(ifindex).map(|(c, p)| (zone_addr(host.zone_prefix, host.host_octet, *c), p.mac))
    };
    let any_addr = |rng: &mut Rng| rng.pick(&s.addrs);
    let any_mac = |rng: &mut Rng| rng.pick(&s.macs);
    let (src_mac, dst_mac, src, dst) = match prog {
        Prog::FromContainer(ifx) => {
            let (own_ip, own_mac) = own(ifx).unwrap_or((any_addr(rng), any_mac(rng)));
            let src = if rng.chance(80) {
                own_ip
            } else {
                any_addr(rng)
            };
            let src_mac = if rng.chance(85) {
                own_mac
            } else {
                any_mac(rng)
            };
            (src_mac, host.gateway_mac, src, any_addr(rng))
        }
        Prog::Uplink | Prog::UplinkTc(_) => {
            let src = any_addr(rng);
            let right_mac = match s.model.zone_of(src) {
                Some(slot) if slot == host.zone_slot => s
                    .model
                    .next_hops
                    .get(&(slot, src.octets()[2]))
                    .copied()
                    .unwrap_or_else(|| any_mac(rng)),
                _ => host.router_mac,
            };
            let src_mac = if rng.chance(70) {
                right_mac
            } else {
                any_mac(rng)
            };
            let dst = if rng.chance(70) {
                let c = if rng.chance(80) && !s.local_ports.is_empty() {
                    rng.pick(&s.local_ports).0
                } else {
                    rng.range(0, 255) as u8
                };
                zone_addr(host.zone_prefix, host.host_octet, c)
            } else {
                any_addr(rng)
            };
            (src_mac, host.uplink_mac, src, dst)
        }
        Prog::ToContainer(ifx) => {
            let (own_ip, own_mac) = own(ifx).unwrap_or((any_addr(rng), any_mac(rng)));
            let dst = if rng.chance(80) {
                own_ip
            } else {
                any_addr(rng)
            };
            // The host's resolver answers from the gateway address: its
            // replies (and forgeries of them) come this way.
            let src = if rng.chance(25) {
                RESOLVER
            } else {
                any_addr(rng)
            };
            (host.gateway_mac, own_mac, src, dst)
        }
    };
    let tc = !matches!(prog, Prog::Uplink);
    let ttl = match rng.below(6) {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 255,
        _ => rng.range(3, 254) as u8,
    };
    let mut f = Ipv4Frame::new(src_mac, dst_mac, src, dst)
        .ttl(ttl)
        .payload(rng.below(200));
    if rng.chance(10) {
        let words = rng.range(1, 10) as usize;
        f = f.options(&vec![1; words * 4]);
    }
    if rng.chance(10) {
        f = f.fragment(rng.chance(50), rng.range(0, 8000) as u16);
    }
    if rng.chance(5) {
        f = f.trailer(rng.range(1, 30) as usize);
    }
    if rng.chance(3) {
        // The skb test run takes at most about 3.7 KB; XDP takes jumbo frames.
        f = f.payload(if tc { 3400 } else { 8958 });
    }
    match rng.below(100) {
        0..=69 => {
            let p = f.build();
            if rng.chance(40) { transport(rng, p) } else { p }
        }
        70..=77 => {
            // ARP, honest or not.
            let (ip, mac) = match prog {
                Prog::FromContainer(ifx) if rng.chance(60) => {
                    own(ifx).unwrap_or((any_addr(rng), any_mac(rng)))
                }
                _ => (any_addr(rng), any_mac(rng)),
            };
            let mut a = ArpFrame::request(mac, ip, any_addr(rng));
            if rng.chance(15) {
                a.sender_mac = any_mac(rng);
            }
            if rng.chance(15) {
                a.eth_src = any_mac(rng);
            }
            if rng.chance(5) {
                a.htype = 6;
            }
            if rng.chance(5) {
                a.ptype = 0x86dd;
            }
            let p = a.build();
            if rng.chance(5) {
                truncate(p, rng.range(14, 41) as usize)
            } else {
                p
            }
        }
        78..=82 => ipv6(
            src_mac,
            dst_mac,
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, rng.range(1, 99) as u16),
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, rng.range(1, 99) as u16),
            rng.below(64),
        ),
        83..=86 => {
            // One to three tags of any kind (VID 0 included) around the
            // frame: zone or outside addresses alike.
            for _ in 0..rng.range(1, 3) {
                let tpid = rng.pick(&[ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ]);
                let any_vid = rng.range(2, 4095) as u16;
                f = f.tag(tpid, rng.pick(&[0, 1, any_vid]));
            }
            let p = f.build();
            if rng.chance(10) {
                let len = rng.range(14, (p.len() - 1) as u32) as usize;
                truncate(p, len)
            } else {
                p
            }
        }
        87..=88 => raw_ethernet(
            src_mac,
            dst_mac,
            rng.pick(&[ETH_P_LLDP, 0x88a8, 0x8847, ETH_P_8021Q, 0x0000]),
            rng.below(60),
        ),
        _ => {
            // Malformed IPv4 (the skb test run refuses less than 14 + 20 bytes).
            let p = f.payload(rng.below(40)).build();
            match rng.below(6) {
                0 => set_ihl(p, rng.range(0, 4) as u8),
                1 => {
                    let ihl = rng.range(6, 15) as u8;
                    set_ihl(p, ihl)
                }
                2 => {
                    let len = (p.len() - 14 + rng.range(1, 100) as usize) as u16;
                    set_total_len(p, len)
                }
                3 => set_total_len(p, rng.range(0, 19) as u16),
                4 => set_version(p, rng.pick(&[0, 5, 6, 15])),
                _ => {
                    let min = if tc { 34 } else { 14 };
                    let len = rng.range(min, (p.len() - 1) as u32) as usize;
                    let mut t = truncate(p, len);
                    if t.len() < 34 && rng.chance(50) {
                        t[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
                    } else if rng.chance(30) {
                        t[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
                    }
                    t
                }
            }
        }
    }
}

/// Rules security groups draw from: single ports, ranges, every port,
/// icmp; at most two per security group, so the union over four narrowed
/// groups fits an entry.
const SCOPE_RULES: [ScopeRule; 8] = [
    (6, 5432, 5432),
    (6, 1, 1000),
    (6, 40000, 40000),
    (17, 53, 53),
    (17, 5000, 5010),
    (17, 1, 65535),
    (1, 0, 0),
    (6, 22, 22),
];

/// Destination ports packets draw from: the rules' edges and misses.
const DESTINATION_PORTS: [u16; 10] = [5432, 5433, 22, 53, 1000, 1001, 5000, 5011, 40000, 7];

fn random_rules(rng: &mut Rng) -> Vec<ScopeRule> {
    (0..rng.range(0, 2))
        .map(|_| rng.pick(&SCOPE_RULES))
        .collect()
}

fn random_via(rng: &mut Rng, groups: &[u32]) -> ScopeVia {
    if rng.chance(30) {
        ScopeVia::Own
    } else {
        ScopeVia::Group(rng.pick(groups))
    }
}

/// The host's resolver (the containers' gateway).
const RESOLVER: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// A random transport header from small pools of ports and identifiers,
/// so that flows repeat and replies meet their connections.
fn any_transport(rng: &mut Rng) -> Transport {
    let port = |rng: &mut Rng| rng.pick(&[53, 80, 443, 40000, 40001]);
    let flags = |rng: &mut Rng| {
        rng.pick(&[
            TCP_SYN,
            TCP_SYN,
            TCP_SYN | TCP_ACK,
            TCP_ACK,
            TCP_ACK,
            TCP_FIN | TCP_ACK,
            TCP_RST,
            TCP_SYN | TCP_FIN,
            0,
        ])
    };
    match rng.below(10) {
        0..=3 => Transport::Tcp {
            sport: port(rng),
            dport: port(rng),
            flags: flags(rng),
        },
        4..=6 => Transport::Udp {
            sport: port(rng),
            dport: port(rng),
        },
        7..=8 => Transport::Echo {
            request: rng.chance(60),
            id: rng.pick(&[0, 7, 8]),
        },
        _ => Transport::Icmp {
            icmp_type: rng.pick(&[3, 11, 13]),
        },
    }
}

/// The reverse of `t` (a reply's header), with reply-like TCP flags.
fn reply_of(rng: &mut Rng, t: Transport) -> Transport {
    match t {
        Transport::Tcp { sport, dport, .. } => Transport::Tcp {
            sport: dport,
            dport: sport,
            flags: rng.pick(&[
                TCP_SYN | TCP_ACK,
                TCP_ACK,
                TCP_ACK,
                TCP_FIN | TCP_ACK,
                TCP_RST,
                TCP_SYN,
            ]),
        },
        Transport::Udp { sport, dport } => Transport::Udp {
            sport: dport,
            dport: sport,
        },
        Transport::Echo { id, .. } => Transport::Echo { request: false, id },
        other => other,
    }
}

/// Now and then a packet of a connection to outside: a container's packet
/// to an outside address (or the resolver), or the host stack delivering
/// a reply (or a near miss) of a tracked connection; sometimes with its
/// transport header cut short. `None`: an ordinary random packet.
fn flow_packet(rng: &mut Rng, s: &Scenario, prog: Prog) -> Option<Vec<u8>> {
    let host = s.model.host.as_ref().expect("configured");
    let port = |ifindex: u32| s.model.ports.iter().find(|(_, p)| p.ifindex == ifindex);
    let (frame, t) = match prog {
        Prog::FromContainer(ifx) if rng.chance(35) => {
            let (c, p) = port(ifx)?;
            let src = zone_addr(host.zone_prefix, host.host_octet, *c);
            let dst = if rng.chance(10) {
                RESOLVER
            } else {
                rng.pick(&s.outside)
            };
            let f = Ipv4Frame::new(p.mac, host.gateway_mac, src, dst);
            (f, any_transport(rng))
        }
        Prog::ToContainer(ifx) if rng.chance(50) => {
            let (c, p) = port(ifx)?;
            let me = zone_addr(host.zone_prefix, host.host_octet, *c);
            let mine: Vec<&ConnKey> = s
                .model
                .connections
                .keys()
                .filter(|k| Ipv4Addr::from(k.src) == me)
                .collect();
            let (src, t) = if !mine.is_empty() && rng.chance(15) {
                // An ICMP error from some outside router quoting one of the
                // container's connections (or its reverse, which the
                // container never sent).
                let k = *mine[rng.below(mine.len())];
                let quoted = if rng.chance(75) { k } else { k.reversed() };
                let icmp_type = rng.pick(&[3, 11, 12]);
                (
                    rng.pick(&s.outside),
                    Transport::IcmpError { icmp_type, quoted },
                )
            } else if !mine.is_empty() && rng.chance(80) {
                let k = mine[rng.below(mine.len())];
                let t = match k.protocol {
                    6 => Transport::Tcp {
                        sport: k.src_port,
                        dport: k.dst_port,
                        flags: 0,
                    },
                    17 => Transport::Udp {
                        sport: k.src_port,
                        dport: k.dst_port,
                    },
                    _ => Transport::Echo {
                        request: true,
                        id: k.src_port,
                    },
                };
                let reply = if rng.chance(85) {
                    reply_of(rng, t)
                } else {
                    any_transport(rng)
                };
                (Ipv4Addr::from(k.dst), reply)
            } else {
                (rng.pick(&s.outside), any_transport(rng))
            };
            (Ipv4Frame::new(host.gateway_mac, p.mac, src, me), t)
        }
        _ => return None,
    };
    // An ICMP error carries its quote (8 + 20 + 8 bytes); cutting it short
    // is the truncation's job below.
    let least = if matches!(t, Transport::IcmpError { .. }) {
        36
    } else {
        20
    };
    let mut f = frame
        .ttl(rng.range(2, 255) as u8)
        .payload(least + rng.below(100));
    if rng.chance(5) {
        f = f.options(&[1, 1, 1, 0]);
    }
    if rng.chance(5) {
        f = f.fragment(rng.chance(50), rng.range(0, 100) as u16 * 8);
    }
    let p = with_transport(f.build(), t);
    if rng.chance(7) {
        // The transport header cut short (frame and IPv4 length agree).
        let ihl = usize::from(p[14] & 0x0f) * 4;
        let ip_len = ihl + rng.below(least - 6);
        return Some(set_total_len(truncate(p, 14 + ip_len), ip_len as u16));
    }
    Some(p)
}

/// `p` as another transport protocol and/or another source port (the two
/// bytes after the IPv4 header): mostly the resolver's UDP/TCP port 53,
/// sometimes near misses.
fn transport(rng: &mut Rng, mut p: Vec<u8>) -> Vec<u8> {
    const ETH: usize = 14;
    p[ETH + 9] = rng.pick(&[17, 17, 6, 6, 1, 132]);
    let port: u16 = rng.pick(&[53, 53, 53, 54, 5353, 0]);
    let l4 = ETH + usize::from(p[ETH] & 0x0f) * 4;
    if p.len() >= l4 + 2 {
        p[l4..l4 + 2].copy_from_slice(&port.to_be_bytes());
    }
    // The destination port, which security groups judge.
    if p.len() >= l4 + 4 && rng.chance(80) {
        let dport = rng.pick(&DESTINATION_PORTS);
        p[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
    }
    refresh_checksum(&mut p);
    p
}

/// A membership change (or a container coming or going), applied to the
/// model and, as an agent would, to the maps.
fn change(rng: &mut Rng, s: &mut Scenario, dp: &mut Datapath) -> String {
    if rng.chance(15) {
        // A security group set or deleted.
        let users: Vec<u32> = s
            .owners
            .iter()
            .copied()
            .filter(|&o| o != SYSTEM_OWNER)
            .collect();
        let receiver = rng.pick(&users);
        let via = random_via(rng, &s.groups);
        let rules = (!s.model.security_groups.contains_key(&(receiver, via)) || rng.chance(50))
            .then(|| random_rules(rng));
        let what = format!("owner {receiver} security group {via:?}: {rules:?}");
        s.model.set_security_group(dp, receiver, via, rules);
        return what;
    }
    match rng.below(13) {
        10 => {
            // An owner's egress switch flips (its endpoints get the flag).
            let o = rng.pick(&s.owners);
            let denied = if s.model.egress_denied.remove(&o) {
                false
            } else {
                s.model.egress_denied.insert(o)
            };
            s.model.sync_blooms(dp, o);
            return format!("owner {o} egress denied: {denied}");
        }
        11 | 12 => {
            // A tracked connection idles past its timeout.
            let keys: Vec<ConnKey> = s.model.connections.keys().copied().collect();
            if keys.is_empty() {
                return String::new();
            }
            let key = keys[rng.below(keys.len())];
            let mut c = dp
                .connection(&key)
                .expect("reading CONNECTIONS")
                .expect("the model's connections are in the map");
            let timeout = idle_timeout_ns(key.protocol, c.state);
            let now = monotonic_now_ns();
            if now <= timeout + 2_000_000_000 {
                return String::new();
            }
            c.last_seen_ns = now - timeout - 1_000_000_000;
            dp.set_connection(&key, &c).expect("ageing an entry");
            s.model.expire(&key);
            return format!("connection {key:?} expired");
        }
        _ => {}
    }
    match rng.below(10) {
        0..=6 => {
            let g = rng.pick(&s.groups);
            let o = rng.pick(&s.owners);
            let (what, changes): (&str, Vec<PairChange>) =
                if s.model.groups.get(&g).is_some_and(|m| m.contains(&o)) {
                    ("leaves", s.model.remove_member(g, o))
                } else {
                    ("joins", s.model.add_member(g, o))
                };
            Model::apply_pair_changes(dp, &changes);
            // The owner's containers get the new groups bloom.
            s.model.sync_blooms(dp, o);
            format!("owner {o} {what} group {g}: {changes:?}")
        }
        7 => {
            // A container is deleted (its port goes with it).
            let Some(&addr) = s.addrs.get(rng.below(s.addrs.len())) else {
                return String::new();
            };
            let Some(slot) = s.model.zone_of(addr) else {
                return String::new();
            };
            s.model.owners.remove(&addr);
            dp.clear_endpoint(slot, addr).expect("clear_endpoint");
            let host = s.model.host.as_ref().expect("configured");
            if addr.octets()[..3] == zone_addr(host.zone_prefix, host.host_octet, 0).octets()[..3] {
                let c = addr.octets()[3];
                if s.model.ports.remove(&c).is_some() {
                    dp.clear_local_port(c).expect("clear_local_port");
                }
            }
            format!("container {addr} deleted")
        }
        _ => {
            // A container (re)appears at an address of the pool, new owner.
            let addr = rng.pick(&s.addrs);
            let Some(slot) = s.model.zone_of(addr) else {
                return String::new();
            };
            let owner = rng.pick(&s.owners);
            s.model.owners.insert(addr, owner);
            // Now and then written without a groups bloom (unknown: every
            // pair looked up), as by an agent older than the bloom.
            if rng.chance(15) {
                s.model.unknown_blooms.insert(addr);
            } else {
                s.model.unknown_blooms.remove(&addr);
            }
            s.model.write_endpoint(dp, slot, addr);
            format!("container {addr} created for owner {owner}")
        }
    }
}

#[test]
fn datapath_agrees_with_the_reference_model() {
    ensure_bpffs();
    let seed = std::env::var("NETFABRIC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    println!("differential: seed {seed} (NETFABRIC_SEED={seed} reproduces this run)");
    let mut rng = Rng(seed);

    let ns = Netns::new(&unique("nfdf"));
    let names: Vec<String> = (0..DEVICES).map(|i| format!("d{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let devices = dummies(&ns, &refs);
    let _in = ns.enter();

    let mut cases = 0usize;
    let mut tracked = 0usize;
    let mut related_errors_delivered = 0usize;
    let mut changes = 0usize;
    let mut mismatches: Vec<String> = Vec::new();
    let mut seen: BTreeMap<(&'static str, Verdict), usize> = BTreeMap::new();
    for state in 0..STATES {
        let mut s = scenario(&mut rng, &devices);
        let mut dp = Datapath::load(&LoadOptions::default()).expect("load datapath");
        s.model.apply(&mut dp);
        let mut h = Harness::new(dp);
        let mut log: Vec<String> = Vec::new();
        for i in 0..PACKETS_PER_STATE {
            if i % 16 == 15 {
                let c = change(&mut rng, &mut s, &mut h.dp);
                changes += 1;
                log.push(c);
                assert_eq!(
                    s.model.pairs(),
                    &s.model.pairs_from_scratch(),
                    "agent pair reference counts drifted"
                );
                let in_map: BTreeSet<((u32, u32), u32)> =
                    h.dp.group_pairs()
                        .expect("group pairs")
                        .into_iter()
                        .map(|(p, n)| ((p.low, p.high), n))
                        .collect();
                let in_model: BTreeSet<((u32, u32), u32)> =
                    s.model.pairs().iter().map(|(k, v)| (*k, *v)).collect();
                assert_eq!(in_map, in_model, "GROUP_PAIRS differs from the model");
                let scopes_in_map: BTreeMap<_, _> =
                    h.dp.port_scopes()
                        .expect("port scopes")
                        .into_iter()
                        .collect();
                assert_eq!(
                    scopes_in_map,
                    s.model.scope_entries(),
                    "PORT_SCOPES differs from the model"
                );
            }
            let prog = match rng.below(100) {
                0..=39 => Prog::FromContainer(pick_device(&mut rng, &s)),
                40..=54 => Prog::Uplink,
                55..=74 => Prog::UplinkTc(pick_device(&mut rng, &s)),
                _ => Prog::ToContainer(pick_device(&mut rng, &s)),
            };
            let pkt = packet(&mut rng, &s, prog);
            // A packet for the uplink's TC program also goes through the XDP
            // prefilter on the same state: the two must split the judgement
            // (the prefilter drops what TC drops, passes the rest uncounted).
            let mut runs = vec![prog];
            if matches!(prog, Prog::UplinkTc(_)) {
                runs.push(Prog::Uplink);
            }
            for prog in runs {
                let want = s.model.step(prog, &pkt);
                cases += 1;
                *seen.entry((prog.name(), want.verdict)).or_default() += 1;
                if matches!(prog, Prog::ToContainer(_))
                    && is_icmp_error(&pkt)
                    && matches!(want.verdict, Verdict::Forwarded(_))
                {
                    related_errors_delivered += 1;
                }
                let errs = match h.run(prog, &pkt) {
                    Ok(got) => check(prog, &pkt, &want, &got),
                    Err(e) => vec![format!("test run failed: {e}")],
                };
                if !errs.is_empty() {
                    mismatches.push(format!(
                        "seed {seed} state {state} case {i}: {prog:?} {} bytes {}\n  model: {want:?}\n  {}\n  recent changes: {:?}\n  host: {:?}\n  ports: {:?}\n  owners: {:?}\n  groups: {:?}",
                        pkt.len(),
                        hex(&pkt),
                        errs.join("\n  "),
                        log.iter().rev().take(3).collect::<Vec<_>>(),
                        s.model.host,
                        s.model.ports,
                        s.model.owners,
                        s.model.groups,
                    ));
                }
            }
        }
        // The map holds exactly the connections the model follows, with
        // the same owners, states and reply flags.
        let in_map: BTreeMap<ConnKey, (u32, u32, ConnState, bool)> =
            h.dp.connections()
                .expect("reading CONNECTIONS")
                .into_iter()
                .map(|(k, c)| {
                    let state = ConnState::from_u8(c.state).expect("a known state");
                    (
                        k,
                        (c.src_owner, c.dst_owner, state, c.flags & CONN_REPLIED != 0),
                    )
                })
                .collect();
        tracked += in_map.len();
        if in_map != s.model.expected_connections() {
            mismatches.push(format!(
                "seed {seed} state {state}: CONNECTIONS holds {in_map:?}\n  the model: {:?}",
                s.model.expected_connections()
            ));
        }
    }
    println!(
        "{cases} cases over {STATES} random states, {changes} state changes in between, {tracked} connections tracked, {related_errors_delivered} related ICMP errors delivered"
    );
    for ((prog, verdict), n) in &seen {
        println!("  {prog:<16} {verdict:?}: {n}");
    }
    if !mismatches.is_empty() {
        for m in mismatches.iter().take(20) {
            println!("MISMATCH {m}");
        }
        panic!(
            "{} of {cases} cases disagree with the model (first ones above)",
            mismatches.len()
        );
    }
    // ICMP errors about tracked connections were delivered (the rest of
    // them refused, as the verdict counts above show).
    assert!(
        related_errors_delivered >= 10,
        "only {related_errors_delivered} related ICMP errors delivered"
    );
    // Security groups were exercised: some packets refused for their port,
    // others forwarded through a narrowed pair.
    let refused_for_port = seen
        .iter()
        .filter(|((_, v), _)| *v == Verdict::Dropped(DropReason::PortNotAllowed))
        .map(|(_, n)| n)
        .sum::<usize>();
    assert!(
        refused_for_port >= 10,
        "only {refused_for_port} cases refused for their port"
    );
}

/// An IPv4 ICMP destination unreachable, time exceeded or parameter
/// problem (a first fragment with its type byte).
fn is_icmp_error(p: &[u8]) -> bool {
    let l4 = 14 + usize::from(p.get(14).copied().unwrap_or(0) & 0x0f) * 4;
    p.len() > l4
        && p[12..14] == [0x08, 0x00]
        && p[14 + 9] == 1
        && u16::from_be_bytes([p[14 + 6], p[14 + 7]]) & 0x1fff == 0
        && matches!(p[l4], 3 | 11 | 12)
}

/// A device for a TC run: usually one with a port, sometimes a stray.
fn pick_device(rng: &mut Rng, s: &Scenario) -> u32 {
    if !s.local_ports.is_empty() && (s.strays.is_empty() || rng.chance(85)) {
        rng.pick(&s.local_ports).1
    } else {
        rng.pick(&s.strays)
    }
}
