//! Services (docs/services.md): a virtual address (VIP) per service,
//! load-balanced over the service's backends at the client's own host
//! (`from_container`), with Maglev consistent hashing.
//!
//! * `SERVICE_PORTS` (zone-wide, written by the agent): a VIP's port and
//!   protocol → the service and the port its backends listen on.
//! * `SERVICE_TABLES` (zone-wide, written by the agent): a service → its
//!   members (backend containers) and its Maglev lookup table over the
//!   healthy ones. A table is replaced whole in one map update, so a
//!   packet sees either the old table or the new one.
//! * `SERVICE_FLOWS` (per host, written by the programs): the translations
//!   of open flows, forward (client → VIP to the backend) and reverse (the
//!   backend's reply back to the VIP). An LRU: a full table evicts its
//!   least recently used flow, whose next packet is balanced again.
//! * `SERVICE_COUNTERS` (per host, written by the programs): packets and
//!   bytes per service and backend.
//!
//! VIPs live at host octet [`SERVICE_HOST_OCTET`] of their zone
//! (`10.<z>.0.1`–`10.<z>.0.254`), which the address plan never gives a
//! host, so a VIP is recognised from its address bits like everything
//! else, and its service id is an index ([`service_id`]).

use crate::conntrack::ConnKey;

/// The host octet of a zone's service range: `10.<z>.0.0/24`.
pub const SERVICE_HOST_OCTET: u32 = 0;

/// `skb->mark` of the agent's health probes to its local backends
/// (`SO_MARK`, which only a process with `CAP_NET_ADMIN` can set). A
/// packet from the host stack with this mark and the gateway address
/// ([`crate::resolver::RESOLVER_ADDR`], which the probes bind) as source
/// passes `to_container` to any container: the probes judge containers of
/// every owner, as the host itself does. Traffic routed in from outside
/// never carries it.
pub const HEALTH_PROBE_MARK: u32 = 0x6e66_7062;

/// Services one host's maps can describe: 256 ids per zone slot.
pub const MAX_SERVICES: u32 = crate::MAX_ZONES * 256;

/// A service's id on this host: its zone slot and the VIP's last octet.
/// Deterministic from the state, so every map and counter of a service
/// agrees without a table of ids.
#[inline(always)]
pub const fn service_id(zone_slot: u32, vip: u32) -> u32 {
    (zone_slot << 8) | (vip & 0xff)
}

/// Is `addr` in the service range of its /16 (whether or not the /16 is a
/// zone, and whether or not a service has it)?
#[inline(always)]
pub const fn is_service_address(addr: u32) -> bool {
    crate::plan::host_octet(addr) == SERVICE_HOST_OCTET
}

/// Key of `SERVICE_PORTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortKey {
    /// The VIP, host byte order.
    pub vip: u32,
    /// The service's port, host byte order.
    pub port: u16,
    /// [`crate::conntrack::PROTO_TCP`] or [`crate::conntrack::PROTO_UDP`].
    pub protocol: u8,
    pub _pad: u8,
}

/// Value of `SERVICE_PORTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServicePort {
    /// [`service_id`]: the key of the service's `SERVICE_TABLES` entry.
    pub service: u32,
    /// The service's owner (for drop events and counters; the policy judges
    /// the translated packet against the backend's own `ENDPOINTS` entry).
    pub owner: u32,
    /// The port the backends listen on, host byte order.
    pub target_port: u16,
    pub _pad: [u8; 6],
}

/// Slots of a Maglev lookup table: a prime well above 100× [`MAX_BACKENDS`]
/// (128 × 512), the paper's size. With 100 backends, 16,381 slots moved
/// 2.4% of the flows when one left (its own 1% and 1.4% of the others'),
/// over the goal of 1/N + 1%; 65,537 move 1.6% (about 64 KiB per
/// service, in a map that is not preallocated).
pub const MAGLEV_SLOTS: usize = 65_537;
/// Backends one service may have.
pub const MAX_BACKENDS: usize = 128;
/// A slot or flow with no member (a service without a healthy backend).
pub const NO_MEMBER: u8 = 0xff;

/// Value of `SERVICE_TABLES`: the service's members and its lookup table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceTable {
    /// Backend container addresses (host byte order) by member index; 0:
    /// unused. Every member of the service is here, healthy or not: an open
    /// flow keeps its backend while the backend stays a member (a failed
    /// health check stops new flows only); a backend removed from the
    /// service ends its flows.
    pub members: [u32; MAX_BACKENDS],
    /// Member index per slot over the *healthy* members ([`populate`]);
    /// all [`NO_MEMBER`] when none is healthy.
    pub slots: [u8; MAGLEV_SLOTS],
    pub _pad: [u8; 3],
}

impl Default for ServiceTable {
    fn default() -> Self {
        ServiceTable {
            members: [0; MAX_BACKENDS],
            slots: [NO_MEMBER; MAGLEV_SLOTS],
            _pad: [0; 3],
        }
    }
}

/// `SERVICE_FLOWS` entry kinds.
pub const FLOW_FORWARD: u8 = 1;
pub const FLOW_REVERSE: u8 = 2;

/// Value of `SERVICE_FLOWS`, keyed by [`ConnKey`]:
/// * forward, under the client's key to the VIP (`client, vip, client
///   port, service port`): the backend chosen and its port;
/// * reverse, under the backend's reply key (`backend, client, target
///   port, client port`): the VIP and service port the reply must come
///   from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceFlow {
    /// `bpf_ktime_get_coarse_ns()` of the last packet that refreshed it
    /// (rate-limited like connections, [`crate::conntrack::REFRESH_NS`]);
    /// idle past [`crate::conntrack::idle_timeout_ns`] of an established
    /// connection it is as good as absent.
    pub last_seen_ns: u64,
    /// Forward: the backend; reverse: the VIP. Host byte order.
    pub addr: u32,
    /// Forward: the backend's port; reverse: the service port.
    pub port: u16,
    /// [`FLOW_FORWARD`] or [`FLOW_REVERSE`].
    pub kind: u8,
    /// Forward: the backend's member index, checked against the service's
    /// current `members` on every packet.
    pub member: u8,
    /// [`service_id`].
    pub service: u32,
    pub _pad: u32,
}

/// Key of `SERVICE_COUNTERS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceCounterKey {
    /// [`service_id`].
    pub service: u32,
    /// The backend's address.
    pub backend: u32,
}

/// The flow hash the lookup table is indexed by ([`slot_of`]): the
/// client's 5-tuple towards the VIP, mixed with murmur3's finalizer so
/// that neighbouring ports spread over the table.
#[inline(always)]
pub const fn flow_hash(key: &ConnKey) -> u32 {
    let mut h = key.src ^ key.dst.rotate_left(13);
    h ^= ((key.src_port as u32) << 16) | key.dst_port as u32;
    h ^= (key.protocol as u32) << 24;
    fmix32(h)
}

/// The lookup-table slot of a flow.
#[inline(always)]
pub const fn slot_of(key: &ConnKey) -> usize {
    (flow_hash(key) % MAGLEV_SLOTS as u32) as usize
}

#[inline(always)]
const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Fills `slots` with Maglev's population (Eisenbud et al., NSDI 2016) over
/// the members whose bit is set in `healthy` (bit `i`: member `i`; an
/// unused member, address 0, never takes a slot). Each member's
/// permutation comes from its *address* only, so every host builds the same
/// table from the same members, and removing one member moves only the
/// slots it held (plus a few, as the paper measures). With no healthy
/// member every slot is [`NO_MEMBER`].
pub fn populate(members: &[u32; MAX_BACKENDS], healthy: u128, slots: &mut [u8; MAGLEV_SLOTS]) {
    const M: u32 = MAGLEV_SLOTS as u32;
    *slots = [NO_MEMBER; MAGLEV_SLOTS];
    // `at[i]`: member i's next candidate, `(offset + next * skip) % M`
    // of the paper, stepped by one addition (skip < M) instead of a
    // multiplication and a division per probe: filling M slots probes
    // about M ln M times, and the agent rewrites a table on every change
    // of its members or their health.
    let mut at = [0u32; MAX_BACKENDS];
    let mut skip = [0u32; MAX_BACKENDS];
    let mut live = 0usize;
    let mut i = 0;
    while i < MAX_BACKENDS {
        if members[i] != 0 && healthy & (1u128 << i) != 0 {
            at[i] = fmix32(members[i] ^ 0x9e37_79b9) % M;
            skip[i] = fmix32(members[i].rotate_left(16) ^ 0x7f4a_7c15) % (M - 1) + 1;
            live += 1;
        }
        i += 1;
    }
    if live == 0 {
        return;
    }
    let step = |c: u32, skip: u32| {
        let n = c + skip;
        if n >= M { n - M } else { n }
    };
    let mut filled = 0usize;
    loop {
        let mut i = 0;
        while i < MAX_BACKENDS {
            if members[i] != 0 && healthy & (1u128 << i) != 0 {
                // The member's next preferred slot that is still free.
                while slots[at[i] as usize] != NO_MEMBER {
                    at[i] = step(at[i], skip[i]);
                }
                slots[at[i] as usize] = i as u8;
                at[i] = step(at[i], skip[i]);
                filled += 1;
                if filled == MAGLEV_SLOTS {
                    return;
                }
            }
            i += 1;
        }
    }
}

const _: () = {
    assert!(core::mem::size_of::<ServicePortKey>() == 8);
    assert!(core::mem::size_of::<ServicePort>() == 16);
    assert!(core::mem::size_of::<ServiceTable>() == 4 * MAX_BACKENDS + MAGLEV_SLOTS + 3);
    assert!(core::mem::size_of::<ServiceFlow>() == 24);
    assert!(core::mem::size_of::<ServiceCounterKey>() == 8);
    assert!(MAX_BACKENDS <= NO_MEMBER as usize);
    assert!(MAX_BACKENDS <= 128, "the healthy set is a u128");
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, `Copy`, integers and byte arrays only, no
    // implicit padding (size asserts above).
    unsafe impl aya::Pod for super::ServicePortKey {}
    unsafe impl aya::Pod for super::ServicePort {}
    unsafe impl aya::Pod for super::ServiceTable {}
    unsafe impl aya::Pod for super::ServiceFlow {}
    unsafe impl aya::Pod for super::ServiceCounterKey {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::boxed::Box;

    use super::*;

    fn table(n: usize, healthy: u128) -> Box<ServiceTable> {
        let mut t = Box::new(ServiceTable::default());
        for i in 0..n {
            t.members[i] = u32::from_be_bytes([10, 1, (i / 200 + 1) as u8, (i % 200 + 1) as u8]);
        }
        populate(&t.members, healthy, &mut t.slots);
        t
    }

    fn all(n: usize) -> u128 {
        if n == 128 {
            u128::MAX
        } else {
            (1u128 << n) - 1
        }
    }

    #[test]
    fn every_slot_goes_to_a_healthy_member_in_near_equal_shares() {
        for n in [1usize, 2, 3, 7, 64, 128] {
            let t = table(n, all(n));
            let mut share = [0usize; MAX_BACKENDS];
            for s in t.slots {
                assert!((s as usize) < n, "slot to {s} of {n}");
                share[s as usize] += 1;
            }
            let (lo, hi) = (
                *share[..n].iter().min().unwrap(),
                *share[..n].iter().max().unwrap(),
            );
            assert!(hi - lo <= 1, "{n} members: shares {lo}..{hi}");
        }
    }

    /// The paper's population, written as the formula: what [`populate`]
    /// must equal slot for slot.
    fn populate_by_the_formula(
        members: &[u32; MAX_BACKENDS],
        healthy: u128,
    ) -> Box<[u8; MAGLEV_SLOTS]> {
        const M: u64 = MAGLEV_SLOTS as u64;
        let mut slots = Box::new([NO_MEMBER; MAGLEV_SLOTS]);
        let live: std::vec::Vec<usize> = (0..MAX_BACKENDS)
            .filter(|&i| members[i] != 0 && healthy & (1u128 << i) != 0)
            .collect();
        if live.is_empty() {
            return slots;
        }
        let offset = |i: usize| u64::from(fmix32(members[i] ^ 0x9e37_79b9)) % M;
        let skip =
            |i: usize| u64::from(fmix32(members[i].rotate_left(16) ^ 0x7f4a_7c15)) % (M - 1) + 1;
        let mut next = [0u64; MAX_BACKENDS];
        let mut filled = 0;
        loop {
            for &i in &live {
                let mut c = ((offset(i) + next[i] * skip(i)) % M) as usize;
                while slots[c] != NO_MEMBER {
                    next[i] += 1;
                    c = ((offset(i) + next[i] * skip(i)) % M) as usize;
                }
                slots[c] = i as u8;
                next[i] += 1;
                filled += 1;
                if filled == MAGLEV_SLOTS {
                    return slots;
                }
            }
        }
    }

    #[test]
    fn the_population_is_the_papers_formula() {
        for (n, healthy) in [
            (1usize, 1u128),
            (3, 0b101),
            (7, all(7)),
            (64, all(64) & !0xf0),
            (128, all(128)),
        ] {
            let t = table(n, healthy);
            assert!(
                t.slots == *populate_by_the_formula(&t.members, healthy),
                "{n} members"
            );
        }
    }

    #[test]
    fn no_healthy_member_leaves_every_slot_empty() {
        let t = table(5, 0);
        assert!(t.slots.iter().all(|&s| s == NO_MEMBER));
    }

    #[test]
    fn removing_one_of_n_moves_little_more_than_its_share() {
        let n = 10;
        let before = table(n, all(n));
        let after = table(n, all(n) & !(1 << 3));
        let moved = before
            .slots
            .iter()
            .zip(after.slots.iter())
            .filter(|(b, a)| b != a)
            .count();
        let own = before.slots.iter().filter(|&&s| s == 3).count();
        assert_eq!(after.slots.iter().filter(|&&s| s == 3).count(), 0);
        // Maglev moves the removed member's slots and, by the paper, a few
        // more; the goal is at most 1/N + 1% of the flows.
        let limit = MAGLEV_SLOTS / n + MAGLEV_SLOTS / 100;
        assert!(
            moved >= own && moved <= limit,
            "moved {moved}, own {own}, limit {limit}"
        );
    }

    #[test]
    fn the_table_depends_on_the_members_not_their_order_of_health() {
        let a = table(6, all(6));
        let b = table(6, all(6));
        assert_eq!(a.slots, b.slots);
    }

    #[test]
    fn neighbouring_client_ports_spread_over_the_table() {
        let mut hit = [0usize; 8];
        for p in 0..8000u16 {
            let key = ConnKey {
                src: 0x0a01_0102,
                dst: 0x0a01_0005,
                src_port: 30000 + p,
                dst_port: 80,
                protocol: 6,
                _pad: [0; 3],
            };
            hit[slot_of(&key) * 8 / MAGLEV_SLOTS] += 1;
        }
        assert!(hit.iter().all(|&h| (800..1200).contains(&h)), "{hit:?}");
    }
}
