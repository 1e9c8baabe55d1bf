//! The one way to read maps in bulk: `BPF_MAP_LOOKUP_BATCH` (one syscall per
//! few thousand entries instead of one per entry: `ENDPOINTS` has a
//! million slots). aya 0.14 has no batch operations, hence the raw syscall.
//!
//! Used by [`super::Datapath`] on its own maps (the agent's start-up
//! read-back, counters), by `observe` on pinned maps, and by the tests
//! and benchmarks (propagation, the bench's sink counter).

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
};

use aya::maps::{MapData, MapError, MapType};

/// Reading a map failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("map {name} (pinned at {path}): {source}")]
    Open {
        name: String,
        path: PathBuf,
        #[source]
        source: Box<MapError>,
    },
    #[error("map {name}: {source}")]
    Info {
        name: String,
        #[source]
        source: Box<MapError>,
    },
    #[error("map {name}: {source}")]
    Syscall {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = ReadError> = std::result::Result<T, E>;

/// Opens the map pinned as `<pin_dir>/<name>`.
pub fn open_pinned(pin_dir: &Path, name: &str) -> Result<MapData> {
    let path = pin_dir.join(name);
    MapData::from_pin(&path).map_err(|source| ReadError::Open {
        name: name.to_owned(),
        path,
        source: Box::new(source),
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

    /// The entries as typed (key, value) pairs; per-CPU values need
    /// [`sum_per_cpu_u64`] instead.
    pub fn typed<K: aya::Pod, V: aya::Pod>(&self) -> impl Iterator<Item = (K, V)> + '_ {
        (0..self.count).map(|i| (pod(self.key(i)), pod(self.value(i))))
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
/// Bytes of values one batch call may return: maps with large values
/// (`SERVICE_TABLES`, about 65 KiB each) read fewer entries per call
/// rather than allocate 8,192 of them.
const BATCH_VALUE_BYTES: usize = 4 << 20;

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

/// Reads every entry of a map.
pub fn read_all(map: &MapData, name: &str) -> Result<RawEntries> {
    read_batches(map, name, None, usize::MAX)
}

/// Reads the `count` slots of an array map from index `first` on (fewer at
/// the end of the array): a zone's 65,536 `ENDPOINTS` slots in 8 syscalls,
/// or one slot in one.
pub fn read_array_range(map: &MapData, name: &str, first: u32, count: u32) -> Result<RawEntries> {
    // The batch token of an array is the last index read: the batch goes on
    // from the index after it.
    let resume = first.checked_sub(1).map(|i| i.to_ne_bytes().to_vec());
    read_batches(map, name, resume, count as usize)
}

fn read_batches(
    map: &MapData,
    name: &str,
    resume: Option<Vec<u8>>,
    limit: usize,
) -> Result<RawEntries> {
    let syscall_err = |source| ReadError::Syscall {
        name: name.to_owned(),
        source,
    };
    let info = map.info().map_err(|source| ReadError::Info {
        name: name.to_owned(),
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
    let token_len = key_size.max(8);
    let mut first = resume.is_none();
    let mut token_in = resume.unwrap_or_default();
    token_in.resize(token_len, 0);
    let mut token_out = vec![0u8; token_len];
    while out.count < limit {
        let per_call = (BATCH as usize).min((BATCH_VALUE_BYTES / value_stride.max(1)).max(1));
        let want = (limit - out.count).min(per_call);
        let mut keys = vec![0u8; key_size * want];
        let mut values = vec![0u8; value_stride * want];
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                token_in.as_mut_ptr() as u64
            },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: want as u32,
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
        let done = match err {
            None => false,
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Some(e) => return Err(syscall_err(e)),
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
