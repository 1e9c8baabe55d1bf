//! The typed datapath API: load the embedded eBPF object, attach its
//! programs, fill and read its maps.
//!
//! One [`Datapath`] is one host's set of maps and programs. With
//! [`LoadOptions::pin_dir`] every map is pinned under that directory (and
//! adopted from there when it already exists), which is how the agent keeps
//! state across restarts; without it the maps live as long as the value
//! (tests and benchmarks).

pub mod batch;
pub mod testrun;

use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, IterableMap as _, Map, MapData, MapError, PerCpuArray, RingBuf},
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode, tc::SchedClassifierLinkId,
        xdp::XdpLinkId,
    },
};
use netfabric_common::{
    self as common, Counter, Direction, Endpoint, HostConfig, LocalPort, MAX_ZONES,
    MONITOR_LOST_SLOT, MonitorLease, NextHop, OwnerPair, Verdict,
    plan::{endpoint_index, next_hop_index, zone_prefix_index},
};

/// The compiled eBPF object (built by `build.rs` with aya-build).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netfabric"));

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
/// kernel. The object also holds the bench's programs (`baseline_*`,
/// `bench_*`); a benchmark loads those itself (`dp.xdp(name)?.load()`).
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

/// Per-CPU counters summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Only non-zero entries.
    pub by_verdict: BTreeMap<(Direction, Verdict), Counter>,
    /// Drop events the ring buffer could not take.
    pub monitor_events_lost: u64,
}

impl CounterSnapshot {
    /// The one decoder of `COUNTERS` (as read by [`batch::read_all`]):
    /// per-CPU values summed, slots turned into (direction, verdict).
    pub fn from_raw(raw: &batch::RawEntries) -> CounterSnapshot {
        let mut snap = CounterSnapshot::default();
        for i in 0..raw.count {
            let slot: u32 = batch::pod(raw.key(i));
            let sum = batch::sum_per_cpu_u64(raw.value(i), std::mem::size_of::<Counter>());
            let sum = Counter {
                packets: sum[0],
                bytes: sum[1],
            };
            if slot == MONITOR_LOST_SLOT {
                snap.monitor_events_lost = sum.packets;
                continue;
            }
            if sum.packets == 0 {
                continue;
            }
            if let Some(key) = Verdict::from_counter_slot(slot) {
                snap.by_verdict.insert(key, sum);
            }
        }
        snap
    }

    /// The non-zero counters in slot order (direction, then reason code,
    /// then forwards), as `status` and `maps dump` list them.
    pub fn in_slot_order(&self) -> Vec<((Direction, Verdict), Counter)> {
        let mut rows: Vec<_> = self.by_verdict.iter().map(|(k, c)| (*k, *c)).collect();
        rows.sort_by_key(|((d, v), _)| v.counter_slot(*d));
        rows
    }

    /// Packets and bytes for one direction and verdict (zero if never seen).
    pub fn get(&self, direction: Direction, verdict: Verdict) -> Counter {
        self.by_verdict
            .get(&(direction, verdict))
            .copied()
            .unwrap_or_default()
    }

    /// What happened between `earlier` and `self` (counters only grow).
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        let mut by_verdict = BTreeMap::new();
        for (k, now) in &self.by_verdict {
            let before = earlier.by_verdict.get(k).copied().unwrap_or_default();
            let d = Counter {
                packets: now.packets - before.packets,
                bytes: now.bytes - before.bytes,
            };
            if d.packets != 0 {
                by_verdict.insert(*k, d);
            }
        }
        CounterSnapshot {
            by_verdict,
            monitor_events_lost: self.monitor_events_lost - earlier.monitor_events_lost,
        }
    }
}

// Keep the slot layout assumptions next to the decoder that relies on them.
const _: () = assert!(common::FORWARD_SLOT_BASE < common::SLOTS_PER_DIRECTION);
const _: () = {
    let mut i = 0;
    while i < common::DropReason::ALL.len() {
        assert!(common::DropReason::ALL[i] as u32 <= common::FORWARD_SLOT_BASE);
        i += 1;
    }
};

/// One host's datapath: the loaded programs and typed handles on every map.
pub struct Datapath {
    ebpf: Ebpf,
    zone_by_prefix: Array<MapData, u32>,
    endpoints: Array<MapData, Endpoint>,
    next_hops: Array<MapData, NextHop>,
    zone_gateways: Array<MapData, NextHop>,
    local_ports: Array<MapData, LocalPort>,
    host_config: Array<MapData, HostConfig>,
    group_pairs: HashMap<MapData, OwnerPair, u32>,
    group_pairs_capacity: u32,
    counters: PerCpuArray<MapData, Counter>,
    drop_events: Option<RingBuf<MapData>>,
    monitor_lease: Array<MapData, MonitorLease>,
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
            counters: take(&mut ebpf, common::COUNTERS)?,
            drop_events: Some(take(&mut ebpf, common::DROP_EVENTS)?),
            monitor_lease: take(&mut ebpf, common::MONITOR_LEASE)?,
            ebpf,
        })
    }

    /// The loaded eBPF object (programs), for attaching and link pinning.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    pub fn xdp(&mut self, name: &'static str) -> Result<&mut Xdp> {
        program(&mut self.ebpf, name)
    }

    pub fn tc(&mut self, name: &'static str) -> Result<&mut SchedClassifier> {
        program(&mut self.ebpf, name)
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

    // ---- host and zones -------------------------------------------------

    /// Who this host is. Set it before attaching: until then every program
    /// fails closed (`no_route`) or passes to the stack (uplink).
    pub fn set_host(&mut self, host: &HostConfig) -> Result<()> {
        let mut host = *host;
        host.flags |= common::FLAG_PRESENT;
        self.host_config
            .set(0, host, 0)
            .map_err(map_err(common::HOST_CONFIG))
    }

    pub fn host(&self) -> Result<Option<HostConfig>> {
        let h = self
            .host_config
            .get(&0, 0)
            .map_err(map_err(common::HOST_CONFIG))?;
        Ok((h.flags & common::FLAG_PRESENT != 0).then_some(h))
    }

    /// Declare the /16 starting at `prefix` as zone slot `slot`.
    pub fn set_zone(&mut self, prefix: Ipv4Addr, slot: u32) -> Result<()> {
        check_slot(slot)?;
        self.zone_by_prefix
            .set(zone_prefix_index(prefix.into()), slot + 1, 0)
            .map_err(map_err(common::ZONE_BY_PREFIX))
    }

    pub fn clear_zone(&mut self, prefix: Ipv4Addr) -> Result<()> {
        self.zone_by_prefix
            .set(zone_prefix_index(prefix.into()), 0, 0)
            .map_err(map_err(common::ZONE_BY_PREFIX))
    }

    /// Zone slot of the /16 containing `addr`, if it is a zone.
    pub fn zone_of(&self, addr: Ipv4Addr) -> Result<Option<u32>> {
        let v = self
            .zone_by_prefix
            .get(&zone_prefix_index(addr.into()), 0)
            .map_err(map_err(common::ZONE_BY_PREFIX))?;
        Ok(v.checked_sub(1))
    }

    // ---- endpoints (owner of every container address) --------------------

    /// The owner of container `addr` with its groups bloom unknown (0), as
    /// maps written before blooms existed hold it: every pair with another
    /// owner is looked up in `GROUP_PAIRS`. The agent never writes this;
    /// it is for tests of that case and benchmarks of the plain lookup.
    pub fn set_endpoint_groups_unknown(
        &mut self,
        zone_slot: u32,
        addr: Ipv4Addr,
        owner: u32,
    ) -> Result<()> {
        self.set_endpoint_groups(zone_slot, addr, owner, 0)
    }

    /// The owner of container `addr` and the bloom of the owner's groups
    /// (`agent::plan::Blooms`, `netfabric_common::policy::groups_bloom`):
    /// what the agent writes. Pairs whose blooms are disjoint are denied
    /// without a `GROUP_PAIRS` lookup, so the bloom must cover every group
    /// the owner is in.
    pub fn set_endpoint_groups(
        &mut self,
        zone_slot: u32,
        addr: Ipv4Addr,
        owner: u32,
        groups: u32,
    ) -> Result<()> {
        check_slot(zone_slot)?;
        let e = Endpoint { owner, groups };
        self.endpoints
            .set(endpoint_index(zone_slot, addr.into()), e, 0)
            .map_err(map_err(common::ENDPOINTS))
    }

    pub fn clear_endpoint(&mut self, zone_slot: u32, addr: Ipv4Addr) -> Result<()> {
        self.set_endpoint_groups(zone_slot, addr, common::NO_OWNER, 0)
    }

    pub fn endpoint(&self, zone_slot: u32, addr: Ipv4Addr) -> Result<Endpoint> {
        check_slot(zone_slot)?;
        self.endpoints
            .get(&endpoint_index(zone_slot, addr.into()), 0)
            .map_err(map_err(common::ENDPOINTS))
    }

    // ---- next hops ---------------------------------------------------------

    /// Underlay next hop of host `host_octet` of zone `zone_slot`.
    pub fn set_next_hop(
        &mut self,
        zone_slot: u32,
        host_octet: u8,
        mac: [u8; 6],
        underlay: Ipv4Addr,
    ) -> Result<()> {
        check_slot(zone_slot)?;
        self.next_hops
            .set(
                next_hop_index(zone_slot, host_octet.into()),
                present_hop(mac, underlay),
                0,
            )
            .map_err(map_err(common::NEXT_HOPS))
    }

    pub fn clear_next_hop(&mut self, zone_slot: u32, host_octet: u8) -> Result<()> {
        check_slot(zone_slot)?;
        self.next_hops
            .set(
                next_hop_index(zone_slot, host_octet.into()),
                NextHop::default(),
                0,
            )
            .map_err(map_err(common::NEXT_HOPS))
    }

    /// The next hop of host `host_octet` of zone `zone_slot`, if set.
    pub fn next_hop(&self, zone_slot: u32, host_octet: u8) -> Result<Option<NextHop>> {
        check_slot(zone_slot)?;
        let h = self
            .next_hops
            .get(&next_hop_index(zone_slot, host_octet.into()), 0)
            .map_err(map_err(common::NEXT_HOPS))?;
        Ok((h.flags & common::FLAG_PRESENT != 0).then_some(h))
    }

    /// The gateway towards zone `zone_slot`, if set.
    pub fn zone_gateway(&self, zone_slot: u32) -> Result<Option<NextHop>> {
        check_slot(zone_slot)?;
        let h = self
            .zone_gateways
            .get(&zone_slot, 0)
            .map_err(map_err(common::ZONE_GATEWAYS))?;
        Ok((h.flags & common::FLAG_PRESENT != 0).then_some(h))
    }

    /// Where packets for zone `zone_slot` (another zone) are sent.
    pub fn set_zone_gateway(
        &mut self,
        zone_slot: u32,
        mac: [u8; 6],
        underlay: Ipv4Addr,
    ) -> Result<()> {
        check_slot(zone_slot)?;
        self.zone_gateways
            .set(zone_slot, present_hop(mac, underlay), 0)
            .map_err(map_err(common::ZONE_GATEWAYS))
    }

    pub fn clear_zone_gateway(&mut self, zone_slot: u32) -> Result<()> {
        check_slot(zone_slot)?;
        self.zone_gateways
            .set(zone_slot, NextHop::default(), 0)
            .map_err(map_err(common::ZONE_GATEWAYS))
    }

    // ---- local container ports ---------------------------------------------

    /// The port of this host's container `.container_octet`.
    pub fn set_local_port(
        &mut self,
        container_octet: u8,
        ifindex: u32,
        mac: [u8; 6],
    ) -> Result<()> {
        let port = LocalPort {
            ifindex,
            mac,
            flags: common::FLAG_PRESENT,
        };
        self.local_ports
            .set(container_octet.into(), port, 0)
            .map_err(map_err(common::LOCAL_PORTS))
    }

    pub fn clear_local_port(&mut self, container_octet: u8) -> Result<()> {
        self.local_ports
            .set(container_octet.into(), LocalPort::default(), 0)
            .map_err(map_err(common::LOCAL_PORTS))
    }

    pub fn local_port(&self, container_octet: u8) -> Result<Option<LocalPort>> {
        let p = self
            .local_ports
            .get(&container_octet.into(), 0)
            .map_err(map_err(common::LOCAL_PORTS))?;
        Ok((p.flags & common::FLAG_PRESENT != 0).then_some(p))
    }

    // ---- group relations -----------------------------------------------------

    /// Record that owners `a` and `b` share `shared_groups` (> 0) groups.
    /// A full table is an error, never a silent allow or drop of the entry.
    pub fn set_group_pair(&mut self, a: u32, b: u32, shared_groups: u32) -> Result<()> {
        let pair = OwnerPair::new(a, b);
        match self.group_pairs.insert(pair, shared_groups, 0) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(e))
                if matches!(
                    e.io_error.raw_os_error(),
                    Some(libc::E2BIG) | Some(libc::ENOMEM)
                ) =>
            {
                Err(DatapathError::MapFull {
                    name: common::GROUP_PAIRS,
                    capacity: self.group_pairs_capacity,
                })
            }
            Err(e) => Err(map_err(common::GROUP_PAIRS)(e)),
        }
    }

    /// Owners `a` and `b` no longer share any group.
    pub fn remove_group_pair(&mut self, a: u32, b: u32) -> Result<()> {
        match self.group_pairs.remove(&OwnerPair::new(a, b)) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            Err(e) => Err(map_err(common::GROUP_PAIRS)(e)),
        }
    }

    pub fn group_pairs(&self) -> Result<Vec<(OwnerPair, u32)>> {
        let raw = batch::read_all(self.group_pairs.map(), common::GROUP_PAIRS)?;
        Ok(raw.typed().collect())
    }

    pub fn group_pairs_capacity(&self) -> u32 {
        self.group_pairs_capacity
    }

    // ---- whole maps, batched (the agent's start-up read-back) ---------------

    /// Every zone: top 16 address bits → zone slot.
    pub fn zones(&self) -> Result<BTreeMap<u16, u32>> {
        let raw = batch::read_all(self.zone_by_prefix.map(), common::ZONE_BY_PREFIX)?;
        Ok(raw
            .typed::<u32, u32>()
            .filter_map(|(prefix, v)| Some((u16::try_from(prefix).ok()?, v.checked_sub(1)?)))
            .collect())
    }

    /// The occupied endpoints of zone `zone_slot`: low 16 address bits →
    /// endpoint (65,536 slots in a few batch reads).
    pub fn zone_endpoints(&self, zone_slot: u32) -> Result<Vec<(u16, Endpoint)>> {
        check_slot(zone_slot)?;
        let raw = batch::read_array_range(
            self.endpoints.map(),
            common::ENDPOINTS,
            endpoint_index(zone_slot, 0),
            1 << 16,
        )?;
        Ok(raw
            .typed::<u32, Endpoint>()
            .filter(|(_, e)| e.owner != common::NO_OWNER)
            .map(|(i, e)| (i as u16, e))
            .collect())
    }

    /// Every next hop set: (zone slot, host octet) → hop.
    pub fn all_next_hops(&self) -> Result<Vec<((u32, u8), NextHop)>> {
        let raw = batch::read_all(self.next_hops.map(), common::NEXT_HOPS)?;
        Ok(raw
            .typed::<u32, NextHop>()
            .filter(|(_, h)| h.flags & common::FLAG_PRESENT != 0)
            .map(|(i, h)| ((i >> 8, i as u8), h))
            .collect())
    }

    /// Every zone gateway set: zone slot → hop.
    pub fn all_zone_gateways(&self) -> Result<Vec<(u32, NextHop)>> {
        let raw = batch::read_all(self.zone_gateways.map(), common::ZONE_GATEWAYS)?;
        Ok(raw
            .typed::<u32, NextHop>()
            .filter(|(_, h)| h.flags & common::FLAG_PRESENT != 0)
            .collect())
    }

    /// Every local port set: container octet → port.
    pub fn all_local_ports(&self) -> Result<Vec<(u8, LocalPort)>> {
        let raw = batch::read_all(self.local_ports.map(), common::LOCAL_PORTS)?;
        Ok(raw
            .typed::<u32, LocalPort>()
            .filter(|(_, p)| p.flags & common::FLAG_PRESENT != 0)
            .filter_map(|(i, p)| Some((u8::try_from(i).ok()?, p)))
            .collect())
    }

    // ---- counters --------------------------------------------------------------

    /// All counters summed over CPUs.
    pub fn counters(&self) -> Result<CounterSnapshot> {
        let raw = batch::read_all(self.counters.map(), common::COUNTERS)?;
        Ok(CounterSnapshot::from_raw(&raw))
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

fn present_hop(mac: [u8; 6], underlay: Ipv4Addr) -> NextHop {
    NextHop {
        underlay_ip: underlay.into(),
        mac,
        flags: common::FLAG_PRESENT,
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

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))?;
    T::try_from(map).map_err(map_err(name))
}
