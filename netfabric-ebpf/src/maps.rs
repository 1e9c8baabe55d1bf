//! Every map of the datapath, declared once. Names, sizes and value types
//! come from `netfabric_common::maps`.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use netfabric_common::{
    CONNECTIONS_ENTRIES, COUNTER_SLOTS, Counter, DROP_EVENTS_BYTES, ENDPOINTS_ENTRIES, Endpoint,
    GROUP_PAIRS_ENTRIES, HOST_CONFIG_ENTRIES, HostConfig, LOCAL_PORTS_ENTRIES, LocalPort,
    MONITOR_LEASE_ENTRIES, MonitorLease, NEXT_HOPS_ENTRIES, NextHop, OWNER_GROUPS_ENTRIES,
    OwnerGroups, OwnerPair, PORT_SCOPES_ENTRIES, SERVICE_COUNTERS_ENTRIES, SERVICE_FLOWS_ENTRIES,
    SERVICE_PORTS_ENTRIES, SERVICE_TABLES_ENTRIES, ZONE_BY_PREFIX_ENTRIES, ZONE_GATEWAYS_ENTRIES,
    conntrack::{ConnKey, Connection, PortScope, ScopedPair},
    service::{ServiceCounterKey, ServiceFlow, ServicePort, ServicePortKey, ServiceTable},
};

#[map]
pub static ZONE_BY_PREFIX: Array<u32> = Array::with_max_entries(ZONE_BY_PREFIX_ENTRIES, 0);

#[map]
pub static ENDPOINTS: Array<Endpoint> = Array::with_max_entries(ENDPOINTS_ENTRIES, 0);

#[map]
pub static NEXT_HOPS: Array<NextHop> = Array::with_max_entries(NEXT_HOPS_ENTRIES, 0);

#[map]
pub static ZONE_GATEWAYS: Array<NextHop> = Array::with_max_entries(ZONE_GATEWAYS_ENTRIES, 0);

#[map]
pub static LOCAL_PORTS: Array<LocalPort> = Array::with_max_entries(LOCAL_PORTS_ENTRIES, 0);

#[map]
pub static HOST_CONFIG: Array<HostConfig> = Array::with_max_entries(HOST_CONFIG_ENTRIES, 0);

#[map]
pub static GROUP_PAIRS: HashMap<OwnerPair, u32> =
    HashMap::with_max_entries(GROUP_PAIRS_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
pub static OWNER_GROUPS: Array<OwnerGroups> = Array::with_max_entries(OWNER_GROUPS_ENTRIES, 0);

/// Preallocated (about 8 MiB): the agent's writes never fail for memory
/// (a scope it cannot write stops its change), and in the decision bench
/// (`--quick`, one run each) the cold lookup of a full zone added 467 ns
/// (container) and 342 ns (uplink) to the group path, against 522 and
/// 534 ns without preallocation.
#[map]
pub static PORT_SCOPES: HashMap<ScopedPair, PortScope> =
    HashMap::with_max_entries(PORT_SCOPES_ENTRIES, 0);

#[map]
pub static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map]
pub static DROP_EVENTS: RingBuf = RingBuf::with_byte_size(DROP_EVENTS_BYTES, 0);

#[map]
pub static MONITOR_LEASE: Array<MonitorLease> = Array::with_max_entries(MONITOR_LEASE_ENTRIES, 0);

#[map]
pub static CONNECTIONS: LruHashMap<ConnKey, Connection> =
    LruHashMap::with_max_entries(CONNECTIONS_ENTRIES, 0);

#[map]
pub static SERVICE_PORTS: HashMap<ServicePortKey, ServicePort> =
    HashMap::with_max_entries(SERVICE_PORTS_ENTRIES, BPF_F_NO_PREALLOC);

/// Not preallocated: a table is about 65 KiB, and most ids have no service.
#[map]
pub static SERVICE_TABLES: HashMap<u32, ServiceTable> =
    HashMap::with_max_entries(SERVICE_TABLES_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
pub static SERVICE_FLOWS: LruHashMap<ConnKey, ServiceFlow> =
    LruHashMap::with_max_entries(SERVICE_FLOWS_ENTRIES, 0);

#[map]
pub static SERVICE_COUNTERS: LruPerCpuHashMap<ServiceCounterKey, Counter> =
    LruPerCpuHashMap::with_max_entries(SERVICE_COUNTERS_ENTRIES, 0);
