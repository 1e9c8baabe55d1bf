//! A change of the desired state object by object, as a store's watch sees
//! it (etcd: the keys of one watch response), and a state followed change
//! by change ([`FollowedState`]): patched in place and validated by what
//! the change touches, so that one change costs what it touches and not
//! the size of the zone (a full zone's state takes tens of milliseconds to
//! build, clone or validate whole).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::Ipv4Addr,
};

use super::{
    StateError,
    error::path,
    model::{Container, Group, Host, MAX_CONTAINERS_PER_HOST, Owner, State, Zone, is_valid_name},
    security::{SecurityGroup, Via},
    services::Service,
    validate::check_address_on_host,
};

/// One object of the state, as a store keeps it under one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Zone(Zone),
    Host(Host),
    Owner(Owner),
    Group(Group),
    Container(Container),
    SecurityGroup(SecurityGroup),
    Service(Service),
    /// The id the next owner gets ([`State::next_owner_id`]).
    NextOwnerId(u32),
}

/// What an object is, as a key for [`Changes`]: its kind and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectId {
    Zone(String),
    Host(String),
    Owner(String),
    Group(String),
    Container(String),
    /// A security group: its owner and way in.
    SecurityGroup(String, Via),
    /// A service: its owner and name.
    Service(String, String),
    NextOwnerId,
}

impl Object {
    pub fn zone(&self) -> Option<&Zone> {
        match self {
            Object::Zone(z) => Some(z),
            _ => None,
        }
    }

    pub fn host(&self) -> Option<&Host> {
        match self {
            Object::Host(h) => Some(h),
            _ => None,
        }
    }

    pub fn owner(&self) -> Option<&Owner> {
        match self {
            Object::Owner(o) => Some(o),
            _ => None,
        }
    }

    pub fn group(&self) -> Option<&Group> {
        match self {
            Object::Group(g) => Some(g),
            _ => None,
        }
    }

    pub fn container(&self) -> Option<&Container> {
        match self {
            Object::Container(c) => Some(c),
            _ => None,
        }
    }

    pub fn service(&self) -> Option<&Service> {
        match self {
            Object::Service(s) => Some(s),
            _ => None,
        }
    }

    pub fn id(&self) -> ObjectId {
        match self {
            Object::Zone(z) => ObjectId::Zone(z.name.clone()),
            Object::Host(h) => ObjectId::Host(h.name.clone()),
            Object::Owner(o) => ObjectId::Owner(o.name.clone()),
            Object::Group(g) => ObjectId::Group(g.name.clone()),
            Object::Container(c) => ObjectId::Container(c.name.clone()),
            Object::SecurityGroup(g) => ObjectId::SecurityGroup(g.owner.clone(), g.via.clone()),
            Object::Service(s) => ObjectId::Service(s.owner.clone(), s.name.clone()),
            Object::NextOwnerId(_) => ObjectId::NextOwnerId,
        }
    }
}

/// One object's change: what it was and what it became (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    pub before: Option<Object>,
    pub after: Option<Object>,
}

/// A change of the state: each object at most once, by [`ObjectId`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    objects: BTreeMap<ObjectId, ObjectChange>,
}

impl Changes {
    /// Records that `id` went from `before` to `after`. A later record of
    /// the same object keeps the first `before`: changes merged in order
    /// are one change from the first state to the last.
    pub fn record(&mut self, id: ObjectId, before: Option<Object>, after: Option<Object>) {
        match self.objects.entry(id) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(ObjectChange { before, after });
            }
            std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().after = after,
        }
    }

    /// `later` (which starts where this one ends) appended: one change.
    pub fn merge(&mut self, later: Changes) {
        for (id, c) in later.objects {
            self.record(id, c.before, c.after);
        }
    }

    /// The objects that differ, without those that came back as they were.
    pub fn iter(&self) -> impl Iterator<Item = &ObjectChange> {
        self.objects.values().filter(|c| c.before != c.after)
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The changes from `old` to `new`, object by object (a whole scan:
    /// for tests and stores that only have whole states).
    pub fn between(old: &State, new: &State) -> Changes {
        let mut changes = Changes::default();
        let mut add = |before: Vec<Object>, after: Vec<Object>| {
            let mut by_id: BTreeMap<ObjectId, ObjectChange> = BTreeMap::new();
            let empty = || ObjectChange {
                before: None,
                after: None,
            };
            for o in before {
                let id = o.id();
                by_id.entry(id).or_insert_with(empty).before = Some(o);
            }
            for o in after {
                let id = o.id();
                by_id.entry(id).or_insert_with(empty).after = Some(o);
            }
            for (id, c) in by_id {
                if c.before != c.after {
                    changes.record(id, c.before, c.after);
                }
            }
        };
        add(objects(old), objects(new));
        changes
    }
}

/// Every object of `state`.
pub fn objects(state: &State) -> Vec<Object> {
    let mut out = Vec::new();
    out.extend(state.zones.iter().cloned().map(Object::Zone));
    out.extend(state.hosts.iter().cloned().map(Object::Host));
    out.extend(state.owners.iter().cloned().map(Object::Owner));
    out.extend(state.groups.iter().cloned().map(Object::Group));
    out.extend(state.containers.iter().cloned().map(Object::Container));
    out.extend(
        state
            .security_groups
            .iter()
            .cloned()
            .map(Object::SecurityGroup),
    );
    out.extend(state.services.iter().cloned().map(Object::Service));
    out.push(Object::NextOwnerId(state.next_owner_id));
    out
}

/// Puts `item` in the list sorted by `name` (replacing the one of its
/// name), or takes the one named `name` out.
fn upsert<T>(list: &mut Vec<T>, name: &str, item: Option<T>, name_of: impl Fn(&T) -> &str) {
    match (list.binary_search_by(|x| name_of(x).cmp(name)), item) {
        (Ok(i), Some(item)) => list[i] = item,
        (Ok(i), None) => {
            list.remove(i);
        }
        (Err(i), Some(item)) => list.insert(i, item),
        (Err(_), None) => {}
    }
}

impl State {
    /// Applies `changes` to this state, whose lists are sorted by name
    /// ([`State::normalize`]) and stay so.
    pub fn apply_changes(&mut self, changes: &Changes) {
        for (id, c) in &changes.objects {
            let after = c.after.as_ref();
            match id {
                ObjectId::Zone(n) => upsert(
                    &mut self.zones,
                    n,
                    after.and_then(Object::zone).cloned(),
                    |z| &z.name,
                ),
                ObjectId::Host(n) => upsert(
                    &mut self.hosts,
                    n,
                    after.and_then(Object::host).cloned(),
                    |h| &h.name,
                ),
                ObjectId::Owner(n) => upsert(
                    &mut self.owners,
                    n,
                    after.and_then(Object::owner).cloned(),
                    |o| &o.name,
                ),
                ObjectId::Group(n) => upsert(
                    &mut self.groups,
                    n,
                    after.and_then(Object::group).cloned(),
                    |g| &g.name,
                ),
                ObjectId::Container(n) => upsert(
                    &mut self.containers,
                    n,
                    after.and_then(Object::container).cloned(),
                    |c| &c.name,
                ),
                ObjectId::SecurityGroup(owner, via) => {
                    let list = &mut self.security_groups;
                    let at = list.binary_search_by(|g| (&g.owner, &g.via).cmp(&(owner, via)));
                    match (at, after) {
                        (Ok(i), Some(Object::SecurityGroup(g))) => list[i] = g.clone(),
                        (Ok(i), _) => {
                            list.remove(i);
                        }
                        (Err(i), Some(Object::SecurityGroup(g))) => list.insert(i, g.clone()),
                        (Err(_), _) => {}
                    }
                }
                ObjectId::Service(owner, name) => {
                    let list = &mut self.services;
                    let at = list.binary_search_by(|s| (&s.owner, &s.name).cmp(&(owner, name)));
                    match (at, after.and_then(Object::service)) {
                        (Ok(i), Some(svc)) => list[i] = svc.clone(),
                        (Ok(i), None) => {
                            list.remove(i);
                        }
                        (Err(i), Some(svc)) => list.insert(i, svc.clone()),
                        (Err(_), None) => {}
                    }
                }
                ObjectId::NextOwnerId => {
                    if let Some(Object::NextOwnerId(n)) = after {
                        self.next_owner_id = *n;
                    }
                }
            }
        }
    }
}

/// A state followed change by change, with the indexes that validate a
/// change by what it touches: containers added, changed or removed,
/// groups, owners added and `next_owner_id` growing are checked against
/// the indexes; anything else (zones, hosts, an owner removed or changed)
/// and any change after an invalid state validates the whole state. The
/// verdict is always [`State::validate`]'s (a property test holds them
/// equal); only which broken rule an error names may differ.
#[derive(Debug, Clone)]
pub struct FollowedState {
    state: State,
    valid: bool,
    /// Owner name → id, and the ids taken.
    owners: HashMap<String, u32>,
    owner_ids: HashMap<u32, String>,
    /// Host name → its position in `state.hosts` (hosts change only with a
    /// whole validation, which rebuilds this).
    hosts: HashMap<String, usize>,
    /// Container address → container name, and containers per host.
    addresses: HashMap<Ipv4Addr, String>,
    per_host: HashMap<String, usize>,
    /// The containers that are a service's backend (and of how many): a
    /// change of one validates whole (its services' rules may break).
    backends: HashMap<String, usize>,
    /// (owner, service name): a container of that owner may not take the
    /// name.
    service_names: HashSet<(String, String)>,
    /// VIP → the service (owner, name) that has it.
    vips: HashMap<Ipv4Addr, (String, String)>,
}

impl FollowedState {
    /// Follows `state` (sorted by name on the way in), validated whole.
    pub fn new(mut state: State) -> (FollowedState, Result<(), StateError>) {
        state.normalize();
        let mut me = FollowedState {
            state,
            valid: false,
            owners: HashMap::new(),
            owner_ids: HashMap::new(),
            hosts: HashMap::new(),
            addresses: HashMap::new(),
            per_host: HashMap::new(),
            backends: HashMap::new(),
            service_names: HashSet::new(),
            vips: HashMap::new(),
        };
        let verdict = me.validate_whole();
        (me, verdict)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn into_state(self) -> State {
        self.state
    }

    /// Whether the state followed validates.
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// Applies `changes` and validates the result (by the changes alone
    /// when it can). The state moves on even when it is invalid: a later
    /// change may repair it.
    pub fn apply(&mut self, changes: &Changes) -> Result<(), StateError> {
        let incremental = self.valid && changes.iter().all(|c| self.checked_alone(c));
        // Index moves first (they need the objects before the change).
        if incremental {
            self.unindex_before(changes);
        }
        self.state.apply_changes(changes);
        if !incremental {
            return self.validate_whole();
        }
        match self.check_and_index_after(changes) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.valid = false;
                Err(e)
            }
        }
    }

    fn validate_whole(&mut self) -> Result<(), StateError> {
        let verdict = self.state.validate();
        self.valid = verdict.is_ok();
        if self.valid {
            self.reindex();
        }
        verdict
    }

    fn reindex(&mut self) {
        let s = &self.state;
        self.owners = s.owners.iter().map(|o| (o.name.clone(), o.id)).collect();
        self.owner_ids = s.owners.iter().map(|o| (o.id, o.name.clone())).collect();
        self.hosts = s
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i))
            .collect();
        self.addresses = s
            .containers
            .iter()
            .map(|c| (c.address, c.name.clone()))
            .collect();
        self.per_host.clear();
        for c in &s.containers {
            *self.per_host.entry(c.host.clone()).or_default() += 1;
        }
        self.backends.clear();
        self.service_names.clear();
        self.vips.clear();
        for svc in &s.services {
            for b in &svc.backends {
                *self.backends.entry(b.container.clone()).or_default() += 1;
            }
            self.service_names
                .insert((svc.owner.clone(), svc.name.clone()));
            self.vips
                .insert(svc.vip, (svc.owner.clone(), svc.name.clone()));
        }
    }

    fn index_service(&mut self, svc: &Service) {
        for b in &svc.backends {
            *self.backends.entry(b.container.clone()).or_default() += 1;
        }
        self.service_names
            .insert((svc.owner.clone(), svc.name.clone()));
        self.vips
            .insert(svc.vip, (svc.owner.clone(), svc.name.clone()));
    }

    fn unindex_service(&mut self, svc: &Service) {
        for b in &svc.backends {
            if let Some(n) = self.backends.get_mut(&b.container) {
                *n -= 1;
                if *n == 0 {
                    self.backends.remove(&b.container);
                }
            }
        }
        let id = (svc.owner.clone(), svc.name.clone());
        self.service_names.remove(&id);
        if self.vips.get(&svc.vip) == Some(&id) {
            self.vips.remove(&svc.vip);
        }
    }

    /// A service's rules against the indexes: its own
    /// ([`State::validate_service`], containers found by binary search in
    /// the sorted list) and a VIP no other service has.
    fn check_service(&self, svc: &Service) -> Result<(), StateError> {
        let s = &self.state;
        s.validate_service(
            svc,
            |name| {
                s.containers
                    .binary_search_by(|c| c.name.as_str().cmp(name))
                    .ok()
                    .map(|i| &s.containers[i])
            },
            |host| {
                self.hosts
                    .get(host)
                    .and_then(|&i| s.hosts.get(i))
                    .map(|h| h.zone.as_str())
            },
        )?;
        if let Some((owner, name)) = self.vips.get(&svc.vip)
            && (owner != &svc.owner || name != &svc.name)
        {
            return Err(StateError::Duplicate {
                field: svc.field("vip"),
                value: svc.vip.to_string(),
                other: format!("service {owner}/{name}"),
            });
        }
        Ok(())
    }

    /// Can this change be validated against the indexes alone? Containers
    /// that are no service's backend, services, groups (any change, while
    /// no security group exists), owners added, `next_owner_id` growing.
    /// Security groups validate whole.
    fn checked_alone(&self, c: &ObjectChange) -> bool {
        let backend = |o: &Option<Object>| {
            o.as_ref()
                .and_then(Object::container)
                .is_some_and(|k| self.backends.contains_key(&k.name))
        };
        if backend(&c.before) || backend(&c.after) {
            return false;
        }
        checked_alone(c, &self.state)
    }

    fn unindex_before(&mut self, changes: &Changes) {
        for c in changes.iter() {
            if let Some(Object::Service(old)) = &c.before {
                self.unindex_service(old);
            }
            if let Some(Object::Container(old)) = &c.before {
                if self.addresses.get(&old.address) == Some(&old.name) {
                    self.addresses.remove(&old.address);
                }
                if let Some(n) = self.per_host.get_mut(&old.host) {
                    *n -= 1;
                }
            }
        }
    }

    /// The rules of [`State::validate`] that the objects after `changes`
    /// can break, given that the state before was valid; the indexes take
    /// the new objects in as they pass.
    fn check_and_index_after(&mut self, changes: &Changes) -> Result<(), StateError> {
        // Owners first: containers and groups of the same change may name
        // them.
        for c in changes.iter() {
            if let Some(Object::Owner(o)) = &c.after {
                self.check_new_owner(o)?;
                self.owners.insert(o.name.clone(), o.id);
                self.owner_ids.insert(o.id, o.name.clone());
            }
        }
        for c in changes.iter() {
            match &c.after {
                Some(Object::Group(g)) => self.check_group(g)?,
                Some(Object::Container(k)) => {
                    self.check_container(k)?;
                    self.addresses.insert(k.address, k.name.clone());
                    *self.per_host.entry(k.host.clone()).or_default() += 1;
                }
                _ => {}
            }
        }
        // Services last: they name containers of the same change.
        for c in changes.iter() {
            if let Some(Object::Service(svc)) = &c.after {
                self.check_service(svc)?;
                self.index_service(svc);
            }
        }
        Ok(())
    }

    fn check_new_owner(&self, o: &Owner) -> Result<(), StateError> {
        check_name("owners", &o.name)?;
        let field = path("owners", &o.name, "id");
        if o.id == netfabric_common::NO_OWNER || o.id == super::SYSTEM_OWNER_ID {
            // The full validation words these; only the verdict matters.
            return self.state.validate();
        }
        if o.id >= self.state.next_owner_id {
            return Err(StateError::invalid(
                field,
                format!(
                    "{} is not below next_owner_id {} (ids are handed out in order and never reused)",
                    o.id, self.state.next_owner_id
                ),
            ));
        }
        if let Some(other) = self.owner_ids.get(&o.id) {
            return Err(StateError::Duplicate {
                field,
                value: o.id.to_string(),
                other: format!("owner {other}"),
            });
        }
        Ok(())
    }

    fn check_group(&self, g: &Group) -> Result<(), StateError> {
        check_name("groups", &g.name)?;
        for member in &g.members {
            if !self.owners.contains_key(member) {
                return Err(StateError::UnknownReference {
                    field: path("groups", &g.name, "members"),
                    kind: "owner",
                    name: member.clone(),
                });
            }
        }
        Ok(())
    }

    fn check_container(&self, container: &Container) -> Result<(), StateError> {
        check_name("containers", &container.name)?;
        let field = |leaf: &str| path("containers", &container.name, leaf);
        if self
            .service_names
            .contains(&(container.owner.clone(), container.name.clone()))
        {
            // The whole validation names the service's field; the verdict
            // is the same.
            return self.state.validate();
        }
        if !self.owners.contains_key(&container.owner) {
            return Err(StateError::UnknownReference {
                field: field("owner"),
                kind: "owner",
                name: container.owner.clone(),
            });
        }
        let Some(host) = self
            .hosts
            .get(&container.host)
            .and_then(|&i| self.state.hosts.get(i))
        else {
            return Err(StateError::UnknownReference {
                field: field("host"),
                kind: "host",
                name: container.host.clone(),
            });
        };
        if self.per_host.get(&host.name).copied().unwrap_or(0) >= MAX_CONTAINERS_PER_HOST {
            return Err(StateError::HostFull {
                field: field("host"),
                host: host.name.clone(),
                subnet: host.subnet,
            });
        }
        let address = container.address;
        check_address_on_host(&field("address"), address, host)?;
        if let Some(other) = self.addresses.get(&address) {
            return Err(StateError::Duplicate {
                field: field("address"),
                value: address.to_string(),
                other: format!("container {other}"),
            });
        }
        Ok(())
    }
}

/// Can this change be validated against the indexes alone (before the
/// backends are considered: [`FollowedState::checked_alone`])?
/// Containers, services, groups (any change, while no security group
/// exists), owners added, `next_owner_id` growing. Security groups
/// validate whole.
fn checked_alone(c: &ObjectChange, state: &State) -> bool {
    match (&c.before, &c.after) {
        (Some(Object::Container(_)) | None, Some(Object::Container(_)) | None) => {
            c.before.is_some() || c.after.is_some()
        }
        // A group's members decide whom security groups narrow (and how
        // many rules a pair gets): with any security group, validate whole.
        (Some(Object::Group(_)) | None, Some(Object::Group(_)) | None) => {
            (c.before.is_some() || c.after.is_some()) && state.security_groups.is_empty()
        }
        (Some(Object::Service(_)) | None, Some(Object::Service(_)) | None) => {
            c.before.is_some() || c.after.is_some()
        }
        (None, Some(Object::Owner(_))) => true,
        (_, Some(Object::NextOwnerId(n))) => *n >= state.next_owner_id,
        _ => false,
    }
}

fn check_name(list: &str, name: &str) -> Result<(), StateError> {
    if !is_valid_name(name) {
        return Err(StateError::MalformedName {
            field: path(list, name, "name"),
            value: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MacAddr, state::HostSpec};

    /// A small deterministic generator (no dependency for one test).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn base() -> State {
        let mut s = State::default();
        s.create_zone("z", "10.1.0.0/16".parse().unwrap(), None)
            .unwrap();
        for h in 1..=3u8 {
            s.create_host(HostSpec {
                name: format!("h{h}"),
                zone: "z".into(),
                number: Some(h.into()),
                subnet: None,
                uplink: "up0".into(),
                underlay_ip: Ipv4Addr::new(172, 31, 0, h),
                underlay_mac: MacAddr([0x02, 0xaa, 0, 0, 0, h]),
            })
            .unwrap();
        }
        for o in ["alice", "bob", "carol"] {
            s.create_owner(o).unwrap();
        }
        s.normalize();
        s
    }

    /// A random edit of `s`: mostly valid ones, some that break a rule.
    fn edit(s: &State, rng: &mut Rng) -> State {
        let mut n = s.clone();
        let owner =
            |rng: &mut Rng| ["alice", "bob", "carol", "dave", "ghost"][rng.below(5) as usize];
        match rng.below(9) {
            0 | 1 => {
                let name = format!("c{}", rng.below(12));
                let host = format!("h{}", 1 + rng.below(4));
                let address = Ipv4Addr::new(10, 1, 1 + rng.below(3) as u8, rng.below(6) as u8);
                let c = Container {
                    name: name.clone(),
                    owner: owner(rng).into(),
                    host,
                    address,
                };
                n.containers.retain(|c| c.name != name);
                n.containers.push(c);
            }
            2 => {
                if !n.containers.is_empty() {
                    let i = rng.below(n.containers.len() as u64) as usize;
                    n.containers.remove(i);
                }
            }
            3 => {
                let name = format!("g{}", rng.below(3));
                n.groups.retain(|g| g.name != name);
                if rng.below(4) != 0 {
                    n.groups.push(Group {
                        name,
                        members: (0..rng.below(3)).map(|_| owner(rng).to_owned()).collect(),
                    });
                }
            }
            4 => {
                let name = format!("o{}", rng.below(4));
                if n.owner(&name).is_none() {
                    let id = match rng.below(6) {
                        0 => n.next_owner_id + 1,
                        1 => 2,
                        _ => n.next_owner_id,
                    };
                    n.owners.push(Owner {
                        name,
                        id,
                        egress: Default::default(),
                    });
                    if rng.below(5) != 0 {
                        n.next_owner_id = n.next_owner_id.max(id + 1);
                    }
                }
            }
            5 => {
                if n.owners.len() > 1 {
                    let i = 1 + rng.below(n.owners.len() as u64 - 1) as usize;
                    if rng.below(3) == 0 {
                        n.owners.remove(i);
                    } else {
                        // A changed owner (its egress switch).
                        n.owners[i].egress = match n.owners[i].egress {
                            super::super::model::Egress::Allow => super::super::model::Egress::Deny,
                            super::super::model::Egress::Deny => super::super::model::Egress::Allow,
                        };
                    }
                }
            }
            6 => {
                // Names are keys in a store that sends changes: a name is
                // never there twice, but it may be malformed.
                let bad = ["Bad", "c-1", "x"][rng.below(3) as usize];
                n.containers.retain(|c| c.name != bad);
                n.containers.push(Container {
                    name: bad.into(),
                    owner: "alice".into(),
                    host: "h1".into(),
                    address: Ipv4Addr::new(10, 1, 1, 200 + rng.below(50) as u8),
                });
            }
            7 => {
                if let Some(h) = n.hosts.last_mut() {
                    h.number = 200 + rng.below(2) as u32;
                }
            }
            _ => {
                n.next_owner_id = n.next_owner_id.saturating_sub(rng.below(2) as u32);
            }
        }
        n.normalize();
        n
    }

    #[test]
    fn followed_states_equal_the_whole_and_validate_as_the_whole_does() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        // Steps validated by the change alone, accepted and refused.
        let (mut alone_ok, mut alone_refused) = (0, 0);
        for _ in 0..200 {
            let mut store = base();
            let mut last_valid = store.clone();
            let (mut followed, verdict) = FollowedState::new(store.clone());
            assert!(verdict.is_ok());
            for step in 0..40 {
                // A broken state is mostly repaired (as by the writer who
                // broke it), or broken further.
                let next = if store != last_valid && rng.below(3) != 0 {
                    last_valid.clone()
                } else {
                    edit(&store, &mut rng)
                };
                if next.validate().is_ok() {
                    last_valid = next.clone();
                }
                let changes = Changes::between(&store, &next);
                let alone = followed.is_valid()
                    && changes.iter().all(|c| checked_alone(c, followed.state()));
                let verdict = followed.apply(&changes);
                if alone {
                    *if verdict.is_ok() {
                        &mut alone_ok
                    } else {
                        &mut alone_refused
                    } += 1;
                }
                assert_eq!(followed.state(), &next, "step {step}: the state followed");
                assert_eq!(
                    verdict.is_ok(),
                    next.validate().is_ok(),
                    "step {step}: {verdict:?} vs {:?} for {changes:?}",
                    next.validate()
                );
                store = next;
            }
        }
        assert!(
            alone_ok > 2_000 && alone_refused > 500,
            "{alone_ok} accepted and {alone_refused} refused by the change alone"
        );
    }

    #[test]
    fn merged_changes_go_from_the_first_state_to_the_last() {
        let a = base();
        let mut b = a.clone();
        b.create_container("web", "alice", "h1", None).unwrap();
        let mut c = b.clone();
        c.delete_container("web").unwrap();
        c.create_container("db", "bob", "h2", None).unwrap();
        let mut merged = Changes::between(&a, &b);
        merged.merge(Changes::between(&b, &c));
        let mut s = a.clone();
        s.apply_changes(&merged);
        c.normalize();
        assert_eq!(s, c);
        // "web" came and went: no change left for it.
        assert_eq!(merged.iter().count(), 1, "{merged:?}");
    }

    /// A random edit of `s` that touches security groups: set one (any
    /// owner, a group or own, 0 to 9 separate rules), delete one, or change
    /// a group's members.
    fn edit_security_groups(s: &State, rng: &mut Rng) -> State {
        use crate::state::security::{SecurityGroup, Via};
        let mut n = s.clone();
        let owner =
            |rng: &mut Rng| ["alice", "bob", "carol", "system", "ghost"][rng.below(5) as usize];
        match rng.below(4) {
            0 | 1 => {
                let via = match rng.below(4) {
                    0 => Via::Own,
                    g => Via::Group(format!("g{}", g - 1 + rng.below(2))),
                };
                let owner = owner(rng).to_owned();
                n.security_groups
                    .retain(|g| !(g.owner == owner && g.via == via));
                let allow = (0..rng.below(10))
                    .map(|i| format!("tcp/{}", 100 + 2 * i).parse().unwrap())
                    .collect();
                n.security_groups.push(SecurityGroup { owner, via, allow });
            }
            2 => {
                if !n.security_groups.is_empty() {
                    let i = rng.below(n.security_groups.len() as u64) as usize;
                    n.security_groups.remove(i);
                }
            }
            _ => {
                let name = format!("g{}", rng.below(3));
                n.groups.retain(|g| g.name != name);
                if rng.below(4) != 0 {
                    n.groups.push(Group {
                        name,
                        members: (0..rng.below(4)).map(|_| owner(rng).to_owned()).collect(),
                    });
                }
            }
        }
        n.normalize();
        n
    }

    /// A random edit of `s` that touches services: create one (backends
    /// among containers of any owner, possibly named like a container),
    /// add or remove a backend, delete one or a container.
    fn edit_services(s: &State, rng: &mut Rng) -> State {
        use crate::state::ServiceSpec;
        let mut n = s.clone();
        let owner = |rng: &mut Rng| ["alice", "bob", "carol", "ghost"][rng.below(4) as usize];
        let container = |n: &State, rng: &mut Rng| {
            (!n.containers.is_empty()).then(|| {
                n.containers[rng.below(n.containers.len() as u64) as usize]
                    .name
                    .clone()
            })
        };
        match rng.below(5) {
            0 | 1 => {
                let backends = (0..rng.below(3))
                    .filter_map(|_| container(&n, rng))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let name = ["api", "www", "c1", "c2"][rng.below(4) as usize];
                let _ = n.create_service(ServiceSpec {
                    name: name.into(),
                    owner: owner(rng).into(),
                    zone: None,
                    vip: (rng.below(4) == 0)
                        .then(|| Ipv4Addr::new(10, 1, rng.below(2) as u8, 1 + rng.below(3) as u8)),
                    ports: vec!["tcp/80".parse().unwrap()],
                    backends,
                    health: Default::default(),
                });
            }
            2 => {
                if let (Some(i), Some(c)) = (
                    (!n.services.is_empty()).then(|| rng.below(n.services.len() as u64) as usize),
                    container(&n, rng),
                ) {
                    let (o, name) = (n.services[i].owner.clone(), n.services[i].name.clone());
                    if rng.below(2) == 0 {
                        let _ = n.add_service_backends(&o, &name, &[c]);
                    } else {
                        let _ = n.remove_service_backends(&o, &name, &[c]);
                    }
                }
            }
            3 => {
                if !n.services.is_empty() {
                    let i = rng.below(n.services.len() as u64) as usize;
                    n.services.remove(i);
                }
            }
            _ => {
                // Bypassing the operation's refusal: a backend deleted.
                if let Some(c) = container(&n, rng) {
                    n.containers.retain(|x| x.name != c);
                }
            }
        }
        n.normalize();
        n
    }

    /// Follows 100 runs of 30 random edits from [`base`], half of them by
    /// `special` and half by [`edit`], and holds the followed state's
    /// verdict on each equal to [`State::validate`]'s. Calls `step` with
    /// each state and whether it was accepted.
    fn follow_edits(
        seed: u64,
        special: fn(&State, &mut Rng) -> State,
        mut step: impl FnMut(&State, bool),
    ) {
        let mut rng = Rng(seed);
        for _ in 0..100 {
            let mut store = base();
            let (mut followed, _) = FollowedState::new(store.clone());
            for i in 0..30 {
                let next = if rng.below(2) == 0 {
                    special(&store, &mut rng)
                } else {
                    edit(&store, &mut rng)
                };
                let changes = Changes::between(&store, &next);
                let verdict = followed.apply(&changes);
                assert_eq!(followed.state(), &next, "step {i}: the state followed");
                assert_eq!(
                    verdict.is_ok(),
                    next.validate().is_ok(),
                    "step {i}: {verdict:?} vs {:?} for {changes:?}",
                    next.validate()
                );
                step(&next, verdict.is_ok());
                store = next;
            }
        }
    }

    #[test]
    fn followed_states_with_services_validate_as_the_whole_does() {
        let (mut accepted, mut refused) = (0, 0);
        follow_edits(0x5eed_5e71_0000_0001, edit_services, |next, ok| {
            if ok && !next.services.is_empty() {
                accepted += 1;
            }
            refused += usize::from(!ok);
        });
        assert!(
            accepted > 100 && refused > 100,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// With security groups, a group change is validated whole: a member
    /// joining can give a pair more rules than an entry holds, a group
    /// deleted can leave a security group naming nothing.
    #[test]
    fn followed_states_with_security_groups_validate_as_the_whole_does() {
        let mut refused = 0;
        follow_edits(0x5eed_5ec6_0000_0001, edit_security_groups, |_, ok| {
            refused += usize::from(!ok);
        });
        assert!(refused > 100, "only {refused} refusals");
    }
}
