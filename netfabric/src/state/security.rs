//! Security groups (docs/security-groups.md): a receiving owner narrows what
//! reaches its containers, per way in (a group it is in, or its own
//! containers), to a list of protocols and ports.
//!
//! This module holds the objects as stored, the `tcp/5432` rule syntax and
//! the merging of rules; `scopes.rs` derives from them the `PORT_SCOPES`
//! entries the whole state implies ([`crate::state::State::port_scopes`]).

use std::{fmt, str::FromStr};

use netfabric_common::conntrack::{
    PORT_SCOPE_RULES, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PortRule, PortScope,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::path;

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
}
