//! The services bench (issue 18, `--only services`):
//!
//! * **Maglev disruption**: the fraction of flows whose backend changes
//!   when one of N backends leaves, at the table level
//!   (`netfabric_common::service::{populate, slot_of}`, the code both the
//!   agent and the programs use) over many generated client flows, for
//!   N = 4, 16 and 100; every member's removal for N ≤ 16, 16 of them for
//!   N = 100; the worst is reported against the goal 1/N + 1%.
//! * **HTTP through a service**: `wrk` in a client container of the
//!   bench's two-host lab with netfabric's datapath attached, against four
//!   backend containers (two per host) running nginx (`nginx-light`, two
//!   workers each, a fixed 200 answer from memory, no logs): rows
//!   **direct** (to one backend on the other host), **VIP, one backend**
//!   (a service whose only backend is that one: the VIP's own cost),
//!   **haproxy** (in a container on host 2 in front of the four backends:
//!   HTTP mode, `balance roundrobin`, keep-alive on both sides, as it is
//!   commonly deployed), and **VIP** (a service over the same four,
//!   balanced at the client's host). The rows take turns (direct, VIP one
//!   backend, haproxy, VIP, direct, ...), so other work on a shared
//!   machine weighs on all alike;
//!   requests per second is the median of the repetitions, latency
//!   percentiles are wrk's over each run, the median of the runs reported.
//!
//! The service is programmed into both hosts' maps as the agent would
//! (`SERVICE_PORTS`, `SERVICE_TABLES`, the members' `SERVICE_BACKEND`
//! flag); the VIP row is measured when a TCP connection to the VIP opens,
//! and otherwise reported as not measured, with the reason (a build whose
//! programs do not balance services yet).

use std::{net::Ipv4Addr, path::Path};

use anyhow::{Context as _, Result, bail};
use netfabric::{
    Datapath,
    agent::plan::{DesiredMap as _, EndpointKey, Endpoints},
    datapath::maps::service_tables::ServiceMembers,
};
use netfabric_common::{
    Endpoint, SYSTEM_OWNER,
    conntrack::{ConnKey, PROTO_TCP},
    policy::SERVICE_BACKEND,
    service::{
        MAGLEV_SLOTS, MAX_BACKENDS, NO_MEMBER, ServicePort, ServicePortKey, populate, service_id,
        slot_of,
    },
};
use serde_json::{Value, json};

use super::{
    Rng, Settings, Stats,
    e2e::{self, Peer, Server, serve},
    lab::{Lab, Plumbing},
    out_dir,
};

/// Why the VIP row is not measured in this build: the service is in the
/// maps, but a connection to its VIP fails.
pub const VIP_NOT_MEASURED: &str = "not measured: services not in this build (a TCP connection \
     to the VIP fails: the datapath does not balance it)";

// ---- Maglev disruption -----------------------------------------------------------

/// The disruption when one of `backends` leaves.
#[derive(Debug, Clone)]
pub struct Disruption {
    pub backends: usize,
    pub flows: usize,
    /// Removals tried (each one member).
    pub removals: usize,
    /// Fraction of flows that changed backend: worst and mean over the
    /// removals.
    pub worst: f64,
    pub mean: f64,
    /// Flows that changed backend although theirs stayed: worst fraction.
    pub worst_collateral: f64,
}

impl Disruption {
    /// The goal: at most 1/N + 1% of the flows move.
    pub fn goal(&self) -> f64 {
        1.0 / self.backends as f64 + 0.01
    }

    pub fn json(&self) -> Value {
        json!({
            "backends": self.backends, "flows": self.flows, "removals": self.removals,
            "worst": self.worst, "mean": self.mean, "worst_collateral": self.worst_collateral,
            "goal": self.goal(),
        })
    }
}

/// Member `i`'s address: hosts of zone 10.1.0.0/16, 200 per host.
fn member_addr(i: usize) -> u32 {
    u32::from(Ipv4Addr::new(
        10,
        1,
        (i / 200 + 1) as u8,
        (i % 200 + 2) as u8,
    ))
}

/// Measures the disruption for `n` backends over `flows` random flows.
pub fn disruption(n: usize, flows: usize) -> Disruption {
    assert!((1..=MAX_BACKENDS).contains(&n));
    let mut members = [0u32; MAX_BACKENDS];
    for (i, m) in members.iter_mut().enumerate().take(n) {
        *m = member_addr(i);
    }
    let all: u128 = if n == 128 { u128::MAX } else { (1 << n) - 1 };
    let mut before = Box::new([NO_MEMBER; MAGLEV_SLOTS]);
    populate(&members, all, &mut before);
    // Clients anywhere in the zone towards one VIP and port, random
    // ephemeral ports: the flow hash the programs compute.
    let mut rng = Rng(0x6d61_676c_6576 ^ n as u64);
    let vip = u32::from(Ipv4Addr::new(10, 1, 0, 7));
    let keys: Vec<ConnKey> = (0..flows)
        .map(|_| ConnKey {
            src: u32::from(Ipv4Addr::new(
                10,
                1,
                1 + rng.below(200) as u8,
                2 + rng.below(250) as u8,
            )),
            dst: vip,
            src_port: 32768 + rng.below(28232) as u16,
            dst_port: 80,
            protocol: PROTO_TCP,
            _pad: [0; 3],
        })
        .collect();
    let slots: Vec<usize> = keys.iter().map(slot_of).collect();
    let removed: Vec<usize> = if n <= 16 {
        (0..n).collect()
    } else {
        (0..16).map(|k| k * n / 16).collect()
    };
    let mut after = Box::new([NO_MEMBER; MAGLEV_SLOTS]);
    let (mut worst, mut sum, mut worst_collateral) = (0f64, 0f64, 0f64);
    for &gone in &removed {
        populate(&members, all & !(1u128 << gone), &mut after);
        let (mut moved, mut collateral) = (0usize, 0usize);
        for &s in &slots {
            if before[s] != after[s] {
                moved += 1;
                if usize::from(before[s]) != gone {
                    collateral += 1;
                }
            }
        }
        let f = moved as f64 / flows as f64;
        worst = worst.max(f);
        sum += f;
        worst_collateral = worst_collateral.max(collateral as f64 / flows as f64);
    }
    Disruption {
        backends: n,
        flows,
        removals: removed.len(),
        worst,
        mean: sum / removed.len() as f64,
        worst_collateral,
    }
}

// ---- Disruption through the programs ----------------------------------------------

/// The disruption as `from_container` balances (BPF_PROG_TEST_RUN), for
/// one of `backends` leaving.
#[derive(Debug, Clone)]
pub struct ProgramDisruption {
    pub backends: usize,
    pub flows: usize,
    pub removals: usize,
    /// New flows (no `SERVICE_FLOWS` entry) that go to another backend
    /// once one is unhealthy: the table's disruption as the programs see
    /// it. Worst over the removals.
    pub new_flows_moved: f64,
    /// Open flows (their entries in `SERVICE_FLOWS`) whose backend changed
    /// when one was *removed* from the service: its own flows must move,
    /// nobody else's. Worst over the removals.
    pub open_flows_moved: f64,
    /// Of those, flows whose backend stayed a member.
    pub open_collateral: f64,
    /// New flows that went where the Maglev table (`populate`, `slot_of`)
    /// says: the programs balance exactly as the table-level measurement
    /// assumes. Lowest over the phases.
    pub agree: f64,
}

impl ProgramDisruption {
    pub fn goal(&self) -> f64 {
        1.0 / self.backends as f64 + 0.01
    }

    pub fn json(&self) -> Value {
        json!({
            "backends": self.backends, "flows": self.flows, "removals": self.removals,
            "new_flows_moved": self.new_flows_moved, "open_flows_moved": self.open_flows_moved,
            "open_collateral": self.open_collateral, "agree": self.agree, "goal": self.goal(),
        })
    }
}

const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 10);
const CLIENT_OCTET: u8 = 10;
const PROG_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Backend `i` of the program runs: on hosts 2.. of the zone.
fn program_member(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, (2 + i / 200) as u8, (i % 200 + 2) as u8)
}

/// A datapath for one client port (`ifindex`) and a service over `n`
/// remote backends with `healthy` (bit per member; a member with address 0
/// is not one).
fn program_datapath(
    ifindex: u32,
    members: &[u32; MAX_BACKENDS],
    healthy: u128,
) -> Result<Datapath> {
    use netfabric_common::HostConfig;
    let mut dp = Datapath::load(&netfabric::datapath::LoadOptions::default())
        .context("loading the datapath")?;
    dp.set_host(&HostConfig {
        zone_prefix: u32::from(Ipv4Addr::new(10, 1, 0, 0)),
        zone_slot: 0,
        host_octet: 1,
        uplink_ifindex: 1,
        uplink_mac: PROG_MAC,
        gateway_mac: PROG_MAC,
        zone_router_mac: PROG_MAC,
        flags: 0,
    })?;
    dp.set_zone(Ipv4Addr::new(10, 1, 0, 0), 0)?;
    let bloom = netfabric_common::policy::groups_bloom([]);
    dp.set_endpoint_groups(0, CLIENT_ADDR, SYSTEM_OWNER, bloom)?;
    dp.set_local_port(CLIENT_OCTET, ifindex, PROG_MAC)?;
    for h in 2..=3u8 {
        dp.set_next_hop(0, h, PROG_MAC, Ipv4Addr::new(172, 31, 0, h))?;
    }
    for &m in members.iter().filter(|&&m| m != 0) {
        dp.set_endpoint_groups(0, Ipv4Addr::from(m), SYSTEM_OWNER, bloom | SERVICE_BACKEND)?;
    }
    dp.set_service_port(
        ServicePortKey {
            vip: u32::from(VIP),
            port: 80,
            protocol: PROTO_TCP,
            _pad: 0,
        },
        ServicePort {
            service: service_id(0, u32::from(VIP)),
            owner: SYSTEM_OWNER,
            target_port: 80,
            _pad: [0; 6],
        },
    )?;
    dp.set_service_table(
        service_id(0, u32::from(VIP)),
        &ServiceMembers {
            members: *members,
            healthy,
        },
    )?;
    Ok(dp)
}

/// The backend `from_container` sends the client's packet from `sport` to
/// (`None`: the VIP was not translated).
fn balanced(dp: &mut Datapath, ifindex: u32, sport: u16, flags: u8) -> Result<Option<u32>> {
    use crate::packets::{Ipv4Frame, Transport, with_transport};
    let frame = Ipv4Frame::new(PROG_MAC, PROG_MAC, CLIENT_ADDR, VIP)
        .payload(20)
        .build();
    let frame = with_transport(
        frame,
        Transport::Tcp {
            sport,
            dport: 80,
            flags,
        },
    );
    let out = dp.test_run_tc(netfabric::datapath::PROG_FROM_CONTAINER, &frame, ifindex, 1)?;
    let Some(dst) = out.packet.get(30..34) else {
        bail!("from_container returned {} bytes", out.packet.len());
    };
    let dst = u32::from_be_bytes(dst.try_into().expect("4 bytes"));
    Ok((dst != u32::from(VIP)).then_some(dst))
}

/// Measures, through the programs, what one of `n` backends leaving does
/// to new flows (health) and to open flows (removal). `None` when the
/// programs do not balance services.
pub fn program_disruption(n: usize, flows: usize) -> Result<Option<ProgramDisruption>> {
    use crate::packets::{TCP_ACK, TCP_SYN};
    anyhow::ensure!(
        flows <= 50_000,
        "{flows} flows: one client has ports for 50,000"
    );
    crate::ensure_bpffs();
    let ns = crate::netns::Netns::new(&super::lab::name("nfbs"));
    ns.exec(&[
        "ip", "link", "add", "port", "type", "veth", "peer", "name", "peer",
    ]);
    let ifindex = ns.ifindex("port");
    let _inside = ns.enter();
    let mut members = [0u32; MAX_BACKENDS];
    for (i, m) in members.iter_mut().enumerate().take(n) {
        *m = u32::from(program_member(i));
    }
    let all: u128 = if n == 128 { u128::MAX } else { (1 << n) - 1 };
    let sports: Vec<u16> = (0..flows).map(|i| 10_000 + i as u16).collect();
    let removed = [0, n / 2];
    let (mut new_moved, mut open_moved, mut open_collateral) = (0f64, 0f64, 0f64);
    let mut agree = 1f64;
    // Where the table over the `healthy` members sends each flow.
    let expected = |healthy: u128| -> Vec<u32> {
        let mut slots = Box::new([NO_MEMBER; MAGLEV_SLOTS]);
        populate(&members, healthy, &mut slots);
        sports
            .iter()
            .map(|&p| {
                let key = ConnKey {
                    src: u32::from(CLIENT_ADDR),
                    dst: u32::from(VIP),
                    src_port: p,
                    dst_port: 80,
                    protocol: PROTO_TCP,
                    _pad: [0; 3],
                };
                members[usize::from(slots[slot_of(&key)])]
            })
            .collect()
    };
    let agreeing = |got: &[u32], want: &[u32]| {
        got.iter().zip(want).filter(|(a, b)| a == b).count() as f64 / want.len() as f64
    };
    for &gone in &removed {
        // New flows, all healthy, then with `gone` unhealthy (fresh maps
        // each time: no flow entry remembers a backend).
        let mut before = Vec::with_capacity(flows);
        {
            let mut dp = program_datapath(ifindex, &members, all)?;
            for &p in &sports {
                match balanced(&mut dp, ifindex, p, TCP_SYN)? {
                    Some(b) => before.push(b),
                    None => return Ok(None),
                }
            }
        }
        agree = agree.min(agreeing(&before, &expected(all)));
        {
            let healthy = all & !(1 << gone);
            let mut dp = program_datapath(ifindex, &members, healthy)?;
            let mut after = Vec::with_capacity(flows);
            for &p in &sports {
                after.push(balanced(&mut dp, ifindex, p, TCP_SYN)?.unwrap_or(0));
            }
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
            new_moved = new_moved.max(moved as f64 / flows as f64);
            agree = agree.min(agreeing(&after, &expected(healthy)));
        }
        // Open flows: opened with every member, then `gone` leaves the
        // service (its address no longer a member) and every flow sends
        // its next packet.
        let mut dp = program_datapath(ifindex, &members, all)?;
        let mut opened = Vec::with_capacity(flows);
        for &p in &sports {
            opened.push(balanced(&mut dp, ifindex, p, TCP_SYN)?.context("balanced before")?);
        }
        let mut fewer = members;
        fewer[gone] = 0;
        dp.set_service_table(
            service_id(0, u32::from(VIP)),
            &ServiceMembers {
                members: fewer,
                healthy: all & !(1 << gone),
            },
        )?;
        let (mut moved, mut collateral) = (0, 0);
        for (&p, &b) in sports.iter().zip(&opened) {
            if balanced(&mut dp, ifindex, p, TCP_ACK)? != Some(b) {
                moved += 1;
                if b != members[gone] {
                    collateral += 1;
                }
            }
        }
        open_moved = open_moved.max(moved as f64 / flows as f64);
        open_collateral = open_collateral.max(collateral as f64 / flows as f64);
    }
    Ok(Some(ProgramDisruption {
        backends: n,
        flows,
        removals: removed.len(),
        new_flows_moved: new_moved,
        open_flows_moved: open_moved,
        open_collateral,
        agree,
    }))
}

// ---- HTTP: direct, haproxy, VIP --------------------------------------------------

/// The client, the backends (two per host) and haproxy's container.
const CLIENT: (u8, u8) = (1, 1);
const BACKENDS: [(u8, u8); 4] = [(1, 2), (1, 3), (2, 2), (2, 3)];
/// The direct row's backend: on the other host than the client (half of
/// the VIP's flows cross hosts too, and haproxy's at least once).
const DIRECT: (u8, u8) = (2, 2);
const HAPROXY: (u8, u8) = (2, 10);
/// The service's VIP (zone 10.1.0.0/16's service range, host octet 0),
/// over the four backends.
const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 80);
/// A second service whose only backend is [`DIRECT`]: the VIP's own cost
/// against going direct to the same backend.
const VIP_ONE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 81);
const HTTP_PORT: &str = "80";
/// The row of the one-backend service.
pub const VIP_ONE_ROW: &str = "VIP, one backend";
/// wrk's connections and threads.
const CONNECTIONS: u32 = 32;
const THREADS: u32 = 2;

/// One row's runs.
#[derive(Debug, Clone)]
pub struct HttpRow {
    pub path: &'static str,
    /// Requests per second.
    pub rps: Stats,
    /// Latency percentiles in microseconds (median over the runs).
    pub p50_us: Stats,
    pub p99_us: Stats,
    pub errors: u64,
    /// Requests per second of each round, in order.
    pub per_round: Vec<f64>,
}

/// `a`'s requests per second over `b`'s, round by round (the rows of one
/// round ran back to back): median and spread.
pub fn round_ratio(a: &HttpRow, b: &HttpRow) -> Stats {
    let ratios: Vec<f64> = a
        .per_round
        .iter()
        .zip(&b.per_round)
        .map(|(x, y)| x / y)
        .collect();
    Stats::of(&ratios)
}

impl HttpRow {
    fn json(&self) -> Value {
        json!({
            "path": self.path, "rps": self.rps.json(), "p50_us": self.p50_us.json(),
            "p99_us": self.p99_us.json(), "errors": self.errors, "per_round": self.per_round,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ServicesBench {
    pub disruption: Vec<Disruption>,
    /// Through the programs; empty when they do not balance services.
    pub program_disruption: Vec<ProgramDisruption>,
    /// Why `program_disruption` is empty, when it is.
    pub program_skipped: Option<String>,
    pub seconds: u32,
    pub rows: Vec<HttpRow>,
    /// Why the VIP row is missing, when it is.
    pub vip_skipped: Option<&'static str>,
    /// A setup failure of the HTTP part (wrk, nginx or haproxy missing...).
    pub http_error: Option<String>,
}

impl ServicesBench {
    pub fn row(&self, path: &str) -> Option<&HttpRow> {
        self.rows.iter().find(|r| r.path == path)
    }

    pub fn json(&self) -> Value {
        json!({
            "disruption": self.disruption.iter().map(Disruption::json).collect::<Vec<_>>(),
            "program_disruption": self
                .program_disruption
                .iter()
                .map(ProgramDisruption::json)
                .collect::<Vec<_>>(),
            "program_skipped": self.program_skipped,
            "seconds_per_run": self.seconds,
            "connections": CONNECTIONS,
            "rows": self.rows.iter().map(HttpRow::json).collect::<Vec<_>>(),
            "vip_skipped": self.vip_skipped,
            "http_error": self.http_error,
        })
    }
}

/// One wrk run: requests per second, p50 and p99 in µs, errors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkRun {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: u64,
}

/// `1.23ms`, `456.78us`, `1.20s` → µs.
fn wrk_duration_us(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix("m") {
        (v, 60e6)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        return None;
    };
    Some(num.parse::<f64>().ok()? * scale)
}

/// Parses `wrk --latency`'s output.
pub fn parse_wrk(out: &str) -> Option<WrkRun> {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let pct = |p: &str| {
        out.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == p).then_some(())?;
            wrk_duration_us(w.next()?)
        })
    };
    // `Non-2xx or 3xx responses: N` and `Socket errors: connect A, read B,
    // write C, timeout D`.
    let mut errors = 0u64;
    for l in out.lines().map(str::trim) {
        if let Some(n) = l.strip_prefix("Non-2xx or 3xx responses:") {
            errors += n.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(rest) = l.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(WrkRun {
        rps,
        p50_us: pct("50%")?,
        p99_us: pct("99%")?,
        errors,
    })
}

fn nginx_conf(dir: &Path, ip: Ipv4Addr) -> Result<std::path::PathBuf> {
    let tmp = dir.join(format!("nginx-{ip}"));
    std::fs::create_dir_all(&tmp)?;
    let t = tmp.display();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 2;\npid {t}/nginx.pid;\n\
         error_log {t}/error.log error;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n\
           client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n\
           fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n\
           server {{\n    listen {ip}:{HTTP_PORT};\n\
             location / {{ default_type text/plain; return 200 \"ok\\n\"; }}\n  }}\n}}\n"
    );
    let path = tmp.join("nginx.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

fn haproxy_conf(dir: &Path, ip: Ipv4Addr, backends: &[Ipv4Addr]) -> Result<std::path::PathBuf> {
    let mut conf = format!(
        "global\n  maxconn 4096\n  nbthread 2\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
         frontend fe\n  bind {ip}:{HTTP_PORT}\n  default_backend be\n\
         backend be\n  balance roundrobin\n"
    );
    for (i, b) in backends.iter().enumerate() {
        conf += &format!("  server b{i} {b}:{HTTP_PORT}\n");
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf)?;
    Ok(path)
}

/// Programs the service on one host's datapath as the agent would: the VIP
/// port, the members' table (all healthy), the members' `SERVICE_BACKEND`
/// flag.
fn program_service(dp: &mut Datapath, vip: Ipv4Addr, backends: &[Ipv4Addr]) -> Result<()> {
    let id = service_id(0, u32::from(vip));
    dp.set_service_port(
        ServicePortKey {
            vip: u32::from(vip),
            port: 80,
            protocol: PROTO_TCP,
            _pad: 0,
        },
        ServicePort {
            service: id,
            owner: SYSTEM_OWNER,
            target_port: 80,
            _pad: [0; 6],
        },
    )?;
    let mut members = ServiceMembers::default();
    for (i, b) in backends.iter().enumerate() {
        members.members[i] = u32::from(*b);
        members.healthy |= 1 << i;
    }
    dp.set_service_table(id, &members)?;
    for &b in backends {
        let e = dp.endpoint(0, b)?;
        if e.groups & SERVICE_BACKEND != 0 {
            continue;
        }
        Endpoints::set(
            dp,
            EndpointKey::of(0, b),
            Endpoint {
                owner: e.owner,
                groups: e.groups | SERVICE_BACKEND,
            },
        )?;
    }
    Ok(())
}

/// Whether the client can open a TCP connection to both VIPs.
fn vips_answer(lab: &Lab) -> bool {
    let client = &lab.container(CLIENT).ns;
    [VIP, VIP_ONE].iter().all(|vip| {
        client
            .try_exec(&["nc", "-z", "-w", "2", &vip.to_string(), HTTP_PORT])
            .status
            .success()
    })
}

fn wrk(lab: &Lab, to: Ipv4Addr, seconds: u32) -> Result<WrkRun> {
    let client = &lab.container(CLIENT).ns;
    let out = client.try_exec(&[
        "wrk",
        &format!("-t{THREADS}"),
        &format!("-c{CONNECTIONS}"),
        &format!("-d{seconds}s"),
        "--latency",
        &format!("http://{to}:{HTTP_PORT}/"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).with_context(|| {
        format!(
            "no result from wrk to {to}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn require(tool: &str, package: &str) -> Result<()> {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        bail!("{tool} not found: install the Debian package {package} (cargo xtask setup)");
    }
    Ok(())
}

#[derive(Default)]
struct Runs(Vec<WrkRun>);

impl Runs {
    fn row(&self, path: &'static str) -> HttpRow {
        let pick = |f: fn(&WrkRun) -> f64| Stats::of(&self.0.iter().map(f).collect::<Vec<_>>());
        HttpRow {
            path,
            rps: pick(|r| r.rps),
            p50_us: pick(|r| r.p50_us),
            p99_us: pick(|r| r.p99_us),
            errors: self.0.iter().map(|r| r.errors).sum(),
            per_round: self.0.iter().map(|r| r.rps).collect(),
        }
    }
}

/// The HTTP rows, and why the VIP row is missing when it is.
fn http(settings: &Settings, seconds: u32) -> Result<(Vec<HttpRow>, Option<&'static str>)> {
    require("wrk", "wrk")?;
    require("nginx", "nginx-light")?;
    require("haproxy", "haproxy")?;
    let mut wanted = vec![CLIENT, HAPROXY];
    wanted.extend(BACKENDS);
    let lab = Lab::build_containers(Plumbing::Netfabric, &wanted);
    let ips: Vec<Ipv4Addr> = lab.containers.iter().map(|c| c.ip).collect();
    let mut applied = e2e::apply(&lab, Peer::NetfabricNoPolicy, &e2e::no_policy(&ips))?;
    let dir = out_dir().join("services");
    std::fs::create_dir_all(&dir)?;
    let mut servers: Vec<Server> = Vec::new();
    let backend_ips: Vec<Ipv4Addr> = BACKENDS.iter().map(|&b| lab.container(b).ip).collect();
    for dp in &mut applied.datapaths {
        program_service(dp, VIP, &backend_ips)?;
        program_service(dp, VIP_ONE, &[lab.container(DIRECT).ip])?;
    }
    for &b in &BACKENDS {
        let c = lab.container(b);
        let conf = nginx_conf(&dir, c.ip)?;
        let conf = conf.to_str().context("a UTF-8 path")?;
        servers.push(serve(&c.ns, &["nginx", "-c", conf], HTTP_PORT)?);
    }
    let proxy = lab.container(HAPROXY);
    let conf = haproxy_conf(&dir, proxy.ip, &backend_ips)?;
    let conf = conf.to_str().context("a UTF-8 path")?;
    servers.push(serve(
        &proxy.ns,
        &["haproxy", "-db", "-f", conf],
        HTTP_PORT,
    )?);

    let vip = vips_answer(&lab);
    let direct_ip = lab.container(DIRECT).ip;
    // (row, address): direct and the one-backend VIP go to the same
    // backend; haproxy and the VIP spread over all four.
    let mut paths = vec![("direct", direct_ip)];
    if vip {
        paths.push((VIP_ONE_ROW, VIP_ONE));
    }
    paths.push(("haproxy", proxy.ip));
    if vip {
        paths.push(("VIP", VIP));
    }
    let mut runs: Vec<Runs> = paths.iter().map(|_| Runs::default()).collect();
    // Warm-up: connections, ARP, the JIT's and caches' first touches.
    for &(_, to) in &paths {
        wrk(&lab, to, 1)?;
    }
    for _ in 0..settings.reps {
        for (i, &(_, to)) in paths.iter().enumerate() {
            runs[i].0.push(wrk(&lab, to, seconds)?);
        }
    }
    drop(servers);
    let rows = paths
        .iter()
        .zip(&runs)
        .map(|(&(path, _), r)| r.row(path))
        .collect();
    Ok((rows, (!vip).then_some(VIP_NOT_MEASURED)))
}

pub fn run(settings: &Settings) -> Result<ServicesBench> {
    let flows = if settings.quick { 200_000 } else { 1_000_000 };
    let disruption = [4, 16, 100]
        .into_iter()
        .map(|n| disruption(n, flows))
        .collect();
    let program_flows = if settings.quick { 8_000 } else { 30_000 };
    let mut program = Vec::new();
    let mut program_skipped = None;
    for n in [4, 16, 100] {
        match program_disruption(n, program_flows) {
            Ok(Some(d)) => program.push(d),
            Ok(None) => {
                program_skipped = Some(
                    "not measured: services not in this build (from_container does not \
                     translate the VIP)"
                        .to_owned(),
                );
                break;
            }
            Err(e) => {
                eprintln!("bench: services: disruption through the programs failed: {e:#}");
                program_skipped = Some(format!("failed: {e:#}"));
                break;
            }
        }
    }
    let seconds = if settings.quick { 3 } else { 5 };
    let (rows, vip_skipped, http_error) = match http(settings, seconds) {
        Ok((rows, skipped)) => (rows, skipped, None),
        Err(e) => {
            eprintln!("bench: services: the HTTP part failed: {e:#}");
            (Vec::new(), None, Some(format!("{e:#}")))
        }
    };
    Ok(ServicesBench {
        disruption,
        program_disruption: program,
        program_skipped,
        seconds,
        rows,
        vip_skipped,
        http_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_parses() {
        let out = "Running 5s test @ http://10.1.2.2:80/\n  2 threads and 32 connections\n\
  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.02ms  300.00us   9.00ms   80.00%\n\
  Latency Distribution\n     50%  812.00us\n     75%    1.10ms\n     90%    1.50ms\n     99%    2.31ms\n\
  150000 requests in 5.00s, 20.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
  Non-2xx or 3xx responses: 4\nRequests/sec:  29999.50\nTransfer/sec:      4.00MB\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.rps, 29999.5);
        assert_eq!(r.p50_us, 812.0);
        assert!((r.p99_us - 2310.0).abs() < 1e-6);
        assert_eq!(r.errors, 7);
        assert!(parse_wrk("unable to connect").is_none());
    }

    #[test]
    fn disruption_moves_about_the_leaving_backends_share() {
        let d = disruption(4, 50_000);
        assert_eq!(d.removals, 4);
        // The removed backend's flows (about 1/4) always move.
        assert!(d.mean > 0.2 && d.worst <= 0.5, "{d:?}");
        assert!(d.worst_collateral <= d.worst);
    }
}
