//! `netfabric monitor`: drop events from the pinned `DROP_EVENTS` ring
//! buffer, decoded into names, filtered, one line each.
//!
//! The programs send drop events only while a monitor holds the
//! `MONITOR_LEASE` ([`Lease`]): nobody else reads them, and a flood of drops
//! should cost the datapath no more than forwarding does. The lease runs
//! [`Lease::TERM`] and is renewed every [`Lease::RENEW_EVERY`]; a monitor
//! that is killed stops the events when its lease runs out.
//!
//! The ring buffer has a single consumer position shared by everyone who
//! maps it, so exactly one monitor per host should run; the agent never
//! reads it. Events the kernel could not queue (buffer full) are counted in
//! the `COUNTERS` monitor-lost slot; the monitor reports that count whenever
//! it grows.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
    time::{Duration, Instant},
};

use aya::maps::{Array, Map, MapData, RingBuf};
use netfabric_common::{self as common, Direction, DropEvent, DropReason, LocalPort, MonitorLease};
use serde::Serialize;

use super::{ObserveError, clock::Clock, dump, names::Names, pins};
use crate::datapath::{CounterSnapshot, batch};

/// One decoded drop.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DropRecord {
    /// Wall-clock time (UTC, RFC 3339 with milliseconds).
    pub time: String,
    /// The kernel's CLOCK_MONOTONIC timestamp.
    pub timestamp_ns: u64,
    pub host: String,
    pub direction: &'static str,
    pub reason: &'static str,
    /// What the packet claims as its source. With `src_unverified` only the
    /// address: naming its container and owner would blame the party whose
    /// address was forged.
    pub src: PacketSide,
    /// The source failed a source check or was never checked (`spoofed_*`,
    /// `vlan_tagged`): `src` is only a claim; `sender` says who sent it.
    pub src_unverified: bool,
    pub dst: PacketSide,
    /// For drops on a container port's ingress (`from_container`): the
    /// container behind the port the frame came in on, i.e. who really sent
    /// it, whatever the frame claims.
    pub sender: Option<PortSender>,
    pub ifindex: u32,
    pub len: u32,
}

/// A container port of this host and the container behind it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PortSender {
    /// The host-side interface, `nfc<octet>`.
    pub port: String,
    pub ip: Ipv4Addr,
    pub container: Option<String>,
    pub owner: Option<String>,
}

impl PortSender {
    fn new(ip: Ipv4Addr, names: &Names) -> Self {
        let c = names.container(ip);
        PortSender {
            port: crate::conventions::port_name(ip),
            ip,
            container: c.map(|c| c.name.clone()),
            owner: c.map(|c| c.owner.clone()),
        }
    }

    /// `port nfc7 (web, owner alice)` for people.
    pub fn display(&self) -> String {
        match (&self.container, &self.owner) {
            (Some(c), Some(o)) => format!("port {} ({c}, owner {o})", self.port),
            (Some(c), None) => format!("port {} ({c})", self.port),
            _ => format!("port {} ({})", self.port, self.ip),
        }
    }
}

/// The container ports of one host, from its pinned `LOCAL_PORTS` and
/// `HOST_CONFIG` (so it works with no agent running): port ifindex → the
/// address of the container behind it.
#[derive(Debug, Clone, Default)]
pub struct Ports {
    by_ifindex: BTreeMap<u32, Ipv4Addr>,
}

impl Ports {
    /// Reads the ports of the host pinned at `pin_dir` (none while the agent
    /// has not configured the host).
    pub fn read(pin_dir: &Path) -> Result<Self, ObserveError> {
        let Some((_, subnet)) = dump::host_subnet(pin_dir)? else {
            return Ok(Ports::default());
        };
        let map = pins::open(pin_dir, common::LOCAL_PORTS)?;
        let raw = batch::read_all(&map, common::LOCAL_PORTS)?;
        let by_ifindex = (0..raw.count)
            .filter_map(|i| {
                let octet: u32 = batch::pod(raw.key(i));
                let p: LocalPort = batch::pod(raw.value(i));
                (p.flags & common::FLAG_PRESENT != 0)
                    .then(|| (p.ifindex, Ipv4Addr::from(u32::from(subnet) | octet)))
            })
            .collect();
        Ok(Ports { by_ifindex })
    }

    /// Ports given as (ifindex, container address).
    pub fn from_addresses(ports: impl IntoIterator<Item = (u32, Ipv4Addr)>) -> Self {
        Ports {
            by_ifindex: ports.into_iter().collect(),
        }
    }

    /// The address of the container behind port `ifindex`.
    pub fn address(&self, ifindex: u32) -> Option<Ipv4Addr> {
        self.by_ifindex.get(&ifindex).copied()
    }
}

/// One side of a dropped packet.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct PacketSide {
    /// `None` when the packet had no IPv4 header.
    pub ip: Option<Ipv4Addr>,
    pub container: Option<String>,
    pub owner: Option<String>,
    /// The owner id the datapath saw (0: none).
    pub owner_id: u32,
}

impl PacketSide {
    fn new(ip: u32, owner_id: u32, names: &Names) -> Self {
        let ip = (ip != 0).then(|| Ipv4Addr::from(ip));
        let c = ip.and_then(|a| names.container(a));
        let owner = names
            .owner(owner_id)
            .map(str::to_owned)
            .or_else(|| c.map(|c| c.owner.clone()));
        PacketSide {
            ip,
            container: c.map(|c| c.name.clone()),
            owner,
            owner_id,
        }
    }

    /// `container/owner (ip)` for people.
    pub fn display(&self) -> String {
        let ip = self.ip.map_or_else(|| "-".to_owned(), |a| a.to_string());
        match (&self.container, &self.owner) {
            (Some(c), Some(o)) => format!("{c}/{o} ({ip})"),
            (None, Some(o)) => format!("{ip} owner {o}"),
            (Some(c), None) => format!("{c} ({ip})"),
            (None, None) => ip,
        }
    }
}

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub reason: Option<DropReason>,
    /// Source or destination owner.
    pub owner: Option<String>,
    /// Source or destination container.
    pub container: Option<String>,
}

impl Filter {
    /// Does `d` match? Owner and container match the source, the
    /// destination or the sending port's container.
    pub fn matches(&self, d: &DropRecord) -> bool {
        let sender = d.sender.as_ref();
        self.reason.is_none_or(|r| r.label() == d.reason)
            && self.owner.as_ref().is_none_or(|o| {
                d.src.owner.as_ref() == Some(o)
                    || d.dst.owner.as_ref() == Some(o)
                    || sender.is_some_and(|s| s.owner.as_ref() == Some(o))
            })
            && self.container.as_ref().is_none_or(|c| {
                d.src.container.as_ref() == Some(c)
                    || d.dst.container.as_ref() == Some(c)
                    || sender.is_some_and(|s| s.container.as_ref() == Some(c))
            })
    }
}

/// The drop reason named `label` (`policy_denied`).
pub fn parse_reason(label: &str) -> Result<DropReason, String> {
    DropReason::ALL
        .into_iter()
        .find(|r| r.label() == label)
        .ok_or_else(|| {
            let all: Vec<&str> = DropReason::ALL.iter().map(|r| r.label()).collect();
            format!("unknown reason {label:?}; reasons: {}", all.join(", "))
        })
}

/// Decodes one ring-buffer record; `ports` are the host's container ports.
pub fn decode(
    bytes: &[u8],
    host: &str,
    names: &Names,
    ports: &Ports,
    clock: &Clock,
) -> Option<DropRecord> {
    if bytes.len() < std::mem::size_of::<DropEvent>() {
        return None;
    }
    let e: DropEvent = batch::pod(bytes);
    let direction = Direction::from_u8(e.direction);
    let reason = DropReason::from_u8(e.reason);
    // Unknown reasons (a newer datapath) are not trusted either.
    let src_unverified = reason.is_none_or(DropReason::source_unverified);
    let src = if src_unverified {
        PacketSide {
            ip: (e.src_ip != 0).then(|| Ipv4Addr::from(e.src_ip)),
            ..PacketSide::default()
        }
    } else {
        PacketSide::new(e.src_ip, e.src_owner, names)
    };
    let sender = (direction == Some(Direction::FromContainer))
        .then(|| ports.address(e.ifindex))
        .flatten()
        .map(|ip| PortSender::new(ip, names));
    Some(DropRecord {
        time: clock.format(e.timestamp_ns),
        timestamp_ns: e.timestamp_ns,
        host: host.to_owned(),
        direction: direction.map_or("unknown", Direction::label),
        reason: reason.map_or("unknown", DropReason::label),
        src,
        src_unverified,
        dst: PacketSide::new(e.dst_ip, e.dst_owner, names),
        sender,
        ifindex: e.ifindex,
        len: e.len,
    })
}

/// The line `netfabric monitor` prints for a drop. A forged (or unchecked)
/// source is shown as what the sender claimed, after the sending port when
/// the drop was on one: `port nfc7 (web, owner alice) as 10.1.1.8`.
pub fn line(d: &DropRecord) -> String {
    let from = match (&d.sender, d.src_unverified) {
        (Some(s), true) => format!("{} as {}", s.display(), d.src.display()),
        (None, true) if d.direction == Direction::FromContainer.label() => {
            format!("ifindex {} as {}", d.ifindex, d.src.display())
        }
        (None, true) => format!("{} (claimed)", d.src.display()),
        (_, false) => d.src.display(),
    };
    format!(
        "{} {} {:<14} {} -> {}  {}  len {}",
        d.time,
        d.host,
        d.direction,
        from,
        d.dst.display(),
        d.reason,
        d.len
    )
}

/// A monitor's hold on one host's drop events (`MONITOR_LEASE`): taken by
/// [`Lease::take`], kept by [`Lease::renew_if_due`], given back on drop.
pub struct Lease {
    map: Array<MapData, MonitorLease>,
    /// The pin, for errors.
    path: std::path::PathBuf,
    renewed: Instant,
}

impl Lease {
    /// How long a lease lasts without renewal.
    pub const TERM: Duration = Duration::from_secs(3);
    /// How often a running monitor renews it.
    pub const RENEW_EVERY: Duration = Duration::from_secs(1);

    /// Takes the lease of the host pinned at `pin_dir`: drop events start.
    pub fn take(pin_dir: &Path) -> Result<Self, ObserveError> {
        let path = pin_dir.join(common::MONITOR_LEASE);
        let data = pins::open(pin_dir, common::MONITOR_LEASE)?;
        let map = Array::try_from(Map::Array(data)).map_err(|e| lease_error(&path, e))?;
        let mut lease = Lease {
            map,
            path,
            renewed: Instant::now(),
        };
        lease.renew()?;
        Ok(lease)
    }

    fn write(&mut self, value: MonitorLease) -> Result<(), ObserveError> {
        let path = &self.path;
        self.map.set(0, value, 0).map_err(|e| lease_error(path, e))
    }

    fn renew(&mut self) -> Result<(), ObserveError> {
        self.renewed = Instant::now();
        let until_ns = Clock::monotonic_ns() + Self::TERM.as_nanos() as u64;
        self.write(MonitorLease { until_ns })
    }

    /// Renews the lease if [`Lease::RENEW_EVERY`] has passed.
    pub fn renew_if_due(&mut self) -> Result<(), ObserveError> {
        if self.renewed.elapsed() >= Self::RENEW_EVERY {
            self.renew()?;
        }
        Ok(())
    }
}

fn lease_error(path: &Path, source: aya::maps::MapError) -> ObserveError {
    ObserveError::Map {
        name: common::MONITOR_LEASE.to_owned(),
        path: path.to_owned(),
        source: Box::new(source),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Best effort: an unreleased lease runs out by itself.
        let _ = self.write(MonitorLease::NONE);
    }
}

/// A reader of one host's drop events.
pub struct Reader {
    ring: RingBuf<MapData>,
    counters: MapData,
    pub host: String,
    pub clock: Clock,
}

impl Reader {
    /// Opens the pinned ring buffer and counters of the host pinned at `pin_dir`.
    pub fn open(pin_dir: &Path, host: &str) -> Result<Self, ObserveError> {
        let data = pins::open(pin_dir, common::DROP_EVENTS)?;
        let map_err = |source| ObserveError::Map {
            name: common::DROP_EVENTS.to_owned(),
            path: pin_dir.join(common::DROP_EVENTS),
            source: Box::new(source),
        };
        let ring = RingBuf::try_from(Map::RingBuf(data)).map_err(map_err)?;
        Ok(Reader {
            ring,
            counters: pins::open(pin_dir, common::COUNTERS)?,
            host: host.to_owned(),
            clock: Clock::now(),
        })
    }

    /// The drop events the kernel could not queue, since the maps exist.
    pub fn lost(&self) -> Result<u64, ObserveError> {
        let raw = batch::read_all(&self.counters, common::COUNTERS)?;
        Ok(CounterSnapshot::from_raw(&raw).monitor_events_lost)
    }

    /// Waits up to `timeout` for events; returns the raw records read.
    pub fn poll(&mut self, timeout: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            out.push(item.to_vec());
        }
        if !out.is_empty() {
            return out;
        }
        let mut pfd = libc::pollfd {
            fd: self.ring.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own; the fd stays open for the call.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(60_000) as i32) };
        while let Some(item) = self.ring.next() {
            out.push(item.to_vec());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_by_label() {
        assert_eq!(parse_reason("policy_denied"), Ok(DropReason::PolicyDenied));
        assert!(parse_reason("nope").unwrap_err().contains("policy_denied"));
    }

    #[test]
    fn filters_match_either_side() {
        let d = DropRecord {
            time: String::new(),
            timestamp_ns: 0,
            host: "h1".into(),
            direction: "from_container",
            reason: "policy_denied",
            src: PacketSide {
                ip: Some(Ipv4Addr::new(10, 1, 1, 1)),
                container: Some("a".into()),
                owner: Some("alice".into()),
                owner_id: 2,
            },
            src_unverified: false,
            dst: PacketSide {
                ip: Some(Ipv4Addr::new(10, 1, 1, 2)),
                container: Some("b".into()),
                owner: Some("bob".into()),
                owner_id: 3,
            },
            sender: None,
            ifindex: 1,
            len: 84,
        };
        let f = |reason, owner: Option<&str>, container: Option<&str>| Filter {
            reason,
            owner: owner.map(Into::into),
            container: container.map(Into::into),
        };
        assert!(f(None, None, None).matches(&d));
        assert!(f(Some(DropReason::PolicyDenied), Some("bob"), Some("a")).matches(&d));
        assert!(!f(Some(DropReason::Malformed), None, None).matches(&d));
        assert!(!f(None, Some("carol"), None).matches(&d));
        assert!(!f(None, None, Some("c")).matches(&d));
        // The sending port's container matches too.
        let spoofed = DropRecord {
            sender: Some(PortSender {
                port: "nfc9".into(),
                ip: Ipv4Addr::new(10, 1, 1, 9),
                container: Some("c".into()),
                owner: Some("carol".into()),
            }),
            ..d
        };
        assert!(f(None, Some("carol"), None).matches(&spoofed));
        assert!(f(None, None, Some("c")).matches(&spoofed));
    }

    fn event(reason: DropReason, direction: Direction, src: Ipv4Addr, src_owner: u32) -> Vec<u8> {
        let e = DropEvent {
            timestamp_ns: 1,
            src_ip: src.into(),
            dst_ip: Ipv4Addr::new(10, 1, 2, 1).into(),
            src_owner,
            dst_owner: 7,
            ifindex: 42,
            direction: direction as u8,
            reason: reason as u8,
            _pad: [0; 2],
            len: 98,
            _pad2: 0,
        };
        // SAFETY: DropEvent is plain old data; these are its bytes.
        unsafe {
            std::slice::from_raw_parts(
                (&raw const e).cast::<u8>(),
                std::mem::size_of::<DropEvent>(),
            )
        }
        .to_vec()
    }

    /// A spoofed drop names the port the frame came in on, never the owner
    /// or container of the address it forged.
    #[test]
    fn spoofed_drops_name_the_sending_port_not_the_forged_party() {
        let forged = Ipv4Addr::new(10, 1, 1, 2);
        let names = Names::from_containers([
            (Ipv4Addr::new(10, 1, 1, 7), "web", "alice"),
            (forged, "victim", "bob"),
        ]);
        let ports = Ports::from_addresses([(42, Ipv4Addr::new(10, 1, 1, 7))]);
        let clock = Clock::now();
        for reason in [
            DropReason::SpoofedSourceIp,
            DropReason::SpoofedSourceMac,
            DropReason::SpoofedArp,
            DropReason::VlanTagged,
        ] {
            let raw = event(reason, Direction::FromContainer, forged, 0);
            let d = decode(&raw, "h1", &names, &ports, &clock).expect("decodes");
            assert!(d.src_unverified, "{reason:?}");
            assert_eq!(
                d.src,
                PacketSide {
                    ip: Some(forged),
                    ..PacketSide::default()
                },
                "{reason:?}: the forged party is not named"
            );
            let s = d.sender.as_ref().expect("the sending port");
            assert_eq!(
                (s.port.as_str(), s.container.as_deref(), s.owner.as_deref()),
                ("nfc7", Some("web"), Some("alice"))
            );
            let l = line(&d);
            assert!(
                l.contains("port nfc7 (web, owner alice) as 10.1.1.2 -> "),
                "{l}"
            );
            assert!(!l.contains("victim") && !l.contains("bob"), "{l}");
        }
        // A policy drop names both parties (its source passed the checks).
        let raw = event(
            DropReason::PolicyDenied,
            Direction::FromContainer,
            Ipv4Addr::new(10, 1, 1, 7),
            3,
        );
        let d = decode(&raw, "h1", &names, &ports, &clock).expect("decodes");
        assert!(!d.src_unverified);
        assert_eq!(d.src.container.as_deref(), Some("web"));
        assert!(
            line(&d).contains(" web/alice (10.1.1.7) -> "),
            "{}",
            line(&d)
        );
        // On the uplink there is no port: the claim is marked as such.
        let raw = event(
            DropReason::SpoofedWrongHost,
            Direction::FromUplink,
            forged,
            0,
        );
        let d = decode(&raw, "h1", &names, &ports, &clock).expect("decodes");
        assert_eq!(d.sender, None);
        assert_eq!(d.src.container, None);
        assert!(line(&d).contains(" 10.1.1.2 (claimed) -> "), "{}", line(&d));
    }
}
