//! `netfabric lab`: a zone of N hosts on this machine (docs/lab.md#what-the-lab-builds).
//!
//! * an underlay namespace `nf-<lab>-underlay` with the bridge `ubr0`;
//! * one namespace per host, `nf-<host>`, with the uplink `up0`
//!   (`02:fe:00:00:00:<n>`, `172.30.0.<n>/24`) whose peer is a port of `ubr0`;
//! * the desired state in the lab's own store: `<dir>/state.json`, or with
//!   `--store etcd` a local three-member etcd cluster (loopback ports, data
//!   and logs under `<dir>/etcd/`, pids in the manifest): zone
//!   `10.1.0.0/16`, hosts, owners `alice` and `bob`, the group `team` (alice;
//!   add bob to let them talk), containers, and a `system` load balancer;
//! * one namespace per container, `nf-<container>`, attached with
//!   [`crate::port::attach`];
//! * one agent process per host (this executable, `agent --host H --netns
//!   /run/netns/nf-H`), logging to `<dir>/agent-H.log`.
//!
//! Devices, addresses, sysctls and offloads are set over rtnetlink and
//! ethtool ioctls ([`crate::port`]); only named namespaces are made and
//! removed with `ip netns add/del` (it keeps their bind mounts under
//! `/run/netns`, which `ip netns exec` and the tests rely on).
//!
//! Everything made is first recorded in `<dir>/manifest.json`, so `down`
//! removes every namespace, pin and process even after a crash of `up`.
//! The default lab is named `lab` (hosts `h1`..`hN`, containers by owner);
//! other names (`--name t1`) prefix hosts and containers so several labs
//! can coexist (the tests use that).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::{
    MacAddr,
    port::{self, in_netns},
    state::HostSpec,
    store::{
        FileStore, Store, StoreExt as _,
        etcd::{LocalCluster, cluster::MemberRecord},
    },
};

/// Members of the lab's etcd cluster (`--store etcd`).
pub const LAB_ETCD_MEMBERS: usize = 3;

/// Which lab, and where it keeps its things.
#[derive(Debug, Clone)]
pub struct LabLocation {
    /// `lab` gives hosts h1..hN; another name prefixes them.
    pub name: String,
    /// Directory of the lab's store, manifest and logs; `None` is
    /// `/var/lib/netfabric/<name>`.
    pub dir: Option<PathBuf>,
    /// The bpffs mount.
    pub bpffs: PathBuf,
}

/// Where the lab keeps its desired state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LabStore {
    /// The file store `<dir>/state.json`.
    #[default]
    File,
    /// A local three-member etcd cluster (data and logs under `<dir>/etcd/`).
    Etcd,
}

/// What `up` builds.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub lab: LabLocation,
    /// Number of hosts (1..=9).
    pub hosts: u8,
    pub store: LabStore,
    /// The `netfabric` executable the agents run (`None`: this one; a
    /// benchmark binary names the real one).
    pub exe: Option<PathBuf>,
    /// The agent of host N serves /metrics on 127.0.0.1:<base + N>; 0
    /// serves none.
    pub metrics_port_base: u16,
}

/// What a lab made, written before it is made.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub dir: PathBuf,
    pub bpffs: PathBuf,
    pub store_url: String,
    /// Every namespace (underlay, hosts, containers), in creation order.
    pub namespaces: Vec<String>,
    pub hosts: Vec<LabHost>,
    pub containers: Vec<LabContainer>,
    /// The lab's etcd members (`--store etcd`), stopped by `down`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etcd: Vec<MemberRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabHost {
    pub name: String,
    pub netns: String,
    pub pin_dir: PathBuf,
    pub agent_pid: Option<u32>,
    pub log: PathBuf,
    /// Where the agent serves /metrics.
    #[serde(default)]
    pub metrics_addr: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabContainer {
    pub name: String,
    pub owner: String,
    pub host: String,
    pub address: Ipv4Addr,
    pub netns: String,
}

impl LabLocation {
    pub fn dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| Path::new(crate::store::DEFAULT_STATE_DIR).join(&self.name))
    }

    fn prefixed(&self, base: &str) -> String {
        if self.name == "lab" {
            base.to_owned()
        } else {
            format!("{}-{base}", self.name)
        }
    }
}

fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("manifest.json")
}

impl Manifest {
    pub fn load(dir: &Path) -> anyhow::Result<Option<Manifest>> {
        match std::fs::read(manifest_path(dir)) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).context("reading the lab manifest")?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("reading the lab manifest"),
        }
    }

    fn save(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(".manifest.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, manifest_path(&self.dir)).context("writing the lab manifest")
    }
}

/// `lab run`: up, print what to try, wait for Ctrl-C (or SIGTERM), down.
/// A failed `up` is torn down too.
pub fn run(config: &LabConfig) -> anyhow::Result<()> {
    let m = match up(config) {
        Ok(m) => m,
        Err(e) => {
            let _ = down(&config.lab);
            return Err(e);
        }
    };
    print_try(&m);
    println!("\nCtrl-C tears the lab down.");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    println!("tearing the lab down...");
    down(&config.lab)
}

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The uplink of every lab host (veth; its peer is on the underlay bridge).
const UPLINK: &str = "up0";

fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

fn add_netns(m: &mut Manifest, name: &str) -> anyhow::Result<()> {
    m.namespaces.push(name.to_owned());
    m.save()?;
    if netns_path(name).exists() {
        let _ = sh(&["ip", "netns", "del", name]);
    }
    sh(&["ip", "netns", "add", name])?;
    in_netns(Some(&netns_path(name)), || {
        for k in ["all", "default"] {
            port::write_sysctl(&format!("net/ipv6/conf/{k}/disable_ipv6"), "1")?;
        }
        port::block_on(async {
            let nl = port::connect()?;
            let lo = port::link_index(&nl, "lo").await?;
            port::set_up(&nl, lo).await
        })
    })?
    .with_context(|| format!("setting up the namespace {name}"))?;
    Ok(())
}

/// Builds the lab; returns its manifest.
pub fn up(args: &LabConfig) -> anyhow::Result<Manifest> {
    let lab = &args.lab;
    let dir = lab.dir();
    if Manifest::load(&dir)?.is_some() {
        bail!(
            "a lab is already recorded in {}: run `netfabric lab down --name {}` first",
            dir.display(),
            lab.name
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let state_file = dir.join(crate::store::STATE_FILE_NAME);
    let _ = std::fs::remove_file(&state_file);
    let mut m = Manifest {
        name: lab.name.clone(),
        dir: dir.clone(),
        bpffs: lab.bpffs.clone(),
        store_url: format!("file://{}", state_file.display()),
        ..Manifest::default()
    };
    m.save()?;
    let store: Box<dyn Store> = if args.store == LabStore::Etcd {
        let cluster = LocalCluster::start(&dir.join("etcd"), LAB_ETCD_MEMBERS)
            .context("starting the lab's etcd cluster")?;
        m.store_url = cluster.url();
        m.etcd = cluster.detach();
        m.save()?;
        Box::new(crate::store::EtcdStore::open(&m.store_url)?)
    } else {
        Box::new(FileStore::from_path(&state_file).with_poll_interval(Duration::from_millis(50)))
    };

    // The desired state.
    let zone = lab.name.clone();
    let hosts: Vec<String> = (1..=args.hosts)
        .map(|n| lab.prefixed(&format!("h{n}")))
        .collect();
    store.apply(|s| s.create_zone(&zone, "10.1.0.0/16".parse().expect("a prefix"), None))?;
    for (i, h) in hosts.iter().enumerate() {
        let n = i as u8 + 1;
        store.apply(|s| {
            s.create_host(HostSpec {
                name: h.clone(),
                zone: zone.clone(),
                number: Some(n.into()),
                subnet: None,
                uplink: UPLINK.into(),
                underlay_ip: Ipv4Addr::new(172, 30, 0, n),
                underlay_mac: MacAddr([0x02, 0xfe, 0, 0, 0, n]),
            })
        })?;
    }
    for o in ["alice", "bob"] {
        store.apply(|s| s.create_owner(o))?;
    }
    store.apply(|s| s.create_group("team", &["alice".to_owned()]))?;
    let host_of = |i: usize| hosts[i % hosts.len()].clone();
    let plan = [
        ("alice-web", "alice", host_of(0)),
        ("alice-db", "alice", host_of(1)),
        ("bob-web", "bob", host_of(0)),
        ("bob-api", "bob", host_of(2)),
        ("lb", "system", host_of(2)),
    ];
    for (c, owner, host) in &plan {
        let name = lab.prefixed(c);
        let (address, _) = store.apply(|s| s.create_container(&name, owner, host, None))?;
        m.containers.push(LabContainer {
            name: name.clone(),
            owner: (*owner).to_owned(),
            host: host.clone(),
            address,
            netns: format!("nf-{name}"),
        });
    }

    // The underlay.
    let underlay = format!("nf-{}-underlay", lab.name);
    add_netns(&mut m, &underlay)?;
    let underlay_path = netns_path(&underlay);
    let underlay_bridge = in_netns(Some(&underlay_path), || {
        port::block_on(async {
            let nl = port::connect()?;
            port::ensure_plain_bridge(&nl, "ubr0").await
        })
    })?
    .context("creating the underlay bridge")?;
    for (i, h) in hosts.iter().enumerate() {
        let n = i as u8 + 1;
        let ns = format!("nf-{h}");
        m.hosts.push(LabHost {
            name: h.clone(),
            netns: ns.clone(),
            pin_dir: crate::conventions::pin_dir(&lab.bpffs, h),
            agent_pid: None,
            log: dir.join(format!("agent-{h}.log")),
            metrics_addr: (args.metrics_port_base != 0).then(|| {
                format!(
                    "127.0.0.1:{}",
                    args.metrics_port_base.saturating_add(n.into())
                )
            }),
        });
        add_netns(&mut m, &ns)?;
        let peer = format!("u{n}");
        // The kernel's default offloads (TSO/GSO, TX checksum); GRO on both
        // veth ends, so that each receives through NAPI and aggregates (a
        // NIC does by default): the uplink's TC program then delivers whole
        // super-packets with their checksum state.
        let host_ns = std::fs::File::open(netns_path(&ns))
            .with_context(|| format!("opening the namespace {ns}"))?;
        in_netns(Some(&underlay_path), || {
            port::block_on(async {
                let nl = port::connect()?;
                let index = port::add_veth_into(&nl, &peer, UPLINK, &host_ns).await?;
                port::enslave_up(&nl, index, underlay_bridge).await?;
                port::set_gro(&peer, true)
            })
        })?
        .with_context(|| format!("plumbing {peer} in {underlay}"))?;
        in_netns(Some(&netns_path(&ns)), || {
            port::block_on(async {
                let nl = port::connect()?;
                let index = port::link_index(&nl, UPLINK).await?;
                port::set_mac_up(&nl, index, MacAddr([0x02, 0xfe, 0, 0, 0, n])).await?;
                port::add_address(&nl, index, Ipv4Addr::new(172, 30, 0, n), 24).await?;
                port::set_gro(UPLINK, true)
            })
        })?
        .with_context(|| format!("plumbing {UPLINK} in {ns}"))?;
        // A stale pin dir of the same host name would be adopted: start clean.
        crate::agent::links::remove_all(&crate::conventions::pin_dir(&lab.bpffs, h))?;
    }
    // Containers.
    let snap = store.load()?;
    for c in m.containers.clone() {
        add_netns(&mut m, &c.netns)?;
        let container = snap
            .state
            .container(&c.name)
            .context("a lab container")?
            .clone();
        let subnet = snap
            .state
            .host(&c.host)
            .context("a lab host")?
            .subnet
            .network();
        crate::port::attach(
            &container,
            subnet,
            &netns_path(&c.netns),
            Some(&netns_path(&format!("nf-{}", c.host))),
        )
        .with_context(|| format!("attaching {}", c.name))?;
    }
    // Agents.
    let exe = match &args.exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe().context("finding this executable")?,
    };
    for i in 0..m.hosts.len() {
        let h = m.hosts[i].clone();
        let log = std::fs::File::create(&h.log)
            .with_context(|| format!("creating {}", h.log.display()))?;
        let child = spawn_agent(&exe, &m, &h, log)?;
        m.hosts[i].agent_pid = Some(child);
        m.save()?;
    }
    wait_ready(&m, Duration::from_secs(20))?;
    Ok(m)
}

/// Starts the agent of `h` in its own session (so Ctrl-C on `lab run`
/// reaches only the lab, which then stops the agents itself).
pub fn spawn_agent(
    exe: &Path,
    m: &Manifest,
    h: &LabHost,
    log: std::fs::File,
) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt as _;
    let err = log.try_clone()?;
    let child = Command::new(exe)
        .args([
            "agent",
            "--host",
            &h.name,
            "--store",
            &m.store_url,
            "--bpffs",
        ])
        .arg(&m.bpffs)
        .arg("--metrics-addr")
        .arg(h.metrics_addr.as_deref().unwrap_or(""))
        .arg("--netns")
        .arg(netns_path(&h.netns))
        // A lab host's namespace has no way out to the machine's resolvers:
        // names that are not containers' are refused at once rather than
        // failing after the upstream timeout.
        .args(["--dns-upstream", "none"])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "netfabric=info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting the agent of {}", h.name))?;
    Ok(child.id())
}

/// Waits until every container's port is up (its agent attached it).
pub fn wait_ready(m: &Manifest, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for c in &m.containers {
        let port = crate::conventions::port_name(c.address);
        let host_ns = netns_path(&format!("nf-{}", c.host));
        loop {
            let links = in_netns(Some(&host_ns), || {
                port::block_on(async { port::links(&port::connect()?).await })
            })??;
            if links.iter().any(|(name, _, up)| *name == port && *up) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the port {port} of {} did not come up (see the agent logs in {})",
                    c.name,
                    m.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

fn kill_agent(pid: u32, host: &str, sig: i32) {
    if crate::conventions::is_agent_of(pid, host) {
        // SAFETY: plain kill(2) on a pid we checked is one of our agents.
        unsafe { libc::kill(pid as i32, sig) };
    }
}

/// Removes everything the lab recorded. Works after a crash of `up`.
pub fn down(lab: &LabLocation) -> anyhow::Result<()> {
    let dir = lab.dir();
    let Some(m) = Manifest::load(&dir)? else {
        println!("no lab recorded in {}", dir.display());
        return Ok(());
    };
    for h in &m.hosts {
        if let Some(pid) = h.agent_pid {
            kill_agent(pid, &h.name, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for h in &m.hosts {
        if let Some(pid) = h.agent_pid {
            while crate::conventions::is_agent_of(pid, &h.name) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_agent(pid, &h.name, libc::SIGKILL);
        }
    }
    let mut errors = Vec::new();
    for ns in m.namespaces.iter().rev() {
        if netns_path(ns).exists()
            && let Err(e) = sh(&["ip", "netns", "del", ns])
        {
            errors.push(format!("{e:#}"));
        }
    }
    for h in &m.hosts {
        if let Err(e) = crate::agent::links::remove_all(&h.pin_dir) {
            errors.push(format!("removing {}: {e}", h.pin_dir.display()));
        }
    }
    let _ = std::fs::remove_dir(m.bpffs.join("netfabric"));
    crate::store::etcd::cluster::stop_recorded(&m.etcd);
    for f in ["state.json", "state.json.lock", ".state.json.tmp"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    if !errors.is_empty() {
        bail!("lab down left things behind: {}", errors.join("; "));
    }
    std::fs::remove_file(manifest_path(&dir)).context("removing the manifest")?;
    println!("lab {} is down (logs kept in {})", m.name, dir.display());
    Ok(())
}

pub fn status(lab: &LabLocation) -> anyhow::Result<()> {
    let dir = lab.dir();
    let Some(m) = Manifest::load(&dir)? else {
        println!("no lab recorded in {}", dir.display());
        return Ok(());
    };
    println!("lab {} (store {})", m.name, m.store_url);
    println!("hosts:");
    for h in &m.hosts {
        let alive = h
            .agent_pid
            .is_some_and(|p| crate::conventions::is_agent_of(p, &h.name));
        println!(
            "  {:<12} netns {:<16} agent pid {:<8} {}",
            h.name,
            h.netns,
            h.agent_pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            if alive { "running" } else { "NOT RUNNING" }
        );
    }
    if !m.etcd.is_empty() {
        println!("etcd:");
    }
    for e in &m.etcd {
        let alive = e
            .pid
            .is_some_and(|p| crate::store::etcd::cluster::is_member_process(e, p));
        println!(
            "  {:<12} {:<22} pid {:<8} {}",
            e.name,
            e.client_url(),
            e.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            if alive { "running" } else { "NOT RUNNING" }
        );
    }
    println!("containers:");
    let store = crate::store::open(&m.store_url)?;
    let state = store.load()?.state;
    for c in &state.containers {
        let attached = netns_path(&format!("nf-{}", c.name)).exists();
        println!(
            "  {:<16} {:<6} {:<10} {:<12} {}",
            c.name,
            c.owner,
            c.host,
            c.address,
            if attached { "attached" } else { "-" }
        );
    }
    Ok(())
}

/// What to try in a lab that is up: its containers, the commands that show
/// the policy at work, and where to observe it.
pub fn print_try(m: &Manifest) {
    let find = |suffix: &str| m.containers.iter().find(|c| c.name.ends_with(suffix));
    println!(
        "lab {} is up: {} hosts, {} containers",
        m.name,
        m.hosts.len(),
        m.containers.len()
    );
    for c in &m.containers {
        println!(
            "  {:<16} {:<7} {:<6} {}",
            c.name, c.owner, c.host, c.address
        );
    }
    // The commands must work as printed: name this very binary.
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "netfabric".to_owned());
    // One line to paste: every command below then finds the lab's store
    // through NETFABRIC_STORE (the CLI's `--store` falls back to it).
    println!("\nPoint the CLI at the lab's store (once per shell):");
    println!("  export NETFABRIC_STORE={}", m.store_url);
    // Pins live under the default bpffs unless the lab was given another one.
    let bpffs = if m.bpffs == Path::new(crate::conventions::DEFAULT_BPFFS) {
        String::new()
    } else {
        format!(" --bpffs {}", m.bpffs.display())
    };
    if let (Some(a), Some(a2), Some(b), Some(lb)) = (
        find("alice-web"),
        find("alice-db"),
        find("bob-web"),
        find("lb"),
    ) {
        println!("\nTry:");
        println!("  # same owner, other host: allowed");
        println!("  ip netns exec {} ping -c 3 {}", a.netns, a2.address);
        println!("  # different owners (alice, bob), no shared group: dropped (policy_denied)");
        println!("  ip netns exec {} ping -c 3 -W 1 {}", a.netns, b.address);
        println!("  # put bob in alice's group `team`, and the same ping works");
        println!("  {exe} group add-member team bob");
        println!("  # the system owner (lb) may talk to everyone");
        println!("  ip netns exec {} ping -c 3 {}", lb.netns, b.address);
        println!(
            "  # TCP: ip netns exec {} nc -l 8080 & ip netns exec {} nc {} 8080",
            a2.netns, a.netns, a2.address
        );
    }
    println!("\n  {exe} container list");
    // Name the lab (and its directory, unless it is the default one) so the
    // command finds the manifest.
    let default_dir = LabLocation {
        name: m.name.clone(),
        dir: None,
        bpffs: m.bpffs.clone(),
    }
    .dir();
    let mut which = String::new();
    if m.name != "lab" {
        which.push_str(&format!(" --name {}", m.name));
    }
    if m.dir != default_dir {
        which.push_str(&format!(" --dir {}", m.dir.display()));
    }
    println!("  {exe} lab status{which}");
    if let Some(h) = m.hosts.first() {
        let host = format!("--host {}{bpffs}", h.name);
        println!("\nObserve:");
        println!("  {exe} status{bpffs}                    # every host: programs, maps, counters");
        println!("  {exe} maps list {host}");
        println!("  {exe} maps dump ENDPOINTS {host}     # owners and containers");
        println!("  {exe} maps dump COUNTERS {host}");
        println!("  {exe} monitor {host} --reason policy_denied   # live drops");
        for h in &m.hosts {
            if let Some(addr) = &h.metrics_addr {
                println!("  curl -s http://{addr}/metrics   # agent of {}", h.name);
            }
        }
    }
    println!("  agent logs: {}/agent-<host>.log", m.dir.display());
}
