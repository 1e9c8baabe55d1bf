//! Services with real traffic: containers of the standard three-host zone
//! (`tests/src/topology.rs`) talk to a service's VIP with the kernel's own
//! TCP and UDP (checksum offload, GSO super-packets from a veth), through
//! the attached programs. The services are written into the client host's
//! maps as the agent writes them (`ServiceTables::set`,
//! `ServicePorts::set`, the members' endpoints flagged
//! `SERVICE_BACKEND`). A connection to a VIP establishes only if the
//! replies come back from the VIP; bulk data must arrive whole and no
//! segment may carry a bad checksum.
//!
//! Run: `cargo test -p netfabric-tests --test service_traffic`

use std::{net::Ipv4Addr, time::Duration};

use netfabric::datapath::maps::{
    DesiredMap as _,
    service_ports::ServicePorts,
    service_tables::{ServiceMembers, ServiceTables},
};
use netfabric_common::{
    conntrack::{PROTO_TCP, PROTO_UDP},
    policy::SERVICE_BACKEND,
    service::{ServicePort, ServicePortKey, service_id},
};
use netfabric_tests::topology::{Container, Topology, ZONE_SLOT};

/// Serve `vip:port` (`protocol`) on `target_port` of `backends`, in the
/// maps of the host `host` (the clients' host balances).
fn serve(
    topo: &mut Topology,
    host: u8,
    vip: Ipv4Addr,
    ports: &[(u16, u8, u16)],
    backends: &[(Ipv4Addr, u32)],
) {
    let dp = &mut topo.host_mut(host).datapath;
    let mut members = ServiceMembers::default();
    for (i, &(addr, owner)) in backends.iter().enumerate() {
        let e = dp.endpoint(ZONE_SLOT, addr).expect("reading ENDPOINTS");
        assert_eq!(e.owner, owner, "{addr} is the backend's");
        dp.set_endpoint_groups(ZONE_SLOT, addr, owner, e.groups | SERVICE_BACKEND)
            .expect("flagging a member");
        members.members[i] = addr.into();
        members.healthy |= 1u128 << i;
    }
    let id = service_id(ZONE_SLOT, vip.into());
    ServiceTables::set(dp, id, members).expect("writing the table");
    for &(port, protocol, target_port) in ports {
        let key = ServicePortKey {
            vip: vip.into(),
            port,
            protocol,
            _pad: 0,
        };
        let value = ServicePort {
            service: id,
            owner: backends[0].1,
            target_port,
            _pad: [0; 6],
        };
        ServicePorts::set(dp, key, value).expect("writing the port");
    }
}

/// `from` connects to `vip:port`, which `to` serves on `target`.
fn tcp_through(
    topo: &Topology,
    from: &Container,
    to: &Container,
    vip: Ipv4Addr,
    port: u16,
    target: u16,
    bulk: usize,
) {
    topo.tcp_exchange(from, to, (vip, port), target, bulk);
}

#[test]
fn a_vip_carries_tcp_and_udp_to_local_and_remote_backends() {
    let mut topo = Topology::standard();
    let (alice2, alice3) = {
        let a2 = topo.container("alice2");
        let a3 = topo.container("alice3");
        ((a2.ip, a2.owner), (a3.ip, a3.owner))
    };
    // On host 1: one service on alice2 (same host as the client), one on
    // alice3 (host 2).
    let local_vip = Ipv4Addr::new(10, 1, 0, 5);
    let remote_vip = Ipv4Addr::new(10, 1, 0, 6);
    serve(
        &mut topo,
        1,
        local_vip,
        &[(80, PROTO_TCP, 8080), (53, PROTO_UDP, 5353)],
        &[alice2],
    );
    serve(
        &mut topo,
        1,
        remote_vip,
        &[(80, PROTO_TCP, 8080)],
        &[alice3],
    );

    let client = topo.container("alice1");
    tcp_through(
        &topo,
        client,
        topo.container("alice2"),
        local_vip,
        80,
        8080,
        1 << 20,
    );
    tcp_through(
        &topo,
        client,
        topo.container("alice3"),
        remote_vip,
        80,
        8080,
        1 << 20,
    );

    // UDP: a datagram to the VIP and the answer from it.
    let start = topo.snapshot();
    let backend = topo.container("alice2");
    let mut server = backend.nc_listen(5353, true);
    let mut udp = client.nc_connect(local_vip, 53, true);
    udp.send(b"query\n");
    assert!(
        server.wait_for(b"query\n", Duration::from_secs(3)),
        "UDP to {local_vip}:53 not received\n{}",
        topo.diagnose(&start)
    );
    server.send(b"answer\n");
    assert!(
        udp.wait_for(b"answer\n", Duration::from_secs(3)),
        "UDP answer from {local_vip}:53 not received\n{}",
        topo.diagnose(&start)
    );

    // The flows were counted for their backends.
    let counters = topo
        .host(1)
        .datapath
        .service_counters()
        .expect("SERVICE_COUNTERS");
    for (vip, backend) in [(local_vip, alice2.0), (remote_vip, alice3.0)] {
        let id = service_id(ZONE_SLOT, vip.into());
        let c = counters
            .iter()
            .find(|(k, _)| k.service == id && k.backend == u32::from(backend))
            .map(|(_, c)| *c);
        assert!(
            c.is_some_and(|c| c.packets > 0 && c.bytes > 1 << 20),
            "{vip} → {backend}: {c:?}"
        );
    }
}

/// A client that is a member of the service it calls is never balanced to
/// itself (its own packet would come back as a martian, the reply would
/// leave through its loopback untranslated): connections whose Maglev
/// slot names the client go to the next member, and work.
#[test]
fn a_member_calling_its_own_service_reaches_another_member() {
    let mut topo = Topology::standard();
    let (alice1, alice2) = {
        let a1 = topo.container("alice1");
        let a2 = topo.container("alice2");
        ((a1.ip, a1.owner), (a2.ip, a2.owner))
    };
    let vip = Ipv4Addr::new(10, 1, 0, 7);
    serve(
        &mut topo,
        1,
        vip,
        &[(81, PROTO_TCP, 8081)],
        &[alice1, alice2],
    );
    let mut members = ServiceMembers::default();
    members.members[0] = alice1.0.into();
    members.members[1] = alice2.0.into();
    members.healthy = 0b11;
    let table = members.table();

    let client = topo.container("alice1");
    let server_c = topo.container("alice2");
    let mut own_slot = 0;
    for attempt in 0..40 {
        let start = topo.snapshot();
        let mut server = server_c.nc_listen(8081, false);
        let mut c = client.nc_connect(vip, 81, false);
        let line = format!("attempt {attempt}\n");
        c.send(line.as_bytes());
        assert!(
            server.wait_for(line.as_bytes(), Duration::from_secs(3)),
            "attempt {attempt}: not received by the other member\n{}",
            topo.diagnose(&start)
        );
        // The client's flow: which member its Maglev slot names.
        let flows = topo
            .host(1)
            .datapath
            .service_flows()
            .expect("SERVICE_FLOWS");
        for (key, flow) in flows {
            if key.dst == u32::from(vip) && flow.kind == netfabric_common::service::FLOW_FORWARD {
                assert_eq!(
                    flow.addr,
                    u32::from(alice2.0),
                    "a flow to the client itself"
                );
                let slot = netfabric_common::service::slot_of(&key);
                if table.members[usize::from(table.slots[slot])] == u32::from(alice1.0) {
                    own_slot += 1;
                }
            }
        }
        drop(c);
        drop(server);
        if own_slot > 0 {
            break;
        }
    }
    assert!(own_slot > 0, "no connection's slot named the client itself");
}
