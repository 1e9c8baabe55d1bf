//! The service rules of [`State::validate`] and the operations on services
//! the CLI asks for (docs/services.md), over the whole state: VIPs from the
//! zone's service range, backends that are containers of the service's
//! owner in its zone, member indexes kept while backends come and go. The
//! objects themselves are in `services`.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
};

use netfabric_common::service::MAX_BACKENDS;

use super::{
    error::{StateError, path},
    model::{Container, Ipv4Prefix, State, Zone},
    security::Protocol,
    services::{
        Backend, HealthCheck, MAX_SERVICE_PORTS, SERVICE_PORT_SYNTAX, Service, ServicePortSpec,
        VIP_OCTETS, check_health,
    },
};

/// `services[<owner>/<name>].<leaf>` before a service exists.
fn field_of(owner: &str, name: &str, leaf: &str) -> String {
    path("services", &format!("{owner}/{name}"), leaf)
}

/// The service range of a zone: `<zone>.0.0/24`.
pub fn service_range(zone: &Zone) -> Ipv4Prefix {
    let [a, b, ..] = zone.prefix.network().octets();
    Ipv4Prefix::new(Ipv4Addr::new(a, b, 0, 0), 24)
}

/// What `service create` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub owner: String,
    /// `None`: the only zone there is.
    pub zone: Option<String>,
    /// `None`: the lowest free VIP of the zone's service range.
    pub vip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePortSpec>,
    /// Container names, in the order they get member indexes.
    pub backends: Vec<String>,
    pub health: HealthCheck,
}

impl State {
    pub fn service(&self, owner: &str, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.owner == owner && s.name == name)
    }

    fn service_mut(&mut self, owner: &str, name: &str) -> Result<&mut Service, StateError> {
        self.services
            .iter_mut()
            .find(|s| s.owner == owner && s.name == name)
            .ok_or_else(|| StateError::NotFound {
                field: field_of(owner, name, ""),
                kind: "service",
                name: format!("{owner}/{name}"),
            })
    }

    /// The services `container` is a backend of (as `owner/name`).
    pub fn services_of_backend<'a>(
        &'a self,
        container: &'a str,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.services
            .iter()
            .filter(move |s| s.backends.iter().any(|b| b.container == container))
    }

    /// Creates a service; returns its VIP. The same definition again is a
    /// no-op that returns the VIP it has; another one is refused.
    pub fn create_service(&mut self, spec: ServiceSpec) -> Result<Ipv4Addr, StateError> {
        let field = |leaf: &str| field_of(&spec.owner, &spec.name, leaf);
        if self.owner(&spec.owner).is_none() {
            return Err(StateError::UnknownReference {
                field: field("owner"),
                kind: "owner",
                name: spec.owner.clone(),
            });
        }
        let zone = match &spec.zone {
            Some(z) => self.zone(z).ok_or_else(|| StateError::UnknownReference {
                field: field("zone"),
                kind: "zone",
                name: z.clone(),
            })?,
            None => match self.zones.as_slice() {
                [only] => only,
                [] => {
                    return Err(StateError::invalid(
                        field("zone"),
                        "there is no zone yet (zone create)",
                    ));
                }
                _ => {
                    return Err(StateError::invalid(
                        field("zone"),
                        "there are several zones: name the service's zone (--zone)",
                    ));
                }
            },
        };
        let zone_name = zone.name.clone();
        let range = service_range(zone);
        if let Some(existing) = self.service(&spec.owner, &spec.name) {
            let same_backends = existing
                .backends
                .iter()
                .map(|b| b.container.as_str())
                .eq(spec.backends.iter().map(String::as_str));
            if existing.zone == zone_name
                && spec.vip.is_none_or(|v| v == existing.vip)
                && existing.ports == spec.ports
                && same_backends
                && existing.health == spec.health
            {
                return Ok(existing.vip);
            }
            return Err(StateError::AlreadyExists {
                field: field(""),
                kind: "service",
                name: existing.id(),
                detail: format!(
                    " in zone {} at {} with a different definition (use service set, \
                     add-backend, remove-backend)",
                    existing.zone, existing.vip
                ),
            });
        }
        let vip = match spec.vip {
            Some(vip) => vip,
            None => self.free_vip(&zone_name, range).ok_or_else(|| {
                StateError::invalid(
                    field("vip"),
                    format!(
                        "zone {zone_name}'s service range {range} is full: all 254 VIPs are \
                             taken (delete a service or use another zone)"
                    ),
                )
            })?,
        };
        let mut backends = Vec::new();
        for (member, container) in spec.backends.iter().enumerate() {
            if backends.iter().any(|b: &Backend| b.container == *container) {
                return Err(StateError::invalid(
                    field("backends"),
                    format!("{container} is named twice"),
                ));
            }
            if member >= MAX_BACKENDS {
                return Err(too_many_backends(&field("backends"), spec.backends.len()));
            }
            backends.push(Backend {
                container: container.clone(),
                member: member as u8,
            });
        }
        self.services.push(Service {
            name: spec.name,
            owner: spec.owner,
            zone: zone_name,
            vip,
            ports: spec.ports,
            backends,
            health: spec.health,
        });
        Ok(vip)
    }

    /// The lowest VIP of `range` no service of `zone` has.
    fn free_vip(&self, zone: &str, range: Ipv4Prefix) -> Option<Ipv4Addr> {
        let mut used = [false; 256];
        for s in self.services.iter().filter(|s| s.zone == zone) {
            if range.contains(s.vip) {
                used[usize::from(s.vip.octets()[3])] = true;
            }
        }
        let [a, b, c, _] = range.addr.octets();
        VIP_OCTETS
            .clone()
            .find(|d| !used[usize::from(*d)])
            .map(|d| Ipv4Addr::new(a, b, c, d))
    }

    pub fn delete_service(&mut self, owner: &str, name: &str) -> Result<(), StateError> {
        self.service_mut(owner, name)?;
        self.services
            .retain(|s| !(s.owner == owner && s.name == name));
        Ok(())
    }

    /// Adds backends (already one: no-op), each with the lowest free member
    /// index. Returns whether anything changed.
    pub fn add_service_backends(
        &mut self,
        owner: &str,
        name: &str,
        containers: &[String],
    ) -> Result<bool, StateError> {
        let service = self.service_mut(owner, name)?;
        let mut changed = false;
        for container in containers {
            if service.backends.iter().any(|b| b.container == *container) {
                continue;
            }
            let Some(member) = service.free_member() else {
                return Err(too_many_backends(
                    &service.field("backends"),
                    service.backends.len() + 1,
                ));
            };
            service.backends.push(Backend {
                container: container.clone(),
                member,
            });
            changed = true;
        }
        Ok(changed)
    }

    /// Removes backends (the others keep their member index). A container
    /// that is not a backend is refused, naming it.
    pub fn remove_service_backends(
        &mut self,
        owner: &str,
        name: &str,
        containers: &[String],
    ) -> Result<(), StateError> {
        let service = self.service_mut(owner, name)?;
        if let Some(unknown) = containers
            .iter()
            .find(|c| !service.backends.iter().any(|b| b.container == **c))
        {
            return Err(StateError::invalid(
                service.field("backends"),
                format!("{unknown} is not a backend of {}", service.id()),
            ));
        }
        service
            .backends
            .retain(|b| !containers.contains(&b.container));
        Ok(())
    }

    /// Replaces a service's ports and/or its health check. Returns whether
    /// anything changed.
    pub fn set_service(
        &mut self,
        owner: &str,
        name: &str,
        ports: Option<Vec<ServicePortSpec>>,
        health: Option<HealthCheck>,
    ) -> Result<bool, StateError> {
        let service = self.service_mut(owner, name)?;
        let before = service.clone();
        if let Some(ports) = ports {
            service.ports = ports;
        }
        if let Some(health) = health {
            service.health = health;
        }
        Ok(*service != before)
    }

    /// Each service: its names, owner, zone, VIP, ports, backends and
    /// health check follow the rules of docs/services.md. `containers`
    /// indexes the containers by name.
    pub(super) fn validate_services(&self) -> Result<(), StateError> {
        if self.services.is_empty() {
            return Ok(());
        }
        let containers: HashMap<&str, &Container> = self
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c))
            .collect();
        let host_zones: HashMap<&str, &str> = self
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.zone.as_str()))
            .collect();
        let mut ids = HashSet::new();
        let mut vips: HashMap<Ipv4Addr, String> = HashMap::new();
        for s in &self.services {
            self.validate_service(
                s,
                |name| containers.get(name).copied(),
                |host| host_zones.get(host).copied(),
            )?;
            if !ids.insert((s.owner.as_str(), s.name.as_str())) {
                return Err(StateError::DuplicateName {
                    field: s.field("name"),
                    kind: "service",
                    name: s.id(),
                });
            }
            if let Some(other) = vips.insert(s.vip, s.id()) {
                return Err(StateError::Duplicate {
                    field: s.field("vip"),
                    value: s.vip.to_string(),
                    other: format!("service {other}"),
                });
            }
        }
        Ok(())
    }

    /// One service's own rules (everything but uniqueness among services).
    /// `container` finds a container by name, `host_zone` a host's zone.
    pub(super) fn validate_service<'a>(
        &'a self,
        s: &Service,
        container: impl Fn(&str) -> Option<&'a Container>,
        host_zone: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<(), StateError> {
        for (leaf, name) in [("name", &s.name), ("owner", &s.owner)] {
            if !super::is_valid_name(name) {
                return Err(StateError::MalformedName {
                    field: s.field(leaf),
                    value: name.clone(),
                });
            }
        }
        if self.owner(&s.owner).is_none() {
            return Err(StateError::UnknownReference {
                field: s.field("owner"),
                kind: "owner",
                name: s.owner.clone(),
            });
        }
        if let Some(c) = container(&s.name)
            && c.owner == s.owner
        {
            return Err(StateError::invalid(
                s.field("name"),
                format!(
                    "{} is also the name of a container of {}: a service and a container of \
                     one owner share the DNS names <name>.<owner>.<domain>",
                    s.name, s.owner
                ),
            ));
        }
        let Some(zone) = self.zone(&s.zone) else {
            return Err(StateError::UnknownReference {
                field: s.field("zone"),
                kind: "zone",
                name: s.zone.clone(),
            });
        };
        let range = service_range(zone);
        if !range.contains(s.vip) || !VIP_OCTETS.contains(&s.vip.octets()[3]) {
            return Err(StateError::invalid(
                s.field("vip"),
                format!(
                    "{} is outside zone {}'s service range {}.1 to {} (.0 and .255 are not \
                     VIPs)",
                    s.vip,
                    zone.name,
                    range.network(),
                    Ipv4Addr::from(u32::from(range.broadcast()) - 1),
                ),
            ));
        }
        if s.ports.is_empty() {
            return Err(StateError::invalid(
                s.field("ports"),
                "a service serves at least one port (--port tcp/80)",
            ));
        }
        if s.ports.len() > MAX_SERVICE_PORTS {
            return Err(StateError::invalid(
                s.field("ports"),
                format!("{} ports, at most {MAX_SERVICE_PORTS}", s.ports.len()),
            ));
        }
        let mut seen = HashSet::new();
        for p in &s.ports {
            if !matches!(p.protocol, Protocol::Tcp | Protocol::Udp)
                || p.port == 0
                || p.target_port == 0
            {
                return Err(StateError::invalid(
                    s.field("ports"),
                    format!("{p} is not a service port; {SERVICE_PORT_SYNTAX}"),
                ));
            }
            if !seen.insert((p.protocol, p.port)) {
                return Err(StateError::invalid(
                    s.field("ports"),
                    format!("{}/{} is given twice", p.protocol.label(), p.port),
                ));
            }
        }
        check_health(&s.health).map_err(|m| StateError::invalid(s.field("health"), m))?;
        if s.backends.len() > MAX_BACKENDS {
            return Err(too_many_backends(&s.field("backends"), s.backends.len()));
        }
        let mut members = [false; MAX_BACKENDS];
        let mut names = HashSet::new();
        for b in &s.backends {
            let field = s.field("backends");
            if usize::from(b.member) >= MAX_BACKENDS {
                return Err(StateError::invalid(
                    field,
                    format!(
                        "{}'s member index {} is outside 0..{MAX_BACKENDS}",
                        b.container, b.member
                    ),
                ));
            }
            if std::mem::replace(&mut members[usize::from(b.member)], true) {
                return Err(StateError::invalid(
                    field,
                    format!("member index {} is given twice", b.member),
                ));
            }
            if !names.insert(b.container.as_str()) {
                return Err(StateError::invalid(
                    field,
                    format!("{} is named twice", b.container),
                ));
            }
            let Some(c) = container(&b.container) else {
                return Err(StateError::UnknownReference {
                    field,
                    kind: "container",
                    name: b.container.clone(),
                });
            };
            if c.owner != s.owner {
                return Err(StateError::invalid(
                    field,
                    format!(
                        "{} belongs to {}, not to the service's owner {}",
                        c.name, c.owner, s.owner
                    ),
                ));
            }
            if host_zone(&c.host) != Some(s.zone.as_str()) {
                return Err(StateError::invalid(
                    field,
                    format!(
                        "{} runs on host {}, outside the service's zone {}",
                        c.name, c.host, s.zone
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn too_many_backends(field: &str, n: usize) -> StateError {
    StateError::invalid(field, format!("{n} backends, at most {MAX_BACKENDS}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MacAddr, state::HostSpec};

    fn port(s: &str) -> ServicePortSpec {
        s.parse().unwrap()
    }

    /// [`super::super::ops::tests::lab`] with containers web-1 (alice, h1),
    /// web-2 and web-3 (alice, h2) and db (bob, h1).
    fn lab() -> State {
        let mut s = super::super::ops::tests::lab();
        for (c, o, h) in [
            ("web-1", "alice", "h1"),
            ("web-2", "alice", "h2"),
            ("web-3", "alice", "h2"),
            ("db", "bob", "h1"),
        ] {
            s.create_container(c, o, h, None).unwrap();
        }
        s
    }

    fn spec(name: &str, backends: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            owner: "alice".into(),
            zone: None,
            vip: None,
            ports: vec![port("tcp/80:8080")],
            backends: backends.iter().map(|b| (*b).to_owned()).collect(),
            health: HealthCheck::Tcp,
        }
    }

    #[test]
    fn ports_parse_and_print() {
        for (text, proto, p, t) in [
            ("tcp/80", Protocol::Tcp, 80, 80),
            ("tcp/80:8080", Protocol::Tcp, 80, 8080),
            ("udp/53", Protocol::Udp, 53, 53),
            ("udp/65535:1", Protocol::Udp, 65535, 1),
        ] {
            let spec = port(text);
            assert_eq!((spec.protocol, spec.port, spec.target_port), (proto, p, t));
            assert_eq!(spec.to_string(), text);
        }
        assert_eq!(port("tcp/80:80").to_string(), "tcp/80");
        for bad in [
            "",
            "tcp",
            "tcp/",
            "tcp/0",
            "tcp/80:0",
            "tcp/65536",
            "icmp/1",
            "icmp",
            "TCP/80",
            "tcp/80:",
            "tcp/:80",
            "tcp/80:81:82",
            "tcp/ 80",
            "tcp/80-90",
            "sctp/1",
        ] {
            let err = bad.parse::<ServicePortSpec>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let json = serde_json::to_string(&port("tcp/80:8080")).unwrap();
        assert_eq!(json, r#""tcp/80:8080""#);
    }

    #[test]
    fn health_checks_parse_and_are_stored_compactly() {
        assert_eq!("tcp".parse::<HealthCheck>(), Ok(HealthCheck::Tcp));
        let http: HealthCheck = "http:/healthz?x=1".parse().unwrap();
        assert_eq!(http.to_string(), "http:/healthz?x=1");
        for bad in ["", "http", "http:", "http:healthz", "http:/a b", "udp"] {
            assert!(bad.parse::<HealthCheck>().is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&http).unwrap(),
            r#"{"http":{"path":"/healthz?x=1"}}"#
        );
        assert_eq!(
            serde_json::to_string(&HealthCheck::Tcp).unwrap(),
            r#""tcp""#
        );
    }

    #[test]
    fn vips_are_the_lowest_free_of_the_zone_and_kept() {
        let mut s = lab();
        let a = s.create_service(spec("api", &["web-1"])).unwrap();
        let b = s.create_service(spec("www", &["web-2"])).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(b, Ipv4Addr::new(10, 1, 0, 2));
        s.validate().unwrap();
        // Idempotent re-create.
        let before = s.clone();
        assert_eq!(s.create_service(spec("api", &["web-1"])).unwrap(), a);
        assert_eq!(s, before);
        let e = s.create_service(spec("api", &["web-2"])).unwrap_err();
        assert_eq!(e.field(), "services[alice/api]");
        s.delete_service("alice", "api").unwrap();
        assert_eq!(s.service("alice", "www").unwrap().vip, b);
        assert_eq!(s.create_service(spec("new", &[])).unwrap(), a);
        // A VIP asked for: validated.
        let mut asked = spec("x", &[]);
        asked.vip = Some(Ipv4Addr::new(10, 1, 0, 9));
        assert_eq!(s.create_service(asked).unwrap(), Ipv4Addr::new(10, 1, 0, 9));
        s.validate().unwrap();
        for bad in [
            Ipv4Addr::new(10, 1, 0, 0),
            Ipv4Addr::new(10, 1, 0, 255),
            Ipv4Addr::new(10, 1, 1, 5),
            Ipv4Addr::new(10, 2, 0, 5),
        ] {
            let mut t = s.clone();
            let mut asked = spec("y", &[]);
            asked.vip = Some(bad);
            t.create_service(asked).unwrap();
            let e = t.validate().unwrap_err();
            assert_eq!(e.field(), "services[alice/y].vip", "{bad}: {e}");
        }
        let mut t = s.clone();
        let mut taken = spec("y", &[]);
        taken.vip = Some(b);
        t.create_service(taken).unwrap();
        let e = t.validate().unwrap_err();
        assert!(e.to_string().contains("alice/www"), "{e}");
    }

    #[test]
    fn the_255th_service_of_a_zone_is_refused() {
        let mut s = lab();
        for i in 1..=254 {
            let vip = s.create_service(spec(&format!("s{i}"), &[])).unwrap();
            assert_eq!(vip.octets()[3], i as u8);
        }
        s.validate().unwrap();
        let e = s.create_service(spec("s255", &[])).unwrap_err();
        assert_eq!(e.field(), "services[alice/s255].vip");
        assert!(e.to_string().contains("full"), "{e}");
    }

    #[test]
    fn member_indexes_stay_while_backends_come_and_go() {
        let mut s = lab();
        s.create_service(spec("api", &["web-1", "web-2", "web-3"]))
            .unwrap();
        let members = |s: &State| -> Vec<(String, u8)> {
            s.service("alice", "api")
                .unwrap()
                .backends
                .iter()
                .map(|b| (b.container.clone(), b.member))
                .collect()
        };
        assert_eq!(
            members(&s),
            [
                ("web-1".into(), 0),
                ("web-2".into(), 1),
                ("web-3".into(), 2)
            ]
        );
        s.remove_service_backends("alice", "api", &["web-2".into()])
            .unwrap();
        assert_eq!(members(&s), [("web-1".into(), 0), ("web-3".into(), 2)]);
        // The lowest free index goes to the next one added.
        assert!(
            s.add_service_backends("alice", "api", &["web-2".into()])
                .unwrap()
        );
        assert!(
            !s.add_service_backends("alice", "api", &["web-2".into()])
                .unwrap()
        );
        assert_eq!(
            members(&s),
            [
                ("web-1".into(), 0),
                ("web-3".into(), 2),
                ("web-2".into(), 1)
            ]
        );
        s.validate().unwrap();
        let e = s
            .remove_service_backends("alice", "api", &["db".into()])
            .unwrap_err();
        assert_eq!(e.field(), "services[alice/api].backends");
    }

    #[test]
    fn every_refusal_names_its_field() {
        let base = {
            let mut s = lab();
            s.create_service(spec("api", &["web-1"])).unwrap();
            s
        };
        type Edit = Box<dyn Fn(&mut State)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "services[alice/api].backends",
                Box::new(|s| {
                    s.add_service_backends("alice", "api", &["db".into()])
                        .unwrap();
                }),
            ),
            (
                "services[alice/api].backends",
                Box::new(|s| {
                    s.add_service_backends("alice", "api", &["ghost".into()])
                        .unwrap();
                }),
            ),
            (
                "services[alice/api].ports",
                Box::new(|s| {
                    s.set_service("alice", "api", Some(vec![]), None).unwrap();
                }),
            ),
            (
                "services[alice/api].ports",
                Box::new(|s| {
                    s.set_service(
                        "alice",
                        "api",
                        Some(vec![port("tcp/80"), port("tcp/80:81")]),
                        None,
                    )
                    .unwrap();
                }),
            ),
            (
                "services[alice/api].ports",
                Box::new(|s| {
                    let ports = (1..=17).map(|p| port(&format!("tcp/{p}"))).collect();
                    s.set_service("alice", "api", Some(ports), None).unwrap();
                }),
            ),
            (
                "services[alice/api].health",
                Box::new(|s| {
                    s.set_service(
                        "alice",
                        "api",
                        None,
                        Some(HealthCheck::Http { path: "x".into() }),
                    )
                    .unwrap();
                }),
            ),
            (
                "services[alice/web-2].name",
                Box::new(|s| {
                    s.create_service(spec("web-2", &[])).unwrap();
                }),
            ),
            (
                "services[alice/Bad].name",
                Box::new(|s| {
                    s.create_service(spec("Bad", &[])).unwrap();
                }),
            ),
            (
                "services[alice/api].zone",
                Box::new(|s| {
                    s.services[0].zone = "nowhere".into();
                }),
            ),
            (
                "services[alice/api].backends",
                Box::new(|s| {
                    s.services[0].backends.push(Backend {
                        container: "web-2".into(),
                        member: 0,
                    });
                }),
            ),
            (
                "services[alice/api].backends",
                Box::new(|s| {
                    s.services[0].backends.push(Backend {
                        container: "web-2".into(),
                        member: 200,
                    });
                }),
            ),
        ];
        for (field, change) in cases {
            let mut s = base.clone();
            change(&mut s);
            let e = s.validate().unwrap_err();
            assert_eq!(e.field(), field, "{e}");
        }
        // Refused by the operation itself.
        let mut s = base.clone();
        let mut other = spec("x", &[]);
        other.owner = "ghost".into();
        assert_eq!(
            s.create_service(other).unwrap_err().field(),
            "services[ghost/x].owner"
        );
        let mut other = spec("x", &["web-1", "web-1"]);
        other.zone = Some("z1".into());
        assert_eq!(
            s.create_service(other).unwrap_err().field(),
            "services[alice/x].backends"
        );
        assert!(matches!(
            s.delete_service("alice", "nope").unwrap_err(),
            StateError::NotFound { .. }
        ));
    }

    #[test]
    fn a_backend_in_another_zone_is_refused() {
        let mut s = lab();
        s.create_zone("z2", "10.2.0.0/16".parse().unwrap(), None)
            .unwrap();
        s.create_host(HostSpec {
            name: "h9".into(),
            zone: "z2".into(),
            number: Some(1),
            subnet: None,
            uplink: "eth0".into(),
            underlay_ip: Ipv4Addr::new(192, 168, 0, 9),
            underlay_mac: MacAddr([2, 0, 0, 0, 0, 9]),
        })
        .unwrap();
        s.create_container("far", "alice", "h9", None).unwrap();
        // Two zones: the zone must be named.
        let e = s.create_service(spec("api", &[])).unwrap_err();
        assert_eq!(e.field(), "services[alice/api].zone");
        let mut sp = spec("api", &["web-1", "far"]);
        sp.zone = Some("z1".into());
        s.create_service(sp).unwrap();
        let e = s.validate().unwrap_err();
        assert_eq!(e.field(), "services[alice/api].backends");
        assert!(
            e.to_string().contains("outside the service's zone z1"),
            "{e}"
        );
    }

    #[test]
    fn services_and_containers_do_not_share_names_within_an_owner() {
        let mut s = lab();
        s.create_service(spec("api", &["web-1"])).unwrap();
        s.validate().unwrap();
        // A container named like the service, same owner: refused.
        let e = s.create_container("api", "alice", "h1", None).unwrap_err();
        assert_eq!(e.field(), "containers[api].name");
        // Another owner may.
        s.create_container("api", "bob", "h1", None).unwrap();
        s.validate().unwrap();
        // A backend cannot be deleted while it is one.
        let e = s.delete_container("web-1").unwrap_err();
        assert_eq!(e.field(), "containers[web-1]");
        assert!(e.to_string().contains("alice/api"), "{e}");
        s.remove_service_backends("alice", "api", &["web-1".into()])
            .unwrap();
        s.delete_container("web-1").unwrap();
        s.validate().unwrap();
    }
}
