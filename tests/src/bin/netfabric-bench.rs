//! `cargo xtask bench`: per-packet cost of every datapath decision, measured
//! with BPF_PROG_TEST_RUN next to empty XDP/TC programs in the same run, at
//! a small zone (10 containers) and a full zone (254 x 254 containers,
//! 10,000 owners, 1,000 groups). Reported as ratios; absolute nanoseconds on
//! a shared VM are only indicative.
//!
//! Two access patterns per path:
//! * `hot`: one packet repeated (`repeat` in the kernel): keys in cache;
//! * `spread`: many packets whose destinations cover the whole zone, each run
//!   once, so map slots come from all over the tables (cache misses).

use std::{collections::BTreeMap, fmt::Write as _, net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, Result};
use netfabric::datapath::{
    Datapath, LoadOptions, PROG_BASELINE_TC, PROG_BASELINE_XDP, PROG_FROM_CONTAINER,
    PROG_FROM_UPLINK,
};
use netfabric_common::{HostConfig, SYSTEM_OWNER};
use netfabric_tests::{ensure_bpffs, netns::Netns, unique};

const ZONE: [u8; 2] = [10, 1];
const LOCAL_HOST: u8 = 1;
const UPLINK_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, LOCAL_HOST];
const GATEWAY_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];

fn addr(host: u8, c: u8) -> Ipv4Addr {
    Ipv4Addr::new(ZONE[0], ZONE[1], host, c)
}

fn container_mac(a: Ipv4Addr) -> [u8; 6] {
    let o = a.octets();
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

fn host_mac(h: u8) -> [u8; 6] {
    [0x02, 0xaa, 0, 0, 0, h]
}

/// A small deterministic PRNG (xorshift64*): the bench needs no crate for it.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An Ethernet + IPv4 + UDP frame of 64 bytes (no FCS).
fn frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(40000, 5201);
    let payload = [0u8; 18];
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).expect("building a frame");
    out
}

struct Zone {
    /// Owner of every populated address (host, container).
    owners: BTreeMap<(u8, u8), u32>,
    /// Pairs of owners sharing a group.
    pairs: Vec<(u32, u32)>,
    label: &'static str,
}

/// 10 containers: 5 on this host, 5 on host 2; owners 10, 11, 12; group {10, 12}.
fn small_zone() -> Zone {
    let mut owners = BTreeMap::new();
    for c in 1..=5u8 {
        owners.insert((1, c), 10 + u32::from(c % 3));
        owners.insert((2, c), 10 + u32::from(c % 3));
    }
    Zone {
        owners,
        pairs: vec![(10, 12)],
        label: "10 containers",
    }
}

/// 254 x 254 containers, 10,000 owners, 1,000 groups of 20 random owners.
fn full_zone(rng: &mut Rng) -> Zone {
    let mut owners = BTreeMap::new();
    for h in 1..=254u8 {
        for c in 1..=254u8 {
            owners.insert((h, c), 100 + rng.below(10_000) as u32);
        }
    }
    let mut pairs = std::collections::BTreeSet::new();
    for _ in 0..1_000 {
        let members: Vec<u32> = (0..20).map(|_| 100 + rng.below(10_000) as u32).collect();
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                if a != b {
                    pairs.insert((*a.min(b), *a.max(b)));
                }
            }
        }
    }
    Zone {
        owners,
        pairs: pairs.into_iter().collect(),
        label: "254x254 containers, 10k owners, 1k groups",
    }
}

struct Bench {
    dp: Datapath,
    /// ifindex per local container octet (veth devices in the bench netns).
    ports: BTreeMap<u8, u32>,
}

fn load(zone: &Zone, ports: &BTreeMap<u8, u32>) -> Result<Datapath> {
    let mut dp = Datapath::load(&LoadOptions::default()).context("loading the datapath")?;
    let started = std::time::Instant::now();
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
    for h in 1..=254u8 {
        dp.set_next_hop(0, h, host_mac(h), Ipv4Addr::new(172, 31, 0, h))?;
    }
    for (&(h, c), &owner) in &zone.owners {
        dp.set_endpoint(0, addr(h, c), owner)?;
    }
    for (&c, &ifindex) in ports {
        dp.set_local_port(c, ifindex, container_mac(addr(LOCAL_HOST, c)))?;
    }
    for &(a, b) in &zone.pairs {
        dp.set_group_pair(a, b, 1)?;
    }
    eprintln!(
        "bench: loaded {} ({} endpoints, {} group pairs) in {:.2?}",
        zone.label,
        zone.owners.len(),
        zone.pairs.len(),
        started.elapsed()
    );
    Ok(dp)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Xdp,
    Tc,
}

struct Path {
    name: &'static str,
    kind: Kind,
    program: &'static str,
    /// (packet, ifindex) cases; `hot` uses the first.
    packets: Vec<(Vec<u8>, u32)>,
}

/// Median, min and max of `reps` measurements of `f`.
fn stats(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

impl Bench {
    fn run_once(
        &mut self,
        kind: Kind,
        program: &'static str,
        pkt: &[u8],
        ifindex: u32,
        repeat: u32,
    ) -> Result<Duration> {
        let out = match kind {
            Kind::Xdp => self.dp.test_run_xdp(program, pkt, repeat)?,
            Kind::Tc => self.dp.test_run_tc(program, pkt, ifindex, repeat)?,
        };
        Ok(out.duration)
    }

    /// ns/packet, hot: the first packet repeated `repeat` times in the kernel.
    fn hot(
        &mut self,
        kind: Kind,
        program: &'static str,
        case: &(Vec<u8>, u32),
        repeat: u32,
    ) -> Result<f64> {
        Ok(self
            .run_once(kind, program, &case.0, case.1, repeat)?
            .as_nanos() as f64)
    }

    /// ns/packet, spread: every packet once, averaged.
    fn spread(
        &mut self,
        kind: Kind,
        program: &'static str,
        cases: &[(Vec<u8>, u32)],
    ) -> Result<f64> {
        let mut total = 0u128;
        for (pkt, ifindex) in cases {
            total += self.run_once(kind, program, pkt, *ifindex, 1)?.as_nanos();
        }
        Ok(total as f64 / cases.len() as f64)
    }
}

struct Row {
    zone: &'static str,
    pattern: &'static str,
    path: &'static str,
    median_ns: f64,
    min_ns: f64,
    max_ns: f64,
    baseline_ns: f64,
}

fn paths(zone: &Zone, rng: &mut Rng, ports: &BTreeMap<u8, u32>, spread_n: usize) -> Vec<Path> {
    let local: Vec<(u8, u32)> = ports
        .keys()
        .filter_map(|&c| zone.owners.get(&(LOCAL_HOST, c)).map(|&o| (c, o)))
        .collect();
    let owner_of = |h: u8, c: u8| zone.owners.get(&(h, c)).copied();
    let shares = |a: u32, b: u32| zone.pairs.binary_search(&(a.min(b), a.max(b))).is_ok();
    // From a random local container to a destination accepted by `want`.
    let mut from_container =
        |want: &dyn Fn(u32, u8, u8) -> bool, n: usize, remote: bool| -> Vec<(Vec<u8>, u32)> {
            let mut out = Vec::new();
            for _ in 0..2_000_000 {
                if out.len() == n {
                    break;
                }
                let (c, src_owner) = local[rng.below(local.len() as u64) as usize];
                let h = if remote {
                    2 + rng.below(253) as u8
                } else {
                    LOCAL_HOST
                };
                let dc = 1 + rng.below(254) as u8;
                let Some(_) = owner_of(h, dc) else { continue };
                if !want(src_owner, h, dc) {
                    continue;
                }
                let src = addr(LOCAL_HOST, c);
                out.push((
                    frame(container_mac(src), GATEWAY_MAC, src, addr(h, dc)),
                    ports[&c],
                ));
            }
            out
        };
    let same_owner = |s: u32, h: u8, c: u8| owner_of(h, c) == Some(s);
    let group = |s: u32, h: u8, c: u8| owner_of(h, c).is_some_and(|d| d != s && shares(s, d));
    let denied = |s: u32, h: u8, c: u8| {
        owner_of(h, c)
            .is_some_and(|d| d != s && d != SYSTEM_OWNER && s != SYSTEM_OWNER && !shares(s, d))
    };
    let same_local = from_container(&same_owner, spread_n, false);
    let same_remote = from_container(&same_owner, spread_n, true);
    let group_remote = from_container(&group, spread_n, true);
    let denied_remote = from_container(&denied, spread_n, true);
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
    // Uplink: from a remote host's container to a local one, from that host's MAC.
    let mut uplink = |want: &dyn Fn(u32, u32) -> bool| -> Vec<(Vec<u8>, u32)> {
        let mut out = Vec::new();
        for _ in 0..2_000_000 {
            if out.len() == spread_n {
                break;
            }
            let h = 2 + rng.below(253) as u8;
            let sc = 1 + rng.below(254) as u8;
            let (c, dst_owner) = local[rng.below(local.len() as u64) as usize];
            let Some(src_owner) = owner_of(h, sc) else {
                continue;
            };
            if !want(src_owner, dst_owner) {
                continue;
            }
            out.push((
                frame(host_mac(h), UPLINK_MAC, addr(h, sc), addr(LOCAL_HOST, c)),
                0,
            ));
        }
        out
    };
    let up_same = uplink(&|s, d| s == d);
    let up_group = uplink(&|s, d| s != d && shares(s, d));
    let up_pass: Vec<(Vec<u8>, u32)> = (0..spread_n)
        .map(|_| {
            let h = 2 + rng.below(253) as u8;
            (
                frame(
                    host_mac(h),
                    UPLINK_MAC,
                    Ipv4Addr::new(172, 31, 0, h),
                    Ipv4Addr::new(172, 31, 0, LOCAL_HOST),
                ),
                0,
            )
        })
        .collect();
    let xdp = |name, packets| Path {
        name,
        kind: Kind::Xdp,
        program: PROG_FROM_UPLINK,
        packets,
    };
    let tc = |name, packets| Path {
        name,
        kind: Kind::Tc,
        program: PROG_FROM_CONTAINER,
        packets,
    };
    let mut v = vec![
        tc("container: same owner, local", same_local),
        tc("container: same owner, remote", same_remote),
        tc("container: group, remote", group_remote),
        tc("container: denied", denied_remote),
        tc("container: spoofed source IP", spoofed),
        tc("container: outside, to stack", to_stack),
        xdp("uplink: same owner, deliver", up_same),
        xdp("uplink: group, deliver", up_group),
        xdp("uplink: not ours, pass", up_pass),
    ];
    v.retain(|p| {
        if p.packets.is_empty() {
            eprintln!(
                "bench: no packets for path {:?} in this zone, skipped",
                p.name
            );
        }
        !p.packets.is_empty()
    });
    v
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (repeat, reps, spread_n) = if quick {
        (200_000, 3, 512)
    } else {
        (1_000_000, 5, 4096)
    };
    ensure_bpffs();
    let ns = Netns::new(&unique("nfbench"));
    let mut ports = BTreeMap::new();
    for c in 1..=8u8 {
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
    for zone in [small_zone(), full_zone(&mut rng)] {
        let dp = load(&zone, &ports)?;
        let mut bench = Bench {
            dp,
            ports: ports.clone(),
        };
        let paths = paths(&zone, &mut rng, &bench.ports, spread_n);
        let baseline_pkt = paths[0].packets[0].clone();
        for pattern in ["hot", "spread"] {
            let measure = |bench: &mut Bench,
                           kind,
                           program,
                           cases: &[(Vec<u8>, u32)]|
             -> Result<(f64, f64, f64)> {
                let mut xs = Vec::new();
                for _ in 0..reps {
                    xs.push(if pattern == "hot" {
                        bench.hot(kind, program, &cases[0], repeat)?
                    } else {
                        bench.spread(kind, program, cases)?
                    });
                }
                Ok(stats(xs))
            };
            let baseline_cases: Vec<(Vec<u8>, u32)> = vec![baseline_pkt.clone(); spread_n];
            let (base_xdp, ..) =
                measure(&mut bench, Kind::Xdp, PROG_BASELINE_XDP, &baseline_cases)?;
            let (base_tc, ..) = measure(&mut bench, Kind::Tc, PROG_BASELINE_TC, &baseline_cases)?;
            for p in &paths {
                let (median_ns, min_ns, max_ns) =
                    measure(&mut bench, p.kind, p.program, &p.packets)?;
                rows.push(Row {
                    zone: zone.label,
                    pattern,
                    path: p.name,
                    median_ns,
                    min_ns,
                    max_ns,
                    baseline_ns: if p.kind == Kind::Xdp {
                        base_xdp
                    } else {
                        base_tc
                    },
                });
            }
        }
    }
    report(&rows, quick)
}

fn report(rows: &[Row], quick: bool) -> Result<()> {
    let mut md = String::new();
    writeln!(md, "# netfabric datapath benchmark\n")?;
    writeln!(
        md,
        "BPF_PROG_TEST_RUN, {} mode. `ratio` = path / empty program of the same type (XDP or TC) measured in the same run; \
         `flat` = full zone / small zone for the same path and pattern. Goal: ratio <= 2.0, flat <= 1.10.\n",
        if quick { "quick" } else { "full" }
    )?;
    writeln!(
        md,
        "| zone | pattern | path | ns/pkt (median) | min..max | empty | ratio | flat |"
    )?;
    writeln!(md, "|---|---|---|---:|---:|---:|---:|---:|")?;
    let mut json = Vec::new();
    for r in rows {
        let small = rows
            .iter()
            .find(|s| s.path == r.path && s.pattern == r.pattern && s.zone.starts_with("10 "));
        let flat = small.map(|s| (r.median_ns / r.baseline_ns) / (s.median_ns / s.baseline_ns));
        let ratio = r.median_ns / r.baseline_ns;
        writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1}..{:.1} | {:.1} | {:.2} | {} |",
            r.zone,
            r.pattern,
            r.path,
            r.median_ns,
            r.min_ns,
            r.max_ns,
            r.baseline_ns,
            ratio,
            flat.map(|f| format!("{f:.2}")).unwrap_or_default()
        )?;
        json.push(serde_json::json!({
            "zone": r.zone, "pattern": r.pattern, "path": r.path,
            "median_ns": r.median_ns, "min_ns": r.min_ns, "max_ns": r.max_ns,
            "baseline_ns": r.baseline_ns, "ratio": ratio, "flat": flat,
        }));
    }
    print!("{md}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("datapath.md"), &md)?;
    std::fs::write(
        dir.join("datapath.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    eprintln!(
        "bench: report written to {}",
        dir.join("datapath.md").display()
    );
    Ok(())
}
