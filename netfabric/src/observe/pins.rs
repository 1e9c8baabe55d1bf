//! The pinned maps of a host, opened from bpffs: which hosts are pinned,
//! what each map is (type, sizes, capacity) and how full it is. Contents
//! are read with the datapath's batched reader ([`batch`]).

use std::path::Path;

use aya::maps::{MapData, MapType};
use serde::Serialize;

use super::ObserveError;
use crate::{
    conventions::pin_root,
    datapath::batch::{self, read_all},
};

type Result<T, E = ObserveError> = std::result::Result<T, E>;

/// The hosts that have a pin directory, sorted.
pub fn hosts(bpffs: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(pin_root(bpffs)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(netfabric_common::COUNTERS).exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// The host to look at: `host` if given (it must be pinned), else the only
/// pinned one.
pub fn resolve_host(bpffs: &Path, host: Option<&str>) -> Result<String> {
    let known = hosts(bpffs);
    match host {
        Some(h) if known.iter().any(|k| k == h) => Ok(h.to_owned()),
        Some(h) => Err(ObserveError::UnknownHost {
            host: h.to_owned(),
            dir: pin_root(bpffs),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        }),
        None => match known.as_slice() {
            [] => Err(ObserveError::NoHosts(pin_root(bpffs))),
            [one] => Ok(one.clone()),
            _ => Err(ObserveError::AmbiguousHost {
                dir: pin_root(bpffs),
                hosts: known,
            }),
        },
    }
}

/// The canonical name of a map given on the command line
/// (`endpoints` → `ENDPOINTS`).
pub fn map_name(name: &str) -> Result<&'static str> {
    let upper = name.to_ascii_uppercase().replace('-', "_");
    netfabric_common::ALL_MAPS
        .iter()
        .copied()
        .find(|m| *m == upper)
        .ok_or_else(|| ObserveError::UnknownMap(name.to_owned()))
}

/// Opens the pinned map `name` of the host whose pin directory is `pin_dir`.
pub fn open(pin_dir: &Path, name: &str) -> Result<MapData> {
    Ok(batch::open_pinned(pin_dir, name)?)
}

/// One pinned map as `netfabric maps list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MapSummary {
    pub name: String,
    /// Kernel map id.
    pub id: u32,
    /// `array`, `percpu_array`, `hash`, `ringbuf`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub key_size: u32,
    pub value_size: u32,
    /// Entries in use: hash entries; array slots that are not all zero;
    /// per-CPU slots non-zero on some CPU; for a ring buffer, the bytes not
    /// yet consumed.
    pub entries: u64,
    /// `max_entries` (bytes for a ring buffer).
    pub capacity: u32,
}

impl MapSummary {
    /// `entries / capacity`, 0..=1.
    pub fn pressure(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.entries as f64 / f64::from(self.capacity)
        }
    }
}

/// A short lowercase name of a map type.
pub fn type_label(t: MapType) -> String {
    match t {
        MapType::Array => "array".into(),
        MapType::PerCpuArray => "percpu_array".into(),
        MapType::Hash => "hash".into(),
        MapType::PerCpuHash => "percpu_hash".into(),
        MapType::LruHash => "lru_hash".into(),
        MapType::RingBuf => "ringbuf".into(),
        MapType::LpmTrie => "lpm_trie".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// Every pinned map of the host (in [`netfabric_common::ALL_MAPS`] order,
/// then any other pin found), with how many entries are used.
pub fn list(pin_dir: &Path) -> Result<Vec<MapSummary>> {
    let mut names: Vec<String> = netfabric_common::ALL_MAPS
        .iter()
        .filter(|n| pin_dir.join(n).exists())
        .map(|n| (*n).to_owned())
        .collect();
    let dir = std::fs::read_dir(pin_dir).map_err(|source| ObserveError::Io {
        what: "reading",
        path: pin_dir.to_owned(),
        source,
    })?;
    let mut extra: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !names.contains(n))
        .collect();
    extra.sort();
    names.extend(extra);
    names.iter().map(|n| summarize(pin_dir, n)).collect()
}

/// One map's summary.
pub fn summarize(pin_dir: &Path, name: &str) -> Result<MapSummary> {
    let map = open(pin_dir, name)?;
    let info = map.info().map_err(|source| ObserveError::Map {
        name: name.to_owned(),
        path: pin_dir.join(name),
        source: Box::new(source),
    })?;
    let kind = info.map_type().ok();
    let entries = match kind {
        Some(MapType::RingBuf) => 0,
        Some(MapType::PerCpuArray | MapType::PerCpuHash) => {
            let raw = read_all(&map, name)?;
            let per_cpu = raw.value_stride;
            raw.values
                .chunks(per_cpu.max(1))
                .filter(|v| v.iter().any(|b| *b != 0))
                .count() as u64
        }
        Some(MapType::Array) => {
            let raw = read_all(&map, name)?;
            raw.values
                .chunks(raw.value_stride.max(1))
                .filter(|v| v.iter().any(|b| *b != 0))
                .count() as u64
        }
        _ => read_all(&map, name)?.count as u64,
    };
    Ok(MapSummary {
        name: name.to_owned(),
        id: info.id(),
        kind: kind.map(type_label).unwrap_or_else(|| "unknown".into()),
        key_size: info.key_size(),
        value_size: info.value_size(),
        entries,
        capacity: info.max_entries(),
    })
}
