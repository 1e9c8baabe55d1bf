//! Ids and addresses of the maps, turned back into the names of the
//! desired state: owner ids → owners, addresses → containers, (zone slot,
//! host octet) → hosts, zone slots → zones, owner pairs → shared groups.
//!
//! Built from a store snapshot; without one (no store reachable) every
//! lookup answers `None` and the callers print numbers.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use crate::state::State;

/// A container as the decoders need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerName {
    pub name: String,
    pub owner: String,
    pub host: String,
}

/// A service as the decoders need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName {
    pub name: String,
    pub owner: String,
    pub vip: Ipv4Addr,
}

/// Reverse indexes of one desired state.
#[derive(Debug, Clone, Default)]
pub struct Names {
    owners: BTreeMap<u32, String>,
    containers: BTreeMap<Ipv4Addr, ContainerName>,
    zones: BTreeMap<u32, (String, Ipv4Addr)>,
    hosts: BTreeMap<(u32, u32), String>,
    groups_of: BTreeMap<String, BTreeSet<String>>,
    /// Group key (`netfabric_common::policy::group_key`) → group name.
    group_keys: BTreeMap<u32, String>,
    /// Service id (`netfabric_common::service::service_id`) → service.
    services: BTreeMap<u32, ServiceName>,
    /// Whether a state was loaded at all.
    pub loaded: bool,
}

impl Names {
    /// No names: numbers only.
    pub fn empty() -> Self {
        Names::default()
    }

    pub fn from_state(state: &State) -> Self {
        let zone_slot: BTreeMap<&str, u32> = state
            .zones
            .iter()
            .map(|z| (z.name.as_str(), z.slot))
            .collect();
        let mut groups_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for g in &state.groups {
            for m in &g.members {
                groups_of
                    .entry(m.clone())
                    .or_default()
                    .insert(g.name.clone());
            }
        }
        Names {
            owners: state
                .owners
                .iter()
                .map(|o| (o.id, o.name.clone()))
                .collect(),
            containers: state
                .containers
                .iter()
                .map(|c| {
                    (
                        c.address,
                        ContainerName {
                            name: c.name.clone(),
                            owner: c.owner.clone(),
                            host: c.host.clone(),
                        },
                    )
                })
                .collect(),
            zones: state
                .zones
                .iter()
                .map(|z| (z.slot, (z.name.clone(), z.prefix.network())))
                .collect(),
            hosts: state
                .hosts
                .iter()
                .filter_map(|h| {
                    Some(((*zone_slot.get(h.zone.as_str())?, h.number), h.name.clone()))
                })
                .collect(),
            groups_of,
            services: state
                .services
                .iter()
                .filter_map(|svc| {
                    let slot = *zone_slot.get(svc.zone.as_str())?;
                    Some((
                        netfabric_common::service::service_id(slot, u32::from(svc.vip)),
                        ServiceName {
                            name: svc.name.clone(),
                            owner: svc.owner.clone(),
                            vip: svc.vip,
                        },
                    ))
                })
                .collect(),
            group_keys: state
                .groups
                .iter()
                .map(|g| (netfabric_common::policy::group_key(&g.name), g.name.clone()))
                .collect(),
            loaded: true,
        }
    }

    /// Names of containers only (address, name, owner), for tests.
    #[cfg(test)]
    pub(crate) fn from_containers<'a>(
        containers: impl IntoIterator<Item = (Ipv4Addr, &'a str, &'a str)>,
    ) -> Self {
        Names {
            containers: containers
                .into_iter()
                .map(|(addr, name, owner)| {
                    (
                        addr,
                        ContainerName {
                            name: name.to_owned(),
                            owner: owner.to_owned(),
                            host: String::new(),
                        },
                    )
                })
                .collect(),
            loaded: true,
            ..Names::default()
        }
    }

    pub fn owner(&self, id: u32) -> Option<&str> {
        self.owners.get(&id).map(String::as_str)
    }

    /// The owner id of an owner name.
    pub fn owner_id(&self, name: &str) -> Option<u32> {
        self.owners
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| *id)
    }

    pub fn container(&self, addr: Ipv4Addr) -> Option<&ContainerName> {
        self.containers.get(&addr)
    }

    /// Zone name and /16 network of a zone slot.
    pub fn zone(&self, slot: u32) -> Option<(&str, Ipv4Addr)> {
        self.zones.get(&slot).map(|(n, p)| (n.as_str(), *p))
    }

    /// The zone slot of an address, by the zones of the state.
    pub fn zone_slot_of(&self, addr: Ipv4Addr) -> Option<u32> {
        let net = u32::from(addr) & 0xffff_0000;
        self.zones
            .iter()
            .find(|(_, (_, p))| u32::from(*p) == net)
            .map(|(s, _)| *s)
    }

    pub fn host(&self, zone_slot: u32, host_octet: u32) -> Option<&str> {
        self.hosts.get(&(zone_slot, host_octet)).map(String::as_str)
    }

    /// The group whose key (`netfabric_common::policy::group_key`) is `key`.
    pub fn group_of_key(&self, key: u32) -> Option<&str> {
        self.group_keys.get(&key).map(String::as_str)
    }

    /// The service of a service id.
    pub fn service(&self, id: u32) -> Option<&ServiceName> {
        self.services.get(&id)
    }

    /// `owner/name` of a service id, or `#<id>`.
    pub fn service_label(&self, id: u32) -> String {
        self.service(id)
            .map_or_else(|| format!("#{id}"), |s| format!("{}/{}", s.owner, s.name))
    }

    /// The groups owners `a` and `b` share (by owner id).
    pub fn shared_groups(&self, a: u32, b: u32) -> Vec<String> {
        let (Some(a), Some(b)) = (self.owner(a), self.owner(b)) else {
            return Vec::new();
        };
        match (self.groups_of.get(a), self.groups_of.get(b)) {
            (Some(ga), Some(gb)) => ga.intersection(gb).cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// `name` or `#<id>` for people.
pub fn or_id(name: Option<&str>, id: u32) -> String {
    name.map_or_else(|| format!("#{id}"), str::to_owned)
}
