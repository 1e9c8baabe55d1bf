//! Verdicts, drop reasons and directions, with stable numbers.
//!
//! The numbers are part of the on-disk/pinned-map ABI: counters are indexed
//! by them and drop events carry them. A number is never reused; a retired
//! reason keeps its number forever.

/// Where a packet was judged.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// TC ingress on a container's host-side port: traffic sent by a container.
    FromContainer = 0,
    /// The host's uplink: traffic from other hosts. Counted once per packet:
    /// by the XDP prefilter (`from_uplink`) when it drops it, else by the
    /// TC ingress program (`from_uplink_tc`), per skb after GRO.
    FromUplink = 1,
    /// TC egress on a container's host-side port: traffic the host stack
    /// (the host itself, or routed from outside every zone) sends to a container.
    ToContainer = 2,
}

impl Direction {
    pub const ALL: [Direction; 3] = [
        Direction::FromContainer,
        Direction::FromUplink,
        Direction::ToContainer,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Direction::FromContainer => "from_container",
            Direction::FromUplink => "from_uplink",
            Direction::ToContainer => "to_container",
        }
    }

    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Direction::FromContainer),
            1 => Some(Direction::FromUplink),
            2 => Some(Direction::ToContainer),
            _ => None,
        }
    }
}

/// Why a packet was dropped. One enum for kernel and userspace.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Truncated or invalid headers (runt frame, bad version, bad IHL, bad
    /// total length), or a protocol a container may not send (LLDP, MPLS,
    /// ...; VLAN tags have their own reason, `vlan_tagged`). The IPv4 header checksum is not verified (it is updated
    /// incrementally, so a bad one stays bad for the receiver to drop).
    Malformed = 1,
    /// A container sent IPv4 with a source address that is not its own.
    SpoofedSourceIp = 2,
    /// A container sent IPv4 with its own address but a foreign source MAC.
    SpoofedSourceMac = 3,
    /// A container sent ARP whose sender IP or MAC is not its own.
    SpoofedArp = 4,
    /// A container source arrived by a path its traffic never takes. On the
    /// uplink: from another MAC than its host's underlay MAC (or, for another
    /// zone, the zone router's). On a port's egress (`to_container`): through
    /// the host stack at all, since container traffic reaches containers only
    /// by the programs' own redirects (whatever interface it entered by).
    SpoofedWrongHost = 5,
    /// The source address is inside a zone but no container has it.
    UnknownSource = 6,
    /// The destination address is inside a zone but no container has it.
    UnknownDestination = 7,
    /// Owners differ, share no group and neither is the system owner (or an
    /// outside source tried to reach a non-system container).
    PolicyDenied = 8,
    /// The destination's host or zone has no next hop.
    NoRoute = 9,
    /// TTL would reach zero on forwarding.
    TtlExceeded = 10,
    /// IPv6 is not in the address plan yet.
    Ipv6NotSupported = 11,
    /// An 802.1Q/802.1ad tag (or a stack of them) where netfabric never
    /// tags: a container sent a tagged frame (tag still in the frame or
    /// already stripped into the skb), or the uplink got a tagged frame
    /// whose inner IPv4 source or destination is inside a zone (the kernel
    /// would strip the tag and could route it past the source checks), or a
    /// deeper stack of tags than the uplink parses. Tagged traffic of the
    /// host's own VLANs that touches no zone address passes.
    VlanTagged = 12,
    /// The owners may talk, but the receiving owner narrowed what the
    /// sending owner may open (security groups) and the packet's protocol
    /// and destination port are not among it, nor is it a reply of a
    /// connection that is.
    PortNotAllowed = 13,
    /// A container of an owner denied egress sent to an address outside
    /// every zone.
    EgressDenied = 14,
    /// A container sent to a service's VIP and port, but the service has
    /// no healthy backend (or the VIP has no such port, or the packet is a
    /// later fragment, which carries no port to balance by).
    NoBackend = 15,
}

impl DropReason {
    pub const ALL: [DropReason; 15] = [
        DropReason::Malformed,
        DropReason::SpoofedSourceIp,
        DropReason::SpoofedSourceMac,
        DropReason::SpoofedArp,
        DropReason::SpoofedWrongHost,
        DropReason::UnknownSource,
        DropReason::UnknownDestination,
        DropReason::PolicyDenied,
        DropReason::NoRoute,
        DropReason::TtlExceeded,
        DropReason::Ipv6NotSupported,
        DropReason::VlanTagged,
        DropReason::PortNotAllowed,
        DropReason::EgressDenied,
        DropReason::NoBackend,
    ];

    /// Is the source address of a packet dropped for this reason only what
    /// the packet claims (it failed a source check, or came in a VLAN tag
    /// no check looked into)? Its owner must not be named then: that would
    /// blame the party whose address was forged.
    pub const fn source_unverified(self) -> bool {
        matches!(
            self,
            DropReason::SpoofedSourceIp
                | DropReason::SpoofedSourceMac
                | DropReason::SpoofedArp
                | DropReason::SpoofedWrongHost
                | DropReason::VlanTagged
        )
    }

    /// Prometheus/CLI label; stable like the number.
    pub const fn label(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::SpoofedSourceIp => "spoofed_source_ip",
            DropReason::SpoofedSourceMac => "spoofed_source_mac",
            DropReason::SpoofedArp => "spoofed_arp",
            DropReason::SpoofedWrongHost => "spoofed_wrong_host",
            DropReason::UnknownSource => "unknown_source",
            DropReason::UnknownDestination => "unknown_destination",
            DropReason::PolicyDenied => "policy_denied",
            DropReason::NoRoute => "no_route",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::Ipv6NotSupported => "ipv6_not_supported",
            DropReason::VlanTagged => "vlan_tagged",
            DropReason::PortNotAllowed => "port_not_allowed",
            DropReason::EgressDenied => "egress_denied",
            DropReason::NoBackend => "no_backend",
        }
    }

    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(DropReason::Malformed),
            2 => Some(DropReason::SpoofedSourceIp),
            3 => Some(DropReason::SpoofedSourceMac),
            4 => Some(DropReason::SpoofedArp),
            5 => Some(DropReason::SpoofedWrongHost),
            6 => Some(DropReason::UnknownSource),
            7 => Some(DropReason::UnknownDestination),
            8 => Some(DropReason::PolicyDenied),
            9 => Some(DropReason::NoRoute),
            10 => Some(DropReason::TtlExceeded),
            11 => Some(DropReason::Ipv6NotSupported),
            12 => Some(DropReason::VlanTagged),
            13 => Some(DropReason::PortNotAllowed),
            14 => Some(DropReason::EgressDenied),
            15 => Some(DropReason::NoBackend),
            _ => None,
        }
    }
}

/// How a packet that was not dropped left the program.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forward {
    /// Redirected to a container port on this host.
    Local = 1,
    /// Redirected out of the uplink towards another host or zone gateway.
    Remote = 2,
    /// Handed to the host stack untouched (or, on a port's egress, let through).
    Stack = 3,
}

impl Forward {
    pub const ALL: [Forward; 3] = [Forward::Local, Forward::Remote, Forward::Stack];

    pub const fn label(self) -> &'static str {
        match self {
            Forward::Local => "local",
            Forward::Remote => "remote",
            Forward::Stack => "stack",
        }
    }
}

/// The one verdict every decision ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Forwarded(Forward),
    Dropped(DropReason),
}

/// Counter slots per direction. Drops use `reason` (1..=31), forwards use
/// `FORWARD_SLOT_BASE + forward` (33..=63).
pub const SLOTS_PER_DIRECTION: u32 = 64;
pub const FORWARD_SLOT_BASE: u32 = 32;
/// The slot (after all directions) counting drop events the ring buffer could
/// not take (the monitor was too slow); `packets` holds the count.
pub const MONITOR_LOST_SLOT: u32 = 3 * SLOTS_PER_DIRECTION;
/// The slot counting connections the programs added to `CONNECTIONS`
/// (`packets` holds the count). Evictions by the LRU are not seen by the
/// programs: created − live − expired is what the table evicted.
pub const CONNECTIONS_CREATED_SLOT: u32 = MONITOR_LOST_SLOT + 1;
/// Entries of the per-CPU `COUNTERS` array.
pub const COUNTER_SLOTS: u32 = CONNECTIONS_CREATED_SLOT + 1;

impl Verdict {
    /// Index into `COUNTERS` for this verdict seen in `direction`.
    #[inline(always)]
    pub const fn counter_slot(self, direction: Direction) -> u32 {
        let code = match self {
            Verdict::Dropped(r) => r as u32,
            Verdict::Forwarded(f) => FORWARD_SLOT_BASE + f as u32,
        };
        direction as u32 * SLOTS_PER_DIRECTION + code
    }

    /// Inverse of [`Verdict::counter_slot`], for userspace decoding.
    pub const fn from_counter_slot(slot: u32) -> Option<(Direction, Verdict)> {
        let Some(direction) = Direction::from_u8((slot / SLOTS_PER_DIRECTION) as u8) else {
            return None;
        };
        if slot >= MONITOR_LOST_SLOT {
            return None;
        }
        let code = slot % SLOTS_PER_DIRECTION;
        let verdict = if code > FORWARD_SLOT_BASE {
            match code - FORWARD_SLOT_BASE {
                1 => Verdict::Forwarded(Forward::Local),
                2 => Verdict::Forwarded(Forward::Remote),
                3 => Verdict::Forwarded(Forward::Stack),
                _ => return None,
            }
        } else {
            match DropReason::from_u8(code as u8) {
                Some(r) => Verdict::Dropped(r),
                None => return None,
            }
        };
        Some((direction, verdict))
    }

    /// `forwarded` or `dropped`.
    pub const fn verdict_label(self) -> &'static str {
        match self {
            Verdict::Forwarded(_) => "forwarded",
            Verdict::Dropped(_) => "dropped",
        }
    }

    /// The forward kind or the drop reason.
    pub const fn reason_label(self) -> &'static str {
        match self {
            Verdict::Forwarded(f) => f.label(),
            Verdict::Dropped(r) => r.label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_slots_round_trip_and_never_collide() {
        let mut seen = [false; COUNTER_SLOTS as usize];
        for d in Direction::ALL {
            let verdicts = DropReason::ALL
                .iter()
                .map(|r| Verdict::Dropped(*r))
                .chain(Forward::ALL.iter().map(|f| Verdict::Forwarded(*f)));
            for v in verdicts {
                let slot = v.counter_slot(d);
                assert!(slot < MONITOR_LOST_SLOT, "{v:?} {d:?} overflows");
                assert!(!seen[slot as usize], "{v:?} {d:?} collides");
                seen[slot as usize] = true;
                assert_eq!(Verdict::from_counter_slot(slot), Some((d, v)));
            }
        }
        assert_eq!(Verdict::from_counter_slot(MONITOR_LOST_SLOT), None);
    }

    #[test]
    fn drop_reason_numbers_are_stable() {
        // These numbers are ABI: counters and events carry them. Never change them.
        let expected: [(DropReason, u8, &str); 15] = [
            (DropReason::Malformed, 1, "malformed"),
            (DropReason::SpoofedSourceIp, 2, "spoofed_source_ip"),
            (DropReason::SpoofedSourceMac, 3, "spoofed_source_mac"),
            (DropReason::SpoofedArp, 4, "spoofed_arp"),
            (DropReason::SpoofedWrongHost, 5, "spoofed_wrong_host"),
            (DropReason::UnknownSource, 6, "unknown_source"),
            (DropReason::UnknownDestination, 7, "unknown_destination"),
            (DropReason::PolicyDenied, 8, "policy_denied"),
            (DropReason::NoRoute, 9, "no_route"),
            (DropReason::TtlExceeded, 10, "ttl_exceeded"),
            (DropReason::Ipv6NotSupported, 11, "ipv6_not_supported"),
            (DropReason::VlanTagged, 12, "vlan_tagged"),
            (DropReason::PortNotAllowed, 13, "port_not_allowed"),
            (DropReason::EgressDenied, 14, "egress_denied"),
            (DropReason::NoBackend, 15, "no_backend"),
        ];
        for (r, n, label) in expected {
            assert_eq!(r as u8, n);
            assert_eq!(r.label(), label);
            assert_eq!(DropReason::from_u8(n), Some(r));
        }
        assert_eq!(DropReason::from_u8(0), None);
        assert_eq!(DropReason::from_u8(16), None);
        assert_eq!(DropReason::ALL.len(), expected.len());
    }
}
