//! The incremental plan: one change of the desired state recomputes only
//! the plan entries it can affect, and says which keys those are, so that
//! [`HostPlan::diff_keys`] looks at them alone. [`HostPlan::compute`] stays
//! the reference (the property test below holds the two equal) and the
//! fallback: a change of zones or hosts, an owner removed or renumbered,
//! a group created, changed or deleted whose key another group has too,
//! or a state that does not resolve (a name nowhere defined) replans in
//! full.
//!
//! What a change touches:
//! * a container added, removed or changed: its `ENDPOINTS` key (old and
//!   new), and its `LOCAL_PORTS` octet when it is on this host;
//! * a group's members: that group's `GROUP_PAIRS` rows (counts moved by
//!   one), and the groups bloom of every endpoint and the `OWNER_GROUPS`
//!   slot of every owner that joined or left it (that slot's list is
//!   recomputed from the owners in a group it holds);
//! * an owner's egress switch: the flags of each of its endpoints;
//! * the runtime (ready ports, uplink): `HOST_CONFIG` and `LOCAL_PORTS`;
//! * while any security group exists (before or after): the `PORT_SCOPES`
//!   entries recomputed from the new state (bounded by the security
//!   groups, not by the zone) and those that differ, and the groups bloom
//!   of every endpoint whose owner gained its first security group or lost
//!   its last (`INGRESS_SCOPED`);
//! * a service changed, a container a service names as a backend changed,
//!   or a health report about a member moved: that service's
//!   `SERVICE_PORTS` and `SERVICE_TABLES` entries (old and new), and the
//!   `SERVICE_BACKEND` flag of the endpoints of its members (old and new).

use std::collections::{BTreeMap, BTreeSet, HashMap};

#[cfg(test)]
use netfabric_common::conntrack::ScopedPair;
use netfabric_common::{Endpoint, NO_OWNER, OwnerGroups, SYSTEM_OWNER, owner_groups_index, policy};

use super::plan::{
    EndpointKey, HostPlan, PlanError, Runtime, TouchedKeys, backend_flag, group_key, host_config,
    local_port, owner_flags, port_scopes, scoped_bloom, scoped_owner_ids, service_entry,
};
use crate::state::{Changes, Container, Group, Object, Owner, State, member_pairs};

/// A change checked for an incremental update, with what it names owned.
struct Prepared {
    new_owners: Vec<(String, u32)>,
    /// Owner id → flags, of every owner added or changed.
    new_flags: Vec<(u32, u32)>,
    /// Owners whose flags changed (id, new flags).
    reflagged: Vec<(u32, u32)>,
    groups: Vec<(Option<Group>, Option<Group>)>,
    containers: Vec<(Option<Container>, Option<Container>)>,
}

/// What [`IncrementalPlan::update`] did.
#[derive(Debug)]
pub struct Update {
    pub touched: Touched,
    /// The state it replaced. Freeing a full zone's state (64,516
    /// containers, three strings each) takes milliseconds: the caller drops
    /// it once the maps are written.
    pub previous: State,
}

/// What [`IncrementalPlan::update`] recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per update, moved once: a box would buy nothing"
)]
pub enum Touched {
    /// The whole plan was recomputed: diff it in full.
    All,
    /// Only these keys' entries may differ from the previous plan.
    Keys(TouchedKeys),
}

/// The plan of one host, kept equal to [`HostPlan::compute`] of the last
/// state given, with the indexes that make a change cost what it touches.
#[derive(Debug, Clone)]
pub struct IncrementalPlan {
    host: String,
    state: State,
    rt: Runtime,
    plan: HostPlan,
    owner_ids: HashMap<String, u32>,
    /// Host name → its zone's slot.
    host_slots: HashMap<String, u32>,
    /// Owner id → the names of its groups.
    owner_groups: HashMap<u32, BTreeSet<String>>,
    /// Owner id → its endpoints' keys.
    owner_endpoints: HashMap<u32, BTreeSet<EndpointKey>>,
    /// `OWNER_GROUPS` slot → the owners in a group there (system owner
    /// aside): a list is written only for a slot with one.
    slot_owners: HashMap<u32, BTreeSet<u32>>,
    /// Group key → how many groups have it: a list is written only for an
    /// owner whose group keys are each one group's.
    groups_with_key: HashMap<u32, u32>,
    /// Owner id → its flags beside the bloom ([`super::plan::owner_flags`];
    /// an owner whose flags change is a changed owner: full replan).
    owner_flags: HashMap<u32, u32>,
    /// Owners with security groups (`INGRESS_SCOPED` in their blooms).
    scoped: BTreeSet<u32>,
    /// Each service (owner, name) as planned: what it wrote and which
    /// containers it names, so that a change recomputes only the services
    /// it touches.
    services: HashMap<(String, String), PlannedService>,
    /// Container name → the services naming it as a backend (resolved or
    /// not): a change of that container moves them.
    services_of_name: HashMap<String, BTreeSet<(String, String)>>,
    /// Backend address → the services it is a member of: a health report
    /// about it moves them.
    services_of_address: HashMap<std::net::Ipv4Addr, BTreeSet<(String, String)>>,
    /// Endpoint → how many (service, member) pairs it is: `SERVICE_BACKEND`
    /// while any.
    backend_refs: HashMap<EndpointKey, usize>,
}

/// What one service wrote into the plan.
#[derive(Debug, Clone, Default)]
struct PlannedService {
    table: u32,
    ports: Vec<netfabric_common::service::ServicePortKey>,
    /// Every backend name it lists.
    names: Vec<String>,
    /// The members that resolved: address and endpoint.
    members: Vec<(std::net::Ipv4Addr, Option<EndpointKey>)>,
}

impl IncrementalPlan {
    /// The full plan of `host` for `state`, and its indexes. The state is
    /// kept sorted by name ([`State::normalize`]): changes find their
    /// objects by binary search.
    pub fn new(mut state: State, host: &str, rt: Runtime) -> Result<Self, PlanError> {
        state.normalize();
        let plan = HostPlan::compute(&state, host, &rt)?;
        let mut me = IncrementalPlan {
            host: host.to_owned(),
            state,
            rt,
            plan,
            owner_ids: HashMap::new(),
            host_slots: HashMap::new(),
            owner_groups: HashMap::new(),
            owner_endpoints: HashMap::new(),
            slot_owners: HashMap::new(),
            groups_with_key: HashMap::new(),
            owner_flags: HashMap::new(),
            scoped: BTreeSet::new(),
            services: HashMap::new(),
            services_of_name: HashMap::new(),
            services_of_address: HashMap::new(),
            backend_refs: HashMap::new(),
        };
        me.index();
        Ok(me)
    }

    /// The plan of the last state and runtime given.
    pub fn plan(&self) -> &HostPlan {
        &self.plan
    }

    /// The last state given.
    pub fn state(&self) -> &State {
        &self.state
    }

    fn index(&mut self) {
        let s = &self.state;
        self.owner_ids = s.owners.iter().map(|o| (o.name.clone(), o.id)).collect();
        self.owner_flags = s.owners.iter().map(|o| (o.id, owner_flags(o))).collect();
        let slots: HashMap<&str, u32> = s.zones.iter().map(|z| (z.name.as_str(), z.slot)).collect();
        self.host_slots = s
            .hosts
            .iter()
            .filter_map(|h| Some((h.name.clone(), *slots.get(h.zone.as_str())?)))
            .collect();
        self.owner_groups.clear();
        for g in &s.groups {
            for m in &g.members {
                if let Some(&id) = self.owner_ids.get(m) {
                    self.owner_groups
                        .entry(id)
                        .or_default()
                        .insert(g.name.clone());
                }
            }
        }
        self.groups_with_key.clear();
        for g in &s.groups {
            *self.groups_with_key.entry(group_key(&g.name)).or_default() += 1;
        }
        self.slot_owners.clear();
        for &owner in self.owner_groups.keys() {
            if listable(owner) {
                self.slot_owners
                    .entry(owner_groups_index(owner))
                    .or_default()
                    .insert(owner);
            }
        }
        self.scoped = scoped_owner_ids(s);
        self.owner_endpoints.clear();
        for c in &s.containers {
            if let Some((key, owner)) = self.endpoint_key(c) {
                self.owner_endpoints.entry(owner).or_default().insert(key);
            }
        }
        self.services.clear();
        self.services_of_name.clear();
        self.services_of_address.clear();
        self.backend_refs.clear();
        let all: BTreeSet<(String, String)> = self
            .state
            .services
            .iter()
            .map(|svc| (svc.owner.clone(), svc.name.clone()))
            .collect();
        // The plan holds them already (computed in full): this only
        // indexes them.
        self.refresh_services(&all, &mut TouchedKeys::default());
    }

    /// `Endpoint::groups` of endpoint `key` of `owner`.
    fn endpoint_groups(&self, owner: u32, key: &EndpointKey) -> u32 {
        self.bloom(owner) | backend_flag(self.backend_refs.contains_key(key))
    }

    /// `SERVICE_PORTS`, `SERVICE_TABLES` and the members' `SERVICE_BACKEND`
    /// recomputed for the services `keys` (owner, name) of the current
    /// state and runtime: what they wrote goes, what they are now comes.
    /// Bounded by those services, not by the zone or the other services.
    fn refresh_services(&mut self, keys: &BTreeSet<(String, String)>, touched: &mut TouchedKeys) {
        let mut flags = BTreeSet::new();
        // Everything the services wrote goes first: a VIP or a port may
        // move from one to another in one change.
        for key in keys {
            let Some(old) = self.services.remove(key) else {
                continue;
            };
            for port in &old.ports {
                self.plan.service_ports.remove(port);
                touched.service_ports.insert(*port);
            }
            self.plan.service_tables.remove(&old.table);
            touched.service_tables.insert(old.table);
            for name in &old.names {
                remove_from(&mut self.services_of_name, name, key);
            }
            for (address, endpoint) in &old.members {
                remove_from(&mut self.services_of_address, address, key);
                if let Some(e) = endpoint {
                    if let Some(n) = self.backend_refs.get_mut(e) {
                        *n -= 1;
                        if *n == 0 {
                            self.backend_refs.remove(e);
                        }
                    }
                    flags.insert(*e);
                }
            }
        }
        for key in keys {
            let s = &self.state;
            let Ok(at) = s
                .services
                .binary_search_by(|svc| (&svc.owner, &svc.name).cmp(&(&key.0, &key.1)))
            else {
                continue;
            };
            let svc = &s.services[at];
            let mut planned = PlannedService {
                names: svc.backends.iter().map(|b| b.container.clone()).collect(),
                ..PlannedService::default()
            };
            if let Some(entry) = service_entry(
                s,
                svc,
                &self.rt.health,
                |name| container_named(s, name),
                |name| self.owner_ids.get(name).copied(),
            ) {
                planned.table = entry.id;
                self.plan.service_tables.insert(entry.id, entry.members);
                touched.service_tables.insert(entry.id);
                for (port, value) in entry.ports {
                    self.plan.service_ports.insert(port, value);
                    touched.service_ports.insert(port);
                    planned.ports.push(port);
                }
                planned.members = entry
                    .backends
                    .iter()
                    .map(|c| (c.address, self.endpoint_key(c).map(|(k, _)| k)))
                    .collect();
            }
            for name in &planned.names {
                self.services_of_name
                    .entry(name.clone())
                    .or_default()
                    .insert(key.clone());
            }
            for (address, endpoint) in &planned.members {
                self.services_of_address
                    .entry(*address)
                    .or_default()
                    .insert(key.clone());
                if let Some(e) = endpoint {
                    *self.backend_refs.entry(*e).or_default() += 1;
                    flags.insert(*e);
                }
            }
            // A service that resolves nothing (never in a validated
            // state) is still indexed by the names it lists.
            self.services.insert(key.clone(), planned);
        }
        for key in flags {
            let on = self.backend_refs.contains_key(&key);
            if let Some(e) = self.plan.endpoints.get_mut(&key) {
                let groups = (e.groups & !policy::SERVICE_BACKEND) | backend_flag(on);
                if groups != e.groups {
                    e.groups = groups;
                    touched.endpoints.insert(key);
                }
            }
        }
    }

    /// The services a change of these containers moves (those naming one
    /// of them as a backend).
    fn services_of_containers<'a>(
        &self,
        containers: impl Iterator<Item = &'a Container>,
    ) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        if self.services_of_name.is_empty() {
            return out;
        }
        for c in containers {
            if let Some(keys) = self.services_of_name.get(&c.name) {
                out.extend(keys.iter().cloned());
            }
        }
        out
    }

    fn endpoint_key(&self, c: &Container) -> Option<(EndpointKey, u32)> {
        let slot = *self.host_slots.get(&c.host)?;
        let owner = *self.owner_ids.get(&c.owner)?;
        Some((EndpointKey::of(slot, c.address), owner))
    }

    /// `owner`'s `Endpoint::groups`: its groups bloom, as
    /// [`super::plan::Blooms`] computes it, and its flags.
    fn bloom(&self, owner: u32) -> u32 {
        let bloom = policy::groups_bloom(
            self.owner_groups
                .get(&owner)
                .into_iter()
                .flatten()
                .map(|g| group_key(g)),
        ) | self.owner_flags.get(&owner).copied().unwrap_or(0);
        scoped_bloom(bloom, self.scoped.contains(&owner))
    }

    /// The `OWNER_GROUPS` entry of `slot`, as
    /// [`super::plan::OwnerGroupLists`] computes it.
    fn owner_list(&self, slot: u32) -> Option<OwnerGroups> {
        let owners = self.slot_owners.get(&slot)?;
        let (Some(&owner), 1) = (owners.first(), owners.len()) else {
            return None;
        };
        let keys: BTreeSet<u32> = self
            .owner_groups
            .get(&owner)?
            .iter()
            .map(|g| group_key(g))
            .collect();
        if keys
            .iter()
            .any(|k| self.groups_with_key.get(k).is_some_and(|&n| n > 1))
        {
            return None;
        }
        OwnerGroups::new(owner, &keys.into_iter().collect::<Vec<_>>())
    }

    /// Moves to `next` (and `rt`): the plan becomes
    /// `HostPlan::compute(&next, host, rt)`, recomputing only what the
    /// change touches when it can.
    pub fn update(&mut self, next: State, rt: &Runtime) -> Result<Update, PlanError> {
        match self.update_state(&next) {
            Some((mut touched, services_moved)) => {
                let previous = std::mem::replace(&mut self.state, next);
                self.refresh_scopes(&mut touched)?;
                if !services_moved.is_empty() {
                    self.refresh_services(&services_moved, &mut touched);
                }
                if *rt != self.rt {
                    self.apply_runtime(rt, &mut touched);
                }
                Ok(Update {
                    touched: Touched::Keys(touched),
                    previous,
                })
            }
            None => {
                let previous = std::mem::take(&mut self.state);
                *self = IncrementalPlan::new(next, &self.host.clone(), rt.clone())?;
                Ok(Update {
                    touched: Touched::All,
                    previous,
                })
            }
        }
    }

    /// `PORT_SCOPES` and the `INGRESS_SCOPED` flags for the state just
    /// taken (`self.state`), while it or the one before has security
    /// groups: the scopes that differ, and the endpoints of every owner
    /// whose flag moved.
    fn refresh_scopes(&mut self, touched: &mut TouchedKeys) -> Result<(), PlanError> {
        if self.scoped.is_empty()
            && self.plan.port_scopes.is_empty()
            && self.state.security_groups.is_empty()
        {
            return Ok(());
        }
        let scopes = port_scopes(&self.state)?;
        let scoped = scoped_owner_ids(&self.state);
        let moved: BTreeSet<u32> = self.scoped.symmetric_difference(&scoped).copied().collect();
        self.scoped = scoped;
        let old = std::mem::replace(&mut self.plan.port_scopes, scopes);
        let new = &self.plan.port_scopes;
        touched.port_scopes.extend(
            old.iter()
                .filter(|(k, v)| new.get(k) != Some(v))
                .map(|(k, _)| *k)
                .chain(new.keys().filter(|k| !old.contains_key(k)).copied()),
        );
        for owner in moved {
            self.rebloom(owner, touched);
        }
        Ok(())
    }

    /// The runtime this plan was made with.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Moves to runtime `rt`, the state unchanged.
    pub fn update_runtime(&mut self, rt: &Runtime) -> TouchedKeys {
        let mut touched = TouchedKeys::default();
        self.apply_runtime(rt, &mut touched);
        touched
    }

    /// Moves to the state `changes` make of the last one (and `rt`), as
    /// [`Self::update`] does with the whole state: what a store's watch
    /// sends at zone scale, where a whole state costs milliseconds to
    /// compare.
    pub fn update_changes(&mut self, changes: &Changes, rt: &Runtime) -> Result<Update, PlanError> {
        match self.update_from_changes(changes) {
            Some((mut touched, services_moved)) => {
                self.state.apply_changes(changes);
                self.refresh_scopes(&mut touched)?;
                if !services_moved.is_empty() {
                    self.refresh_services(&services_moved, &mut touched);
                }
                if *rt != self.rt {
                    self.apply_runtime(rt, &mut touched);
                }
                Ok(Update {
                    touched: Touched::Keys(touched),
                    previous: State::default(),
                })
            }
            None => {
                let mut next = std::mem::take(&mut self.state);
                next.apply_changes(changes);
                *self = IncrementalPlan::new(next, &self.host.clone(), rt.clone())?;
                Ok(Update {
                    touched: Touched::All,
                    previous: State::default(),
                })
            }
        }
    }

    /// [`Self::update_state`] for a change given object by object.
    fn update_from_changes(&mut self, changes: &Changes) -> Option<(TouchedKeys, ServiceKeys)> {
        let mut owners = Vec::new();
        let mut groups = Vec::new();
        let mut containers = Vec::new();
        let mut services_moved = ServiceKeys::new();
        for c in changes.iter() {
            match (&c.before, &c.after) {
                (Some(Object::Owner(b)), a) => {
                    owners.push((Some(b), a.as_ref().and_then(Object::owner)))
                }
                (None, Some(Object::Owner(a))) => owners.push((None, Some(a))),
                (Some(Object::Group(b)), a) => {
                    groups.push((Some(b), a.as_ref().and_then(Object::group)))
                }
                (None, Some(Object::Group(a))) => groups.push((None, Some(a))),
                (Some(Object::Container(b)), a) => {
                    containers.push((Some(b), a.as_ref().and_then(Object::container)))
                }
                (None, Some(Object::Container(a))) => containers.push((None, Some(a))),
                // The plan does not read it.
                (Some(Object::NextOwnerId(_)) | None, Some(Object::NextOwnerId(_)) | None) => {}
                // Recomputed from the new state ([`Self::refresh_scopes`]).
                (Some(Object::SecurityGroup(_)) | None, Some(Object::SecurityGroup(_)) | None) => {}
                // Recomputed from the new state ([`Self::refresh_services`]).
                (Some(Object::Service(_)) | None, Some(Object::Service(_)) | None) => {
                    for svc in [&c.before, &c.after]
                        .into_iter()
                        .filter_map(|o| o.as_ref().and_then(Object::service))
                    {
                        services_moved.insert((svc.owner.clone(), svc.name.clone()));
                    }
                }
                // Zones and hosts: replanned in full.
                _ => return None,
            }
        }
        services_moved.extend(
            self.services_of_containers(
                containers
                    .iter()
                    .flat_map(|(b, a)| b.iter().chain(a.iter()).copied()),
            ),
        );
        let prepared = self.prepare(owners, groups, containers)?;
        Some((self.apply_prepared(prepared), services_moved))
    }

    /// The incremental update of the plan to state `next`, or `None` where
    /// only a full replan will do (nothing changed yet in that case).
    fn update_state(&mut self, next: &State) -> Option<(TouchedKeys, ServiceKeys)> {
        let old = &self.state;
        if old.zones != next.zones || old.hosts != next.hosts {
            return None;
        }
        let owners = changed_by_name(&old.owners, &next.owners, |o| &o.name)?;
        let groups = changed_by_name(&old.groups, &next.groups, |g| &g.name)?;
        let containers = changed_by_name(&old.containers, &next.containers, |c| &c.name)?;
        let mut services_moved = ServiceKeys::new();
        if old.services != next.services {
            let by_id = |list: &[crate::state::Service]| -> HashMap<(String, String), crate::state::Service> {
                list.iter()
                    .map(|svc| ((svc.owner.clone(), svc.name.clone()), svc.clone()))
                    .collect()
            };
            let (before, after) = (by_id(&old.services), by_id(&next.services));
            for (key, svc) in &before {
                if after.get(key) != Some(svc) {
                    services_moved.insert(key.clone());
                }
            }
            services_moved.extend(after.keys().filter(|k| !before.contains_key(*k)).cloned());
        }
        services_moved.extend(
            self.services_of_containers(
                containers
                    .iter()
                    .flat_map(|(b, a)| b.iter().chain(a.iter()).copied()),
            ),
        );
        let prepared = self.prepare(owners, groups, containers)?;
        Some((self.apply_prepared(prepared), services_moved))
    }

    /// What moving the plan by these changed owners, groups and containers
    /// (paired by name: before, after) takes, or `None` where only a full
    /// replan will do.
    fn prepare(
        &self,
        owners: Vec<(Option<&Owner>, Option<&Owner>)>,
        groups: Vec<(Option<&Group>, Option<&Group>)>,
        containers: Vec<(Option<&Container>, Option<&Container>)>,
    ) -> Option<Prepared> {
        // An owner whose flags alone changed (egress): its endpoints get
        // them. The same id before and after, so nothing else moves.
        let mut reflagged = Vec::new();
        for (before, after) in &owners {
            match (before, after) {
                (None, _) => {}
                (Some(b), Some(a)) if b.id == a.id => reflagged.push((a.id, owner_flags(a))),
                // An owner removed or renumbered: every reference to it moves.
                _ => return None,
            }
        }
        // Everything a change names must resolve, or the full plan decides.
        let new_ids: HashMap<&str, u32> = owners
            .iter()
            .filter(|(before, _)| before.is_none())
            .filter_map(|(_, after)| after.map(|o| (o.name.as_str(), o.id)))
            .collect();
        let resolves =
            |owner: &str| self.owner_ids.contains_key(owner) || new_ids.contains_key(owner);
        let groups_resolve = groups
            .iter()
            .flat_map(|(b, a)| b.iter().chain(a.iter()))
            .all(|g| g.members.iter().all(|m| resolves(m)));
        let containers_resolve = containers
            .iter()
            .flat_map(|(b, a)| b.iter().chain(a.iter()))
            .all(|c| resolves(&c.owner) && self.host_slots.contains_key(&c.host));
        if !groups_resolve || !containers_resolve {
            return None;
        }
        // A changed group whose key another group has (before or after)
        // changes who can be listed at all: the full plan decides.
        let mut changed_keys = BTreeSet::new();
        for (before, after) in &groups {
            let Some(g) = before.or(*after) else { continue };
            let key = group_key(&g.name);
            let others =
                self.groups_with_key.get(&key).copied().unwrap_or(0) - u32::from(before.is_some());
            if others > 0 || !changed_keys.insert(key) {
                return None;
            }
        }
        Some(Prepared {
            new_owners: new_ids.iter().map(|(n, i)| ((*n).to_owned(), *i)).collect(),
            new_flags: owners
                .iter()
                .filter_map(|(_, after)| after.map(|o| (o.id, owner_flags(o))))
                .collect(),
            reflagged,
            groups: groups
                .into_iter()
                .map(|(b, a)| (b.cloned(), a.cloned()))
                .collect(),
            containers: containers
                .into_iter()
                .map(|(b, a)| (b.cloned(), a.cloned()))
                .collect(),
        })
    }

    /// Moves the plan and the indexes together; nothing fails here.
    fn apply_prepared(&mut self, prepared: Prepared) -> TouchedKeys {
        self.owner_ids.extend(prepared.new_owners);
        self.owner_flags.extend(prepared.new_flags);
        let mut touched = TouchedKeys::default();
        self.apply_groups(&prepared.groups, &mut touched);
        self.apply_flags(&prepared.reflagged, &mut touched);
        self.apply_containers(&prepared.containers, &mut touched);
        touched
    }

    /// Owners whose flags changed (id, new flags): their endpoints take
    /// them.
    fn apply_flags(&mut self, reflagged: &[(u32, u32)], touched: &mut TouchedKeys) {
        for &(owner, flags) in reflagged {
            self.owner_flags.insert(owner, flags);
            self.rebloom(owner, touched);
        }
    }

    /// Every endpoint of `owner` takes the owner's groups and flags again.
    fn rebloom(&mut self, owner: u32, touched: &mut TouchedKeys) {
        let groups = self.bloom(owner);
        for key in self.owner_endpoints.get(&owner).into_iter().flatten() {
            if let Some(e) = self.plan.endpoints.get_mut(key) {
                e.groups = groups | backend_flag(self.backend_refs.contains_key(key));
                touched.endpoints.insert(*key);
            }
        }
    }

    fn apply_groups(
        &mut self,
        groups: &[(Option<Group>, Option<Group>)],
        touched: &mut TouchedKeys,
    ) {
        let mut owners_moved = BTreeSet::new();
        for (before, after) in groups {
            let ids = |g: &Option<Group>| -> BTreeSet<u32> {
                g.iter()
                    .flat_map(|g| g.members.iter())
                    .filter_map(|m| self.owner_ids.get(m).copied())
                    .collect()
            };
            let (old_ids, new_ids) = (ids(before), ids(after));
            if let Some(g) = before {
                let key = group_key(&g.name);
                if let Some(n) = self.groups_with_key.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        self.groups_with_key.remove(&key);
                    }
                }
                for pair in member_pairs(old_ids.iter().copied()) {
                    touched.group_pairs.insert(pair);
                    if let Some(n) = self.plan.group_pairs.get_mut(&pair) {
                        *n -= 1;
                        if *n == 0 {
                            self.plan.group_pairs.remove(&pair);
                        }
                    }
                }
                for id in &old_ids {
                    if let Some(set) = self.owner_groups.get_mut(id) {
                        set.remove(&g.name);
                        if set.is_empty() {
                            self.owner_groups.remove(id);
                        }
                    }
                }
            }
            if let Some(g) = after {
                *self.groups_with_key.entry(group_key(&g.name)).or_default() += 1;
                for pair in member_pairs(new_ids.iter().copied()) {
                    touched.group_pairs.insert(pair);
                    *self.plan.group_pairs.entry(pair).or_default() += 1;
                }
                for &id in &new_ids {
                    self.owner_groups
                        .entry(id)
                        .or_default()
                        .insert(g.name.clone());
                }
            }
            // Paired by name: a group's bloom bit stays; only owners that
            // joined or left it get a new bloom.
            owners_moved.extend(old_ids.symmetric_difference(&new_ids).copied());
        }
        let mut slots = BTreeSet::new();
        for &owner in owners_moved.iter().filter(|&&o| listable(o)) {
            let slot = owner_groups_index(owner);
            slots.insert(slot);
            if self.owner_groups.contains_key(&owner) {
                self.slot_owners.entry(slot).or_default().insert(owner);
            } else if let Some(set) = self.slot_owners.get_mut(&slot) {
                set.remove(&owner);
                if set.is_empty() {
                    self.slot_owners.remove(&slot);
                }
            }
        }
        for slot in slots {
            touched.owner_groups.insert(slot);
            match self.owner_list(slot) {
                Some(list) => self.plan.owner_groups.insert(slot, list),
                None => self.plan.owner_groups.remove(&slot),
            };
        }
        for owner in owners_moved {
            self.rebloom(owner, touched);
        }
    }

    fn apply_containers(
        &mut self,
        containers: &[(Option<Container>, Option<Container>)],
        touched: &mut TouchedKeys,
    ) {
        // Removals first: an address freed and taken again in one change
        // ends with the new container.
        for c in containers.iter().filter_map(|(before, _)| before.as_ref()) {
            let Some((key, owner)) = self.endpoint_key(c) else {
                continue;
            };
            touched.endpoints.insert(key);
            self.plan.endpoints.remove(&key);
            if let Some(set) = self.owner_endpoints.get_mut(&owner) {
                set.remove(&key);
                if set.is_empty() {
                    self.owner_endpoints.remove(&owner);
                }
            }
            if c.host == self.host {
                let octet = c.address.octets()[3];
                touched.local_ports.insert(octet);
                self.plan.local_ports.remove(&octet);
            }
        }
        for c in containers.iter().filter_map(|(_, after)| after.as_ref()) {
            let Some((key, owner)) = self.endpoint_key(c) else {
                continue;
            };
            touched.endpoints.insert(key);
            let groups = self.endpoint_groups(owner, &key);
            self.plan.endpoints.insert(key, Endpoint { owner, groups });
            self.owner_endpoints.entry(owner).or_default().insert(key);
            if c.host == self.host {
                touched.local_ports.insert(c.address.octets()[3]);
                // With the runtime this plan was made with; a new one is
                // applied afterwards ([`Self::apply_runtime`]).
                if let Some((octet, port)) = local_port(c, &self.rt) {
                    self.plan.local_ports.insert(octet, port);
                }
            }
        }
    }

    /// `HOST_CONFIG` (the uplink's ifindex) and `LOCAL_PORTS` (the ports
    /// ready) for runtime `rt` and the current state.
    fn apply_runtime(&mut self, rt: &Runtime, touched: &mut TouchedKeys) {
        // The services with a member whose report changed.
        let mut health_moved = ServiceKeys::new();
        if rt.health != self.rt.health {
            let (old, new) = (&self.rt.health, &rt.health);
            let changed = old
                .iter()
                .filter(|(k, v)| new.get(k) != Some(v))
                .chain(new.iter().filter(|(k, v)| old.get(k) != Some(v)))
                .map(|((address, _), _)| address);
            for address in changed {
                if let Some(keys) = self.services_of_address.get(address) {
                    health_moved.extend(keys.iter().cloned());
                }
            }
        }
        let ports_moved =
            rt.ready_ports != self.rt.ready_ports || rt.uplink_ifindex != self.rt.uplink_ifindex;
        self.rt = rt.clone();
        if !health_moved.is_empty() {
            self.refresh_services(&health_moved, touched);
        }
        // A health report alone moves nothing else (the ports below take a
        // pass over every container of the state).
        if !ports_moved {
            return;
        }
        // The host and its zone are in the state: this plan was made of it.
        if let Ok(host) = host_config(&self.state, &self.host, rt) {
            self.plan.host = Some(host);
        }
        touched
            .local_ports
            .extend(self.plan.local_ports.keys().copied());
        self.plan.local_ports = self
            .state
            .containers_on(&self.host)
            .filter_map(|c| local_port(c, rt))
            .collect();
        touched
            .local_ports
            .extend(self.plan.local_ports.keys().copied());
    }
}

/// Services by (owner, name).
type ServiceKeys = BTreeSet<(String, String)>;

/// Takes `key` out of the set at `at` (and the set when it empties).
fn remove_from<K: std::hash::Hash + Eq>(
    index: &mut HashMap<K, BTreeSet<(String, String)>>,
    at: &K,
    key: &(String, String),
) {
    if let Some(set) = index.get_mut(at) {
        set.remove(key);
        if set.is_empty() {
            index.remove(at);
        }
    }
}

/// The container named `name` of `state`, whose containers are sorted by
/// name ([`State::normalize`]).
fn container_named<'a>(state: &'a State, name: &str) -> Option<&'a Container> {
    state
        .containers
        .binary_search_by(|c| c.name.as_str().cmp(name))
        .ok()
        .map(|i| &state.containers[i])
}

/// Can `owner` have an `OWNER_GROUPS` entry (the system owner needs none)?
fn listable(owner: u32) -> bool {
    owner != SYSTEM_OWNER && owner != NO_OWNER
}

/// The elements of `old` and `new` (each with unique names) that differ,
/// paired by name: `(Some, None)` removed, `(None, Some)` added,
/// `(Some, Some)` changed. `None` when a name repeats.
///
/// States arrive whole from the store, in the same order from one
/// revision to the next: the equal runs at both ends are skipped
/// element by element, and only the window between them is paired by
/// name.
fn changed_by_name<'a, T: PartialEq>(
    old: &'a [T],
    new: &'a [T],
    name: impl Fn(&T) -> &String,
) -> Option<Vec<(Option<&'a T>, Option<&'a T>)>> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let (old, new) = (&old[prefix..], &new[prefix..]);
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (old, new) = (&old[..old.len() - suffix], &new[..new.len() - suffix]);
    let mut by_name: BTreeMap<&String, (Option<&T>, Option<&T>)> = BTreeMap::new();
    for o in old {
        if by_name.insert(name(o), (Some(o), None)).is_some() {
            return None;
        }
    }
    for n in new {
        let entry = by_name.entry(name(n)).or_default();
        if entry.1.is_some() {
            return None;
        }
        entry.1 = Some(n);
    }
    Some(
        by_name
            .into_values()
            .filter(|(before, after)| before != after)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::agent::plan::{Health, Op};
    use crate::{
        MacAddr,
        state::{Allow, Egress, HostSpec, Via},
    };

    const HOST: &str = "h1";

    /// One change to the desired state or to the runtime.
    #[derive(Debug, Clone)]
    enum Change {
        CreateContainer {
            owner: usize,
            host: usize,
        },
        DeleteContainer(usize),
        /// The store hands a container another owner (edited in place).
        MoveContainer {
            container: usize,
            owner: usize,
        },
        CreateOwner,
        /// An owner created with egress denied.
        CreateOwnerDenied,
        DeleteOwner(usize),
        /// An owner's egress switch set (to the value it has, or not).
        SetEgress {
            owner: usize,
            deny: bool,
        },
        CreateGroup(Vec<usize>),
        DeleteGroup(usize),
        Join {
            group: usize,
            owner: usize,
        },
        Leave {
            group: usize,
            owner: usize,
        },
        /// A port of this host becomes ready or goes.
        TogglePort(u8),
        /// A new host: zones and hosts change, a full replan.
        CreateHost,
        /// The containers arrive in another order.
        Rotate(usize),
        /// A security group of an owner, via a group (`Some`) or its own
        /// containers, with rules from a small palette (so they merge).
        SetScope {
            owner: usize,
            via: Option<usize>,
            rules: Vec<usize>,
        },
        DeleteScope(usize),
        /// A service of an owner in zone z1 or z2, with backends among
        /// that owner's containers there.
        CreateService {
            owner: usize,
            zone2: bool,
            backends: Vec<usize>,
            udp: bool,
        },
        DeleteService(usize),
        AddBackend {
            service: usize,
            container: usize,
        },
        RemoveBackend {
            service: usize,
            backend: usize,
        },
        SetServicePorts {
            service: usize,
            target: u16,
        },
        /// A backend's health report flips (runtime).
        ToggleHealth {
            service: usize,
            backend: usize,
        },
        /// The store gives a container another address on its host
        /// (edited in place; a backend keeps its member index).
        Readdress(usize),
    }

    const RULES: [&str; 6] = [
        "tcp/5432",
        "tcp/5433-5440",
        "udp/53",
        "icmp",
        "tcp/80",
        "udp/1-52",
    ];

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            4 => (0..8usize, 0..3usize).prop_map(|(owner, host)| Change::CreateContainer { owner, host }),
            2 => (0..64usize).prop_map(Change::DeleteContainer),
            2 => (0..64usize, 0..8usize).prop_map(|(container, owner)| Change::MoveContainer { container, owner }),
            1 => Just(Change::CreateOwner),
            1 => Just(Change::CreateOwnerDenied),
            1 => (0..8usize).prop_map(Change::DeleteOwner),
            2 => (0..8usize, any::<bool>()).prop_map(|(owner, deny)| Change::SetEgress { owner, deny }),
            2 => proptest::collection::vec(0..8usize, 0..5).prop_map(Change::CreateGroup),
            1 => (0..8usize).prop_map(Change::DeleteGroup),
            3 => (0..8usize, 0..8usize).prop_map(|(group, owner)| Change::Join { group, owner }),
            3 => (0..8usize, 0..8usize).prop_map(|(group, owner)| Change::Leave { group, owner }),
            2 => (1..6u8).prop_map(Change::TogglePort),
            1 => Just(Change::CreateHost),
            1 => (0..64usize).prop_map(Change::Rotate),
            3 => (0..8usize, proptest::option::of(0..8usize), proptest::collection::vec(0..RULES.len(), 0..4))
                .prop_map(|(owner, via, rules)| Change::SetScope { owner, via, rules }),
            1 => (0..8usize).prop_map(Change::DeleteScope),
            3 => (0..8usize, any::<bool>(), proptest::collection::vec(0..64usize, 0..4), any::<bool>())
                .prop_map(|(owner, zone2, backends, udp)| Change::CreateService { owner, zone2, backends, udp }),
            1 => (0..8usize).prop_map(Change::DeleteService),
            2 => (0..8usize, 0..64usize).prop_map(|(service, container)| Change::AddBackend { service, container }),
            2 => (0..8usize, 0..8usize).prop_map(|(service, backend)| Change::RemoveBackend { service, backend }),
            1 => (0..8usize, 8080..8083u16).prop_map(|(service, target)| Change::SetServicePorts { service, target }),
            3 => (0..8usize, 0..8usize).prop_map(|(service, backend)| Change::ToggleHealth { service, backend }),
            1 => (0..64usize).prop_map(Change::Readdress),
        ]
    }

    fn spec(n: u8) -> HostSpec {
        HostSpec {
            name: format!("h{n}"),
            zone: "z1".into(),
            number: Some(n.into()),
            subnet: None,
            uplink: "up0".into(),
            underlay_ip: Ipv4Addr::new(172, 30, 0, n),
            underlay_mac: MacAddr([2, 0xfe, 0, 0, 0, n]),
        }
    }

    fn base() -> State {
        let mut s = State::default();
        s.create_zone("z1", "10.1.0.0/16".parse().unwrap(), None)
            .unwrap();
        s.create_zone("z2", "10.2.0.0/16".parse().unwrap(), None)
            .unwrap();
        for n in 1..=2 {
            s.create_host(spec(n)).unwrap();
        }
        s.create_host(HostSpec {
            zone: "z2".into(),
            number: Some(1),
            name: "h3".into(),
            ..spec(3)
        })
        .unwrap();
        for o in ["alice", "bob", "carol", "dave"] {
            s.create_owner(o).unwrap();
        }
        s.create_group("team", &["alice".into(), "bob".into()])
            .unwrap();
        s.create_group("ops", &["system".into(), "carol".into(), "bob".into()])
            .unwrap();
        s
    }

    fn nth<T>(items: &[T], i: usize) -> Option<&T> {
        (!items.is_empty()).then(|| &items[i % items.len()])
    }

    /// Applies `c`; a change the state refuses leaves it as it was.
    fn change_state(s: &mut State, rt: &mut Runtime, c: &Change, serial: usize) {
        let owner = |s: &State, i: usize| nth(&s.owners, i).map(|o| o.name.clone());
        let group = |s: &State, i: usize| nth(&s.groups, i).map(|g| g.name.clone());
        let _ = match c {
            Change::CreateContainer { owner: o, host } => {
                let (Some(o), Some(h)) =
                    (owner(s, *o), nth(&s.hosts, *host).map(|h| h.name.clone()))
                else {
                    return;
                };
                s.create_container(&format!("c{serial}"), &o, &h, None)
                    .map(drop)
            }
            Change::DeleteContainer(i) => match nth(&s.containers, *i).map(|c| c.name.clone()) {
                Some(name) => s.delete_container(&name),
                None => return,
            },
            Change::MoveContainer {
                container,
                owner: o,
            } => {
                let (Some(o), true) = (owner(s, *o), !s.containers.is_empty()) else {
                    return;
                };
                let n = s.containers.len();
                s.containers[container % n].owner = o;
                Ok(())
            }
            Change::CreateOwner => s.create_owner(&format!("o{serial}")).map(drop),
            Change::CreateOwnerDenied => {
                let name = format!("o{serial}");
                s.create_owner(&name)
                    .and_then(|_| s.set_owner_egress(&name, Egress::Deny))
            }
            Change::SetEgress { owner: o, deny } => match owner(s, *o) {
                Some(o) => s.set_owner_egress(&o, if *deny { Egress::Deny } else { Egress::Allow }),
                None => return,
            },
            Change::DeleteOwner(i) => match owner(s, *i) {
                Some(o) => s.delete_owner(&o),
                None => return,
            },
            Change::CreateGroup(members) => {
                let members: Vec<String> = members.iter().filter_map(|&i| owner(s, i)).collect();
                s.create_group(&format!("g{serial}"), &members)
            }
            Change::DeleteGroup(i) => match group(s, *i) {
                Some(g) => s.delete_group(&g),
                None => return,
            },
            Change::Join { group: g, owner: o } | Change::Leave { group: g, owner: o } => {
                let (Some(g), Some(o)) = (group(s, *g), owner(s, *o)) else {
                    return;
                };
                if matches!(c, Change::Join { .. }) {
                    s.add_group_members(&g, &[o])
                } else {
                    s.remove_group_members(&g, &[o])
                }
            }
            Change::TogglePort(octet) => {
                if rt.ready_ports.remove(octet).is_none() {
                    rt.ready_ports
                        .insert(*octet, 100 + u32::from(*octet) + serial as u32);
                }
                Ok(())
            }
            Change::CreateHost => {
                let n = s.hosts.len() as u8 + 2;
                s.create_host(spec(n)).map(drop)
            }
            Change::Rotate(k) => {
                if !s.containers.is_empty() {
                    let n = s.containers.len();
                    s.containers.rotate_left(k % n);
                }
                Ok(())
            }
            Change::SetScope {
                owner: o,
                via,
                rules,
            } => {
                let Some(o) = owner(s, *o) else { return };
                let via = match via {
                    // A group the owner is in, if any.
                    Some(g) => {
                        let mine: Vec<String> = s
                            .groups
                            .iter()
                            .filter(|x| x.members.contains(&o))
                            .map(|x| x.name.clone())
                            .collect();
                        match nth(&mine, *g) {
                            Some(g) => Via::Group(g.clone()),
                            None => return,
                        }
                    }
                    None => Via::Own,
                };
                let rules: Vec<Allow> = rules.iter().map(|&i| RULES[i].parse().unwrap()).collect();
                s.set_security_group(&o, via, &rules).map(drop)
            }
            Change::DeleteScope(i) => match nth(&s.security_groups, *i) {
                Some(g) => {
                    let (o, via) = (g.owner.clone(), g.via.clone());
                    s.delete_security_group(&o, &via)
                }
                None => return,
            },
            Change::CreateService {
                owner: o,
                zone2,
                backends,
                udp,
            } => {
                let Some(o) = owner(s, *o) else { return };
                let zone = if *zone2 { "z2" } else { "z1" };
                let mine: Vec<String> = s
                    .containers
                    .iter()
                    .filter(|c| c.owner == o && s.host(&c.host).is_some_and(|h| h.zone == zone))
                    .map(|c| c.name.clone())
                    .collect();
                let backends: BTreeSet<String> = backends
                    .iter()
                    .filter_map(|&i| nth(&mine, i).cloned())
                    .collect();
                let mut ports = vec!["tcp/80:8080".parse().unwrap()];
                if *udp {
                    ports.push("udp/53".parse().unwrap());
                }
                s.create_service(crate::state::ServiceSpec {
                    name: format!("s{serial}"),
                    owner: o,
                    zone: Some(zone.into()),
                    vip: None,
                    ports,
                    backends: backends.into_iter().collect(),
                    health: Default::default(),
                })
                .map(drop)
            }
            Change::DeleteService(i) => match nth(&s.services, *i) {
                Some(svc) => {
                    let (o, n) = (svc.owner.clone(), svc.name.clone());
                    s.delete_service(&o, &n)
                }
                None => return,
            },
            Change::AddBackend { service, container } => {
                let (Some(svc), Some(c)) =
                    (nth(&s.services, *service), nth(&s.containers, *container))
                else {
                    return;
                };
                let (o, n, c) = (svc.owner.clone(), svc.name.clone(), c.name.clone());
                s.add_service_backends(&o, &n, &[c]).map(drop)
            }
            Change::RemoveBackend { service, backend } => {
                let Some(svc) = nth(&s.services, *service) else {
                    return;
                };
                let Some(b) = nth(&svc.backends, *backend) else {
                    return;
                };
                let (o, n, c) = (svc.owner.clone(), svc.name.clone(), b.container.clone());
                s.remove_service_backends(&o, &n, &[c])
            }
            Change::SetServicePorts { service, target } => {
                let Some(svc) = nth(&s.services, *service) else {
                    return;
                };
                let (o, n) = (svc.owner.clone(), svc.name.clone());
                let ports = vec![format!("tcp/80:{target}").parse().unwrap()];
                s.set_service(&o, &n, Some(ports), None).map(drop)
            }
            Change::ToggleHealth { service, backend } => {
                let Some(svc) = nth(&s.services, *service) else {
                    return;
                };
                let Some(b) = nth(&svc.backends, *backend) else {
                    return;
                };
                let (Some(c), Some(port)) = (s.container(&b.container), svc.health_port()) else {
                    return;
                };
                let healthy = rt.health.get(&(c.address, port)).copied().unwrap_or(true);
                rt.health.insert((c.address, port), !healthy);
                Ok(())
            }
            Change::Readdress(i) => {
                if s.containers.is_empty() {
                    return;
                }
                let i = i % s.containers.len();
                let Some(host) = s.host(&s.containers[i].host).cloned() else {
                    return;
                };
                let Some(address) = s.free_address(&host) else {
                    return;
                };
                s.containers[i].address = address;
                Ok(())
            }
        };
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Over any sequence of changes, the incremental plan equals the
        /// full plan, and diffing only the touched keys gives exactly the
        /// operations of the full diff, in the same order. The same holds
        /// for the plan moved by the changes object by object (as a store's
        /// watch sends them).
        #[test]
        fn incremental_plans_equal_full_plans(changes in proptest::collection::vec(change(), 1..40)) {
            let mut state = base();
            state.normalize();
            let mut rt = Runtime { uplink_ifindex: 7, ready_ports: [(1, 42)].into(), health: Health::new() };
            let mut inc = IncrementalPlan::new(state.clone(), HOST, rt.clone()).unwrap();
            let mut by_changes = inc.clone();
            for (serial, c) in changes.iter().enumerate() {
                let previous = state.clone();
                change_state(&mut state, &mut rt, c, serial);
                state.normalize();
                prop_assume!(state.validate().is_ok());
                let before = inc.plan().clone();
                let touched = inc.update(state.clone(), &rt).unwrap().touched;
                let full = HostPlan::compute(&state, HOST, &rt).unwrap();
                prop_assert_eq!(inc.plan(), &full, "after {:?}", c);
                let moved = by_changes
                    .update_changes(&Changes::between(&previous, &state), &rt)
                    .unwrap()
                    .touched;
                prop_assert_eq!(by_changes.state(), &state, "state after {:?}", c);
                prop_assert_eq!(by_changes.plan(), &full, "plan by changes after {:?}", c);
                if let Touched::Keys(keys) = &moved {
                    prop_assert_eq!(before.diff_keys(&full, keys), before.diff(&full), "after {:?}", c);
                }
                let full_ops = before.diff(&full);
                match &touched {
                    Touched::Keys(keys) => {
                        prop_assert_eq!(before.diff_keys(&full, keys), full_ops, "after {:?}", c)
                    }
                    Touched::All => prop_assert!(
                        matches!(c, Change::CreateHost | Change::DeleteOwner(_)),
                        "a full replan after {:?}", c
                    ),
                }
            }
        }
    }

    #[test]
    fn a_container_change_touches_its_endpoint_and_port_only() {
        let mut state = base();
        state.create_container("a1", "alice", HOST, None).unwrap();
        let rt = Runtime {
            uplink_ifindex: 7,
            ready_ports: [(1, 42)].into(),
            health: Health::new(),
        };
        let mut inc = IncrementalPlan::new(state.clone(), HOST, rt.clone()).unwrap();
        state.containers[0].owner = "carol".into();
        let Touched::Keys(keys) = inc.update(state, &rt).unwrap().touched else {
            panic!("an owner change is incremental");
        };
        assert_eq!(
            keys,
            TouchedKeys {
                endpoints: [EndpointKey {
                    zone_slot: 0,
                    low: 0x0101
                }]
                .into(),
                local_ports: [1].into(),
                ..TouchedKeys::default()
            }
        );
    }

    #[test]
    fn a_security_group_touches_its_pairs_and_its_owners_endpoints_only() {
        let mut state = base();
        state.create_container("a1", "alice", HOST, None).unwrap();
        state.create_container("b1", "bob", HOST, None).unwrap();
        let rt = Runtime {
            uplink_ifindex: 7,
            ready_ports: [(1, 42)].into(),
            health: Health::new(),
        };
        let mut inc = IncrementalPlan::new(state.clone(), HOST, rt.clone()).unwrap();
        let (alice, bob) = (
            state.owner("alice").unwrap().id,
            state.owner("bob").unwrap().id,
        );
        let pair = ScopedPair {
            receiver: alice,
            sender: bob,
        };
        let a1 = EndpointKey {
            zone_slot: 0,
            low: 0x0101,
        };
        state
            .set_security_group(
                "alice",
                Via::Group("team".into()),
                &["tcp/5432".parse().unwrap()],
            )
            .unwrap();
        let Touched::Keys(keys) = step(&mut inc, &state, &rt) else {
            panic!("a security group is incremental");
        };
        assert_eq!(
            keys,
            TouchedKeys {
                endpoints: [a1].into(),
                port_scopes: [pair].into(),
                ..TouchedKeys::default()
            }
        );
        assert!(inc.plan().endpoints[&a1].groups & policy::INGRESS_SCOPED != 0);
        // Another rule: the pair only; the flag stays.
        state
            .set_security_group(
                "alice",
                Via::Group("team".into()),
                &["icmp".parse().unwrap()],
            )
            .unwrap();
        let Touched::Keys(keys) = step(&mut inc, &state, &rt) else {
            panic!("incremental");
        };
        assert_eq!(
            keys,
            TouchedKeys {
                port_scopes: [pair].into(),
                ..TouchedKeys::default()
            }
        );
        // bob leaves team: the pair's scope goes with the pair.
        state.remove_group_members("team", &["bob".into()]).unwrap();
        let Touched::Keys(keys) = step(&mut inc, &state, &rt) else {
            panic!("incremental");
        };
        assert!(keys.port_scopes.contains(&pair), "{keys:?}");
        assert!(inc.plan().port_scopes.is_empty());
        // The group goes with its security group: the flag goes too.
        state.delete_group("team").unwrap();
        step(&mut inc, &state, &rt);
        assert!(inc.plan().endpoints[&a1].groups & policy::INGRESS_SCOPED == 0);
    }

    /// Steps `inc` to `state` and checks it against the full plan and diff.
    fn step(inc: &mut IncrementalPlan, state: &State, rt: &Runtime) -> Touched {
        let before = inc.plan().clone();
        let touched = inc.update(state.clone(), rt).unwrap().touched;
        let full = HostPlan::compute(state, HOST, rt).unwrap();
        assert_eq!(inc.plan(), &full);
        if let Touched::Keys(keys) = &touched {
            assert_eq!(before.diff_keys(&full, keys), before.diff(&full));
        }
        touched
    }

    #[test]
    fn owners_sharing_a_list_slot_are_listed_only_while_alone_there() {
        let mut state = base();
        let alice = state.owner("alice").unwrap().id;
        let carol_at = state.owners.iter().position(|o| o.name == "carol").unwrap();
        // carol's id lands on alice's OWNER_GROUPS slot.
        state.owners[carol_at].id = alice + netfabric_common::OWNER_GROUPS_ENTRIES;
        state.next_owner_id = state.owners[carol_at].id + 1;
        state.validate().unwrap();
        let rt = Runtime::default();
        let mut inc = IncrementalPlan::new(state.clone(), HOST, rt.clone()).unwrap();
        let slot = owner_groups_index(alice);
        // carol (in "ops") and alice (in "team") are both in groups on one
        // slot: neither is listed. carol leaves "ops": alice is alone there
        // and listed; carol joins "team": neither again; carol leaves it.
        assert!(!inc.plan().owner_groups.contains_key(&slot));
        state
            .remove_group_members("ops", &["carol".into()])
            .unwrap();
        let Touched::Keys(keys) = step(&mut inc, &state, &rt) else {
            panic!("a membership change is incremental");
        };
        assert!(keys.owner_groups.contains(&slot));
        assert_eq!(inc.plan().owner_groups[&slot].owner, alice);
        state.add_group_members("team", &["carol".into()]).unwrap();
        step(&mut inc, &state, &rt);
        assert!(!inc.plan().owner_groups.contains_key(&slot));
        state
            .remove_group_members("team", &["carol".into()])
            .unwrap();
        step(&mut inc, &state, &rt);
        assert_eq!(inc.plan().owner_groups[&slot].owner, alice);
    }

    #[test]
    fn a_group_key_shared_by_two_groups_replans_in_full() {
        // FNV-1a gives "g115728" and "g2169004" one key.
        assert_eq!(group_key("g115728"), group_key("g2169004"));
        let mut state = base();
        let rt = Runtime::default();
        let mut inc = IncrementalPlan::new(state.clone(), HOST, rt.clone()).unwrap();
        state.create_group("g115728", &["dave".into()]).unwrap();
        assert!(matches!(step(&mut inc, &state, &rt), Touched::Keys(_)));
        let dave = owner_groups_index(state.owner("dave").unwrap().id);
        assert!(inc.plan().owner_groups.contains_key(&dave));
        state
            .create_group("g2169004", &["carol".into(), "alice".into()])
            .unwrap();
        assert_eq!(step(&mut inc, &state, &rt), Touched::All);
        assert!(!inc.plan().owner_groups.contains_key(&dave));
        // Changes to other groups stay incremental.
        state.add_group_members("team", &["dave".into()]).unwrap();
        assert!(matches!(step(&mut inc, &state, &rt), Touched::Keys(_)));
        state.delete_group("g2169004").unwrap();
        assert_eq!(step(&mut inc, &state, &rt), Touched::All);
        assert!(inc.plan().owner_groups.contains_key(&dave));
    }
    #[test]
    fn a_service_touches_its_entries_and_its_backends_endpoints_only() {
        let mut state = base();
        state.create_container("a1", "alice", HOST, None).unwrap();
        state.create_container("a2", "alice", "h2", None).unwrap();
        state.create_container("b1", "bob", HOST, None).unwrap();
        let mut rt = Runtime {
            uplink_ifindex: 7,
            ready_ports: [(1, 42)].into(),
            health: Health::new(),
        };
        let mut inc = IncrementalPlan::new(state.clone(), HOST, rt.clone()).unwrap();
        state
            .create_service(crate::state::ServiceSpec {
                name: "api".into(),
                owner: "alice".into(),
                zone: Some("z1".into()),
                vip: None,
                ports: vec!["tcp/80".parse().unwrap()],
                backends: vec!["a1".into()],
                health: Default::default(),
            })
            .unwrap();
        let Touched::Keys(keys) = step(&mut inc, &state, &rt) else {
            panic!("a service is incremental");
        };
        let a1 = EndpointKey {
            zone_slot: 0,
            low: 0x0101,
        };
        assert_eq!(keys.endpoints, [a1].into());
        assert_eq!(keys.service_tables, [1].into());
        assert_eq!(keys.service_ports.len(), 1);
        assert!(keys.local_ports.is_empty() && keys.group_pairs.is_empty());
        // A backend added: the table and its endpoint are written, the
        // port is looked at (its service moved) and left.
        state
            .add_service_backends("alice", "api", &["a2".into()])
            .unwrap();
        let before = inc.plan().clone();
        let Touched::Keys(keys) = step(&mut inc, &state, &rt) else {
            panic!("incremental");
        };
        assert_eq!(
            (
                keys.endpoints.len(),
                keys.service_tables.len(),
                keys.service_ports.len()
            ),
            (1, 1, 1)
        );
        let ops = before.diff_keys(inc.plan(), &keys);
        assert!(
            ops.iter()
                .all(|op| matches!(op, Op::ServiceTables(_) | Op::Endpoint(_))),
            "{ops:?}"
        );
        // A health report: that service only, and only its table changes.
        rt.health.insert((Ipv4Addr::new(10, 1, 1, 1), 80), false);
        let before = inc.plan().clone();
        let Touched::Keys(keys) = step(&mut inc, &state, &rt) else {
            panic!("incremental");
        };
        assert_eq!(keys.service_tables, [1].into());
        assert!(keys.endpoints.is_empty() && keys.group_pairs.is_empty());
        assert_eq!(
            before.diff_keys(inc.plan(), &keys),
            vec![Op::ServiceTables(crate::datapath::maps::Change::Set {
                key: 1,
                value: inc.plan().service_tables[&1]
            })]
        );
        assert_eq!(inc.plan().service_tables[&1].healthy, 0b10);
        // A container that is no backend: no service entry.
        state.create_container("c9", "bob", HOST, None).unwrap();
        let Touched::Keys(keys) = step(&mut inc, &state, &rt) else {
            panic!("incremental");
        };
        assert!(keys.service_tables.is_empty() && keys.service_ports.is_empty());
    }
}
