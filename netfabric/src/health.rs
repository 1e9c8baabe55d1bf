//! Health checks of service backends (docs/health-checks.md), as plain
//! data shared by the state (a service's check), the agent's prober
//! ([`crate::agent::health`]) and the health board
//! ([`crate::store::health_board`]) that publishes the probes' verdicts.
//!
//! Semantics of the board, which every reader follows:
//! * each agent probes the backends on its own host and publishes one
//!   [`HealthReport`] per host, saying up or down per [`ProbeTarget`];
//! * a backend (address and port) is healthy unless a current report says
//!   it is down: no report at all means "not checked yet", or "its agent is
//!   gone and its report expired" (etcd: the lease ran out; file store: the
//!   report is older than [`REPORT_TTL`]). A missing verdict never takes a
//!   backend out: only a probe that saw it fail does. So a dead agent costs
//!   its backends' health checks, never their traffic (its host's
//!   containers are likely gone with it anyway, and the datapath's own
//!   connection tracking still works).

use std::{collections::BTreeMap, fmt, net::Ipv4Addr, time::Duration};

use netfabric_common::service::MAX_BACKENDS;
use serde::{Deserialize, Serialize};

/// How long a report stands without being renewed: an agent renews its
/// report every [`REPORT_HEARTBEAT`]; past this its backends count as not
/// checked (healthy).
pub const REPORT_TTL: Duration = Duration::from_secs(10);
/// How often an agent republishes its report even if nothing changed.
pub const REPORT_HEARTBEAT: Duration = Duration::from_secs(3);

/// Longest HTTP check path.
pub const MAX_PATH_LEN: usize = 256;

/// How a backend is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Check {
    /// A TCP connection to the backend's port is accepted.
    #[default]
    Tcp,
    /// `GET <path>` on the backend's port answers 2xx or 3xx.
    Http { path: String },
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Tcp => f.write_str("tcp"),
            Check::Http { path } => write!(f, "http {path}"),
        }
    }
}

/// A check that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error(
        "health check path {path:?}: {reason} (an absolute path of at most {MAX_PATH_LEN} \
         printable ASCII characters without spaces, e.g. /healthz)"
    )]
    BadPath { path: String, reason: &'static str },
}

impl Check {
    /// Checks the HTTP path: it goes verbatim into the request line, so
    /// nothing that could end or split that line.
    pub fn validate(&self) -> Result<(), CheckError> {
        let Check::Http { path } = self else {
            return Ok(());
        };
        let bad = |reason| {
            Err(CheckError::BadPath {
                path: path.clone(),
                reason,
            })
        };
        if !path.starts_with('/') {
            return bad("it does not start with /");
        }
        if path.len() > MAX_PATH_LEN {
            return bad("it is too long");
        }
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return bad("it has a space, a control or a non-ASCII character");
        }
        Ok(())
    }

    /// Parses the command-line spelling: `tcp` or `http:<path>`.
    pub fn parse(s: &str) -> Result<Check, CheckError> {
        let check = match s.strip_prefix("http:") {
            Some(path) => Check::Http {
                path: path.to_owned(),
            },
            None if s == "tcp" => Check::Tcp,
            None => {
                return Err(CheckError::BadPath {
                    path: s.to_owned(),
                    reason: "expected tcp or http:<path>",
                });
            }
        };
        check.validate()?;
        Ok(check)
    }
}

/// One backend port to probe, on the prober's own host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProbeTarget {
    pub backend: Ipv4Addr,
    pub port: u16,
    pub check: Check,
}

/// What a backend (address, port) is known by on the board.
pub type BackendPort = (Ipv4Addr, u16);

/// One target's verdict in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetHealth {
    pub backend: Ipv4Addr,
    pub port: u16,
    pub check: Check,
    pub up: bool,
    /// Why the last failed probe failed (for `status` and logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One host's verdicts: every target its agent has a verdict for (a
/// target probed but without a verdict yet is not in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthReport {
    pub host: String,
    /// Unix time in milliseconds when the agent published it.
    pub at_ms: u64,
    pub targets: Vec<TargetHealth>,
}

impl HealthReport {
    /// The same verdicts (the time aside): nothing to tell readers.
    pub fn same_verdicts(&self, other: &HealthReport) -> bool {
        self.host == other.host
            && self.targets.len() == other.targets.len()
            && self.targets.iter().zip(&other.targets).all(|(a, b)| {
                (a.backend, a.port, &a.check, a.up) == (b.backend, b.port, &b.check, b.up)
            })
    }
}

/// Every host's current report: what a reader of the board sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthView {
    pub reports: BTreeMap<String, HealthReport>,
}

impl HealthView {
    /// Whether `backend:port` may get new flows: false only when a current
    /// report says it is down (see the module's semantics).
    pub fn is_healthy(&self, backend: Ipv4Addr, port: u16) -> bool {
        !self.reports.values().any(|r| {
            r.targets
                .iter()
                .any(|t| t.backend == backend && t.port == port && !t.up)
        })
    }

    /// The backends some report says are down (sorted, once each).
    pub fn down(&self) -> Vec<BackendPort> {
        self.down_set().into_iter().collect()
    }

    /// [`down`](Self::down) as a set, for many lookups ([`is_healthy`]
    /// scans every report).
    ///
    /// [`is_healthy`]: Self::is_healthy
    pub fn down_set(&self) -> std::collections::BTreeSet<BackendPort> {
        self.reports
            .values()
            .flat_map(|r| r.targets.iter().filter(|t| !t.up))
            .map(|t| (t.backend, t.port))
            .collect()
    }

    /// The healthy bits of a service's members (bit `i`: member `i`, the
    /// `healthy` of its Maglev table) whose backends listen on `port`:
    /// every member (address not 0) that `down` does not list.
    pub fn healthy_members(
        down: &std::collections::BTreeSet<BackendPort>,
        members: &[u32; MAX_BACKENDS],
        port: u16,
    ) -> u128 {
        members
            .iter()
            .enumerate()
            .filter(|&(_, &m)| m != 0 && !down.contains(&(Ipv4Addr::from(m), port)))
            .fold(0u128, |bits, (i, _)| bits | 1u128 << i)
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_parse_and_bad_paths_are_named() {
        assert_eq!(Check::parse("tcp"), Ok(Check::Tcp));
        assert_eq!(
            Check::parse("http:/healthz?full=1"),
            Ok(Check::Http {
                path: "/healthz?full=1".into()
            })
        );
        for bad in [
            "http:healthz",
            "http:/a b",
            "http:/a\r\nX: y",
            "udp",
            "http:",
        ] {
            let e = Check::parse(bad).unwrap_err();
            assert!(e.to_string().contains("health check path"), "{bad}: {e}");
        }
        let long = format!("http:/{}", "a".repeat(MAX_PATH_LEN));
        assert!(Check::parse(&long).is_err());
    }

    #[test]
    fn checks_serialise_tagged() {
        let t = ProbeTarget {
            backend: Ipv4Addr::new(10, 1, 1, 5),
            port: 8080,
            check: Check::Http {
                path: "/healthz".into(),
            },
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"backend":"10.1.1.5","port":8080,"check":{"kind":"http","path":"/healthz"}}"#
        );
        assert_eq!(serde_json::from_str::<ProbeTarget>(&json).unwrap(), t);
    }

    fn verdict(backend: [u8; 4], port: u16, up: bool) -> TargetHealth {
        TargetHealth {
            backend: backend.into(),
            port,
            check: Check::Tcp,
            up,
            reason: None,
        }
    }

    #[test]
    fn only_a_report_saying_down_takes_a_backend_out() {
        let mut view = HealthView::default();
        let b = Ipv4Addr::new(10, 1, 1, 5);
        assert!(view.is_healthy(b, 80), "no report: not checked yet");
        view.reports.insert(
            "h1".into(),
            HealthReport {
                host: "h1".into(),
                at_ms: 1,
                targets: vec![
                    verdict([10, 1, 1, 5], 80, false),
                    verdict([10, 1, 1, 6], 80, true),
                ],
            },
        );
        assert!(!view.is_healthy(b, 80));
        assert!(view.is_healthy(b, 81), "another port of the same backend");
        assert!(view.is_healthy(Ipv4Addr::new(10, 1, 1, 6), 80));
        assert_eq!(view.down(), vec![(b, 80)]);

        let mut members = [0u32; MAX_BACKENDS];
        members[0] = u32::from(b);
        members[1] = u32::from(Ipv4Addr::new(10, 1, 1, 6));
        members[3] = u32::from(Ipv4Addr::new(10, 1, 1, 7));
        let down = view.down_set();
        assert_eq!(HealthView::healthy_members(&down, &members, 80), 0b1010);
        assert_eq!(HealthView::healthy_members(&down, &members, 81), 0b1011);
    }
}
