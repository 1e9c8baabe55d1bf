//! `netfabric maps dump`: the entries of one pinned map, decoded into names
//! and addresses. Empty array slots are left out; each entry carries both
//! the raw numbers (ids, indexes) and the names (`null` when the store does
//! not know them, e.g. a stale entry).

use std::{net::Ipv4Addr, path::Path};

use netfabric_common::{
    self as common, Endpoint, HostConfig, LocalPort, MonitorLease, NextHop, OwnerPair,
    conntrack::{PortScope, ScopedPair},
};
use serde::Serialize;

use super::{
    ObserveError,
    clock::Clock,
    names::{Names, or_id},
    pins,
};
use crate::{
    MacAddr,
    datapath::{
        CounterSnapshot,
        batch::{self, RawEntries, pod},
    },
    state::security::scope_rules,
};

type Result<T, E = ObserveError> = std::result::Result<T, E>;

/// A decoded map: JSON objects for scripts and a table for people.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub map: &'static str,
    pub json: Vec<serde_json::Value>,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Decoded {
    fn new(map: &'static str, header: &[&'static str]) -> Self {
        Decoded {
            map,
            json: Vec::new(),
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, json: impl Serialize, row: Vec<String>) {
        self.json
            .push(serde_json::to_value(json).expect("map rows serialize"));
        self.rows.push(row);
    }
}

fn mac(m: [u8; 6]) -> String {
    MacAddr(m).to_string()
}

fn opt(s: Option<&str>) -> String {
    s.unwrap_or("-").to_owned()
}

/// Reads and decodes the pinned map `name` of the host pinned at `pin_dir`.
pub fn dump(pin_dir: &Path, name: &str, names: &Names) -> Result<Decoded> {
    let name = pins::map_name(name)?;
    if name == common::DROP_EVENTS {
        return Err(ObserveError::RingBuffer {
            name: name.to_owned(),
        });
    }
    let map = pins::open(pin_dir, name)?;
    let raw = batch::read_all(&map, name)?;
    // Zone prefixes as the pinned ZONE_BY_PREFIX says (the state may differ).
    let zone_prefixes = if name == common::ENDPOINTS || name == common::NEXT_HOPS {
        let z = pins::open(pin_dir, common::ZONE_BY_PREFIX)?;
        let zraw = batch::read_all(&z, common::ZONE_BY_PREFIX)?;
        (0..zraw.count)
            .filter_map(|i| {
                let v: u32 = pod(zraw.value(i));
                let k: u32 = pod(zraw.key(i));
                v.checked_sub(1).map(|slot| (slot, Ipv4Addr::from(k << 16)))
            })
            .collect()
    } else {
        std::collections::BTreeMap::new()
    };
    let prefix_of = |slot: u32| {
        zone_prefixes
            .get(&slot)
            .copied()
            .or_else(|| names.zone(slot).map(|z| z.1))
    };
    Ok(match name {
        common::ZONE_BY_PREFIX => zones(&raw, names),
        common::ENDPOINTS => endpoints(&raw, names, prefix_of),
        common::NEXT_HOPS => next_hops(&raw, names, prefix_of),
        common::ZONE_GATEWAYS => gateways(&raw, names),
        common::LOCAL_PORTS => local_ports(pin_dir, &raw, names)?,
        common::HOST_CONFIG => host_config(&raw, names),
        common::GROUP_PAIRS => group_pairs(&raw, names),
        common::OWNER_GROUPS => owner_groups(&raw, names),
        common::PORT_SCOPES => port_scopes(&raw, names),
        common::COUNTERS => counters(&raw),
        common::MONITOR_LEASE => monitor_lease(&raw),
        common::CONNECTIONS => connections(&raw, names),
        common::SERVICE_PORTS => service_ports(&raw, names),
        common::SERVICE_TABLES => service_tables(&raw, names),
        common::SERVICE_FLOWS => service_flows(&raw, names),
        common::SERVICE_COUNTERS => service_counters(&raw, names),
        _ => return Err(ObserveError::UnknownMap(name.to_owned())),
    })
}

#[derive(Serialize)]
struct ZoneRow<'a> {
    index: u32,
    prefix: String,
    zone_slot: u32,
    zone: Option<&'a str>,
}

fn zones(raw: &RawEntries, names: &Names) -> Decoded {
    let mut d = Decoded::new(common::ZONE_BY_PREFIX, &["prefix", "zone slot", "zone"]);
    for i in 0..raw.count {
        let index: u32 = pod(raw.key(i));
        let v: u32 = pod(raw.value(i));
        let Some(zone_slot) = v.checked_sub(1) else {
            continue;
        };
        let prefix = format!("{}/16", Ipv4Addr::from(index << 16));
        let zone = names.zone(zone_slot).map(|z| z.0);
        d.push(
            ZoneRow {
                index,
                prefix: prefix.clone(),
                zone_slot,
                zone,
            },
            vec![prefix, zone_slot.to_string(), opt(zone)],
        );
    }
    d
}

#[derive(Serialize)]
struct EndpointRow<'a> {
    index: u32,
    zone_slot: u32,
    address: Option<Ipv4Addr>,
    owner_id: u32,
    owner: Option<&'a str>,
    container: Option<&'a str>,
    host: Option<&'a str>,
    /// `Endpoint::groups`: the owner's groups bloom, `null` when unknown
    /// (every pair is looked up).
    groups_bloom: Option<String>,
    /// `INGRESS_SCOPED`: the owner has security groups (`PORT_SCOPES` is
    /// consulted for packets to this address).
    ingress_scoped: bool,
}

/// An `Endpoint::groups` value for people: the 31 bloom bits in hex, or
/// `unknown`.
fn bloom_text(groups: u32) -> Option<String> {
    (groups & common::policy::GROUPS_KNOWN != 0)
        .then(|| format!("{:#010x}", groups & !common::policy::GROUPS_KNOWN))
}

fn endpoints(
    raw: &RawEntries,
    names: &Names,
    prefix_of: impl Fn(u32) -> Option<Ipv4Addr>,
) -> Decoded {
    let mut d = Decoded::new(
        common::ENDPOINTS,
        &[
            "address",
            "zone slot",
            "owner",
            "container",
            "host",
            "groups bloom",
        ],
    );
    for i in 0..raw.count {
        let index: u32 = pod(raw.key(i));
        let e: Endpoint = pod(raw.value(i));
        if e.owner == common::NO_OWNER {
            continue;
        }
        let zone_slot = index >> 16;
        let address = prefix_of(zone_slot).map(|p| Ipv4Addr::from(u32::from(p) | (index & 0xffff)));
        let c = address.and_then(|a| names.container(a));
        let owner = names.owner(e.owner);
        d.push(
            EndpointRow {
                index,
                zone_slot,
                address,
                owner_id: e.owner,
                owner,
                container: c.map(|c| c.name.as_str()),
                host: c.map(|c| c.host.as_str()),
                groups_bloom: bloom_text(e.groups),
                ingress_scoped: e.groups & common::policy::GROUPS_KNOWN != 0
                    && e.groups & common::policy::INGRESS_SCOPED != 0,
            },
            vec![
                address.map_or_else(
                    || format!("slot {zone_slot} .{}", index & 0xffff),
                    |a| a.to_string(),
                ),
                zone_slot.to_string(),
                format!("{} ({})", or_id(owner, e.owner), e.owner),
                opt(c.map(|c| c.name.as_str())),
                opt(c.map(|c| c.host.as_str())),
                bloom_text(e.groups).unwrap_or_else(|| "unknown".to_owned()),
            ],
        );
    }
    d
}

#[derive(Serialize)]
struct NextHopRow<'a> {
    index: u32,
    zone_slot: u32,
    host_octet: u32,
    host_subnet: Option<String>,
    host: Option<&'a str>,
    underlay_ip: Ipv4Addr,
    mac: String,
}

fn next_hops(
    raw: &RawEntries,
    names: &Names,
    prefix_of: impl Fn(u32) -> Option<Ipv4Addr>,
) -> Decoded {
    let mut d = Decoded::new(
        common::NEXT_HOPS,
        &["host", "subnet", "zone slot", "underlay ip", "mac"],
    );
    for i in 0..raw.count {
        let index: u32 = pod(raw.key(i));
        let h: NextHop = pod(raw.value(i));
        if h.flags & common::FLAG_PRESENT == 0 {
            continue;
        }
        let (zone_slot, host_octet) = (index >> 8, index & 0xff);
        let host = names.host(zone_slot, host_octet);
        let host_subnet = prefix_of(zone_slot)
            .map(|p| format!("{}/24", Ipv4Addr::from(u32::from(p) | host_octet << 8)));
        let underlay_ip = Ipv4Addr::from(h.underlay_ip);
        d.push(
            NextHopRow {
                index,
                zone_slot,
                host_octet,
                host_subnet: host_subnet.clone(),
                host,
                underlay_ip,
                mac: mac(h.mac),
            },
            vec![
                opt(host),
                host_subnet.unwrap_or_else(|| format!("octet {host_octet}")),
                zone_slot.to_string(),
                underlay_ip.to_string(),
                mac(h.mac),
            ],
        );
    }
    d
}

#[derive(Serialize)]
struct GatewayRow<'a> {
    zone_slot: u32,
    zone: Option<&'a str>,
    underlay_ip: Ipv4Addr,
    mac: String,
}

fn gateways(raw: &RawEntries, names: &Names) -> Decoded {
    let mut d = Decoded::new(
        common::ZONE_GATEWAYS,
        &["zone slot", "zone", "underlay ip", "mac"],
    );
    for i in 0..raw.count {
        let zone_slot: u32 = pod(raw.key(i));
        let h: NextHop = pod(raw.value(i));
        if h.flags & common::FLAG_PRESENT == 0 {
            continue;
        }
        let zone = names.zone(zone_slot).map(|z| z.0);
        let underlay_ip = Ipv4Addr::from(h.underlay_ip);
        d.push(
            GatewayRow {
                zone_slot,
                zone,
                underlay_ip,
                mac: mac(h.mac),
            },
            vec![
                zone_slot.to_string(),
                opt(zone),
                underlay_ip.to_string(),
                mac(h.mac),
            ],
        );
    }
    d
}

/// This host's /24 network, from its pinned `HOST_CONFIG`.
pub(crate) fn host_subnet(pin_dir: &Path) -> Result<Option<(HostConfig, Ipv4Addr)>> {
    let map = pins::open(pin_dir, common::HOST_CONFIG)?;
    let raw = batch::read_all(&map, common::HOST_CONFIG)?;
    if raw.count == 0 {
        return Ok(None);
    }
    let h: HostConfig = pod(raw.value(0));
    Ok((h.flags & common::FLAG_PRESENT != 0)
        .then(|| (h, Ipv4Addr::from(h.zone_prefix | h.host_octet << 8))))
}

#[derive(Serialize)]
struct LocalPortRow<'a> {
    container_octet: u32,
    address: Option<Ipv4Addr>,
    container: Option<&'a str>,
    owner: Option<&'a str>,
    port: Option<String>,
    ifindex: u32,
    mac: String,
}

fn local_ports(pin_dir: &Path, raw: &RawEntries, names: &Names) -> Result<Decoded> {
    let subnet = host_subnet(pin_dir)?.map(|s| s.1);
    let mut d = Decoded::new(
        common::LOCAL_PORTS,
        &["address", "container", "owner", "port", "ifindex", "mac"],
    );
    for i in 0..raw.count {
        let octet: u32 = pod(raw.key(i));
        let p: LocalPort = pod(raw.value(i));
        if p.flags & common::FLAG_PRESENT == 0 {
            continue;
        }
        let address = subnet.map(|s| Ipv4Addr::from(u32::from(s) | octet));
        let c = address.and_then(|a| names.container(a));
        let port = address.map(crate::conventions::port_name);
        d.push(
            LocalPortRow {
                container_octet: octet,
                address,
                container: c.map(|c| c.name.as_str()),
                owner: c.map(|c| c.owner.as_str()),
                port: port.clone(),
                ifindex: p.ifindex,
                mac: mac(p.mac),
            },
            vec![
                address.map_or_else(|| format!(".{octet}"), |a| a.to_string()),
                opt(c.map(|c| c.name.as_str())),
                opt(c.map(|c| c.owner.as_str())),
                port.unwrap_or_else(|| "-".into()),
                p.ifindex.to_string(),
                mac(p.mac),
            ],
        );
    }
    Ok(d)
}

#[derive(Serialize)]
struct HostConfigRow<'a> {
    host: Option<&'a str>,
    zone: Option<&'a str>,
    zone_prefix: String,
    zone_slot: u32,
    host_octet: u32,
    subnet: String,
    uplink_ifindex: u32,
    uplink_mac: String,
    gateway_mac: String,
    zone_router_mac: String,
}

fn host_config(raw: &RawEntries, names: &Names) -> Decoded {
    let mut d = Decoded::new(common::HOST_CONFIG, &["field", "value"]);
    for i in 0..raw.count {
        let h: HostConfig = pod(raw.value(i));
        if h.flags & common::FLAG_PRESENT == 0 {
            continue;
        }
        let row = HostConfigRow {
            host: names.host(h.zone_slot, h.host_octet),
            zone: names.zone(h.zone_slot).map(|z| z.0),
            zone_prefix: format!("{}/16", Ipv4Addr::from(h.zone_prefix)),
            zone_slot: h.zone_slot,
            host_octet: h.host_octet,
            subnet: format!("{}/24", Ipv4Addr::from(h.zone_prefix | h.host_octet << 8)),
            uplink_ifindex: h.uplink_ifindex,
            uplink_mac: mac(h.uplink_mac),
            gateway_mac: mac(h.gateway_mac),
            zone_router_mac: mac(h.zone_router_mac),
        };
        // One row per field reads better than one very wide row.
        for (k, v) in [
            ("host", opt(row.host)),
            ("zone", opt(row.zone)),
            ("zone prefix", row.zone_prefix.clone()),
            ("zone slot", row.zone_slot.to_string()),
            ("host octet", row.host_octet.to_string()),
            ("subnet", row.subnet.clone()),
            ("uplink ifindex", row.uplink_ifindex.to_string()),
            ("uplink mac", row.uplink_mac.clone()),
            ("gateway mac", row.gateway_mac.clone()),
            ("zone router mac", row.zone_router_mac.clone()),
        ] {
            d.rows.push(vec![k.to_owned(), v]);
        }
        d.json
            .push(serde_json::to_value(&row).expect("host config serializes"));
    }
    d
}

#[derive(Serialize)]
struct MonitorLeaseRow {
    /// CLOCK_MONOTONIC ns; 0: none, u64::MAX: forever.
    until_ns: u64,
    state: String,
}

fn monitor_lease(raw: &RawEntries) -> Decoded {
    let mut d = Decoded::new(common::MONITOR_LEASE, &["until (monotonic ns)", "state"]);
    let now = Clock::monotonic_ns();
    for i in 0..raw.count {
        let lease: MonitorLease = pod(raw.value(i));
        let row = MonitorLeaseRow {
            until_ns: lease.until_ns,
            state: lease_state(lease, now),
        };
        d.push(&row, vec![row.until_ns.to_string(), row.state.clone()]);
    }
    d
}

/// What `MONITOR_LEASE` says, for `maps dump`.
pub fn lease_state(lease: MonitorLease, now_ns: u64) -> String {
    match lease {
        MonitorLease::NONE => "none: no drop events".to_owned(),
        MonitorLease::FOREVER => "forever: drop events always".to_owned(),
        MonitorLease { until_ns } if until_ns > now_ns => format!(
            "held: drop events for {:.1} s more",
            (until_ns - now_ns) as f64 / 1e9
        ),
        MonitorLease { .. } => "expired: no drop events".to_owned(),
    }
}

#[derive(Serialize)]
struct ConnectionRow<'a> {
    protocol: &'static str,
    protocol_number: u8,
    /// The opening direction: its source (a container) and destination.
    src: Ipv4Addr,
    src_port: u16,
    dst: Ipv4Addr,
    dst_port: u16,
    /// `opening`, `established`, `closing` (TCP) or, past its idle
    /// timeout, `expired` (the programs treat it as absent; the LRU
    /// reclaims it).
    state: String,
    replied: bool,
    /// Seconds since a packet last refreshed it (refreshes are at most
    /// once a second).
    age_s: f64,
    idle_timeout_s: u64,
    src_owner_id: u32,
    src_owner: Option<&'a str>,
    src_container: Option<&'a str>,
    /// `null` (id 0) for an address outside every zone.
    dst_owner_id: u32,
    dst_owner: Option<&'a str>,
    dst_container: Option<&'a str>,
}

fn protocol_name(p: u8) -> &'static str {
    match p {
        common::conntrack::PROTO_TCP => "tcp",
        common::conntrack::PROTO_UDP => "udp",
        common::conntrack::PROTO_ICMP => "icmp",
        _ => "other",
    }
}

/// `CONNECTIONS`, oldest refresh last; ICMP echo shows its identifier as
/// the source port.
fn connections(raw: &RawEntries, names: &Names) -> Decoded {
    use crate::datapath::maps::connections::{is_expired, state_label};
    use common::conntrack::{CONN_REPLIED, ConnKey, Connection, idle_timeout_ns};
    let mut d = Decoded::new(
        common::CONNECTIONS,
        &[
            "protocol",
            "source",
            "destination",
            "state",
            "replied",
            "age",
            "owners",
        ],
    );
    let now = Clock::monotonic_ns();
    let mut entries: Vec<(ConnKey, Connection)> = raw.typed().collect();
    entries.sort_by_key(|(k, c)| (std::cmp::Reverse(c.last_seen_ns), *k));
    for (k, c) in entries {
        let (src, dst) = (Ipv4Addr::from(k.src), Ipv4Addr::from(k.dst));
        let state = if is_expired(&k, &c, now) {
            "expired".to_owned()
        } else {
            state_label(&c)
        };
        let age_s = now.saturating_sub(c.last_seen_ns) as f64 / 1e9;
        let owner = |id: u32| (id != common::NO_OWNER).then(|| names.owner(id)).flatten();
        let row = ConnectionRow {
            protocol: protocol_name(k.protocol),
            protocol_number: k.protocol,
            src,
            src_port: k.src_port,
            dst,
            dst_port: k.dst_port,
            state: state.clone(),
            replied: c.flags & CONN_REPLIED != 0,
            age_s,
            idle_timeout_s: idle_timeout_ns(k.protocol, c.state) / 1_000_000_000,
            src_owner_id: c.src_owner,
            src_owner: owner(c.src_owner),
            src_container: names.container(src).map(|c| c.name.as_str()),
            dst_owner_id: c.dst_owner,
            dst_owner: owner(c.dst_owner),
            dst_container: names.container(dst).map(|c| c.name.as_str()),
        };
        let party = |id: u32| {
            if id == common::NO_OWNER {
                "outside".to_owned()
            } else {
                or_id(names.owner(id), id)
            }
        };
        d.push(
            &row,
            vec![
                row.protocol.to_owned(),
                format!("{src}:{}", k.src_port),
                format!("{dst}:{}", k.dst_port),
                state,
                if row.replied { "yes" } else { "no" }.to_owned(),
                format!("{age_s:.1} s"),
                format!("{} → {}", party(c.src_owner), party(c.dst_owner)),
            ],
        );
    }
    d
}

#[derive(Serialize)]
struct ServicePortRow<'a> {
    vip: Ipv4Addr,
    port: u16,
    protocol: &'static str,
    service_id: u32,
    service: Option<&'a str>,
    owner_id: u32,
    owner: Option<&'a str>,
    target_port: u16,
}

/// `SERVICE_PORTS`: a VIP's port → its service and the backends' port.
fn service_ports(raw: &RawEntries, names: &Names) -> Decoded {
    use common::service::{ServicePort, ServicePortKey};
    let mut d = Decoded::new(
        common::SERVICE_PORTS,
        &["vip port", "service", "owner", "target port"],
    );
    let mut entries: Vec<(ServicePortKey, ServicePort)> = raw.typed().collect();
    entries.sort_by_key(|(k, _)| *k);
    for (k, v) in entries {
        let service = names.service(v.service);
        let owner = names.owner(v.owner);
        let row = ServicePortRow {
            vip: Ipv4Addr::from(k.vip),
            port: k.port,
            protocol: protocol_name(k.protocol),
            service_id: v.service,
            service: service.map(|s| s.name.as_str()),
            owner_id: v.owner,
            owner,
            target_port: v.target_port,
        };
        d.push(
            &row,
            vec![
                format!("{}:{}/{}", row.vip, k.port, row.protocol),
                names.service_label(v.service),
                format!("{} ({})", or_id(owner, v.owner), v.owner),
                v.target_port.to_string(),
            ],
        );
    }
    d
}

pub use crate::datapath::maps::service_tables::ServiceMembers;

/// The members (and which are healthy: those holding a slot) of every
/// service table pinned at `pin_dir`, by service id.
pub fn service_members(pin_dir: &Path) -> Result<std::collections::BTreeMap<u32, ServiceMembers>> {
    let map = pins::open(pin_dir, common::SERVICE_TABLES)?;
    let raw = batch::read_all(&map, common::SERVICE_TABLES)?;
    Ok(raw
        .typed::<u32, common::service::ServiceTable>()
        .map(|(id, t)| (id, ServiceMembers::of_table(&t)))
        .collect())
}

#[derive(Serialize)]
struct ServiceTableRow<'a> {
    service_id: u32,
    service: Option<&'a str>,
    owner: Option<&'a str>,
    member: u8,
    backend: Ipv4Addr,
    container: Option<&'a str>,
    /// Lookup-table slots the member holds (0: unhealthy, no new flows).
    slots: usize,
    /// Its share of new flows.
    share: f64,
}

/// `SERVICE_TABLES`: one row per member of each service, with its share
/// of the Maglev table.
fn service_tables(raw: &RawEntries, names: &Names) -> Decoded {
    use common::service::{MAGLEV_SLOTS, MAX_BACKENDS, ServiceTable};
    let mut d = Decoded::new(
        common::SERVICE_TABLES,
        &["service", "member", "backend", "slots", "share"],
    );
    let mut entries: Vec<(u32, ServiceTable)> = raw.typed().collect();
    entries.sort_by_key(|(k, _)| *k);
    for (id, table) in entries {
        let mut slots = [0usize; MAX_BACKENDS];
        for &s in table.slots.iter() {
            if let Some(n) = slots.get_mut(usize::from(s)) {
                *n += 1;
            }
        }
        let service = names.service(id);
        for (member, &addr) in table.members.iter().enumerate() {
            if addr == 0 {
                continue;
            }
            let backend = Ipv4Addr::from(addr);
            let container = names.container(backend).map(|c| c.name.as_str());
            let share = slots[member] as f64 / MAGLEV_SLOTS as f64;
            let row = ServiceTableRow {
                service_id: id,
                service: service.map(|s| s.name.as_str()),
                owner: service.map(|s| s.owner.as_str()),
                member: member as u8,
                backend,
                container,
                slots: slots[member],
                share,
            };
            d.push(
                &row,
                vec![
                    names.service_label(id),
                    member.to_string(),
                    format!("{} ({backend})", opt(container)),
                    slots[member].to_string(),
                    if slots[member] == 0 {
                        "0% (unhealthy)".to_owned()
                    } else {
                        format!("{:.1}%", share * 100.0)
                    },
                ],
            );
        }
    }
    d
}

#[derive(Serialize)]
struct ServiceFlowRow<'a> {
    kind: &'static str,
    protocol: &'static str,
    src: Ipv4Addr,
    src_port: u16,
    dst: Ipv4Addr,
    dst_port: u16,
    /// Forward: the backend; reverse: the VIP.
    translated: Ipv4Addr,
    translated_port: u16,
    member: u8,
    service_id: u32,
    service: Option<&'a str>,
    owner: Option<&'a str>,
    age_s: f64,
}

/// `SERVICE_FLOWS`, most recent first.
fn service_flows(raw: &RawEntries, names: &Names) -> Decoded {
    use common::{
        conntrack::ConnKey,
        service::{FLOW_FORWARD, FLOW_REVERSE, ServiceFlow},
    };
    let mut d = Decoded::new(
        common::SERVICE_FLOWS,
        &[
            "kind",
            "protocol",
            "flow",
            "translated to",
            "service",
            "age",
        ],
    );
    let now = Clock::monotonic_ns();
    let mut entries: Vec<(ConnKey, ServiceFlow)> = raw.typed().collect();
    entries.sort_by_key(|(k, f)| (std::cmp::Reverse(f.last_seen_ns), *k));
    for (k, f) in entries {
        let kind = match f.kind {
            FLOW_FORWARD => "forward",
            FLOW_REVERSE => "reverse",
            _ => "other",
        };
        let service = names.service(f.service);
        let age_s = now.saturating_sub(f.last_seen_ns) as f64 / 1e9;
        let row = ServiceFlowRow {
            kind,
            protocol: protocol_name(k.protocol),
            src: Ipv4Addr::from(k.src),
            src_port: k.src_port,
            dst: Ipv4Addr::from(k.dst),
            dst_port: k.dst_port,
            translated: Ipv4Addr::from(f.addr),
            translated_port: f.port,
            member: f.member,
            service_id: f.service,
            service: service.map(|s| s.name.as_str()),
            owner: service.map(|s| s.owner.as_str()),
            age_s,
        };
        let who = |a: Ipv4Addr| {
            names
                .container(a)
                .map_or_else(|| a.to_string(), |c| format!("{} ({a})", c.name))
        };
        d.push(
            &row,
            vec![
                kind.to_owned(),
                row.protocol.to_owned(),
                format!(
                    "{}:{} → {}:{}",
                    who(row.src),
                    k.src_port,
                    who(row.dst),
                    k.dst_port
                ),
                format!("{}:{}", who(row.translated), f.port),
                names.service_label(f.service),
                format!("{age_s:.1} s"),
            ],
        );
    }
    d
}

#[derive(Serialize)]
struct ServiceCounterRow<'a> {
    service_id: u32,
    service: Option<&'a str>,
    owner: Option<&'a str>,
    backend: Ipv4Addr,
    container: Option<&'a str>,
    packets: u64,
    bytes: u64,
}

/// `SERVICE_COUNTERS`: packets and bytes per service and backend, summed
/// over CPUs.
fn service_counters(raw: &RawEntries, names: &Names) -> Decoded {
    let mut d = Decoded::new(
        common::SERVICE_COUNTERS,
        &["service", "backend", "packets", "bytes"],
    );
    let counters = crate::datapath::maps::service_counters::service_counters_from_raw(raw);
    for (k, c) in counters {
        let service = names.service(k.service);
        let backend = Ipv4Addr::from(k.backend);
        let container = names.container(backend).map(|c| c.name.as_str());
        d.push(
            ServiceCounterRow {
                service_id: k.service,
                service: service.map(|s| s.name.as_str()),
                owner: service.map(|s| s.owner.as_str()),
                backend,
                container,
                packets: c.packets,
                bytes: c.bytes,
            },
            vec![
                names.service_label(k.service),
                format!("{} ({backend})", opt(container)),
                c.packets.to_string(),
                c.bytes.to_string(),
            ],
        );
    }
    d
}

#[derive(Serialize)]
struct GroupPairRow<'a> {
    low_owner_id: u32,
    low_owner: Option<&'a str>,
    high_owner_id: u32,
    high_owner: Option<&'a str>,
    shared_groups: u32,
    /// The groups the store says they share.
    groups: Vec<String>,
}

fn group_pairs(raw: &RawEntries, names: &Names) -> Decoded {
    let mut d = Decoded::new(
        common::GROUP_PAIRS,
        &["owner", "owner", "shared groups", "groups (store)"],
    );
    let mut entries: Vec<(OwnerPair, u32)> = (0..raw.count)
        .map(|i| (pod(raw.key(i)), pod(raw.value(i))))
        .collect();
    entries.sort();
    for (pair, n) in entries {
        let (lo, hi) = (names.owner(pair.low), names.owner(pair.high));
        let groups = names.shared_groups(pair.low, pair.high);
        d.push(
            GroupPairRow {
                low_owner_id: pair.low,
                low_owner: lo,
                high_owner_id: pair.high,
                high_owner: hi,
                shared_groups: n,
                groups: groups.clone(),
            },
            vec![
                format!("{} ({})", or_id(lo, pair.low), pair.low),
                format!("{} ({})", or_id(hi, pair.high), pair.high),
                n.to_string(),
                groups.join(", "),
            ],
        );
    }
    d
}

#[derive(Serialize)]
struct PortScopeRow<'a> {
    receiver_id: u32,
    receiver: Option<&'a str>,
    sender_id: u32,
    sender: Option<&'a str>,
    /// What the sender may still open, as `security-group set` writes it
    /// (`tcp/5432`, `udp/5000-5010`, `icmp`); empty: nothing.
    allow: Vec<String>,
}

fn port_scopes(raw: &RawEntries, names: &Names) -> Decoded {
    let mut d = Decoded::new(common::PORT_SCOPES, &["receiver", "sender", "allows"]);
    let mut entries: Vec<(ScopedPair, PortScope)> = (0..raw.count)
        .map(|i| (pod(raw.key(i)), pod(raw.value(i))))
        .collect();
    entries.sort_by_key(|(pair, _)| *pair);
    for (pair, scope) in entries {
        let (r, s) = (names.owner(pair.receiver), names.owner(pair.sender));
        let allow: Vec<String> = scope_rules(&scope)
            .iter()
            .map(ToString::to_string)
            .collect();
        let shown = if allow.is_empty() {
            "nothing".to_owned()
        } else {
            allow.join(", ")
        };
        d.push(
            PortScopeRow {
                receiver_id: pair.receiver,
                receiver: r,
                sender_id: pair.sender,
                sender: s,
                allow,
            },
            vec![
                format!("{} ({})", or_id(r, pair.receiver), pair.receiver),
                format!("{} ({})", or_id(s, pair.sender), pair.sender),
                shown,
            ],
        );
    }
    d
}

#[derive(Serialize)]
struct OwnerGroupsRow<'a> {
    index: u32,
    owner_id: u32,
    owner: Option<&'a str>,
    /// Group keys (`netfabric_common::policy::group_key` of the names).
    group_keys: Vec<u32>,
    /// The groups of those keys, as the store names them.
    groups: Vec<Option<&'a str>>,
}

fn owner_groups(raw: &RawEntries, names: &Names) -> Decoded {
    let mut d = Decoded::new(common::OWNER_GROUPS, &["slot", "owner", "groups"]);
    for i in 0..raw.count {
        let index: u32 = pod(raw.key(i));
        let g: common::OwnerGroups = pod(raw.value(i));
        if g.owner == common::NO_OWNER {
            continue;
        }
        let owner = names.owner(g.owner);
        let keys = g.keys().to_vec();
        let groups: Vec<Option<&str>> = keys.iter().map(|&k| names.group_of_key(k)).collect();
        let shown: Vec<String> = keys
            .iter()
            .zip(&groups)
            .map(|(k, name)| match name {
                Some(name) => format!("{name} ({k:#010x})"),
                None => format!("{k:#010x}"),
            })
            .collect();
        d.push(
            OwnerGroupsRow {
                index,
                owner_id: g.owner,
                owner,
                group_keys: keys,
                groups,
            },
            vec![
                index.to_string(),
                format!("{} ({})", or_id(owner, g.owner), g.owner),
                shown.join(", "),
            ],
        );
    }
    d
}

/// One counter slot, summed over CPUs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CounterRow {
    pub direction: &'static str,
    pub verdict: &'static str,
    pub reason: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

impl CounterRow {
    /// The non-zero counters of a snapshot as rows, in slot order.
    pub fn rows(snap: &CounterSnapshot) -> Vec<CounterRow> {
        snap.in_slot_order()
            .into_iter()
            .map(|((direction, verdict), c)| CounterRow {
                direction: direction.label(),
                verdict: verdict.verdict_label(),
                reason: verdict.reason_label(),
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect()
    }
}

fn counters(raw: &RawEntries) -> Decoded {
    let mut d = Decoded::new(
        common::COUNTERS,
        &["direction", "verdict", "reason", "packets", "bytes"],
    );
    let snap = CounterSnapshot::from_raw(raw);
    let lost = snap.monitor_events_lost;
    for r in CounterRow::rows(&snap) {
        let cells = vec![
            r.direction.to_owned(),
            r.verdict.to_owned(),
            r.reason.to_owned(),
            r.packets.to_string(),
            r.bytes.to_string(),
        ];
        d.push(r, cells);
    }
    d.push(
        serde_json::json!({ "monitor_events_lost": lost }),
        vec![
            "-".into(),
            "-".into(),
            "monitor_events_lost".into(),
            lost.to_string(),
            "-".into(),
        ],
    );
    d
}

/// The counters of the host pinned at `pin_dir` (summed over CPUs).
pub fn read_counters(pin_dir: &Path) -> Result<CounterSnapshot> {
    let map = pins::open(pin_dir, common::COUNTERS)?;
    let raw = batch::read_all(&map, common::COUNTERS)?;
    Ok(CounterSnapshot::from_raw(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_states_read_as_text() {
        assert_eq!(lease_state(MonitorLease::NONE, 5), "none: no drop events");
        assert_eq!(
            lease_state(MonitorLease::FOREVER, 5),
            "forever: drop events always"
        );
        assert_eq!(
            lease_state(
                MonitorLease {
                    until_ns: 2_500_000_000
                },
                1_000_000_000
            ),
            "held: drop events for 1.5 s more"
        );
        assert_eq!(
            lease_state(MonitorLease { until_ns: 10 }, 11),
            "expired: no drop events"
        );
    }
}
