//! The host plan: what one host's maps must hold for a desired state, and
//! the difference between two plans (pure; no kernel involved).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use netfabric_common::{HostConfig, NextHop, OwnerPair, SYSTEM_OWNER, policy};

use crate::{conventions, state::State};

/// What the maps of one host hold (or must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPlan {
    /// `HOST_CONFIG` (without the present flag).
    pub host: Option<HostConfig>,
    /// `ZONE_BY_PREFIX`: top 16 bits → zone slot.
    pub zones: BTreeMap<u16, u32>,
    /// `ENDPOINTS`: (zone slot, low 16 bits) → (owner id, bloom of the
    /// owner's groups).
    pub endpoints: BTreeMap<(u32, u16), (u32, u32)>,
    /// `NEXT_HOPS`: (zone slot, host octet) → (MAC, underlay address).
    pub next_hops: BTreeMap<(u32, u8), UnderlayHop>,
    /// `ZONE_GATEWAYS`: zone slot → next hop towards that (other) zone.
    pub gateways: BTreeMap<u32, UnderlayHop>,
    /// `LOCAL_PORTS`: container octet → (ifindex, container MAC).
    pub local_ports: BTreeMap<u8, (u32, [u8; 6])>,
    /// `GROUP_PAIRS`: pair of different non-system owners → shared groups.
    pub group_pairs: BTreeMap<OwnerPair, u32>,
}

/// A next hop on the underlay as the plan sees it: the MAC frames to it
/// are sent to and the underlay address it stands for (a `NEXT_HOPS` or
/// `ZONE_GATEWAYS` value without its flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnderlayHop {
    pub mac: [u8; 6],
    pub underlay: Ipv4Addr,
}

impl From<NextHop> for UnderlayHop {
    fn from(h: NextHop) -> Self {
        UnderlayHop {
            mac: h.mac,
            underlay: Ipv4Addr::from(h.underlay_ip),
        }
    }
}

/// What the host knows at run time and the desired state does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtime {
    /// ifindex of the uplink.
    pub uplink_ifindex: u32,
    /// Ports with their TC programs attached: container octet → ifindex.
    pub ready_ports: BTreeMap<u8, u32>,
}

/// Why no plan could be made for a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("host {0:?} is not in the desired state")]
    UnknownHost(String),
    #[error("zone {zone:?} of host {host:?} is not in the desired state")]
    UnknownZone { host: String, zone: String },
}

impl HostPlan {
    /// The plan of host `host_name` for `state`.
    pub fn compute(state: &State, host_name: &str, rt: &Runtime) -> Result<HostPlan, PlanError> {
        let host = state
            .host(host_name)
            .ok_or_else(|| PlanError::UnknownHost(host_name.to_owned()))?;
        let zone = state
            .zone(&host.zone)
            .ok_or_else(|| PlanError::UnknownZone {
                host: host.name.clone(),
                zone: host.zone.clone(),
            })?;
        let mut plan = HostPlan {
            host: Some(HostConfig {
                zone_prefix: u32::from(zone.prefix.network()),
                zone_slot: zone.slot,
                host_octet: host.number,
                uplink_ifindex: rt.uplink_ifindex,
                uplink_mac: host.underlay_mac.0,
                gateway_mac: conventions::bridge_mac(host.subnet.network()).0,
                zone_router_mac: zone.gateway.map(|g| g.underlay_mac.0).unwrap_or_default(),
                flags: 0,
            }),
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
            if z.name != zone.name
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
            let Some(&slot) = slot_of.get(h.zone.as_str()) else {
                continue;
            };
            plan.next_hops.insert(
                (slot, h.number as u8),
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
        }));
        for c in &state.containers {
            let (Some(&slot), Some(&owner)) = (
                host_zone.get(c.host.as_str()),
                owner_id.get(c.owner.as_str()),
            ) else {
                continue;
            };
            plan.endpoints.insert(
                (slot, (u32::from(c.address) & 0xffff) as u16),
                (owner, blooms.of(owner)),
            );
            if c.host == host.name {
                let octet = c.address.octets()[3];
                if let Some(&ifindex) = rt.ready_ports.get(&octet) {
                    plan.local_ports
                        .insert(octet, (ifindex, conventions::container_mac(c.address).0));
                }
            }
        }
        for g in &state.groups {
            let ids: BTreeSet<u32> = g
                .members
                .iter()
                .filter_map(|m| owner_id.get(m.as_str()).copied())
                .filter(|&id| id != SYSTEM_OWNER)
                .collect();
            let ids: Vec<u32> = ids.into_iter().collect();
            for (i, &a) in ids.iter().enumerate() {
                for &b in &ids[i + 1..] {
                    *plan.group_pairs.entry(OwnerPair::new(a, b)).or_default() += 1;
                }
            }
        }
        Ok(plan)
    }

    /// The operations that turn `self` (what the maps hold) into `desired`.
    /// Removals that narrow access come first, additions last, so a change
    /// never opens more than either state allows.
    pub fn diff(&self, desired: &HostPlan) -> Vec<Op> {
        let mut ops = Vec::new();
        // Narrowing first: group pairs that go or lose groups, ports, endpoints.
        for (pair, n) in &self.group_pairs {
            match desired.group_pairs.get(pair) {
                None => ops.push(Op::RemoveGroupPair(*pair)),
                Some(m) if m < n => ops.push(Op::SetGroupPair(*pair, *m)),
                _ => {}
            }
        }
        for octet in self.local_ports.keys() {
            if !desired.local_ports.contains_key(octet) {
                ops.push(Op::ClearLocalPort(*octet));
            }
        }
        // An endpoint goes, or changes owner; a new groups bloom alone is
        // set below without clearing (its pairs are handled around it).
        for (key, (owner, _)) in &self.endpoints {
            if desired.endpoints.get(key).map(|e| e.0) != Some(*owner) {
                ops.push(Op::ClearEndpoint(key.0, key.1));
            }
        }
        for key in self.next_hops.keys() {
            if !desired.next_hops.contains_key(key) {
                ops.push(Op::ClearNextHop(key.0, key.1));
            }
        }
        for slot in self.gateways.keys() {
            if !desired.gateways.contains_key(slot) {
                ops.push(Op::ClearGateway(*slot));
            }
        }
        for (prefix, slot) in &self.zones {
            if desired.zones.get(prefix) != Some(slot) {
                ops.push(Op::ClearZone(*prefix));
            }
        }
        // Then what is new or changed.
        if let Some(h) = desired.host
            && self.host != desired.host
        {
            ops.push(Op::SetHost(h));
        }
        for (prefix, slot) in &desired.zones {
            if self.zones.get(prefix) != Some(slot) {
                ops.push(Op::SetZone(*prefix, *slot));
            }
        }
        for (key, hop) in &desired.next_hops {
            if self.next_hops.get(key) != Some(hop) {
                ops.push(Op::SetNextHop(key.0, key.1, *hop));
            }
        }
        for (slot, hop) in &desired.gateways {
            if self.gateways.get(slot) != Some(hop) {
                ops.push(Op::SetGateway(*slot, *hop));
            }
        }
        // After the narrowing removals of pairs, before the pairs added: a
        // bloom losing a group's bit no longer has that group's pairs, one
        // gaining a bit has it before the pairs that need it.
        for (key, &(owner, groups)) in &desired.endpoints {
            if self.endpoints.get(key) != Some(&(owner, groups)) {
                ops.push(Op::SetEndpoint(key.0, key.1, owner, groups));
            }
        }
        for (octet, port) in &desired.local_ports {
            if self.local_ports.get(octet) != Some(port) {
                ops.push(Op::SetLocalPort(*octet, port.0, port.1));
            }
        }
        for (pair, n) in &desired.group_pairs {
            match self.group_pairs.get(pair) {
                Some(m) if m >= n => {}
                _ => ops.push(Op::SetGroupPair(*pair, *n)),
            }
        }
        ops
    }

    /// Records one applied operation (so that a failed one is retried later).
    pub fn record(&mut self, op: &Op) {
        match *op {
            Op::SetHost(h) => self.host = Some(h),
            Op::SetZone(p, s) => {
                self.zones.insert(p, s);
            }
            Op::ClearZone(p) => {
                self.zones.remove(&p);
            }
            Op::SetEndpoint(s, low, o, g) => {
                self.endpoints.insert((s, low), (o, g));
            }
            Op::ClearEndpoint(s, low) => {
                self.endpoints.remove(&(s, low));
            }
            Op::SetNextHop(s, h, hop) => {
                self.next_hops.insert((s, h), hop);
            }
            Op::ClearNextHop(s, h) => {
                self.next_hops.remove(&(s, h));
            }
            Op::SetGateway(s, hop) => {
                self.gateways.insert(s, hop);
            }
            Op::ClearGateway(s) => {
                self.gateways.remove(&s);
            }
            Op::SetLocalPort(o, i, m) => {
                self.local_ports.insert(o, (i, m));
            }
            Op::ClearLocalPort(o) => {
                self.local_ports.remove(&o);
            }
            Op::SetGroupPair(p, n) => {
                self.group_pairs.insert(p, n);
            }
            Op::RemoveGroupPair(p) => {
                self.group_pairs.remove(&p);
            }
        }
    }
}

/// Every owner's groups bloom (`Endpoint::groups`), from each group's key
/// and members; the one computation the agent, the reference model and the
/// bench share.
#[derive(Debug, Clone, Default)]
pub struct Blooms(BTreeMap<u32, u32>);

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
        Blooms(out)
    }

    /// `owner`'s bloom (an owner in no group: known, no bit).
    pub fn of(&self, owner: u32) -> u32 {
        self.0
            .get(&owner)
            .copied()
            .unwrap_or_else(|| policy::groups_bloom([]))
    }
}

/// The key of a group for its bloom bit (`policy::group_bit`): FNV-1a of
/// its name, stable across agents and restarts.
pub fn group_key(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// One change to one map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    SetHost(HostConfig),
    SetZone(u16, u32),
    ClearZone(u16),
    /// (zone slot, low 16 bits, owner, groups bloom)
    SetEndpoint(u32, u16, u32, u32),
    ClearEndpoint(u32, u16),
    SetNextHop(u32, u8, UnderlayHop),
    ClearNextHop(u32, u8),
    SetGateway(u32, UnderlayHop),
    ClearGateway(u32),
    SetLocalPort(u8, u32, [u8; 6]),
    ClearLocalPort(u8),
    SetGroupPair(OwnerPair, u32),
    RemoveGroupPair(OwnerPair),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MacAddr, state::HostSpec};

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
        assert_eq!(p.local_ports.get(&1), Some(&(42, [2, 0, 10, 1, 1, 1])));
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
        // shrinks after his pairs are gone, without clearing the endpoint.
        assert_eq!(
            ops,
            vec![
                Op::RemoveGroupPair(OwnerPair::new(alice, bob)),
                Op::RemoveGroupPair(OwnerPair::new(bob, carol)),
                Op::SetEndpoint(0, 0x0201, bob, policy::groups_bloom([])),
            ]
        );
        // Removing one of two shared groups lowers the count; alice's bloom
        // (container a1) keeps only "ops".
        let mut s3 = s.clone();
        s3.delete_group("team").unwrap();
        let ops = before.diff(&HostPlan::compute(&s3, "h1", &rt()).unwrap());
        let ops_only = policy::groups_bloom([group_key("ops")]);
        let mut want = vec![Op::SetGroupPair(OwnerPair::new(alice, carol), 1)];
        if ops_only != before.endpoints[&(0, 0x0101)].1 {
            want.push(Op::SetEndpoint(0, 0x0101, alice, ops_only));
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
            after.endpoints[&(0, 0x0101)],
            (alice, bloom(&["team", "ops", "new"]))
        );
        assert_eq!(after.endpoints[&(0, 0x0201)], (bob, bloom(&["ops", "new"])));
        let ops = before.diff(&after);
        let first_pair = ops
            .iter()
            .position(|op| matches!(op, Op::SetGroupPair(..)))
            .expect("the alice-bob pair count grows");
        assert!(
            ops.iter()
                .rposition(|op| matches!(op, Op::SetEndpoint(..)))
                .is_none_or(|last| last < first_pair),
            "blooms first: {ops:?}"
        );
        assert!(!ops.iter().any(|op| matches!(op, Op::ClearEndpoint(..))));
        // Shared groups always overlap in the blooms.
        let (a, b) = (
            after.endpoints[&(0, 0x0101)].1,
            after.endpoints[&(0, 0x0201)].1,
        );
        assert!(policy::may_share_group(a, b));
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
            vec![Op::ClearLocalPort(1), Op::ClearEndpoint(0, 0x0101)]
        );
    }

    #[test]
    fn a_new_port_ifindex_replaces_the_entry() {
        let s = lab();
        let before = HostPlan::compute(&s, "h1", &rt()).unwrap();
        let mut r = rt();
        r.ready_ports.insert(1, 43);
        let ops = before.diff(&HostPlan::compute(&s, "h1", &r).unwrap());
        assert_eq!(ops, vec![Op::SetLocalPort(1, 43, [2, 0, 10, 1, 1, 1])]);
    }
}
