//! The desired state as stored: zones, hosts, owners, groups, containers,
//! security groups, services.
//!
//! Every collection is a list of named objects kept sorted by name (the
//! order is only cosmetic; nothing depends on it). References between objects
//! are by name: a host names its zone, a container its owner and host, a
//! group its member owners. Numbers the datapath needs (zone slot, owner id,
//! host number, container address) are stored too, so that they stay the same
//! for as long as the object exists.

use std::{collections::BTreeSet, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

pub use super::{
    names::{MAX_NAME_LEN, NAME_RULE, is_valid_interface_name, is_valid_name},
    prefix::{Ipv4Prefix, ParsePrefixError},
};
use crate::MacAddr;

/// Name of the reserved owner that may talk to every container (docs/concepts.md#the-system-owner).
pub const SYSTEM_OWNER_NAME: &str = "system";
/// Id of the reserved system owner (same number as the datapath's).
pub const SYSTEM_OWNER_ID: u32 = netfabric_common::SYSTEM_OWNER;
use crate::conventions::CONTAINER_OCTETS;
pub use crate::conventions::HOST_NUMBERS;

/// Containers a host can carry: `.1`–`.254` of its /24.
pub const MAX_CONTAINERS_PER_HOST: usize =
    (*CONTAINER_OCTETS.end() - *CONTAINER_OCTETS.start()) as usize + 1;
/// Zones a deployment can have (the datapath's zone slots).
pub const MAX_ZONES: u32 = netfabric_common::MAX_ZONES;
/// The whole desired state of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    #[serde(default)]
    pub zones: Vec<Zone>,
    #[serde(default)]
    pub hosts: Vec<Host>,
    pub owners: Vec<Owner>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub containers: Vec<Container>,
    /// What receiving owners narrowed (docs/security-groups.md); unique per
    /// (owner, via).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<super::security::SecurityGroup>,
    /// Services (docs/services.md); unique per (owner, name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<super::services::Service>,
    /// The id the next owner gets. Only ever grows, so that an owner id is
    /// never reused (a stale map entry can never grant a new owner access).
    pub next_owner_id: u32,
}

impl Default for State {
    /// An empty deployment: only the system owner.
    fn default() -> Self {
        State {
            zones: Vec::new(),
            hosts: Vec::new(),
            owners: vec![Owner {
                name: SYSTEM_OWNER_NAME.to_owned(),
                id: SYSTEM_OWNER_ID,
                egress: Egress::Allow,
            }],
            groups: Vec::new(),
            containers: Vec::new(),
            security_groups: Vec::new(),
            services: Vec::new(),
            next_owner_id: SYSTEM_OWNER_ID + 1,
        }
    }
}

/// A zone: one /16 (docs/address-plan.md#zones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    /// The zone's /16, e.g. `10.1.0.0/16`.
    pub prefix: Ipv4Prefix,
    /// The datapath's zone slot (`0..MAX_ZONES`), assigned at creation and
    /// kept for the zone's life so that every host indexes it the same way.
    pub slot: u32,
    /// Next hop for traffic to this zone from hosts of other zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Gateway>,
}

/// An underlay next hop: IPv4 address and MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub underlay_ip: Ipv4Addr,
    #[serde(with = "mac_serde")]
    pub underlay_mac: MacAddr,
}

/// A host: one /24 of its zone, `10.<z>.<number>.0/24`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    /// Name of the zone the host belongs to.
    pub zone: String,
    /// Host number 1..=254: the third octet of its /24.
    pub number: u32,
    /// The host's /24, derived from the zone prefix and the number (stored so
    /// that the file is readable on its own; validation checks that it
    /// matches).
    pub subnet: Ipv4Prefix,
    /// Name of the uplink interface (XDP attaches there).
    pub uplink: String,
    /// The uplink's underlay IPv4 address.
    pub underlay_ip: Ipv4Addr,
    /// The uplink's MAC: packets for this host's containers are sent to it.
    #[serde(with = "mac_serde")]
    pub underlay_mac: MacAddr,
}

/// An owner (a user of the PaaS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub name: String,
    /// Numeric id used by the datapath; never reused.
    pub id: u32,
    /// May its containers open connections to addresses outside every
    /// zone? Left out of the stored form when allowed (the default), so a
    /// state written before the switch existed reads the same.
    #[serde(default, skip_serializing_if = "Egress::is_allowed")]
    pub egress: Egress,
}

/// An owner's switch for connections to outside every zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    /// Its containers may open connections to outside (NATed to their
    /// host's underlay address); only the replies come back.
    #[default]
    Allow,
    /// Its containers' packets to outside are dropped (`egress_denied`);
    /// the host's resolver stays reachable.
    Deny,
}

impl Egress {
    pub fn is_allowed(&self) -> bool {
        *self == Egress::Allow
    }

    pub fn label(self) -> &'static str {
        match self {
            Egress::Allow => "allow",
            Egress::Deny => "deny",
        }
    }
}

/// A group: a named set of owners whose containers may talk to each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    /// Names of the member owners.
    #[serde(default)]
    pub members: BTreeSet<String>,
}

/// A container and its persistent address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub name: String,
    /// Name of the owner.
    pub owner: String,
    /// Name of the host it runs on.
    pub host: String,
    /// Its address, `.1`–`.254` of the host's /24; kept until deletion.
    pub address: Ipv4Addr,
}

impl State {
    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.name == name)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn owner(&self, name: &str) -> Option<&Owner> {
        self.owners.iter().find(|o| o.name == name)
    }

    pub fn owner_by_id(&self, id: u32) -> Option<&Owner> {
        self.owners.iter().find(|o| o.id == id)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The containers placed on host `host`.
    pub fn containers_on<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Container> + 'a {
        self.containers.iter().filter(move |c| c.host == host)
    }

    /// Sorts every list by name (the canonical order of the state file).
    pub fn normalize(&mut self) {
        self.zones.sort_by(|a, b| a.name.cmp(&b.name));
        self.hosts.sort_by(|a, b| a.name.cmp(&b.name));
        self.owners.sort_by(|a, b| a.name.cmp(&b.name));
        self.groups.sort_by(|a, b| a.name.cmp(&b.name));
        self.containers.sort_by(|a, b| a.name.cmp(&b.name));
        self.security_groups
            .sort_by(|a, b| (&a.owner, &a.via).cmp(&(&b.owner, &b.via)));
        self.services
            .sort_by(|a, b| (&a.owner, &a.name).cmp(&(&b.owner, &b.name)));
    }
}

/// The /24 of host number `number` in a zone whose /16 is `zone_prefix`.
pub fn host_subnet(zone_prefix: Ipv4Prefix, number: u32) -> Ipv4Prefix {
    let [a, b, ..] = zone_prefix.addr.octets();
    Ipv4Prefix {
        addr: Ipv4Addr::new(a, b, (number & 0xff) as u8, 0),
        len: 24,
    }
}

/// MACs in the state file as `"02:00:0a:01:01:05"`.
pub mod mac_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::MacAddr;

    pub fn serialize<S: Serializer>(mac: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(mac)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The pairs of different non-system owners among `members` (owner ids):
/// the pairs a group makes share a group (the agent counts them into
/// `GROUP_PAIRS`, the DNS asks them for visibility).
pub fn member_pairs(members: impl IntoIterator<Item = u32>) -> Vec<netfabric_common::OwnerPair> {
    let ids: BTreeSet<u32> = members
        .into_iter()
        .filter(|&id| id != netfabric_common::SYSTEM_OWNER)
        .collect();
    let ids: Vec<u32> = ids.into_iter().collect();
    let mut pairs = Vec::new();
    for (i, &a) in ids.iter().enumerate() {
        for &b in &ids[i + 1..] {
            pairs.push(netfabric_common::OwnerPair::new(a, b));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_state_has_the_system_owner() {
        let s = State::default();
        assert_eq!(
            s.owner(SYSTEM_OWNER_NAME).map(|o| o.id),
            Some(SYSTEM_OWNER_ID)
        );
        assert_eq!(s.next_owner_id, 2);
    }
}
