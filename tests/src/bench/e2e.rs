//! End to end through namespaces: packets per second from one container to
//! another on a different host and on the same host, TCP throughput
//! (iperf3, one stream) and request/response latency (`sockperf`
//! ping-pong, p50 and p99), for plain routing without policy (the
//! baseline), the strongest peers without policy (routed veths, host to
//! host, netfabric with policy out of the way), netfabric, and the peers
//! enforcing the same owner policy: iptables per-pair ACCEPT rules in
//! FORWARD with a final DROP (legacy and nft backends), nftables with a
//! concatenated `ip saddr . ip daddr` set; at 10, 1,000 and 10,000 owners.
//!
//! Traffic: the eBPF object's `bench_gen` run with BPF_PROG_TEST_RUN and the
//! XDP live-frames flag inside the sending container (`XDP_TX` out of its
//! `eth0`), each frame rewritten from a template with a varying UDP source
//! port; counted and dropped in the receiving container by `bench_sink`
//! (XDP on `eth0`) or `bench_sink_tc` (TC ingress on `eth0`, for what skips
//! the veth XDP hook: netfabric's `bpf_redirect_peer`, on the same host and
//! from the uplink). The
//! receiver's own stack is never measured. A fresh [`Lab`] per
//! configuration, so nothing (netfilter tables, conntrack, neighbours) leaks
//! from one peer into the next.

use std::{
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, IterableMap as _, PerCpuArray},
    programs::{
        SchedClassifier, TcAttachType, TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode,
    },
};
use netfabric::{
    agent::plan::{Blooms, DesiredMap as _, EndpointKey, Endpoints},
    datapath::{BENCH_OBJECT, Datapath, LoadOptions, batch},
};
use netfabric_common::{
    Endpoint, HostConfig,
    conntrack::{PROTO_TCP, PROTO_UDP, PortRule, PortScope, ScopedPair},
    policy::INGRESS_SCOPED,
};
use serde_json::{Value, json};

use super::{
    Rng, Settings, Stats,
    lab::{
        LOCAL_RECEIVER, Lab, LabContainer, Plumbing, REMOTE_RECEIVER, SENDER, underlay_ip,
        uplink_mac,
    },
};
use crate::{
    netns::{Netns, sh},
    topology::{CONTAINER_IFNAME, UPLINK, gateway_mac},
};

/// UDP destination port of the generated frames (`BENCH_UDP_PORT` in
/// `netfabric-ebpf/src/bench.rs`).
pub const BENCH_UDP_PORT: u16 = 9;
const FRAME_LEN: usize = 64;
/// Frames per live-frames batch (the kernel flushes redirects per batch).
const BATCH: u32 = 64;
/// Frames per BPF_PROG_TEST_RUN call: adapted to take about `CALL_TIME`.
const MIN_CHUNK: u32 = 1024;
const MAX_CHUNK: u32 = 1 << 22;
const CALL_TIME: Duration = Duration::from_millis(100);
/// Generator threads, all on one CPU (see [`generate`]).
const GEN_THREADS: usize = 2;
const GEN_CPU: usize = 0;
const IPERF_PORT: &str = "5201";
const SOCKPERF_PORT: &str = "11111";
/// Both ends of a round trip run on this CPU: on two cores, whether the
/// scheduler puts them on one CPU or two (a wake-up across CPUs costs tens
/// of µs in a VM) otherwise decides the figure more than the path does.
const RR_CPU: &str = "1";

/// Owner counts the policy peers and netfabric are measured at.
pub const OWNER_COUNTS: [u32; 3] = [10, 1_000, 10_000];
/// `--quick` leaves the middle count out: with the peers without policy,
/// every count costs one lab per policy peer, and `--quick` has to stay
/// under 3 minutes.
pub const QUICK_OWNER_COUNTS: [u32; 2] = [10, 10_000];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Plain kernel routing, no policy (flannel host-gw): the baseline.
    Plain,
    /// Calico without eBPF ([`Plumbing::RoutedVeths`]), no policy.
    RoutedVeths,
    /// The two hosts' underlay namespaces talking directly, no containers:
    /// the machine's limit for one flow. TCP and latency only.
    HostToHost,
    /// Netfabric's datapath with the policy out of the way: the three lab
    /// containers are the zone's only endpoints, all of the system owner
    /// (see [`apply`]).
    NetfabricNoPolicy,
    Netfabric,
    /// Netfabric with connection tracking on every packet of the measured
    /// flows: the measured owner narrowed its own containers to the
    /// measured ports (a security group `--own`), so each packet is judged
    /// against that scope and tracked on the sending and the receiving host
    /// (`conntrack::track_scoped`; the generator's varying source ports
    /// make tens of thousands of connections), and every reply passes as
    /// the reply of a tracked connection. Measured at the largest owner
    /// count only, against [`Peer::Netfabric`] there.
    NetfabricTracked,
    IptablesLegacy,
    IptablesNft,
    Nftables,
}

impl Peer {
    pub const ALL: [Peer; 9] = [
        Peer::Plain,
        Peer::RoutedVeths,
        Peer::HostToHost,
        Peer::NetfabricNoPolicy,
        Peer::Netfabric,
        Peer::NetfabricTracked,
        Peer::IptablesLegacy,
        Peer::IptablesNft,
        Peer::Nftables,
    ];

    /// Has an owner policy (the others have none, and are measured once).
    pub fn has_owners(self) -> bool {
        self.at_every_owner_count() || self == Peer::NetfabricTracked
    }

    /// Measured at every owner count ([`Peer::NetfabricTracked`] only at
    /// the largest).
    pub fn at_every_owner_count(self) -> bool {
        matches!(
            self,
            Peer::Netfabric | Peer::IptablesLegacy | Peer::IptablesNft | Peer::Nftables
        )
    }

    pub fn plumbing(self) -> Plumbing {
        match self {
            Peer::RoutedVeths | Peer::HostToHost => Plumbing::RoutedVeths,
            _ => Plumbing::Netfabric,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Peer::Plain => "plain routing (host-gw, no policy, lab plumbing)",
            Peer::RoutedVeths => "routed veths (Calico-style, no policy, default offloads)",
            Peer::HostToHost => "host to host (underlay, no containers, default offloads)",
            Peer::NetfabricNoPolicy => "netfabric, policy out of the way (system owner only)",
            Peer::Netfabric => "netfabric",
            Peer::NetfabricTracked => "netfabric, every measured packet tracked (own scope)",
            Peer::IptablesLegacy => "iptables-legacy per-pair rules",
            Peer::IptablesNft => "iptables-nft per-pair rules",
            Peer::Nftables => "nftables concatenated set",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Peer::Plain => "plain",
            Peer::RoutedVeths => "routed-veths",
            Peer::HostToHost => "host-to-host",
            Peer::NetfabricNoPolicy => "netfabric-no-policy",
            Peer::Netfabric => "netfabric",
            Peer::NetfabricTracked => "netfabric-tracked",
            Peer::IptablesLegacy => "iptables-legacy",
            Peer::IptablesNft => "iptables-nft",
            Peer::Nftables => "nftables",
        }
    }
}

// ---- the owner policy -----------------------------------------------------------

/// The same owner policy for every peer: `owners` owners; the measured one
/// holds the lab's three containers, every other one two synthetic
/// containers elsewhere in the zone; containers of one owner may talk.
pub struct Policy {
    pub owners: u32,
    /// Every container and its owner.
    pub endpoints: Vec<(Ipv4Addr, u32)>,
    /// Allowed (source, destination) pairs, in owner order: the measured
    /// owner's pairs sit in the middle (an average allowed flow for the
    /// linear iptables scan).
    pub allowed: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Owner pairs sharing a group (netfabric's `GROUP_PAIRS`; none of them
    /// involves the measured owner, and the peers' rule sets do not need
    /// them: the measured flow is a same-owner flow).
    pub group_pairs: Vec<(u32, u32)>,
}

/// Synthetic container `i`: hosts 3.. of the zone, 254 per host.
fn synthetic(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 3 + (i / 254) as u8, 1 + (i % 254) as u8)
}

pub fn policy(owners: u32, real: &[Ipv4Addr]) -> Policy {
    let measured = owners / 2;
    let mut endpoints = Vec::new();
    let mut allowed = Vec::new();
    let mut next = 0u32;
    for k in 0..owners {
        let owner = 100 + k;
        let members: Vec<Ipv4Addr> = if k == measured {
            real.to_vec()
        } else {
            next += 2;
            vec![synthetic(next - 2), synthetic(next - 1)]
        };
        for &a in &members {
            endpoints.push((a, owner));
            for &b in &members {
                if a != b {
                    allowed.push((a, b));
                }
            }
        }
    }
    // Groups among the other owners: one per 10 owners, 5 members each.
    let mut rng = Rng(0x6772_6f75_7073 ^ u64::from(owners));
    let mut group_pairs = std::collections::BTreeSet::new();
    for _ in 0..owners / 10 {
        let members: Vec<u32> = (0..5)
            .map(|_| 100 + rng.below(owners.into()) as u32)
            .filter(|&o| o != 100 + measured)
            .collect();
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                if a != b {
                    group_pairs.insert((*a.min(b), *a.max(b)));
                }
            }
        }
    }
    Policy {
        owners,
        endpoints,
        allowed,
        group_pairs: group_pairs.into_iter().collect(),
    }
}

/// `iptables-restore` input: one ACCEPT rule per allowed pair in FORWARD,
/// then a final DROP.
pub fn iptables_rules(p: &Policy) -> String {
    let mut s = String::with_capacity(p.allowed.len() * 56 + 128);
    s.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for (a, b) in &p.allowed {
        s.push_str(&format!("-A FORWARD -s {a}/32 -d {b}/32 -j ACCEPT\n"));
    }
    s.push_str("-A FORWARD -j DROP\nCOMMIT\n");
    s
}

/// `nft -f` input: a set of allowed `saddr . daddr` pairs, one lookup in
/// the forward hook, then drop.
pub fn nft_rules(p: &Policy) -> String {
    let mut s = String::with_capacity(p.allowed.len() * 32 + 256);
    s.push_str("table ip nfbench {\n  set allowed {\n    type ipv4_addr . ipv4_addr\n");
    s.push_str("    elements = {\n");
    for (i, (a, b)) in p.allowed.iter().enumerate() {
        let sep = if i + 1 == p.allowed.len() { "" } else { "," };
        s.push_str(&format!("      {a} . {b}{sep}\n"));
    }
    s.push_str("    }\n  }\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    s.push_str("    ip saddr . ip daddr @allowed accept\n    drop\n  }\n}\n");
    s
}

/// Run `args` inside `ns` with `input` on stdin.
fn exec_stdin(ns: &Netns, args: &[&str], input: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {args:?}"))?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{args:?} in {} failed: {}",
            ns.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// What a peer left attached (netfabric's datapaths: dropping them
/// detaches the programs). Rules live in the lab's namespaces.
pub struct Applied {
    pub datapaths: Vec<Datapath>,
    /// Time to install the policy on both hosts.
    pub install: Duration,
    /// Rules or set elements (or map entries) per host.
    pub entries: usize,
}

/// What `apply` installs for [`Peer::NetfabricNoPolicy`]: the lab's
/// containers, all of the system owner. The datapath cannot switch its
/// policy off, so this takes its cheapest decision: both owners are looked
/// up in `ENDPOINTS` (the same loads tell a vacant address from a
/// container, so they stay with policy off too) and the first comparison,
/// same owner, allows; no other endpoint, no group pair, so the maps touch
/// the fewest cache lines. The difference to [`Peer::Netfabric`] at N
/// owners is what a populated policy costs that flow.
pub fn no_policy(real: &[Ipv4Addr]) -> Policy {
    Policy {
        owners: 1,
        endpoints: real
            .iter()
            .map(|&ip| (ip, netfabric_common::SYSTEM_OWNER))
            .collect(),
        allowed: Vec::new(),
        group_pairs: Vec::new(),
    }
}

pub fn apply(lab: &Lab, peer: Peer, p: &Policy) -> Result<Applied> {
    let started = Instant::now();
    let mut datapaths = Vec::new();
    let entries = match peer {
        Peer::Plain | Peer::RoutedVeths | Peer::HostToHost => 0,
        Peer::Netfabric | Peer::NetfabricNoPolicy | Peer::NetfabricTracked => {
            let tracked = peer == Peer::NetfabricTracked;
            for host in &lab.hosts {
                datapaths.push(netfabric_host(lab, host.octet, p, tracked)?);
            }
            p.endpoints.len() + p.group_pairs.len() + usize::from(tracked)
        }
        Peer::IptablesLegacy | Peer::IptablesNft => {
            let tool = if peer == Peer::IptablesLegacy {
                "iptables-legacy-restore"
            } else {
                "iptables-nft-restore"
            };
            let rules = iptables_rules(p);
            for host in &lab.hosts {
                exec_stdin(&host.ns, &[tool], &rules)?;
            }
            p.allowed.len() + 1
        }
        Peer::Nftables => {
            let rules = nft_rules(p);
            for host in &lab.hosts {
                exec_stdin(&host.ns, &["nft", "-f", "/dev/stdin"], &rules)?;
            }
            p.allowed.len()
        }
    };
    Ok(Applied {
        datapaths,
        install: started.elapsed(),
        entries,
    })
}

/// One host's datapath, filled like the agent would for `p`, attached to
/// the uplink (TC, and the XDP prefilter where the agent attaches it) and
/// the ports (TC). `tracked`: the measured owner (the lab containers')
/// narrowed its own containers to the measured ports
/// ([`Peer::NetfabricTracked`]).
fn netfabric_host(lab: &Lab, h: u8, p: &Policy, tracked: bool) -> Result<Datapath> {
    let host = lab.host(h);
    let mut dp = Datapath::load(&LoadOptions::default()).context("loading the datapath")?;
    let zone = Ipv4Addr::new(10, 1, 0, 0);
    dp.set_host(&HostConfig {
        zone_prefix: zone.into(),
        zone_slot: 0,
        host_octet: h.into(),
        uplink_ifindex: host.uplink_ifindex,
        uplink_mac: uplink_mac(h),
        gateway_mac: gateway_mac(h),
        zone_router_mac: [0; 6],
        flags: 0,
    })?;
    dp.set_zone(zone, 0)?;
    let mut max_host = 2u8;
    // The groups blooms the agent writes, each pair standing for one group.
    let blooms = Blooms::of_groups(
        p.group_pairs
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| (i as u32, [a, b])),
    );
    let measured = lab
        .containers
        .first()
        .and_then(|c| p.endpoints.iter().find(|(ip, _)| *ip == c.ip))
        .map(|&(_, owner)| owner);
    if tracked {
        let owner = measured.context("the lab's containers have no owner")?;
        let pair = ScopedPair {
            receiver: owner,
            sender: owner,
        };
        dp.set_port_scope(pair, measured_ports_scope())?;
    }
    for &(ip, owner) in &p.endpoints {
        let mut groups = blooms.of(owner);
        if tracked && Some(owner) == measured {
            groups |= INGRESS_SCOPED;
        }
        Endpoints::set(&mut dp, EndpointKey::of(0, ip), Endpoint { owner, groups })?;
        max_host = max_host.max(ip.octets()[2]);
    }
    for other in 1..=max_host {
        dp.set_next_hop(0, other, uplink_mac(other), underlay_ip(other))?;
    }
    for &(a, b) in &p.group_pairs {
        dp.set_group_pair(a, b, 1)?;
    }
    for c in lab.containers.iter().filter(|c| c.host == h) {
        dp.set_local_port(c.octet, c.port_ifindex, c.mac)?;
    }
    let _inside = host.ns.enter();
    // As the agent attaches them: delivery first, the prefilter only where
    // it pays (not on a veth).
    dp.attach_uplink_tc(UPLINK)?;
    if netfabric::agent::links::wants_prefilter(UPLINK)
        && let Err(e) = dp.attach_uplink(UPLINK, XdpMode::Driver)
    {
        eprintln!("bench: h{h}: native XDP on {UPLINK} failed ({e}); default mode");
        dp.attach_uplink(UPLINK, XdpMode::Default)?;
    }
    for c in lab.containers.iter().filter(|c| c.host == h) {
        dp.attach_port(&c.port)?;
    }
    Ok(dp)
}

/// What the measured owner leaves open to itself in
/// [`Peer::NetfabricTracked`]: the generator's UDP port, iperf3's and
/// sockperf's TCP ports. The other direction of each (to the clients'
/// ports) is closed, so every packet is tracked and every reply passes as
/// a tracked connection's.
fn measured_ports_scope() -> PortScope {
    let port = |protocol, p: u16| PortRule {
        first_port: p,
        last_port: p,
        protocol,
        _pad: [0; 3],
    };
    let mut scope = PortScope {
        count: 3,
        ..PortScope::default()
    };
    scope.rules[0] = port(PROTO_UDP, BENCH_UDP_PORT);
    scope.rules[1] = port(PROTO_TCP, IPERF_PORT.parse().expect("a port"));
    scope.rules[2] = port(PROTO_TCP, SOCKPERF_PORT.parse().expect("a port"));
    scope
}

// ---- generator and sink ---------------------------------------------------------

/// The bench programs of the eBPF object: generator and sinks.
pub struct Traffic {
    ebpf: Ebpf,
}

const GEN: &str = "bench_gen";
const SINK: &str = "bench_sink";
const SINK_TC: &str = "bench_sink_tc";

impl Traffic {
    pub fn load() -> Result<Traffic> {
        let mut ebpf = EbpfLoader::new()
            .load(BENCH_OBJECT)
            .context("loading the bench's eBPF object")?;
        for name in [GEN, SINK] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("no program {name}"))?
                .try_into()?;
            p.load()?;
        }
        let p: &mut SchedClassifier = ebpf
            .program_mut(SINK_TC)
            .context("no program bench_sink_tc")?
            .try_into()?;
        p.load()?;
        Ok(Traffic { ebpf })
    }

    /// Count and drop the generator's frames arriving on `dev` in `ns`:
    /// XDP, plus TC ingress when `tc` (for redirect_peer deliveries).
    pub fn attach_sink(&mut self, ns: &Netns, dev: &str, tc: bool) -> Result<()> {
        let _inside = ns.enter();
        let p: &mut Xdp = self.ebpf.program_mut(SINK).expect("sink").try_into()?;
        p.attach(dev, XdpMode::Driver)
            .with_context(|| format!("attaching the XDP sink to {dev} in {}", ns.name))?;
        if tc {
            let p: &mut SchedClassifier =
                self.ebpf.program_mut(SINK_TC).expect("sink").try_into()?;
            p.attach(dev, TcAttachType::Ingress)
                .with_context(|| format!("attaching the TC sink to {dev} in {}", ns.name))?;
        }
        Ok(())
    }

    fn received(&self) -> Result<u64> {
        let map = PerCpuArray::<_, u64>::try_from(self.ebpf.map("BENCH_RX").context("BENCH_RX")?)?;
        let raw = batch::read_array_range(map.map(), "BENCH_RX", 0, 1)?;
        anyhow::ensure!(raw.count == 1, "BENCH_RX has no slot 0");
        Ok(batch::sum_per_cpu_u64(raw.value(0), std::mem::size_of::<u64>())[0])
    }

    fn set_template(&mut self, frame: [u8; FRAME_LEN]) -> Result<()> {
        let mut map = Array::<_, [u8; FRAME_LEN]>::try_from(
            self.ebpf
                .map_mut("BENCH_TEMPLATE")
                .context("BENCH_TEMPLATE")?,
        )?;
        map.set(0, frame, 0)?;
        Ok(())
    }

    /// Generate from `from` towards `to` while sampling the receive counter:
    /// `reps` windows of `window` after a warm-up. Returns delivered pps per
    /// window and the offered (generated) rate.
    pub fn measure(
        &mut self,
        from: &Gen,
        to: Ipv4Addr,
        reps: usize,
        window: Duration,
    ) -> Result<(Vec<f64>, f64)> {
        self.set_template(template(from, to))?;
        let stop = AtomicBool::new(false);
        let sent = AtomicU64::new(0);
        let this = &*self;
        let gen_prog: &Xdp = this.ebpf.program(GEN).expect("gen").try_into()?;
        std::thread::scope(|s| -> Result<(Vec<f64>, f64)> {
            let workers: Vec<_> = (0..GEN_THREADS)
                .map(|_| s.spawn(|| generate(gen_prog, from, &stop, &sent)))
                .collect();
            let started = Instant::now();
            let result = (|| -> Result<Vec<f64>> {
                std::thread::sleep(window.min(Duration::from_millis(250)));
                let mut rates = Vec::new();
                for _ in 0..reps {
                    if workers.iter().any(|w| w.is_finished()) {
                        bail!("the generator stopped early");
                    }
                    let (c0, t0) = (this.received()?, Instant::now());
                    std::thread::sleep(window);
                    let (c1, t1) = (this.received()?, Instant::now());
                    rates.push((c1 - c0) as f64 / (t1 - t0).as_secs_f64());
                }
                Ok(rates)
            })();
            stop.store(true, Ordering::Relaxed);
            for w in workers {
                w.join().expect("generator thread")?;
            }
            let offered = sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
            Ok((result?, offered))
        })
    }
}

/// Where the generator runs: a container namespace and its interface.
pub struct Gen<'a> {
    pub ns: &'a Netns,
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Destination MAC of the frames: the container's gateway.
    pub gateway_mac: [u8; 6],
}

impl<'a> Gen<'a> {
    pub fn container(c: &'a LabContainer) -> Gen<'a> {
        Gen {
            ns: &c.ns,
            ifindex: c.eth0_ifindex,
            ip: c.ip,
            mac: c.mac,
            gateway_mac: gateway_mac(c.host),
        }
    }
}

/// Ethernet + IPv4 + UDP to [`BENCH_UDP_PORT`], 64 bytes, UDP checksum 0
/// (none: the generator varies the source port without fixing it up).
fn template(from: &Gen, to: Ipv4Addr) -> [u8; FRAME_LEN] {
    let builder = etherparse::PacketBuilder::ethernet2(from.mac, from.gateway_mac)
        .ipv4(from.ip.octets(), to.octets(), 64)
        .udp(1024, BENCH_UDP_PORT);
    let payload = [0u8; FRAME_LEN - 42];
    let mut out = Vec::with_capacity(FRAME_LEN);
    builder.write(&mut out, &payload).expect("building a frame");
    out[40..42].copy_from_slice(&[0, 0]);
    out.try_into().expect("64 bytes")
}

/// Pin the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One generator thread: XDP live frames out of `from.ifindex`, in calls
/// of about [`CALL_TIME`], until `stop`. Each BPF_PROG_TEST_RUN call pays a
/// fixed set-up/tear-down (a page pool, destroyed after an RCU grace period:
/// tens of ms of sleeping here), so [`GEN_THREADS`] threads pinned to one
/// CPU take turns: while one sleeps in its tear-down, another generates.
fn generate(prog: &Xdp, from: &Gen, stop: &AtomicBool, sent: &AtomicU64) -> Result<()> {
    pin_to(GEN_CPU);
    let _inside = from.ns.enter();
    let frame = [0u8; FRAME_LEN];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(FRAME_LEN as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&from.ifindex.to_ne_bytes());
    let mut chunk = MIN_CHUNK * 16;
    while !stop.load(Ordering::Relaxed) {
        let opts = TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            repeat: chunk,
            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
            ..TestRunOptions::new()
        };
        let started = Instant::now();
        prog.test_run(opts)
            .context("BPF_PROG_TEST_RUN with live frames")?;
        sent.fetch_add(u64::from(chunk), Ordering::Relaxed);
        let rate = f64::from(chunk) / started.elapsed().as_secs_f64().max(1e-6);
        chunk = ((rate * CALL_TIME.as_secs_f64()) as u32).clamp(MIN_CHUNK, MAX_CHUNK);
    }
    Ok(())
}

// ---- TCP and latency ------------------------------------------------------------

/// A server process in a namespace, killed on drop.
pub(crate) struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `args` in `ns` and wait until something listens on TCP `port`.
pub(crate) fn serve(ns: &Netns, args: &[&str], port: &str) -> Result<Server> {
    let server = Server(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {args:?}"))?,
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    let filter = format!("sport = :{port}");
    loop {
        let out = ns.try_exec(&["ss", "-Hltn", &filter]);
        if !out.stdout.is_empty() {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("{args:?} never listened in {}", ns.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One end of a TCP measurement: a namespace and the address served there.
#[derive(Clone, Copy)]
pub struct End<'a> {
    pub ns: &'a Netns,
    pub ip: Ipv4Addr,
}

impl<'a> End<'a> {
    pub fn container(c: &'a LabContainer) -> End<'a> {
        End {
            ns: &c.ns,
            ip: c.ip,
        }
    }
}

/// TCP throughput (Gbit/s) from `from` to `to`, one stream, `secs` each.
fn tcp(from: End, to: End, reps: usize, secs: u32) -> Result<Vec<f64>> {
    let _server = serve(to.ns, &["iperf3", "-s", "-p", IPERF_PORT], IPERF_PORT)?;
    let mut out = Vec::new();
    for _ in 0..reps {
        let res = from.ns.try_exec(&[
            "iperf3",
            "-c",
            &to.ip.to_string(),
            "-p",
            IPERF_PORT,
            "-t",
            &secs.to_string(),
            "-J",
        ]);
        let v: Value = serde_json::from_slice(&res.stdout)
            .with_context(|| format!("iperf3 output: {}", String::from_utf8_lossy(&res.stderr)))?;
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .with_context(|| format!("iperf3 result without throughput: {}", v["error"]))?;
        out.push(bps / 1e9);
    }
    Ok(out)
}

/// Round-trip percentiles of one `sockperf ping-pong` run, µs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundTrip {
    pub p50: f64,
    pub p99: f64,
}

/// The p50 and p99 lines of sockperf's summary
/// (`sockperf: ---> percentile 99.000 =   75.451`).
pub fn parse_sockperf(out: &str) -> Option<RoundTrip> {
    let pick = |pct: &str| {
        out.lines().find_map(|l| {
            let rest = l.split("---> percentile ").nth(1)?;
            let (p, v) = rest.split_once('=')?;
            (p.trim() == pct).then(|| v.trim().parse::<f64>().ok())?
        })
    };
    Some(RoundTrip {
        p50: pick("50.000")?,
        p99: pick("99.000")?,
    })
}

/// TCP request/response round trips from `from` to `to`: `sockperf
/// ping-pong` (one connection, 14-byte messages, one in flight, full round
/// trip, both ends pinned to [`RR_CPU`]), `reps` runs of `secs` (sockperf spends the first part of each on
/// warm-up).
fn ping_pong(from: End, to: End, reps: usize, secs: u32) -> Result<Vec<RoundTrip>> {
    let ip = to.ip.to_string();
    let _server = serve(
        to.ns,
        &[
            "taskset",
            "-c",
            RR_CPU,
            "sockperf",
            "server",
            "--tcp",
            "-i",
            &ip,
            "-p",
            SOCKPERF_PORT,
        ],
        SOCKPERF_PORT,
    )?;
    let mut out = Vec::new();
    for _ in 0..reps {
        let res = from.ns.try_exec(&[
            "taskset",
            "-c",
            RR_CPU,
            "sockperf",
            "ping-pong",
            "--tcp",
            "-i",
            &ip,
            "-p",
            SOCKPERF_PORT,
            "-t",
            &secs.to_string(),
            "--full-rtt",
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
        out.push(
            parse_sockperf(&text)
                .with_context(|| format!("sockperf ping-pong printed no percentiles: {text}"))?,
        );
    }
    Ok(out)
}

// ---- the run -------------------------------------------------------------------------

/// p50 and p99 round trip (µs) over repeated runs.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub p50: Stats,
    pub p99: Stats,
}

impl Latency {
    fn of(runs: &[RoundTrip]) -> Option<Latency> {
        (!runs.is_empty()).then(|| Latency {
            p50: Stats::of(&runs.iter().map(|r| r.p50).collect::<Vec<_>>()),
            p99: Stats::of(&runs.iter().map(|r| r.p99).collect::<Vec<_>>()),
        })
    }

    fn json(&self) -> Value {
        json!({ "p50_us": self.p50.json(), "p99_us": self.p99.json() })
    }
}

/// The raw samples of one configuration (pooled when it runs twice).
#[derive(Default)]
struct Samples {
    cross: Vec<f64>,
    same: Vec<f64>,
    tcp: Vec<f64>,
    rr_cross: Vec<RoundTrip>,
    rr_same: Vec<RoundTrip>,
}

/// One peer at one owner count.
pub struct Measured {
    pub peer: Peer,
    /// 0 for the peers without policy.
    pub owners: u32,
    pub entries: usize,
    pub install: Duration,
    /// Delivered packets per second, other host / same host (none for
    /// host to host: no containers).
    pub cross: Option<Stats>,
    pub same: Option<Stats>,
    /// Generated rate during the cross-host run.
    pub offered_cross: f64,
    /// TCP Gbit/s to the other host.
    pub tcp: Stats,
    /// Round trips to the other host, and on the same host (none for host
    /// to host).
    pub rr_cross: Latency,
    pub rr_same: Option<Latency>,
    samples: Samples,
}

impl Measured {
    fn from_samples(
        peer: Peer,
        owners: u32,
        applied: &Applied,
        offered_cross: f64,
        samples: Samples,
    ) -> Result<Measured> {
        let opt = |xs: &[f64]| (!xs.is_empty()).then(|| Stats::of(xs));
        Ok(Measured {
            peer,
            owners,
            entries: applied.entries,
            install: applied.install,
            cross: opt(&samples.cross),
            same: opt(&samples.same),
            offered_cross,
            tcp: Stats::of(&samples.tcp),
            rr_cross: Latency::of(&samples.rr_cross).context("no cross-host round trips")?,
            rr_same: Latency::of(&samples.rr_same),
            samples,
        })
    }

    /// Pool the samples of another run of the same configuration.
    fn merge(&mut self, other: Measured) {
        let s = &mut self.samples;
        s.cross.extend(other.samples.cross);
        s.same.extend(other.samples.same);
        s.tcp.extend(other.samples.tcp);
        s.rr_cross.extend(other.samples.rr_cross);
        s.rr_same.extend(other.samples.rr_same);
        let opt = |xs: &[f64]| (!xs.is_empty()).then(|| Stats::of(xs));
        self.cross = opt(&s.cross);
        self.same = opt(&s.same);
        self.tcp = Stats::of(&s.tcp);
        self.rr_cross = Latency::of(&s.rr_cross).expect("pooled round trips");
        self.rr_same = Latency::of(&s.rr_same);
        self.offered_cross = self.offered_cross.min(other.offered_cross);
    }
}

#[cfg(test)]
impl Measured {
    /// A measured row from given medians (one sample each), for the
    /// report's tests: pps cross, TCP Gbit/s, round trips (p50, p99) across
    /// hosts and on one host.
    pub(crate) fn synthetic(
        peer: Peer,
        owners: u32,
        cross: Option<f64>,
        tcp: f64,
        rr_cross: (f64, f64),
        rr_same: Option<(f64, f64)>,
    ) -> Measured {
        let rt = |(p50, p99)| RoundTrip { p50, p99 };
        let samples = Samples {
            cross: cross.into_iter().collect(),
            same: cross.into_iter().collect(),
            tcp: vec![tcp],
            rr_cross: vec![rt(rr_cross)],
            rr_same: rr_same.map(rt).into_iter().collect(),
        };
        let applied = Applied {
            datapaths: Vec::new(),
            install: Duration::ZERO,
            entries: 0,
        };
        Measured::from_samples(peer, owners, &applied, 0.0, samples).expect("a synthetic row")
    }
}

pub struct E2e {
    /// The generator alone: into a veth whose peer drops everything in XDP.
    pub generator: Stats,
    pub results: Vec<Measured>,
}

/// `a / b` of two optional medians.
fn over(a: Option<Stats>, b: Option<Stats>) -> Option<f64> {
    Some(a?.median / b?.median)
}

impl E2e {
    pub fn plain(&self) -> Option<&Measured> {
        self.results.iter().find(|m| m.peer == Peer::Plain)
    }

    pub fn get(&self, peer: Peer, owners: u32) -> Option<&Measured> {
        self.results
            .iter()
            .find(|m| m.peer == peer && (!peer.has_owners() || m.owners == owners))
    }

    pub fn json(&self) -> Value {
        let plain = self.plain();
        json!({
            "generator_only_pps": self.generator.json(),
            "results": self.results.iter().map(|m| json!({
                "peer": m.peer.key(), "owners": m.owners, "entries_per_host": m.entries,
                "install_s": m.install.as_secs_f64(),
                "cross_host_pps": m.cross.map(|s| s.json()),
                "same_host_pps": m.same.map(|s| s.json()),
                "offered_cross_host_pps": m.offered_cross,
                "tcp_gbit_s": m.tcp.json(),
                "round_trip_cross_host": m.rr_cross.json(),
                "round_trip_same_host": m.rr_same.map(|l| l.json()),
                "cross_vs_plain": plain.and_then(|p| over(m.cross, p.cross)),
                "same_vs_plain": plain.and_then(|p| over(m.same, p.same)),
                "tcp_vs_plain": plain.map(|p| m.tcp.median / p.tcp.median),
            })).collect::<Vec<_>>(),
        })
    }
}

struct Timing {
    window: Duration,
    tcp_secs: u32,
    tcp_reps: usize,
    rr_secs: u32,
    rr_reps: usize,
}

/// The generator's ceiling: frames out of one veth end into a peer that
/// drops them in XDP (one hop, nothing else).
fn generator_only(settings: &Settings, t: &Timing) -> Result<Stats> {
    let a = Netns::new(&super::lab::name("g"));
    let b = Netns::new(&super::lab::name("g"));
    sh(&[
        "ip", "-n", &a.name, "link", "add", "g0", "type", "veth", "peer", "name", "g1", "netns",
        &b.name,
    ]);
    sh(&["ip", "-n", &a.name, "link", "set", "g0", "up"]);
    sh(&["ip", "-n", &b.name, "link", "set", "g1", "up"]);
    let mut traffic = Traffic::load()?;
    traffic.attach_sink(&b, "g1", false)?;
    let gen_at = Gen {
        ns: &a,
        ifindex: a.ifindex("g0"),
        ip: Ipv4Addr::new(10, 1, 1, 1),
        mac: [0x02, 0, 0, 0, 0, 1],
        gateway_mac: [0x02, 0, 0, 0, 0, 2],
    };
    let (rates, _) =
        traffic.measure(&gen_at, Ipv4Addr::new(10, 1, 2, 1), settings.reps, t.window)?;
    Ok(Stats::of(&rates))
}

/// TCP and round trips between the two hosts' underlay addresses.
fn measure_host_to_host(t: &Timing) -> Result<Measured> {
    let lab = Lab::build_with(Plumbing::RoutedVeths);
    let from = End {
        ns: &lab.host(1).ns,
        ip: underlay_ip(1),
    };
    let to = End {
        ns: &lab.host(2).ns,
        ip: underlay_ip(2),
    };
    if crate::topology::ping_from(from.ns, to.ip, 1, 2) != 1 {
        bail!("host-to-host: {} cannot ping {}", from.ip, to.ip);
    }
    let samples = Samples {
        tcp: tcp(from, to, t.tcp_reps, t.tcp_secs)?,
        rr_cross: ping_pong(from, to, t.rr_reps, t.rr_secs)?,
        ..Samples::default()
    };
    let applied = Applied {
        datapaths: Vec::new(),
        install: Duration::ZERO,
        entries: 0,
    };
    Measured::from_samples(Peer::HostToHost, 0, &applied, 0.0, samples)
}

fn measure_setup(settings: &Settings, t: &Timing, peer: Peer, owners: u32) -> Result<Measured> {
    if peer == Peer::HostToHost {
        return measure_host_to_host(t);
    }
    let lab = Lab::build_with(peer.plumbing());
    let sender = lab.container(SENDER);
    let local = lab.container(LOCAL_RECEIVER);
    let remote = lab.container(REMOTE_RECEIVER);
    let real = [sender.ip, local.ip, remote.ip];
    let p = if peer == Peer::NetfabricNoPolicy {
        no_policy(&real)
    } else {
        policy(owners, &real)
    };
    let applied = apply(&lab, peer, &p)?;
    let mut traffic = Traffic::load()?;
    traffic.attach_sink(&local.ns, CONTAINER_IFNAME, true)?;
    traffic.attach_sink(&remote.ns, CONTAINER_IFNAME, true)?;
    // Neighbours resolved, and the allowed pairs work at all.
    for to in [local, remote] {
        if crate::topology::ping_from(&sender.ns, to.ip, 1, 2) != 1 {
            bail!(
                "{}: {} cannot ping {} before the run",
                peer.key(),
                sender.ip,
                to.ip
            );
        }
    }
    let gen_at = Gen::container(sender);
    let (cross, offered_cross) = traffic.measure(&gen_at, remote.ip, settings.reps, t.window)?;
    let (same, _) = traffic.measure(&gen_at, local.ip, settings.reps, t.window)?;
    // The sinks' XDP on the receivers' `eth0` would change how a veth
    // passes TCP (no GSO packets into an XDP program): gone, with the
    // generator's GRO on the ports, before TCP and round trips.
    drop(traffic);
    lab.generator_done();
    let end = End::container;
    let (from, remote_end, local_end) = (end(sender), end(remote), end(local));
    let samples = Samples {
        cross,
        same,
        tcp: tcp(from, remote_end, t.tcp_reps, t.tcp_secs)?,
        rr_cross: ping_pong(from, remote_end, t.rr_reps, t.rr_secs)?,
        rr_same: ping_pong(from, local_end, t.rr_reps, t.rr_secs)?,
    };
    let m = Measured::from_samples(peer, owners, &applied, offered_cross, samples)?;
    drop(applied);
    drop(lab);
    Ok(m)
}

pub fn run(settings: &Settings) -> Result<E2e> {
    crate::ensure_bpffs();
    let t = if settings.quick {
        Timing {
            window: Duration::from_millis(300),
            tcp_secs: 1,
            tcp_reps: 2,
            rr_secs: 1,
            rr_reps: 1,
        }
    } else {
        Timing {
            window: Duration::from_millis(1000),
            tcp_secs: 3,
            tcp_reps: 3,
            rr_secs: 2,
            rr_reps: 3,
        }
    };
    let generator = generator_only(settings, &t)?;
    eprintln!(
        "bench: e2e: generator alone {:.0} pps (min {:.0}, max {:.0})",
        generator.median, generator.min, generator.max
    );
    let mut results: Vec<Measured> = Vec::new();
    // The baseline first and last: its samples are pooled, so drift of a
    // shared machine over the run shows in its spread. The peers without
    // policy once each, then every policy peer at every owner count.
    let mut setups: Vec<(Peer, u32)> = Peer::ALL
        .iter()
        .filter(|p| !p.has_owners())
        .map(|&p| (p, 0))
        .collect();
    let counts: &[u32] = if settings.quick {
        &QUICK_OWNER_COUNTS
    } else {
        &OWNER_COUNTS
    };
    for &owners in counts {
        for peer in Peer::ALL.iter().filter(|p| p.at_every_owner_count()) {
            setups.push((*peer, owners));
        }
    }
    if let Some(&most) = counts.last() {
        setups.push((Peer::NetfabricTracked, most));
    }
    setups.push((Peer::Plain, 0));
    let pps = |s: Option<Stats>| s.map_or_else(|| "-".to_string(), |s| format!("{:.0}", s.median));
    for (peer, owners) in setups {
        let started = Instant::now();
        let m = measure_setup(settings, &t, peer, owners)
            .with_context(|| format!("{} at {owners} owners", peer.key()))?;
        eprintln!(
            "bench: e2e: {:<19} {:>6} owners: cross {:>9} pps, same {:>9} pps, tcp {:>6.2} Gbit/s, \
             rtt cross p50/p99 {:.0}/{:.0} µs (install {:.2?}, {} entries; {:.1?})",
            peer.key(),
            owners,
            pps(m.cross),
            pps(m.same),
            m.tcp.median,
            m.rr_cross.p50.median,
            m.rr_cross.p99.median,
            m.install,
            m.entries,
            started.elapsed()
        );
        match results
            .iter_mut()
            .find(|r: &&mut Measured| r.peer == m.peer && r.owners == m.owners)
        {
            Some(first) => first.merge(m),
            None => results.push(m),
        }
    }
    Ok(E2e { generator, results })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench's programs come from their own object: the generator and
    /// sinks load with their `BENCH_*` maps, and the baselines run beside a
    /// product datapath, whose object has none of them.
    #[test]
    fn the_bench_programs_load_from_the_bench_object() {
        crate::ensure_bpffs();
        let traffic = Traffic::load().expect("loading the bench's programs");
        assert_eq!(traffic.received().expect("reading BENCH_RX"), 0);
        let mut dp = Datapath::load(&LoadOptions::default()).expect("loading the datapath");
        assert!(
            dp.xdp("baseline_xdp").is_err(),
            "no baseline in the product's object"
        );
        dp.load_programs_of(BENCH_OBJECT)
            .expect("loading the bench's object");
        dp.xdp("baseline_xdp").unwrap().load().unwrap();
        let frame = [0u8; 64];
        let run = dp.test_run_xdp("baseline_xdp", &frame, 1).unwrap();
        assert_eq!(run.action, 2, "the empty XDP program passes (XDP_PASS)");
    }

    #[test]
    fn policy_sizes_and_rules() {
        let real = [
            Ipv4Addr::new(10, 1, 1, 1),
            Ipv4Addr::new(10, 1, 1, 2),
            Ipv4Addr::new(10, 1, 2, 1),
        ];
        let p = policy(10_000, &real);
        assert_eq!(p.endpoints.len(), 2 * 9_999 + 3);
        assert_eq!(p.allowed.len(), 2 * 9_999 + 6);
        let pos = p
            .allowed
            .iter()
            .position(|&(a, b)| (a, b) == (real[0], real[2]))
            .unwrap();
        assert!(pos > 9_000 && pos < 11_000, "measured pair in the middle");
        let ipt = iptables_rules(&p);
        assert_eq!(
            ipt.lines().filter(|l| l.starts_with("-A")).count(),
            p.allowed.len() + 1
        );
        assert!(nft_rules(&policy(10, &real)).contains("10.1.1.1 . 10.1.2.1"));
        let mut all: Vec<_> = p.endpoints.iter().map(|e| e.0).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), p.endpoints.len(), "addresses are unique");
    }

    #[test]
    fn sockperf_percentiles() {
        let out = "sockperf: ---> <MAX> observation = 3930.593\n\
                   sockperf: ---> percentile 99.999 = 3930.593\n\
                   sockperf: ---> percentile 99.000 =   75.451\n\
                   sockperf: ---> percentile 50.000 =   52.908\n\
                   sockperf: ---> <MIN> observation =   19.468\n";
        assert_eq!(
            parse_sockperf(out),
            Some(RoundTrip {
                p50: 52.908,
                p99: 75.451
            })
        );
        assert_eq!(parse_sockperf("sockperf: no summary\n"), None);
    }

    #[test]
    fn peers_without_policy_come_once() {
        let no_owners: Vec<_> = Peer::ALL.iter().filter(|p| !p.has_owners()).collect();
        assert_eq!(
            no_owners,
            [
                &Peer::Plain,
                &Peer::RoutedVeths,
                &Peer::HostToHost,
                &Peer::NetfabricNoPolicy
            ]
        );
        let p = no_policy(&[Ipv4Addr::new(10, 1, 1, 1), Ipv4Addr::new(10, 1, 2, 1)]);
        assert!(
            p.endpoints
                .iter()
                .all(|&(_, o)| o == netfabric_common::SYSTEM_OWNER)
        );
        assert!(p.group_pairs.is_empty());
    }

    #[test]
    fn template_is_a_valid_udp_frame() {
        let ns = Netns {
            name: String::new(),
        };
        let g = Gen {
            ns: &ns,
            ifindex: 1,
            ip: Ipv4Addr::new(10, 1, 1, 1),
            mac: [2, 0, 10, 1, 1, 1],
            gateway_mac: [2, 0xfb, 0, 0, 0, 1],
        };
        let f = template(&g, Ipv4Addr::new(10, 1, 2, 1));
        std::mem::forget(ns);
        let parsed = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = parsed.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().destination(), [10, 1, 2, 1]);
        assert_eq!(ip.header().total_len() as usize, FRAME_LEN - 14);
        assert_eq!(&f[36..38], &BENCH_UDP_PORT.to_be_bytes());
    }
}
