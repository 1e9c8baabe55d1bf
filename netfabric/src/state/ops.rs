//! Changes to the desired state, as the CLI and the lab ask for them,
//! including persistent address allocation.
//!
//! Each operation checks what only it knows (does the object exist, is it
//! still in use) and leaves the rest to [`State::validate`], which a store
//! runs on the whole new state before committing. Creating an object that
//! already exists with the same definition is a no-op that succeeds
//! (idempotent); with a different definition it is refused.
//!
//! New objects are appended to their list, so that when validation finds a
//! duplicate (address, host number, underlay address) it names the new
//! object, the later of the two; the store sorts the lists (see
//! [`State::normalize`]) after validation.

use std::{collections::BTreeSet, net::Ipv4Addr};

use super::{
    error::{StateError, path},
    model::{
        Container, Egress, Gateway, Group, HOST_NUMBERS, Host, Ipv4Prefix, MAX_ZONES, Owner,
        SYSTEM_OWNER_NAME, State, Zone, host_subnet,
    },
    security::{Allow, SecurityGroup, Via},
};
use crate::MacAddr;

/// What `host create` asks for. The /24 comes from `number` or `subnet`
/// (both may be given if they agree); with neither, the lowest free host
/// number of the zone is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub name: String,
    pub zone: String,
    pub number: Option<u32>,
    pub subnet: Option<Ipv4Prefix>,
    pub uplink: String,
    pub underlay_ip: Ipv4Addr,
    pub underlay_mac: MacAddr,
}

fn list_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 5;
    let names: Vec<&str> = names.collect();
    let mut out = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}

impl State {
    // ---- zones -------------------------------------------------------------

    /// Creates zone `name` with the /16 `prefix`; returns its slot.
    pub fn create_zone(
        &mut self,
        name: &str,
        prefix: Ipv4Prefix,
        gateway: Option<Gateway>,
    ) -> Result<u32, StateError> {
        if let Some(zone) = self.zone(name) {
            if zone.prefix == prefix && zone.gateway == gateway {
                return Ok(zone.slot);
            }
            return Err(StateError::AlreadyExists {
                field: path("zones", name, ""),
                kind: "zone",
                name: name.to_owned(),
                detail: format!(" with prefix {} and a different definition", zone.prefix),
            });
        }
        let slot = (0..MAX_ZONES)
            .find(|s| self.zones.iter().all(|z| z.slot != *s))
            .ok_or_else(|| {
                StateError::invalid(
                    path("zones", name, "slot"),
                    format!("all {MAX_ZONES} zone slots are taken"),
                )
            })?;
        self.zones.push(Zone {
            name: name.to_owned(),
            prefix,
            slot,
            gateway,
        });
        Ok(slot)
    }

    pub fn delete_zone(&mut self, name: &str) -> Result<(), StateError> {
        let field = path("zones", name, "");
        if self.zone(name).is_none() {
            return Err(StateError::NotFound {
                field,
                kind: "zone",
                name: name.to_owned(),
            });
        }
        let hosts: Vec<&str> = self
            .hosts
            .iter()
            .filter(|h| h.zone == name)
            .map(|h| h.name.as_str())
            .collect();
        if !hosts.is_empty() {
            return Err(StateError::InUse {
                field,
                kind: "zone",
                name: name.to_owned(),
                users: format!("hosts {}", list_names(hosts.into_iter())),
                hint: "delete its hosts first",
            });
        }
        let services: Vec<String> = self
            .services
            .iter()
            .filter(|s| s.zone == name)
            .map(|s| s.id())
            .collect();
        if !services.is_empty() {
            return Err(StateError::InUse {
                field,
                kind: "zone",
                name: name.to_owned(),
                users: format!(
                    "services {}",
                    list_names(services.iter().map(String::as_str))
                ),
                hint: "delete its services first",
            });
        }
        self.zones.retain(|z| z.name != name);
        Ok(())
    }

    // ---- hosts -------------------------------------------------------------

    /// Creates a host; returns its number.
    pub fn create_host(&mut self, spec: HostSpec) -> Result<u32, StateError> {
        let field = |leaf: &str| path("hosts", &spec.name, leaf);
        let Some(zone) = self.zone(&spec.zone) else {
            return Err(StateError::UnknownReference {
                field: field("zone"),
                kind: "zone",
                name: spec.zone.clone(),
            });
        };
        let zone_prefix = zone.prefix;
        let number = match (spec.number, spec.subnet) {
            (number, Some(subnet)) => {
                if subnet.len != 24 || !subnet.is_canonical() {
                    return Err(StateError::invalid(
                        field("subnet"),
                        format!("{subnet} is not a /24 such as 10.1.7.0/24"),
                    ));
                }
                if !zone_prefix.contains_prefix(subnet) {
                    return Err(StateError::SubnetOutsideZone {
                        field: field("subnet"),
                        subnet,
                        zone: spec.zone.clone(),
                        zone_prefix,
                    });
                }
                let from_subnet = u32::from(subnet.addr.octets()[2]);
                if let Some(n) = number
                    && n != from_subnet
                {
                    return Err(StateError::invalid(
                        field("number"),
                        format!(
                            "{n} does not match subnet {subnet} (its host number is {from_subnet})"
                        ),
                    ));
                }
                from_subnet
            }
            (Some(n), None) => n,
            (None, None) => HOST_NUMBERS
                .clone()
                .find(|n| {
                    !self
                        .hosts
                        .iter()
                        .any(|h| h.zone == spec.zone && h.number == *n)
                })
                .ok_or_else(|| {
                    StateError::invalid(
                        field("number"),
                        format!(
                            "zone {} has no free host number (all 254 are taken)",
                            spec.zone
                        ),
                    )
                })?,
        };
        let host = Host {
            name: spec.name.clone(),
            zone: spec.zone.clone(),
            number,
            subnet: host_subnet(zone_prefix, number),
            uplink: spec.uplink,
            underlay_ip: spec.underlay_ip,
            underlay_mac: spec.underlay_mac,
        };
        if let Some(existing) = self.host(&spec.name) {
            if *existing == host {
                return Ok(number);
            }
            return Err(StateError::AlreadyExists {
                field: field(""),
                kind: "host",
                name: spec.name.clone(),
                detail: format!(
                    " in zone {} as number {} with a different definition",
                    existing.zone, existing.number
                ),
            });
        }
        self.hosts.push(host);
        Ok(number)
    }

    pub fn delete_host(&mut self, name: &str) -> Result<(), StateError> {
        let field = path("hosts", name, "");
        if self.host(name).is_none() {
            return Err(StateError::NotFound {
                field,
                kind: "host",
                name: name.to_owned(),
            });
        }
        if self.containers_on(name).next().is_some() {
            return Err(StateError::InUse {
                field,
                kind: "host",
                name: name.to_owned(),
                users: format!(
                    "containers {}",
                    list_names(self.containers_on(name).map(|c| c.name.as_str()))
                ),
                hint: "delete its containers first",
            });
        }
        self.hosts.retain(|h| h.name != name);
        Ok(())
    }

    // ---- owners ------------------------------------------------------------

    /// Creates owner `name` (no-op if it exists); returns its id.
    pub fn create_owner(&mut self, name: &str) -> Result<u32, StateError> {
        if let Some(owner) = self.owner(name) {
            return Ok(owner.id);
        }
        let id = self.next_owner_id;
        self.next_owner_id = id
            .checked_add(1)
            .ok_or_else(|| StateError::invalid("next_owner_id", "owner ids are exhausted"))?;
        self.owners.push(Owner {
            name: name.to_owned(),
            id,
            egress: Egress::Allow,
        });
        Ok(id)
    }

    /// Sets owner `name`'s egress switch (the same value: no change).
    pub fn set_owner_egress(&mut self, name: &str, egress: Egress) -> Result<(), StateError> {
        let field = path("owners", name, "egress");
        let Some(owner) = self.owners.iter_mut().find(|o| o.name == name) else {
            return Err(StateError::NotFound {
                field,
                kind: "owner",
                name: name.to_owned(),
            });
        };
        owner.egress = egress;
        Ok(())
    }

    pub fn delete_owner(&mut self, name: &str) -> Result<(), StateError> {
        let field = path("owners", name, "");
        if name == SYSTEM_OWNER_NAME {
            return Err(StateError::invalid(
                field,
                "the system owner is reserved and cannot be deleted",
            ));
        }
        if self.owner(name).is_none() {
            return Err(StateError::NotFound {
                field,
                kind: "owner",
                name: name.to_owned(),
            });
        }
        let owned: Vec<&str> = self
            .containers
            .iter()
            .filter(|c| c.owner == name)
            .map(|c| c.name.as_str())
            .collect();
        if !owned.is_empty() {
            return Err(StateError::InUse {
                field,
                kind: "owner",
                name: name.to_owned(),
                users: format!("containers {}", list_names(owned.into_iter())),
                hint: "delete its containers first",
            });
        }
        let services: Vec<String> = self
            .services
            .iter()
            .filter(|s| s.owner == name)
            .map(|s| s.id())
            .collect();
        if !services.is_empty() {
            return Err(StateError::InUse {
                field,
                kind: "owner",
                name: name.to_owned(),
                users: format!(
                    "services {}",
                    list_names(services.iter().map(String::as_str))
                ),
                hint: "delete its services first",
            });
        }
        let groups: Vec<&str> = self
            .groups
            .iter()
            .filter(|g| g.members.contains(name))
            .map(|g| g.name.as_str())
            .collect();
        if !groups.is_empty() {
            return Err(StateError::InUse {
                field,
                kind: "owner",
                name: name.to_owned(),
                users: format!("groups {}", list_names(groups.into_iter())),
                hint: "remove it from those groups first (group remove-member)",
            });
        }
        self.owners.retain(|o| o.name != name);
        // Its security groups narrow nothing any more.
        self.security_groups.retain(|g| g.owner != name);
        Ok(())
    }

    // ---- groups ------------------------------------------------------------

    /// Creates group `name` with `members` (no-op if it exists with exactly
    /// these members).
    pub fn create_group(&mut self, name: &str, members: &[String]) -> Result<(), StateError> {
        let members: BTreeSet<String> = members.iter().cloned().collect();
        self.check_owners_exist(name, &members)?;
        if let Some(group) = self.group(name) {
            if group.members == members {
                return Ok(());
            }
            return Err(StateError::AlreadyExists {
                field: path("groups", name, ""),
                kind: "group",
                name: name.to_owned(),
                detail: " with other members (use group add-member / remove-member)".to_owned(),
            });
        }
        self.groups.push(Group {
            name: name.to_owned(),
            members,
        });
        Ok(())
    }

    /// Deletes a group and the security groups that narrow it (without
    /// the group their owners share nothing through it: deleting never
    /// opens anything).
    pub fn delete_group(&mut self, name: &str) -> Result<(), StateError> {
        self.group_mut(name)?;
        self.groups.retain(|g| g.name != name);
        self.security_groups
            .retain(|g| g.via != Via::Group(name.to_owned()));
        Ok(())
    }

    /// Adds owners to a group (already a member: no-op).
    pub fn add_group_members(&mut self, name: &str, owners: &[String]) -> Result<(), StateError> {
        let owners: BTreeSet<String> = owners.iter().cloned().collect();
        self.check_owners_exist(name, &owners)?;
        self.group_mut(name)?.members.extend(owners);
        Ok(())
    }

    /// Removes owners from a group (not a member: no-op).
    pub fn remove_group_members(
        &mut self,
        name: &str,
        owners: &[String],
    ) -> Result<(), StateError> {
        let owners: BTreeSet<String> = owners.iter().cloned().collect();
        self.check_owners_exist(name, &owners)?;
        self.group_mut(name)?
            .members
            .retain(|m| !owners.contains(m));
        Ok(())
    }

    fn group_mut(&mut self, name: &str) -> Result<&mut Group, StateError> {
        self.groups
            .iter_mut()
            .find(|g| g.name == name)
            .ok_or_else(|| StateError::NotFound {
                field: path("groups", name, ""),
                kind: "group",
                name: name.to_owned(),
            })
    }

    fn check_owners_exist(&self, group: &str, owners: &BTreeSet<String>) -> Result<(), StateError> {
        match owners.iter().find(|o| self.owner(o).is_none()) {
            Some(unknown) => Err(StateError::UnknownReference {
                field: path("groups", group, "members"),
                kind: "owner",
                name: unknown.clone(),
            }),
            None => Ok(()),
        }
    }

    // ---- security groups ---------------------------------------------------

    /// Sets what `owner` leaves open `via` one way in (replacing the rules
    /// it had there). The owner must exist and not be the system owner; a
    /// group must exist and have the owner as a member. Returns whether
    /// anything changed.
    pub fn set_security_group(
        &mut self,
        owner: &str,
        via: Via,
        allow: &[Allow],
    ) -> Result<bool, StateError> {
        let sg = SecurityGroup {
            owner: owner.to_owned(),
            via,
            allow: super::security::merge_rules(allow.iter().copied()),
        };
        if self.owner(owner).is_none() {
            return Err(StateError::UnknownReference {
                field: sg.field("owner"),
                kind: "owner",
                name: owner.to_owned(),
            });
        }
        if let Via::Group(group) = &sg.via {
            let Some(g) = self.group(group) else {
                return Err(StateError::UnknownReference {
                    field: sg.field("via"),
                    kind: "group",
                    name: group.clone(),
                });
            };
            if !g.members.contains(owner) {
                return Err(StateError::invalid(
                    sg.field("via"),
                    format!(
                        "{owner} is not a member of group {group}: a security group narrows \
                         a group its owner is in (group add-member {group} {owner})"
                    ),
                ));
            }
        }
        match self
            .security_groups
            .iter_mut()
            .find(|g| g.owner == sg.owner && g.via == sg.via)
        {
            Some(existing) if *existing == sg => Ok(false),
            Some(existing) => {
                *existing = sg;
                Ok(true)
            }
            None => {
                self.security_groups.push(sg);
                Ok(true)
            }
        }
    }

    pub fn delete_security_group(&mut self, owner: &str, via: &Via) -> Result<(), StateError> {
        if self.security_group(owner, via).is_none() {
            return Err(StateError::NotFound {
                field: path("security_groups", &format!("{owner}/{via}"), ""),
                kind: "security group",
                name: format!("{owner}/{via}"),
            });
        }
        self.security_groups
            .retain(|g| !(g.owner == owner && g.via == *via));
        Ok(())
    }

    // ---- containers --------------------------------------------------------

    /// Creates container `name` of `owner` on `host` and returns its address:
    /// `address` if given, otherwise the lowest free one of `.1`–`.254` of
    /// the host's /24. Creating the same container again (same owner and
    /// host, and the same address if one is asked for) returns the address it
    /// already has.
    pub fn create_container(
        &mut self,
        name: &str,
        owner: &str,
        host: &str,
        address: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, StateError> {
        let field = |leaf: &str| path("containers", name, leaf);
        if let Some(existing) = self.container(name) {
            if existing.owner == owner
                && existing.host == host
                && address.is_none_or(|a| a == existing.address)
            {
                return Ok(existing.address);
            }
            return Err(StateError::AlreadyExists {
                field: field(""),
                kind: "container",
                name: name.to_owned(),
                detail: format!(
                    " with owner {} on host {} at {}",
                    existing.owner, existing.host, existing.address
                ),
            });
        }
        if self.owner(owner).is_none() {
            return Err(StateError::UnknownReference {
                field: field("owner"),
                kind: "owner",
                name: owner.to_owned(),
            });
        }
        if let Some(service) = self.service(owner, name) {
            return Err(StateError::invalid(
                field("name"),
                format!(
                    "{owner} has a service named {name} ({}): a service and a container of one \
                     owner share the DNS names <name>.<owner>.<domain>",
                    service.vip
                ),
            ));
        }
        let Some(host_def) = self.host(host) else {
            return Err(StateError::UnknownReference {
                field: field("host"),
                kind: "host",
                name: host.to_owned(),
            });
        };
        let address = match address {
            Some(address) => address,
            None => self
                .free_address(host_def)
                .ok_or_else(|| StateError::HostFull {
                    field: field("host"),
                    host: host.to_owned(),
                    subnet: host_def.subnet,
                })?,
        };
        self.containers.push(Container {
            name: name.to_owned(),
            owner: owner.to_owned(),
            host: host.to_owned(),
            address,
        });
        Ok(address)
    }

    /// The lowest free container address of `host`'s /24 (`.1`–`.254`).
    pub fn free_address(&self, host: &Host) -> Option<Ipv4Addr> {
        let mut used = [false; 256];
        for c in self.containers_on(&host.name) {
            if host.subnet.contains(c.address) {
                used[usize::from(c.address.octets()[3])] = true;
            }
        }
        let [a, b, c, _] = host.subnet.addr.octets();
        crate::conventions::CONTAINER_OCTETS
            .clone()
            .find(|d| !used[usize::from(*d)])
            .map(|d| Ipv4Addr::new(a, b, c, d))
    }

    /// Deletes a container. A backend of a service is refused, naming the
    /// services: its open flows would be cut without anyone asking, so the
    /// operator removes it from them first (`service remove-backend`).
    pub fn delete_container(&mut self, name: &str) -> Result<(), StateError> {
        if self.container(name).is_none() {
            return Err(StateError::NotFound {
                field: path("containers", name, ""),
                kind: "container",
                name: name.to_owned(),
            });
        }
        let services: Vec<String> = self.services_of_backend(name).map(|s| s.id()).collect();
        if !services.is_empty() {
            return Err(StateError::InUse {
                field: path("containers", name, ""),
                kind: "container",
                name: name.to_owned(),
                users: format!(
                    "services {} as a backend",
                    list_names(services.iter().map(String::as_str))
                ),
                hint: "remove it from them first (service remove-backend)",
            });
        }
        self.containers.retain(|c| c.name != name);
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, last])
    }

    /// Zone z1 (10.1.0.0/16), hosts h1 and h2, owners alice and bob.
    pub(in crate::state) fn lab() -> State {
        let mut s = State::default();
        s.create_zone("z1", "10.1.0.0/16".parse().unwrap(), None)
            .unwrap();
        for n in 1..=2u8 {
            s.create_host(HostSpec {
                name: format!("h{n}"),
                zone: "z1".into(),
                number: Some(n.into()),
                subnet: None,
                uplink: "eth0".into(),
                underlay_ip: Ipv4Addr::new(192, 168, 0, n),
                underlay_mac: mac(n),
            })
            .unwrap();
        }
        s.create_owner("alice").unwrap();
        s.create_owner("bob").unwrap();
        s.validate().unwrap();
        s
    }

    #[test]
    fn allocates_lowest_free_and_keeps_addresses() {
        let mut s = lab();
        let a = s.create_container("a", "alice", "h1", None).unwrap();
        let b = s.create_container("b", "bob", "h1", None).unwrap();
        let c = s.create_container("c", "bob", "h2", None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 1, 1, 1));
        assert_eq!(b, Ipv4Addr::new(10, 1, 1, 2));
        assert_eq!(c, Ipv4Addr::new(10, 1, 2, 1));
        // Idempotent re-create: same address, no change.
        let before = s.clone();
        assert_eq!(s.create_container("b", "bob", "h1", None).unwrap(), b);
        assert_eq!(s, before);
        // Deleting frees the address; the next create takes the lowest hole.
        s.delete_container("a").unwrap();
        assert_eq!(s.container("b").unwrap().address, b);
        assert_eq!(s.create_container("d", "bob", "h1", None).unwrap(), a);
        s.validate().unwrap();
    }

    #[test]
    fn recreate_with_other_definition_is_refused() {
        let mut s = lab();
        s.create_container("a", "alice", "h1", None).unwrap();
        let e = s.create_container("a", "bob", "h1", None).unwrap_err();
        assert_eq!(e.field(), "containers[a]");
        let e = s
            .create_container("a", "alice", "h1", Some(Ipv4Addr::new(10, 1, 1, 9)))
            .unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
    }

    #[test]
    fn the_255th_container_is_refused() {
        let mut s = lab();
        for i in 1..=254 {
            let a = s
                .create_container(&format!("c{i}"), "alice", "h1", None)
                .unwrap();
            assert_eq!(a.octets()[3], i as u8);
        }
        s.validate().unwrap();
        let e = s.create_container("c255", "alice", "h1", None).unwrap_err();
        assert_eq!(e.field(), "containers[c255].host");
        assert!(e.to_string().contains("host h1 is full"), "{e}");
        // Another host still has room.
        s.create_container("c255", "alice", "h2", None).unwrap();
    }

    #[test]
    fn owner_ids_are_never_reused() {
        let mut s = lab();
        let carol = s.create_owner("carol").unwrap();
        assert_eq!(s.create_owner("carol").unwrap(), carol);
        s.delete_owner("carol").unwrap();
        let again = s.create_owner("carol").unwrap();
        assert!(again > carol);
        assert!(s.delete_owner(SYSTEM_OWNER_NAME).is_err());
    }

    #[test]
    fn deletes_refuse_objects_in_use() {
        let mut s = lab();
        s.create_container("a", "alice", "h1", None).unwrap();
        s.create_group("g", &["alice".into(), "bob".into()])
            .unwrap();
        assert_eq!(s.delete_host("h1").unwrap_err().field(), "hosts[h1]");
        assert_eq!(s.delete_zone("z1").unwrap_err().field(), "zones[z1]");
        assert!(
            s.delete_owner("alice")
                .unwrap_err()
                .to_string()
                .contains("containers a")
        );
        assert!(
            s.delete_owner("bob")
                .unwrap_err()
                .to_string()
                .contains("groups g")
        );
        s.remove_group_members("g", &["bob".into()]).unwrap();
        s.delete_owner("bob").unwrap();
        assert_eq!(
            s.add_group_members("g", &["nobody".into()])
                .unwrap_err()
                .field(),
            "groups[g].members"
        );
        assert!(matches!(
            s.delete_group("nope").unwrap_err(),
            StateError::NotFound { .. }
        ));
        s.validate().unwrap();
    }

    #[test]
    fn host_from_subnet_or_lowest_free_number() {
        let mut s = lab();
        let spec = |name: &str, number, subnet: Option<&str>, last| HostSpec {
            name: name.into(),
            zone: "z1".into(),
            number,
            subnet: subnet.map(|p| p.parse().unwrap()),
            uplink: "eth0".into(),
            underlay_ip: Ipv4Addr::new(192, 168, 0, last),
            underlay_mac: mac(last),
        };
        assert_eq!(s.create_host(spec("h3", None, None, 3)).unwrap(), 3);
        assert_eq!(
            s.create_host(spec("h9", None, Some("10.1.9.0/24"), 9))
                .unwrap(),
            9
        );
        let e = s
            .create_host(spec("hx", None, Some("10.2.9.0/24"), 10))
            .unwrap_err();
        assert_eq!(e.field(), "hosts[hx].subnet");
        assert!(e.to_string().contains("outside zone z1"), "{e}");
        let e = s
            .create_host(spec("hy", Some(8), Some("10.1.9.0/24"), 11))
            .unwrap_err();
        assert_eq!(e.field(), "hosts[hy].number");
        s.validate().unwrap();
    }
}
