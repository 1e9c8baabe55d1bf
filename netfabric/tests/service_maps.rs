//! The services' maps as the agent writes them and `maps dump` reads them
//! (needs root and bpffs): a state with a service planned into pinned
//! maps of a host of this test's own, then every map of `ALL_MAPS` (but
//! the ring buffer) dumped, the four service maps decoded into names.

use std::{net::Ipv4Addr, path::PathBuf};

use netfabric::{
    Datapath, MacAddr,
    agent::plan::{HostPlan, Runtime},
    datapath::LoadOptions,
    observe::{dump, names::Names},
    state::{HostSpec, ServiceSpec, State},
};
use netfabric_common::{
    self as nfc,
    conntrack::ConnKey,
    service::{FLOW_FORWARD, ServiceFlow},
};

mod common;

/// The pins of this test's host, removed on drop (also on a panic).
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn state() -> State {
    let mut s = State::default();
    s.create_zone("z1", "10.1.0.0/16".parse().unwrap(), None)
        .unwrap();
    for n in 1..=2u8 {
        s.create_host(HostSpec {
            name: format!("h{n}"),
            zone: "z1".into(),
            number: Some(n.into()),
            subnet: None,
            uplink: "eth0".into(),
            underlay_ip: Ipv4Addr::new(192, 168, 77, n),
            underlay_mac: MacAddr([2, 0, 0, 0, 77, n]),
        })
        .unwrap();
    }
    s.create_owner("alice").unwrap();
    s.create_owner("bob").unwrap();
    s.create_container("web-1", "alice", "h1", None).unwrap();
    s.create_container("web-2", "alice", "h2", None).unwrap();
    s.create_container("client", "bob", "h1", None).unwrap();
    s.create_service(ServiceSpec {
        name: "api".into(),
        owner: "alice".into(),
        zone: None,
        vip: None,
        ports: vec!["tcp/80:8080".parse().unwrap()],
        backends: vec!["web-1".into(), "web-2".into()],
        health: Default::default(),
    })
    .unwrap();
    s.validate().unwrap();
    s
}

#[test]
fn the_service_maps_are_written_and_dumped_with_names() {
    common::require_root_and_bpffs();
    let host = common::unique_name("svcmaps");
    let pins = Pins(netfabric::conventions::pin_dir(
        std::path::Path::new(netfabric::conventions::DEFAULT_BPFFS),
        &host,
    ));
    let s = state();
    let mut dp = Datapath::load(&LoadOptions {
        pin_dir: Some(pins.0.clone()),
        ..LoadOptions::default()
    })
    .expect("loading the datapath");
    // web-2 reported down: it keeps its member index, no slot.
    let mut rt = Runtime::default();
    rt.health.insert((Ipv4Addr::new(10, 1, 2, 1), 8080), false);
    let plan = HostPlan::compute(&s, "h1", &rt).unwrap();
    for op in HostPlan::default().diff(&plan) {
        op.apply(&mut dp).unwrap();
    }
    assert_eq!(HostPlan::read(&dp).unwrap(), plan, "read back as planned");
    // A flow as the programs would record it.
    let key = ConnKey {
        src: u32::from(Ipv4Addr::new(10, 1, 1, 3)),
        dst: u32::from(Ipv4Addr::new(10, 1, 0, 1)),
        src_port: 40000,
        dst_port: 80,
        protocol: 6,
        _pad: [0; 3],
    };
    dp.set_service_flow(
        &key,
        &ServiceFlow {
            last_seen_ns: 1,
            addr: u32::from(Ipv4Addr::new(10, 1, 1, 1)),
            port: 8080,
            kind: FLOW_FORWARD,
            member: 0,
            service: 1,
            _pad: 0,
        },
    )
    .unwrap();
    let names = Names::from_state(&s);
    for map in nfc::ALL_MAPS {
        if map == nfc::DROP_EVENTS {
            continue;
        }
        dump::dump(&pins.0, map, &names).unwrap_or_else(|e| panic!("{map}: {e}"));
    }
    let ports = dump::dump(&pins.0, nfc::SERVICE_PORTS, &names).unwrap();
    assert_eq!(ports.json.len(), 1);
    assert_eq!(ports.json[0]["service"], "api");
    assert_eq!(ports.json[0]["owner"], "alice");
    assert_eq!(ports.json[0]["target_port"], 8080);
    assert_eq!(ports.rows[0][0], "10.1.0.1:80/tcp");
    let tables = dump::dump(&pins.0, nfc::SERVICE_TABLES, &names).unwrap();
    assert_eq!(tables.json.len(), 2, "{:?}", tables.json);
    assert_eq!(tables.json[0]["container"], "web-1");
    assert_eq!(tables.json[0]["slots"], nfc::service::MAGLEV_SLOTS);
    assert_eq!(tables.json[1]["container"], "web-2");
    assert_eq!(tables.json[1]["slots"], 0);
    assert!(tables.rows[1][4].contains("unhealthy"), "{:?}", tables.rows);
    let flows = dump::dump(&pins.0, nfc::SERVICE_FLOWS, &names).unwrap();
    assert_eq!(flows.json.len(), 1);
    assert_eq!(flows.json[0]["kind"], "forward");
    assert_eq!(flows.json[0]["service"], "api");
    assert!(
        flows.rows[0][3].starts_with("web-1 (10.1.1.1):8080"),
        "{:?}",
        flows.rows
    );
    let counters = dump::dump(&pins.0, nfc::SERVICE_COUNTERS, &names).unwrap();
    assert!(counters.json.is_empty(), "no packet yet");
    drop(dp);
}
