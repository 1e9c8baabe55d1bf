//! A zone of 16 maps-only agents (`netfabric agent --maps-only`) on a local
//! three-member etcd, with one watch per agent and through the fan-out
//! (`etcd grpc-proxy`): every single change (container create and delete,
//! group join and leave) and every change of a burst reaches the pinned maps
//! of every agent. Convergence only; the timing goals are the bench's
//! (`cargo xtask bench --only zone`, 254 agents).
//!
//! Needs root, bpffs and the etcd binary. Every process, pin and data dir is
//! removed at the end, also on failure (`zone::run`).

use std::time::Duration;

mod common;
// The benchmark code lives in `netfabric-tests`, which depends on this
// crate; the test includes it as the etcd test includes the propagation
// measurement.
#[path = "../../tests/src/propagation.rs"]
#[expect(dead_code, reason = "only the latency type is used here")]
mod propagation;
#[path = "../../tests/src/zone.rs"]
mod zone;

use common::{BIN, init_test_logs, require_root_and_bpffs};
use netfabric::store::etcd::cluster;

#[test]
fn sixteen_maps_only_agents_converge_with_either_design() {
    require_root_and_bpffs();
    assert!(
        cluster::etcd_available(),
        "no etcd binary: `cargo xtask setup` installs etcd-server"
    );
    init_test_logs();
    let spec = zone::Spec {
        exe: BIN.into(),
        agents: 16,
        containers_per_host: 4,
        singles: 8,
        burst: 300,
        timeout: Duration::from_secs(60),
    };
    // Errs if any change is not in every agent's maps within the timeout,
    // or if an agent exited.
    let report = zone::run(&spec, &zone::Design::ALL).expect("the zone converges");
    eprintln!("{report}");
    assert_eq!(report.designs.len(), 2);
    for d in &report.designs {
        assert_eq!(d.agents, 16, "{}", d.label);
        assert_eq!(d.single.n, 8, "{}: every single change timed", d.label);
        assert_eq!(
            d.single_by_kind.keys().copied().collect::<Vec<_>>(),
            [
                "container create",
                "container delete",
                "group join",
                "group leave"
            ],
            "{}",
            d.label
        );
        for burst in [&d.burst, &d.bulk] {
            assert_eq!(
                (burst.size, burst.each.n),
                (300, 300),
                "{}: every change of the burst converged ({burst:?})",
                d.label
            );
        }
        assert_eq!(d.bulk.per_txn, zone::BULK_TXN);
        assert!(d.memory.rss_max > 0 && d.memory.maps_kernel > 0, "{d:?}");
        assert_eq!(
            d.attached_links, 0,
            "{}: maps-only agents attach nothing",
            d.label
        );
    }
}
