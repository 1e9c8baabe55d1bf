//! Services (docs/services.md): a name of an owner with a persistent
//! virtual address (VIP) in its zone's service range, ports, and backends
//! (containers of the same owner in the same zone) balanced at the
//! client's host.
//!
//! This module holds the objects as stored and the `tcp/80:8080` port
//! syntax; `service_ops` the service rules of `State::validate` and the
//! operations the CLI asks for, over the whole state. The datapath's form
//! (`SERVICE_PORTS`, `SERVICE_TABLES`) is planned in `agent::plan`.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use netfabric_common::service::MAX_BACKENDS;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{error::path, security::Protocol};

/// Ports one service may have.
pub const MAX_SERVICE_PORTS: usize = 16;
/// Longest HTTP health check path (the prober's limit).
pub const MAX_HEALTH_PATH_LEN: usize = crate::health::MAX_PATH_LEN;
/// The host octets a VIP may take in its zone's service range
/// (`<zone>.0.1`–`<zone>.0.254`): 254 services per zone.
pub const VIP_OCTETS: std::ops::RangeInclusive<u8> = 1..=254;

/// A service: `owner`'s name for a VIP and its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Unique per owner; never the name of one of the owner's containers
    /// (DNS names both under `<name>.<owner>.<domain>`).
    pub name: String,
    pub owner: String,
    /// The zone whose service range holds the VIP and whose containers
    /// are the backends.
    pub zone: String,
    /// `<zone>.0.1`–`<zone>.0.254`, kept for the service's life.
    pub vip: Ipv4Addr,
    /// The ports the VIP serves (1 to [`MAX_SERVICE_PORTS`]).
    pub ports: Vec<ServicePortSpec>,
    /// The backends, each with the member index it keeps while it is one.
    #[serde(default)]
    pub backends: Vec<Backend>,
    /// How the agents check the backends (TCP connect by default).
    #[serde(default, skip_serializing_if = "HealthCheck::is_tcp")]
    pub health: HealthCheck,
}

/// One port of a VIP: `tcp/80` or `tcp/80:8080` (the backends listen on
/// 8080).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortSpec {
    /// [`Protocol::Tcp`] or [`Protocol::Udp`].
    pub protocol: Protocol,
    /// The VIP's port, 1..=65535.
    pub port: u16,
    /// The port the backends listen on, 1..=65535 (defaults to `port`).
    pub target_port: u16,
}

/// A backend: a container and its member index in the service (the index
/// open flows refer to, `0..MAX_BACKENDS`, kept while it is a member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub container: String,
    pub member: u8,
}

/// How an agent checks its local backends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum HealthCheck {
    /// A TCP connect to the health port.
    #[default]
    Tcp,
    /// An HTTP `GET path` on the health port; 2xx and 3xx are healthy.
    Http { path: String },
}

impl HealthCheck {
    pub fn is_tcp(&self) -> bool {
        *self == HealthCheck::Tcp
    }
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthCheck::Tcp => f.write_str("tcp"),
            HealthCheck::Http { path } => write!(f, "http:{path}"),
        }
    }
}

/// The health check syntax, as error messages show it.
pub const HEALTH_SYNTAX: &str = "expected tcp or http:/PATH (e.g. http:/healthz)";

impl FromStr for HealthCheck {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(HealthCheck::Tcp),
            _ => match s.strip_prefix("http:") {
                Some(path) => {
                    let check = HealthCheck::Http {
                        path: path.to_owned(),
                    };
                    check_health(&check).map(|()| check)
                }
                None => Err(format!("{s:?} is not a health check; {HEALTH_SYNTAX}")),
            },
        }
    }
}

/// An HTTP path is sent as it is: `/` and then printable ASCII without
/// spaces, at most [`MAX_HEALTH_PATH_LEN`] characters.
pub(super) fn check_health(check: &HealthCheck) -> Result<(), String> {
    let HealthCheck::Http { path } = check else {
        return Ok(());
    };
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an HTTP path: it starts with '/'"));
    }
    if path.len() > MAX_HEALTH_PATH_LEN {
        return Err(format!(
            "the path has {} characters, at most {MAX_HEALTH_PATH_LEN}",
            path.len()
        ));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{path:?} is not an HTTP path: printable ASCII without spaces (percent-encode the rest)"
        ));
    }
    Ok(())
}

/// The port syntax, as error messages show it.
pub const SERVICE_PORT_SYNTAX: &str = "expected tcp/PORT, udp/PORT, tcp/PORT:TARGET or \
                                       udp/PORT:TARGET (ports 1 to 65535, e.g. tcp/80:8080)";

/// A port that does not parse; the caller names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a service port: {reason}; {SERVICE_PORT_SYNTAX}")]
pub struct ParseServicePortError {
    pub value: String,
    pub reason: &'static str,
}

impl FromStr for ServicePortSpec {
    type Err = ParseServicePortError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseServicePortError {
            value: s.to_owned(),
            reason,
        };
        let Some((proto, ports)) = s.split_once('/') else {
            return Err(err("the protocol and port are separated by '/'"));
        };
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(err("the protocol must be tcp or udp")),
        };
        let port = |p: &str| -> Result<u16, ParseServicePortError> {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("a port is a number from 1 to 65535"));
            }
            match p.parse::<u32>() {
                Ok(n @ 1..=65535) => Ok(n as u16),
                _ => Err(err("a port is a number from 1 to 65535")),
            }
        };
        let (port, target_port) = match ports.split_once(':') {
            Some((p, t)) => (port(p)?, port(t)?),
            None => {
                let p = port(ports)?;
                (p, p)
            }
        };
        Ok(ServicePortSpec {
            protocol,
            port,
            target_port,
        })
    }
}

impl fmt::Display for ServicePortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol.label(), self.port)?;
        if self.target_port != self.port {
            write!(f, ":{}", self.target_port)?;
        }
        Ok(())
    }
}

impl Serialize for ServicePortSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServicePortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Service {
    /// `alice/api`: how errors and listings name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// `services[alice/api].<leaf>`.
    pub fn field(&self, leaf: &str) -> String {
        path("services", &self.id(), leaf)
    }

    /// The port the agents probe the backends on: the first port's target
    /// port (every backend listens there).
    pub fn health_port(&self) -> Option<u16> {
        self.ports.first().map(|p| p.target_port)
    }

    /// The lowest member index no backend has.
    pub(super) fn free_member(&self) -> Option<u8> {
        let mut used = [false; MAX_BACKENDS];
        for b in &self.backends {
            if let Some(u) = used.get_mut(usize::from(b.member)) {
                *u = true;
            }
        }
        (0..MAX_BACKENDS as u8).find(|&m| !used[usize::from(m)])
    }
}
