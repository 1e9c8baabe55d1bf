//! Property tests of the desired-state validator: random valid states
//! validate, and a random single corruption of each kind is rejected with an
//! error that names the corrupted field.

use std::{collections::BTreeSet, net::Ipv4Addr};

use netfabric::{
    MacAddr,
    state::{
        Container, Group, Host, Ipv4Prefix, Owner, SYSTEM_OWNER_ID, SYSTEM_OWNER_NAME, State, Zone,
        host_subnet,
    },
};
use proptest::{prelude::*, sample::Index, strategy::ValueTree as _};

/// The raw material of a random valid state.
#[derive(Debug, Clone)]
struct Plan {
    /// A random valid name stem per kind (names are `<stem>-<i>`).
    stems: [String; 5],
    /// Second octets of the zones (distinct, 1..=250).
    zone_octets: Vec<u8>,
    /// Host numbers per zone (distinct within a zone).
    host_numbers: Vec<BTreeSet<u32>>,
    /// Number of owners besides `system`, and a gap before next_owner_id.
    owners: usize,
    id_gap: u32,
    /// Container last octets per host (distinct within a host).
    container_octets: Vec<BTreeSet<u8>>,
    /// Group members, as indexes into the owners.
    groups: Vec<Vec<Index>>,
    /// Owner of each container.
    picks: Vec<Index>,
}

fn name_stem() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}"
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        [
            name_stem(),
            name_stem(),
            name_stem(),
            name_stem(),
            name_stem(),
        ],
        proptest::sample::subsequence((1u8..=250).collect::<Vec<_>>(), 1..=4),
        // At least two hosts in the first zone, so that corruptions between
        // two hosts of a zone always have material.
        proptest::collection::vec(proptest::collection::btree_set(1u32..=254, 2..=5), 4),
        1usize..8,
        0u32..5,
        proptest::collection::vec(proptest::collection::btree_set(1u8..=254, 2..=6), 20),
        proptest::collection::vec(proptest::collection::vec(any::<Index>(), 0..4), 1..4),
        proptest::collection::vec(any::<Index>(), 120),
    )
        .prop_map(
            |(
                stems,
                zone_octets,
                host_numbers,
                owners,
                id_gap,
                container_octets,
                groups,
                picks,
            )| {
                Plan {
                    stems,
                    zone_octets,
                    host_numbers,
                    owners,
                    id_gap,
                    container_octets,
                    groups,
                    picks,
                }
            },
        )
}

fn name(stem: &str, i: usize) -> String {
    format!("{stem}-{i}")
}

fn build(plan: &Plan) -> State {
    let [zs, hs, os, gs, cs] = &plan.stems;
    let mut state = State::default();
    for (i, octet) in plan.zone_octets.iter().enumerate() {
        state.zones.push(Zone {
            name: name(zs, i),
            prefix: Ipv4Prefix::new(Ipv4Addr::new(10, *octet, 0, 0), 16),
            slot: i as u32,
            gateway: None,
        });
    }
    let mut host_index = 0u8;
    for (z, zone) in state.zones.clone().iter().enumerate() {
        for number in &plan.host_numbers[z] {
            host_index += 1;
            state.hosts.push(Host {
                name: name(hs, usize::from(host_index)),
                zone: zone.name.clone(),
                number: *number,
                subnet: host_subnet(zone.prefix, *number),
                uplink: "eth0".into(),
                underlay_ip: Ipv4Addr::new(192, 168, 0, host_index),
                underlay_mac: MacAddr([0x02, 0, 0, 0, 0, host_index]),
            });
        }
    }
    for i in 0..plan.owners {
        state.owners.push(Owner {
            name: name(os, i),
            id: SYSTEM_OWNER_ID + 1 + i as u32,
            egress: Default::default(),
        });
    }
    state.next_owner_id = SYSTEM_OWNER_ID + 1 + plan.owners as u32 + plan.id_gap;
    let owner_names: Vec<String> = state.owners.iter().map(|o| o.name.clone()).collect();
    for (i, members) in plan.groups.iter().enumerate() {
        state.groups.push(Group {
            name: name(gs, i),
            members: members
                .iter()
                .map(|m| m.get(&owner_names).clone())
                .collect(),
        });
    }
    let mut picks = plan.picks.iter().cycle();
    let mut c = 0;
    for (h, host) in state.hosts.clone().iter().enumerate() {
        let Some(octets) = plan.container_octets.get(h) else {
            break;
        };
        let [a, b, x, _] = host.subnet.addr.octets();
        for octet in octets {
            c += 1;
            state.containers.push(Container {
                name: name(cs, c),
                owner: picks.next().unwrap().get(&owner_names).clone(),
                host: host.name.clone(),
                address: Ipv4Addr::new(a, b, x, *octet),
            });
        }
    }
    state
}

fn valid_state() -> impl Strategy<Value = State> {
    plan().prop_map(|p| build(&p))
}

/// One kind of corruption per variant.
#[derive(Debug, Clone, Copy)]
enum Corruption {
    OverlappingZone,
    ZoneNotSlash16,
    ZoneInSpecialRange,
    HostSubnetOutsideZone,
    HostNumberOutOfRange,
    DuplicateHostNumber,
    DuplicateUnderlayIp,
    DuplicateUnderlayMac,
    DuplicateZoneName,
    DuplicateHostName,
    DuplicateOwnerName,
    DuplicateGroupName,
    DuplicateContainerName,
    DuplicateContainerAddress,
    UnknownZone,
    UnknownHost,
    UnknownOwner,
    UnknownGroupMember,
    HostFull,
    MalformedName,
    AddressOutsideHost,
    ReservedAddress,
    OwnerIdReused,
    SystemOwnerMissing,
}

const CORRUPTIONS: [Corruption; 24] = [
    Corruption::OverlappingZone,
    Corruption::ZoneNotSlash16,
    Corruption::ZoneInSpecialRange,
    Corruption::HostSubnetOutsideZone,
    Corruption::HostNumberOutOfRange,
    Corruption::DuplicateHostNumber,
    Corruption::DuplicateUnderlayIp,
    Corruption::DuplicateUnderlayMac,
    Corruption::DuplicateZoneName,
    Corruption::DuplicateHostName,
    Corruption::DuplicateOwnerName,
    Corruption::DuplicateGroupName,
    Corruption::DuplicateContainerName,
    Corruption::DuplicateContainerAddress,
    Corruption::UnknownZone,
    Corruption::UnknownHost,
    Corruption::UnknownOwner,
    Corruption::UnknownGroupMember,
    Corruption::HostFull,
    Corruption::MalformedName,
    Corruption::AddressOutsideHost,
    Corruption::ReservedAddress,
    Corruption::OwnerIdReused,
    Corruption::SystemOwnerMissing,
];

/// Two distinct indexes `a < b` below `len` (`len >= 2`).
fn two(len: usize, x: Index, y: Index) -> (usize, usize) {
    let a = x.index(len - 1);
    let b = a + 1 + y.index(len - 1 - a);
    (a, b)
}

/// Applies `kind` to `s` and returns the field the error must name.
fn corrupt(
    s: &mut State,
    kind: Corruption,
    x: Index,
    y: Index,
    bad_name: &str,
    out_of_range: u32,
) -> String {
    match kind {
        Corruption::OverlappingZone => {
            let prefix = x.get(&s.zones).prefix;
            s.zones.push(Zone {
                name: "overlap".into(),
                prefix,
                slot: 15,
                gateway: None,
            });
            "zones[overlap].prefix".into()
        }
        Corruption::ZoneNotSlash16 => {
            let z = x.get_mut(&mut s.zones);
            z.prefix.len = 8 + y.index(8) as u8;
            format!("zones[{}].prefix", z.name)
        }
        Corruption::ZoneInSpecialRange => {
            // "This network", loopback, link-local, multicast, reserved,
            // broadcast and public space: only private and shared space.
            const SPECIAL: [[u8; 2]; 7] = [
                [0, 0],
                [127, 0],
                [169, 254],
                [224, 0],
                [240, 0],
                [255, 255],
                [8, 8],
            ];
            let [a, b] = SPECIAL[y.index(SPECIAL.len())];
            let z = x.get_mut(&mut s.zones);
            z.prefix = Ipv4Prefix::new(Ipv4Addr::new(a, b, 0, 0), 16);
            format!("zones[{}].prefix", z.name)
        }
        Corruption::HostSubnetOutsideZone => {
            let h = x.get_mut(&mut s.hosts);
            h.subnet = Ipv4Prefix::new(Ipv4Addr::new(10, 251, h.number as u8, 0), 24);
            format!("hosts[{}].subnet", h.name)
        }
        Corruption::HostNumberOutOfRange => {
            let i = x.index(s.hosts.len());
            let prefix = s.zone(&s.hosts[i].zone).unwrap().prefix;
            let h = &mut s.hosts[i];
            h.number = out_of_range;
            h.subnet = host_subnet(prefix, out_of_range);
            format!("hosts[{}].number", h.name)
        }
        Corruption::DuplicateHostNumber => {
            // The first zone has at least two hosts: they come first.
            let zone = s.zones[0].name.clone();
            let in_zone = s.hosts.iter().filter(|h| h.zone == zone).count();
            let (a, b) = two(in_zone, x, y);
            s.hosts[b].number = s.hosts[a].number;
            s.hosts[b].subnet = s.hosts[a].subnet;
            format!("hosts[{}].number", s.hosts[b].name)
        }
        Corruption::DuplicateUnderlayIp => {
            let (a, b) = two(s.hosts.len(), x, y);
            s.hosts[b].underlay_ip = s.hosts[a].underlay_ip;
            format!("hosts[{}].underlay_ip", s.hosts[b].name)
        }
        Corruption::DuplicateUnderlayMac => {
            let (a, b) = two(s.hosts.len(), x, y);
            s.hosts[b].underlay_mac = s.hosts[a].underlay_mac;
            format!("hosts[{}].underlay_mac", s.hosts[b].name)
        }
        Corruption::DuplicateZoneName => {
            let z = x.get(&s.zones).clone();
            s.zones.push(z.clone());
            format!("zones[{}].name", z.name)
        }
        Corruption::DuplicateHostName => {
            let h = x.get(&s.hosts).clone();
            s.hosts.push(h.clone());
            format!("hosts[{}].name", h.name)
        }
        Corruption::DuplicateOwnerName => {
            let o = x.get(&s.owners).clone();
            s.owners.push(o.clone());
            format!("owners[{}].name", o.name)
        }
        Corruption::DuplicateGroupName => {
            let g = x.get(&s.groups).clone();
            s.groups.push(g.clone());
            format!("groups[{}].name", g.name)
        }
        Corruption::DuplicateContainerName => {
            let c = x.get(&s.containers).clone();
            s.containers.push(c.clone());
            format!("containers[{}].name", c.name)
        }
        Corruption::DuplicateContainerAddress => {
            let (a, b) = two(s.containers.len(), x, y);
            s.containers[b].host = s.containers[a].host.clone();
            s.containers[b].address = s.containers[a].address;
            format!("containers[{}].address", s.containers[b].name)
        }
        Corruption::UnknownZone => {
            let h = x.get_mut(&mut s.hosts);
            h.zone = "no-such-zone".into();
            format!("hosts[{}].zone", h.name)
        }
        Corruption::UnknownHost => {
            let c = x.get_mut(&mut s.containers);
            c.host = "no-such-host".into();
            format!("containers[{}].host", c.name)
        }
        Corruption::UnknownOwner => {
            let c = x.get_mut(&mut s.containers);
            c.owner = "no-such-owner".into();
            format!("containers[{}].owner", c.name)
        }
        Corruption::UnknownGroupMember => {
            let g = x.get_mut(&mut s.groups);
            g.members.insert("no-such-owner".into());
            format!("groups[{}].members", g.name)
        }
        Corruption::HostFull => {
            let host = x.get(&s.hosts).clone();
            s.containers.retain(|c| c.host != host.name);
            let [a, b, h, _] = host.subnet.addr.octets();
            for i in 1..=255u32 {
                s.containers.push(Container {
                    name: format!("fill-{i}"),
                    owner: SYSTEM_OWNER_NAME.into(),
                    host: host.name.clone(),
                    // The 255th reuses .1: the count is checked first.
                    address: Ipv4Addr::new(a, b, h, ((i - 1) % 254 + 1) as u8),
                });
            }
            "containers[fill-255].host".into()
        }
        Corruption::MalformedName => {
            let list = y.index(5);
            let slot = match list {
                0 => &mut x.get_mut(&mut s.zones).name,
                1 => &mut x.get_mut(&mut s.hosts).name,
                2 => &mut x.get_mut(&mut s.owners).name,
                3 => &mut x.get_mut(&mut s.groups).name,
                _ => &mut x.get_mut(&mut s.containers).name,
            };
            *slot = bad_name.to_owned();
            let lists = ["zones", "hosts", "owners", "groups", "containers"];
            format!("{}[{bad_name}].name", lists[list])
        }
        Corruption::AddressOutsideHost => {
            let c = x.get_mut(&mut s.containers);
            let [a, b, h, d] = c.address.octets();
            // Another /24 of the same zone, or another zone.
            c.address = if y.index(2) == 0 {
                Ipv4Addr::new(a, b, h.wrapping_add(1).max(1), d)
            } else {
                Ipv4Addr::new(a, 252, h, d)
            };
            if c.address.octets()[2] == h && c.address.octets()[1] == b {
                c.address = Ipv4Addr::new(a, 252, h, d);
            }
            format!("containers[{}].address", c.name)
        }
        Corruption::ReservedAddress => {
            let c = x.get_mut(&mut s.containers);
            let [a, b, h, _] = c.address.octets();
            c.address = Ipv4Addr::new(a, b, h, if y.index(2) == 0 { 0 } else { 255 });
            format!("containers[{}].address", c.name)
        }
        Corruption::OwnerIdReused => {
            // An owner with an id at or above next_owner_id: such an id may
            // have belonged to a deleted owner.
            let o = x.get_mut(&mut s.owners);
            if o.name == SYSTEM_OWNER_NAME {
                o.id = SYSTEM_OWNER_ID + 1;
            } else {
                o.id = s.next_owner_id + y.index(3) as u32;
            }
            format!("owners[{}].id", o.name)
        }
        Corruption::SystemOwnerMissing => {
            s.owners.retain(|o| o.name != SYSTEM_OWNER_NAME);
            "owners".into()
        }
    }
}

fn bad_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9-][a-z0-9-]{0,5}",
        "[a-z]{1,4}[A-Z_.@ ][a-z]{0,4}",
        "[a-z]{64,70}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_valid_states_validate(state in valid_state()) {
        prop_assert_eq!(state.validate(), Ok(()));
        // And survive a round trip through the file format.
        let json = serde_json::to_string(&state).unwrap();
        let back: State = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, state);
    }

    #[test]
    fn a_single_corruption_is_rejected_naming_the_field(
        state in valid_state(),
        kind in proptest::sample::select(CORRUPTIONS.to_vec()),
        x in any::<Index>(),
        y in any::<Index>(),
        bad in bad_name(),
        out_of_range in prop_oneof![Just(0u32), 255u32..100_000],
    ) {
        let mut corrupted = state.clone();
        let field = corrupt(&mut corrupted, kind, x, y, &bad, out_of_range);
        let err = corrupted.validate().expect_err("the corruption must be rejected");
        prop_assert_eq!(err.field(), field.as_str(), "{:?}: {}", kind, err);
        let message = err.to_string();
        prop_assert!(message.starts_with(&format!("{field}: ")), "{}", message);
    }
}

#[test]
fn every_corruption_kind_is_exercised() {
    // The property above picks kinds at random; make sure each kind is
    // applied and rejected on a batch of states.
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let index = any::<Index>();
    for _ in 0..32 {
        let state = valid_state().new_tree(&mut runner).unwrap().current();
        state.validate().unwrap();
        for kind in CORRUPTIONS {
            let x = index.new_tree(&mut runner).unwrap().current();
            let y = index.new_tree(&mut runner).unwrap().current();
            let mut s = state.clone();
            let field = corrupt(&mut s, kind, x, y, "Bad", 300);
            let err = s.validate().expect_err("rejected");
            assert_eq!(err.field(), field, "{kind:?}: {err}");
        }
    }
}
