//! The pinned maps of a host, opened from bpffs: which hosts are pinned,
//! what each map is (type, sizes, capacity), how full it is, and its raw
//! contents read in batches (one `BPF_MAP_LOOKUP_BATCH` per few thousand
//! entries instead of one syscall per entry: `ENDPOINTS` has a million).

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
};

use aya::maps::{MapData, MapType};
use serde::Serialize;

use super::ObserveError;

type Result<T, E = ObserveError> = std::result::Result<T, E>;

/// The bpffs mount the agent pins under by default.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// `<bpffs>/netfabric`: one directory per host.
pub fn root(bpffs: &Path) -> PathBuf {
    bpffs.join("netfabric")
}

/// The hosts that have a pin directory, sorted.
pub fn hosts(bpffs: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(root(bpffs)) else {
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
            dir: root(bpffs),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        }),
        None => match known.as_slice() {
            [] => Err(ObserveError::NoHosts(root(bpffs))),
            [one] => Ok(one.clone()),
            _ => Err(ObserveError::AmbiguousHost {
                dir: root(bpffs),
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
    let path = pin_dir.join(name);
    MapData::from_pin(&path).map_err(|source| ObserveError::Map {
        name: name.to_owned(),
        path,
        source: Box::new(source),
    })
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

/// A map's keys and values as bytes, `count` of each. Per-CPU maps have
/// one value per possible CPU, each rounded up to 8 bytes, in one stride.
#[derive(Debug, Default)]
pub struct RawEntries {
    pub count: usize,
    pub key_size: usize,
    pub value_stride: usize,
    pub keys: Vec<u8>,
    pub values: Vec<u8>,
}

impl RawEntries {
    pub fn key(&self, i: usize) -> &[u8] {
        &self.keys[i * self.key_size..(i + 1) * self.key_size]
    }

    pub fn value(&self, i: usize) -> &[u8] {
        &self.values[i * self.value_stride..(i + 1) * self.value_stride]
    }
}

/// A plain-old-data value read from map bytes (unaligned).
pub fn pod<T: aya::Pod>(bytes: &[u8]) -> T {
    assert!(bytes.len() >= std::mem::size_of::<T>(), "short map value");
    // SAFETY: `T: Pod` is valid for any bit pattern and the slice is long
    // enough (checked above); the read is unaligned.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries per batch call.
const BATCH: u32 = 8192;

/// `union bpf_attr` as used by the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Reads every entry of a map with `BPF_MAP_LOOKUP_BATCH`.
pub fn read_all(map: &MapData, name: &str) -> Result<RawEntries> {
    let syscall_err = |source| ObserveError::Syscall {
        name: name.to_owned(),
        source,
    };
    let info = map.info().map_err(|source| ObserveError::Map {
        name: name.to_owned(),
        path: PathBuf::new(),
        source: Box::new(source),
    })?;
    let key_size = info.key_size() as usize;
    let per_cpu = matches!(
        info.map_type(),
        Ok(MapType::PerCpuArray | MapType::PerCpuHash | MapType::LruPerCpuHash)
    );
    let value_stride = if per_cpu {
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .map_err(syscall_err)?;
        (info.value_size() as usize).next_multiple_of(8) * cpus
    } else {
        info.value_size() as usize
    };
    let fd = map.fd().as_fd();
    let mut out = RawEntries {
        key_size,
        value_stride,
        ..RawEntries::default()
    };
    // The batch token: for arrays and hashes a key-sized cursor.
    let mut token_in = vec![0u8; key_size.max(8)];
    let mut token_out = vec![0u8; key_size.max(8)];
    let mut first = true;
    loop {
        let mut keys = vec![0u8; key_size * BATCH as usize];
        let mut values = vec![0u8; value_stride * BATCH as usize];
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                token_in.as_mut_ptr() as u64
            },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr` prefix for this command; every
        // pointer in it refers to a live buffer of the size the kernel
        // writes (`count` keys/values, a key-sized batch token).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (rc < 0).then(std::io::Error::last_os_error);
        let done = match &err {
            None => false,
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Some(e) => return Err(syscall_err(std::io::Error::new(e.kind(), e.to_string()))),
        };
        let n = attr.count as usize;
        out.keys.extend_from_slice(&keys[..n * key_size]);
        out.values.extend_from_slice(&values[..n * value_stride]);
        out.count += n;
        if done {
            break;
        }
        std::mem::swap(&mut token_in, &mut token_out);
        first = false;
    }
    Ok(out)
}

/// Sums a per-CPU value over CPUs, field by field, as `u64`s (counters).
pub fn sum_per_cpu_u64(value: &[u8], value_size: usize) -> Vec<u64> {
    let slot = value_size.next_multiple_of(8);
    let fields = value_size / 8;
    let mut sum = vec![0u64; fields];
    for cpu in value.chunks(slot) {
        for (f, s) in sum.iter_mut().enumerate() {
            *s += pod::<u64>(&cpu[f * 8..]);
        }
    }
    sum
}
