//! A zone of real agents on a three-member etcd: every agent is the
//! `netfabric agent` binary in its maps-only mode (`--maps-only`: the store
//! watch, validation, plan, diff and map writes of a real agent; nothing
//! attached), one per host of one zone, each with its own pinned maps.
//!
//! Two ways for the agents to reach etcd, measured in one run on one
//! cluster (each on its own key prefix, one after the other):
//!
//! * [`Design::WatchPerAgent`]: every agent has its own client and watch on
//!   the cluster (the product's default);
//! * [`Design::FanOut`]: every agent talks to one `etcd grpc-proxy` (etcd's
//!   own fan-out: it serves all watchers of a range from one watch on the
//!   cluster, as Calico's Typha serves its Felixes from one datastore
//!   connection); writers still go to the cluster.
//!
//! Changes are written through the store (one transaction per change, as
//! the CLI does) and timed from the start of the write to the change being
//! in the pinned maps of every agent:
//!
//! * single changes, one at a time, cycling through a container create, its
//!   delete, an owner joining a group (an owner pair appears in
//!   `GROUP_PAIRS`) and leaving it;
//! * a burst of container creates written back to back by one writer while
//!   every agent's `ENDPOINTS` range of the burst's hosts is read in one
//!   batched syscall per agent and sweep.
//!
//! etcd's CPU (and the proxy's) comes from `/proc/<pid>/stat` of its
//! processes over each phase, each agent's memory from `/proc/<pid>/status`
//! (`VmRSS`), the maps' kernel memory from the agent's map fds (`memlock`).
//!
//! A benchmark, not part of the product: `netfabric-bench --only zone`
//! reports it; `netfabric/tests/zone.rs` includes this file (`#[path]`) and
//! runs a small zone to check convergence. Everything made (processes, pins,
//! etcd data) is removed on return, also on failure.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::MapData;
use netfabric::{
    MacAddr, conventions,
    datapath::batch,
    state::{HostSpec, MAX_CONTAINERS_PER_HOST},
    store::{self, Store, StoreExt as _, etcd::LocalCluster},
};
use netfabric_common::{Endpoint, OwnerPair, plan::endpoint_index};
use serde::Serialize;

use crate::propagation::Latencies;

/// The zone's address prefix (the store and the maps are this run's own).
const ZONE_PREFIX: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 0);
/// Owners of the containers every host starts with.
const BASE_OWNERS: usize = 10;
/// Objects written per transaction while seeding (etcd's default
/// `--max-txn-ops` is 128).
const SEED_CHUNK: usize = 100;
/// Shortest pause between two sweeps over the agents' maps; a burst sweep
/// (one batched read per agent) pauses twice as long as it took, so the
/// measurement takes at most a third of a core from the agents.
const SWEEP_PAUSE: Duration = Duration::from_micros(500);

/// How the agents reach etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Design {
    /// One client and one watch per agent, on the cluster.
    WatchPerAgent,
    /// Every agent on one `etcd grpc-proxy`, which watches the cluster once.
    FanOut,
}

impl Design {
    pub const ALL: [Design; 2] = [Design::WatchPerAgent, Design::FanOut];

    pub fn label(self) -> &'static str {
        match self {
            Design::WatchPerAgent => "one watch per agent",
            Design::FanOut => "fan-out (etcd grpc-proxy)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Design::WatchPerAgent => "w",
            Design::FanOut => "f",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `netfabric` binary the agents run.
    pub exe: PathBuf,
    /// Agents, one per host of the zone (at most 254).
    pub agents: usize,
    /// Containers every host holds before the changes (spread over
    /// [`BASE_OWNERS`] owners, two of them in one group).
    pub containers_per_host: usize,
    /// Single changes, one at a time.
    pub singles: usize,
    /// Container creates in the burst.
    pub burst: usize,
    /// The longest wait for any one change (and for the agents to start).
    pub timeout: Duration,
}

/// CPU use over a phase, in cores (CPU seconds per wall second).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Cpu {
    pub etcd_cores: f64,
    pub etcd_cpu_s: f64,
    /// The grpc-proxy (fan-out only).
    pub proxy_cores: f64,
    /// All agents together.
    pub agents_cores: f64,
    pub wall_s: f64,
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "etcd {:.2} cores ({:.2} CPU s), proxy {:.2} cores, agents {:.2} cores over {:.2} s",
            self.etcd_cores, self.etcd_cpu_s, self.proxy_cores, self.agents_cores, self.wall_s
        )
    }
}

/// Memory of the agents.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// Resident set of one agent process: largest and mean, bytes.
    pub rss_max: u64,
    pub rss_mean: u64,
    /// All agents' resident sets together.
    pub rss_total: u64,
    /// Kernel memory of one agent's maps (`memlock` of its map fds).
    pub maps_kernel: u64,
}

/// Changes per transaction of the bulk burst (etcd's default
/// `--max-txn-ops` is 128, one more is `meta/commit`).
pub const BULK_TXN: usize = 100;

/// One burst of container creates.
#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    pub size: usize,
    /// Changes per transaction.
    pub per_txn: usize,
    /// Each change: the start of its transaction → in every agent's maps.
    pub each: Latencies,
    /// Time to write the whole burst.
    pub write: Duration,
    /// First write → the last change in every agent's maps.
    pub converged: Duration,
    /// Last write committed → the last change everywhere.
    pub after_last_write: Duration,
    pub cpu: Cpu,
}

impl std::fmt::Display for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "burst of {} ({} per transaction): each change -> every agent: {}",
            self.size, self.per_txn, self.each
        )?;
        writeln!(
            f,
            "    written in {:.2?} ({:.0} changes/s), converged on every agent {:.2?} after its \
             first write, {:.2?} after its last",
            self.write,
            self.size as f64 / self.write.as_secs_f64().max(1e-9),
            self.converged,
            self.after_last_write
        )?;
        write!(f, "    CPU: {}", self.cpu)
    }
}

/// What a burst writes to and reads from.
struct BurstTarget<'a> {
    maps: &'a Maps,
    pids: &'a Pids,
    writer: &'a dyn Store,
    hosts: &'a [String],
    /// Free addresses per host.
    room: usize,
    slot: u32,
    owner: u32,
    timeout: Duration,
}

impl BurstTarget<'_> {
    /// Creates `size` containers named `<tag><i>`, the `skip` first
    /// addresses of the hosts in order being taken already, `per_txn` per
    /// transaction from one writer thread, while this thread reads every
    /// agent's `ENDPOINTS` range of those hosts (one batched syscall per
    /// agent and sweep).
    fn run(&self, tag: &str, skip: usize, size: usize, per_txn: usize) -> Result<Burst> {
        let host_of = |i: usize| &self.hosts[(skip + i) / self.room];
        let zone_base = u32::from(ZONE_PREFIX);
        let host_number = |i: usize| (skip + i) / self.room + 1;
        // The hosts' /24s are consecutive: one range of ENDPOINTS holds them.
        let first = endpoint_index(self.slot, zone_base | (host_number(0) as u32) << 8);
        let last = endpoint_index(
            self.slot,
            zone_base | (host_number(size - 1) as u32) << 8 | 255,
        );
        let count = last - first + 1;
        let index = |a: Ipv4Addr| endpoint_index(self.slot, a.into());
        let mark = self.pids.mark();
        let (tx, rx) = mpsc::channel::<(Instant, u32)>();
        let start = Instant::now();
        let (each, write, last_done) = std::thread::scope(|scope| {
            let w = scope.spawn(move || -> Result<Duration> {
                for chunk in (0..size).collect::<Vec<_>>().chunks(per_txn) {
                    let t0 = Instant::now();
                    let (addrs, _) = self.writer.apply(|s| {
                        chunk
                            .iter()
                            .map(|&i| {
                                s.create_container(&format!("{tag}{i}"), "burst", host_of(i), None)
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })?;
                    for a in addrs {
                        if tx.send((t0, index(a))).is_err() {
                            return Ok(start.elapsed());
                        }
                    }
                }
                Ok(start.elapsed())
            });
            let mut pending: Vec<(Instant, u32)> = Vec::new();
            let mut done = Vec::with_capacity(size);
            let mut last_progress = Instant::now();
            let mut last_done = start;
            while done.len() < size {
                while let Ok(p) = rx.try_recv() {
                    pending.push(p);
                    // The timeout is for a change not arriving: from its
                    // write, not from the last one applied.
                    last_progress = Instant::now();
                }
                let mut pause = SWEEP_PAUSE;
                if !pending.is_empty() {
                    let sweep = Instant::now();
                    let mut everywhere = vec![true; count as usize];
                    for agent in 0..self.maps.endpoints.len() {
                        let owners = self.maps.owners(agent, first, count)?;
                        for (e, o) in everywhere.iter_mut().zip(owners) {
                            *e &= o == self.owner;
                        }
                    }
                    let now = Instant::now();
                    let before = done.len();
                    pending.retain(|(t0, idx)| {
                        if everywhere[(idx - first) as usize] {
                            done.push(now.duration_since(*t0));
                            false
                        } else {
                            true
                        }
                    });
                    if done.len() > before {
                        last_progress = now;
                        last_done = now;
                    }
                    pause = pause.max(2 * now.duration_since(sweep));
                }
                if last_progress.elapsed() > self.timeout {
                    if w.is_finished() {
                        w.join().expect("the writer does not panic")?;
                    }
                    bail!(
                        "{tag}: {} of {size} changes applied by every agent; none more within {:?}",
                        done.len(),
                        self.timeout
                    );
                }
                std::thread::sleep(pause);
            }
            let write = w.join().expect("the writer does not panic")?;
            Ok::<_, anyhow::Error>((done, write, last_done))
        })?;
        let converged = last_done.duration_since(start);
        Ok(Burst {
            size,
            per_txn,
            each: Latencies::of(each),
            write,
            converged,
            after_last_write: converged.saturating_sub(write),
            cpu: self.pids.since(&mark),
        })
    }
}

/// What one design measured.
#[derive(Debug, Clone, Serialize)]
pub struct DesignReport {
    pub design: Design,
    pub label: &'static str,
    pub agents: usize,
    pub containers_before: usize,
    /// Spawn of the first agent → every agent applied the seeded state.
    pub start: Duration,
    /// Every single change: write start → in the maps of every agent.
    pub single: Latencies,
    /// The same by kind (create, delete, group join, group leave).
    pub single_by_kind: BTreeMap<&'static str, Latencies>,
    /// Container creates back to back, one transaction each (as the CLI).
    pub burst: Burst,
    /// As many creates again, [`BULK_TXN`] per transaction.
    pub bulk: Burst,
    /// Every agent watching, nothing changing (2 s).
    pub cpu_idle: Cpu,
    pub cpu_single: Cpu,
    /// CPU one agent spends on one single change (all agents' CPU during
    /// the singles / (changes x agents)): here the agents take turns on two
    /// CPUs, so a change reaches the last of N agents after about N times
    /// this / 2; on a real zone, where each agent has its own host, after
    /// about this plus the network.
    pub agent_cpu_per_change: Duration,
    /// After the burst.
    pub memory: Memory,
    /// Program links pinned by all the agents (maps-only agents attach
    /// nothing: 0).
    pub attached_links: usize,
}

impl std::fmt::Display for DesignReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        writeln!(
            f,
            "{}: {} agents, {} containers before; all started and converged in {:.2?}",
            self.label, self.agents, self.containers_before, self.start
        )?;
        writeln!(f, "  single change -> every agent: {}", self.single)?;
        for (kind, l) in &self.single_by_kind {
            writeln!(f, "    {kind}: {l}")?;
        }
        writeln!(f, "  {}", self.burst)?;
        writeln!(f, "  {}", self.bulk)?;
        writeln!(f, "  CPU idle: {}", self.cpu_idle)?;
        writeln!(f, "  CPU singles: {}", self.cpu_single)?;
        writeln!(
            f,
            "  one agent's CPU per single change: {:.2?}",
            self.agent_cpu_per_change
        )?;
        write!(
            f,
            "  agent memory: RSS max {:.1} MiB, mean {:.1} MiB, all {:.0} MiB; maps in the kernel \
             {:.1} MiB per agent",
            mib(self.memory.rss_max),
            mib(self.memory.rss_mean),
            mib(self.memory.rss_total),
            mib(self.memory.maps_kernel)
        )
    }
}

/// Both designs, and which one is kept.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub designs: Vec<DesignReport>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for d in &self.designs {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Runs `designs` one after the other on one local three-member etcd (see
/// the module doc).
pub fn run(spec: &Spec, designs: &[Design]) -> Result<Report> {
    if spec.agents == 0 || spec.agents > 254 {
        bail!("agents: {} (1 to 254, one per host)", spec.agents);
    }
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let tag = format!(
        "zn{}x{}",
        std::process::id() % 100_000,
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = RemoveOnDrop(base.join(format!("netfabric-{tag}")));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    let cluster = LocalCluster::start(&dir.0.join("etcd"), 3).context("starting etcd")?;
    let mut out = Vec::new();
    for &design in designs {
        let name = format!("{tag}{}", design.key());
        let report = run_design(spec, design, &cluster, &dir.0, &name)
            .with_context(|| format!("zone with {}", design.label()))?;
        eprintln!("{report}");
        out.push(report);
    }
    drop(cluster);
    Ok(Report { designs: out })
}

/// A path removed (recursively) on drop.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The agents of one zone: SIGTERM on drop (they remove their pins:
/// `--detach-on-exit`), SIGKILL after 10 s, then their pins are removed
/// whatever happened.
struct Agents {
    children: Vec<Child>,
    hosts: Vec<String>,
    bpffs: PathBuf,
}

impl Agents {
    fn pin_dir(&self, i: usize) -> PathBuf {
        conventions::pin_dir(&self.bpffs, &self.hosts[i])
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &self.children {
            let pid = libc::pid_t::try_from(c.id()).unwrap_or(0);
            // SAFETY: kill has no memory preconditions; pid is our child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.children {
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Their locks and reports were on their own tmpfs, gone with them.
        for i in 0..self.hosts.len() {
            let _ = std::fs::remove_dir_all(self.pin_dir(i));
        }
    }
}

/// The parent of the agents' lock and report directory
/// (`agent::lock::RUN_DIR`).
const RUN_PARENT: &str = "/run/netfabric";

/// Runs the command as `SCHED_IDLE`, in its own mount namespace with a
/// fresh tmpfs on [`RUN_PARENT`].
///
/// `SCHED_IDLE`: in a real zone every agent has its host's CPUs, and etcd
/// and the writers have their own; here 254 agents share two CPUs with
/// them, and at etcd's priority (even at nice 10: 250 runnable agents
/// outweigh one writer thread ten to one) they starve the writer (5
/// changes/s). The agents get what etcd, the writer and the measurement
/// leave, which is still all but a fraction of the machine.
///
/// The tmpfs: the agents' locks and reports stay away from the
/// machine's (and vanish with the agents), and they are on tmpfs as `/run`
/// is on a systemd host. Where `/run` is on a disk (this VM: ext4), each
/// report replaced waits for the previous one's writeback, and a burst
/// stalls every agent on its reports.
fn isolate_agent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    let target = std::ffi::CString::new(RUN_PARENT).expect("no NUL");
    let fstype = c"tmpfs";
    let options = c"mode=0755";
    // SAFETY: the closure runs between fork and exec and only makes system
    // calls on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            die_with_parent()?;
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Nothing mounted here propagates back to the machine.
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                options.as_ptr().cast(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            let param = libc::sched_param { sched_priority: 0 };
            if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// SIGTERM when the thread that started the process ends, so a measurement
/// killed before its clean-up runs does not leave agents (and their pinned
/// maps, 25 MiB of kernel memory each) behind: on SIGTERM an agent started
/// with `--detach-on-exit` removes its pins.
///
/// # Safety
///
/// Only between fork and exec (`pre_exec`): one system call.
unsafe fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl with these arguments has no memory preconditions.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Names of one zone's objects.
struct Layout {
    hosts: Vec<String>,
    slot: u32,
}

fn seed(store: &dyn Store, spec: &Spec, name: &str) -> Result<Layout> {
    let zone = name.to_owned();
    let hosts: Vec<String> = (1..=spec.agents).map(|n| format!("{name}-h{n}")).collect();
    store.apply(|s| {
        s.create_zone(
            &zone,
            format!("{ZONE_PREFIX}/16").parse().expect("a prefix"),
            None,
        )?;
        for o in 0..BASE_OWNERS {
            s.create_owner(&format!("o{o}"))?;
        }
        s.create_group("g0", &["o0".into(), "o1".into()])?;
        for o in ["single-a", "single-b", "burst"] {
            s.create_owner(o)?;
        }
        s.create_group("gs", &["single-a".into()])
    })?;
    for chunk in hosts.chunks(SEED_CHUNK) {
        store.apply(|s| {
            for h in chunk {
                let n = h.rsplit('h').next().and_then(|n| n.parse::<u8>().ok());
                let n = n.expect("host names end in their number");
                s.create_host(HostSpec {
                    name: h.clone(),
                    zone: zone.clone(),
                    number: Some(n.into()),
                    subnet: None,
                    uplink: "eth0".into(),
                    underlay_ip: Ipv4Addr::new(172, 30, 0, n),
                    underlay_mac: MacAddr([0x02, 0xfc, 0, 0, 0, n]),
                })?;
            }
            Ok(())
        })?;
    }
    let containers: Vec<(String, String, String)> = hosts
        .iter()
        .enumerate()
        .flat_map(|(i, h)| {
            (0..spec.containers_per_host).map(move |c| {
                (
                    format!("{h}-c{c}"),
                    format!("o{}", (i + c) % BASE_OWNERS),
                    h.clone(),
                )
            })
        })
        .collect();
    for chunk in containers.chunks(SEED_CHUNK) {
        store.apply(|s| {
            for (c, o, h) in chunk {
                s.create_container(c, o, h, None)?;
            }
            Ok(())
        })?;
    }
    let slot = store
        .load()?
        .state
        .zone(&zone)
        .context("the seeded zone")?
        .slot;
    Ok(Layout { hosts, slot })
}

/// `utime + stime` of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

/// The processes whose CPU is accounted.
struct Pids {
    etcd: Vec<u32>,
    proxy: Option<u32>,
    agents: Vec<u32>,
}

struct CpuMark {
    at: Instant,
    etcd: f64,
    proxy: f64,
    agents: f64,
}

impl Pids {
    fn mark(&self) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            etcd: self.etcd.iter().map(|p| cpu_seconds(*p)).sum(),
            proxy: self.proxy.map_or(0.0, cpu_seconds),
            agents: self.agents.iter().map(|p| cpu_seconds(*p)).sum(),
        }
    }

    fn since(&self, m: &CpuMark) -> Cpu {
        let now = self.mark();
        let wall = now.at.duration_since(m.at).as_secs_f64().max(1e-9);
        Cpu {
            etcd_cores: (now.etcd - m.etcd) / wall,
            etcd_cpu_s: now.etcd - m.etcd,
            proxy_cores: (now.proxy - m.proxy) / wall,
            agents_cores: (now.agents - m.agents) / wall,
            wall_s: wall,
        }
    }
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Kernel memory of the BPF maps a process holds (`memlock` of the fds
/// that are maps).
fn maps_kernel_bytes(pid: u32) -> u64 {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    let mut total = 0;
    for fd in fds.flatten() {
        let Ok(info) = std::fs::read_to_string(fd.path()) else {
            continue;
        };
        if !info.lines().any(|l| l.starts_with("map_type:")) {
            continue;
        }
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// Starts `etcd grpc-proxy` in front of `cluster`; returns it and its URL.
fn start_proxy(cluster: &LocalCluster, dir: &Path) -> Result<(Killed, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let endpoints: Vec<String> = cluster
        .members()
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client_port))
        .collect();
    let log = std::fs::File::create(dir.join("grpc-proxy.log"))?;
    let mut cmd = Command::new(netfabric::store::etcd::cluster::ETCD_BIN);
    // SAFETY: one system call between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(|| die_with_parent());
    }
    let child = cmd
        .args(["grpc-proxy", "start"])
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg(format!("--listen-addr=127.0.0.1:{port}"))
        .arg(format!("--advertise-client-url=127.0.0.1:{port}"))
        .arg(format!("--data-dir={}", dir.join("grpc-proxy").display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting etcd grpc-proxy")?;
    let proxy = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("etcd grpc-proxy did not listen on 127.0.0.1:{port} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((proxy, format!("etcd://127.0.0.1:{port}")))
}

/// Every agent's pinned maps, read only.
struct Maps {
    endpoints: Vec<MapData>,
    /// One lookup per check: a batched read of the whole table walks its
    /// million buckets.
    group_pairs: Vec<aya::maps::HashMap<MapData, OwnerPair, u32>>,
}

impl Maps {
    /// Waits (up to `timeout`) for every agent's pins.
    fn open(agents: &Agents, timeout: Duration) -> Result<Maps> {
        let deadline = Instant::now() + timeout;
        let mut maps = Maps {
            endpoints: Vec::new(),
            group_pairs: Vec::new(),
        };
        for i in 0..agents.hosts.len() {
            let pins = agents.pin_dir(i);
            loop {
                match (
                    batch::open_pinned(&pins, netfabric_common::ENDPOINTS),
                    batch::open_pinned(&pins, netfabric_common::GROUP_PAIRS),
                ) {
                    (Ok(e), Ok(g)) => {
                        maps.endpoints.push(e);
                        maps.group_pairs
                            .push(aya::maps::HashMap::try_from(aya::maps::Map::HashMap(g))?);
                        break;
                    }
                    (Err(e), _) | (_, Err(e)) if Instant::now() > deadline => {
                        return Err(e).with_context(|| {
                            format!("the pins of agent {} within {timeout:?}", agents.hosts[i])
                        });
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        Ok(maps)
    }

    fn owner(&self, agent: usize, index: u32) -> Result<u32> {
        let raw = batch::read_array_range(
            &self.endpoints[agent],
            netfabric_common::ENDPOINTS,
            index,
            1,
        )?;
        Ok(raw
            .typed::<u32, Endpoint>()
            .next()
            .map_or(0, |(_, e)| e.owner))
    }

    /// Owners of `count` slots from `first`.
    fn owners(&self, agent: usize, first: u32, count: u32) -> Result<Vec<u32>> {
        let raw = batch::read_array_range(
            &self.endpoints[agent],
            netfabric_common::ENDPOINTS,
            first,
            count,
        )?;
        let mut out = vec![0; count as usize];
        for (k, e) in raw.typed::<u32, Endpoint>() {
            if let Some(o) = out.get_mut((k - first) as usize) {
                *o = e.owner;
            }
        }
        Ok(out)
    }

    fn has_pair(&self, agent: usize, pair: OwnerPair) -> Result<bool> {
        match self.group_pairs[agent].get(&pair, 0) {
            Ok(_) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// What a single change must leave in every agent's maps.
enum Expect {
    Owner { index: u32, owner: u32 },
    Pair { pair: OwnerPair, present: bool },
}

impl Expect {
    fn holds(&self, maps: &Maps, agent: usize) -> Result<bool> {
        Ok(match *self {
            Expect::Owner { index, owner } => maps.owner(agent, index)? == owner,
            Expect::Pair { pair, present } => maps.has_pair(agent, pair)? == present,
        })
    }
}

/// Waits until `expect` holds in every agent (agents already seen to hold
/// it are not read again: a change, once applied, stays until the next).
fn wait_everywhere(maps: &Maps, expect: &Expect, t0: Instant, timeout: Duration) -> Result<bool> {
    let n = maps.endpoints.len();
    let mut next = 0;
    while next < n {
        if expect.holds(maps, next)? {
            next += 1;
            continue;
        }
        if t0.elapsed() > timeout {
            return Ok(false);
        }
        std::thread::sleep(SWEEP_PAUSE);
    }
    Ok(true)
}

fn run_design(
    spec: &Spec,
    design: Design,
    cluster: &LocalCluster,
    dir: &Path,
    name: &str,
) -> Result<DesignReport> {
    let url = format!("{}/{name}", cluster.url());
    let writer = store::open(&url).with_context(|| format!("opening {url}"))?;
    let layout = seed(writer.as_ref(), spec, name)?;
    // Readiness: every agent holds this container.
    let (ready_addr, _) =
        writer.apply(|s| s.create_container("ready", "o0", &layout.hosts[0], None))?;
    let snap = writer.load()?;
    let id = |o: &str| snap.state.owner(o).map(|o| o.id).context("a seeded owner");
    let (o0, single_a, single_b, burst_owner) =
        (id("o0")?, id("single-a")?, id("single-b")?, id("burst")?);
    let slot = layout.slot;
    let index = |a: Ipv4Addr| endpoint_index(slot, a.into());

    let (proxy, agent_url) = match design {
        Design::WatchPerAgent => (None, url.clone()),
        Design::FanOut => {
            let (p, u) = start_proxy(cluster, dir)?;
            (Some(p), format!("{u}/{name}"))
        }
    };
    let bpffs = PathBuf::from(conventions::DEFAULT_BPFFS);
    let mut agents = Agents {
        children: Vec::new(),
        hosts: layout.hosts.clone(),
        bpffs: bpffs.clone(),
    };
    let logs = dir.join(format!("agents-{name}"));
    std::fs::create_dir_all(&logs)?;
    let started = Instant::now();
    std::fs::create_dir_all(RUN_PARENT)?;
    for host in &layout.hosts {
        let log = std::fs::File::create(logs.join(format!("{host}.log")))?;
        let mut cmd = Command::new(&spec.exe);
        isolate_agent(&mut cmd);
        let child = cmd
            .args([
                "--store",
                &agent_url,
                "agent",
                "--host",
                host,
                "--maps-only",
            ])
            .args(["--detach-on-exit", "--metrics-addr", ""])
            .arg("--bpffs")
            .arg(&bpffs)
            .env("RUST_LOG", "netfabric=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", spec.exe.display()))?;
        agents.children.push(child);
    }
    let pids = Pids {
        etcd: cluster.members().iter().filter_map(|m| m.pid).collect(),
        proxy: proxy.as_ref().map(|p| p.0.id()),
        agents: agents.children.iter().map(Child::id).collect(),
    };
    let maps = Maps::open(&agents, spec.timeout)?;
    let ready = Expect::Owner {
        index: index(ready_addr),
        owner: o0,
    };
    if !wait_everywhere(&maps, &ready, started, spec.timeout)? {
        let exited: Vec<String> = agents
            .children
            .iter_mut()
            .zip(&agents.hosts)
            .filter_map(|(c, h)| Some(format!("{h}: {}", c.try_wait().ok()??)))
            .collect();
        bail!(
            "the agents did not all apply the seeded state within {:?} (exited: {exited:?}; logs in {})",
            spec.timeout,
            logs.display()
        );
    }
    let start = started.elapsed();

    let mark = pids.mark();
    std::thread::sleep(Duration::from_secs(2));
    let cpu_idle = pids.since(&mark);

    // Singles: create, delete, join, leave, ...
    let mark = pids.mark();
    let pair = OwnerPair {
        low: single_a.min(single_b),
        high: single_a.max(single_b),
    };
    let mut single = Vec::with_capacity(spec.singles);
    let mut by_kind: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    let mut last_addr = Ipv4Addr::UNSPECIFIED;
    for i in 0..spec.singles {
        let host = &layout.hosts[(i / 4) % layout.hosts.len()];
        let cname = format!("single{}", i / 4);
        let t0 = Instant::now();
        let (kind, expect) = match i % 4 {
            0 => {
                let (a, _) =
                    writer.apply(|s| s.create_container(&cname, "single-a", host, None))?;
                last_addr = a;
                (
                    "container create",
                    Expect::Owner {
                        index: index(a),
                        owner: single_a,
                    },
                )
            }
            1 => {
                writer.apply(|s| s.delete_container(&cname))?;
                (
                    "container delete",
                    Expect::Owner {
                        index: index(last_addr),
                        owner: 0,
                    },
                )
            }
            2 => {
                writer.apply(|s| s.add_group_members("gs", &["single-b".into()]))?;
                (
                    "group join",
                    Expect::Pair {
                        pair,
                        present: true,
                    },
                )
            }
            _ => {
                writer.apply(|s| s.remove_group_members("gs", &["single-b".into()]))?;
                (
                    "group leave",
                    Expect::Pair {
                        pair,
                        present: false,
                    },
                )
            }
        };
        if !wait_everywhere(&maps, &expect, t0, spec.timeout)? {
            bail!(
                "single change {i} ({kind}) not applied by every agent within {:?}",
                spec.timeout
            );
        }
        let took = t0.elapsed();
        single.push(took);
        by_kind.entry(kind).or_default().push(took);
    }
    let cpu_single = pids.since(&mark);

    // Bursts: creates on the first hosts, filled in order, one change per
    // transaction, then as many again in transactions of BULK_TXN.
    let room = MAX_CONTAINERS_PER_HOST - spec.containers_per_host - 1;
    let hosts_needed = (2 * spec.burst).div_ceil(room);
    if hosts_needed > layout.hosts.len() {
        bail!(
            "two bursts of {} do not fit on {} hosts of {} free addresses",
            spec.burst,
            layout.hosts.len(),
            room
        );
    }
    let target = BurstTarget {
        maps: &maps,
        pids: &pids,
        writer: writer.as_ref(),
        hosts: &layout.hosts,
        room,
        slot,
        owner: burst_owner,
        timeout: spec.timeout,
    };
    let burst = target.run("burst", 0, spec.burst, 1)?;
    let bulk = target.run("bulk", spec.burst, spec.burst, BULK_TXN)?;
    let rss: Vec<u64> = pids.agents.iter().map(|p| rss_bytes(*p)).collect();
    let memory = Memory {
        rss_max: rss.iter().copied().max().unwrap_or(0),
        rss_mean: rss.iter().sum::<u64>() / rss.len().max(1) as u64,
        rss_total: rss.iter().sum(),
        maps_kernel: pids.agents.first().map_or(0, |p| maps_kernel_bytes(*p)),
    };
    let exited: Vec<String> = agents
        .children
        .iter_mut()
        .zip(&agents.hosts)
        .filter_map(|(c, h)| Some(format!("{h}: {}", c.try_wait().ok()??)))
        .collect();
    if !exited.is_empty() {
        bail!(
            "agents exited during the run: {exited:?} (logs in {})",
            logs.display()
        );
    }
    let attached_links = (0..agents.hosts.len())
        .map(|i| {
            std::fs::read_dir(conventions::links_dir(&agents.pin_dir(i))).map_or(0, |d| d.count())
        })
        .sum();
    drop(maps);
    drop(agents);
    drop(proxy);
    Ok(DesignReport {
        design,
        label: design.label(),
        agents: spec.agents,
        containers_before: spec.agents * spec.containers_per_host + 1,
        start,
        single: Latencies::of(single),
        single_by_kind: by_kind
            .into_iter()
            .map(|(k, v)| (k, Latencies::of(v)))
            .collect(),
        burst,
        bulk,
        cpu_idle,
        agent_cpu_per_change: Duration::from_secs_f64(
            cpu_single.agents_cores * cpu_single.wall_s
                / (spec.singles.max(1) * spec.agents) as f64,
        ),
        cpu_single,
        memory,
        attached_links,
    })
}
