//! The agent's Prometheus metrics (`prometheus-client`), served as the
//! Prometheus text format (0.0.4) on `GET /metrics`.
//!
//! Per-packet counters stay in the kernel (per-CPU `COUNTERS`); a custom
//! [`Collector`] sums them over CPUs at scrape time, so no userspace work
//! happens per packet. Every (direction, verdict, reason) series is exported
//! from the start, zeros included, so that `increase()` sees the first drop.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `netfabric_packets_total`, `netfabric_bytes_total` | counter | `direction`, `verdict`, `reason` |
//! | `netfabric_monitor_events_lost_total` | counter | |
//! | `netfabric_connections_created_total` | counter | |
//! | `netfabric_service_packets_total`, `netfabric_service_bytes_total` | counter | `service`, `owner`, `backend` |
//! | `netfabric_map_entries`, `netfabric_map_capacity` | gauge | `map` |
//! | `netfabric_map_full_total` | counter | `map` |
//! | `netfabric_reconciles_total`, `netfabric_reconcile_errors_total` | counter | |
//! | `netfabric_reconcile_duration_seconds` | histogram | |
//! | `netfabric_store_up` | gauge | |
//! | `netfabric_store_state_valid` | gauge | |
//! | `netfabric_store_state_revision` | gauge | |
//! | `netfabric_store_outages_total` | counter | |
//! | `netfabric_program_attached` | gauge | `program`, `interface` |
//! | `netfabric_dns_queries_total` | counter | `protocol` (`udp`, `tcp`) |
//! | `netfabric_dns_responses_total` | counter | `outcome` ([`DnsOutcome`]) |

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::{Arc, RwLock},
};

use aya::maps::MapData;
use netfabric_common::{self as common, Direction, DropReason, Forward, Verdict};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use super::{ObserveError, pins};
use crate::datapath::{CounterSnapshot, batch, maps::service_counters::service_counters_from_raw};
use crate::state::State;
use crate::store::StoreHealth;

/// The `map` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabel {
    pub map: String,
}

/// The `program` and `interface` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProgramLabels {
    pub program: String,
    pub interface: String,
}

/// The `protocol` label of DNS queries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsProtocolLabel {
    pub protocol: &'static str,
}

/// How the agent's DNS server answered a query (the `outcome` label).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DnsOutcome {
    /// A record of ours (A, PTR, SOA).
    Answer,
    /// A name of ours visible to the asker, without records of that type.
    NoData,
    /// Not a name of ours for this asker (absent or not visible).
    NxDomain,
    /// The source is not a container of this host nor the host, or a
    /// name for upstream when there is none.
    Refused,
    /// Forwarded, and the upstream resolvers answered (records or not).
    Forwarded,
    /// Forwarded, and no usable answer came back (SERVFAIL).
    UpstreamFailed,
    /// Not one question of class IN, or not a query (FORMERR, NOTIMP).
    Malformed,
}

impl DnsOutcome {
    pub const ALL: [DnsOutcome; 7] = [
        DnsOutcome::Answer,
        DnsOutcome::NoData,
        DnsOutcome::NxDomain,
        DnsOutcome::Refused,
        DnsOutcome::Forwarded,
        DnsOutcome::UpstreamFailed,
        DnsOutcome::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DnsOutcome::Answer => "answer",
            DnsOutcome::NoData => "nodata",
            DnsOutcome::NxDomain => "nxdomain",
            DnsOutcome::Refused => "refused",
            DnsOutcome::Forwarded => "forwarded",
            DnsOutcome::UpstreamFailed => "upstream_failed",
            DnsOutcome::Malformed => "malformed",
        }
    }
}

/// The `outcome` label of DNS responses.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsOutcomeLabel {
    pub outcome: &'static str,
}

/// The DNS server's counters; cheap to clone (shared atomics).
#[derive(Clone, Debug, Default)]
pub struct DnsMetrics {
    pub queries: Family<DnsProtocolLabel, Counter>,
    pub responses: Family<DnsOutcomeLabel, Counter>,
}

impl DnsMetrics {
    /// Every series from the start, zeros included (so `increase()` sees
    /// the first one).
    pub fn new() -> Self {
        let m = DnsMetrics::default();
        for protocol in ["udp", "tcp"] {
            m.queries
                .get_or_create(&DnsProtocolLabel { protocol })
                .inc_by(0);
        }
        for o in DnsOutcome::ALL {
            m.responses
                .get_or_create(&DnsOutcomeLabel {
                    outcome: o.as_str(),
                })
                .inc_by(0);
        }
        m
    }

    /// One query received over `protocol` (`udp` or `tcp`).
    pub fn query(&self, protocol: &'static str) {
        self.queries
            .get_or_create(&DnsProtocolLabel { protocol })
            .inc();
    }

    /// One response of this outcome.
    pub fn response(&self, outcome: DnsOutcome) {
        self.responses
            .get_or_create(&DnsOutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// The same series, each looked up once: a server counts every query,
    /// and a lookup in a family takes a lock and hashes the labels.
    pub fn counters(&self) -> DnsCounters {
        let query = |protocol| {
            self.queries
                .get_or_create(&DnsProtocolLabel { protocol })
                .clone()
        };
        DnsCounters {
            udp: query("udp"),
            tcp: query("tcp"),
            responses: DnsOutcome::ALL.map(|o| {
                self.responses
                    .get_or_create(&DnsOutcomeLabel {
                        outcome: o.as_str(),
                    })
                    .clone()
            }),
        }
    }
}

/// The series of [`DnsMetrics`], shared with it (a count here shows in
/// its families).
#[derive(Clone, Debug)]
pub struct DnsCounters {
    udp: Counter,
    tcp: Counter,
    /// In the order of [`DnsOutcome::ALL`].
    responses: [Counter; DnsOutcome::ALL.len()],
}

impl DnsCounters {
    /// One query received over UDP (`tcp` false) or TCP.
    pub fn query(&self, tcp: bool) {
        if tcp { &self.tcp } else { &self.udp }.inc();
    }

    /// One response of this outcome.
    pub fn response(&self, outcome: DnsOutcome) {
        self.responses[outcome as usize].inc();
    }
}

/// The metrics the agent updates as it works; cheap to clone (shared
/// atomics).
#[derive(Clone, Debug)]
pub struct AgentMetrics {
    pub reconciles: Counter,
    pub reconcile_errors: Counter,
    pub reconcile_duration: Histogram,
    pub map_full: Family<MapLabel, Counter>,
    pub map_entries: Family<MapLabel, Gauge>,
    pub map_capacity: Family<MapLabel, Gauge>,
    pub program_attached: Family<ProgramLabels, Gauge>,
    /// 1 while the last state read from the store was valid; 0 while the
    /// agent refuses it and keeps enforcing the last valid one.
    pub state_valid: Gauge,
    /// Revision of the state the maps are kept equal to.
    pub state_revision: Gauge,
    /// The DNS server's queries and responses.
    pub dns: DnsMetrics,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            reconciles: Counter::default(),
            reconcile_errors: Counter::default(),
            // 100 µs .. ~3 s.
            reconcile_duration: Histogram::new(exponential_buckets(0.0001, 4.0, 8)),
            map_full: Family::default(),
            map_entries: Family::default(),
            map_capacity: Family::default(),
            program_attached: Family::default(),
            state_valid: {
                let g = Gauge::default();
                g.set(1);
                g
            },
            state_revision: Gauge::default(),
            dns: DnsMetrics::new(),
        }
    }
}

impl AgentMetrics {
    /// Sets `netfabric_map_entries` / `netfabric_map_capacity` of `map`.
    pub fn set_map(&self, map: &str, entries: usize, capacity: u32) {
        let l = MapLabel {
            map: map.to_owned(),
        };
        self.map_entries.get_or_create(&l).set(entries as i64);
        self.map_capacity.get_or_create(&l).set(i64::from(capacity));
    }

    /// A map refused an entry (fail closed).
    pub fn map_full(&self, map: &str) {
        self.map_full
            .get_or_create(&MapLabel {
                map: map.to_owned(),
            })
            .inc();
    }

    /// Marks `program` attached (or not) on `interface`; a detached
    /// interface's series is removed.
    pub fn set_attached(&self, program: &str, interface: &str, attached: bool) {
        let l = ProgramLabels {
            program: program.to_owned(),
            interface: interface.to_owned(),
        };
        if attached {
            self.program_attached.get_or_create(&l).set(1);
        } else {
            self.program_attached.remove(&l);
        }
    }

    /// Registers these metrics (and the datapath collector, when given) in
    /// a new registry.
    pub fn registry(
        &self,
        datapath: Option<DatapathCollector>,
        store: Option<Arc<StoreHealth>>,
    ) -> Registry {
        let mut r = Registry::default();
        r.register(
            "netfabric_reconciles",
            "Reconcile passes that planned a new desired state for the maps",
            self.reconciles.clone(),
        );
        r.register(
            "netfabric_reconcile_errors",
            "Errors while reconciling (a map write, an attach, a missing uplink, a full map)",
            self.reconcile_errors.clone(),
        );
        r.register_with_unit(
            "netfabric_reconcile_duration",
            "Time to apply one reconcile's map changes",
            Unit::Seconds,
            self.reconcile_duration.clone(),
        );
        r.register(
            "netfabric_map_full",
            "Entries a full map refused; the entry was left out (fail closed)",
            self.map_full.clone(),
        );
        r.register(
            "netfabric_map_entries",
            "Entries the agent holds in each map",
            self.map_entries.clone(),
        );
        r.register(
            "netfabric_map_capacity",
            "Capacity (max entries) of each map",
            self.map_capacity.clone(),
        );
        r.register(
            "netfabric_program_attached",
            "1 for each datapath program attached to an interface",
            self.program_attached.clone(),
        );
        r.register(
            "netfabric_store_state_valid",
            "1 while the last desired state read from the store was valid; 0 while it is \
             refused and the last valid state is enforced instead",
            self.state_valid.clone(),
        );
        r.register(
            "netfabric_store_state_revision",
            "Store revision of the desired state the maps are kept equal to",
            self.state_revision.clone(),
        );
        r.register(
            "netfabric_dns_queries",
            "DNS queries the agent's resolver (169.254.1.1:53) received, by transport",
            self.dns.queries.clone(),
        );
        r.register(
            "netfabric_dns_responses",
            "DNS responses of the agent's resolver by outcome (answer, nodata, nxdomain, \
             refused, forwarded, upstream_failed, malformed)",
            self.dns.responses.clone(),
        );
        if let Some(c) = datapath {
            r.register_collector(Box::new(c));
        }
        if let Some(health) = store {
            r.register_collector(Box::new(StoreCollector(health)));
        }
        r
    }
}

/// `netfabric_store_up` and `netfabric_store_outages_total` from the store
/// watch's health, read at scrape time.
#[derive(Debug)]
pub struct StoreCollector(pub Arc<StoreHealth>);

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let up = ConstGauge::new(i64::from(self.0.is_up()));
        up.encode(encoder.encode_descriptor(
            "netfabric_store_up",
            "1 while the desired-state store is reachable (its watch is live), else 0",
            None,
            up.metric_type(),
        )?)?;
        let outages = ConstCounter::new(self.0.outages());
        outages.encode(encoder.encode_descriptor(
            "netfabric_store_outages",
            "Times the store became unreachable",
            None,
            outages.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Every (direction, verdict) pair the datapath can count.
pub fn all_verdicts() -> impl Iterator<Item = (Direction, Verdict)> {
    Direction::ALL.into_iter().flat_map(|d| {
        DropReason::ALL
            .into_iter()
            .map(Verdict::Dropped)
            .chain(Forward::ALL.into_iter().map(Verdict::Forwarded))
            .map(move |v| (d, v))
    })
}

/// The names the `SERVICE_COUNTERS` series are labelled with, from the
/// desired state the agent applies: service id → (service, owner), backend
/// address → container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceLabels {
    services: BTreeMap<u32, (String, String)>,
    backends: BTreeMap<Ipv4Addr, String>,
}

impl ServiceLabels {
    /// The labels of `state`'s services (bounded by the services: the
    /// containers are found by name in the sorted list, or by a scan when
    /// the list is not sorted).
    pub fn of_state(state: &State) -> Self {
        let mut out = ServiceLabels::default();
        let slots: BTreeMap<&str, u32> = state
            .zones
            .iter()
            .map(|z| (z.name.as_str(), z.slot))
            .collect();
        let sorted = state.containers.is_sorted_by(|a, b| a.name <= b.name);
        for svc in &state.services {
            let Some(&slot) = slots.get(svc.zone.as_str()) else {
                continue;
            };
            out.services.insert(
                common::service::service_id(slot, u32::from(svc.vip)),
                (svc.name.clone(), svc.owner.clone()),
            );
            for b in &svc.backends {
                let c = if sorted {
                    state
                        .containers
                        .binary_search_by(|c| c.name.cmp(&b.container))
                        .ok()
                        .map(|i| &state.containers[i])
                } else {
                    state.container(&b.container)
                };
                if let Some(c) = c {
                    out.backends.insert(c.address, c.name.clone());
                }
            }
        }
        out
    }
}

/// Sums the pinned per-CPU `COUNTERS` (and `SERVICE_COUNTERS`) at scrape
/// time.
#[derive(Debug)]
pub struct DatapathCollector {
    counters: MapData,
    /// `None`: pins of a datapath without services.
    service_counters: Option<MapData>,
    service_labels: Arc<RwLock<ServiceLabels>>,
}

impl DatapathCollector {
    /// Opens the pinned `COUNTERS` and `SERVICE_COUNTERS` of the host pinned
    /// at `pin_dir`; the services' series are labelled with what
    /// `service_labels` holds at scrape time.
    pub fn open(
        pin_dir: &Path,
        service_labels: Arc<RwLock<ServiceLabels>>,
    ) -> Result<Self, ObserveError> {
        let service_counters = pins::open(pin_dir, common::SERVICE_COUNTERS)
            .inspect_err(|e| tracing::warn!(error = %e, "no service counters in /metrics"))
            .ok();
        Ok(DatapathCollector {
            counters: pins::open(pin_dir, common::COUNTERS)?,
            service_counters,
            service_labels,
        })
    }

    /// `netfabric_service_packets_total` and `_bytes_total`: one series
    /// per (service, backend) the programs counted.
    fn encode_services(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(map) = &self.service_counters else {
            return Ok(());
        };
        let counters = match batch::read_all(map, common::SERVICE_COUNTERS) {
            Ok(raw) => service_counters_from_raw(&raw),
            Err(e) => {
                tracing::error!(error = %e, "reading SERVICE_COUNTERS for /metrics");
                return Ok(());
            }
        };
        let labels = self
            .service_labels
            .read()
            .map(|l| l.clone())
            .unwrap_or_default();
        for (name, help, pick) in [
            (
                "netfabric_service_packets",
                "Packets balanced to a service's backend at this host (clients of this host)",
                0usize,
            ),
            (
                "netfabric_service_bytes",
                "Bytes balanced to a service's backend at this host (clients of this host)",
                1,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (k, c) in &counters {
                let (service, owner) = labels
                    .services
                    .get(&k.service)
                    .cloned()
                    .unwrap_or_else(|| (format!("#{}", k.service), String::new()));
                let addr = Ipv4Addr::from(k.backend);
                let backend = labels
                    .backends
                    .get(&addr)
                    .cloned()
                    .unwrap_or_else(|| addr.to_string());
                let set = [
                    ("service", service.as_str()),
                    ("owner", owner.as_str()),
                    ("backend", backend.as_str()),
                ];
                let n = if pick == 0 { c.packets } else { c.bytes };
                ConstCounter::new(n).encode(family.encode_family(&set)?)?;
            }
        }
        Ok(())
    }
}

impl Collector for DatapathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = match batch::read_all(&self.counters, common::COUNTERS) {
            Ok(raw) => CounterSnapshot::from_raw(&raw),
            Err(e) => {
                // A failed read must not look like zero traffic: leave the
                // series out (Prometheus marks them stale) and say why.
                tracing::error!(error = %e, "reading COUNTERS for /metrics");
                return Ok(());
            }
        };
        let lost = snap.monitor_events_lost;
        for (name, help, pick) in [
            (
                "netfabric_packets",
                "Packets judged by the datapath, by direction, verdict and reason",
                0usize,
            ),
            (
                "netfabric_bytes",
                "Bytes judged by the datapath, by direction, verdict and reason",
                1,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (d, v) in all_verdicts() {
                let labels = [
                    ("direction", d.label()),
                    ("verdict", v.verdict_label()),
                    ("reason", v.reason_label()),
                ];
                let c = snap.get(d, v);
                let n = if pick == 0 { c.packets } else { c.bytes };
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        let created = ConstCounter::new(snap.connections_created);
        created.encode(encoder.encode_descriptor(
            "netfabric_connections_created",
            "Connections the datapath added to CONNECTIONS; created minus entries (the \
             CONNECTIONS netfabric_map_entries) minus expired ones is what the full table \
             evicted",
            None,
            created.metric_type(),
        )?)?;
        let lost_counter = ConstCounter::new(lost);
        lost_counter.encode(encoder.encode_descriptor(
            "netfabric_monitor_events_lost",
            "Drop events the ring buffer could not take (the monitor fell behind or none ran); \
             the drops themselves are still counted",
            None,
            lost_counter.metric_type(),
        )?)?;
        self.encode_services(&mut encoder)
    }
}

/// The Prometheus text of a registry.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::error!(error = %e, "encoding /metrics");
    }
    out
}

/// Binds the metrics listener (before the agent joins a network namespace,
/// so that a lab agent serves on the machine's loopback).
pub fn bind(addr: &str) -> anyhow::Result<std::net::TcpListener> {
    use anyhow::Context as _;
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("--metrics-addr {addr:?} is not an address:port"))?;
    let l = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the metrics address {addr}"))?;
    l.set_nonblocking(true)
        .context("making the metrics socket non-blocking")?;
    Ok(l)
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: std::net::TcpListener, registry: Registry) -> std::io::Result<()> {
    use axum::{Router, http::header, routing::get};
    let registry = Arc::new(registry);
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                        )],
                        encode(&registry),
                    )
                }
            }),
        )
        .route(
            "/",
            get(|| async { "netfabric agent: metrics at /metrics\n" }),
        );
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_counters_count_in_the_families() {
        let m = DnsMetrics::new();
        let c = m.counters();
        c.query(false);
        c.query(true);
        c.query(true);
        for o in DnsOutcome::ALL {
            c.response(o);
        }
        c.response(DnsOutcome::NxDomain);
        let queries = |protocol| {
            m.queries
                .get_or_create(&DnsProtocolLabel { protocol })
                .get()
        };
        assert_eq!((queries("udp"), queries("tcp")), (1, 2));
        for o in DnsOutcome::ALL {
            let got = m
                .responses
                .get_or_create(&DnsOutcomeLabel {
                    outcome: o.as_str(),
                })
                .get();
            let want = if o == DnsOutcome::NxDomain { 2 } else { 1 };
            assert_eq!(got, want, "{}", o.as_str());
        }
    }
}
