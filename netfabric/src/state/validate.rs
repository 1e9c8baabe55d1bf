//! Whole-state validation: the rules of docs/store-and-agent.md#validation.
//!
//! [`State::validate`] returns the first broken rule, checked in this order:
//! names (well-formed, unique in their list), zones, owners, groups, hosts,
//! containers, services. A store validates the whole new state before committing any
//! change, so a state that is stored is always valid.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
};

use super::{
    error::{StateError, path},
    model::{
        HOST_NUMBERS, Host, Ipv4Prefix, MAX_CONTAINERS_PER_HOST, MAX_ZONES, SYSTEM_OWNER_ID,
        SYSTEM_OWNER_NAME, State, host_subnet, is_valid_interface_name, is_valid_name,
    },
    security::{Via, merge_rules},
};
use crate::MacAddr;
use netfabric_common::conntrack::PORT_SCOPE_RULES;

/// The ranges a zone's /16 must lie in: RFC 1918 private space and RFC 6598
/// shared space. Everything else has a meaning a container address must not
/// take over: 0.0.0.0/8 ("this network"), 127.0.0.0/8 (loopback),
/// 169.254.0.0/16 (link-local: the containers' gateway is 169.254.1.1),
/// 224.0.0.0/4 (multicast), 240.0.0.0/4 (reserved, broadcast), and public
/// space is routed to the internet by the hosts' stacks.
pub const ZONE_RANGES: [Ipv4Prefix; 4] = [
    Ipv4Prefix {
        addr: Ipv4Addr::new(10, 0, 0, 0),
        len: 8,
    },
    Ipv4Prefix {
        addr: Ipv4Addr::new(100, 64, 0, 0),
        len: 10,
    },
    Ipv4Prefix {
        addr: Ipv4Addr::new(172, 16, 0, 0),
        len: 12,
    },
    Ipv4Prefix {
        addr: Ipv4Addr::new(192, 168, 0, 0),
        len: 16,
    },
];

fn zone_ranges_text() -> String {
    ZONE_RANGES
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl State {
    /// Checks every rule; `Ok` means the state can be stored and applied.
    pub fn validate(&self) -> Result<(), StateError> {
        self.validate_names()?;
        self.validate_zones()?;
        self.validate_owners()?;
        self.validate_groups()?;
        self.validate_security_groups()?;
        self.validate_hosts()?;
        self.validate_containers()?;
        self.validate_services()
    }

    fn validate_names(&self) -> Result<(), StateError> {
        fn check<'a>(
            list: &str,
            kind: &'static str,
            names: impl Iterator<Item = &'a str>,
        ) -> Result<(), StateError> {
            let mut seen = HashSet::new();
            for name in names {
                if !is_valid_name(name) {
                    return Err(StateError::MalformedName {
                        field: path(list, name, "name"),
                        value: name.to_owned(),
                    });
                }
                if !seen.insert(name) {
                    return Err(StateError::DuplicateName {
                        field: path(list, name, "name"),
                        kind,
                        name: name.to_owned(),
                    });
                }
            }
            Ok(())
        }
        check("zones", "zone", self.zones.iter().map(|z| z.name.as_str()))?;
        check("hosts", "host", self.hosts.iter().map(|h| h.name.as_str()))?;
        check(
            "owners",
            "owner",
            self.owners.iter().map(|o| o.name.as_str()),
        )?;
        check(
            "groups",
            "group",
            self.groups.iter().map(|g| g.name.as_str()),
        )?;
        check(
            "containers",
            "container",
            self.containers.iter().map(|c| c.name.as_str()),
        )
    }

    fn validate_zones(&self) -> Result<(), StateError> {
        if self.zones.len() > MAX_ZONES as usize {
            return Err(StateError::invalid(
                "zones",
                format!("{} zones, at most {MAX_ZONES}", self.zones.len()),
            ));
        }
        let mut slots: HashMap<u32, &str> = HashMap::new();
        for (i, zone) in self.zones.iter().enumerate() {
            let field = |leaf: &str| path("zones", &zone.name, leaf);
            let prefix = zone.prefix;
            if prefix.len != 16 {
                return Err(StateError::invalid(
                    field("prefix"),
                    format!("{prefix} is not a /16 (a zone is one /16, e.g. 10.1.0.0/16)"),
                ));
            }
            if !prefix.is_canonical() {
                return Err(StateError::invalid(
                    field("prefix"),
                    format!(
                        "{prefix} has host bits set (did you mean {}/16?)",
                        prefix.network()
                    ),
                ));
            }
            if !ZONE_RANGES.iter().any(|r| r.contains_prefix(prefix)) {
                return Err(StateError::invalid(
                    field("prefix"),
                    format!(
                        "{prefix} is not in a range zones may use: {} (private and shared \
                         address space; not this host, link-local, multicast, reserved or \
                         public addresses)",
                        zone_ranges_text()
                    ),
                ));
            }
            if let Some(other) = self.zones[..i].iter().find(|o| o.prefix.overlaps(prefix)) {
                return Err(StateError::OverlappingZones {
                    field: field("prefix"),
                    prefix,
                    other: other.name.clone(),
                    other_prefix: other.prefix,
                });
            }
            if zone.slot >= MAX_ZONES {
                return Err(StateError::invalid(
                    field("slot"),
                    format!("{} is outside 0..{MAX_ZONES}", zone.slot),
                ));
            }
            if let Some(other) = slots.insert(zone.slot, &zone.name) {
                return Err(StateError::Duplicate {
                    field: field("slot"),
                    value: zone.slot.to_string(),
                    other: format!("zone {other}"),
                });
            }
            if let Some(gw) = zone.gateway {
                self.check_underlay_ip(&field("gateway.underlay_ip"), gw.underlay_ip)?;
                check_unicast_mac(&field("gateway.underlay_mac"), gw.underlay_mac)?;
            }
        }
        Ok(())
    }

    fn validate_owners(&self) -> Result<(), StateError> {
        match self.owner(SYSTEM_OWNER_NAME) {
            Some(o) if o.id == SYSTEM_OWNER_ID => {}
            Some(o) => {
                return Err(StateError::invalid(
                    path("owners", &o.name, "id"),
                    format!(
                        "{} must be {SYSTEM_OWNER_ID}: the system owner's id is reserved",
                        o.id
                    ),
                ));
            }
            None => {
                return Err(StateError::invalid(
                    "owners",
                    format!(
                        "the reserved owner {SYSTEM_OWNER_NAME:?} (id {SYSTEM_OWNER_ID}) is missing"
                    ),
                ));
            }
        }
        let mut ids: HashMap<u32, &str> = HashMap::new();
        for owner in &self.owners {
            let field = path("owners", &owner.name, "id");
            if owner.id == netfabric_common::NO_OWNER {
                return Err(StateError::invalid(field, "0 is reserved for \"no owner\""));
            }
            if owner.id == SYSTEM_OWNER_ID && owner.name != SYSTEM_OWNER_NAME {
                return Err(StateError::invalid(
                    field,
                    format!("{SYSTEM_OWNER_ID} is reserved for the owner {SYSTEM_OWNER_NAME:?}"),
                ));
            }
            if owner.id >= self.next_owner_id {
                return Err(StateError::invalid(
                    field,
                    format!(
                        "{} is not below next_owner_id {} (ids are handed out in order and never reused)",
                        owner.id, self.next_owner_id
                    ),
                ));
            }
            if let Some(other) = ids.insert(owner.id, &owner.name) {
                return Err(StateError::Duplicate {
                    field,
                    value: owner.id.to_string(),
                    other: format!("owner {other}"),
                });
            }
        }
        Ok(())
    }

    fn validate_groups(&self) -> Result<(), StateError> {
        let owners: HashSet<&str> = self.owners.iter().map(|o| o.name.as_str()).collect();
        for group in &self.groups {
            for member in &group.members {
                if !owners.contains(member.as_str()) {
                    return Err(StateError::UnknownReference {
                        field: path("groups", &group.name, "members"),
                        kind: "owner",
                        name: member.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Each security group: its owner exists and is not the system owner,
    /// its group exists, once per (owner, via), at most `PORT_SCOPE_RULES`
    /// rules after merging; then the `PORT_SCOPES` entries they imply fit
    /// ([`State::port_scopes`]). A security group whose owner left the
    /// group is kept and narrows nothing until the owner is back.
    fn validate_security_groups(&self) -> Result<(), StateError> {
        let owners: HashSet<&str> = self.owners.iter().map(|o| o.name.as_str()).collect();
        let groups: HashSet<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
        let mut seen = HashSet::new();
        for sg in &self.security_groups {
            if !owners.contains(sg.owner.as_str()) {
                return Err(StateError::UnknownReference {
                    field: sg.field("owner"),
                    kind: "owner",
                    name: sg.owner.clone(),
                });
            }
            if sg.owner == SYSTEM_OWNER_NAME {
                return Err(StateError::invalid(
                    sg.field("owner"),
                    "the system owner is never narrowed (load balancers and health checks \
                     reach every container; the outside world reaches only its containers)",
                ));
            }
            if let Via::Group(group) = &sg.via
                && !groups.contains(group.as_str())
            {
                return Err(StateError::UnknownReference {
                    field: sg.field("via"),
                    kind: "group",
                    name: group.clone(),
                });
            }
            if !seen.insert((&sg.owner, &sg.via)) {
                return Err(StateError::DuplicateName {
                    field: sg.field(""),
                    kind: "security group",
                    name: sg.id(),
                });
            }
            let merged = merge_rules(sg.allow.iter().copied());
            if merged.len() > PORT_SCOPE_RULES {
                return Err(StateError::invalid(
                    sg.field("allow"),
                    format!(
                        "{} rules after merging overlapping and adjacent ranges; at most \
                         {PORT_SCOPE_RULES} (use port ranges)",
                        merged.len()
                    ),
                ));
            }
        }
        self.port_scopes().map(|_| ())
    }

    fn validate_hosts(&self) -> Result<(), StateError> {
        let mut numbers: HashMap<(&str, u32), &str> = HashMap::new();
        let mut ips: HashMap<Ipv4Addr, &str> = HashMap::new();
        let mut macs: HashMap<MacAddr, &str> = HashMap::new();
        for host in &self.hosts {
            let field = |leaf: &str| path("hosts", &host.name, leaf);
            let Some(zone) = self.zone(&host.zone) else {
                return Err(StateError::UnknownReference {
                    field: field("zone"),
                    kind: "zone",
                    name: host.zone.clone(),
                });
            };
            if !zone.prefix.contains_prefix(host.subnet) {
                return Err(StateError::SubnetOutsideZone {
                    field: field("subnet"),
                    subnet: host.subnet,
                    zone: zone.name.clone(),
                    zone_prefix: zone.prefix,
                });
            }
            if !HOST_NUMBERS.contains(&host.number) {
                return Err(StateError::HostNumberOutOfRange {
                    field: field("number"),
                    value: host.number,
                });
            }
            let expected = host_subnet(zone.prefix, host.number);
            if host.subnet != expected {
                return Err(StateError::invalid(
                    field("subnet"),
                    format!(
                        "{} does not match host number {} in zone {} (expected {expected})",
                        host.subnet, host.number, zone.name
                    ),
                ));
            }
            if let Some(other) = numbers.insert((&host.zone, host.number), &host.name) {
                return Err(StateError::Duplicate {
                    field: field("number"),
                    value: host.number.to_string(),
                    other: format!("host {other} in zone {}", host.zone),
                });
            }
            if !is_valid_interface_name(&host.uplink) {
                return Err(StateError::invalid(
                    field("uplink"),
                    format!(
                        "{:?} is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)",
                        host.uplink
                    ),
                ));
            }
            self.check_underlay_ip(&field("underlay_ip"), host.underlay_ip)?;
            if let Some(other) = ips.insert(host.underlay_ip, &host.name) {
                return Err(StateError::Duplicate {
                    field: field("underlay_ip"),
                    value: host.underlay_ip.to_string(),
                    other: format!("host {other}"),
                });
            }
            check_unicast_mac(&field("underlay_mac"), host.underlay_mac)?;
            if let Some(other) = macs.insert(host.underlay_mac, &host.name) {
                return Err(StateError::Duplicate {
                    field: field("underlay_mac"),
                    value: host.underlay_mac.to_string(),
                    other: format!("host {other}"),
                });
            }
        }
        Ok(())
    }

    fn validate_containers(&self) -> Result<(), StateError> {
        // Indexes, so that a full zone (254 x 254 containers, 10,000 owners)
        // validates in linear time.
        let owners: HashSet<&str> = self.owners.iter().map(|o| o.name.as_str()).collect();
        let hosts: HashMap<&str, &Host> = self.hosts.iter().map(|h| (h.name.as_str(), h)).collect();
        let mut per_host: HashMap<&str, usize> = HashMap::new();
        let mut addresses: HashMap<Ipv4Addr, &str> = HashMap::new();
        for container in &self.containers {
            let field = |leaf: &str| path("containers", &container.name, leaf);
            if !owners.contains(container.owner.as_str()) {
                return Err(StateError::UnknownReference {
                    field: field("owner"),
                    kind: "owner",
                    name: container.owner.clone(),
                });
            }
            let Some(host) = hosts.get(container.host.as_str()) else {
                return Err(StateError::UnknownReference {
                    field: field("host"),
                    kind: "host",
                    name: container.host.clone(),
                });
            };
            let count = per_host.entry(&host.name).or_default();
            *count += 1;
            if *count > MAX_CONTAINERS_PER_HOST {
                return Err(StateError::HostFull {
                    field: field("host"),
                    host: host.name.clone(),
                    subnet: host.subnet,
                });
            }
            let address = container.address;
            check_address_on_host(&field("address"), address, host)?;
            if let Some(other) = addresses.insert(address, &container.name) {
                return Err(StateError::Duplicate {
                    field: field("address"),
                    value: address.to_string(),
                    other: format!("container {other}"),
                });
            }
        }
        Ok(())
    }

    /// An underlay address must be a unicast address outside every zone
    /// (otherwise the datapath would take it for a container).
    fn check_underlay_ip(&self, field: &str, ip: Ipv4Addr) -> Result<(), StateError> {
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(StateError::invalid(
                field,
                format!("{ip} is not a unicast address"),
            ));
        }
        if let Some(zone) = self.zones.iter().find(|z| z.prefix.contains(ip)) {
            return Err(StateError::invalid(
                field,
                format!(
                    "{ip} lies inside zone {} ({}); underlay addresses must be outside every zone",
                    zone.name, zone.prefix
                ),
            ));
        }
        Ok(())
    }
}

/// A container address must be one of `.1`–`.254` of its host's /24.
pub(super) fn check_address_on_host(
    field: &str,
    address: Ipv4Addr,
    host: &Host,
) -> Result<(), StateError> {
    if !host.subnet.contains(address) {
        return Err(StateError::AddressOutsideHost {
            field: field.to_owned(),
            address,
            host: host.name.clone(),
            subnet: host.subnet,
        });
    }
    let which = if address == host.subnet.network() {
        Some("network")
    } else if address == host.subnet.broadcast() {
        Some("broadcast")
    } else {
        None
    };
    if let Some(which) = which {
        return Err(StateError::ReservedAddress {
            field: field.to_owned(),
            address,
            which,
            subnet: host.subnet,
        });
    }
    Ok(())
}

fn check_unicast_mac(field: &str, mac: MacAddr) -> Result<(), StateError> {
    if mac.0 == [0; 6] || mac.0[0] & 1 == 1 {
        return Err(StateError::invalid(
            field,
            format!("{mac} is not a unicast MAC address"),
        ));
    }
    Ok(())
}
