//! Security groups (docs/security-groups.md): a receiving owner narrows what
//! reaches its containers, per way in (a group it is in, or its own
//! containers), to a list of protocols and ports.
//!
//! This module holds the objects as stored, the `tcp/5432` rule syntax, the
//! merging of rules, and [`State::port_scopes`]: the `PORT_SCOPES` entries
//! the whole state implies (the agent writes them, validation bounds them).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    str::FromStr,
};

use netfabric_common::{
    PORT_SCOPES_ENTRIES, SYSTEM_OWNER,
    conntrack::{
        PORT_SCOPE_RULES, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PortRule, PortScope, ScopedPair,
    },
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    error::{StateError, path},
    model::State,
};

/// How a source reaches the receiving owner: through a group the receiver
/// is in, or as one of the receiver's own containers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Via {
    /// Same-owner traffic.
    Own,
    /// Owners sharing this group with the receiver.
    Group(String),
}

impl fmt::Display for Via {
    /// `(own)` or the group's name: what follows `<owner>/` in a field path
    /// (parentheses never occur in a group's name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Own => f.write_str("(own)"),
            Via::Group(g) => f.write_str(g),
        }
    }
}

/// A security group: what `owner`'s containers leave open to sources that
/// come `via` one way in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroup {
    /// The receiving owner.
    pub owner: String,
    pub via: Via,
    /// What stays open; empty: nothing.
    #[serde(default)]
    pub allow: Vec<Allow>,
}

impl SecurityGroup {
    /// `alice/team` or `alice/(own)`: how errors and listings name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.owner, self.via)
    }

    /// `security_groups[alice/team].<leaf>`.
    pub fn field(&self, leaf: &str) -> String {
        path("security_groups", &self.id(), leaf)
    }
}

/// A transport protocol a rule can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
            Protocol::Icmp => PROTO_ICMP,
        }
    }

    pub const fn from_number(n: u8) -> Option<Protocol> {
        match n {
            PROTO_TCP => Some(Protocol::Tcp),
            PROTO_UDP => Some(Protocol::Udp),
            PROTO_ICMP => Some(Protocol::Icmp),
            _ => None,
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

/// One rule: a protocol and, for TCP and UDP, an inclusive range of
/// destination ports. Written `tcp/5432`, `udp/5000-5010`, `icmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Allow {
    pub protocol: Protocol,
    /// 1..=65535 for TCP/UDP, `first <= last`; 0 for ICMP (every ICMP
    /// message).
    pub first: u16,
    pub last: u16,
}

/// The rule syntax, as error messages show it.
pub const ALLOW_SYNTAX: &str = "expected tcp/PORT, tcp/FIRST-LAST, udp/PORT, udp/FIRST-LAST or icmp \
                                (ports 1 to 65535, e.g. tcp/5432 or udp/5000-5010)";

/// A rule that does not parse; the caller names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a rule: {reason}; {ALLOW_SYNTAX}")]
pub struct ParseAllowError {
    pub value: String,
    pub reason: &'static str,
}

impl FromStr for Allow {
    type Err = ParseAllowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseAllowError {
            value: s.to_owned(),
            reason,
        };
        let (proto, ports) = match s.split_once('/') {
            Some((p, ports)) => (p, Some(ports)),
            None => (s, None),
        };
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            _ => return Err(err("the protocol must be tcp, udp or icmp")),
        };
        let port = |p: &str| -> Result<u16, ParseAllowError> {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("a port is a number from 1 to 65535"));
            }
            match p.parse::<u32>() {
                Ok(n @ 1..=65535) => Ok(n as u16),
                _ => Err(err("a port is a number from 1 to 65535")),
            }
        };
        match (protocol, ports) {
            (Protocol::Icmp, None) => Ok(Allow {
                protocol,
                first: 0,
                last: 0,
            }),
            (Protocol::Icmp, Some(_)) => Err(err("icmp takes no port")),
            (_, None) => Err(err("tcp and udp need a port or a range")),
            (_, Some(ports)) => {
                let (first, last) = match ports.split_once('-') {
                    Some((a, b)) => (port(a)?, port(b)?),
                    None => {
                        let p = port(ports)?;
                        (p, p)
                    }
                };
                if first > last {
                    return Err(err("a range runs from the lower port to the higher"));
                }
                Ok(Allow {
                    protocol,
                    first,
                    last,
                })
            }
        }
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Protocol::Icmp => f.write_str("icmp"),
            p if self.first == self.last => write!(f, "{}/{}", p.label(), self.first),
            p => write!(f, "{}/{}-{}", p.label(), self.first, self.last),
        }
    }
}

impl Serialize for Allow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Allow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Allow {
    /// The datapath's form.
    pub fn to_port_rule(self) -> PortRule {
        PortRule {
            first_port: self.first,
            last_port: self.last,
            protocol: self.protocol.number(),
            _pad: [0; 3],
        }
    }

    /// Back from the datapath's form (`None`: a protocol no rule has).
    pub fn from_port_rule(r: &PortRule) -> Option<Allow> {
        let protocol = Protocol::from_number(r.protocol)?;
        Some(match protocol {
            Protocol::Icmp => Allow {
                protocol,
                first: 0,
                last: 0,
            },
            _ => Allow {
                protocol,
                first: r.first_port,
                last: r.last_port,
            },
        })
    }
}

/// The rules in canonical form: sorted, overlapping and adjacent ranges of
/// one protocol merged (`tcp/1-5` + `tcp/6` = `tcp/1-6`), one `icmp` at
/// most. Opens exactly what the input opens.
pub fn merge_rules(rules: impl IntoIterator<Item = Allow>) -> Vec<Allow> {
    let mut sorted: Vec<Allow> = rules.into_iter().collect();
    sorted.sort();
    let mut out: Vec<Allow> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(prev)
                if prev.protocol == r.protocol
                    && u32::from(r.first) <= u32::from(prev.last) + 1 =>
            {
                prev.last = prev.last.max(r.last);
            }
            _ => out.push(r),
        }
    }
    out
}

/// The `PORT_SCOPES` value of merged `rules` (at most [`PORT_SCOPE_RULES`]).
pub fn port_scope(rules: &[Allow]) -> PortScope {
    debug_assert!(rules.len() <= PORT_SCOPE_RULES);
    let mut scope = PortScope::default();
    for (slot, r) in scope.rules.iter_mut().zip(rules) {
        *slot = r.to_port_rule();
    }
    scope.count = rules.len().min(PORT_SCOPE_RULES) as u32;
    scope
}

/// The rules of a `PORT_SCOPES` value.
pub fn scope_rules(scope: &PortScope) -> Vec<Allow> {
    scope
        .rules
        .iter()
        .take(scope.count.min(PORT_SCOPE_RULES as u32) as usize)
        .filter_map(Allow::from_port_rule)
        .collect()
}

impl State {
    pub fn security_group(&self, owner: &str, via: &Via) -> Option<&SecurityGroup> {
        self.security_groups
            .iter()
            .find(|g| g.owner == owner && g.via == *via)
    }

    /// Owners that have at least one security group (the receivers whose
    /// endpoints carry `INGRESS_SCOPED`).
    pub fn scoped_owners(&self) -> BTreeSet<&str> {
        self.security_groups
            .iter()
            .map(|g| g.owner.as_str())
            .collect()
    }

    /// Every `PORT_SCOPES` entry the state implies: per receiving owner R
    /// with security groups, each sender whose access is narrowed, and the
    /// merged rules it keeps.
    ///
    /// * Via own: R's own containers (pair (R, R)) get that group's rules.
    /// * Another owner S (not the system owner) that shares groups with R:
    ///   if any shared group has no security group of R, S is not narrowed
    ///   (groups add up; the most open wins); otherwise the union of R's
    ///   rules for the shared groups.
    ///
    /// Refused (naming the field): a pair whose merged rules exceed
    /// [`PORT_SCOPE_RULES`], or more pairs than `PORT_SCOPES` holds. Names
    /// that do not resolve are skipped (validation reports them first).
    pub fn port_scopes(&self) -> Result<BTreeMap<ScopedPair, Vec<Allow>>, StateError> {
        let ids: BTreeMap<&str, u32> = self
            .owners
            .iter()
            .map(|o| (o.name.as_str(), o.id))
            .collect();
        // receiver -> via -> its security group
        let mut by_owner: BTreeMap<&str, BTreeMap<&Via, &SecurityGroup>> = BTreeMap::new();
        for sg in &self.security_groups {
            by_owner
                .entry(sg.owner.as_str())
                .or_default()
                .insert(&sg.via, sg);
        }
        let mut out = BTreeMap::new();
        for (receiver, vias) in by_owner {
            let Some(&r) = ids.get(receiver) else {
                continue;
            };
            if let Some(own) = vias.get(&Via::Own) {
                out.insert(
                    ScopedPair {
                        receiver: r,
                        sender: r,
                    },
                    merge_rules(own.allow.iter().copied()),
                );
            }
            // sender -> (narrowed through these security groups, or open)
            let mut senders: BTreeMap<u32, Option<Vec<&SecurityGroup>>> = BTreeMap::new();
            for group in self.groups.iter().filter(|g| g.members.contains(receiver)) {
                let sg = vias.get(&Via::Group(group.name.clone())).copied();
                for member in &group.members {
                    let Some(&s) = ids.get(member.as_str()) else {
                        continue;
                    };
                    if s == r || s == SYSTEM_OWNER {
                        continue;
                    }
                    let entry = senders.entry(s).or_insert_with(|| Some(Vec::new()));
                    match (entry.as_mut(), sg) {
                        (Some(list), Some(sg)) => list.push(sg),
                        _ => *entry = None,
                    }
                }
            }
            for (s, narrowed) in senders {
                let Some(sgs) = narrowed else { continue };
                let rules = merge_rules(sgs.iter().flat_map(|sg| sg.allow.iter().copied()));
                if rules.len() > PORT_SCOPE_RULES {
                    let sender = self.owner_by_id(s).map_or("?", |o| o.name.as_str());
                    let names: Vec<String> = sgs.iter().map(|sg| sg.id()).collect();
                    return Err(StateError::invalid(
                        path("security_groups", &names[0], "allow"),
                        format!(
                            "owner {sender} reaches {receiver} only through the narrowed groups \
                             of {}, whose rules together are {} after merging overlapping \
                             and adjacent ranges; one pair of owners holds at most \
                             {PORT_SCOPE_RULES} (use port ranges)",
                            names.join(", "),
                            rules.len(),
                        ),
                    ));
                }
                out.insert(
                    ScopedPair {
                        receiver: r,
                        sender: s,
                    },
                    rules,
                );
            }
        }
        if out.len() > PORT_SCOPES_ENTRIES as usize {
            return Err(StateError::invalid(
                "security_groups",
                format!(
                    "they narrow {} pairs of owners; the datapath's PORT_SCOPES holds at most \
                     {PORT_SCOPES_ENTRIES}",
                    out.len()
                ),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(s: &str) -> Allow {
        s.parse().unwrap()
    }

    #[test]
    fn rules_parse_and_print() {
        for (text, proto, first, last) in [
            ("tcp/5432", Protocol::Tcp, 5432, 5432),
            ("udp/5000-5010", Protocol::Udp, 5000, 5010),
            ("tcp/1-65535", Protocol::Tcp, 1, 65535),
            ("icmp", Protocol::Icmp, 0, 0),
        ] {
            let a = allow(text);
            assert_eq!((a.protocol, a.first, a.last), (proto, first, last));
            assert_eq!(a.to_string(), text);
            assert_eq!(Allow::from_port_rule(&a.to_port_rule()), Some(a));
        }
        assert_eq!(allow("tcp/80-80").to_string(), "tcp/80");
        for bad in [
            "",
            "tcp",
            "tcp/",
            "tcp/0",
            "tcp/65536",
            "tcp/-1",
            "tcp/+5",
            "tcp/5-",
            "tcp/10-5",
            "icmp/8",
            "sctp/5",
            "TCP/5",
            "tcp/5/6",
            "udp/ 5",
            "tcp/1-2-3",
            "tcp/000080000",
        ] {
            let err = bad.parse::<Allow>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn merging_joins_overlaps_and_neighbours_only() {
        let merged = merge_rules(
            [
                "tcp/10-20",
                "udp/15",
                "tcp/21",
                "icmp",
                "tcp/15-18",
                "tcp/23",
                "icmp",
                "udp/16-17",
                "tcp/65535",
                "tcp/1-65534",
            ]
            .map(allow),
        );
        let text: Vec<String> = merged.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["tcp/1-65535", "udp/15-17", "icmp"]);
        let text: Vec<String> = merge_rules(["tcp/5", "tcp/7", "udp/6"].map(allow))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(text, ["tcp/5", "tcp/7", "udp/6"]);
    }

    #[test]
    fn a_port_scope_opens_what_its_rules_open() {
        let rules = merge_rules(["tcp/5432", "udp/5000-5010", "icmp"].map(allow));
        let scope = port_scope(&rules);
        assert!(scope.opens(PROTO_TCP, 5432));
        assert!(!scope.opens(PROTO_TCP, 5433));
        assert!(scope.opens(PROTO_UDP, 5005));
        assert!(!scope.opens(PROTO_UDP, 5432));
        assert!(scope.opens(PROTO_ICMP, 0));
        assert_eq!(scope_rules(&scope), rules);
        assert!(!port_scope(&[]).opens(PROTO_TCP, 1));
    }

    #[test]
    fn via_is_stored_as_own_or_a_group() {
        let sg = SecurityGroup {
            owner: "alice".into(),
            via: Via::Group("team".into()),
            allow: vec![allow("tcp/5432")],
        };
        let json = serde_json::to_string(&sg).unwrap();
        assert_eq!(
            json,
            r#"{"owner":"alice","via":{"group":"team"},"allow":["tcp/5432"]}"#
        );
        assert_eq!(serde_json::from_str::<SecurityGroup>(&json).unwrap(), sg);
        let own: SecurityGroup =
            serde_json::from_str(r#"{"owner":"alice","via":"own","allow":["icmp"]}"#).unwrap();
        assert_eq!(own.via, Via::Own);
        assert_eq!(own.id(), "alice/(own)");
        let err = serde_json::from_str::<SecurityGroup>(
            r#"{"owner":"alice","via":"own","allow":["tcp/0"]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"tcp/0\""), "{err}");
    }

    /// alice, bob, carol, dave; team = {alice, bob, carol, system},
    /// ops = {alice, bob}, dev = {alice, dave}.
    fn state() -> State {
        let mut s = State::default();
        for o in ["alice", "bob", "carol", "dave"] {
            s.create_owner(o).unwrap();
        }
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        s.create_group("team", &names(&["alice", "bob", "carol", "system"]))
            .unwrap();
        s.create_group("ops", &names(&["alice", "bob"])).unwrap();
        s.create_group("dev", &names(&["alice", "dave"])).unwrap();
        s
    }

    fn id(s: &State, name: &str) -> u32 {
        s.owner(name).unwrap().id
    }

    fn scopes(s: &State) -> BTreeMap<(String, String), Vec<String>> {
        s.port_scopes()
            .unwrap()
            .into_iter()
            .map(|(pair, rules)| {
                let name = |id| s.owner_by_id(id).unwrap().name.clone();
                (
                    (name(pair.receiver), name(pair.sender)),
                    rules.iter().map(ToString::to_string).collect(),
                )
            })
            .collect()
    }

    fn set(s: &mut State, owner: &str, via: Via, rules: &[&str]) {
        let rules: Vec<Allow> = rules.iter().map(|r| allow(r)).collect();
        s.set_security_group(owner, via, &rules).unwrap();
        s.validate().unwrap();
    }

    fn key(r: &str, s: &str) -> (String, String) {
        (r.to_owned(), s.to_owned())
    }

    #[test]
    fn groups_add_up_and_the_most_open_wins() {
        let mut s = state();
        assert!(scopes(&s).is_empty(), "no security group: nothing narrowed");
        set(&mut s, "alice", Via::Group("team".into()), &["tcp/5432"]);
        // carol shares only team with alice: narrowed. bob shares ops too,
        // which alice did not narrow: open. system is never narrowed; dave
        // does not share team.
        assert_eq!(
            scopes(&s),
            BTreeMap::from([(key("alice", "carol"), vec!["tcp/5432".to_owned()])])
        );
        assert_eq!(s.scoped_owners(), BTreeSet::from(["alice"]));
        // Narrow ops too: bob gets the union of both.
        set(
            &mut s,
            "alice",
            Via::Group("ops".into()),
            &["udp/53", "tcp/5433"],
        );
        let got = scopes(&s);
        assert_eq!(got[&key("alice", "bob")], ["tcp/5432-5433", "udp/53"]);
        assert_eq!(got[&key("alice", "carol")], ["tcp/5432"]);
        assert_eq!(got.len(), 2);
        // Own containers: only through the own scope.
        set(&mut s, "alice", Via::Own, &[]);
        assert_eq!(scopes(&s)[&key("alice", "alice")], Vec::<String>::new());
        // A receiver's scope says nothing about its own sending.
        assert!(!scopes(&s).keys().any(|(r, _)| r != "alice"));
        // Replacing a scope replaces its rules; an identical set is no change.
        let five = [allow("tcp/5")];
        assert!(
            s.set_security_group("alice", Via::Group("team".into()), &five)
                .unwrap()
        );
        assert!(
            !s.set_security_group("alice", Via::Group("team".into()), &five)
                .unwrap()
        );
        assert_eq!(scopes(&s)[&key("alice", "carol")], ["tcp/5"]);
        // Deleting the group deletes its security groups.
        s.delete_group("team").unwrap();
        s.validate().unwrap();
        assert!(
            s.security_group("alice", &Via::Group("team".into()))
                .is_none()
        );
        assert!(!scopes(&s).contains_key(&key("alice", "carol")));
        assert_eq!(id(&s, "alice"), 2);
    }

    #[test]
    fn a_security_group_of_a_departed_member_narrows_nothing() {
        let mut s = state();
        set(&mut s, "alice", Via::Group("dev".into()), &["tcp/80"]);
        assert!(scopes(&s).contains_key(&key("alice", "dave")));
        s.remove_group_members("dev", &["alice".into()]).unwrap();
        s.validate().unwrap();
        assert!(scopes(&s).is_empty());
        s.add_group_members("dev", &["alice".into()]).unwrap();
        assert!(
            scopes(&s).contains_key(&key("alice", "dave")),
            "back: narrowed again"
        );
        // Deleting the owner deletes its security groups.
        s.remove_group_members("dev", &["alice".into()]).unwrap();
        for g in ["team", "ops"] {
            s.remove_group_members(g, &["alice".into()]).unwrap();
        }
        s.delete_owner("alice").unwrap();
        assert!(s.security_groups.is_empty());
        s.validate().unwrap();
    }

    fn refused(s: &State) -> StateError {
        s.validate().expect_err("must be refused")
    }

    #[test]
    fn bad_security_groups_are_refused_naming_the_field() {
        let mut s = state();
        let team = Via::Group("team".into());
        let err = s.set_security_group("zed", team.clone(), &[]).unwrap_err();
        assert_eq!(err.field(), "security_groups[zed/team].owner");
        let err = s
            .set_security_group("alice", Via::Group("nope".into()), &[])
            .unwrap_err();
        assert_eq!(err.field(), "security_groups[alice/nope].via");
        let err = s.set_security_group("dave", team.clone(), &[]).unwrap_err();
        assert_eq!(err.field(), "security_groups[dave/team].via");
        assert!(err.to_string().contains("not a member"), "{err}");

        let mut sys = s.clone();
        sys.set_security_group("system", team.clone(), &[]).unwrap();
        let err = refused(&sys);
        assert_eq!(err.field(), "security_groups[system/team].owner");

        let mut dup = s.clone();
        dup.set_security_group("alice", team.clone(), &[]).unwrap();
        dup.security_groups.push(dup.security_groups[0].clone());
        assert_eq!(refused(&dup).field(), "security_groups[alice/team]");

        let mut dangling = s.clone();
        dangling
            .set_security_group("alice", team.clone(), &[])
            .unwrap();
        dangling.groups.retain(|g| g.name != "team");
        assert_eq!(
            refused(&dangling).field(),
            "security_groups[alice/team].via"
        );

        // Nine separate ports: too many for one scope.
        let nine: Vec<Allow> = (0..9)
            .map(|i| allow(&format!("tcp/{}", 100 + 2 * i)))
            .collect();
        let mut big = s.clone();
        big.security_groups.push(SecurityGroup {
            owner: "alice".into(),
            via: team.clone(),
            allow: nine.clone(),
        });
        let err = refused(&big);
        assert_eq!(err.field(), "security_groups[alice/team].allow");
        assert!(err.to_string().contains("9 rules"), "{err}");
        // Nine that merge into one are fine.
        let mut merged = s.clone();
        let run: Vec<Allow> = (0..9).map(|i| allow(&format!("tcp/{}", 100 + i))).collect();
        merged
            .set_security_group("alice", team.clone(), &run)
            .unwrap();
        merged.validate().unwrap();
        assert_eq!(merged.security_groups[0].allow, [allow("tcp/100-108")]);

        // Two scopes of five each are fine alone; bob, narrowed by both,
        // would need ten.
        let mut union = s.clone();
        let five = |base: u16| -> Vec<Allow> {
            (0..5)
                .map(|i| allow(&format!("udp/{}", base + 2 * i)))
                .collect()
        };
        union
            .set_security_group("alice", team, &five(1000))
            .unwrap();
        union.validate().unwrap();
        union
            .set_security_group("alice", Via::Group("ops".into()), &five(2000))
            .unwrap();
        let err = refused(&union);
        assert!(err.field().starts_with("security_groups[alice/"), "{err}");
        assert!(err.to_string().contains("owner bob"), "{err}");
    }

    #[test]
    fn more_pairs_than_the_map_holds_are_refused() {
        // 257 x 256 members of one group narrowed by each of them: 65,792
        // pairs.
        let mut s = State::default();
        let members: Vec<String> = (0..257).map(|i| format!("o{i}")).collect();
        for m in &members {
            s.create_owner(m).unwrap();
        }
        s.create_group("all", &members).unwrap();
        for m in &members {
            s.security_groups.push(SecurityGroup {
                owner: m.clone(),
                via: Via::Group("all".into()),
                allow: vec![],
            });
        }
        let err = refused(&s);
        assert_eq!(err.field(), "security_groups");
        assert!(err.to_string().contains("65792 pairs"), "{err}");
        s.security_groups.pop();
        s.validate().expect("256 x 256 = 65,536 pairs fit");
    }
}
