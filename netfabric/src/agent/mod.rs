//! `netfabric agent`: keeps one host's datapath equal to the desired state
//! (docs/store-and-agent.md#the-agent).
//!
//! * Maps are pinned under `<bpffs>/netfabric/<host>/` and adopted on start;
//!   what they hold is read back into a [`HostPlan`], and from then on only
//!   the difference between that and the plan of the desired state is
//!   written ([`HostPlan::diff`]): never flush-and-refill. A change of the
//!   store is planned incrementally ([`incremental`]): only the entries it
//!   touches are recomputed and diffed ([`HostPlan::diff_keys`]); the full
//!   plan and diff are the reference, and the fallback after a failed
//!   write or a change of zones, hosts or owner ids.
//! * Program links are pinned under `<pin dir>/links/` ([`links`]); a new
//!   agent replaces the program of each pinned link atomically, so a
//!   restart or upgrade drops no packet and opens no hole.
//! * Container ports (`nfc<octet>`, see [`crate::port`]) are found by a
//!   periodic rescan: TC is attached (and pinned), `LOCAL_PORTS` set, and
//!   only then the port is brought up.
//! * A full map fails closed: the entry is not added (a missing group pair
//!   means "denied"), the error is logged and counted.
//! * SIGTERM/SIGINT leave the datapath running; `--detach-on-exit` removes
//!   links and pins.
//! * One agent per host ([`lock`]): a second one exits 1 naming the first's
//!   pid. A host that has no pins yet must be in the store: an agent started
//!   with an unknown `--host` exits 2 and creates nothing.
//! * Every state read from the store is validated (the same
//!   [`State::validate`] the stores use on commit): an invalid one is
//!   refused, logged, exported as `netfabric_store_state_valid 0` and
//!   reported to `status`; the maps keep the last valid state.

pub mod health;
pub mod incremental;
pub mod links;
pub mod lock;
pub mod nat;
pub mod plan;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;

use incremental::{IncrementalPlan, Touched};
pub use plan::{HostPlan, Op, Runtime, TouchedKeys};

use crate::{
    Datapath, DatapathError, conventions,
    datapath::{self, LoadOptions},
    observe::metrics::{AgentMetrics, DatapathCollector, ServiceLabels},
    port,
    state::{Changes, Object, State},
    store::{FeedItem, Store, StoreError, Update},
};
use lock::{AgentLock, AgentReport};

/// What one agent runs with (the CLI builds it from `netfabric agent`'s
/// options).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This host's name in the desired state (checked there when the host
    /// has no pins yet).
    pub host: String,
    /// The network namespace to join before any datapath work (a lab host:
    /// /run/netns/nf-h1); `None` stays in the current one.
    pub netns: Option<PathBuf>,
    /// The bpffs mount; maps and links go under `<bpffs>/netfabric/<host>/`.
    pub bpffs: PathBuf,
    /// Where Prometheus `/metrics` is served (bound before joining
    /// `netns`); `None` serves nothing.
    pub metrics_addr: Option<String>,
    /// On exit, detach the programs and remove every pin of this host.
    pub detach_on_exit: bool,
    /// How often container ports are rescanned (at least 10 ms).
    pub rescan_interval: Duration,
    /// Maps only: keep the pinned maps equal to the desired state but attach
    /// nothing (no uplink XDP, no container ports, no interface scans; the
    /// plan has no uplink and no local ports). For scale tests (hundreds of
    /// agents on one machine) and dry runs; such a host forwards nothing.
    pub maps_only: bool,
    /// The DNS server at the gateway (`crate::dns`); `None` serves none.
    pub dns: Option<crate::dns::DnsConfig>,
}

/// The agent was asked to create the pins of a host the store does not
/// know: refused input, nothing was created.
#[derive(Debug, thiserror::Error)]
#[error("--host {host}: unknown host in the store {store} (known: {known})")]
pub struct UnknownHost {
    pub host: String,
    pub store: String,
    /// The hosts the store knows, comma-separated, or `none`.
    pub known: String,
}

/// Runs the agent of `config.host` on the desired state of `store` until
/// SIGTERM or SIGINT: takes the host's lock, binds `/metrics`, joins the
/// namespace, then reconciles.
///
/// The caller opens the store before: a cluster store's client thread (and
/// so its sockets) stays in the namespace the agent was started in, the
/// management network, while the datapath work happens in `config.netns`.
/// Opening never needs the store to be reachable: an agent started while
/// etcd is down adopts its pinned maps and waits (fail static).
pub fn run(config: AgentConfig, store: Box<dyn Store>) -> anyhow::Result<()> {
    let pin_dir = conventions::pin_dir(&config.bpffs, &config.host);
    let lock = AgentLock::acquire(Path::new(lock::RUN_DIR), &pin_dir, &config.host)?;
    if !pin_dir.exists() {
        // Nothing pinned yet: loading would create the pins of whatever
        // --host says. Only for a host the store knows.
        let snapshot = store.load().with_context(|| {
            format!(
                "{} has no pins yet: reading the store to check that host {} exists",
                pin_dir.display(),
                config.host
            )
        })?;
        if snapshot.state.host(&config.host).is_none() {
            let known: Vec<&str> = snapshot
                .state
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect();
            return Err(UnknownHost {
                host: config.host.clone(),
                store: store.url().to_owned(),
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            }
            .into());
        }
    }
    let metrics_listener = match config.metrics_addr.as_deref() {
        None => None,
        // A taken port must not stop the agent from enforcing policy: it
        // runs without /metrics (Prometheus shows the target down).
        Some(addr) => match crate::observe::metrics::bind(addr) {
            Ok(l) => Some(l),
            Err(e) if e.is::<std::io::Error>() || e.chain().any(|c| c.is::<std::io::Error>()) => {
                tracing::error!(error = %crate::error_message(&e), "/metrics is not served");
                None
            }
            Err(e) => return Err(e),
        },
    };
    if let Some(ns) = &config.netns {
        // Before any other thread of ours exists: every thread made later
        // inherits it.
        port::netns::enter(ns).with_context(|| format!("joining {}", ns.display()))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(run_async(config, store, metrics_listener, lock))
}

/// Counters of the agent's own work.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub reconciles: u64,
    pub errors: u64,
    pub map_full: u64,
}

/// What the store sent that the maps do not follow yet.
enum Pending {
    /// A whole state.
    Whole(State),
    /// Changes of the planner's state.
    Changes(Changes),
}

/// Does `changes` add, change or remove a host or a zone?
fn touches_hosts(changes: &Changes) -> bool {
    changes.iter().any(|c| {
        [&c.before, &c.after]
            .into_iter()
            .flatten()
            .any(|o| matches!(o, Object::Host(_) | Object::Zone(_)))
    })
}

struct Agent {
    host: String,
    maps_only: bool,
    pin_dir: PathBuf,
    dp: Datapath,
    current: HostPlan,
    /// Ports whose TC links are in place in this process: octet → ifindex.
    ports: BTreeMap<u8, u32>,
    /// The services' backends' health as the health board last said
    /// ((backend, health port) → false for each one reported down;
    /// absent: healthy, docs/health-checks.md).
    health: plan::Health,
    uplink: Option<(String, u32)>,
    /// A desired state received and not planned yet.
    pending: Option<Pending>,
    /// The plan of the last state planned (and that state).
    planner: Option<IncrementalPlan>,
    /// Whether the maps hold the planner's plan (`current` equals it: the
    /// last reconcile applied every operation), so that a change needs to
    /// look only at the keys it touches.
    in_sync: bool,
    stats: Stats,
    metrics: AgentMetrics,
    /// (program, interface) pairs exported as attached.
    published_programs: BTreeSet<(&'static str, String)>,
    nl: rtnetlink::Handle,
    lock: AgentLock,
    report: AgentReport,
    /// The egress NAT ruleset installed last (`None`: none installed by
    /// this process; a stale one of an earlier run is replaced whole).
    nat: Option<nat::NatConfig>,
    /// When the installed table was last checked for presence (someone
    /// flushing the host's ruleset must not cut egress until a restart).
    nat_checked: Option<std::time::Instant>,
    /// When `CONNECTIONS` was last counted for /metrics (the programs fill
    /// it; counting reads the whole table, so at most every
    /// [`CONNECTIONS_COUNT_EVERY`]).
    connections_counted: Option<std::time::Instant>,
}

/// How often the agent counts `CONNECTIONS` for `netfabric_map_entries`.
const CONNECTIONS_COUNT_EVERY: Duration = Duration::from_secs(5);

async fn run_async(
    config: AgentConfig,
    store: Box<dyn Store>,
    metrics_listener: Option<std::net::TcpListener>,
    lock: AgentLock,
) -> anyhow::Result<()> {
    let pin_dir = conventions::pin_dir(&config.bpffs, &config.host);
    let dp = Datapath::load(&LoadOptions {
        pin_dir: Some(pin_dir.clone()),
        ..LoadOptions::default()
    })
    .with_context(|| format!("loading the datapath pinned under {}", pin_dir.display()))?;
    let current = read_maps(&dp).context("reading the pinned maps")?;
    tracing::info!(
        host = %config.host,
        pin_dir = %pin_dir.display(),
        endpoints = current.endpoints.len(),
        group_pairs = current.group_pairs.len(),
        local_ports = current.local_ports.len(),
        metrics_addr = config.metrics_addr.as_deref().unwrap_or(""),
        "agent started; adopted the pinned maps"
    );
    let metrics = AgentMetrics::default();
    // Like /metrics: a DNS server that cannot start must not stop the agent.
    // A maps-only agent has no containers to answer (and hundreds of them
    // share one machine's 169.254.1.1:53 in scale tests).
    let dns = config
        .dns
        .as_ref()
        .filter(|_| !config.maps_only)
        .and_then(|c| {
            crate::dns::DnsServer::start(c, &config.host, metrics.dns.clone())
                .inspect_err(|e| tracing::error!(error = %e, "DNS is not served"))
                .ok()
        });
    let nl = port::connect().context("netlink")?;
    let mut agent = Agent {
        host: config.host.clone(),
        maps_only: config.maps_only,
        pin_dir: pin_dir.clone(),
        dp,
        current,
        ports: BTreeMap::new(),
        health: plan::Health::new(),
        uplink: None,
        pending: None,
        planner: None,
        in_sync: false,
        stats: Stats::default(),
        metrics: metrics.clone(),
        published_programs: BTreeSet::new(),
        nl,
        lock,
        report: AgentReport {
            pid: std::process::id(),
            host: config.host.clone(),
            state_valid: true,
            dns: dns.as_ref().map(crate::dns::DnsServer::summary),
            ..AgentReport::default()
        },
        nat: None,
        nat_checked: None,
        connections_counted: None,
    };
    agent.publish_report();
    agent.publish_maps();
    if !config.maps_only {
        // Replace the programs of already pinned links right away (upgrade).
        agent.adopt_links().await;
    }

    let (tx, mut rx) = tokio::sync::mpsc::channel::<FeedItem>(4);
    let watch = store.watch(0).context("watching the store")?;
    // The health board's view (docs/health-checks.md) feeds the plan's
    // health input: a backend some current report says is down gets no new
    // flows. Without a board every backend counts as healthy; a board that
    // fails is logged, never fatal (fail static: the last view stays).
    let (health_tx, mut health_rx) = tokio::sync::mpsc::channel::<crate::health::HealthView>(1);
    let health_feeder = if config.maps_only {
        None
    } else {
        match crate::store::health_board::open(&store.url()).and_then(|b| b.watch()) {
            Ok(board) => Some(tokio::task::spawn_blocking(move || {
                let mut last_error = None;
                while !health_tx.is_closed() {
                    match board.recv_timeout(Duration::from_millis(200)) {
                        Some(Ok(view)) => {
                            last_error = None;
                            if health_tx.blocking_send(view).is_err() {
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            let text = e.to_string();
                            if last_error.as_ref() != Some(&text) {
                                tracing::warn!(error = %text, "reading the health board; keeping the last view");
                                last_error = Some(text);
                            }
                        }
                        None => {}
                    }
                }
            })),
            Err(e) => {
                tracing::error!(error = %e, "no health board: every service backend counts as healthy");
                None
            }
        }
    };
    // Whether the store is reachable (fail static: while it is not, the maps
    // keep the last state applied). For `netfabric_store_up` and `status`.
    let store_health = watch.health();
    // The names of the services' series in /metrics, from the state applied.
    let service_labels = std::sync::Arc::new(std::sync::RwLock::new(ServiceLabels::default()));
    if let Some(listener) = metrics_listener {
        let collector = match DatapathCollector::open(&pin_dir, service_labels.clone()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "no datapath counters in /metrics");
                None
            }
        };
        let registry = metrics.registry(collector, Some(store_health.clone()));
        tokio::spawn(async move {
            if let Err(e) = crate::observe::metrics::serve(listener, registry).await {
                tracing::error!(error = %e, "the metrics server stopped");
            }
        });
    }
    let feeder = tokio::task::spawn_blocking(move || {
        while !tx.is_closed() {
            // The updates waiting merged into one: a burst of changes
            // costs one plan per round the agent can keep up with.
            match watch.recv_updates_timeout(Duration::from_millis(200)) {
                Some(Err(e @ StoreError::Unavailable { .. })) => tracing::warn!(
                    error = %e,
                    "store unreachable; enforcing the last state applied until it is back"
                ),
                // A state, or a state that cannot be used (invalid,
                // unreadable): the main loop decides.
                Some(item) => {
                    let Ok(()) = tx.blocking_send(item) else {
                        break;
                    };
                }
                None => {}
            }
        }
    });
    tracing::debug!(store_up = store_health.is_up(), "watching the store");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let mut rescan = tokio::time::interval(config.rescan_interval.max(Duration::from_millis(10)));
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                // The store validated it (a watch delivers valid states only).
                Some(Ok(update)) => {
                    let revision = update.revision();
                    tracing::info!(revision, "desired state");
                    agent.receive(update);
                    agent.accepted(revision);
                    agent.reconcile().await;
                    if let (Some(dns), Some(state)) = (&dns, agent.desired_state()) {
                        dns.publish(state, revision);
                    }
                    if let Some(state) = agent.desired_state() {
                        let labels = ServiceLabels::of_state(state);
                        if let Ok(mut l) = service_labels.write() {
                            *l = labels;
                        }
                    }
                }
                Some(Err(e)) => agent.refused(&e, None),
                None => break,
            },
            Some(view) = health_rx.recv() => {
                if agent.set_health(&view) {
                    agent.reconcile().await;
                }
            }
            _ = rescan.tick(), if !config.maps_only => agent.reconcile().await,
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT"); break; }
            _ = term.recv() => { tracing::info!("SIGTERM"); break; }
        }
    }
    drop(rx);
    let _ = feeder.await;
    drop(health_rx);
    if let Some(f) = health_feeder {
        let _ = f.await;
    }
    if config.detach_on_exit {
        links::remove_all(&pin_dir).with_context(|| format!("removing {}", pin_dir.display()))?;
        tracing::info!(pin_dir = %pin_dir.display(), "detached: links and pins removed");
    } else {
        tracing::info!("exiting; the datapath keeps running on its pinned links and maps");
    }
    Ok(())
}

impl Agent {
    /// Takes the health board's view as the plan's health input; whether it
    /// changed.
    fn set_health(&mut self, view: &crate::health::HealthView) -> bool {
        let health: plan::Health = view.down_set().into_iter().map(|k| (k, false)).collect();
        if health == self.health {
            return false;
        }
        tracing::info!(down = ?health.keys().collect::<Vec<_>>(), "service backends' health");
        self.health = health;
        true
    }

    /// A valid desired state at `revision` is now what the maps follow.
    fn accepted(&mut self, revision: u64) {
        if !self.report.state_valid {
            tracing::warn!(revision, "the store holds a valid state again; applying it");
        }
        self.metrics.state_valid.set(1);
        self.metrics
            .state_revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
        self.report.state_valid = true;
        self.report.invalid_reason = None;
        self.report.enforced_revision = Some(revision);
        self.publish_report();
    }

    /// The store holds a state that cannot be applied: keep enforcing the
    /// last valid one, and say so everywhere (log, metric, `status`).
    fn refused(&mut self, error: &StoreError, revision: Option<u64>) {
        tracing::error!(
            error = %error,
            refused_revision = ?revision,
            enforced_revision = ?self.report.enforced_revision,
            "REFUSED the desired state from the store (invalid or unreadable); \
             the datapath keeps enforcing the last valid state"
        );
        self.metrics.state_valid.set(0);
        self.report.state_valid = false;
        self.report.invalid_reason = Some(error.to_string());
        self.publish_report();
    }

    fn publish_report(&mut self) {
        self.report.at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if let Err(e) = self.lock.report(&self.report) {
            tracing::warn!(error = %e, "the report for `netfabric status` was not written");
        }
    }

    /// Replaces the programs of pinned links whose interface is unchanged.
    async fn adopt_links(&mut self) {
        let Some(host) = self.current.host else {
            return;
        };
        let names = match port::links(&self.nl).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "listing interfaces");
                return;
            }
        };
        for (name, ifindex, _) in &names {
            if *ifindex == host.uplink_ifindex
                && (conventions::uplink_link_pin(&self.pin_dir).exists()
                    || conventions::uplink_tc_link_pin(&self.pin_dir).exists())
            {
                match links::attach_uplink(&mut self.dp, &self.pin_dir, name, true) {
                    Ok(how) => {
                        tracing::info!(uplink = %name, ?how, "uplink program replaced");
                        self.uplink = Some((name.clone(), *ifindex));
                    }
                    Err(e) => self.error(&format!("adopting the uplink link of {name}: {e}")),
                }
            }
        }
        self.rescan_ports(&names).await;
    }

    fn error(&mut self, msg: &str) {
        self.stats.errors += 1;
        self.metrics.reconcile_errors.inc();
        tracing::error!("{msg}");
    }

    /// Map occupancy (what this agent wrote) and attached programs, for
    /// /metrics.
    fn publish_maps(&mut self) {
        use netfabric_common as c;
        use plan::DesiredMap as _;
        let p = &self.current;
        let m = &self.metrics;
        m.set_map(plan::Zones::NAME, p.zones.len(), c::ZONE_BY_PREFIX_ENTRIES);
        m.set_map(
            plan::Endpoints::NAME,
            p.endpoints.len(),
            c::ENDPOINTS_ENTRIES,
        );
        m.set_map(
            plan::NextHops::NAME,
            p.next_hops.len(),
            c::NEXT_HOPS_ENTRIES,
        );
        m.set_map(
            plan::ZoneGateways::NAME,
            p.gateways.len(),
            c::ZONE_GATEWAYS_ENTRIES,
        );
        m.set_map(
            plan::LocalPorts::NAME,
            p.local_ports.len(),
            c::LOCAL_PORTS_ENTRIES,
        );
        m.set_map(
            c::HOST_CONFIG,
            usize::from(p.host.is_some()),
            c::HOST_CONFIG_ENTRIES,
        );
        m.set_map(
            plan::GroupPairs::NAME,
            p.group_pairs.len(),
            self.dp.group_pairs_capacity(),
        );
        m.set_map(
            plan::ServicePorts::NAME,
            p.service_ports.len(),
            c::SERVICE_PORTS_ENTRIES,
        );
        m.set_map(
            plan::ServiceTables::NAME,
            p.service_tables.len(),
            c::SERVICE_TABLES_ENTRIES,
        );
        m.set_map(
            plan::OwnerGroupsMap::NAME,
            p.owner_groups.len(),
            c::OWNER_GROUPS_ENTRIES,
        );
        m.set_map(
            plan::PortScopes::NAME,
            p.port_scopes.len(),
            c::PORT_SCOPES_ENTRIES,
        );
        if self
            .connections_counted
            .is_none_or(|at| at.elapsed() >= CONNECTIONS_COUNT_EVERY)
        {
            self.connections_counted = Some(std::time::Instant::now());
            match self.dp.connection_count() {
                Ok(n) => m.set_map(c::CONNECTIONS, n, c::CONNECTIONS_ENTRIES),
                Err(e) => tracing::warn!(error = %e, "counting CONNECTIONS for /metrics"),
            }
        }
        let mut attached = BTreeSet::new();
        if let Some((name, _)) = &self.uplink {
            attached.insert((datapath::PROG_FROM_UPLINK, name.clone()));
            attached.insert((datapath::PROG_FROM_UPLINK_TC, name.clone()));
        }
        if let Some(host) = self.current.host {
            for &octet in self.ports.keys() {
                let addr = host.zone_prefix | host.host_octet << 8 | u32::from(octet);
                let port = conventions::port_name(Ipv4Addr::from(addr));
                attached.insert((datapath::PROG_FROM_CONTAINER, port.clone()));
                attached.insert((datapath::PROG_TO_CONTAINER, port));
            }
        }
        for (prog, iface) in self.published_programs.difference(&attached) {
            m.set_attached(prog, iface, false);
        }
        for (prog, iface) in &attached {
            m.set_attached(prog, iface, true);
        }
        self.published_programs = attached;
    }

    /// Attaches TC to the ports of this host's containers; returns the
    /// ports that are ready.
    async fn rescan_ports(&mut self, names: &[(String, u32, bool)]) {
        let wanted: BTreeSet<u8> = match self.desired_state() {
            Some(s) => s
                .containers_on(&self.host)
                .map(|c| c.address.octets()[3])
                .collect(),
            // Before the first state: adopt what the maps say is there.
            None => self.current.local_ports.keys().copied().collect(),
        };
        let present: BTreeMap<u8, (&str, u32, bool)> = names
            .iter()
            .filter_map(|(n, i, up)| Some((conventions::port_octet(n)?, (n.as_str(), *i, *up))))
            .collect();
        // Vanished or re-created interfaces.
        self.ports
            .retain(|o, i| present.get(o).map(|p| p.1) == Some(*i));
        for port in links::pinned_ports(&self.pin_dir) {
            if conventions::port_octet(&port).is_none_or(|o| !present.contains_key(&o)) {
                links::remove_port_pins(&self.pin_dir, &port);
            }
        }
        for (&octet, &(name, ifindex, up)) in &present {
            if !wanted.contains(&octet) {
                continue;
            }
            if self.ports.get(&octet) != Some(&ifindex) {
                let adopt =
                    self.current.local_ports.get(&octet).map(|p| p.ifindex) == Some(ifindex);
                match links::attach_port(&mut self.dp, &self.pin_dir, name, adopt) {
                    Ok(how) => {
                        tracing::info!(port = name, ifindex, ?how, "port programs attached");
                        self.ports.insert(octet, ifindex);
                    }
                    Err(e) => {
                        self.error(&format!("attaching TC to {name}: {e}"));
                        continue;
                    }
                }
            }
            if !up && self.current.local_ports.get(&octet).map(|p| p.ifindex) == Some(ifindex) {
                // Up only once the programs and LOCAL_PORTS are in place.
                if let Err(e) = port::set_up(&self.nl, ifindex).await {
                    self.error(&format!("bringing {name} up: {e}"));
                } else {
                    tracing::info!(port = name, "port up");
                }
            }
        }
    }

    async fn reconcile(&mut self) {
        // Maps only: no interfaces looked at, so no ports and no uplink.
        let names = if self.maps_only {
            Vec::new()
        } else {
            match port::links(&self.nl).await {
                Ok(l) => l,
                Err(e) => return self.error(&format!("listing interfaces: {e}")),
            }
        };
        if !self.maps_only {
            self.rescan_ports(&names).await;
        }
        let Some(state) = self.desired_state() else {
            return;
        };
        let Some(host) = state.host(&self.host) else {
            if self.planner.is_some() || self.stats.reconciles == 0 {
                tracing::warn!(host = %self.host, "this host is not in the desired state; waiting");
                if !self.maps_only {
                    // The host went away: so does its egress NAT.
                    match nat::remove() {
                        Ok(()) => self.nat = None,
                        Err(e) => self.error(&format!("removing the egress NAT: {e}")),
                    }
                }
            }
            // Planned again in full once the host is back.
            self.planner = None;
            self.stats.reconciles += 1;
            return;
        };
        let uplink_name = host.uplink.clone();
        let nat_wanted = nat::NatConfig {
            host_subnet: host.subnet,
            uplink: host.uplink.clone(),
            zones: state.zones.iter().map(|z| z.prefix).collect(),
        };
        let uplink_ifindex = if self.maps_only {
            Some(0)
        } else {
            names.iter().find(|n| n.0 == uplink_name).map(|n| n.1)
        };
        let Some(uplink_ifindex) = uplink_ifindex else {
            return self.error(&format!("uplink {uplink_name} not found"));
        };
        if !self.maps_only
            && self.nat.is_some()
            && self
                .nat_checked
                .is_none_or(|at| at.elapsed() >= nat::CHECK_EVERY)
        {
            self.nat_checked = Some(std::time::Instant::now());
            if matches!(nat::listed(), Ok(None)) {
                tracing::warn!("the egress NAT table is gone; installing it again");
                self.nat = None;
            }
        }
        if !self.maps_only && self.nat.as_ref() != Some(&nat_wanted) {
            match nat::install(&nat_wanted) {
                Ok(()) => {
                    tracing::info!(uplink = %nat_wanted.uplink, "egress NAT installed");
                    self.nat = Some(nat_wanted);
                }
                Err(e) => self.error(&format!("installing the egress NAT: {e}")),
            }
        }
        let rt = Runtime {
            uplink_ifindex,
            ready_ports: self.ports.clone(),
            health: self.health.clone(),
        };
        let started = std::time::Instant::now();
        // The state a change replaces is freed after the map writes.
        let mut replaced = None;
        let touched = match (self.pending.take(), self.planner.as_mut()) {
            (Some(Pending::Whole(next)), Some(planner)) => planner.update(next, &rt).map(|u| {
                replaced = Some(u.previous);
                u.touched
            }),
            (Some(Pending::Changes(changes)), Some(planner)) => {
                planner.update_changes(&changes, &rt).map(|u| u.touched)
            }
            (Some(Pending::Whole(next)), None) => {
                IncrementalPlan::new(next, &self.host, rt).map(|planner| {
                    self.planner = Some(planner);
                    Touched::All
                })
            }
            (Some(Pending::Changes(_)), None) => return,
            (None, Some(planner)) if *planner.runtime() != rt => {
                Ok(Touched::Keys(planner.update_runtime(&rt)))
            }
            (None, Some(_)) => Ok(Touched::Keys(TouchedKeys::default())),
            (None, None) => return,
        };
        let touched = match touched {
            Ok(t) => t,
            Err(e) => {
                self.planner = None;
                return self.error(&format!("planning: {e}"));
            }
        };
        let Some(planner) = &self.planner else { return };
        let desired = planner.plan();
        if touched == Touched::Keys(TouchedKeys::default())
            && (self.uplink.is_some() || self.maps_only)
        {
            // Nothing new; retry failed operations only when something changes.
            self.bring_ports_up(&names).await;
            self.publish_maps();
            return;
        }
        let ops = match &touched {
            Touched::Keys(keys) if self.in_sync => self.current.diff_keys(desired, keys),
            _ => self.current.diff(desired),
        };
        let (mut applied, mut failed) = (0usize, 0usize);
        for op in &ops {
            let failed_before = failed;
            match apply(&mut self.dp, op) {
                Ok(()) => {
                    self.current.record(op);
                    applied += 1;
                }
                Err(DatapathError::MapFull { name, capacity }) => {
                    failed += 1;
                    self.stats.map_full += 1;
                    self.stats.errors += 1;
                    self.metrics.map_full(name);
                    self.metrics.reconcile_errors.inc();
                    tracing::error!(
                        map = name,
                        capacity,
                        ?op,
                        "map full: entry not added (fail closed)"
                    );
                }
                Err(e) => {
                    failed += 1;
                    self.error(&format!("applying {op:?}: {e}"));
                }
            }
            if failed > failed_before && matches!(op, Op::PortScope(plan::Change::Set { .. })) {
                // An absent scope leaves its pair open: nothing that opens
                // (a flag, a pair, an endpoint) may follow it. The next
                // change diffs in full and tries again.
                tracing::error!(
                    ?op,
                    "a port scope could not be written: the rest of this change is not applied"
                );
                break;
            }
        }
        self.stats.reconciles += 1;
        self.metrics.reconciles.inc();
        self.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        if !ops.is_empty() {
            tracing::info!(applied, failed, took = ?started.elapsed(), "reconciled");
        }
        self.in_sync = failed == 0;
        drop(replaced);
        if !self.maps_only && self.uplink.as_ref().map(|u| u.1) != Some(uplink_ifindex) {
            let adopt = false;
            match links::attach_uplink(&mut self.dp, &self.pin_dir, &uplink_name, adopt) {
                Ok(how) => {
                    tracing::info!(uplink = %uplink_name, ?how, "uplink program attached");
                    self.uplink = Some((uplink_name, uplink_ifindex));
                }
                Err(e) => self.error(&format!("attaching XDP to {uplink_name}: {e}")),
            }
        }
        self.bring_ports_up(&names).await;
        self.publish_maps();
    }

    /// Takes an update from the store in: kept until the next reconcile
    /// plans it (merged with one not planned yet).
    fn receive(&mut self, update: Update) {
        self.pending = Some(match (self.pending.take(), update) {
            (_, Update::Whole(s)) => Pending::Whole(s.state),
            (Some(Pending::Whole(mut state)), Update::Changed { changes, .. }) => {
                state.apply_changes(&changes);
                Pending::Whole(state)
            }
            (Some(Pending::Changes(mut earlier)), Update::Changed { changes, .. }) => {
                earlier.merge(changes);
                Pending::Changes(earlier)
            }
            (None, Update::Changed { changes, .. }) => match &self.planner {
                // Hosts and zones decide whether this host plans at all:
                // such a change is taken as a whole state (it is rare).
                Some(_) if !touches_hosts(&changes) => Pending::Changes(changes),
                Some(planner) => {
                    let mut state = planner.state().clone();
                    state.apply_changes(&changes);
                    Pending::Whole(state)
                }
                None => {
                    // A feed starts with a whole state, and a state without
                    // this host stays pending whole: nothing to apply to.
                    tracing::error!("a change arrived before any state; ignored");
                    return;
                }
            },
        });
    }

    /// The state to plan: the one received last (a change not planned yet
    /// names no host or zone: the planner's state answers for those).
    fn desired_state(&self) -> Option<&State> {
        match &self.pending {
            Some(Pending::Whole(state)) => Some(state),
            _ => self.planner.as_ref().map(IncrementalPlan::state),
        }
    }

    async fn bring_ports_up(&mut self, names: &[(String, u32, bool)]) {
        for (name, ifindex, up) in names {
            let Some(octet) = conventions::port_octet(name) else {
                continue;
            };
            if !*up
                && self.ports.get(&octet) == Some(ifindex)
                && self.current.local_ports.get(&octet).map(|p| p.ifindex) == Some(*ifindex)
            {
                match port::set_up(&self.nl, *ifindex).await {
                    Ok(()) => tracing::info!(port = %name, "port up"),
                    Err(e) => self.error(&format!("bringing {name} up: {e}")),
                }
            }
        }
    }
}

/// Applies one operation to the maps.
pub fn apply(dp: &mut Datapath, op: &Op) -> Result<(), DatapathError> {
    op.apply(dp)
}

/// What the (adopted) maps hold, as a plan ([`HostPlan::read`]).
pub fn read_maps(dp: &Datapath) -> Result<HostPlan, DatapathError> {
    HostPlan::read(dp)
}
