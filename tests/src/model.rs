//! A userspace reference model of the datapath, written from docs/address-plan.md, docs/policy.md and docs/datapath.md#decision-order and
//! the order of checks documented at the top of each program, plus the
//! harness that runs a packet through the real programs and observes what
//! they did (action, output bytes, the counter that moved, drop events).
//!
//! The model does not call into the eBPF code or `netfabric_common::policy`:
//! it parses packets itself, decides policy from the group *memberships*
//! (not from the owner-pair table), and derives the owner-pair table the way
//! an agent would (reference counted), so that the datapath's view of groups
//! is checked too.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use aya::maps::{MapData, RingBuf};
use netfabric::agent::{
    self, HostPlan, Op,
    plan::{
        Blooms, Change, EndpointKey, Entries, NextHopKey, OwnerGroupLists, OwnerGroupsMap,
        PortEntry, PortScopes, UnderlayHop,
    },
};
use netfabric::datapath::{
    CounterSnapshot, Datapath, PROG_FROM_CONTAINER, PROG_FROM_UPLINK, PROG_FROM_UPLINK_TC,
    PROG_TO_CONTAINER,
    maps::{
        DesiredMap as _,
        service_ports::ServicePorts,
        service_tables::{ServiceMembers, ServiceTables},
    },
};
use netfabric_common::{
    Direction, DropEvent, DropReason, Endpoint, Forward, HostConfig, NO_OWNER, OwnerPair,
    SYSTEM_OWNER, Verdict,
    conntrack::{
        ConnKey, ConnState, PORT_SCOPE_RULES, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PortRule,
        PortScope, ScopedPair,
    },
    policy::{self, INGRESS_SCOPED, SERVICE_BACKEND},
    service::{
        FLOW_FORWARD, FLOW_REVERSE, HEALTH_PROBE_MARK, MAGLEV_SLOTS, MAX_BACKENDS, NO_MEMBER,
        ServicePort, ServicePortKey, ServiceTable, slot_of,
    },
};

use crate::packets::{self, ETH_HLEN, Endpoint4, Mac};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

/// Which program a packet goes through, and for TC on which port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prog {
    /// XDP on the uplink: the early-drop prefilter. It drops (and counts)
    /// what the uplink's judgement drops and passes everything else
    /// untouched and uncounted.
    Uplink,
    /// TC ingress on the uplink (run with this ifindex): the whole
    /// judgement, counted, and delivery into a container.
    UplinkTc(u32),
    /// TC ingress of the port with this ifindex.
    FromContainer(u32),
    /// TC egress of the port with this ifindex.
    ToContainer(u32),
}

impl Prog {
    pub fn direction(self) -> Direction {
        match self {
            Prog::Uplink | Prog::UplinkTc(_) => Direction::FromUplink,
            Prog::FromContainer(_) => Direction::FromContainer,
            Prog::ToContainer(_) => Direction::ToContainer,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Prog::Uplink => PROG_FROM_UPLINK,
            Prog::UplinkTc(_) => PROG_FROM_UPLINK_TC,
            Prog::FromContainer(_) => PROG_FROM_CONTAINER,
            Prog::ToContainer(_) => PROG_TO_CONTAINER,
        }
    }

    pub fn drop_action(self) -> u32 {
        match self {
            Prog::Uplink => XDP_DROP,
            _ => TC_ACT_SHOT,
        }
    }
}

/// What the output frame must look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Byte for byte the input.
    Untouched,
    /// Routed one hop: these MACs (src, dst), TTL - 1, valid checksum.
    Routed { src: Mac, dst: Mac },
    /// Only the destination MAC changed (handed to the host stack).
    DstMac(Mac),
    /// A service translation: source and destination (address, port) of
    /// the output; routed one hop with these MACs (src, dst) when
    /// forwarded, not routed when dropped after the translation. Both
    /// checksums recomputed independently. A drop's event names the
    /// translated addresses (what the judgement saw).
    Nat {
        routed: Option<(Mac, Mac)>,
        src: Endpoint4,
        dst: Endpoint4,
    },
}

/// The predicted (or expected) result of one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prediction {
    pub action: u32,
    pub verdict: Verdict,
    pub output: Expect,
}

impl Prediction {
    pub fn drop(prog: Prog, reason: DropReason) -> Self {
        Prediction {
            action: prog.drop_action(),
            verdict: Verdict::Dropped(reason),
            output: Expect::Untouched,
        }
    }

    pub fn forward(action: u32, forward: Forward, output: Expect) -> Self {
        Prediction {
            action,
            verdict: Verdict::Forwarded(forward),
            output,
        }
    }

    /// The uplink's judgement (as `from_uplink_tc` acts on it) as the XDP
    /// prefilter acts on it: a drop is the same drop; anything else passes
    /// untouched, for the TC program to count and deliver.
    pub fn at_prefilter(self) -> Self {
        match self.verdict {
            Verdict::Dropped(_) => Prediction {
                action: XDP_DROP,
                ..self
            },
            Verdict::Forwarded(_) => Prediction {
                action: XDP_PASS,
                verdict: self.verdict,
                output: Expect::Untouched,
            },
        }
    }
}

// ---- the model's state ----------------------------------------------------------

/// This host's identity.
#[derive(Clone, Debug)]
pub struct HostModel {
    /// Any address of the host's zone (only the /16 counts).
    pub zone_prefix: Ipv4Addr,
    pub zone_slot: u32,
    pub host_octet: u8,
    pub uplink_ifindex: u32,
    pub uplink_mac: Mac,
    pub gateway_mac: Mac,
    /// All zeros: no zone router configured.
    pub router_mac: Mac,
}

#[derive(Clone, Debug)]
pub struct ZoneModel {
    pub prefix: Ipv4Addr,
    /// The local zone's router towards this zone.
    pub gateway: Option<Mac>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortModel {
    pub ifindex: u32,
    pub mac: Mac,
}

/// How a sender reaches the owner a security group narrows
/// (docs/security-groups.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScopeVia {
    /// The owner's own containers.
    Own,
    /// Owners sharing this group (id) with it.
    Group(u32),
}

/// One rule of a security group: IP protocol and an inclusive range of
/// destination ports (ignored for ICMP, which opens every ICMP message).
pub type ScopeRule = (u8, u16, u16);

/// One change of the derived owner-pair table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairChange {
    Set(u32, u32, u32),
    Remove(u32, u32),
}

#[derive(Clone, Debug, Default)]
pub struct Model {
    /// `None`: the agent has not configured the host yet.
    pub host: Option<HostModel>,
    pub zones: BTreeMap<u32, ZoneModel>,
    /// Underlay MAC of host `octet` of zone `slot`.
    pub next_hops: BTreeMap<(u32, u8), Mac>,
    /// Owner of every container address (all zones).
    pub owners: BTreeMap<Ipv4Addr, u32>,
    /// Ports of this host's containers, by container octet.
    pub ports: BTreeMap<u8, PortModel>,
    /// Group id → member owners.
    pub groups: BTreeMap<u32, BTreeSet<u32>>,
    /// Container addresses whose `ENDPOINTS` entry leaves the groups bloom
    /// unknown (0: every pair is looked up, as maps written before the bloom
    /// existed); every other entry carries its owner's bloom.
    pub unknown_blooms: BTreeSet<Ipv4Addr>,
    /// Owners left out of `OWNER_GROUPS` (judged by `GROUP_PAIRS`, as the
    /// agent leaves owners it cannot list exactly); every other owner in a
    /// group has its exact list, as `agent::plan::OwnerGroupLists` makes it.
    pub unlisted_owners: BTreeSet<u32>,
    /// What the model last wrote into `OWNER_GROUPS` (slot → list), so
    /// that a change writes only the slots it moves.
    lists_written: Entries<OwnerGroupsMap>,
    /// Derived: (low, high) → number of groups the two owners share.
    pairs: BTreeMap<(u32, u32), u32>,
    /// Security groups: (receiving owner, way in) → what stays open.
    pub security_groups: BTreeMap<(u32, ScopeVia), Vec<ScopeRule>>,
    /// What the model last wrote into `PORT_SCOPES`.
    scopes_written: Entries<PortScopes>,
    /// Owners denied egress: their endpoints carry `EGRESS_DENIED` (an
    /// endpoint in `unknown_blooms` carries no flag, so it may egress).
    pub egress_denied: BTreeSet<u32>,
    /// The connections the programs track, as the model follows them.
    pub connections: BTreeMap<ConnKey, ModelConn>,
    /// Services: every VIP port (`SERVICE_PORTS`).
    pub service_ports: BTreeMap<ServicePortKey, ServicePort>,
    /// Services: members and healthy ones by service id, and the lookup
    /// table the agent computes from them (`SERVICE_TABLES`).
    pub service_tables: BTreeMap<u32, (ServiceMembers, Box<ServiceTable>)>,
    /// The service flows the programs translate, as the model follows them.
    pub service_flows: BTreeMap<ConnKey, ModelFlow>,
    /// Packets and bytes balanced per (service, backend).
    pub service_counters: BTreeMap<(u32, u32), (u64, u64)>,
}

/// One service flow entry, as the model follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelFlow {
    /// Forward: the backend and its port; reverse: the VIP and service port.
    pub addr: Ipv4Addr,
    pub port: u16,
    /// `FLOW_FORWARD` or `FLOW_REVERSE`.
    pub kind: u8,
    pub member: u8,
    pub service: u32,
    /// Idle past its timeout (the test aged it in the map too).
    pub expired: bool,
}

/// One tracked connection, as the model follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelConn {
    pub src_owner: u32,
    pub dst_owner: u32,
    pub state: ConnState,
    pub replied: bool,
    /// Idle past its timeout (the test aged it in the map too).
    pub expired: bool,
}

/// What a packet the programs passed does to the connection table.
#[derive(Clone, Copy, Debug)]
enum Effect {
    /// A packet of a tracked kind in its opening direction.
    Track {
        key: ConnKey,
        l4: L4View,
        src_owner: u32,
        dst_owner: u32,
    },
    /// A reply that passed because of the entry of `key.reversed()`.
    Reply { key: ConnKey, l4: L4View },
    /// A balanced packet that was forwarded: its flow's entries (written
    /// when `write`), counted for its backend.
    Flow {
        key: ConnKey,
        flow: ModelFlow,
        write: bool,
        bytes: u64,
    },
}

fn norm(a: u32, b: u32) -> (u32, u32) {
    if a < b { (a, b) } else { (b, a) }
}

/// Where an address sits in the address plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Outside,
    Vacant { slot: u32 },
    Container { slot: u32, owner: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Party {
    Owner(u32),
    Outside,
}

impl Model {
    /// Add `owner` to `group`; returns the pair-table changes an agent makes.
    pub fn add_member(&mut self, group: u32, owner: u32) -> Vec<PairChange> {
        let members = self.groups.entry(group).or_default();
        if !members.insert(owner) {
            return Vec::new();
        }
        let others: Vec<u32> = members.iter().copied().filter(|o| *o != owner).collect();
        let mut changes = Vec::new();
        for o in others {
            let key = norm(owner, o);
            let n = self.pairs.entry(key).or_insert(0);
            *n += 1;
            changes.push(PairChange::Set(key.0, key.1, *n));
        }
        changes
    }

    /// Remove `owner` from `group`; returns the pair-table changes.
    pub fn remove_member(&mut self, group: u32, owner: u32) -> Vec<PairChange> {
        let Some(members) = self.groups.get_mut(&group) else {
            return Vec::new();
        };
        if !members.remove(&owner) {
            return Vec::new();
        }
        let others: Vec<u32> = members.iter().copied().collect();
        let mut changes = Vec::new();
        for o in others {
            let key = norm(owner, o);
            let n = self.pairs.get_mut(&key).expect("pair of two members");
            *n -= 1;
            if *n == 0 {
                self.pairs.remove(&key);
                changes.push(PairChange::Remove(key.0, key.1));
            } else {
                changes.push(PairChange::Set(key.0, key.1, *n));
            }
        }
        changes
    }

    /// `Endpoint::groups` of `owner`, as the agent computes it (group ids
    /// are the bloom keys).
    pub fn groups_bloom(&self, owner: u32) -> u32 {
        let bloom =
            Blooms::of_groups(self.groups.iter().map(|(g, m)| (*g, m.iter().copied()))).of(owner);
        if self.scoped(owner) {
            bloom | INGRESS_SCOPED
        } else {
            bloom
        }
    }

    /// Has `owner` security groups (its endpoints carry `INGRESS_SCOPED`)?
    pub fn scoped(&self, owner: u32) -> bool {
        self.security_groups.keys().any(|(r, _)| *r == owner)
    }

    /// What `sender` may still open towards `receiver` (`None`: not
    /// narrowed). The system owner is never narrowed; an owner's own
    /// containers only by a security group via own; another owner only if
    /// every group it shares with the receiver is narrowed, then by the
    /// union of their rules.
    pub fn scope_of(&self, receiver: u32, sender: u32) -> Option<Vec<ScopeRule>> {
        if sender == SYSTEM_OWNER || !self.scoped(receiver) {
            return None;
        }
        if sender == receiver {
            return self
                .security_groups
                .get(&(receiver, ScopeVia::Own))
                .cloned();
        }
        let shared: Vec<u32> = self
            .groups
            .iter()
            .filter(|(_, m)| m.contains(&receiver) && m.contains(&sender))
            .map(|(g, _)| *g)
            .collect();
        if shared.is_empty() {
            return None;
        }
        let mut rules = Vec::new();
        for g in shared {
            rules.extend(
                self.security_groups
                    .get(&(receiver, ScopeVia::Group(g)))?
                    .iter()
                    .copied(),
            );
        }
        rules.sort();
        rules.dedup();
        Some(rules)
    }

    /// The `PORT_SCOPES` entries of the model's security groups.
    pub fn scope_entries(&self) -> Entries<PortScopes> {
        let receivers: BTreeSet<u32> = self.security_groups.keys().map(|(r, _)| *r).collect();
        let mut senders: BTreeSet<u32> = self.groups.values().flatten().copied().collect();
        senders.extend(receivers.iter().copied());
        let mut out = Entries::<PortScopes>::new();
        for &receiver in &receivers {
            for &sender in &senders {
                let Some(rules) = self.scope_of(receiver, sender) else {
                    continue;
                };
                assert!(
                    rules.len() <= PORT_SCOPE_RULES,
                    "the model's scopes must fit an entry: {rules:?}"
                );
                let mut scope = PortScope {
                    count: rules.len() as u32,
                    ..PortScope::default()
                };
                for (slot, &(protocol, first_port, last_port)) in scope.rules.iter_mut().zip(&rules)
                {
                    *slot = PortRule {
                        first_port,
                        last_port,
                        protocol,
                        _pad: [0; 3],
                    };
                }
                out.insert(ScopedPair { receiver, sender }, scope);
            }
        }
        out
    }

    /// Make `PORT_SCOPES` hold [`Self::scope_entries`] through the agent's
    /// plan diff and writer, touching only the pairs that differ from what
    /// the model wrote before.
    pub fn write_scopes(&mut self, dp: &mut Datapath) {
        let scopes = |port_scopes| HostPlan {
            port_scopes,
            ..HostPlan::default()
        };
        let want = self.scope_entries();
        let ops = scopes(std::mem::take(&mut self.scopes_written)).diff(&scopes(want.clone()));
        for op in ops {
            agent::apply(dp, &op).unwrap_or_else(|e| panic!("applying {op:?}: {e}"));
        }
        self.scopes_written = want;
    }

    /// Sets (`Some`) or deletes `receiver`'s security group via `via`, and
    /// writes it as the agent would: the scopes first, then the receiver's
    /// endpoints (their `INGRESS_SCOPED` flag).
    pub fn set_security_group(
        &mut self,
        dp: &mut Datapath,
        receiver: u32,
        via: ScopeVia,
        rules: Option<Vec<ScopeRule>>,
    ) {
        match rules {
            Some(rules) => self.security_groups.insert((receiver, via), rules),
            None => self.security_groups.remove(&(receiver, via)),
        };
        self.write_scopes(dp);
        self.sync_blooms(dp, receiver);
    }

    /// The `ENDPOINTS` entry of container `addr`: its owner and the
    /// owner's groups bloom and flags, or an unknown bloom (0, no flags)
    /// for the addresses in `unknown_blooms`.
    fn endpoint(&self, addr: Ipv4Addr) -> Endpoint {
        let owner = self.owners[&addr];
        let groups = if self.unknown_blooms.contains(&addr) {
            return Endpoint { owner, groups: 0 };
        } else if self.egress_denied.contains(&owner) {
            self.groups_bloom(owner) | policy::EGRESS_DENIED
        } else {
            self.groups_bloom(owner)
        };
        let backend = if self.is_service_member(addr) {
            SERVICE_BACKEND
        } else {
            0
        };
        Endpoint {
            owner,
            groups: groups | backend,
        }
    }

    /// May the container at `addr` send to outside every zone (beyond the
    /// host's resolver)? Its endpoint's flag says.
    fn may_egress(&self, addr: Ipv4Addr) -> bool {
        self.endpoint(addr).groups & policy::EGRESS_DENIED == 0
    }

    /// Is the container `addr` a member of some service (its endpoint
    /// carries `SERVICE_BACKEND`)?
    pub fn is_service_member(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        a != 0
            && self
                .service_tables
                .values()
                .any(|(m, _)| m.members.contains(&a))
    }

    /// Serve `port`/`protocol` of `vip` by `service` (its id) on
    /// `target_port`, through the agent's writer (`ServicePorts::set`).
    pub fn set_service_port(
        &mut self,
        dp: &mut Datapath,
        vip: Ipv4Addr,
        port: u16,
        protocol: u8,
        value: ServicePort,
    ) {
        let key = ServicePortKey {
            vip: vip.into(),
            port,
            protocol,
            _pad: 0,
        };
        ServicePorts::set(dp, key, value).expect("writing a service port");
        self.service_ports.insert(key, value);
    }

    /// The VIP port is no longer served.
    pub fn remove_service_port(
        &mut self,
        dp: &mut Datapath,
        vip: Ipv4Addr,
        port: u16,
        protocol: u8,
    ) {
        let key = ServicePortKey {
            vip: vip.into(),
            port,
            protocol,
            _pad: 0,
        };
        ServicePorts::clear(dp, key).expect("removing a service port");
        self.service_ports.remove(&key);
    }

    /// The members (and healthy ones) of `service`, through the agent's
    /// writer (`Datapath::set_service_table`, which computes Maglev's
    /// table); the endpoints whose `SERVICE_BACKEND` flag changes are
    /// rewritten (new members before the table, as the agent widens first).
    pub fn set_service_table(&mut self, dp: &mut Datapath, service: u32, members: ServiceMembers) {
        let before: BTreeSet<Ipv4Addr> = self.service_members();
        self.service_tables
            .insert(service, (members, members.table()));
        self.sync_service_members(dp, &before);
        ServiceTables::set(dp, service, members).expect("writing a service table");
    }

    /// The service is gone (after its ports).
    pub fn remove_service_table(&mut self, dp: &mut Datapath, service: u32) {
        let before = self.service_members();
        self.service_tables.remove(&service);
        ServiceTables::clear(dp, service).expect("removing a service table");
        self.sync_service_members(dp, &before);
    }

    fn service_members(&self) -> BTreeSet<Ipv4Addr> {
        self.owners
            .keys()
            .copied()
            .filter(|a| self.is_service_member(*a))
            .collect()
    }

    fn sync_service_members(&self, dp: &mut Datapath, before: &BTreeSet<Ipv4Addr>) {
        let after = self.service_members();
        for &addr in before.symmetric_difference(&after) {
            let slot = self.zone_of(addr).expect("container address inside a zone");
            self.write_endpoint(dp, slot, addr);
        }
    }

    /// Marks a service flow entry idle past its timeout (the caller ages
    /// the map's entry the same way).
    pub fn expire_flow(&mut self, key: &ConnKey) {
        if let Some(f) = self.service_flows.get_mut(key) {
            f.expired = true;
        }
    }

    /// The service flows as the model expects `SERVICE_FLOWS` to hold
    /// them: key → (address, port, kind, member, service), expired ones
    /// included.
    pub fn expected_service_flows(&self) -> BTreeMap<ConnKey, (u32, u16, u8, u8, u32)> {
        self.service_flows
            .iter()
            .map(|(k, f)| (*k, (f.addr.into(), f.port, f.kind, f.member, f.service)))
            .collect()
    }

    /// Marks a tracked connection idle past its timeout (the caller ages
    /// the map's entry the same way).
    pub fn expire(&mut self, key: &ConnKey) {
        if let Some(c) = self.connections.get_mut(key) {
            c.expired = true;
        }
    }

    /// The connection table as the model expects the map to hold it:
    /// key → (src owner, dst owner, state, replied), expired entries
    /// included (the map keeps them until the LRU takes them).
    pub fn expected_connections(&self) -> BTreeMap<ConnKey, (u32, u32, ConnState, bool)> {
        self.connections
            .iter()
            .map(|(k, c)| (*k, (c.src_owner, c.dst_owner, c.state, c.replied)))
            .collect()
    }

    /// Predicts `pkt` through `prog` and moves the model's connection
    /// table as the programs move theirs.
    pub fn step(&mut self, prog: Prog, pkt: &[u8]) -> Prediction {
        self.step_marked(prog, pkt, 0)
    }

    /// [`Model::step`] of an skb carrying `mark` (`skb->mark`).
    pub fn step_marked(&mut self, prog: Prog, pkt: &[u8], mark: u32) -> Prediction {
        let (prediction, effects) = self.judge(prog, pkt, mark);
        for effect in effects {
            match effect {
                Effect::Track {
                    key,
                    l4,
                    src_owner,
                    dst_owner,
                } => self.track(key, l4, src_owner, dst_owner),
                Effect::Reply { key, l4 } => {
                    if let Some(c) = self.connections.get_mut(&key.reversed()) {
                        c.state = next_state(c.state, key.protocol, l4.tcp_flags, true);
                        c.replied = true;
                    }
                }
                Effect::Flow {
                    key,
                    flow,
                    write,
                    bytes,
                } => {
                    if write {
                        let reverse_key = ConnKey {
                            src: flow.addr.into(),
                            dst: key.src,
                            src_port: flow.port,
                            dst_port: key.src_port,
                            protocol: key.protocol,
                            _pad: [0; 3],
                        };
                        let reverse = ModelFlow {
                            addr: key.dst.into(),
                            port: key.dst_port,
                            kind: FLOW_REVERSE,
                            ..flow
                        };
                        self.service_flows.insert(reverse_key, reverse);
                        self.service_flows.insert(key, flow);
                    }
                    let c = self
                        .service_counters
                        .entry((flow.service, flow.addr.into()))
                        .or_default();
                    c.0 += 1;
                    c.1 += bytes;
                }
            }
        }
        prediction
    }

    /// `conntrack::track` of the programs: refresh a live entry of the same
    /// owners, or create one for an opening packet (a stale one replaced,
    /// a closing TCP entry reopened by a SYN).
    fn track(&mut self, key: ConnKey, l4: L4View, src_owner: u32, dst_owner: u32) {
        if !l4.has_ports {
            return;
        }
        let opening = l4.opens();
        if let Some(c) = self.connections.get_mut(&key) {
            let live = !c.expired
                && c.src_owner == src_owner
                && c.dst_owner == dst_owner
                && !(opening && key.protocol == PROTO_TCP && c.state == ConnState::Closing);
            if live {
                c.state = next_state(c.state, key.protocol, l4.tcp_flags, false);
                return;
            }
        }
        if opening {
            self.connections.insert(
                key,
                ModelConn {
                    src_owner,
                    dst_owner,
                    state: ConnState::Opening,
                    replied: false,
                    expired: false,
                },
            );
        }
    }

    /// Does `key` (refused by the rule, from outside to the container
    /// `to`) answer a live connection `to` opened and may still keep?
    fn is_reply(&self, key: &ConnKey, l4: &L4View, to: Ipv4Addr) -> bool {
        if let Some(quoted) = l4.quoted {
            // An ICMP error about a packet of a connection `to` opened.
            return quoted.src == key.dst
                && self.connections.get(&quoted).is_some_and(|c| {
                    !c.expired
                        && c.src_owner == self.owners[&to]
                        && c.dst_owner == NO_OWNER
                        && self.may_egress(to)
                });
        }
        l4.has_ports
            && self.connections.get(&key.reversed()).is_some_and(|c| {
                !c.expired
                    && c.src_owner == self.owners[&to]
                    && c.dst_owner == NO_OWNER
                    && self.may_egress(to)
            })
    }

    /// Write the `ENDPOINTS` entry of container `addr` (zone slot `slot`)
    /// as the model has it, through the agent's writer.
    pub fn write_endpoint(&self, dp: &mut Datapath, slot: u32, addr: Ipv4Addr) {
        let op = Op::Endpoint(Change::Set {
            key: EndpointKey::of(slot, addr),
            value: self.endpoint(addr),
        });
        agent::apply(dp, &op).expect("writing an endpoint");
    }

    /// The `OWNER_GROUPS` lists the agent would write for the model's
    /// groups (group ids are the keys), less `unlisted_owners`.
    pub fn owner_lists(&self) -> Entries<OwnerGroupsMap> {
        let mut lists =
            OwnerGroupLists::of_groups(self.groups.iter().map(|(g, m)| (*g, m.iter().copied()))).0;
        lists.retain(|_, g| !self.unlisted_owners.contains(&g.owner));
        lists
    }

    /// Make `OWNER_GROUPS` hold [`Self::owner_lists`], through the agent's
    /// plan diff and writer, touching only the slots that differ from what
    /// the model wrote before.
    pub fn write_owner_groups(&mut self, dp: &mut Datapath) {
        let lists = |owner_groups| HostPlan {
            owner_groups,
            ..HostPlan::default()
        };
        let want = self.owner_lists();
        let ops = lists(std::mem::take(&mut self.lists_written)).diff(&lists(want.clone()));
        for op in ops {
            agent::apply(dp, &op).unwrap_or_else(|e| panic!("applying {op:?}: {e}"));
        }
        self.lists_written = want;
    }

    /// Rewrite the groups bloom of every container of `owner` and the
    /// group lists (after its memberships changed), as the agent would.
    pub fn sync_blooms(&mut self, dp: &mut Datapath, owner: u32) {
        let addrs: Vec<Ipv4Addr> = self
            .owners
            .iter()
            .filter(|(_, o)| **o == owner)
            .map(|(a, _)| *a)
            .collect();
        for addr in addrs {
            let slot = self.zone_of(addr).expect("container address inside a zone");
            self.write_endpoint(dp, slot, addr);
        }
        self.write_owner_groups(dp);
        // Memberships decide who a security group narrows.
        self.write_scopes(dp);
    }

    /// The derived pair table.
    pub fn pairs(&self) -> &BTreeMap<(u32, u32), u32> {
        &self.pairs
    }

    /// The pair table computed from scratch (checks the reference counts).
    pub fn pairs_from_scratch(&self) -> BTreeMap<(u32, u32), u32> {
        let mut out = BTreeMap::new();
        for members in self.groups.values() {
            let m: Vec<u32> = members.iter().copied().collect();
            for (i, a) in m.iter().enumerate() {
                for b in &m[i + 1..] {
                    *out.entry(norm(*a, *b)).or_insert(0) += 1;
                }
            }
        }
        out
    }

    fn share_group(&self, a: u32, b: u32) -> bool {
        self.groups
            .values()
            .any(|m| m.contains(&a) && m.contains(&b))
    }

    /// docs/policy.md#the-rule.
    fn allowed(&self, src: Party, dst: Party) -> bool {
        match (src, dst) {
            (Party::Owner(a), Party::Owner(b)) => {
                a == b || a == SYSTEM_OWNER || b == SYSTEM_OWNER || self.share_group(a, b)
            }
            (Party::Owner(_), Party::Outside) => true,
            (Party::Outside, Party::Owner(b)) => b == SYSTEM_OWNER,
            (Party::Outside, Party::Outside) => true,
        }
    }

    pub fn zone_of(&self, addr: Ipv4Addr) -> Option<u32> {
        let o = addr.octets();
        self.zones
            .iter()
            .find(|(_, z)| z.prefix.octets()[..2] == o[..2])
            .map(|(slot, _)| *slot)
    }

    pub fn place(&self, addr: Ipv4Addr) -> Place {
        match self.zone_of(addr) {
            None => Place::Outside,
            Some(slot) => match self.owners.get(&addr) {
                Some(&owner) => Place::Container { slot, owner },
                None => Place::Vacant { slot },
            },
        }
    }

    /// Is `addr` inside this host's /24?
    fn on_this_host(host: &HostModel, addr: Ipv4Addr) -> bool {
        let (z, a) = (host.zone_prefix.octets(), addr.octets());
        a[0] == z[0] && a[1] == z[1] && a[2] == host.host_octet
    }

    /// The port of this host's container `addr`, if `addr` is in this host's /24.
    fn port_of(&self, host: &HostModel, addr: Ipv4Addr) -> Option<PortModel> {
        if Self::on_this_host(host, addr) {
            self.ports.get(&addr.octets()[3]).copied()
        } else {
            None
        }
    }

    // ---- writing the model into the maps ------------------------------------------

    pub fn host_config(host: &HostModel) -> HostConfig {
        let z = host.zone_prefix.octets();
        HostConfig {
            zone_prefix: u32::from(Ipv4Addr::new(z[0], z[1], 0, 0)),
            zone_slot: host.zone_slot,
            host_octet: host.host_octet.into(),
            uplink_ifindex: host.uplink_ifindex,
            uplink_mac: host.uplink_mac,
            gateway_mac: host.gateway_mac,
            zone_router_mac: host.router_mac,
            flags: 0,
        }
    }

    /// What the agent would plan for this state.
    pub fn plan(&self) -> HostPlan {
        let mut plan = HostPlan {
            host: self.host.as_ref().map(Self::host_config),
            ..HostPlan::default()
        };
        for (&slot, z) in &self.zones {
            plan.zones.insert((u32::from(z.prefix) >> 16) as u16, slot);
            if let Some(mac) = z.gateway {
                let underlay = Ipv4Addr::new(192, 168, 255, slot as u8);
                plan.gateways.insert(slot, UnderlayHop { mac, underlay });
            }
        }
        for (&(zone_slot, host_octet), &mac) in &self.next_hops {
            let underlay = Ipv4Addr::new(192, 168, zone_slot as u8, host_octet);
            plan.next_hops.insert(
                NextHopKey {
                    zone_slot,
                    host_octet,
                },
                UnderlayHop { mac, underlay },
            );
        }
        for &addr in self.owners.keys() {
            let slot = self.zone_of(addr).expect("container address inside a zone");
            plan.endpoints
                .insert(EndpointKey::of(slot, addr), self.endpoint(addr));
        }
        for (&octet, p) in &self.ports {
            plan.local_ports.insert(
                octet,
                PortEntry {
                    ifindex: p.ifindex,
                    mac: p.mac,
                },
            );
        }
        for (&(a, b), &n) in &self.pairs {
            plan.group_pairs.insert(OwnerPair::new(a, b), n);
        }
        plan.owner_groups = self.owner_lists();
        plan.port_scopes = self.scope_entries();
        plan
    }

    /// Fill an empty datapath with this state, as the agent does: its plan,
    /// diffed against nothing, applied.
    pub fn apply(&mut self, dp: &mut Datapath) {
        let plan = self.plan();
        for op in HostPlan::default().diff(&plan) {
            agent::apply(dp, &op).unwrap_or_else(|e| panic!("applying {op:?}: {e}"));
        }
        self.lists_written = plan.owner_groups;
        self.scopes_written = plan.port_scopes;
        // Services: tables before the ports that lead to them.
        for (&service, (members, _)) in &self.service_tables {
            ServiceTables::set(dp, service, *members).expect("writing a service table");
        }
        for (&key, &value) in &self.service_ports {
            ServicePorts::set(dp, key, value).expect("writing a service port");
        }
    }

    /// Apply pair-table changes to the maps, as the agent would.
    pub fn apply_pair_changes(dp: &mut Datapath, changes: &[PairChange]) {
        for c in changes {
            let op = match *c {
                PairChange::Set(a, b, n) => Op::GroupPair(Change::Set {
                    key: OwnerPair::new(a, b),
                    value: n,
                }),
                PairChange::Remove(a, b) => Op::GroupPair(Change::Clear {
                    key: OwnerPair::new(a, b),
                }),
            };
            agent::apply(dp, &op).unwrap_or_else(|e| panic!("applying {op:?}: {e}"));
        }
    }

    // ---- prediction ----------------------------------------------------------------

    pub fn predict(&self, prog: Prog, pkt: &[u8]) -> Prediction {
        self.judge(prog, pkt, 0).0
    }

    fn judge(&self, prog: Prog, pkt: &[u8], mark: u32) -> (Prediction, Vec<Effect>) {
        let mut effect = Vec::new();
        let prediction = match prog {
            Prog::FromContainer(ifindex) => self
                .judge_from_container(ifindex, pkt, &mut effect)
                .unwrap_or_else(|r| Prediction::drop(prog, r)),
            Prog::Uplink => self
                .judge_from_uplink(pkt, &mut effect, false)
                .unwrap_or_else(|r| Prediction::drop(Prog::UplinkTc(0), r))
                .at_prefilter(),
            Prog::UplinkTc(_) => self
                .judge_from_uplink(pkt, &mut effect, true)
                .unwrap_or_else(|r| Prediction::drop(prog, r)),
            Prog::ToContainer(ifindex) => self
                .judge_to_container(ifindex, pkt, mark, &mut effect)
                .unwrap_or_else(|r| Prediction::drop(prog, r)),
        };
        match prediction.verdict {
            Verdict::Forwarded(_) => (prediction, effect),
            Verdict::Dropped(_) => (prediction, Vec::new()),
        }
    }

    /// anti-spoofing → destination lookup → policy → TTL → delivery.
    fn judge_from_container(
        &self,
        ifindex: u32,
        pkt: &[u8],
        effect: &mut Vec<Effect>,
    ) -> Result<Prediction, DropReason> {
        let eth = parse_eth(pkt)?;
        let host = self.host.as_ref().ok_or(DropReason::NoRoute)?;
        match eth.ether_type {
            packets::ETH_P_IP => {}
            packets::ETH_P_ARP => {
                let arp = parse_arp(pkt)?;
                let honest = self.port_of(host, arp.sender_ip).is_some_and(|p| {
                    p.ifindex == ifindex && p.mac == arp.sender_mac && p.mac == eth.src
                });
                if !honest {
                    return Err(DropReason::SpoofedArp);
                }
                return Ok(Prediction::forward(
                    TC_ACT_OK,
                    Forward::Stack,
                    Expect::Untouched,
                ));
            }
            packets::ETH_P_IPV6 => return Err(DropReason::Ipv6NotSupported),
            // A container never tags (a tag the kernel already stripped
            // into the skb cannot be expressed in a test run).
            t if packets::is_vlan_tag(t) => return Err(DropReason::VlanTagged),
            _ => return Err(DropReason::Malformed),
        }
        let ip = parse_ipv4(pkt)?;
        let own = self
            .port_of(host, ip.src)
            .filter(|p| p.ifindex == ifindex)
            .ok_or(DropReason::SpoofedSourceIp)?;
        if own.mac != eth.src {
            return Err(DropReason::SpoofedSourceMac);
        }
        let src_owner = match self.place(ip.src) {
            Place::Container { owner, .. } => owner,
            _ => return Err(DropReason::UnknownSource),
        };
        if self.is_vip(ip.dst) {
            return self.balance(host, pkt, &ip, src_owner, effect);
        }
        self.judge_container_dst(host, pkt, &ip, src_owner, effect, false)
    }

    /// Is `addr` in a zone's service range (host octet 0)?
    fn is_vip(&self, addr: Ipv4Addr) -> bool {
        addr.octets()[2] == 0 && self.zone_of(addr).is_some()
    }

    /// docs/datapath.md#services: a container's TCP/UDP first fragment to
    /// a served VIP port goes to the backend of its open flow (fresh, the
    /// backend still a member, same target port) or else of its Maglev
    /// slot (the next ones when that names the client itself); the
    /// translated packet is then judged as any other. A drop after the
    /// translation leaves the packet translated; a forward writes the flow
    /// (when new) and counts it.
    fn balance(
        &self,
        host: &HostModel,
        pkt: &[u8],
        ip: &Ipv4View,
        src_owner: u32,
        effect: &mut Vec<Effect>,
    ) -> Result<Prediction, DropReason> {
        if !matches!(ip.protocol, PROTO_TCP | PROTO_UDP) || ip.fragment_offset != 0 {
            return Err(DropReason::NoBackend);
        }
        let l4 = parse_l4(pkt, ip)?;
        if !holds_checksum(ip) {
            return Err(DropReason::Malformed);
        }
        let port_key = ServicePortKey {
            vip: ip.dst.into(),
            port: l4.dst_port,
            protocol: ip.protocol,
            _pad: 0,
        };
        let svc = self
            .service_ports
            .get(&port_key)
            .ok_or(DropReason::NoBackend)?;
        let (_, table) = self
            .service_tables
            .get(&svc.service)
            .ok_or(DropReason::NoBackend)?;
        let key = l4.key(ip);
        let current = self.service_flows.get(&key).filter(|f| {
            f.kind == FLOW_FORWARD
                && !f.expired
                && f.service == svc.service
                && f.port == svc.target_port
                && usize::from(f.member) < MAX_BACKENDS
                && table.members[usize::from(f.member)] == u32::from(f.addr)
        });
        let (member, backend, write) = match current {
            Some(f) => (f.member, f.addr, false),
            None => {
                let m = pick(table, &key)?;
                (m, Ipv4Addr::from(table.members[usize::from(m)]), true)
            }
        };
        let nat_src = (ip.src, l4.src_port);
        let nat_dst = (backend, svc.target_port);
        let translated = packets::translated(pkt, None, nat_src, nat_dst);
        let tip = parse_ipv4(&translated).expect("a translated packet parses");
        let mut inner = Vec::new();
        match self.judge_container_dst(host, &translated, &tip, src_owner, &mut inner, true) {
            Ok(p) => {
                let Expect::Routed { src, dst } = p.output else {
                    panic!(
                        "backend {backend} of service {} is no container",
                        svc.service
                    );
                };
                effect.extend(inner);
                effect.push(Effect::Flow {
                    key,
                    flow: ModelFlow {
                        addr: backend,
                        port: svc.target_port,
                        kind: FLOW_FORWARD,
                        member,
                        service: svc.service,
                        expired: false,
                    },
                    write,
                    bytes: pkt.len() as u64,
                });
                Ok(Prediction {
                    output: Expect::Nat {
                        routed: Some((src, dst)),
                        src: nat_src,
                        dst: nat_dst,
                    },
                    ..p
                })
            }
            Err(reason) => Ok(Prediction {
                action: TC_ACT_SHOT,
                verdict: Verdict::Dropped(reason),
                output: Expect::Nat {
                    routed: None,
                    src: nat_src,
                    dst: nat_dst,
                },
            }),
        }
    }

    /// A service member's packet delivered to a container of this host:
    /// the (VIP, service port) its source becomes when it answers a fresh
    /// reverse entry (TCP/UDP first fragments holding their checksum only).
    fn reverse_of(&self, pkt: &[u8], ip: &Ipv4View) -> Result<Option<Endpoint4>, DropReason> {
        if !matches!(ip.protocol, PROTO_TCP | PROTO_UDP)
            || ip.fragment_offset != 0
            || !holds_checksum(ip)
            || self.endpoint(ip.src).groups & SERVICE_BACKEND == 0
        {
            return Ok(None);
        }
        let l4 = parse_l4(pkt, ip)?;
        Ok(self
            .service_flows
            .get(&l4.key(ip))
            .filter(|f| f.kind == FLOW_REVERSE && !f.expired)
            .map(|f| (f.addr, f.port)))
    }

    /// `routed` (a delivery into a local container) with the source
    /// translated back to the VIP when it answers a balanced flow.
    fn translate_reply(
        &self,
        pkt: &[u8],
        ip: &Ipv4View,
        routed: Prediction,
    ) -> Result<Prediction, DropReason> {
        let Expect::Routed { src, dst } = routed.output else {
            return Ok(routed);
        };
        let Some(vip) = self.reverse_of(pkt, ip)? else {
            return Ok(routed);
        };
        let l4 = parse_l4(pkt, ip)?;
        Ok(Prediction {
            output: Expect::Nat {
                routed: Some((src, dst)),
                src: vip,
                dst: (ip.dst, l4.dst_port),
            },
            ..routed
        })
    }

    /// `from_container` from the destination on (also for a packet
    /// translated to a backend, `balanced`).
    fn judge_container_dst(
        &self,
        host: &HostModel,
        pkt: &[u8],
        ip: &Ipv4View,
        src_owner: u32,
        effect: &mut Vec<Effect>,
        balanced: bool,
    ) -> Result<Prediction, DropReason> {
        let ip = *ip;
        let (dst_slot, dst_owner) = match self.place(ip.dst) {
            Place::Container { slot, owner } => (slot, owner),
            Place::Vacant { .. } => return Err(DropReason::UnknownDestination),
            // Egress: the resolver is the host's, always reachable; an owner
            // denied egress reaches nothing else; a non-system owner's
            // connection is tracked (so its transport header must be whole).
            Place::Outside => {
                if ip.dst != RESOLVER {
                    if !self.may_egress(ip.src) {
                        return Err(DropReason::EgressDenied);
                    }
                    if src_owner != SYSTEM_OWNER {
                        let l4 = parse_l4(pkt, &ip)?;
                        effect.push(Effect::Track {
                            key: l4.key(&ip),
                            l4,
                            src_owner,
                            dst_owner: NO_OWNER,
                        });
                    }
                }
                return Ok(Prediction::forward(
                    TC_ACT_OK,
                    Forward::Stack,
                    Expect::DstMac(host.gateway_mac),
                ));
            }
        };
        if !self.allowed(Party::Owner(src_owner), Party::Owner(dst_owner)) {
            return Err(DropReason::PolicyDenied);
        }
        if ip.ttl <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        let routed = self.route_from_container(host, &ip, dst_slot)?;
        // Last, what moves the connection table: the scope (a reply of a
        // tracked connection passes it), then a scoped sender's tracking.
        self.check_scope(pkt, &ip, src_owner, effect)?;
        self.track_scoped_sender(pkt, &ip, src_owner, dst_owner, effect)?;
        if !balanced && routed.verdict == Verdict::Forwarded(Forward::Local) {
            return self.translate_reply(pkt, &ip, routed);
        }
        Ok(routed)
    }

    /// Where `from_container` sends a packet for a container of zone
    /// `dst_slot`.
    fn route_from_container(
        &self,
        host: &HostModel,
        ip: &Ipv4View,
        dst_slot: u32,
    ) -> Result<Prediction, DropReason> {
        if dst_slot == host.zone_slot {
            if ip.dst.octets()[2] == host.host_octet {
                let port = self
                    .ports
                    .get(&ip.dst.octets()[3])
                    .ok_or(DropReason::UnknownDestination)?;
                return Ok(Prediction::forward(
                    TC_ACT_REDIRECT,
                    Forward::Local,
                    Expect::Routed {
                        src: host.gateway_mac,
                        dst: port.mac,
                    },
                ));
            }
            let nh = self
                .next_hops
                .get(&(dst_slot, ip.dst.octets()[2]))
                .ok_or(DropReason::NoRoute)?;
            return Ok(Prediction::forward(
                TC_ACT_REDIRECT,
                Forward::Remote,
                Expect::Routed {
                    src: host.uplink_mac,
                    dst: *nh,
                },
            ));
        }
        let gw = self.zones[&dst_slot].gateway.ok_or(DropReason::NoRoute)?;
        Ok(Prediction::forward(
            TC_ACT_REDIRECT,
            Forward::Remote,
            Expect::Routed {
                src: host.uplink_mac,
                dst: gw,
            },
        ))
    }

    /// docs/security-groups.md: after the owner rule, a receiver whose
    /// endpoint carries `INGRESS_SCOPED` (a known bloom: an unknown one
    /// has no flags) and narrowed `src_owner` is reached only on the
    /// protocols and destination ports it left open. A later fragment
    /// passes when its protocol is open on some port; a first fragment too
    /// short for the transport fields read (TCP 14 bytes, UDP 4, ICMP 6) is
    /// malformed; other protocols are never open.
    fn check_scope(
        &self,
        pkt: &[u8],
        ip: &Ipv4View,
        src_owner: u32,
        effect: &mut Vec<Effect>,
    ) -> Result<(), DropReason> {
        let dst = self.endpoint(ip.dst);
        if dst.groups & INGRESS_SCOPED == 0 {
            return Ok(());
        }
        let Some(rules) = self.scope_of(dst.owner, src_owner) else {
            return Ok(());
        };
        let opened = if ip.fragment_offset != 0 {
            rules.iter().any(|r| r.0 == ip.protocol)
        } else {
            let l4 = ETH_HLEN + ip.header_len;
            let need = match ip.protocol {
                6 => 14,
                17 => 4,
                1 => 6,
                _ => 0,
            };
            if pkt.len() < l4 + need {
                return Err(DropReason::Malformed);
            }
            match ip.protocol {
                6 | 17 => {
                    let port = u16::from_be_bytes([pkt[l4 + 2], pkt[l4 + 3]]);
                    rules
                        .iter()
                        .any(|&(p, first, last)| p == ip.protocol && first <= port && port <= last)
                }
                1 => rules.iter().any(|r| r.0 == 1),
                _ => false,
            }
        };
        if opened {
            return Ok(());
        }
        // A reply of a connection the receiver opened, while its original
        // direction is still allowed (owner rule and the sender's own
        // scope for the receiver).
        let l4 = parse_l4(pkt, ip)?;
        let key = l4.key(ip);
        // The connection a reply answers (`reversed`), or the one an ICMP
        // error's quoted packet belongs to (sent by the receiver).
        let (original, has_key) = match l4.quoted {
            Some(q) => (q, q.src == key.dst),
            None => (key.reversed(), l4.has_ports),
        };
        let is_reply = has_key
            && self.connections.get(&original).is_some_and(|c| {
                !c.expired
                    && c.src_owner == dst.owner
                    && c.dst_owner == src_owner
                    && self.allowed(Party::Owner(dst.owner), Party::Owner(src_owner))
                    && self.scope_opens(ip.src, dst.owner, original.protocol, original.dst_port)
            });
        if is_reply {
            if l4.quoted.is_none() {
                effect.push(Effect::Reply { key, l4 });
            }
            Ok(())
        } else {
            Err(DropReason::PortNotAllowed)
        }
    }

    /// Does the scope of the container at `receiver` for `sender` let
    /// `protocol` to `port` through (not flagged or not narrowed: yes)?
    fn scope_opens(&self, receiver: Ipv4Addr, sender: u32, protocol: u8, port: u16) -> bool {
        let r = self.endpoint(receiver);
        if r.groups & INGRESS_SCOPED == 0 {
            return true;
        }
        match self.scope_of(r.owner, sender) {
            None => true,
            Some(rules) => rules.iter().any(|&(p, first, last)| {
                p == protocol && (p == PROTO_ICMP || (first <= port && port <= last))
            }),
        }
    }

    /// A sender whose endpoint carries `INGRESS_SCOPED` has its packets to
    /// containers tracked (their replies are judged by its scopes) when its
    /// scope would refuse their reverse; its transport header must be
    /// whole.
    fn track_scoped_sender(
        &self,
        pkt: &[u8],
        ip: &Ipv4View,
        src_owner: u32,
        dst_owner: u32,
        effect: &mut Vec<Effect>,
    ) -> Result<(), DropReason> {
        if self.endpoint(ip.src).groups & INGRESS_SCOPED == 0 {
            return Ok(());
        }
        let l4 = parse_l4(pkt, ip)?;
        let key = l4.key(ip);
        if self.scope_opens(ip.src, dst_owner, key.protocol, key.src_port) {
            return Ok(());
        }
        effect.push(Effect::Track {
            key,
            l4,
            src_owner,
            dst_owner,
        });
        Ok(())
    }

    /// docs/policy.md#identity-comes-from-the-source-address: any IPv4 packet claiming a container source must arrive
    /// from that container's host's underlay MAC (other zones: the zone
    /// router's), whatever its destination. Then only IPv4 for a container
    /// of this host is judged; everything else passes untouched.
    /// Source host → destination → source owner → policy → TTL → delivery.
    /// A tagged frame must not carry IPv4 touching any zone (netfabric
    /// never tags; the kernel would strip the tag and route it unchecked),
    /// nor more than two tags; other tagged traffic passes.
    /// The prediction is `from_uplink_tc`'s (the TC program judges and
    /// delivers); [`Prediction::at_prefilter`] turns it into the XDP
    /// prefilter's.
    fn judge_from_uplink(
        &self,
        pkt: &[u8],
        effect: &mut Vec<Effect>,
        tc: bool,
    ) -> Result<Prediction, DropReason> {
        let pass = Prediction::forward(TC_ACT_OK, Forward::Stack, Expect::Untouched);
        let eth = parse_eth(pkt)?;
        if packets::is_vlan_tag(eth.ether_type) {
            return match parse_tagged(pkt)? {
                Tagged::Ipv4 { src, dst }
                    if self.zone_of(src).is_some() || self.zone_of(dst).is_some() =>
                {
                    Err(DropReason::VlanTagged)
                }
                Tagged::TooDeep => Err(DropReason::VlanTagged),
                Tagged::Ipv4 { .. } | Tagged::Other => Ok(pass),
            };
        }
        if eth.ether_type != packets::ETH_P_IP {
            return Ok(pass);
        }
        let ip = parse_ipv4(pkt)?;
        let Some(host) = self.host.as_ref() else {
            return Ok(pass);
        };
        let src_place = self.place(ip.src);
        if let Place::Container { slot, .. } = src_place {
            let expected = if slot == host.zone_slot {
                if ip.src.octets()[2] == host.host_octet {
                    // This host's own containers never arrive from outside.
                    return Err(DropReason::SpoofedWrongHost);
                }
                self.next_hops.get(&(slot, ip.src.octets()[2])).copied()
            } else if host.router_mac == [0; 6] {
                None
            } else {
                Some(host.router_mac)
            };
            if expected != Some(eth.src) {
                return Err(DropReason::SpoofedWrongHost);
            }
        }
        if !Self::on_this_host(host, ip.dst) {
            return Ok(pass);
        }
        let dst_owner = match self.place(ip.dst) {
            Place::Container { owner, .. } => owner,
            _ => return Err(DropReason::UnknownDestination),
        };
        let port = self
            .port_of(host, ip.dst)
            .ok_or(DropReason::UnknownDestination)?;
        let src = match src_place {
            Place::Container { owner, .. } => Party::Owner(owner),
            Place::Vacant { .. } => return Err(DropReason::UnknownSource),
            Place::Outside => Party::Outside,
        };
        if !self.allowed(src, Party::Owner(dst_owner)) {
            return Err(DropReason::PolicyDenied);
        }
        if ip.ttl <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        if let Party::Owner(src_owner) = src {
            self.check_scope(pkt, &ip, src_owner, effect)?;
            // `from_uplink_tc` tracks a scoped sender (the prefilter does not).
            if tc {
                self.track_scoped_sender(pkt, &ip, src_owner, dst_owner, effect)?;
            }
        }
        let delivered = Prediction::forward(
            TC_ACT_REDIRECT,
            Forward::Local,
            Expect::Routed {
                src: host.gateway_mac,
                dst: port.mac,
            },
        );
        // `from_uplink_tc` translates a remote service member's reply (the
        // prefilter passes it untouched).
        if tc && matches!(src, Party::Owner(_)) {
            return self.translate_reply(pkt, &ip, delivered);
        }
        Ok(delivered)
    }

    /// What the host stack sends into the container behind `ifindex`.
    /// Container traffic never comes this way (the programs redirect it
    /// past this hook), so any source inside a zone is forged; outside
    /// sources reach system containers only, except the host resolver's
    /// replies (169.254.1.1, UDP or TCP source port 53) and the agent's
    /// health probes (from 169.254.1.1 with `HEALTH_PROBE_MARK`), which
    /// reach any.
    fn judge_to_container(
        &self,
        ifindex: u32,
        pkt: &[u8],
        mark: u32,
        effect: &mut Vec<Effect>,
    ) -> Result<Prediction, DropReason> {
        let ok = Prediction::forward(TC_ACT_OK, Forward::Local, Expect::Untouched);
        let eth = parse_eth(pkt)?;
        match eth.ether_type {
            packets::ETH_P_IP => {}
            packets::ETH_P_ARP => return Ok(ok),
            packets::ETH_P_IPV6 => return Err(DropReason::Ipv6NotSupported),
            t if packets::is_vlan_tag(t) => return Err(DropReason::VlanTagged),
            _ => return Err(DropReason::Malformed),
        }
        let ip = parse_ipv4(pkt)?;
        let host = self.host.as_ref().ok_or(DropReason::NoRoute)?;
        let behind_this_port = self
            .port_of(host, ip.dst)
            .is_some_and(|p| p.ifindex == ifindex);
        let dst_owner = match self.place(ip.dst) {
            Place::Container { owner, .. } if behind_this_port => owner,
            _ => return Err(DropReason::UnknownDestination),
        };
        if self.place(ip.src) != Place::Outside {
            return Err(DropReason::SpoofedWrongHost);
        }
        if ip.src == RESOLVER && matches!(ip.protocol, 6 | 17) && ip.source_port == Some(53) {
            return Ok(ok);
        }
        // The agent's health probes: marked, from the gateway address.
        if mark == HEALTH_PROBE_MARK && ip.src == RESOLVER {
            return Ok(ok);
        }
        if !self.allowed(Party::Outside, Party::Owner(dst_owner)) {
            // Only a reply of a connection the container opened to outside
            // (a transport header too short to read is none).
            let l4 = parse_l4(pkt, &ip).map_err(|_| DropReason::PolicyDenied)?;
            let key = l4.key(&ip);
            if !self.is_reply(&key, &l4, ip.dst) {
                return Err(DropReason::PolicyDenied);
            }
            // A related error answers nothing: the connection stays as it is.
            if l4.quoted.is_none() {
                effect.push(Effect::Reply { key, l4 });
            }
        }
        Ok(ok)
    }
}

// ---- the model's own parsers ----------------------------------------------------------

struct EthView {
    src: Mac,
    ether_type: u16,
}

fn parse_eth(pkt: &[u8]) -> Result<EthView, DropReason> {
    if pkt.len() < ETH_HLEN {
        return Err(DropReason::Malformed);
    }
    Ok(EthView {
        src: pkt[6..12].try_into().unwrap(),
        ether_type: u16::from_be_bytes([pkt[12], pkt[13]]),
    })
}

/// What one or two VLAN tags carry.
enum Tagged {
    Ipv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
    },
    Other,
    /// A third tag.
    TooDeep,
}

/// Under the tags of a frame whose EtherType is a VLAN tag: a tag cut
/// short, or IPv4 too short for a 20-byte header, is malformed; the IPv4
/// header is not validated otherwise (only its addresses matter).
fn parse_tagged(pkt: &[u8]) -> Result<Tagged, DropReason> {
    match tagged_ipv4_offset(pkt)? {
        None => Ok(Tagged::Other),
        Some(TagWalk::TooDeep) => Ok(Tagged::TooDeep),
        Some(TagWalk::Ipv4At(off)) => {
            let h = pkt.get(off..off + 20).ok_or(DropReason::Malformed)?;
            Ok(Tagged::Ipv4 {
                src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
                dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
            })
        }
    }
}

enum TagWalk {
    Ipv4At(usize),
    TooDeep,
}

/// Walk at most two tags: where IPv4 starts under them, a third tag, or
/// `None` for anything else.
fn tagged_ipv4_offset(pkt: &[u8]) -> Result<Option<TagWalk>, DropReason> {
    let inner_type = |off: usize| {
        pkt.get(off + 2..off + 4)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(DropReason::Malformed)
    };
    let mut off = ETH_HLEN;
    let mut t = inner_type(off)?;
    off += 4;
    if packets::is_vlan_tag(t) {
        t = inner_type(off)?;
        off += 4;
        if packets::is_vlan_tag(t) {
            return Ok(Some(TagWalk::TooDeep));
        }
    }
    Ok((t == packets::ETH_P_IP).then_some(TagWalk::Ipv4At(off)))
}

struct ArpView {
    sender_mac: Mac,
    sender_ip: Ipv4Addr,
}

fn parse_arp(pkt: &[u8]) -> Result<ArpView, DropReason> {
    let a = pkt
        .get(ETH_HLEN..ETH_HLEN + 28)
        .ok_or(DropReason::Malformed)?;
    if a[0..2] != [0, 1] || a[2..4] != [8, 0] || a[4] != 6 || a[5] != 4 {
        return Err(DropReason::Malformed);
    }
    Ok(ArpView {
        sender_mac: a[8..14].try_into().unwrap(),
        sender_ip: Ipv4Addr::new(a[14], a[15], a[16], a[17]),
    })
}

/// The host's resolver: the containers' gateway.
const RESOLVER: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

#[derive(Clone, Copy, Debug)]
struct Ipv4View {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    protocol: u8,
    /// The first two bytes after the IPv4 header (a UDP/TCP source port),
    /// if the frame holds them and this is not a later fragment.
    source_port: Option<u16>,
    header_len: usize,
    total_len: usize,
    fragment_offset: u16,
}

/// Version 4, IHL of at least 5 words, total length covering the header and
/// within the frame (padding after it is fine). Options and fragments are
/// fine: policy is on addresses only.
fn parse_ipv4(pkt: &[u8]) -> Result<Ipv4View, DropReason> {
    let h = pkt
        .get(ETH_HLEN..ETH_HLEN + 20)
        .ok_or(DropReason::Malformed)?;
    let header_len = usize::from(h[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if h[0] >> 4 != 4
        || header_len < 20
        || total_len < header_len
        || ETH_HLEN + total_len > pkt.len()
    {
        return Err(DropReason::Malformed);
    }
    let fragment_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    let source_port = pkt
        .get(ETH_HLEN + header_len..ETH_HLEN + header_len + 2)
        .filter(|_| fragment_offset == 0)
        .map(|p| u16::from_be_bytes([p[0], p[1]]));
    Ok(Ipv4View {
        src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
        dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        ttl: h[8],
        protocol: h[9],
        source_port,
        header_len,
        total_len,
        fragment_offset,
    })
}

/// The transport fields connection tracking keys on (docs/policy.md).
#[derive(Clone, Copy, Debug)]
struct L4View {
    protocol: u8,
    src_port: u16,
    dst_port: u16,
    tcp_flags: u8,
    icmp_type: u8,
    has_ports: bool,
    /// An ICMP error's quoted packet, keyed as it was sent.
    quoted: Option<ConnKey>,
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

impl L4View {
    fn key(&self, ip: &Ipv4View) -> ConnKey {
        ConnKey {
            src: ip.src.into(),
            dst: ip.dst.into(),
            src_port: self.src_port,
            dst_port: self.dst_port,
            protocol: self.protocol,
            _pad: [0; 3],
        }
    }

    /// May it create an entry: a TCP SYN without ACK/RST/FIN, an ICMP echo
    /// request, any UDP datagram.
    fn opens(&self) -> bool {
        match self.protocol {
            PROTO_TCP => self.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN,
            PROTO_ICMP => self.icmp_type == 8,
            PROTO_UDP => true,
            _ => false,
        }
    }
}

/// TCP FIN/RST closes; a reply establishes an opening connection.
fn next_state(state: ConnState, protocol: u8, tcp_flags: u8, reply: bool) -> ConnState {
    if protocol == PROTO_TCP && tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        ConnState::Closing
    } else if reply && state == ConnState::Opening {
        ConnState::Established
    } else {
        state
    }
}

/// A first fragment of TCP, UDP or ICMP must hold the fields read (TCP 14
/// bytes, UDP 4, ICMP 6), else `Malformed`; ICMP has "ports" for echo
/// only (request: id as source port; reply: as destination port); later
/// fragments and other protocols have none.
fn parse_l4(pkt: &[u8], ip: &Ipv4View) -> Result<L4View, DropReason> {
    let mut l4 = L4View {
        protocol: ip.protocol,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        icmp_type: 0,
        has_ports: false,
        quoted: None,
    };
    if ip.fragment_offset != 0 {
        return Ok(l4);
    }
    let at = ETH_HLEN + ip.header_len;
    let need = match ip.protocol {
        PROTO_TCP => 14,
        PROTO_UDP => 4,
        PROTO_ICMP => 6,
        _ => return Ok(l4),
    };
    let h = pkt.get(at..at + need).ok_or(DropReason::Malformed)?;
    match ip.protocol {
        PROTO_TCP | PROTO_UDP => {
            l4.src_port = u16::from_be_bytes([h[0], h[1]]);
            l4.dst_port = u16::from_be_bytes([h[2], h[3]]);
            l4.has_ports = true;
            if ip.protocol == PROTO_TCP {
                l4.tcp_flags = h[13];
            }
        }
        _ => {
            l4.icmp_type = h[0];
            let id = u16::from_be_bytes([h[4], h[5]]);
            match h[0] {
                8 => {
                    l4.src_port = id;
                    l4.has_ports = true;
                }
                0 => {
                    l4.dst_port = id;
                    l4.has_ports = true;
                }
                3 | 11 | 12 => l4.quoted = quoted_key(pkt, at + 8),
                _ => {}
            }
        }
    }
    Ok(l4)
}

/// The key of the packet an ICMP error quotes from `at` (an IPv4 first
/// fragment of TCP, UDP or ICMP echo request, header and 8 bytes whole),
/// as that packet was sent.
fn quoted_key(pkt: &[u8], at: usize) -> Option<ConnKey> {
    let h = pkt.get(at..at + 20)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < 20 || u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
        return None;
    }
    let t = pkt.get(at + ihl..at + ihl + 8)?;
    let (src_port, dst_port) = match h[9] {
        PROTO_TCP | PROTO_UDP => (
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        ),
        PROTO_ICMP if t[0] == 8 => (u16::from_be_bytes([t[4], t[5]]), 0),
        _ => return None,
    };
    Some(ConnKey {
        src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
        dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
        src_port,
        dst_port,
        protocol: h[9],
        _pad: [0; 3],
    })
}

/// Slots tried from the client's own Maglev slot on, and the step between
/// them, when a slot names the client itself (docs/datapath.md#services).
const HAIRPIN_PROBES: usize = 32;
const HAIRPIN_STRIDE: usize = 4_099;

/// The member of `key`'s Maglev slot, or of one of the
/// [`HAIRPIN_PROBES`] slots [`HAIRPIN_STRIDE`] apart from it when that one
/// is the client itself.
fn pick(table: &ServiceTable, key: &ConnKey) -> Result<u8, DropReason> {
    let first = slot_of(key);
    for i in 0..HAIRPIN_PROBES {
        let m = table.slots[(first + i * HAIRPIN_STRIDE) % MAGLEV_SLOTS];
        if m == NO_MEMBER || usize::from(m) >= MAX_BACKENDS || table.members[usize::from(m)] == 0 {
            return Err(DropReason::NoBackend);
        }
        if table.members[usize::from(m)] != key.src {
            return Ok(m);
        }
    }
    Err(DropReason::NoBackend)
}

/// Does the datagram (its IPv4 total length) reach its transport checksum
/// field (TCP: 18 bytes of header, UDP: 8), which a translation updates?
fn holds_checksum(ip: &Ipv4View) -> bool {
    let need = if ip.protocol == PROTO_TCP { 18 } else { 8 };
    ip.header_len + need <= ip.total_len
}

// ---- observing the real programs ----------------------------------------------------------

/// What the real program did to one packet.
#[derive(Debug)]
pub struct Observed {
    pub action: u32,
    pub packet: Vec<u8>,
    /// Counters that moved.
    pub counted: CounterSnapshot,
    pub events: Vec<DropEvent>,
}

/// A datapath plus the readers the checks need.
pub struct Harness {
    pub dp: Datapath,
    events: RingBuf<MapData>,
}

impl Harness {
    /// Drop events are on for good (a monitor lease that never runs out), so
    /// every drop's event can be checked.
    pub fn new(mut dp: Datapath) -> Self {
        let events = dp.take_drop_events().expect("drop events ring buffer");
        dp.set_monitor_lease(netfabric_common::MonitorLease::FOREVER)
            .expect("monitor lease");
        Harness { dp, events }
    }

    fn drain_events(&mut self) -> Vec<DropEvent> {
        let mut out = Vec::new();
        while let Some(item) = self.events.next() {
            assert_eq!(item.len(), size_of::<DropEvent>(), "drop event size");
            // SAFETY: DropEvent is plain old data of exactly this size.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<DropEvent>()) });
        }
        out
    }

    /// Run one packet once; fails only when the kernel refuses the run.
    pub fn run(&mut self, prog: Prog, pkt: &[u8]) -> Result<Observed, String> {
        self.run_marked(prog, pkt, 0)
    }

    /// [`Harness::run`] of an skb carrying `mark` (TC programs only).
    pub fn run_marked(&mut self, prog: Prog, pkt: &[u8], mark: u32) -> Result<Observed, String> {
        let stale = self.drain_events();
        assert!(
            stale.is_empty(),
            "drop events from outside a run: {stale:?}"
        );
        let before = self.dp.counters().expect("counters");
        let res = match prog {
            Prog::Uplink => self.dp.test_run_xdp(prog.name(), pkt, 1),
            Prog::UplinkTc(i) | Prog::FromContainer(i) | Prog::ToContainer(i) => {
                self.dp.test_run_tc_marked(prog.name(), pkt, i, mark, 1)
            }
        };
        let now = self.dp.counters().expect("counters");
        let counted = now.since(&before);
        let events = self.drain_events();
        let out = res.map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?;
        Ok(Observed {
            action: out.action,
            packet: out.packet,
            counted,
            events,
        })
    }
}

/// Compare an observation with a prediction: action, exactly one counter
/// moved by one packet of `input.len()` bytes in the right direction (none
/// for what the XDP prefilter passes: the TC program counts it), the
/// output bytes, and for a drop exactly one event with the reason (none for
/// a forward). Returns every mismatch.
pub fn check(prog: Prog, input: &[u8], want: &Prediction, got: &Observed) -> Vec<String> {
    let mut errs = Vec::new();
    if got.action != want.action {
        errs.push(format!("action {}, want {}", got.action, want.action));
    }
    let dir = prog.direction();
    let moved: Vec<_> = got
        .counted
        .by_verdict
        .iter()
        .map(|(k, c)| (*k, *c))
        .collect();
    let expected_counter = netfabric_common::Counter {
        packets: 1,
        bytes: input.len() as u64,
    };
    let uncounted = prog == Prog::Uplink && matches!(want.verdict, Verdict::Forwarded(_));
    match moved.as_slice() {
        [] if uncounted => {}
        [((d, v), c)]
            if !uncounted && *d == dir && *v == want.verdict && *c == expected_counter => {}
        _ if uncounted => errs.push(format!(
            "counters moved {:?} for a packet the prefilter passes, want none",
            got.counted.by_verdict
        )),
        _ => errs.push(format!(
            "counters moved {:?}, want only {:?}/{:?} by {:?}",
            got.counted.by_verdict, dir, want.verdict, expected_counter
        )),
    }
    if got.counted.monitor_events_lost != 0 {
        errs.push(format!(
            "{} drop events lost",
            got.counted.monitor_events_lost
        ));
    }
    match want.verdict {
        Verdict::Dropped(reason) => {
            let (src, dst) = match &want.output {
                // Dropped after the translation: the packet as judged.
                Expect::Nat { src, dst, .. } => (u32::from(src.0), u32::from(dst.0)),
                _ => event_addresses(input),
            };
            match got.events.as_slice() {
                [e] if e.reason == reason as u8
                    && e.direction == dir as u8
                    && e.len == input.len() as u32
                    && (e.src_ip, e.dst_ip) == (src, dst) => {}
                evs => errs.push(format!(
                    "drop events {evs:?}, want one {reason:?} in {dir:?} from {} to {}",
                    Ipv4Addr::from(src),
                    Ipv4Addr::from(dst)
                )),
            }
        }
        Verdict::Forwarded(_) => {
            if !got.events.is_empty() {
                errs.push(format!("drop events for a forward: {:?}", got.events));
            }
        }
    }
    match &want.output {
        Expect::Untouched => {
            if got.packet != input {
                errs.push(format!(
                    "packet modified: {} → {}",
                    packets::hex(input),
                    packets::hex(&got.packet)
                ));
            }
        }
        Expect::Routed { src, dst } => {
            if let Err(e) = packets::check_routed(input, &got.packet, *src, *dst) {
                errs.push(format!("routed output: {e}"));
            }
        }
        Expect::Nat { routed, src, dst } => {
            if let Err(e) = packets::check_translated(input, &got.packet, *routed, *src, *dst) {
                errs.push(format!("translated output: {e}"));
            }
        }
        Expect::DstMac(mac) => {
            let mut w = input.to_vec();
            w[0..6].copy_from_slice(mac);
            if got.packet != w {
                errs.push(format!(
                    "want only the dst MAC rewritten to {mac:02x?}: {} → {}",
                    packets::hex(input),
                    packets::hex(&got.packet)
                ));
            }
        }
    }
    errs
}

/// The addresses a drop event names: IPv4 source and destination of a frame
/// long enough for an IPv4 header (also under one or two VLAN tags), ARP
/// sender and target of one long enough for an ARP body, else none (0),
/// valid headers or not.
fn event_addresses(pkt: &[u8]) -> (u32, u32) {
    let at = |i: usize| u32::from_be_bytes(pkt[i..i + 4].try_into().unwrap());
    match pkt.get(12..14) {
        Some([0x08, 0x00]) if pkt.len() >= ETH_HLEN + 20 => (at(26), at(30)),
        Some([0x08, 0x06]) if pkt.len() >= ETH_HLEN + 28 => (at(28), at(38)),
        Some(&[a, b]) if packets::is_vlan_tag(u16::from_be_bytes([a, b])) => {
            match parse_tagged(pkt) {
                Ok(Tagged::Ipv4 { src, dst }) => (src.into(), dst.into()),
                _ => (0, 0),
            }
        }
        _ => (0, 0),
    }
}

/// Create interfaces `names` inside `ns` and return their ifindexes (TC
/// test runs need a real device in the calling thread's namespace). They
/// are veth pairs (`NAME` / `NAMEx`): this kernel has no dummy driver.
pub fn dummies(ns: &crate::netns::Netns, names: &[&str]) -> Vec<u32> {
    names
        .iter()
        .map(|n| {
            let peer = format!("{n}x");
            ns.exec(&[
                "ip", "link", "add", n, "type", "veth", "peer", "name", &peer,
            ]);
            ns.ifindex(n)
        })
        .collect()
}
