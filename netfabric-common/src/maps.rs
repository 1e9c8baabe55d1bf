//! Map names, capacities and `#[repr(C)]` key/value types.
//!
//! Every map is declared once in the eBPF crate as a SCREAMING_CASE static
//! whose name is the `pub const` here; userspace opens maps by these names.
//! All structs have explicit padding and size asserts: they are ABI with the
//! pinned maps under `/sys/fs/bpf/netfabric/<host>/`.

/// Zones one host's maps can describe (slots `0..MAX_ZONES`).
pub const MAX_ZONES: u32 = 16;
/// Endpoint slots per zone: indexed by the low 16 bits (host, container).
pub const ZONE_SLOTS: u32 = 1 << 16;

/// `Array<u32>` indexed by the top 16 bits of an address; value is the zone
/// slot + 1, or 0 when the /16 is not a zone.
pub const ZONE_BY_PREFIX: &str = "ZONE_BY_PREFIX";
pub const ZONE_BY_PREFIX_ENTRIES: u32 = 1 << 16;
/// `Array<Endpoint>` indexed by `zone_slot << 16 | (addr & 0xffff)`: the owner
/// of every container address of every zone.
pub const ENDPOINTS: &str = "ENDPOINTS";
pub const ENDPOINTS_ENTRIES: u32 = MAX_ZONES * ZONE_SLOTS;
/// `Array<NextHop>` indexed by `zone_slot << 8 | host_octet`: underlay MAC of
/// every host of every zone (only the local zone's are used for forwarding).
pub const NEXT_HOPS: &str = "NEXT_HOPS";
pub const NEXT_HOPS_ENTRIES: u32 = MAX_ZONES * 256;
/// `Array<NextHop>` indexed by zone slot: where packets for that (other)
/// zone go: the local zone's router towards it.
pub const ZONE_GATEWAYS: &str = "ZONE_GATEWAYS";
pub const ZONE_GATEWAYS_ENTRIES: u32 = MAX_ZONES;
/// `Array<LocalPort>` indexed by the container octet of this host's /24.
pub const LOCAL_PORTS: &str = "LOCAL_PORTS";
pub const LOCAL_PORTS_ENTRIES: u32 = 256;
/// `Array<HostConfig>` with one entry: who this host is.
pub const HOST_CONFIG: &str = "HOST_CONFIG";
pub const HOST_CONFIG_ENTRIES: u32 = 1;
/// `HashMap<OwnerPair, u32>`: pairs of different owners sharing at least one
/// group; the value counts the groups they share (reference count kept by the
/// agent). Not preallocated.
pub const GROUP_PAIRS: &str = "GROUP_PAIRS";
pub const GROUP_PAIRS_ENTRIES: u32 = 1 << 20;
/// `Array<OwnerGroups>` indexed by [`owner_groups_index`] (owner id modulo
/// the size): the exact group keys of an owner, so that two listed owners
/// are judged from two small array entries instead of a cold `GROUP_PAIRS`
/// bucket. An entry speaks only for the owner it names; an owner without
/// its entry (too many groups, a slot or group key it would share) is
/// judged by `GROUP_PAIRS`, which stays complete.
pub const OWNER_GROUPS: &str = "OWNER_GROUPS";
pub const OWNER_GROUPS_ENTRIES: u32 = 1 << 16;
/// Group keys one [`OwnerGroups`] entry holds.
pub const OWNER_GROUP_KEYS: usize = 6;
/// `LruHashMap<ConnKey, Connection>` (per host, written by the programs):
/// connections whose replies the owner rule alone would refuse
/// ([`crate::conntrack`]). LRU: a full table evicts, it never fails open.
pub const CONNECTIONS: &str = "CONNECTIONS";
pub const CONNECTIONS_ENTRIES: u32 = 1 << 18;
/// `HashMap<ScopedPair, PortScope>` (zone-wide, written by the agent): what
/// a sending owner may open towards a receiving owner that narrowed its
/// access ([`crate::conntrack`]); consulted only for receivers flagged
/// [`crate::policy::INGRESS_SCOPED`]. Absent pair: not narrowed.
pub const PORT_SCOPES: &str = "PORT_SCOPES";
pub const PORT_SCOPES_ENTRIES: u32 = 1 << 16;
/// `HashMap<ServicePortKey, ServicePort>` (zone-wide, written by the
/// agent): every VIP port of every service ([`crate::service`]).
pub const SERVICE_PORTS: &str = "SERVICE_PORTS";
pub const SERVICE_PORTS_ENTRIES: u32 = 1 << 16;
/// `HashMap<u32, ServiceTable>` (zone-wide, written by the agent, not
/// preallocated: about 65 KiB per service): a service's members and Maglev
/// table by [`crate::service::service_id`].
pub const SERVICE_TABLES: &str = "SERVICE_TABLES";
pub const SERVICE_TABLES_ENTRIES: u32 = crate::service::MAX_SERVICES;
/// `LruHashMap<ConnKey, ServiceFlow>` (per host, written by the programs):
/// the forward and reverse translations of open service flows. LRU: a full
/// table evicts; an evicted flow's next packet is balanced again.
pub const SERVICE_FLOWS: &str = "SERVICE_FLOWS";
pub const SERVICE_FLOWS_ENTRIES: u32 = 1 << 18;
/// `LruPerCpuHashMap<ServiceCounterKey, Counter>` (per host, written by the
/// programs): packets and bytes balanced per service and backend.
pub const SERVICE_COUNTERS: &str = "SERVICE_COUNTERS";
pub const SERVICE_COUNTERS_ENTRIES: u32 = 1 << 15;
/// `PerCpuArray<Counter>` indexed by [`crate::Verdict::counter_slot`].
pub const COUNTERS: &str = "COUNTERS";
/// `RingBuf` of [`DropEvent`]s for `netfabric monitor`.
pub const DROP_EVENTS: &str = "DROP_EVENTS";
pub const DROP_EVENTS_BYTES: u32 = 256 * 1024;
/// `Array<MonitorLease>` with one entry: drop events go to `DROP_EVENTS` only
/// while a monitor holds this lease (nobody reads them otherwise, and a
/// flood of drops should cost no more than forwarding).
pub const MONITOR_LEASE: &str = "MONITOR_LEASE";
pub const MONITOR_LEASE_ENTRIES: u32 = 1;

/// Every map, for pinning and `maps list`.
pub const ALL_MAPS: [&str; 17] = [
    ZONE_BY_PREFIX,
    ENDPOINTS,
    NEXT_HOPS,
    ZONE_GATEWAYS,
    LOCAL_PORTS,
    HOST_CONFIG,
    GROUP_PAIRS,
    OWNER_GROUPS,
    PORT_SCOPES,
    COUNTERS,
    DROP_EVENTS,
    MONITOR_LEASE,
    CONNECTIONS,
    SERVICE_PORTS,
    SERVICE_TABLES,
    SERVICE_FLOWS,
    SERVICE_COUNTERS,
];

/// The reserved owner that may talk to every container (load balancers,
/// health checkers, monitoring).
pub const SYSTEM_OWNER: u32 = 1;
/// Owner id meaning "empty slot".
pub const NO_OWNER: u32 = 0;

/// Set on every populated [`Endpoint`], [`NextHop`], [`LocalPort`] and [`HostConfig`].
pub const FLAG_PRESENT: u16 = 1;

/// One container address of a zone.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Owner id; [`NO_OWNER`] marks an empty slot.
    pub owner: u32,
    /// The owner's groups as a bloom filter
    /// ([`crate::policy::groups_bloom`]): two owners whose blooms share no
    /// bit share no group, and the programs deny without looking up
    /// `GROUP_PAIRS`. 0 (bit [`crate::policy::GROUPS_KNOWN`] clear, as in
    /// maps written before the field existed): unknown, always look up.
    pub groups: u32,
}

/// An L2 next hop on the underlay.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// Underlay IPv4 address, host byte order (informational: the datapath
    /// only needs the MAC).
    pub underlay_ip: u32,
    pub mac: [u8; 6],
    /// [`FLAG_PRESENT`] when populated.
    pub flags: u16,
}

/// A container port on this host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LocalPort {
    /// ifindex of the host-side end of the container's veth.
    pub ifindex: u32,
    /// The container's own MAC (its end of the veth).
    pub mac: [u8; 6],
    /// [`FLAG_PRESENT`] when populated.
    pub flags: u16,
}

/// This host's identity.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostConfig {
    /// The zone's /16 network address, host byte order (e.g. `0x0a01_0000`).
    pub zone_prefix: u32,
    /// Slot of this host's zone in `ENDPOINTS`/`NEXT_HOPS`.
    pub zone_slot: u32,
    /// Third octet of this host's /24 (1..=254).
    pub host_octet: u32,
    /// ifindex of the uplink.
    pub uplink_ifindex: u32,
    /// MAC of the uplink: source MAC of everything sent to other hosts.
    pub uplink_mac: [u8; 6],
    /// MAC containers resolve their default gateway to (the host bridge):
    /// source MAC of everything delivered to a container.
    pub gateway_mac: [u8; 6],
    /// MAC of the zone's router: the only sender allowed to bring sources of
    /// other zones in over the uplink (the agent uses this zone's gateway).
    /// Sources outside every zone are not MAC-checked: policy lets them reach
    /// only system-owner containers.
    pub zone_router_mac: [u8; 6],
    /// [`FLAG_PRESENT`] once the agent configured the host.
    pub flags: u16,
}

/// Key of `GROUP_PAIRS`: two different owners, `low < high`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerPair {
    pub low: u32,
    pub high: u32,
}

impl OwnerPair {
    /// The normalised pair; membership is symmetric.
    #[inline(always)]
    pub const fn new(a: u32, b: u32) -> Self {
        if a < b {
            OwnerPair { low: a, high: b }
        } else {
            OwnerPair { low: b, high: a }
        }
    }
}

/// `OWNER_GROUPS` slot of `owner`.
#[inline(always)]
pub const fn owner_groups_index(owner: u32) -> u32 {
    owner % OWNER_GROUPS_ENTRIES
}

/// Every group of one owner, as group keys (`agent::plan::group_key`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OwnerGroups {
    /// The owner these groups are of; [`NO_OWNER`]: empty slot.
    pub owner: u32,
    /// Keys in use (`keys[..count]`), at most [`OWNER_GROUP_KEYS`].
    pub count: u32,
    pub keys: [u32; OWNER_GROUP_KEYS],
}

impl OwnerGroups {
    /// The entry of `owner` in exactly the groups `keys` (distinct), or
    /// `None` when they do not fit.
    pub fn new(owner: u32, keys: &[u32]) -> Option<OwnerGroups> {
        if keys.len() > OWNER_GROUP_KEYS {
            return None;
        }
        let mut g = OwnerGroups {
            owner,
            count: keys.len() as u32,
            keys: [0; OWNER_GROUP_KEYS],
        };
        g.keys[..keys.len()].copy_from_slice(keys);
        Some(g)
    }

    /// The keys in use.
    pub fn keys(&self) -> &[u32] {
        &self.keys[..(self.count as usize).min(OWNER_GROUP_KEYS)]
    }
}

/// One per-CPU counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// A drop, as sent to `netfabric monitor` through `DROP_EVENTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    /// Host byte order; 0 when the packet had no IPv4 header.
    pub src_ip: u32,
    pub dst_ip: u32,
    /// Owner ids as known at drop time; [`NO_OWNER`] when unknown.
    pub src_owner: u32,
    pub dst_owner: u32,
    /// Interface the packet arrived on (or was leaving, for `ToContainer`).
    pub ifindex: u32,
    /// [`crate::Direction`] as u8.
    pub direction: u8,
    /// [`crate::DropReason`] as u8.
    pub reason: u8,
    pub _pad: [u8; 2],
    /// Length of the packet in bytes.
    pub len: u32,
    pub _pad2: u32,
}

/// Value of `MONITOR_LEASE`: until when drop events are wanted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorLease {
    /// CLOCK_MONOTONIC nanoseconds (the programs compare it with
    /// `bpf_ktime_get_coarse_ns()`); [`MonitorLease::NONE`]: no monitor,
    /// [`MonitorLease::FOREVER`]: always (tests).
    pub until_ns: u64,
}

impl MonitorLease {
    pub const NONE: MonitorLease = MonitorLease { until_ns: 0 };
    pub const FOREVER: MonitorLease = MonitorLease { until_ns: u64::MAX };
}

const _: () = {
    assert!(core::mem::size_of::<Endpoint>() == 8);
    assert!(core::mem::size_of::<NextHop>() == 12);
    assert!(core::mem::size_of::<LocalPort>() == 12);
    assert!(core::mem::size_of::<HostConfig>() == 36);
    assert!(core::mem::size_of::<OwnerPair>() == 8);
    assert!(core::mem::size_of::<OwnerGroups>() == 32);
    assert!(core::mem::size_of::<Counter>() == 16);
    assert!(core::mem::size_of::<DropEvent>() == 40);
    assert!(core::mem::size_of::<MonitorLease>() == 8);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, contain only integers and
    // byte arrays, and have no implicit padding (see the size asserts above).
    unsafe impl aya::Pod for super::Endpoint {}
    unsafe impl aya::Pod for super::NextHop {}
    unsafe impl aya::Pod for super::LocalPort {}
    unsafe impl aya::Pod for super::HostConfig {}
    unsafe impl aya::Pod for super::OwnerPair {}
    unsafe impl aya::Pod for super::OwnerGroups {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::DropEvent {}
    unsafe impl aya::Pod for super::MonitorLease {}
}
