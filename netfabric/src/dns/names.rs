//! The names of one applied state, as this host's resolver sees them:
//! `<container>.<owner>.<domain>` → A, `<service>.<owner>.<domain>` → the
//! service's VIP (docs/services.md#dns-names), the reverse of every
//! container address and VIP → PTR, and who may see which name
//! ([`Directory::visible`]).
//!
//! A [`Directory`] is built once per applied state and never changed: the
//! server swaps in the next one, so a query sees one whole state.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr},
};

use hickory_proto::rr::{
    Name, RData, Record, RecordType,
    rdata::{A, PTR, SOA},
};
use netfabric_common::{
    OwnerPair,
    policy::{self, Party},
};

use crate::{
    conventions,
    state::{Ipv4Prefix, State, member_pairs},
};

/// The default domain ([`conventions::DEFAULT_DNS_DOMAIN`]).
pub const DEFAULT_DOMAIN: &str = conventions::DEFAULT_DNS_DOMAIN;
/// TTL of every answer about our names (and of negative answers): a change
/// of the state is seen by caches within this many seconds.
pub const TTL: u32 = 5;

/// Why a domain cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("--dns-domain {domain:?}: not a DNS name: {reason}")]
    Syntax { domain: String, reason: String },
    #[error("--dns-domain {domain:?}: must have at least one label (not the root)")]
    Root { domain: String },
}

/// Parses a domain given on the command line (`netfabric.internal`, with
/// or without the final dot) into a lower-case absolute name.
pub fn parse_domain(domain: &str) -> Result<Name, DomainError> {
    let mut name = Name::from_ascii(domain).map_err(|e| DomainError::Syntax {
        domain: domain.to_owned(),
        reason: e.to_string(),
    })?;
    name.set_fqdn(true);
    if name.is_root() {
        return Err(DomainError::Root {
            domain: domain.to_owned(),
        });
    }
    Ok(name.to_lowercase())
}

/// Who asks, from the query's source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// A container of this host (its owner's id).
    Container(u32),
    /// The host itself (a query from the gateway address).
    Host,
}

impl Asker {
    /// As the policy rule sees it: the host is outside every zone.
    pub fn party(self) -> Party {
        match self {
            Asker::Container(owner) => Party::Owner(owner),
            Asker::Host => Party::Outside,
        }
    }
}

/// What the directory says about a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Records to answer with.
    Answer(Vec<Record>),
    /// The name exists for this asker, not with this type (AAAA).
    NoData,
    /// The name does not exist, or the asker may not see it.
    NxDomain,
    /// Not a name of ours: for the upstream resolvers.
    NotOurs,
}

struct Entry {
    owner: u32,
    owner_name: String,
    address: Ipv4Addr,
}

/// The names of one state for one host.
pub struct Directory {
    domain: Name,
    /// Container name → its entry.
    containers: HashMap<String, Entry>,
    /// Address → container name.
    by_address: HashMap<Ipv4Addr, String>,
    /// (owner name, service name) → the service's VIP entry.
    services: HashMap<(String, String), Entry>,
    /// VIP → (owner name, service name).
    by_vip: HashMap<Ipv4Addr, (String, String)>,
    /// This host's containers: address → owner id (who may ask).
    local: HashMap<Ipv4Addr, u32>,
    /// Owner pairs sharing at least one group.
    shared: HashSet<OwnerPair>,
    /// Every zone's /16: reverse names inside them are ours.
    zones: Vec<Ipv4Prefix>,
    soa: Record,
}

impl Directory {
    /// No state yet: only the host may ask, and nothing of ours exists.
    pub fn empty(domain: Name) -> Self {
        Directory {
            soa: soa_record(&domain, 0),
            domain,
            containers: HashMap::new(),
            by_address: HashMap::new(),
            services: HashMap::new(),
            by_vip: HashMap::new(),
            local: HashMap::new(),
            shared: HashSet::new(),
            zones: Vec::new(),
        }
    }

    /// The names of `state` as host `host` answers them (`revision`: the
    /// SOA serial, so a cache can tell states apart).
    pub fn new(domain: Name, state: &State, host: &str, revision: u64) -> Self {
        let owner_id: HashMap<&str, u32> = state
            .owners
            .iter()
            .map(|o| (o.name.as_str(), o.id))
            .collect();
        let mut d = Directory::empty(domain);
        d.soa = soa_record(&d.domain, revision as u32);
        for c in &state.containers {
            let Some(&owner) = owner_id.get(c.owner.as_str()) else {
                continue;
            };
            d.by_address.insert(c.address, c.name.clone());
            if c.host == host {
                d.local.insert(c.address, owner);
            }
            d.containers.insert(
                c.name.clone(),
                Entry {
                    owner,
                    owner_name: c.owner.clone(),
                    address: c.address,
                },
            );
        }
        for svc in &state.services {
            let Some(&owner) = owner_id.get(svc.owner.as_str()) else {
                continue;
            };
            let id = (svc.owner.clone(), svc.name.clone());
            d.by_vip.insert(svc.vip, id.clone());
            d.services.insert(
                id,
                Entry {
                    owner,
                    owner_name: svc.owner.clone(),
                    address: svc.vip,
                },
            );
        }
        for g in &state.groups {
            let ids = g
                .members
                .iter()
                .filter_map(|m| owner_id.get(m.as_str()).copied());
            d.shared.extend(member_pairs(ids));
        }
        d.zones = state.zones.iter().map(|z| z.prefix).collect();
        d
    }

    /// The domain names are under.
    pub fn domain(&self) -> &Name {
        &self.domain
    }

    /// The SOA of the domain (the authority of negative answers).
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// Who `source` is, or `None` for a source that gets no answers (not a
    /// container of this host, not the host).
    pub fn asker(&self, source: IpAddr) -> Option<Asker> {
        let IpAddr::V4(v4) = source else {
            return None;
        };
        if v4 == conventions::GATEWAY {
            return Some(Asker::Host);
        }
        self.local.get(&v4).map(|&owner| Asker::Container(owner))
    }

    /// Whether `asker` may see the names of `owner`'s containers: exactly
    /// when it may talk to them (the datapath's rule,
    /// [`netfabric_common::policy::allows`], with the state's groups).
    pub fn visible(&self, asker: Asker, owner: u32) -> bool {
        policy::allows(asker.party(), Party::Owner(owner), |pair| {
            self.shared.contains(pair)
        })
    }

    /// What to answer `asker` for `name` (lower case) and `qtype`.
    pub fn resolve(&self, asker: Asker, name: &Name, qtype: RecordType) -> Resolution {
        if self.domain.zone_of(name) {
            return self.resolve_forward(asker, name, qtype);
        }
        if let Some(addr) = self.reverse_address(name) {
            return self.resolve_reverse(asker, name, addr, qtype);
        }
        Resolution::NotOurs
    }

    fn resolve_forward(&self, asker: Asker, name: &Name, qtype: RecordType) -> Resolution {
        let extra = name.num_labels() - self.domain.num_labels();
        if extra == 0 {
            return match qtype {
                RecordType::SOA => Resolution::Answer(vec![self.soa.clone()]),
                _ => Resolution::NoData,
            };
        }
        let labels: Vec<&[u8]> = name.iter().collect();
        if extra != 2 {
            return Resolution::NxDomain;
        }
        let (Ok(first), Ok(owner)) = (
            std::str::from_utf8(labels[0]),
            std::str::from_utf8(labels[1]),
        ) else {
            return Resolution::NxDomain;
        };
        // A container, or else a service, of that owner (one owner's
        // containers and services never share a name).
        let entry = self
            .containers
            .get(first)
            .filter(|e| e.owner_name == owner)
            .or_else(|| self.services.get(&(owner.to_owned(), first.to_owned())));
        let Some(entry) = entry else {
            return Resolution::NxDomain;
        };
        if !self.visible(asker, entry.owner) {
            return Resolution::NxDomain;
        }
        match qtype {
            RecordType::A | RecordType::ANY => Resolution::Answer(vec![Record::from_rdata(
                name.clone(),
                TTL,
                RData::A(A(entry.address)),
            )]),
            _ => Resolution::NoData,
        }
    }

    fn resolve_reverse(
        &self,
        asker: Asker,
        name: &Name,
        addr: Option<Ipv4Addr>,
        qtype: RecordType,
    ) -> Resolution {
        let Some(addr) = addr else {
            // A reverse name above an address inside a zone
            // (`1.10.in-addr.arpa`): nothing to say, nothing to forward.
            return Resolution::NxDomain;
        };
        let entry = self
            .by_address
            .get(&addr)
            .and_then(|c| Some((c, self.containers.get(c)?)))
            .or_else(|| {
                let id = self.by_vip.get(&addr)?;
                Some((&id.1, self.services.get(id)?))
            });
        let Some((container, entry)) = entry else {
            return Resolution::NxDomain;
        };
        if !self.visible(asker, entry.owner) {
            return Resolution::NxDomain;
        }
        match qtype {
            RecordType::PTR | RecordType::ANY => {
                let Ok(target) = self.name_of(container, &entry.owner_name) else {
                    return Resolution::NxDomain;
                };
                Resolution::Answer(vec![Record::from_rdata(
                    name.clone(),
                    TTL,
                    RData::PTR(PTR(target)),
                )])
            }
            _ => Resolution::NoData,
        }
    }

    /// `<container>.<owner>.<domain>` (or `<service>.<owner>.<domain>`).
    pub fn name_of(&self, container: &str, owner: &str) -> Result<Name, hickory_proto::ProtoError> {
        Name::from_ascii(format!("{container}.{owner}"))?.append_domain(&self.domain)
    }

    /// For a name under `in-addr.arpa` inside a zone's /16: `Some(Some(addr))`
    /// for a whole address, `Some(None)` for a shorter name inside a zone;
    /// `None` if not inside a zone (someone else's reverse space).
    fn reverse_address(&self, name: &Name) -> Option<Option<Ipv4Addr>> {
        let arpa = Name::from_ascii("in-addr.arpa.").ok()?;
        if !arpa.zone_of(name) || name.num_labels() < 4 {
            return None;
        }
        let octets: Vec<u8> = name
            .iter()
            .rev()
            .skip(2)
            .map(|l| std::str::from_utf8(l).ok()?.parse::<u8>().ok())
            .collect::<Option<Vec<u8>>>()?;
        if octets.len() > 4 {
            return None;
        }
        let prefix = u32::from(octets[0]) << 24 | u32::from(octets[1]) << 16;
        let in_zone = self
            .zones
            .iter()
            .any(|z| z.contains(Ipv4Addr::from(prefix)));
        if !in_zone {
            return None;
        }
        Some((octets.len() == 4).then(|| Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])))
    }
}

fn soa_record(domain: &Name, serial: u32) -> Record {
    let rname = Name::from_ascii("hostmaster")
        .and_then(|n| n.append_domain(domain))
        .unwrap_or_else(|_| domain.clone());
    Record::from_rdata(
        domain.clone(),
        TTL,
        RData::SOA(SOA::new(domain.clone(), rname, serial, 60, 60, 60, TTL)),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{
        MacAddr,
        state::{Container, Group, Host, Owner, SYSTEM_OWNER_ID, SYSTEM_OWNER_NAME, Zone},
    };

    const ALICE: u32 = 2;
    const BOB: u32 = 3;
    const CAROL: u32 = 4;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// alice and carol share `team`; bob is alone. h1 holds alice-web
    /// (.1), bob-web (.2), lb (.3, system); h2 holds alice-db, carol-api.
    fn state() -> State {
        let host = |name: &str, number: u32| Host {
            name: name.into(),
            zone: "z".into(),
            number,
            subnet: Ipv4Prefix::new(Ipv4Addr::new(10, 1, number as u8, 0), 24),
            uplink: "eth0".into(),
            underlay_ip: Ipv4Addr::new(192, 0, 2, number as u8),
            underlay_mac: MacAddr([2, 0, 0, 0, 0, number as u8]),
        };
        let c = |name: &str, owner: &str, host: &str, addr: &str| Container {
            name: name.into(),
            owner: owner.into(),
            host: host.into(),
            address: ip(addr),
        };
        let owner = |name: &str, id: u32| Owner {
            name: name.into(),
            id,
            egress: Default::default(),
        };
        State {
            zones: vec![Zone {
                name: "z".into(),
                prefix: Ipv4Prefix::new(ip("10.1.0.0"), 16),
                slot: 0,
                gateway: None,
            }],
            hosts: vec![host("h1", 1), host("h2", 2)],
            owners: vec![
                owner(SYSTEM_OWNER_NAME, SYSTEM_OWNER_ID),
                owner("alice", ALICE),
                owner("bob", BOB),
                owner("carol", CAROL),
            ],
            groups: vec![Group {
                name: "team".into(),
                members: BTreeSet::from(["alice".to_owned(), "carol".to_owned()]),
            }],
            containers: vec![
                c("alice-web", "alice", "h1", "10.1.1.1"),
                c("bob-web", "bob", "h1", "10.1.1.2"),
                c("lb", SYSTEM_OWNER_NAME, "h1", "10.1.1.3"),
                c("alice-db", "alice", "h2", "10.1.2.1"),
                c("carol-api", "carol", "h2", "10.1.2.2"),
            ],
            security_groups: Vec::new(),
            services: Vec::new(),
            next_owner_id: 5,
        }
    }

    fn dir() -> Directory {
        Directory::new(parse_domain(DEFAULT_DOMAIN).unwrap(), &state(), "h1", 7)
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a_of(r: Resolution) -> Option<Ipv4Addr> {
        match r {
            Resolution::Answer(records) => match records[..] {
                [ref rec] => match &rec.data {
                    RData::A(a) => {
                        assert!(rec.ttl <= TTL);
                        Some(a.0)
                    }
                    other => panic!("not an A: {other:?}"),
                },
                _ => panic!("{records:?}"),
            },
            _ => None,
        }
    }

    #[test]
    fn askers_are_this_hosts_containers_and_the_host() {
        let d = dir();
        assert_eq!(
            d.asker(IpAddr::V4(ip("10.1.1.1"))),
            Some(Asker::Container(ALICE))
        );
        assert_eq!(
            d.asker(IpAddr::V4(ip("10.1.1.3"))),
            Some(Asker::Container(SYSTEM_OWNER_ID))
        );
        assert_eq!(d.asker(IpAddr::V4(conventions::GATEWAY)), Some(Asker::Host));
        // Another host's container, a vacant address, the underlay, IPv6.
        for refused in ["10.1.2.1", "10.1.1.9", "192.0.2.1", "127.0.0.1"] {
            assert_eq!(d.asker(IpAddr::V4(ip(refused))), None, "{refused}");
        }
        assert_eq!(d.asker("::1".parse().unwrap()), None);
        // Before the first state only the host may ask.
        let empty = Directory::empty(parse_domain(DEFAULT_DOMAIN).unwrap());
        assert_eq!(empty.asker(IpAddr::V4(ip("10.1.1.1"))), None);
        assert_eq!(
            empty.asker(IpAddr::V4(conventions::GATEWAY)),
            Some(Asker::Host)
        );
    }

    #[test]
    fn visibility_is_the_policy_rule() {
        let d = dir();
        let alice = Asker::Container(ALICE);
        let system = Asker::Container(SYSTEM_OWNER_ID);
        assert!(d.visible(alice, ALICE), "same owner");
        assert!(d.visible(alice, CAROL), "shared group");
        assert!(!d.visible(alice, BOB), "no shared group");
        assert!(d.visible(alice, SYSTEM_OWNER_ID), "system target");
        assert!(d.visible(system, BOB), "system asker");
        // The host is outside every zone: it may reach system containers only.
        assert!(d.visible(Asker::Host, SYSTEM_OWNER_ID));
        assert!(!d.visible(Asker::Host, ALICE));
    }

    #[test]
    fn a_records_follow_visibility() {
        let d = dir();
        let alice = Asker::Container(ALICE);
        let bob = Asker::Container(BOB);
        let q = |asker, n: &str| a_of(d.resolve(asker, &name(n), RecordType::A));
        assert_eq!(
            q(alice, "alice-db.alice.netfabric.internal."),
            Some(ip("10.1.2.1"))
        );
        assert_eq!(
            q(alice, "carol-api.carol.netfabric.internal."),
            Some(ip("10.1.2.2"))
        );
        assert_eq!(
            q(alice, "lb.system.netfabric.internal."),
            Some(ip("10.1.1.3"))
        );
        assert_eq!(
            q(bob, "bob-web.bob.netfabric.internal."),
            Some(ip("10.1.1.2"))
        );
        assert_eq!(
            q(
                Asker::Container(SYSTEM_OWNER_ID),
                "bob-web.bob.netfabric.internal."
            ),
            Some(ip("10.1.1.2"))
        );
        for (asker, hidden) in [
            (alice, "bob-web.bob.netfabric.internal."),
            (bob, "alice-db.alice.netfabric.internal."),
            (bob, "carol-api.carol.netfabric.internal."),
            // The right container under the wrong owner.
            (alice, "alice-db.carol.netfabric.internal."),
            // Absent, too short, too long.
            (alice, "nobody.alice.netfabric.internal."),
            (alice, "alice-db.netfabric.internal."),
            (alice, "alice.netfabric.internal."),
            (alice, "x.alice-db.alice.netfabric.internal."),
            (Asker::Host, "alice-db.alice.netfabric.internal."),
        ] {
            assert_eq!(
                d.resolve(asker, &name(hidden), RecordType::A),
                Resolution::NxDomain,
                "{hidden}"
            );
        }
    }

    #[test]
    fn aaaa_and_other_types_are_nodata_only_when_visible() {
        let d = dir();
        let alice = Asker::Container(ALICE);
        let db = name("alice-db.alice.netfabric.internal.");
        assert_eq!(d.resolve(alice, &db, RecordType::AAAA), Resolution::NoData);
        assert_eq!(d.resolve(alice, &db, RecordType::TXT), Resolution::NoData);
        assert_eq!(
            d.resolve(Asker::Container(BOB), &db, RecordType::AAAA),
            Resolution::NxDomain
        );
        // The domain itself exists: NODATA, its SOA on request.
        let apex = name("netfabric.internal.");
        assert_eq!(d.resolve(alice, &apex, RecordType::A), Resolution::NoData);
        assert!(matches!(
            d.resolve(alice, &apex, RecordType::SOA),
            Resolution::Answer(r) if r[0].record_type() == RecordType::SOA
        ));
    }

    #[test]
    fn ptr_names_the_container_when_visible() {
        let d = dir();
        let alice = Asker::Container(ALICE);
        let rev = name("1.2.1.10.in-addr.arpa.");
        match d.resolve(alice, &rev, RecordType::PTR) {
            Resolution::Answer(r) => match &r[0].data {
                RData::PTR(p) => assert_eq!(p.0, name("alice-db.alice.netfabric.internal.")),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert_eq!(
            d.resolve(alice, &name("2.1.1.10.in-addr.arpa."), RecordType::PTR),
            Resolution::NxDomain,
            "bob-web is hidden from alice"
        );
        assert_eq!(
            d.resolve(alice, &name("9.9.1.10.in-addr.arpa."), RecordType::PTR),
            Resolution::NxDomain,
            "vacant"
        );
        assert_eq!(
            d.resolve(alice, &name("1.10.in-addr.arpa."), RecordType::PTR),
            Resolution::NxDomain,
            "inside a zone: never forwarded"
        );
        // Outside every zone: someone else's reverse space.
        assert_eq!(
            d.resolve(alice, &name("8.8.8.8.in-addr.arpa."), RecordType::PTR),
            Resolution::NotOurs
        );
    }

    #[test]
    fn other_names_are_not_ours_and_domains_parse() {
        let d = dir();
        assert_eq!(
            d.resolve(Asker::Host, &name("example.com."), RecordType::A),
            Resolution::NotOurs
        );
        assert_eq!(
            d.resolve(Asker::Host, &name("internal."), RecordType::A),
            Resolution::NotOurs
        );
        assert_eq!(parse_domain("Corp.Example").unwrap(), name("corp.example."));
        assert!(matches!(parse_domain("."), Err(DomainError::Root { .. })));
        assert!(matches!(
            parse_domain("a..b"),
            Err(DomainError::Syntax { .. })
        ));
        // Another domain, the same rules.
        let other = Directory::new(parse_domain("corp.example").unwrap(), &state(), "h1", 1);
        assert_eq!(
            a_of(other.resolve(
                Asker::Container(ALICE),
                &name("alice-db.alice.corp.example."),
                RecordType::A
            )),
            Some(ip("10.1.2.1"))
        );
        assert_eq!(
            other.resolve(
                Asker::Container(ALICE),
                &name("alice-db.alice.netfabric.internal."),
                RecordType::A
            ),
            Resolution::NotOurs
        );
    }
    #[test]
    fn services_are_named_like_containers_and_seen_by_who_may_talk_to_their_owner() {
        let mut s = state();
        // bob has a container named "api"; alice a service of that name.
        s.containers.push(Container {
            name: "api".into(),
            owner: "bob".into(),
            host: "h2".into(),
            address: ip("10.1.2.3"),
        });
        s.services.push(crate::state::Service {
            name: "api".into(),
            owner: "alice".into(),
            zone: "z".into(),
            vip: ip("10.1.0.1"),
            ports: vec!["tcp/80".parse().unwrap()],
            backends: vec![crate::state::Backend {
                container: "alice-web".into(),
                member: 0,
            }],
            health: Default::default(),
        });
        s.validate().unwrap();
        let d = Directory::new(parse_domain(DEFAULT_DOMAIN).unwrap(), &s, "h1", 8);
        let q = |asker, n: &str| a_of(d.resolve(asker, &name(n), RecordType::A));
        let svc = "api.alice.netfabric.internal.";
        assert_eq!(q(Asker::Container(ALICE), svc), Some(ip("10.1.0.1")));
        assert_eq!(
            q(Asker::Container(CAROL), svc),
            Some(ip("10.1.0.1")),
            "shared group"
        );
        assert_eq!(
            q(Asker::Container(SYSTEM_OWNER_ID), svc),
            Some(ip("10.1.0.1"))
        );
        assert_eq!(
            q(Asker::Container(BOB), svc),
            None,
            "bob may not talk to alice"
        );
        assert_eq!(
            d.resolve(Asker::Container(BOB), &name(svc), RecordType::A),
            Resolution::NxDomain
        );
        // bob's container of the same name is still his.
        assert_eq!(
            q(Asker::Container(BOB), "api.bob.netfabric.internal."),
            Some(ip("10.1.2.3"))
        );
        // The VIP's PTR names the service.
        match d.resolve(
            Asker::Container(CAROL),
            &name("1.0.1.10.in-addr.arpa."),
            RecordType::PTR,
        ) {
            Resolution::Answer(r) => match &r[0].data {
                RData::PTR(p) => assert_eq!(p.0, name(svc)),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert_eq!(
            d.resolve(
                Asker::Container(BOB),
                &name("1.0.1.10.in-addr.arpa."),
                RecordType::PTR
            ),
            Resolution::NxDomain
        );
    }
}
