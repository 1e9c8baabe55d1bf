//! Observability (docs/metrics.md, docs/operations.md#troubleshooting): read the pinned maps of a host without the
//! agent ([`pins`]), decode ids and addresses into names ([`names`],
//! [`dump`]), stream drop events ([`monitor`]), and the agent's Prometheus
//! metrics ([`metrics`]).
//!
//! Everything here opens the pins under `<bpffs>/netfabric/<host>/`, so it
//! works whether or not an agent runs. Only `netfabric monitor` consumes the
//! `DROP_EVENTS` ring buffer (a ring buffer has one consumer position); the
//! agent never reads it.

pub mod clock;
pub mod dump;
pub mod metrics;
pub mod monitor;
pub mod names;
pub mod pins;
pub mod status;

use std::path::PathBuf;

use aya::maps::MapError;

/// Errors reading the pinned datapath.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("no netfabric host is pinned under {0} (is an agent running, or a lab up?)")]
    NoHosts(PathBuf),
    #[error(
        "{count} hosts are pinned under {dir} ({hosts}); choose one with --host",
        count = .hosts.len(),
        hosts = .hosts.join(", ")
    )]
    AmbiguousHost { dir: PathBuf, hosts: Vec<String> },
    #[error("host {host} has no pinned maps under {dir} (pinned hosts: {known})")]
    UnknownHost {
        host: String,
        dir: PathBuf,
        known: String,
    },
    #[error("unknown map {0:?}; the maps are {list}", list = netfabric_common::ALL_MAPS.join(", "))]
    UnknownMap(String),
    #[error("map {name} (pinned at {path}): {source}")]
    Map {
        name: String,
        path: PathBuf,
        #[source]
        source: Box<MapError>,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("map {name}: {source}")]
    Syscall {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("map {name} is a ring buffer of drop events: read it with `netfabric monitor`")]
    RingBuffer { name: String },
}

impl From<crate::datapath::batch::ReadError> for ObserveError {
    fn from(e: crate::datapath::batch::ReadError) -> Self {
        use crate::datapath::batch::ReadError;
        match e {
            ReadError::Open { name, path, source } => ObserveError::Map { name, path, source },
            ReadError::Info { name, source } => ObserveError::Map {
                name,
                path: PathBuf::new(),
                source,
            },
            ReadError::Syscall { name, source } => ObserveError::Syscall { name, source },
        }
    }
}
