//! Everything the netfabric eBPF programs and userspace must agree on.
//!
//! * [`verdict`]: the single drop-reason enum with stable numbers, the
//!   forward kinds, directions and the counter layout.
//! * [`maps`]: map names, capacities and the `#[repr(C)]` key/value types.
//! * [`plan`]: the address plan (zone /16, host /24, container octet) as bit
//!   arithmetic, so lookups are array indexes.
//! * [`policy`]: the rule of docs/policy.md#the-rule (same owner, shared group, system owner,
//!   outside world) as one pure function used by the kernel and by the
//!   userspace reference model.
//! * [`conntrack`]: connection tracking and port scopes (stateful policy).
//! * [`service`]: services' VIPs, Maglev tables and flow translations.
//! * [`checksum`]: the incremental IPv4 checksum update for a TTL decrement.
//!
//! Byte order: every IPv4 address stored in a map is a `u32` in **host**
//! byte order (`u32::from(Ipv4Addr)`); MAC addresses are `[u8; 6]` in wire
//! order. Owner ids are `u32`, assigned by the agent; `0` means "no owner".
#![no_std]

pub mod checksum;
pub mod conntrack;
pub mod maps;
pub mod plan;
pub mod policy;
pub mod resolver;
pub mod service;
pub mod verdict;

pub use maps::*;
pub use verdict::*;
