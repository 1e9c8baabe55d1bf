//! The batched map reader (`datapath::batch`): ranges of an array across
//! batch boundaries and at its end, a pinned map read by another handle,
//! and the counters decoded into typed rows (needs root and bpffs).

use std::{net::Ipv4Addr, path::PathBuf};

use netfabric::{
    Datapath,
    datapath::{LoadOptions, batch},
};
use netfabric_common::{ENDPOINTS, Endpoint, plan::endpoint_index};

mod common;

use common::{require_root_and_bpffs, unique_name};

/// A pin directory under bpffs, removed on drop (also when the test panics).
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn low(l: u16) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(l))
}

/// The owner at `addr` of zone slot `slot` in a pinned `ENDPOINTS` opened
/// by another handle: a batch of one slot.
fn pinned_owner(map: &aya::maps::MapData, slot: u32, addr: Ipv4Addr) -> u32 {
    let index = endpoint_index(slot, addr.into());
    let raw = batch::read_array_range(map, ENDPOINTS, index, 1).unwrap();
    let (_, e) = raw.typed::<u32, Endpoint>().next().unwrap();
    e.owner
}

#[test]
fn zone_ranges_are_read_in_batches_across_boundaries_and_to_the_end() {
    require_root_and_bpffs();
    let pins =
        PinDir(PathBuf::from(netfabric::conventions::DEFAULT_BPFFS).join(unique_name("batch")));
    let mut dp = Datapath::load(&LoadOptions {
        pin_dir: Some(pins.0.clone()),
        ..LoadOptions::default()
    })
    .unwrap();
    // Either side of the 8,192-entry batch boundary, the first and last
    // slot of zone 3, and neighbours in zones 2 and 4 that must not leak in.
    let zone3 = [(0u16, 11u32), (8191, 12), (8192, 13), (0xffff, 14)];
    for (l, owner) in zone3 {
        dp.set_endpoint_groups(3, low(l), owner, 0x8000_0001)
            .unwrap();
    }
    dp.set_endpoint_groups(2, low(0xffff), 21, 0).unwrap();
    dp.set_endpoint_groups(4, low(0), 41, 0).unwrap();
    dp.set_endpoint_groups(15, low(0xffff), 151, 0).unwrap();

    let got = dp.zone_endpoints(3).unwrap();
    let want: Vec<(u16, Endpoint)> = zone3
        .iter()
        .map(|&(l, owner)| {
            (
                l,
                Endpoint {
                    owner,
                    groups: 0x8000_0001,
                },
            )
        })
        .collect();
    assert_eq!(got, want);

    // Another handle on the pinned map, as observe and the lab open it.
    let map = batch::open_pinned(&pins.0, ENDPOINTS).unwrap();
    let range = batch::read_array_range(&map, ENDPOINTS, endpoint_index(3, 8190), 4).unwrap();
    let owners: Vec<(u32, u32)> = range
        .typed::<u32, Endpoint>()
        .map(|(k, e)| (k, e.owner))
        .collect();
    assert_eq!(
        owners,
        [
            (3 << 16) | 8190,
            (3 << 16) | 8191,
            (3 << 16) | 8192,
            (3 << 16) | 8193
        ]
        .into_iter()
        .zip([0, 12, 13, 0])
        .collect::<Vec<_>>()
    );
    // Past the end of the array: only what is there.
    let last = endpoint_index(15, 0xffff);
    let tail = batch::read_array_range(&map, ENDPOINTS, last, 10).unwrap();
    assert_eq!(tail.count, 1);
    assert_eq!(
        tail.typed::<u32, Endpoint>().next().unwrap(),
        (
            last,
            Endpoint {
                owner: 151,
                groups: 0
            }
        )
    );
    let whole = batch::read_all(&map, ENDPOINTS).unwrap();
    assert_eq!(whole.count, 16 << 16);

    let pinned = batch::open_pinned(&pins.0, ENDPOINTS).unwrap();
    assert_eq!(pinned_owner(&pinned, 3, low(8192)), 13);
    assert_eq!(pinned_owner(&pinned, 4, low(0)), 41);
    assert_eq!(pinned_owner(&pinned, 4, low(1)), 0);
}
