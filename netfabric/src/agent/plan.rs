//! The host plan: what one host's maps must hold for a desired state, and
//! the difference between two plans (pure; no kernel involved). Each map's
//! key and value types, and what narrows it, are in its own module of
//! [`crate::datapath::maps`].

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use netfabric_common::{
    Endpoint, HostConfig, NO_OWNER, OwnerGroups, OwnerPair, SYSTEM_OWNER,
    conntrack::ScopedPair,
    owner_groups_index, policy,
    service::{ServicePort, ServicePortKey, service_id},
};

pub use crate::datapath::maps::{
    Change, DesiredMap, Entries,
    endpoints::{EndpointKey, Endpoints},
    group_pairs::GroupPairs,
    local_ports::{LocalPorts, PortEntry},
    next_hops::{NextHopKey, NextHops, UnderlayHop},
    owner_groups::OwnerGroupsMap,
    port_scopes::PortScopes,
    service_ports::ServicePorts,
    service_tables::{ServiceMembers, ServiceTables},
    zone_gateways::ZoneGateways,
    zones::Zones,
};
use crate::{
    Datapath, DatapathError, conventions,
    datapath::maps::{narrowing_all, narrowing_of, widening_all, widening_of},
    state::{Container, Egress, Owner, State, StateError, member_pairs, security},
};

/// What the maps of one host hold (or must hold): one field per
/// [`DesiredMap`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPlan {
    /// `HOST_CONFIG` (without the present flag).
    pub host: Option<HostConfig>,
    /// `ZONE_BY_PREFIX`: top 16 bits → zone slot.
    pub zones: Entries<Zones>,
    /// `ENDPOINTS`: container address → owner and its groups bloom.
    pub endpoints: Entries<Endpoints>,
    /// `NEXT_HOPS`: host of a zone → its underlay hop.
    pub next_hops: Entries<NextHops>,
    /// `ZONE_GATEWAYS`: zone slot → next hop towards that (other) zone.
    pub gateways: Entries<ZoneGateways>,
    /// `LOCAL_PORTS`: container octet → its port.
    pub local_ports: Entries<LocalPorts>,
    /// `GROUP_PAIRS`: pair of different non-system owners → shared groups.
    pub group_pairs: Entries<GroupPairs>,
    /// `OWNER_GROUPS`: slot → an owner's exact group keys
    /// ([`OwnerGroupLists`]).
    pub owner_groups: Entries<OwnerGroupsMap>,
    /// `PORT_SCOPES`: (receiver, sender) → what the sender may still open
    /// ([`port_scopes`]; zone-wide, like the pairs).
    pub port_scopes: Entries<PortScopes>,
    /// `SERVICE_PORTS`: every port of every service's VIP, of every zone.
    pub service_ports: Entries<ServicePorts>,
    /// `SERVICE_TABLES`: every service ([`service_id`]) → its members and
    /// which are healthy.
    pub service_tables: Entries<ServiceTables>,
}

/// The keys whose entries a change of the desired state may have changed,
/// per map: the incremental diff ([`HostPlan::diff_keys`]) looks only at
/// these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TouchedKeys {
    pub zones: BTreeSet<u16>,
    pub endpoints: BTreeSet<EndpointKey>,
    pub next_hops: BTreeSet<NextHopKey>,
    pub gateways: BTreeSet<u32>,
    pub local_ports: BTreeSet<u8>,
    pub group_pairs: BTreeSet<OwnerPair>,
    /// `OWNER_GROUPS` slots.
    pub owner_groups: BTreeSet<u32>,
    pub port_scopes: BTreeSet<ScopedPair>,
    pub service_ports: BTreeSet<ServicePortKey>,
    pub service_tables: BTreeSet<u32>,
}

/// What the host knows at run time and the desired state does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtime {
    /// ifindex of the uplink.
    pub uplink_ifindex: u32,
    /// Ports with their TC programs attached: container octet → ifindex.
    pub ready_ports: BTreeMap<u8, u32>,
    /// The backends' health as the agents report it: (backend address,
    /// health port) → healthy. A backend with no report counts as healthy
    /// (not checked yet, or its agent gone): docs/services.md#health-checks.
    pub health: Health,
}

/// (backend address, health port) → healthy ([`Runtime::health`]).
pub type Health = BTreeMap<(Ipv4Addr, u16), bool>;

/// The services' entries of a state: `SERVICE_PORTS`, `SERVICE_TABLES`,
/// and the containers that are a backend (their endpoints carry
/// `SERVICE_BACKEND`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEntries {
    pub ports: Entries<ServicePorts>,
    pub tables: Entries<ServiceTables>,
    /// Names of the containers that are a backend of some service.
    pub backends: BTreeSet<String>,
}

/// The services of `state` as the maps hold them, with `health`. A
/// service whose zone, owner or backend does not resolve (never in a
/// validated state) leaves that part out.
pub fn service_entries(state: &State, health: &Health) -> ServiceEntries {
    if state.services.is_empty() {
        return ServiceEntries::default();
    }
    let containers: BTreeMap<&str, &Container> = state
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let owners: BTreeMap<&str, u32> = state
        .owners
        .iter()
        .map(|o| (o.name.as_str(), o.id))
        .collect();
    service_entries_with(
        state,
        health,
        |name| containers.get(name).copied(),
        |name| owners.get(name).copied(),
    )
}

/// [`service_entries`] with the containers and owner ids looked up by
/// the caller (the incremental plan has them indexed).
pub fn service_entries_with<'a>(
    state: &'a State,
    health: &Health,
    container: impl Fn(&str) -> Option<&'a Container>,
    owner_id: impl Fn(&str) -> Option<u32>,
) -> ServiceEntries {
    let mut out = ServiceEntries::default();
    for svc in &state.services {
        let Some(one) = service_entry(state, svc, health, &container, &owner_id) else {
            continue;
        };
        out.tables.insert(one.id, one.members);
        out.ports.extend(one.ports);
        out.backends
            .extend(one.backends.iter().map(|c| c.name.clone()));
    }
    out
}

/// One service's entries ([`service_entry`]).
#[derive(Debug, Clone)]
pub struct ServiceEntry<'a> {
    /// [`service_id`]: its `SERVICE_TABLES` key.
    pub id: u32,
    pub members: ServiceMembers,
    pub ports: Vec<(ServicePortKey, ServicePort)>,
    /// The backends that resolve to a container.
    pub backends: Vec<&'a Container>,
}

/// The entries of one service of `state` (`None`: its zone or owner does
/// not resolve, never in a validated state).
pub fn service_entry<'a>(
    state: &'a State,
    svc: &crate::state::Service,
    health: &Health,
    container: impl Fn(&str) -> Option<&'a Container>,
    owner_id: impl Fn(&str) -> Option<u32>,
) -> Option<ServiceEntry<'a>> {
    let (Some(zone), Some(owner)) = (state.zone(&svc.zone), owner_id(&svc.owner)) else {
        return None;
    };
    let id = service_id(zone.slot, u32::from(svc.vip));
    let health_port = svc.health_port();
    let mut members = ServiceMembers::default();
    let mut backends = Vec::with_capacity(svc.backends.len());
    for b in &svc.backends {
        let (Some(c), Some(slot)) = (
            container(&b.container),
            members.members.get_mut(usize::from(b.member)),
        ) else {
            continue;
        };
        *slot = u32::from(c.address);
        let healthy = health_port
            .and_then(|p| health.get(&(c.address, p)))
            .copied()
            .unwrap_or(true);
        if healthy {
            members.healthy |= 1u128 << b.member;
        }
        backends.push(c);
    }
    let ports = svc
        .ports
        .iter()
        .map(|p| {
            (
                ServicePortKey {
                    vip: u32::from(svc.vip),
                    port: p.port,
                    protocol: p.protocol.number(),
                    _pad: 0,
                },
                ServicePort {
                    service: id,
                    owner,
                    target_port: p.target_port,
                    _pad: [0; 6],
                },
            )
        })
        .collect();
    Some(ServiceEntry {
        id,
        members,
        ports,
        backends,
    })
}

/// Why no plan could be made for a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("host {0:?} is not in the desired state")]
    UnknownHost(String),
    #[error("zone {zone:?} of host {host:?} is not in the desired state")]
    UnknownZone { host: String, zone: String },
    /// The security groups do not fit the datapath (a state that passed
    /// validation never does this): nothing is planned rather than a scope
    /// left out.
    #[error(transparent)]
    SecurityGroups(StateError),
}

/// The `PORT_SCOPES` entries of `state` ([`State::port_scopes`]).
pub fn port_scopes(state: &State) -> Result<Entries<PortScopes>, PlanError> {
    Ok(state
        .port_scopes()
        .map_err(PlanError::SecurityGroups)?
        .into_iter()
        .map(|(pair, rules)| (pair, security::port_scope(&rules)))
        .collect())
}

/// The ids of the owners whose endpoints carry `INGRESS_SCOPED`.
pub fn scoped_owner_ids(state: &State) -> BTreeSet<u32> {
    state
        .scoped_owners()
        .into_iter()
        .filter_map(|name| state.owner(name).map(|o| o.id))
        .collect()
}

/// `HOST_CONFIG` of host `host_name` (without the present flag).
pub(crate) fn host_config(
    state: &State,
    host_name: &str,
    rt: &Runtime,
) -> Result<HostConfig, PlanError> {
    let host = state
        .host(host_name)
        .ok_or_else(|| PlanError::UnknownHost(host_name.to_owned()))?;
    let zone = state
        .zone(&host.zone)
        .ok_or_else(|| PlanError::UnknownZone {
            host: host.name.clone(),
            zone: host.zone.clone(),
        })?;
    Ok(HostConfig {
        zone_prefix: u32::from(zone.prefix.network()),
        zone_slot: zone.slot,
        host_octet: host.number,
        uplink_ifindex: rt.uplink_ifindex,
        uplink_mac: host.underlay_mac.0,
        gateway_mac: conventions::bridge_mac(host.subnet.network()).0,
        zone_router_mac: zone.gateway.map(|g| g.underlay_mac.0).unwrap_or_default(),
        flags: 0,
    })
}

/// `LOCAL_PORTS` entry of this host's container `c`, once its port is ready.
pub(crate) fn local_port(c: &Container, rt: &Runtime) -> Option<(u8, PortEntry)> {
    let octet = c.address.octets()[3];
    let &ifindex = rt.ready_ports.get(&octet)?;
    Some((
        octet,
        PortEntry {
            ifindex,
            mac: conventions::container_mac(c.address).0,
        },
    ))
}

impl HostPlan {
    /// The plan of host `host_name` for `state`: the reference every
    /// incremental plan ([`super::incremental`]) must equal.
    pub fn compute(state: &State, host_name: &str, rt: &Runtime) -> Result<HostPlan, PlanError> {
        let host_config = host_config(state, host_name, rt)?;
        let mut plan = HostPlan {
            host: Some(host_config),
            ..HostPlan::default()
        };
        let slot_of: BTreeMap<&str, u32> = state
            .zones
            .iter()
            .map(|z| (z.name.as_str(), z.slot))
            .collect();
        for z in &state.zones {
            plan.zones
                .insert((u32::from(z.prefix.network()) >> 16) as u16, z.slot);
            if Some(z.name.as_str()) != state.host(host_name).map(|h| h.zone.as_str())
                && let Some(g) = z.gateway
            {
                plan.gateways.insert(
                    z.slot,
                    UnderlayHop {
                        mac: g.underlay_mac.0,
                        underlay: g.underlay_ip,
                    },
                );
            }
        }
        for h in &state.hosts {
            let Some(&zone_slot) = slot_of.get(h.zone.as_str()) else {
                continue;
            };
            plan.next_hops.insert(
                NextHopKey {
                    zone_slot,
                    host_octet: h.number as u8,
                },
                UnderlayHop {
                    mac: h.underlay_mac.0,
                    underlay: h.underlay_ip,
                },
            );
        }
        let owner_id: BTreeMap<&str, u32> = state
            .owners
            .iter()
            .map(|o| (o.name.as_str(), o.id))
            .collect();
        let host_zone: BTreeMap<&str, u32> = state
            .hosts
            .iter()
            .filter_map(|h| Some((h.name.as_str(), *slot_of.get(h.zone.as_str())?)))
            .collect();
        let blooms = Blooms::of_groups(state.groups.iter().map(|g| {
            let members = g.members.iter();
            (
                group_key(&g.name),
                members.filter_map(|m| owner_id.get(m.as_str()).copied()),
            )
        }))
        .scoped(scoped_owner_ids(state));
        plan.port_scopes = port_scopes(state)?;
        plan.owner_groups = OwnerGroupLists::of_groups(state.groups.iter().map(|g| {
            let members = g.members.iter();
            (
                group_key(&g.name),
                members.filter_map(|m| owner_id.get(m.as_str()).copied()),
            )
        }))
        .0;
        let flags: BTreeMap<u32, u32> = state
            .owners
            .iter()
            .map(|o| (o.id, owner_flags(o)))
            .collect();
        let services = service_entries(state, &rt.health);
        plan.service_ports = services.ports;
        plan.service_tables = services.tables;
        for c in &state.containers {
            let (Some(&slot), Some(&owner)) = (
                host_zone.get(c.host.as_str()),
                owner_id.get(c.owner.as_str()),
            ) else {
                continue;
            };
            plan.endpoints.insert(
                EndpointKey::of(slot, c.address),
                Endpoint {
                    owner,
                    groups: blooms.of(owner)
                        | flags.get(&owner).copied().unwrap_or(0)
                        | backend_flag(services.backends.contains(&c.name)),
                },
            );
            if c.host == host_name
                && let Some((octet, port)) = local_port(c, rt)
            {
                plan.local_ports.insert(octet, port);
            }
        }
        for g in &state.groups {
            let ids = g
                .members
                .iter()
                .filter_map(|m| owner_id.get(m.as_str()).copied());
            for pair in member_pairs(ids) {
                *plan.group_pairs.entry(pair).or_default() += 1;
            }
        }
        Ok(plan)
    }

    /// The operations that turn `self` (what the maps hold) into `desired`.
    /// Removals that narrow access come first, additions last, so a change
    /// never opens more than either state allows.
    pub fn diff(&self, desired: &HostPlan) -> Vec<Op> {
        self.diff_over(desired, None)
    }

    /// [`Self::diff`] looking only at the keys in `keys`: the same
    /// operations, in the same order, when `self` and `desired` differ
    /// only there.
    pub fn diff_keys(&self, desired: &HostPlan, keys: &TouchedKeys) -> Vec<Op> {
        self.diff_over(desired, Some(keys))
    }

    fn diff_over(&self, desired: &HostPlan, keys: Option<&TouchedKeys>) -> Vec<Op> {
        let mut ops = Vec::new();
        let k = keys;
        // Services narrow first: a VIP port that goes stops new flows
        // before its table goes, and a table loses a member before that
        // member's endpoint loses `SERVICE_BACKEND` (with the widening
        // writes below), so an open flow's replies are translated for as
        // long as the flow can reach it.
        narrow(
            &self.service_ports,
            &desired.service_ports,
            k.map(|k| &k.service_ports),
            Op::ServicePorts,
            &mut ops,
        );
        narrow(
            &self.service_tables,
            &desired.service_tables,
            k.map(|k| &k.service_tables),
            Op::ServiceTables,
            &mut ops,
        );
        // Then group pairs that go or lose groups, group
        // lists (with the pairs: a list answers for its owner's pairs),
        // ports, endpoints that go or change owner, next hops, gateways,
        // zones.
        narrow(
            &self.group_pairs,
            &desired.group_pairs,
            k.map(|k| &k.group_pairs),
            Op::GroupPair,
            &mut ops,
        );
        narrow(
            &self.owner_groups,
            &desired.owner_groups,
            k.map(|k| &k.owner_groups),
            Op::OwnerGroups,
            &mut ops,
        );
        // A scope that goes opens its pair: after the pairs and lists
        // that go, so that a pair denied in the end is never open
        // meanwhile.
        narrow(
            &self.port_scopes,
            &desired.port_scopes,
            k.map(|k| &k.port_scopes),
            Op::PortScope,
            &mut ops,
        );
        narrow(
            &self.local_ports,
            &desired.local_ports,
            k.map(|k| &k.local_ports),
            Op::LocalPort,
            &mut ops,
        );
        narrow(
            &self.endpoints,
            &desired.endpoints,
            k.map(|k| &k.endpoints),
            Op::Endpoint,
            &mut ops,
        );
        narrow(
            &self.next_hops,
            &desired.next_hops,
            k.map(|k| &k.next_hops),
            Op::NextHop,
            &mut ops,
        );
        narrow(
            &self.gateways,
            &desired.gateways,
            k.map(|k| &k.gateways),
            Op::Gateway,
            &mut ops,
        );
        narrow(
            &self.zones,
            &desired.zones,
            k.map(|k| &k.zones),
            Op::Zone,
            &mut ops,
        );
        // Then what is new or changed. Endpoints come after the narrowing
        // removals of pairs and before the pairs added: a bloom losing a
        // group's bit no longer has that group's pairs, one gaining a bit
        // has it before the pairs that need it.
        if let Some(host) = desired.host
            && self.host != desired.host
        {
            ops.push(Op::SetHost { host });
        }
        // Scopes new or changed before anything opens: a receiver flagged
        // `INGRESS_SCOPED` (its endpoints) or a pair newly shared (the
        // pairs) finds its scope there.
        widen(
            &self.port_scopes,
            &desired.port_scopes,
            k.map(|k| &k.port_scopes),
            Op::PortScope,
            &mut ops,
        );
        widen(
            &self.zones,
            &desired.zones,
            k.map(|k| &k.zones),
            Op::Zone,
            &mut ops,
        );
        widen(
            &self.next_hops,
            &desired.next_hops,
            k.map(|k| &k.next_hops),
            Op::NextHop,
            &mut ops,
        );
        widen(
            &self.gateways,
            &desired.gateways,
            k.map(|k| &k.gateways),
            Op::Gateway,
            &mut ops,
        );
        widen(
            &self.endpoints,
            &desired.endpoints,
            k.map(|k| &k.endpoints),
            Op::Endpoint,
            &mut ops,
        );
        widen(
            &self.local_ports,
            &desired.local_ports,
            k.map(|k| &k.local_ports),
            Op::LocalPort,
            &mut ops,
        );
        widen(
            &self.group_pairs,
            &desired.group_pairs,
            k.map(|k| &k.group_pairs),
            Op::GroupPair,
            &mut ops,
        );
        // Lists widen last: a list gaining a group has its pairs first.
        widen(
            &self.owner_groups,
            &desired.owner_groups,
            k.map(|k| &k.owner_groups),
            Op::OwnerGroups,
            &mut ops,
        );
        // Services after the endpoints (a new backend carries
        // `SERVICE_BACKEND` before a table leads a flow to it), tables
        // before ports (a new port finds its backends).
        widen(
            &self.service_tables,
            &desired.service_tables,
            k.map(|k| &k.service_tables),
            Op::ServiceTables,
            &mut ops,
        );
        widen(
            &self.service_ports,
            &desired.service_ports,
            k.map(|k| &k.service_ports),
            Op::ServicePorts,
            &mut ops,
        );
        ops
    }

    /// Records one applied operation (so that a failed one is retried later).
    pub fn record(&mut self, op: &Op) {
        match op {
            Op::SetHost { host } => self.host = Some(*host),
            Op::Zone(c) => c.record(&mut self.zones),
            Op::Endpoint(c) => c.record(&mut self.endpoints),
            Op::NextHop(c) => c.record(&mut self.next_hops),
            Op::Gateway(c) => c.record(&mut self.gateways),
            Op::LocalPort(c) => c.record(&mut self.local_ports),
            Op::GroupPair(c) => c.record(&mut self.group_pairs),
            Op::OwnerGroups(c) => c.record(&mut self.owner_groups),
            Op::PortScope(c) => c.record(&mut self.port_scopes),
            Op::ServicePorts(c) => c.record(&mut self.service_ports),
            Op::ServiceTables(c) => c.record(&mut self.service_tables),
        }
    }

    /// What the maps of `dp` hold, as a plan: each map read in batches,
    /// the zone-keyed ones only for the zones in use.
    pub fn read(dp: &Datapath) -> Result<HostPlan, DatapathError> {
        let host = dp.host()?;
        let zones = Zones::read(dp, &BTreeSet::new())?;
        let mut in_use: BTreeSet<u32> = zones.values().copied().collect();
        in_use.extend(host.map(|h| h.zone_slot));
        Ok(HostPlan {
            host,
            endpoints: Endpoints::read(dp, &in_use)?,
            next_hops: NextHops::read(dp, &in_use)?,
            gateways: ZoneGateways::read(dp, &in_use)?,
            local_ports: LocalPorts::read(dp, &in_use)?,
            group_pairs: GroupPairs::read(dp, &in_use)?,
            owner_groups: OwnerGroupsMap::read(dp, &in_use)?,
            port_scopes: PortScopes::read(dp, &in_use)?,
            service_ports: ServicePorts::read(dp, &in_use)?,
            service_tables: ServiceTables::read(dp, &in_use)?,
            zones,
        })
    }
}

/// Appends map `M`'s narrowing changes, over every key of `current` or
/// only over `keys`.
fn narrow<M: DesiredMap>(
    current: &Entries<M>,
    desired: &Entries<M>,
    keys: Option<&BTreeSet<M::Key>>,
    op: fn(Change<M>) -> Op,
    ops: &mut Vec<Op>,
) {
    match keys {
        None => ops.extend(narrowing_all(current, desired).map(op)),
        Some(keys) => ops.extend(
            keys.iter()
                .filter_map(|&key| narrowing_of(key, current, desired))
                .map(op),
        ),
    }
}

/// Appends map `M`'s widening writes, over every key of `desired` or only
/// over `keys`.
fn widen<M: DesiredMap>(
    current: &Entries<M>,
    desired: &Entries<M>,
    keys: Option<&BTreeSet<M::Key>>,
    op: fn(Change<M>) -> Op,
    ops: &mut Vec<Op>,
) {
    match keys {
        None => ops.extend(widening_all(current, desired).map(op)),
        Some(keys) => ops.extend(
            keys.iter()
                .filter_map(|&key| widening_of(key, current, desired))
                .map(op),
        ),
    }
}

/// The flags of `owner` that its endpoints carry beside its groups bloom
/// (`Endpoint::groups`): `EGRESS_DENIED` when its egress is denied.
pub fn owner_flags(owner: &Owner) -> u32 {
    match owner.egress {
        Egress::Allow => 0,
        Egress::Deny => policy::EGRESS_DENIED,
    }
}

/// `SERVICE_BACKEND` for a container that is a service's backend: its
/// replies are looked up in `SERVICE_FLOWS` to come back from the VIP.
pub fn backend_flag(is_backend: bool) -> u32 {
    if is_backend {
        policy::SERVICE_BACKEND
    } else {
        0
    }
}

/// Every owner's groups bloom (`Endpoint::groups`), from each group's key
/// and members; the one computation the agent, the reference model and the
/// bench share.
#[derive(Debug, Clone, Default)]
pub struct Blooms {
    groups: BTreeMap<u32, u32>,
    /// Owners with security groups: their blooms carry
    /// `policy::INGRESS_SCOPED`.
    scoped: BTreeSet<u32>,
}

impl Blooms {
    /// `groups`: (group key, member owner ids).
    pub fn of_groups<M: IntoIterator<Item = u32>>(
        groups: impl IntoIterator<Item = (u32, M)>,
    ) -> Self {
        let mut out = BTreeMap::new();
        for (key, members) in groups {
            for owner in members {
                *out.entry(owner).or_insert(policy::GROUPS_KNOWN) |= policy::group_bit(key);
            }
        }
        Blooms {
            groups: out,
            scoped: BTreeSet::new(),
        }
    }

    /// The same blooms with `INGRESS_SCOPED` on the owners in `scoped`.
    pub fn scoped(mut self, scoped: BTreeSet<u32>) -> Self {
        self.scoped = scoped;
        self
    }

    /// `owner`'s bloom (an owner in no group: known, no bit), with its
    /// flags.
    pub fn of(&self, owner: u32) -> u32 {
        let bloom = self
            .groups
            .get(&owner)
            .copied()
            .unwrap_or_else(|| policy::groups_bloom([]));
        scoped_bloom(bloom, self.scoped.contains(&owner))
    }
}

/// `bloom` with `INGRESS_SCOPED` set or cleared.
pub fn scoped_bloom(bloom: u32, scoped: bool) -> u32 {
    if scoped {
        bloom | policy::INGRESS_SCOPED
    } else {
        bloom & !policy::INGRESS_SCOPED
    }
}

/// Every owner's `OWNER_GROUPS` entry (slot → exact group keys, sorted),
/// from each group's key and members; shared by the agent, the reference
/// model and the bench. An owner is left out (and judged by
/// `GROUP_PAIRS`) when its groups do not fit an entry, when another owner
/// in a group has the same slot, or when one of its groups has a key
/// another group has too (a list must never make two groups one).
#[derive(Debug, Clone, Default)]
pub struct OwnerGroupLists(pub Entries<OwnerGroupsMap>);

impl OwnerGroupLists {
    /// `groups`: (group key, member owner ids).
    pub fn of_groups<M: IntoIterator<Item = u32>>(
        groups: impl IntoIterator<Item = (u32, M)>,
    ) -> Self {
        let mut keys: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        let mut groups_with_key: BTreeMap<u32, u32> = BTreeMap::new();
        let mut members_of_key: Vec<(u32, u32)> = Vec::new();
        for (key, members) in groups {
            *groups_with_key.entry(key).or_default() += 1;
            for owner in members {
                if owner != SYSTEM_OWNER && owner != NO_OWNER {
                    members_of_key.push((key, owner));
                }
            }
        }
        let mut unlisted = BTreeSet::new();
        for (key, owner) in members_of_key {
            if groups_with_key[&key] > 1 {
                unlisted.insert(owner);
            }
            keys.entry(owner).or_default().insert(key);
        }
        let mut owners_at: BTreeMap<u32, u32> = BTreeMap::new();
        for &owner in keys.keys() {
            *owners_at.entry(owner_groups_index(owner)).or_default() += 1;
        }
        let mut out = Entries::<OwnerGroupsMap>::new();
        for (owner, keys) in keys {
            let index = owner_groups_index(owner);
            if unlisted.contains(&owner) || owners_at[&index] > 1 {
                continue;
            }
            let keys: Vec<u32> = keys.into_iter().collect();
            if let Some(entry) = OwnerGroups::new(owner, &keys) {
                out.insert(index, entry);
            }
        }
        OwnerGroupLists(out)
    }
}

pub use netfabric_common::policy::group_key;

/// One change to one map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a service table's members are half a KiB; ops are few, short-lived, and \
              boxing them would allocate for every endpoint write"
)]
pub enum Op {
    /// `HOST_CONFIG` (never cleared).
    SetHost {
        host: HostConfig,
    },
    Zone(Change<Zones>),
    Endpoint(Change<Endpoints>),
    NextHop(Change<NextHops>),
    Gateway(Change<ZoneGateways>),
    LocalPort(Change<LocalPorts>),
    GroupPair(Change<GroupPairs>),
    OwnerGroups(Change<OwnerGroupsMap>),
    PortScope(Change<PortScopes>),
    ServicePorts(Change<ServicePorts>),
    ServiceTables(Change<ServiceTables>),
}

impl Op {
    /// Writes it into the maps of `dp`.
    pub fn apply(&self, dp: &mut Datapath) -> Result<(), DatapathError> {
        match self {
            Op::SetHost { host } => dp.set_host(host),
            Op::Zone(c) => c.apply(dp),
            Op::Endpoint(c) => c.apply(dp),
            Op::NextHop(c) => c.apply(dp),
            Op::Gateway(c) => c.apply(dp),
            Op::LocalPort(c) => c.apply(dp),
            Op::GroupPair(c) => c.apply(dp),
            Op::OwnerGroups(c) => c.apply(dp),
            Op::PortScope(c) => c.apply(dp),
            Op::ServicePorts(c) => c.apply(dp),
            Op::ServiceTables(c) => c.apply(dp),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{MacAddr, state::HostSpec};

    fn ep(low: u16) -> EndpointKey {
        EndpointKey { zone_slot: 0, low }
    }

    fn set_endpoint(low: u16, owner: u32, groups: u32) -> Op {
        Op::Endpoint(Change::Set {
            key: ep(low),
            value: Endpoint { owner, groups },
        })
    }

    fn remove_pair(pair: OwnerPair) -> Op {
        Op::GroupPair(Change::Clear { key: pair })
    }

    fn set_pair(pair: OwnerPair, shared: u32) -> Op {
        Op::GroupPair(Change::Set {
            key: pair,
            value: shared,
        })
    }

    fn lab() -> State {
        let mut s = State::default();
        s.create_zone("lab", "10.1.0.0/16".parse().unwrap(), None)
            .unwrap();
        for n in 1..=2u8 {
            s.create_host(HostSpec {
                name: format!("h{n}"),
                zone: "lab".into(),
                number: Some(n.into()),
                subnet: None,
                uplink: "up0".into(),
                underlay_ip: Ipv4Addr::new(172, 30, 0, n),
                underlay_mac: MacAddr([2, 0xfe, 0, 0, 0, n]),
            })
            .unwrap();
        }
        for o in ["alice", "bob", "carol"] {
            s.create_owner(o).unwrap();
        }
        s.create_group("team", &["alice".into(), "carol".into()])
            .unwrap();
        s.create_group("ops", &["alice".into(), "carol".into(), "bob".into()])
            .unwrap();
        s.create_container("a1", "alice", "h1", None).unwrap();
        s.create_container("b1", "bob", "h2", None).unwrap();
        s
    }

    fn rt() -> Runtime {
        Runtime {
            uplink_ifindex: 7,
            ready_ports: [(1, 42)].into(),
            health: Health::new(),
        }
    }

    #[test]
    fn the_plan_covers_the_zone_and_counts_shared_groups() {
        let s = lab();
        let p = HostPlan::compute(&s, "h1", &rt()).unwrap();
        let h = p.host.unwrap();
        assert_eq!(
            (h.zone_prefix, h.host_octet, h.uplink_ifindex),
            (0x0a01_0000, 1, 7)
        );
        assert_eq!(h.gateway_mac, [2, 0, 10, 1, 1, 0]);
        assert_eq!(p.zones.get(&0x0a01), Some(&0));
        assert_eq!(p.next_hops.len(), 2);
        assert_eq!(p.endpoints.len(), 2);
        assert_eq!(
            p.local_ports.get(&1),
            Some(&PortEntry {
                ifindex: 42,
                mac: [2, 0, 10, 1, 1, 1]
            })
        );
        let alice = s.owner("alice").unwrap().id;
        let bob = s.owner("bob").unwrap().id;
        let carol = s.owner("carol").unwrap().id;
        assert_eq!(p.group_pairs.get(&OwnerPair::new(alice, carol)), Some(&2));
        assert_eq!(p.group_pairs.get(&OwnerPair::new(alice, bob)), Some(&1));
        // A port that is not ready yet gets no LOCAL_PORTS entry.
        assert!(
            HostPlan::compute(&s, "h2", &Runtime::default())
                .unwrap()
                .local_ports
                .is_empty()
        );
        assert!(HostPlan::compute(&s, "nope", &rt()).is_err());
    }

    #[test]
    fn the_diff_is_empty_when_nothing_changed_and_replays_to_the_target() {
        let s = lab();
        let p = HostPlan::compute(&s, "h1", &rt()).unwrap();
        assert!(p.diff(&p).is_empty());
        let mut cur = HostPlan::default();
        for op in cur.diff(&p) {
            cur.record(&op);
        }
        assert_eq!(cur, p);
        // And back to nothing (except the host config, which is never cleared).
        let empty = HostPlan {
            host: p.host,
            ..HostPlan::default()
        };
        for op in cur.clone().diff(&empty) {
            cur.record(&op);
        }
        assert_eq!(cur, empty);
    }

    #[test]
    fn leaving_a_group_narrows_first_and_only_touches_that_pair() {
        let s = lab();
        let before = HostPlan::compute(&s, "h1", &rt()).unwrap();
        let mut s2 = s.clone();
        s2.remove_group_members("ops", &["bob".into()]).unwrap();
        let after = HostPlan::compute(&s2, "h1", &rt()).unwrap();
        let ops = before.diff(&after);
        let alice = s.owner("alice").unwrap().id;
        let bob = s.owner("bob").unwrap().id;
        let carol = s.owner("carol").unwrap().id;
        // bob (container b1, 10.1.2.1) is in no group any more: his bloom
        // shrinks after his pairs are gone, without clearing the endpoint;
        // his group list goes with the pairs.
        assert_eq!(
            ops,
            vec![
                remove_pair(OwnerPair::new(alice, bob)),
                remove_pair(OwnerPair::new(bob, carol)),
                Op::OwnerGroups(Change::Clear {
                    key: owner_groups_index(bob)
                }),
                set_endpoint(0x0201, bob, policy::groups_bloom([])),
            ]
        );
        // Removing one of two shared groups lowers the count; alice's bloom
        // (container a1) keeps only "ops", and so do her and carol's lists,
        // with the narrowing.
        let mut s3 = s.clone();
        s3.delete_group("team").unwrap();
        let ops = before.diff(&HostPlan::compute(&s3, "h1", &rt()).unwrap());
        let ops_only = policy::groups_bloom([group_key("ops")]);
        let list = |owner| {
            Op::OwnerGroups(Change::Set {
                key: owner_groups_index(owner),
                value: OwnerGroups::new(owner, &[group_key("ops")]).unwrap(),
            })
        };
        let mut want = vec![
            set_pair(OwnerPair::new(alice, carol), 1),
            list(alice.min(carol)),
            list(alice.max(carol)),
        ];
        if ops_only != before.endpoints[&ep(0x0101)].groups {
            want.push(set_endpoint(0x0101, alice, ops_only));
        }
        assert_eq!(ops, want);
    }

    #[test]
    fn joining_a_group_sets_the_bloom_before_the_pairs() {
        let s = lab();
        let before = HostPlan::compute(&s, "h1", &rt()).unwrap();
        let mut s2 = s.clone();
        s2.create_group("new", &["alice".into(), "bob".into()])
            .unwrap();
        let after = HostPlan::compute(&s2, "h1", &rt()).unwrap();
        let alice = s.owner("alice").unwrap().id;
        let bob = s.owner("bob").unwrap().id;
        let bloom = |groups: &[&str]| policy::groups_bloom(groups.iter().map(|g| group_key(g)));
        assert_eq!(
            after.endpoints[&ep(0x0101)],
            Endpoint {
                owner: alice,
                groups: bloom(&["team", "ops", "new"])
            }
        );
        assert_eq!(
            after.endpoints[&ep(0x0201)],
            Endpoint {
                owner: bob,
                groups: bloom(&["ops", "new"])
            }
        );
        let ops = before.diff(&after);
        let first_pair = ops
            .iter()
            .position(|op| matches!(op, Op::GroupPair(Change::Set { .. })))
            .expect("the alice-bob pair count grows");
        assert!(
            ops.iter()
                .rposition(|op| matches!(op, Op::Endpoint(Change::Set { .. })))
                .is_none_or(|last| last < first_pair),
            "blooms first: {ops:?}"
        );
        assert!(
            !ops.iter()
                .any(|op| matches!(op, Op::Endpoint(Change::Clear { .. })))
        );
        // Shared groups always overlap in the blooms.
        let (a, b) = (
            after.endpoints[&ep(0x0101)].groups,
            after.endpoints[&ep(0x0201)].groups,
        );
        assert!(policy::may_share_group(a, b));
    }

    #[test]
    fn an_owner_denied_egress_flags_its_endpoints_and_nothing_else() {
        let s = lab();
        let before = HostPlan::compute(&s, "h1", &rt()).unwrap();
        let mut s2 = s.clone();
        s2.set_owner_egress("alice", Egress::Deny).unwrap();
        let after = HostPlan::compute(&s2, "h1", &rt()).unwrap();
        let alice = s.owner("alice").unwrap().id;
        let was = before.endpoints[&ep(0x0101)];
        assert_eq!(was.groups & policy::EGRESS_DENIED, 0);
        let flagged = Endpoint {
            owner: alice,
            groups: was.groups | policy::EGRESS_DENIED,
        };
        assert_eq!(after.endpoints[&ep(0x0101)], flagged);
        assert_eq!(
            before.diff(&after),
            vec![set_endpoint(0x0101, alice, flagged.groups)],
            "only alice's endpoint changes"
        );
        // Allowed again: the flag goes.
        s2.set_owner_egress("alice", Egress::Allow).unwrap();
        assert_eq!(HostPlan::compute(&s2, "h1", &rt()).unwrap(), before);
    }

    #[test]
    fn deleting_a_container_clears_its_endpoint_and_port() {
        let s = lab();
        let before = HostPlan::compute(&s, "h1", &rt()).unwrap();
        let mut s2 = s.clone();
        s2.delete_container("a1").unwrap();
        let ops = before.diff(&HostPlan::compute(&s2, "h1", &rt()).unwrap());
        assert_eq!(
            ops,
            vec![
                Op::LocalPort(Change::Clear { key: 1 }),
                Op::Endpoint(Change::Clear { key: ep(0x0101) })
            ]
        );
    }

    #[test]
    fn a_new_port_ifindex_replaces_the_entry() {
        let s = lab();
        let before = HostPlan::compute(&s, "h1", &rt()).unwrap();
        let mut r = rt();
        r.ready_ports.insert(1, 43);
        let ops = before.diff(&HostPlan::compute(&s, "h1", &r).unwrap());
        assert_eq!(
            ops,
            vec![Op::LocalPort(Change::Set {
                key: 1,
                value: PortEntry {
                    ifindex: 43,
                    mac: [2, 0, 10, 1, 1, 1]
                }
            })]
        );
    }

    fn keys(plan: &HostPlan, owner: u32) -> Option<Vec<u32>> {
        let g = plan.owner_groups.get(&owner_groups_index(owner))?;
        assert_eq!(g.owner, owner);
        Some(g.keys().to_vec())
    }

    #[test]
    fn every_owner_in_a_group_has_its_exact_groups_listed() {
        let s = lab();
        let p = HostPlan::compute(&s, "h1", &rt()).unwrap();
        let id = |o: &str| s.owner(o).unwrap().id;
        let sorted = |names: &[&str]| {
            let mut k: Vec<u32> = names.iter().map(|n| group_key(n)).collect();
            k.sort();
            k
        };
        assert_eq!(keys(&p, id("alice")), Some(sorted(&["team", "ops"])));
        assert_eq!(keys(&p, id("carol")), Some(sorted(&["team", "ops"])));
        assert_eq!(keys(&p, id("bob")), Some(sorted(&["ops"])));
        assert_eq!(p.owner_groups.len(), 3);
    }

    #[test]
    fn owners_a_list_cannot_describe_exactly_are_left_to_the_pairs() {
        let none: [u32; 0] = [];
        // Two groups with one key: a list would make them one group.
        let l = OwnerGroupLists::of_groups([(7, vec![10, 11]), (7, vec![12]), (8, vec![12, 13])]);
        for owner in [10, 11, 12] {
            assert!(!l.0.contains_key(&owner_groups_index(owner)), "{owner}");
        }
        assert_eq!(l.0[&owner_groups_index(13)].keys(), &[8]);
        // Two owners on one slot: neither is listed.
        let far = 5 + netfabric_common::OWNER_GROUPS_ENTRIES;
        let l = OwnerGroupLists::of_groups([(1, vec![5, far]), (2, vec![6])]);
        assert!(!l.0.contains_key(&owner_groups_index(5)));
        assert_eq!(l.0[&owner_groups_index(6)].keys(), &[2]);
        // More groups than an entry holds; the system owner needs no list.
        let l = OwnerGroupLists::of_groups((0..7u32).map(|g| (g, vec![20, SYSTEM_OWNER])));
        assert!(l.0.is_empty(), "{l:?}");
        let l = OwnerGroupLists::of_groups((0..6u32).map(|g| (g, vec![20])));
        assert_eq!(l.0[&owner_groups_index(20)].keys(), &[0, 1, 2, 3, 4, 5]);
        assert!(OwnerGroupLists::of_groups([(1, none)]).0.is_empty());
    }

    #[test]
    fn a_list_narrows_to_what_both_states_share_before_anything_is_added() {
        // alice leaves "team" and joins "new" at once: her list first keeps
        // only "ops" (in both states), and gets "new" after the new pairs.
        let s = lab();
        let before = HostPlan::compute(&s, "h1", &rt()).unwrap();
        let mut s2 = s.clone();
        s2.remove_group_members("team", &["alice".into()]).unwrap();
        s2.create_group("new", &["alice".into(), "bob".into()])
            .unwrap();
        let after = HostPlan::compute(&s2, "h1", &rt()).unwrap();
        let alice = s.owner("alice").unwrap().id;
        let index = owner_groups_index(alice);
        let ops = before.diff(&after);
        let set_list = |value| Op::OwnerGroups(Change::Set { key: index, value });
        let narrowed = OwnerGroups::new(alice, &[group_key("ops")]).unwrap();
        let full = after.owner_groups[&index];
        let at = |want: Op| ops.iter().position(|op| *op == want);
        let first_narrow = at(set_list(narrowed)).expect("narrowed first");
        let full_at = at(set_list(full)).expect("then the full list");
        let last_pair = ops
            .iter()
            .rposition(|op| matches!(op, Op::GroupPair(Change::Set { .. })))
            .expect("pairs added");
        // Additions: endpoints and ports set, pair counts that grow.
        let first_widening = ops
            .iter()
            .position(|op| match op {
                Op::Endpoint(Change::Set { .. }) | Op::LocalPort(Change::Set { .. }) => true,
                Op::GroupPair(Change::Set { key, value }) => {
                    before.group_pairs.get(key).is_none_or(|m| m < value)
                }
                _ => false,
            })
            .unwrap_or(ops.len());
        assert!(first_narrow < first_widening, "{ops:?}");
        assert!(full_at > last_pair, "{ops:?}");
        // Never a list with a group that one of the two states lacks.
        let mut cur = before.clone();
        for op in &ops {
            cur.record(op);
            if let Some(g) = cur.owner_groups.get(&index) {
                let ok = |p: &HostPlan| {
                    p.owner_groups
                        .get(&index)
                        .is_some_and(|x| g.keys().iter().all(|k| x.keys().contains(k)))
                };
                assert!(ok(&before) || ok(&after), "after {op:?}: {g:?}");
            }
        }
        assert_eq!(cur, after);
    }

    #[test]
    fn scopes_come_before_what_they_narrow_and_go_after_what_denies() {
        use crate::state::Via;
        let s = lab();
        let (alice, bob) = (s.owner("alice").unwrap().id, s.owner("bob").unwrap().id);
        let pair = ScopedPair {
            receiver: alice,
            sender: bob,
        };
        let before = HostPlan::compute(&s, "h1", &rt()).unwrap();
        assert!(before.port_scopes.is_empty());
        // alice narrows ops: bob (in ops only) is scoped; carol shares team
        // too, which alice did not narrow.
        let mut s2 = s.clone();
        s2.set_security_group(
            "alice",
            Via::Group("ops".into()),
            &["tcp/5432".parse().unwrap()],
        )
        .unwrap();
        let after = HostPlan::compute(&s2, "h1", &rt()).unwrap();
        assert_eq!(
            after.port_scopes.keys().copied().collect::<Vec<_>>(),
            [pair]
        );
        let scope = after.port_scopes[&pair];
        assert!(scope.opens(6, 5432) && !scope.opens(6, 22));
        let flagged = after.endpoints[&ep(0x0101)];
        assert_eq!(
            flagged.groups,
            before.endpoints[&ep(0x0101)].groups | policy::INGRESS_SCOPED
        );
        assert_eq!(
            after.endpoints[&ep(0x0201)],
            before.endpoints[&ep(0x0201)],
            "bob's own blooms"
        );
        let ops = before.diff(&after);
        assert_eq!(
            ops,
            vec![
                Op::PortScope(Change::Set {
                    key: pair,
                    value: scope
                }),
                set_endpoint(0x0101, alice, flagged.groups),
            ],
            "the scope before the flag"
        );
        // The group deleted (its security group with it): the pair goes
        // before the scope, which goes before the flag.
        let mut s3 = s2.clone();
        s3.delete_group("ops").unwrap();
        let gone = HostPlan::compute(&s3, "h1", &rt()).unwrap();
        let ops = after.diff(&gone);
        let at = |f: &dyn Fn(&Op) -> bool| ops.iter().position(f).expect("present");
        let pair_gone = at(&|o| *o == remove_pair(OwnerPair::new(alice, bob)));
        let scope_gone = at(&|o| *o == Op::PortScope(Change::Clear { key: pair }));
        let flag_gone = at(
            &|o| matches!(o, Op::Endpoint(Change::Set { key, value }) if *key == ep(0x0101) && value.groups & policy::INGRESS_SCOPED == 0),
        );
        assert!(pair_gone < scope_gone && scope_gone < flag_gone, "{ops:?}");
        let mut cur = after.clone();
        for op in &ops {
            cur.record(op);
        }
        assert_eq!(cur, gone);
    }
    fn with_service(s: &State) -> State {
        let mut s = s.clone();
        s.create_container("a2", "alice", "h2", None).unwrap();
        s.create_service(crate::state::ServiceSpec {
            name: "api".into(),
            owner: "alice".into(),
            zone: None,
            vip: None,
            ports: vec!["tcp/80:8080".parse().unwrap(), "udp/53".parse().unwrap()],
            backends: vec!["a1".into(), "a2".into()],
            health: Default::default(),
        })
        .unwrap();
        s.validate().unwrap();
        s
    }

    #[test]
    fn services_are_planned_with_their_members_and_flag_their_backends() {
        let s = with_service(&lab());
        let p = HostPlan::compute(&s, "h1", &rt()).unwrap();
        let alice = s.owner("alice").unwrap().id;
        let vip = u32::from(Ipv4Addr::new(10, 1, 0, 1));
        let id = service_id(0, vip);
        assert_eq!(id, 1);
        let key = |port, protocol| ServicePortKey {
            vip,
            port,
            protocol,
            _pad: 0,
        };
        assert_eq!(
            p.service_ports.get(&key(80, 6)),
            Some(&ServicePort {
                service: id,
                owner: alice,
                target_port: 8080,
                _pad: [0; 6]
            })
        );
        assert_eq!(p.service_ports[&key(53, 17)].target_port, 53);
        assert_eq!(p.service_ports.len(), 2);
        let members = p.service_tables[&id];
        assert_eq!(members.members[0], u32::from(Ipv4Addr::new(10, 1, 1, 1)));
        assert_eq!(members.members[1], u32::from(Ipv4Addr::new(10, 1, 2, 2)));
        assert_eq!(members.healthy, 0b11, "no report: healthy");
        // Backends carry SERVICE_BACKEND; bob's b1 does not.
        assert_ne!(p.endpoints[&ep(0x0101)].groups & policy::SERVICE_BACKEND, 0);
        assert_ne!(p.endpoints[&ep(0x0202)].groups & policy::SERVICE_BACKEND, 0);
        assert_eq!(p.endpoints[&ep(0x0201)].groups & policy::SERVICE_BACKEND, 0);
        // A failed report on the health port (the first port's target)
        // takes the member out of the healthy set only.
        let mut down = rt();
        down.health
            .insert((Ipv4Addr::new(10, 1, 2, 2), 8080), false);
        down.health.insert((Ipv4Addr::new(10, 1, 1, 1), 53), false);
        let q = HostPlan::compute(&s, "h1", &down).unwrap();
        assert_eq!(q.service_tables[&id].healthy, 0b01);
        assert_eq!(q.service_tables[&id].members, members.members);
        assert_eq!(
            p.diff(&q),
            vec![Op::ServiceTables(Change::Set {
                key: id,
                value: q.service_tables[&id]
            })]
        );
    }

    #[test]
    fn tables_widen_before_ports_and_members_leave_before_their_flag() {
        let s = lab();
        let before = HostPlan::compute(&s, "h1", &rt()).unwrap();
        let s2 = with_service(&s);
        let after = HostPlan::compute(&s2, "h1", &rt()).unwrap();
        let ops = before.diff(&after);
        let at = |f: &dyn Fn(&Op) -> bool| ops.iter().position(f).expect("present");
        let flag = at(
            &|o| matches!(o, Op::Endpoint(Change::Set { key, value }) if *key == ep(0x0101) && value.groups & policy::SERVICE_BACKEND != 0),
        );
        let table = at(&|o| matches!(o, Op::ServiceTables(Change::Set { .. })));
        let port = at(&|o| matches!(o, Op::ServicePorts(Change::Set { .. })));
        assert!(flag < table && table < port, "{ops:?}");
        // a1 leaves the service: the table without it comes before a1's
        // flag goes.
        let mut s3 = s2.clone();
        s3.remove_service_backends("alice", "api", &["a1".into()])
            .unwrap();
        let left = HostPlan::compute(&s3, "h1", &rt()).unwrap();
        let ops = after.diff(&left);
        let id = 1;
        assert_eq!(
            ops,
            vec![
                Op::ServiceTables(Change::Set {
                    key: id,
                    value: left.service_tables[&id]
                }),
                Op::Endpoint(Change::Set {
                    key: ep(0x0101),
                    value: before.endpoints[&ep(0x0101)]
                }),
                Op::ServiceTables(Change::Set {
                    key: id,
                    value: left.service_tables[&id]
                }),
            ]
        );
        // The service goes: its ports before its table.
        let mut s4 = s2.clone();
        s4.delete_service("alice", "api").unwrap();
        let gone = HostPlan::compute(&s4, "h1", &rt()).unwrap();
        let ops = after.diff(&gone);
        let port = at_of(&ops, &|o| {
            matches!(o, Op::ServicePorts(Change::Clear { .. }))
        });
        let table = at_of(&ops, &|o| {
            matches!(o, Op::ServiceTables(Change::Clear { .. }))
        });
        let flag = at_of(&ops, &|o| matches!(o, Op::Endpoint(Change::Set { .. })));
        assert!(port < table && table < flag, "{ops:?}");
        let mut cur = after.clone();
        for op in &ops {
            cur.record(op);
        }
        assert_eq!(cur, gone);
    }

    fn at_of(ops: &[Op], f: &dyn Fn(&Op) -> bool) -> usize {
        ops.iter().position(f).expect("present")
    }
}
