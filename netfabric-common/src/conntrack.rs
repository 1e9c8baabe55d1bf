//! Connection tracking and port scopes: the state the stateful policy
//! (docs/policy.md) keeps beside the owner rule.
//!
//! * `CONNECTIONS` (per host, written by the programs): connections whose
//!   replies the owner rule alone would refuse. A reply passes when the
//!   connection it answers is tracked *and* its original direction is still
//!   allowed by the current policy, re-judged on every packet: a revoked
//!   group or scope cuts an established connection at its next packet. The
//!   map is an LRU hash: a full table evicts its least recently used entry;
//!   it never lets a packet through that the policy refuses.
//! * `PORT_SCOPES` (zone-wide, written by the agent): the ports a receiving
//!   owner leaves open to one sending owner whose access it narrowed
//!   (security groups).

/// Key of `CONNECTIONS`: a connection as its first packet saw it (the
/// direction that opened it). A reply looks up [`ConnKey::reversed`] of its
/// own key.
///
/// Ports are the TCP/UDP ports; for ICMP echo, the request carries the
/// echo identifier as `src_port` and 0 as `dst_port` (and the reply the
/// other way round), so a reply's reversed key is the request's key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    /// Host byte order, as every address in the maps.
    pub src: u32,
    pub dst: u32,
    /// Host byte order.
    pub src_port: u16,
    pub dst_port: u16,
    /// IP protocol number ([`PROTO_TCP`], [`PROTO_UDP`], [`PROTO_ICMP`]).
    pub protocol: u8,
    pub _pad: [u8; 3],
}

impl ConnKey {
    /// The key the other direction of the same connection has.
    #[inline(always)]
    pub const fn reversed(&self) -> ConnKey {
        ConnKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            protocol: self.protocol,
            _pad: [0; 3],
        }
    }
}

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Where a tracked connection is in its life; picks its idle timeout.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnState {
    /// Opened (TCP: SYN seen), no reply yet.
    Opening = 1,
    /// A reply was seen (TCP: SYN-ACK; UDP/ICMP: any reply).
    Established = 2,
    /// TCP FIN or RST seen in either direction.
    Closing = 3,
}

impl ConnState {
    pub const fn from_u8(v: u8) -> Option<ConnState> {
        match v {
            1 => Some(ConnState::Opening),
            2 => Some(ConnState::Established),
            3 => Some(ConnState::Closing),
            _ => None,
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            ConnState::Opening => "opening",
            ConnState::Established => "established",
            ConnState::Closing => "closing",
        }
    }
}

/// Value of `CONNECTIONS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Connection {
    /// `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC) of the last packet
    /// that refreshed it (refreshes are rate-limited, see
    /// [`REFRESH_NS`]). Past [`idle_timeout_ns`] it is as good as absent.
    pub last_seen_ns: u64,
    /// The owners of the key's source and destination when the connection
    /// was opened ([`crate::NO_OWNER`] for an address outside every zone).
    /// A reply passes only while the addresses still belong to them: an
    /// address freed and given to another owner inherits no connection.
    pub src_owner: u32,
    pub dst_owner: u32,
    /// [`ConnState`] as u8.
    pub state: u8,
    /// [`CONN_REPLIED`], ...
    pub flags: u8,
    pub _pad: [u8; 6],
}

/// A reply of this connection was seen.
pub const CONN_REPLIED: u8 = 1;

const SECOND: u64 = 1_000_000_000;
/// A tracked entry is rewritten at most this often by packets that change
/// nothing but its age (a write per packet would cost every packet).
pub const REFRESH_NS: u64 = SECOND;

/// How long a connection in `state` of `protocol` may stay idle. The values
/// follow Cilium's defaults (TCP 6 h established, 60 s opening, 10 s
/// closing; everything else 60 s).
#[inline(always)]
pub const fn idle_timeout_ns(protocol: u8, state: u8) -> u64 {
    if protocol == PROTO_TCP {
        match state {
            2 => 6 * 3600 * SECOND,
            3 => 10 * SECOND,
            _ => 60 * SECOND,
        }
    } else {
        60 * SECOND
    }
}

/// Key of `PORT_SCOPES`: the owner receiving and the owner sending.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopedPair {
    pub receiver: u32,
    pub sender: u32,
}

/// One protocol and an inclusive range of destination ports. ICMP rules
/// ignore the ports (they open ICMP echo).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRule {
    pub first_port: u16,
    pub last_port: u16,
    /// IP protocol number; 0: unused rule.
    pub protocol: u8,
    pub _pad: [u8; 3],
}

/// Rules one [`PortScope`] holds.
pub const PORT_SCOPE_RULES: usize = 8;

/// Value of `PORT_SCOPES`: what `sender` may still open towards
/// `receiver`'s containers. Only `rules[..count]` are used; `count == 0`
/// opens nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortScope {
    pub count: u32,
    pub _pad: u32,
    pub rules: [PortRule; PORT_SCOPE_RULES],
}

impl PortScope {
    /// Does the scope open `protocol` to destination port `port`? Fixed
    /// bounds, so the kernel programs can run it as is.
    #[inline(always)]
    pub fn opens(&self, protocol: u8, port: u16) -> bool {
        let mut i = 0;
        while i < PORT_SCOPE_RULES {
            let r = &self.rules[i];
            if (i as u32) < self.count
                && r.protocol == protocol
                && (protocol == PROTO_ICMP || (r.first_port <= port && port <= r.last_port))
            {
                return true;
            }
            i += 1;
        }
        false
    }

    /// Does the scope open `protocol` on any port (what a later fragment,
    /// which carries no ports, is judged by)?
    #[inline(always)]
    pub fn opens_protocol(&self, protocol: u8) -> bool {
        let mut i = 0;
        while i < PORT_SCOPE_RULES {
            if (i as u32) < self.count && self.rules[i].protocol == protocol {
                return true;
            }
            i += 1;
        }
        false
    }
}

const _: () = {
    assert!(core::mem::size_of::<ConnKey>() == 16);
    assert!(core::mem::size_of::<Connection>() == 24);
    assert!(core::mem::size_of::<ScopedPair>() == 8);
    assert!(core::mem::size_of::<PortRule>() == 8);
    assert!(core::mem::size_of::<PortScope>() == 72);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, `Copy`, integers and byte arrays only, no
    // implicit padding (size asserts above).
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::Connection {}
    unsafe impl aya::Pod for super::ScopedPair {}
    unsafe impl aya::Pod for super::PortRule {}
    unsafe impl aya::Pod for super::PortScope {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replys_reversed_key_is_the_request_key() {
        let request = ConnKey {
            src: 0x0a01_0102,
            dst: 0xcb00_710a,
            src_port: 40000,
            dst_port: 80,
            protocol: PROTO_TCP,
            _pad: [0; 3],
        };
        assert_eq!(request.reversed().reversed(), request);
        assert_eq!(request.reversed().src_port, 80);
    }

    #[test]
    fn scopes_open_only_their_rules() {
        let mut s = PortScope::default();
        assert!(!s.opens(PROTO_TCP, 5432), "an empty scope opens nothing");
        s.rules[0] = PortRule {
            first_port: 5432,
            last_port: 5432,
            protocol: PROTO_TCP,
            _pad: [0; 3],
        };
        s.rules[1] = PortRule {
            first_port: 0,
            last_port: 0,
            protocol: PROTO_ICMP,
            _pad: [0; 3],
        };
        assert!(!s.opens(PROTO_TCP, 5432), "rules past count are unused");
        s.count = 2;
        assert!(s.opens(PROTO_TCP, 5432));
        assert!(!s.opens(PROTO_TCP, 5433));
        assert!(!s.opens(PROTO_UDP, 5432));
        assert!(s.opens(PROTO_ICMP, 0));
        assert!(s.opens_protocol(PROTO_TCP) && s.opens_protocol(PROTO_ICMP));
        assert!(!s.opens_protocol(PROTO_UDP));
        s.count = 1;
        assert!(!s.opens_protocol(PROTO_ICMP), "rules past count are unused");
    }
}
