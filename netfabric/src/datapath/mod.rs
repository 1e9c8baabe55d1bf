//! The typed datapath API: load the embedded eBPF object, attach its
//! programs, fill and read its maps (each map's setters and batched
//! readers are in its module of [`maps`]).
//!
//! One [`Datapath`] is one host's set of maps and programs. With
//! [`LoadOptions::pin_dir`] every map is pinned under that directory (and
//! adopted from there when it already exists), which is how the agent keeps
//! state across restarts; without it the maps live as long as the value
//! (tests and benchmarks).

pub mod batch;
pub mod maps;
pub mod testrun;

use std::path::PathBuf;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, RingBuf},
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode, tc::SchedClassifierLinkId,
        xdp::XdpLinkId,
    },
};
use netfabric_common::{
    self as common, Counter, Endpoint, HostConfig, LocalPort, MAX_ZONES, MonitorLease, NextHop,
    OwnerGroups, OwnerPair,
    conntrack::{ConnKey, Connection, PortScope, ScopedPair},
    service::{ServiceFlow, ServicePort, ServicePortKey, ServiceTable},
};

pub use maps::counters::CounterSnapshot;

/// The compiled eBPF object (built by `build.rs` with aya-build).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netfabric"));

/// The benchmark's eBPF object: the empty `baseline_*` programs and the
/// traffic generator and sink `bench_*` with their `BENCH_*` maps. Only
/// the benchmarks load it ([`Datapath::load_programs_of`], or their own
/// loader); no agent does.
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netfabric-bench-programs"));

/// XDP program on the uplink: the early-drop prefilter.
pub const PROG_FROM_UPLINK: &str = "from_uplink";
/// TC ingress program on the uplink: judges what the prefilter passed and
/// delivers into containers.
pub const PROG_FROM_UPLINK_TC: &str = "from_uplink_tc";
/// TC ingress program on a container's host-side port.
pub const PROG_FROM_CONTAINER: &str = "from_container";
/// TC egress program on a container's host-side port.
pub const PROG_TO_CONTAINER: &str = "to_container";

/// The product's programs, the only ones [`Datapath::load`] loads into the
/// kernel (and the only programs of [`EBPF_OBJECT`]).
pub const XDP_PROGRAMS: [&str; 1] = [PROG_FROM_UPLINK];
pub const TC_PROGRAMS: [&str; 3] = [PROG_FROM_CONTAINER, PROG_TO_CONTAINER, PROG_FROM_UPLINK_TC];

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("program {0} is missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
    #[error(transparent)]
    Read(#[from] batch::ReadError),
    #[error("map {name} is full ({capacity} entries); the entry was not added (fail closed)")]
    MapFull { name: &'static str, capacity: u32 },
    #[error("zone slot {0} is out of range (0..{MAX_ZONES})")]
    ZoneSlot(u32),
    #[error("creating pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {name}: {source}")]
    Interface {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = DatapathError> = std::result::Result<T, E>;

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

/// A hash map's insert: a table out of room (`E2BIG`, or `ENOMEM` for one
/// not preallocated) is [`DatapathError::MapFull`], never a silent drop.
fn hash_insert(
    name: &'static str,
    capacity: u32,
    inserted: std::result::Result<(), MapError>,
) -> Result<()> {
    match inserted {
        Ok(()) => Ok(()),
        Err(MapError::SyscallError(e))
            if matches!(
                e.io_error.raw_os_error(),
                Some(libc::E2BIG) | Some(libc::ENOMEM)
            ) =>
        {
            Err(DatapathError::MapFull { name, capacity })
        }
        Err(e) => Err(map_err(name)(e)),
    }
}

/// A hash map's remove: an absent key is already removed.
fn hash_remove(name: &'static str, removed: std::result::Result<(), MapError>) -> Result<()> {
    match removed {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(map_err(name)(e)),
    }
}

fn prog_err(name: &'static str) -> impl FnOnce(ProgramError) -> DatapathError {
    move |source| DatapathError::Program { name, source }
}

/// How to load a [`Datapath`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Pin (or adopt already pinned) maps under this bpffs directory.
    pub pin_dir: Option<PathBuf>,
    /// Override `GROUP_PAIRS` capacity (tests use small maps to reach "full").
    pub group_pairs_capacity: Option<u32>,
}

/// One host's datapath: the loaded programs and typed handles on every map.
pub struct Datapath {
    ebpf: Ebpf,
    /// Other objects whose programs were loaded next to this one
    /// ([`Datapath::load_programs_of`]: the bench's).
    others: Vec<Ebpf>,
    zone_by_prefix: Array<MapData, u32>,
    endpoints: Array<MapData, Endpoint>,
    next_hops: Array<MapData, NextHop>,
    zone_gateways: Array<MapData, NextHop>,
    local_ports: Array<MapData, LocalPort>,
    host_config: Array<MapData, HostConfig>,
    group_pairs: HashMap<MapData, OwnerPair, u32>,
    group_pairs_capacity: u32,
    owner_groups: Array<MapData, OwnerGroups>,
    port_scopes: HashMap<MapData, ScopedPair, PortScope>,
    counters: PerCpuArray<MapData, Counter>,
    drop_events: Option<RingBuf<MapData>>,
    monitor_lease: Array<MapData, MonitorLease>,
    connections: HashMap<MapData, ConnKey, Connection>,
    service_ports: HashMap<MapData, ServicePortKey, ServicePort>,
    service_tables: HashMap<MapData, u32, ServiceTable>,
    service_flows: HashMap<MapData, ConnKey, ServiceFlow>,
    /// Per-CPU LRU hash, read only in batches.
    service_counters: MapData,
}

impl Datapath {
    /// Load the embedded object's maps and the product's programs
    /// ([`XDP_PROGRAMS`], [`TC_PROGRAMS`]; not attached yet).
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        let mut loader = EbpfLoader::new();
        let pin_paths: Vec<(&'static str, PathBuf)> = match &opts.pin_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| DatapathError::PinDir {
                    path: dir.clone(),
                    source,
                })?;
                common::ALL_MAPS.iter().map(|n| (*n, dir.join(n))).collect()
            }
            None => Vec::new(),
        };
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        if let Some(cap) = opts.group_pairs_capacity {
            loader.map_max_entries(common::GROUP_PAIRS, cap);
        }
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        for name in XDP_PROGRAMS {
            let prog: &mut Xdp = program(&mut ebpf, name)?;
            prog.load().map_err(prog_err(name))?;
        }
        for name in TC_PROGRAMS {
            let prog: &mut SchedClassifier = program(&mut ebpf, name)?;
            prog.load().map_err(prog_err(name))?;
        }
        let group_pairs_capacity = opts
            .group_pairs_capacity
            .unwrap_or(common::GROUP_PAIRS_ENTRIES);
        Ok(Datapath {
            zone_by_prefix: take(&mut ebpf, common::ZONE_BY_PREFIX)?,
            endpoints: take(&mut ebpf, common::ENDPOINTS)?,
            next_hops: take(&mut ebpf, common::NEXT_HOPS)?,
            zone_gateways: take(&mut ebpf, common::ZONE_GATEWAYS)?,
            local_ports: take(&mut ebpf, common::LOCAL_PORTS)?,
            host_config: take(&mut ebpf, common::HOST_CONFIG)?,
            group_pairs: take(&mut ebpf, common::GROUP_PAIRS)?,
            group_pairs_capacity,
            owner_groups: take(&mut ebpf, common::OWNER_GROUPS)?,
            port_scopes: take(&mut ebpf, common::PORT_SCOPES)?,
            counters: take(&mut ebpf, common::COUNTERS)?,
            drop_events: Some(take(&mut ebpf, common::DROP_EVENTS)?),
            monitor_lease: take(&mut ebpf, common::MONITOR_LEASE)?,
            connections: take(&mut ebpf, common::CONNECTIONS)?,
            service_ports: take(&mut ebpf, common::SERVICE_PORTS)?,
            service_tables: take(&mut ebpf, common::SERVICE_TABLES)?,
            service_flows: take(&mut ebpf, common::SERVICE_FLOWS)?,
            service_counters: take_data(&mut ebpf, common::SERVICE_COUNTERS)?,
            ebpf,
            others: Vec::new(),
        })
    }

    /// The loaded eBPF object (programs), for attaching and link pinning.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Loads `object` (e.g. [`BENCH_OBJECT`]) beside this datapath, its
    /// programs not loaded into the kernel yet: [`Self::xdp`] and
    /// [`Self::tc`] find them by name too, and run them on the same
    /// packets (its maps are its own).
    pub fn load_programs_of(&mut self, object: &[u8]) -> Result<()> {
        self.others.push(EbpfLoader::new().load(object)?);
        Ok(())
    }

    fn program_mut(&mut self, name: &'static str) -> Result<&mut aya::programs::Program> {
        if self.ebpf.program(name).is_some() {
            return self
                .ebpf
                .program_mut(name)
                .ok_or(DatapathError::MissingProgram(name));
        }
        self.others
            .iter_mut()
            .find_map(|o| o.program_mut(name))
            .ok_or(DatapathError::MissingProgram(name))
    }

    pub fn xdp(&mut self, name: &'static str) -> Result<&mut Xdp> {
        self.program_mut(name)?.try_into().map_err(prog_err(name))
    }

    pub fn tc(&mut self, name: &'static str) -> Result<&mut SchedClassifier> {
        self.program_mut(name)?.try_into().map_err(prog_err(name))
    }

    /// The ring buffer of drop events (once; the monitor owns it after that).
    pub fn take_drop_events(&mut self) -> Option<RingBuf<MapData>> {
        self.drop_events.take()
    }

    /// Until when the programs send drop events (see [`MonitorLease`]);
    /// `netfabric monitor` renews it on the pinned map while it runs.
    pub fn set_monitor_lease(&mut self, lease: MonitorLease) -> Result<()> {
        self.monitor_lease
            .set(0, lease, 0)
            .map_err(map_err(common::MONITOR_LEASE))
    }

    // ---- attaching -----------------------------------------------------------------

    /// Attach the XDP prefilter `from_uplink` to the uplink (native XDP by
    /// default). Delivery needs [`Datapath::attach_uplink_tc`] too.
    pub fn attach_uplink(&mut self, ifname: &str, mode: XdpMode) -> Result<XdpLinkId> {
        self.xdp(PROG_FROM_UPLINK)?
            .attach(ifname, mode)
            .map_err(prog_err(PROG_FROM_UPLINK))
    }

    /// Attach `from_uplink_tc` to the uplink's TC ingress (TCX): the
    /// judgement and delivery of what the prefilter passed.
    pub fn attach_uplink_tc(&mut self, ifname: &str) -> Result<SchedClassifierLinkId> {
        self.tc(PROG_FROM_UPLINK_TC)?
            .attach(ifname, TcAttachType::Ingress)
            .map_err(prog_err(PROG_FROM_UPLINK_TC))
    }

    /// Attach `from_container` (ingress) and `to_container` (egress) to a
    /// container's host-side port (TCX).
    pub fn attach_port(
        &mut self,
        ifname: &str,
    ) -> Result<(SchedClassifierLinkId, SchedClassifierLinkId)> {
        let ingress = self
            .tc(PROG_FROM_CONTAINER)?
            .attach(ifname, TcAttachType::Ingress)
            .map_err(prog_err(PROG_FROM_CONTAINER))?;
        let egress = self
            .tc(PROG_TO_CONTAINER)?
            .attach(ifname, TcAttachType::Egress)
            .map_err(prog_err(PROG_TO_CONTAINER))?;
        Ok((ingress, egress))
    }
}

fn check_slot(slot: u32) -> Result<()> {
    if slot < MAX_ZONES {
        Ok(())
    } else {
        Err(DatapathError::ZoneSlot(slot))
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or(DatapathError::MissingProgram(name))?;
    prog.try_into().map_err(prog_err(name))
}

/// A map only read in batches: its raw handle.
fn take_data(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData> {
    match ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))? {
        Map::PerCpuLruHashMap(data) | Map::PerCpuHashMap(data) => Ok(data),
        _ => Err(DatapathError::MissingMap(name)),
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))?;
    T::try_from(map).map_err(map_err(name))
}
