//! Per-packet decision cost: every datapath path measured with
//! BPF_PROG_TEST_RUN, at zone sizes from 10 containers to a full zone
//! (254 x 254 containers, 10,000 owners, 1,000 groups), hot and spread.
//!
//! * `hot`: one packet, run by the kernel's own `repeat` loop
//!   ([`HOT_ROUNDS`] rounds per call): caches, TLB and branch predictors
//!   warm, as for a flow in a NAPI batch. This is the program's own time:
//!   the loop has no per-call overhead in it. The loop reruns the program
//!   on the packet the previous round rewrote, so the bench zone gives every
//!   host, port and gateway one MAC ([`BENCH_MAC`]) and the packets start
//!   with TTL 255: a rewritten packet passes the same checks and takes the
//!   same path again (TTL 5 after the last round); the last round's return
//!   code is checked after every call.
//! * `spread`: every packet a different pair, addresses over the whole
//!   zone, so map slots come from all over the tables (cache and TLB
//!   misses). A packet runs once, in its own call, and a call of one round
//!   carries the kernel's per-call cost (the syscall, a fresh skb or XDP
//!   buffer, cold instructions). That cost is measured the same way in the
//!   same repetition with the path's first packet again and again (`hot
//!   (call)`), and only the difference is added: `spread` = `hot` +
//!   (`spread (call)` - `hot (call)`), i.e. the hot program plus what cold
//!   data costs it. Every repetition takes fresh packets (a pool of
//!   [`SPREAD_POOL_REPS`] x the calls per repetition), so a repetition does
//!   not find the previous one's slots in the caches.
//!
//! Goal (issue 14): `spread` within 2x of `hot` on every path at a full
//! zone; `hot` within 10% from 10 containers to a full zone (SPEC). The
//! empty XDP/TC programs' loop cost is reported for scale only.
//!
//! The kernel reports whole nanoseconds per run (the loop's total divided
//! by the rounds, rounded down): a program of a few ns moves by a step for
//! every ns; hence many calls per figure (they are cheap).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    time::Instant,
};

use anyhow::{Context as _, Result};
use aya::programs::XdpMode;
use netfabric::agent::plan::{Blooms, OwnerGroupLists};
use netfabric::datapath::{
    BENCH_OBJECT, Datapath, LoadOptions, PROG_FROM_CONTAINER, PROG_FROM_UPLINK,
    PROG_FROM_UPLINK_TC, PROG_TO_CONTAINER, maps::service_tables::ServiceMembers,
};
use netfabric_common::{
    HostConfig, SYSTEM_OWNER,
    conntrack::{ConnKey, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PortRule, PortScope, ScopedPair},
    policy::SERVICE_BACKEND,
    service::{ServicePort, ServicePortKey, service_id},
};
use serde_json::{Value, json};

use super::{Rng, Settings, Stats};
use crate::netns::Netns;

/// Empty programs of the bench's eBPF object (`BENCH_OBJECT`), the
/// baseline; the product's object has none.
const PROG_BASELINE_XDP: &str = "baseline_xdp";
const PROG_BASELINE_TC: &str = "baseline_tc";

const ZONE: [u8; 2] = [10, 1];
pub const LOCAL_HOST: u8 = 1;
/// The one MAC of the bench zone: uplink, host bridge (gateway), every other
/// host's underlay and every container. The checks compare all six bytes
/// whatever they are; a single value lets a rewritten packet pass them again
/// (see the module doc).
const BENCH_MAC: [u8; 6] = [0x02, 0xbe, 0, 0, 0, 1];
const UPLINK_MAC: [u8; 6] = BENCH_MAC;
const GATEWAY_MAC: [u8; 6] = BENCH_MAC;
/// Every container's MAC.
const CONTAINER_MAC: [u8; 6] = BENCH_MAC;
/// Every other host's underlay MAC.
const HOST_MAC: [u8; 6] = BENCH_MAC;
/// Rounds of the kernel's loop per `hot` call: the TTL (255) must stay > 1.
pub const HOT_ROUNDS: u32 = 250;
/// Local container ports (veth devices in the bench namespace), one per
/// container of the local host, as on a full host: their owners are the
/// sources of the `spread` container paths and the destinations of the
/// uplink ones, so same-owner traffic reaches as many destinations as a
/// full host's would (the containers of 254 owners), not a few warm ones.
const PORTS: u8 = 254;
/// Measure only the paths whose names contain one of these comma-separated
/// words (e.g. `NETFABRIC_BENCH_PATHS=egress,to container`); all when unset.
pub const PATHS_VAR: &str = "NETFABRIC_BENCH_PATHS";

pub fn addr(host: u8, c: u8) -> Ipv4Addr {
    Ipv4Addr::new(ZONE[0], ZONE[1], host, c)
}

/// An Ethernet + IPv4 + UDP frame of 64 bytes (no FCS), TTL 255.
fn frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 255)
        .udp(40000, BENCH_PORT);
    let payload = [0u8; 18];
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).expect("building a frame");
    out
}

/// The `CONNECTIONS` key of a [`frame`] (UDP).
fn udp_key(p: &[u8]) -> ConnKey {
    let at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let port = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    ConnKey {
        src: at(26),
        dst: at(30),
        src_port: port(34),
        dst_port: port(36),
        protocol: PROTO_UDP,
        _pad: [0; 3],
    }
}

/// The contents of one zone's maps.
pub struct Zone {
    /// Owner of every populated address (host, container).
    pub owners: BTreeMap<(u8, u8), u32>,
    /// Pairs of owners sharing a group, sorted.
    pub pairs: Vec<(u32, u32)>,
    /// Every owner's groups bloom (`Endpoint::groups`), group index as key.
    pub blooms: Blooms,
    /// Every owner's `OWNER_GROUPS` entry, group index as key.
    pub lists: OwnerGroupLists,
    pub owner_count: u32,
    pub group_count: u32,
    pub label: String,
    /// Owners with security groups (`INGRESS_SCOPED`): every pair sharing
    /// a group with one of them as the receiver is narrowed to
    /// [`bench_scope`] (in `PORT_SCOPES`).
    pub scoped: BTreeSet<u32>,
}

impl Zone {
    pub fn containers(&self) -> usize {
        self.owners.len()
    }

    /// `owner`'s groups bloom, as the agent writes it.
    pub fn bloom(&self, owner: u32) -> u32 {
        self.blooms.of(owner)
    }

    /// The `PORT_SCOPES` entries: (receiver, sender) for every pair with a
    /// scoped receiver.
    pub fn scopes(&self) -> Vec<ScopedPair> {
        let mut out = Vec::new();
        for &(a, b) in &self.pairs {
            for (receiver, sender) in [(a, b), (b, a)] {
                if self.scoped.contains(&receiver) {
                    out.push(ScopedPair { receiver, sender });
                }
            }
        }
        out
    }
}

/// The UDP port every bench frame goes to.
const BENCH_PORT: u16 = 5201;

/// The scope of every narrowed bench pair: eight rules (the most a pair
/// holds), the bench's UDP port opened by the last one, so an open packet
/// runs through all of them.
pub fn bench_scope() -> PortScope {
    let rule = |protocol, first_port, last_port| PortRule {
        first_port,
        last_port,
        protocol,
        _pad: [0; 3],
    };
    PortScope {
        count: 8,
        _pad: 0,
        rules: [
            rule(PROTO_TCP, 22, 22),
            rule(PROTO_TCP, 80, 80),
            rule(PROTO_TCP, 443, 443),
            rule(PROTO_TCP, 5432, 5432),
            rule(PROTO_UDP, 53, 53),
            rule(PROTO_ICMP, 0, 0),
            rule(PROTO_UDP, 5000, 5010),
            rule(PROTO_UDP, BENCH_PORT, BENCH_PORT),
        ],
    }
}

/// `zone` where one owner in eight has security groups (a full zone's
/// narrowed pairs then fit `PORT_SCOPES`): their blooms carry
/// `INGRESS_SCOPED`. The small zone's owner 12 is one.
pub fn with_security_groups(mut zone: Zone) -> Zone {
    let owners: BTreeSet<u32> = zone.owners.values().copied().collect();
    zone.scoped = owners.into_iter().filter(|o| o % 8 == 4).collect();
    zone.blooms = std::mem::take(&mut zone.blooms).scoped(zone.scoped.clone());
    zone
}

/// Blooms of the members of `groups` (group index as the key).
fn blooms(groups: &[Vec<u32>]) -> Blooms {
    Blooms::of_groups(
        groups
            .iter()
            .enumerate()
            .map(|(g, members)| (g as u32, members.iter().copied())),
    )
}

/// `OWNER_GROUPS` entries of the members of `groups` (group index as the key).
fn lists(groups: &[Vec<u32>]) -> OwnerGroupLists {
    OwnerGroupLists::of_groups(
        groups
            .iter()
            .enumerate()
            .map(|(g, members)| (g as u32, members.iter().copied())),
    )
}

/// 10 containers: 5 on the local host, 5 on host 2; owners 10, 11, 12;
/// one group {10, 12}.
pub fn small_zone() -> Zone {
    let mut owners = BTreeMap::new();
    for c in 1..=5u8 {
        owners.insert((1, c), 10 + u32::from(c % 3));
        owners.insert((2, c), 10 + u32::from(c % 3));
    }
    Zone {
        owners,
        pairs: vec![(10, 12)],
        blooms: blooms(&[vec![10, 12]]),
        lists: lists(&[vec![10, 12]]),
        owner_count: 3,
        group_count: 1,
        label: "10 containers, 3 owners, 1 group".into(),
        scoped: BTreeSet::new(),
    }
}

/// `hosts` x 254 containers, `owners` random owners, `groups` groups of 20
/// random owners each.
pub fn zone(hosts: u8, owners: u32, groups: u32, rng: &mut Rng) -> Zone {
    let mut map = BTreeMap::new();
    for h in 1..=hosts {
        for c in 1..=254u8 {
            map.insert((h, c), 100 + rng.below(owners.into()) as u32);
        }
    }
    let mut pairs = BTreeSet::new();
    let mut memberships = Vec::new();
    for _ in 0..groups {
        let members: Vec<u32> = (0..20)
            .map(|_| 100 + rng.below(owners.into()) as u32)
            .collect();
        memberships.push(members.clone());
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                if a != b {
                    pairs.insert((*a.min(b), *a.max(b)));
                }
            }
        }
    }
    Zone {
        label: format!(
            "{} containers ({hosts}x254), {} owners, {} groups",
            super::thousands(map.len() as u64),
            super::thousands(owners.into()),
            super::thousands(groups.into())
        ),
        owners: map,
        pairs: pairs.into_iter().collect(),
        blooms: blooms(&memberships),
        lists: lists(&memberships),
        owner_count: owners,
        group_count: groups,
        scoped: BTreeSet::new(),
    }
}

/// The zone sizes measured: 10 containers up to a full zone.
pub fn zones(rng: &mut Rng) -> Vec<Zone> {
    vec![
        small_zone(),
        zone(4, 160, 16, rng),
        zone(64, 2_500, 250, rng),
        zone(254, 10_000, 1_000, rng),
    ]
    .into_iter()
    .map(with_security_groups)
    .collect()
}

/// The bench service's VIP (host octet 0 of the zone) and its UDP port.
fn bench_vip() -> Ipv4Addr {
    addr(0, 1)
}
/// Backends of the bench service at most.
pub const SERVICE_BACKENDS: usize = 16;

/// The bench service: an owner without security groups that has local
/// containers with a port and remote containers; the VIP balances over up
/// to [`SERVICE_BACKENDS`] of the remote ones, written as the agent writes
/// a service (members flagged `SERVICE_BACKEND`, the table, then the
/// port). Returns the VIP cases and the same packets straight to the
/// backends (`n` each), or `None` when no owner fits.
fn bench_service(
    dp: &mut Datapath,
    zone: &Zone,
    ports: &BTreeMap<u8, u32>,
    n: usize,
) -> Result<Option<ServiceCases>> {
    let owners: BTreeSet<u32> = zone.owners.values().copied().collect();
    let Some((owner, clients, backends)) = owners
        .into_iter()
        .filter(|o| *o != SYSTEM_OWNER && !zone.scoped.contains(o))
        .map(|o| {
            let of = |local: bool| -> Vec<(u8, u8)> {
                zone.owners
                    .iter()
                    .filter(|&(&(h, c), &x)| {
                        x == o && (h == LOCAL_HOST) == local && (!local || ports.contains_key(&c))
                    })
                    .map(|(&k, _)| k)
                    .take(SERVICE_BACKENDS)
                    .collect()
            };
            (o, of(true), of(false))
        })
        .find(|(_, c, b)| !c.is_empty() && !b.is_empty())
    else {
        return Ok(None);
    };
    let mut members = ServiceMembers::default();
    for (i, &(h, c)) in backends.iter().enumerate() {
        dp.set_endpoint_groups(0, addr(h, c), owner, zone.bloom(owner) | SERVICE_BACKEND)?;
        members.members[i] = addr(h, c).into();
        members.healthy |= 1u128 << i;
    }
    let id = service_id(0, bench_vip().into());
    dp.set_service_table(id, &members)?;
    dp.set_service_port(
        ServicePortKey {
            vip: bench_vip().into(),
            port: BENCH_PORT,
            protocol: PROTO_UDP,
            _pad: 0,
        },
        ServicePort {
            service: id,
            owner,
            target_port: BENCH_PORT,
            _pad: [0; 6],
        },
    )?;
    let case = |i: usize, dst: Ipv4Addr| {
        let c = clients[i % clients.len()].1;
        let mut p = frame(CONTAINER_MAC, GATEWAY_MAC, addr(LOCAL_HOST, c), dst);
        let sport = 1024 + (i % 64_000) as u16;
        p[34..36].copy_from_slice(&sport.to_be_bytes());
        // No UDP checksum (0): the port changed.
        p[40..42].copy_from_slice(&[0, 0]);
        (p, ports[&c])
    };
    let vip = (0..n).map(|i| case(i, bench_vip())).collect();
    let plain = (0..n)
        .map(|i| {
            let (h, c) = backends[i % backends.len()];
            case(i, addr(h, c))
        })
        .collect();
    Ok(Some(ServiceCases {
        backends: backends.len(),
        vip,
        plain,
    }))
}

struct ServiceCases {
    backends: usize,
    vip: Vec<(Vec<u8>, u32)>,
    plain: Vec<(Vec<u8>, u32)>,
}

/// Fill a freshly loaded datapath with `zone` as seen from [`LOCAL_HOST`].
pub fn fill(dp: &mut Datapath, zone: &Zone, ports: &BTreeMap<u8, u32>) -> Result<()> {
    dp.set_host(&HostConfig {
        zone_prefix: u32::from(addr(0, 0)),
        zone_slot: 0,
        host_octet: LOCAL_HOST.into(),
        uplink_ifindex: 1,
        uplink_mac: UPLINK_MAC,
        gateway_mac: GATEWAY_MAC,
        zone_router_mac: [0x02, 0xcc, 0, 0, 0, 1],
        flags: 0,
    })?;
    dp.set_zone(addr(0, 0), 0)?;
    // Scopes before the flags in the endpoints, as the agent writes them.
    let scope = bench_scope();
    for pair in zone.scopes() {
        dp.set_port_scope(pair, scope)?;
    }
    for h in 1..=254u8 {
        dp.set_next_hop(0, h, HOST_MAC, Ipv4Addr::new(172, 31, 0, h))?;
    }
    for (&(h, c), &owner) in &zone.owners {
        dp.set_endpoint_groups(0, addr(h, c), owner, zone.bloom(owner))?;
    }
    for (&c, &ifindex) in ports {
        dp.set_local_port(c, ifindex, CONTAINER_MAC)?;
    }
    for &(a, b) in &zone.pairs {
        dp.set_group_pair(a, b, 1)?;
    }
    // The lists after the pairs, as the agent widens them.
    for g in zone.lists.0.values() {
        dp.set_owner_groups(*g)?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Xdp,
    Tc,
}

struct Path {
    name: &'static str,
    kind: Kind,
    program: &'static str,
    /// The return code every case must get: a bench that times a drop while
    /// it claims a forward measures nothing.
    action: u32,
    /// (packet, ifindex) cases: `hot` uses the first, `spread` takes a fresh
    /// slice of them in every repetition.
    packets: Vec<(Vec<u8>, u32)>,
    /// The cases open connections that must be new when measured: their
    /// `CONNECTIONS` entries (made by the check that every case takes the
    /// path) are removed before the measurement.
    new_flows: bool,
}

impl Path {
    /// The `n` spread cases of repetition `rep`: the next `n` packets of
    /// the pool (wrapping only when a path has fewer distinct cases).
    fn spread_cases(&self, rep: usize, n: usize) -> Vec<&(Vec<u8>, u32)> {
        let len = self.packets.len();
        (0..n).map(|i| &self.packets[(rep * n + i) % len]).collect()
    }
}

/// One BPF_PROG_TEST_RUN call of `repeat` rounds: ns per round as the
/// kernel reports it, and the last round's return code.
fn run_once(
    dp: &mut Datapath,
    kind: Kind,
    program: &'static str,
    pkt: &[u8],
    ifindex: u32,
    repeat: u32,
) -> Result<(f64, u32)> {
    let out = match kind {
        Kind::Xdp => dp.test_run_xdp(program, pkt, repeat)?,
        Kind::Tc => dp.test_run_tc(program, pkt, ifindex, repeat)?,
    };
    Ok((out.duration.as_nanos() as f64, out.action))
}

/// ns/packet of one call per case, `rounds` rounds each: the trimmed mean
/// of the calls. Every call's (last) return code must be `action` when one
/// is given.
fn measure_calls(
    dp: &mut Datapath,
    kind: Kind,
    program: &'static str,
    cases: &[&(Vec<u8>, u32)],
    rounds: u32,
    action: Option<u32>,
) -> Result<f64> {
    let mut each = Vec::with_capacity(cases.len());
    for (pkt, ifindex) in cases {
        let (ns, got) = run_once(dp, kind, program, pkt, *ifindex, rounds)?;
        if let Some(want) = action {
            anyhow::ensure!(
                got == want,
                "{program}: a measured call returned {got}, not {want} (the path changed)"
            );
        }
        each.push(ns);
    }
    Ok(trimmed_mean(each))
}

/// Mean of the runs without the slowest 2%: a single run that an interrupt
/// or a preemption lands in costs microseconds and says nothing about the
/// datapath (the empty program is treated the same way).
fn trimmed_mean(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let keep = (xs.len() - xs.len() / 50).max(1);
    xs[..keep].iter().sum::<f64>() / keep as f64
}

/// Picks `n` random elements of `candidates` accepted by `want`, within a
/// bounded number of tries.
fn pick<T: Copy>(
    rng: &mut Rng,
    candidates: &[T],
    n: usize,
    mut want: impl FnMut(&mut Rng, T) -> bool,
) -> Vec<T> {
    let mut out = Vec::new();
    if candidates.is_empty() {
        return out;
    }
    for _ in 0..n * 400 {
        if out.len() == n {
            break;
        }
        let c = candidates[rng.below(candidates.len() as u64) as usize];
        if want(rng, c) {
            out.push(c);
        }
    }
    out
}

fn paths(zone: &Zone, rng: &mut Rng, ports: &BTreeMap<u8, u32>, spread_n: usize) -> Vec<Path> {
    let local: Vec<(u8, u32)> = ports
        .keys()
        .filter_map(|&c| zone.owners.get(&(LOCAL_HOST, c)).map(|&o| (c, o)))
        .collect();
    // Only containers with a port here can be delivered to (the others of
    // this host would be `unknown_destination`).
    let local_dsts: Vec<(u8, u8)> = zone
        .owners
        .keys()
        .copied()
        .filter(|&(h, c)| h == LOCAL_HOST && ports.contains_key(&c))
        .collect();
    let remote: Vec<(u8, u8)> = zone
        .owners
        .keys()
        .copied()
        .filter(|&(h, _)| h != LOCAL_HOST)
        .collect();
    let owner_of = |h: u8, c: u8| zone.owners[&(h, c)];
    let shares = |a: u32, b: u32| zone.pairs.binary_search(&(a.min(b), a.max(b))).is_ok();
    // From a random local container to a destination accepted by `want`.
    let from_container = |rng: &mut Rng,
                          dsts: &[(u8, u8)],
                          want: &dyn Fn(u32, u32) -> bool|
     -> Vec<(Vec<u8>, u32)> {
        let mut chosen = Vec::new();
        pick(rng, dsts, spread_n, |rng, (h, dc)| {
            let (c, src_owner) = local[rng.below(local.len() as u64) as usize];
            let ok = (h, dc) != (LOCAL_HOST, c) && want(src_owner, owner_of(h, dc));
            if ok {
                chosen.push(c);
            }
            ok
        })
        .into_iter()
        .zip(chosen)
        .map(|((h, dc), c)| {
            let src = addr(LOCAL_HOST, c);
            (
                frame(CONTAINER_MAC, GATEWAY_MAC, src, addr(h, dc)),
                ports[&c],
            )
        })
        .collect()
    };
    let same_owner = |s: u32, d: u32| s == d && !zone.scoped.contains(&d);
    // To an owner without security groups (its pairs are not narrowed).
    let group = |s: u32, d: u32| s != d && shares(s, d) && !zone.scoped.contains(&d);
    // To an owner with security groups: the pair is narrowed, looked up.
    let scoped =
        |s: u32, d: u32| s != d && s != SYSTEM_OWNER && shares(s, d) && zone.scoped.contains(&d);
    let denied = |s: u32, d: u32| s != d && d != SYSTEM_OWNER && s != SYSTEM_OWNER && !shares(s, d);
    let same_local = from_container(rng, &local_dsts, &same_owner);
    let same_remote = from_container(rng, &remote, &same_owner);
    let group_remote = from_container(rng, &remote, &group);
    let denied_remote = from_container(rng, &remote, &denied);
    let scoped_remote = from_container(rng, &remote, &scoped);
    // The same packets to a port the scope does not open.
    let closed_port = |cases: &[(Vec<u8>, u32)]| -> Vec<(Vec<u8>, u32)> {
        cases
            .iter()
            .map(|(pkt, ifindex)| {
                let mut p = pkt.clone();
                // UDP destination port: Ethernet 14 + IPv4 20 + 2.
                p[36..38].copy_from_slice(&(BENCH_PORT + 1).to_be_bytes());
                (p, *ifindex)
            })
            .collect()
    };
    let scoped_refused = closed_port(&scoped_remote);
    // Spoofed: a local container claiming a neighbour's address.
    let spoofed: Vec<(Vec<u8>, u32)> = same_remote
        .iter()
        .map(|(pkt, ifindex)| {
            let mut p = pkt.clone();
            let other = ports
                .iter()
                .find(|(_, i)| *i != ifindex)
                .map(|(c, _)| *c)
                .unwrap_or(1);
            p[26..30].copy_from_slice(&addr(LOCAL_HOST, other).octets());
            (p, *ifindex)
        })
        .collect();
    let to_stack: Vec<(Vec<u8>, u32)> = same_remote
        .iter()
        .map(|(pkt, ifindex)| {
            let mut p = pkt.clone();
            p[30..34].copy_from_slice(&[93, 184, 216, rng.below(250) as u8 + 1]);
            (p, *ifindex)
        })
        .collect();
    // Egress of non-system owners is tracked: the same packets from
    // ordinary owners' containers (already tracked when measured: the
    // check below opens them), the same with a source port of their own
    // (each a new connection: an insert), and the replies from outside
    // to the host stack's side of the port (`to_container`): of a tracked
    // connection, and of none.
    let ordinary = |p: &Vec<u8>| owner_of(LOCAL_HOST, p[29]) != SYSTEM_OWNER;
    let egress_tracked: Vec<(Vec<u8>, u32)> = to_stack
        .iter()
        .filter(|(p, _)| ordinary(p))
        .cloned()
        .collect();
    let egress_new: Vec<(Vec<u8>, u32)> = egress_tracked
        .iter()
        .enumerate()
        .map(|(i, (p, ifindex))| {
            let mut p = p.clone();
            let sport = 1024 + (i % 60_000) as u16;
            p[34..36].copy_from_slice(&sport.to_be_bytes());
            p[40..42].copy_from_slice(&[0, 0]);
            (p, *ifindex)
        })
        .collect();
    let reply = |p: &Vec<u8>| {
        let mut r = p.clone();
        r[26..30].copy_from_slice(&p[30..34]);
        r[30..34].copy_from_slice(&p[26..30]);
        r[34..36].copy_from_slice(&p[36..38]);
        r[36..38].copy_from_slice(&p[34..36]);
        r
    };
    let replies: Vec<(Vec<u8>, u32)> = egress_tracked
        .iter()
        .map(|(p, ifindex)| (reply(p), *ifindex))
        .collect();
    let unsolicited: Vec<(Vec<u8>, u32)> = replies
        .iter()
        .map(|(p, ifindex)| {
            let mut p = p.clone();
            p[34..36].copy_from_slice(&443u16.to_be_bytes());
            (p, *ifindex)
        })
        .collect();
    // Uplink: from a remote host's container to a local one, from that host's MAC.
    let uplink = |rng: &mut Rng, want: &dyn Fn(u32, u32) -> bool| -> Vec<(Vec<u8>, u32)> {
        let mut chosen = Vec::new();
        pick(rng, &remote, spread_n, |rng, (h, sc)| {
            let (c, dst_owner) = local[rng.below(local.len() as u64) as usize];
            let ok = want(owner_of(h, sc), dst_owner);
            if ok {
                chosen.push(c);
            }
            ok
        })
        .into_iter()
        .zip(chosen)
        .map(|((h, sc), c)| {
            (
                frame(HOST_MAC, UPLINK_MAC, addr(h, sc), addr(LOCAL_HOST, c)),
                0,
            )
        })
        .collect()
    };
    let up_same = uplink(rng, &same_owner);
    let up_group = uplink(rng, &group);
    let up_scoped = uplink(rng, &scoped);
    let up_pass: Vec<(Vec<u8>, u32)> = (0..spread_n)
        .map(|_| {
            let h = 2 + rng.below(253) as u8;
            (
                frame(
                    HOST_MAC,
                    UPLINK_MAC,
                    Ipv4Addr::new(172, 31, 0, h),
                    Ipv4Addr::new(172, 31, 0, LOCAL_HOST),
                ),
                0,
            )
        })
        .collect();
    const TC_ACT_OK: u32 = 0;
    const TC_ACT_SHOT: u32 = 2;
    const TC_ACT_REDIRECT: u32 = 7;
    const XDP_PASS: u32 = 2;
    let xdp = |name, action, packets| Path {
        name,
        kind: Kind::Xdp,
        program: PROG_FROM_UPLINK,
        action,
        packets,
        new_flows: false,
    };
    let tc = |name, action, packets| Path {
        name,
        kind: Kind::Tc,
        program: PROG_FROM_CONTAINER,
        action,
        packets,
        new_flows: false,
    };
    let up_tc = |name, action, packets| Path {
        name,
        kind: Kind::Tc,
        program: PROG_FROM_UPLINK_TC,
        action,
        packets,
        new_flows: false,
    };
    let to_c = |name, action, packets| Path {
        name,
        kind: Kind::Tc,
        program: PROG_TO_CONTAINER,
        action,
        packets,
        new_flows: false,
    };
    let mut v = vec![
        tc("container: same owner, local", TC_ACT_REDIRECT, same_local),
        tc(
            "container: same owner, remote",
            TC_ACT_REDIRECT,
            same_remote,
        ),
        tc("container: group, remote", TC_ACT_REDIRECT, group_remote),
        tc("container: denied", TC_ACT_SHOT, denied_remote),
        tc(
            "container: group, scoped, open port",
            TC_ACT_REDIRECT,
            scoped_remote,
        ),
        tc(
            "container: group, scoped, closed port",
            TC_ACT_SHOT,
            scoped_refused,
        ),
        tc("container: spoofed source IP", TC_ACT_SHOT, spoofed),
        tc("container: outside, to stack", TC_ACT_OK, to_stack),
        tc("container: egress, tracked flow", TC_ACT_OK, egress_tracked),
        Path {
            new_flows: true,
            ..tc("container: egress, new flow", TC_ACT_OK, egress_new)
        },
        to_c("to container: reply, tracked", TC_ACT_OK, replies),
        to_c("to container: outside, no entry", TC_ACT_SHOT, unsolicited),
        // The uplink: the XDP prefilter passes what it does not drop, the
        // TC program judges it again and delivers.
        xdp("uplink XDP: same owner, pass", XDP_PASS, up_same.clone()),
        xdp("uplink XDP: group, pass", XDP_PASS, up_group.clone()),
        xdp("uplink XDP: not ours, pass", XDP_PASS, up_pass.clone()),
        up_tc("uplink TC: same owner, deliver", TC_ACT_REDIRECT, up_same),
        up_tc("uplink TC: group, deliver", TC_ACT_REDIRECT, up_group),
        up_tc(
            "uplink TC: group, scoped, deliver",
            TC_ACT_REDIRECT,
            up_scoped,
        ),
        up_tc("uplink TC: not ours, pass", TC_ACT_OK, up_pass),
    ];
    if let Ok(only) = std::env::var(PATHS_VAR) {
        v.retain(|p| only.split(',').any(|want| p.name.contains(want.trim())));
    }
    v.retain(|p| {
        if p.packets.is_empty() {
            eprintln!(
                "bench: no packets for path {:?} in zone {}, skipped",
                p.name, zone.label
            );
        }
        !p.packets.is_empty()
    });
    v
}

/// One measured path in one zone.
#[derive(Clone, Debug)]
pub struct Row {
    pub zone: String,
    pub containers: usize,
    pub path: &'static str,
    pub kind: Kind,
    /// The program's own ns/packet, one packet in the kernel's loop.
    pub hot: Stats,
    /// ns/packet of one call of one round, the path's first packet every
    /// call: the per-call cost `spread (call)` pays too, with hot data.
    pub hot_call: Stats,
    /// ns/packet of one call of one round, a different packet every call.
    pub spread_call: Stats,
    /// `hot` + (`spread_call` - `hot_call`), per repetition: the program
    /// with cold data.
    pub spread: Stats,
    /// The empty program of the same type, in the kernel's loop (for
    /// scale; no target refers to it).
    pub empty: Stats,
}

impl Row {
    /// What cold data costs this path, as a factor of its hot cost.
    pub fn spread_over_hot(&self) -> f64 {
        self.spread.median / self.hot.median
    }
}

/// The VIP path next to the plain path it ends in, in one zone
/// (docs/datapath.md#services): one owner's local containers sending to a
/// service's VIP, balanced over up to [`SERVICE_BACKENDS`] remote
/// containers of that owner, and the same packets sent straight to those
/// containers. A translated packet is no longer addressed to the VIP, so
/// the kernel's `repeat` loop would time the plain path from its second
/// round on: both paths are timed per call (one round, the same per-call
/// cost in both) and compared with each other.
#[derive(Clone, Debug)]
pub struct ServiceRow {
    pub zone: String,
    pub containers: usize,
    pub backends: usize,
    /// ns per call, the first packet in every call (its flow open).
    pub vip_hot_call: Stats,
    pub plain_hot_call: Stats,
    /// ns per call, a different client port (an open flow each) or
    /// destination every call.
    pub vip_spread_call: Stats,
    pub plain_spread_call: Stats,
}

impl ServiceRow {
    pub fn json(&self) -> Value {
        json!({
            "zone": self.zone, "containers": self.containers, "backends": self.backends,
            "vip_hot_call_ns_per_packet": self.vip_hot_call.json(),
            "plain_hot_call_ns_per_packet": self.plain_hot_call.json(),
            "vip_spread_call_ns_per_packet": self.vip_spread_call.json(),
            "plain_spread_call_ns_per_packet": self.plain_spread_call.json(),
        })
    }
}

/// The result of the decision part.
pub struct Decision {
    pub rows: Vec<Row>,
    pub zones: Vec<(String, usize)>,
    /// The VIP path per zone (none where the zone has no fitting owner).
    pub services: Vec<ServiceRow>,
}

impl Decision {
    /// This path's hot cost at this zone over its hot cost at the smallest
    /// zone, each as a multiple of the empty program of the same zone run
    /// (drift between zone runs cancels).
    pub fn flat(&self, row: &Row) -> Option<f64> {
        let smallest = self.zones.first()?;
        let small = self
            .rows
            .iter()
            .find(|s| s.path == row.path && s.containers == smallest.1)?;
        Some((row.hot.median / row.empty.median) / (small.hot.median / small.empty.median))
    }

    /// The rows of the largest zone measured (a full zone in every run).
    pub fn largest_zone(&self) -> Vec<&Row> {
        let Some(&(_, containers)) = self.zones.iter().max_by_key(|z| z.1) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .filter(|r| r.containers == containers)
            .collect()
    }

    pub fn json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    json!({
                        "zone": r.zone, "containers": r.containers,
                        "path": r.path, "program": if r.kind == Kind::Xdp { "xdp" } else { "tc" },
                        "hot_ns_per_packet": r.hot.json(),
                        "spread_ns_per_packet": r.spread.json(),
                        "hot_call_ns_per_packet": r.hot_call.json(),
                        "spread_call_ns_per_packet": r.spread_call.json(),
                        "empty_ns_per_packet": r.empty.json(),
                        "spread_over_hot": r.spread_over_hot(), "flat": self.flat(r),
                    })
                })
                .collect(),
        )
    }
}

pub fn run(settings: &Settings) -> Result<Decision> {
    let (repeat, spread_n) = if settings.quick {
        (200_000, 512)
    } else {
        (1_000_000, 4096)
    };
    let reps = settings.reps * 3;
    crate::ensure_bpffs();
    let ns = Netns::new(&super::lab::name("nfbd"));
    let mut ports = BTreeMap::new();
    for c in 1..=PORTS {
        let dev = format!("port{c}");
        // No dummy driver here (no module loading): a veth end is a device too.
        ns.exec(&[
            "ip",
            "link",
            "add",
            &dev,
            "type",
            "veth",
            "peer",
            "name",
            &format!("peer{c}"),
        ]);
        ports.insert(c, ns.ifindex(&dev));
    }
    let _inside = ns.enter();
    let mut rng = Rng(0x6e66_6265_6e63_6821);
    let mut rows = Vec::new();
    let mut zone_list = Vec::new();
    let mut services = Vec::new();
    for zone in zones(&mut rng) {
        let mut dp = Datapath::load(&LoadOptions::default()).context("loading the datapath")?;
        dp.load_programs_of(BENCH_OBJECT)?;
        dp.xdp(PROG_BASELINE_XDP)?.load()?;
        dp.tc(PROG_BASELINE_TC)?.load()?;
        let started = Instant::now();
        fill(&mut dp, &zone, &ports)?;
        // A BPF_PROG_TEST_RUN call with `repeat` > 1 puts an XDP program into
        // the kernel's XDP dispatcher and takes it out again, each with a
        // synchronize_rcu() (milliseconds), unless the program is attached
        // somewhere already. Attached to the (down) peers of two ports, they
        // stay in the dispatcher, as a NIC's program is.
        dp.attach_uplink("peer1", XdpMode::Driver)
            .context("attaching from_uplink for the bench")?;
        dp.xdp(PROG_BASELINE_XDP)?
            .attach("peer2", XdpMode::Driver)
            .context("attaching the empty XDP program for the bench")?;
        eprintln!(
            "bench: decision: loaded {} ({} group pairs) in {:.2?}",
            zone.label,
            zone.pairs.len(),
            started.elapsed()
        );
        zone_list.push((zone.label.clone(), zone.containers()));
        // Fresh spread packets for every repetition.
        let paths = paths(&zone, &mut rng, &ports, spread_n * reps);
        for p in &paths {
            for (pkt, ifindex) in &p.packets {
                let got = match p.kind {
                    Kind::Xdp => dp.test_run_xdp(p.program, pkt, 1)?.action,
                    Kind::Tc => dp.test_run_tc(p.program, pkt, *ifindex, 1)?.action,
                };
                anyhow::ensure!(
                    got == p.action,
                    "bench path {:?} in {}: a case returned {got}, not {}",
                    p.name,
                    zone.label,
                    p.action
                );
            }
        }
        for p in paths.iter().filter(|p| p.new_flows) {
            for (pkt, _) in &p.packets {
                dp.remove_connection(&udp_key(pkt))?;
            }
        }
        // The empty programs' own cost, with the kernel's repeat loop.
        let (pkt, ifindex) = &paths[0].packets[0];
        let mut empty = [Vec::new(), Vec::new()];
        for _ in 0..reps {
            for (i, (kind, prog)) in [(Kind::Xdp, PROG_BASELINE_XDP), (Kind::Tc, PROG_BASELINE_TC)]
                .into_iter()
                .enumerate()
            {
                empty[i].push(run_once(&mut dp, kind, prog, pkt, *ifindex, repeat)?.0);
            }
        }
        let (empty_xdp, empty_tc) = (Stats::of(&empty[0]), Stats::of(&empty[1]));
        // [hot, hot (call), spread (call), spread] per path and repetition.
        // Every repetition measures every path once, the three patterns of
        // a path back to back, so drift hits all of them alike.
        let mut samples = vec![[(); 4].map(|_| Vec::with_capacity(reps)); paths.len()];
        for rep in 0..reps {
            for (p, s) in paths.iter().zip(samples.iter_mut()) {
                let first = vec![&p.packets[0]; spread_n];
                let action = Some(p.action);
                let hot = measure_calls(&mut dp, p.kind, p.program, &first, HOT_ROUNDS, action)?;
                let hot_call = measure_calls(&mut dp, p.kind, p.program, &first, 1, action)?;
                let spread_cases = p.spread_cases(rep, spread_n);
                let spread_call =
                    measure_calls(&mut dp, p.kind, p.program, &spread_cases, 1, action)?;
                s[0].push(hot);
                s[1].push(hot_call);
                s[2].push(spread_call);
                s[3].push(hot + (spread_call - hot_call));
            }
        }
        // The VIP path beside the plain one (see `ServiceRow`). Every case
        // runs once first: the flows are open when measured.
        const TC_ACT_REDIRECT: u32 = 7;
        if let Some(cases) = bench_service(&mut dp, &zone, &ports, spread_n * reps)? {
            for (pkt, ifindex) in cases.vip.iter().chain(&cases.plain) {
                let got = dp
                    .test_run_tc(PROG_FROM_CONTAINER, pkt, *ifindex, 1)?
                    .action;
                anyhow::ensure!(
                    got == TC_ACT_REDIRECT,
                    "bench service in {}: a case returned {got}",
                    zone.label
                );
            }
            let mut s = [(); 4].map(|_| Vec::with_capacity(reps));
            let action = Some(TC_ACT_REDIRECT);
            for rep in 0..reps {
                let spread = |c: &[(Vec<u8>, u32)]| -> Vec<(Vec<u8>, u32)> {
                    c[rep * spread_n..(rep + 1) * spread_n].to_vec()
                };
                for (i, pool) in [&cases.vip, &cases.plain].into_iter().enumerate() {
                    let first = vec![&pool[0]; spread_n];
                    let spread = spread(pool);
                    let spread: Vec<&(Vec<u8>, u32)> = spread.iter().collect();
                    let tc = Kind::Tc;
                    s[i].push(measure_calls(
                        &mut dp,
                        tc,
                        PROG_FROM_CONTAINER,
                        &first,
                        1,
                        action,
                    )?);
                    s[2 + i].push(measure_calls(
                        &mut dp,
                        tc,
                        PROG_FROM_CONTAINER,
                        &spread,
                        1,
                        action,
                    )?);
                }
            }
            services.push(ServiceRow {
                zone: zone.label.clone(),
                containers: zone.containers(),
                backends: cases.backends,
                vip_hot_call: Stats::of(&s[0]),
                plain_hot_call: Stats::of(&s[1]),
                vip_spread_call: Stats::of(&s[2]),
                plain_spread_call: Stats::of(&s[3]),
            });
        } else {
            eprintln!(
                "bench: no owner for the VIP path in {}, skipped",
                zone.label
            );
        }
        for (p, s) in paths.iter().zip(samples) {
            rows.push(Row {
                zone: zone.label.clone(),
                containers: zone.containers(),
                path: p.name,
                kind: p.kind,
                hot: Stats::of(&s[0]),
                hot_call: Stats::of(&s[1]),
                spread_call: Stats::of(&s[2]),
                spread: Stats::of(&s[3]),
                empty: if p.kind == Kind::Xdp {
                    empty_xdp
                } else {
                    empty_tc
                },
            });
        }
    }
    Ok(Decision {
        rows,
        zones: zone_list,
        services,
    })
}
