//! Tier 3: the datapath with real packets.
//!
//! Each test builds its own zone of three hosts from network namespaces
//! (`netfabric_tests::topology`: alice1, alice2, bob1 on h1; alice3, bob2 on
//! h2; carol and the system container on h3; alice and carol share a group),
//! loads one datapath per host, attaches it, and sends real traffic: ping,
//! TCP and UDP through `nc`, and raw frames through AF_PACKET. Every check
//! asserts what the kernel did (replies, bytes delivered) and which counter
//! of which host and direction moved. Needs root.

use std::{net::Ipv4Addr, time::Duration};

use netfabric::agent::plan::Blooms;
use netfabric_common::{
    Direction, DropReason, Endpoint, Forward, Verdict,
    policy::{GROUPS_KNOWN, may_share_group},
};
use netfabric_tests::{
    raw::{self, RawSender},
    topology::{
        ALICE, BOB, CAROL, CONTAINER_IFNAME, Container, STANDARD_GROUP_PAIRS, Snapshot, Topology,
        nc_connect_in, ping_from,
    },
};

const FROM_CONTAINER: Direction = Direction::FromContainer;
const FROM_UPLINK: Direction = Direction::FromUplink;
const TO_CONTAINER: Direction = Direction::ToContainer;
const LOCAL: Verdict = Verdict::Forwarded(Forward::Local);
const REMOTE: Verdict = Verdict::Forwarded(Forward::Remote);

fn dropped(reason: DropReason) -> Verdict {
    Verdict::Dropped(reason)
}

/// Pings that must all be answered.
const PINGS: u32 = 3;
/// Pings that must all go unanswered (1 s wait for each).
const DENIED_PINGS: u32 = 2;

fn ping_ok(from: &Container, to: &Container) {
    let got = from.ping(to.ip, PINGS, 2);
    assert_eq!(
        got, PINGS,
        "{} ({}) -> {} ({}): {got}/{PINGS} replies",
        from.name, from.ip, to.name, to.ip
    );
}

fn ping_denied(from: &Container, to: &Container) {
    let got = from.ping(to.ip, DENIED_PINGS, 1);
    assert_eq!(
        got, 0,
        "{} ({}) -> {} ({}) must be dropped, got {got} replies",
        from.name, from.ip, to.name, to.ip
    );
}

/// Wait until the counters reach what `done` wants (softirq processing
/// may trail the sender a little), then return the last snapshot.
fn settle(topo: &Topology, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let now = topo.snapshot();
        if done(&now) || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tcp_exchange(topo: &Topology, from: &Container, to: &Container, port: u16, bulk: usize) {
    topo.tcp_exchange(from, to, (to.ip, port), port, bulk);
}

/// One UDP exchange: a datagram from `from` to `to:port` and one back.
fn udp_exchange(topo: &Topology, from: &Container, to: &Container, port: u16) {
    let start = topo.snapshot();
    let mut server = to.nc_listen(port, true);
    let mut client = from.nc_connect(to.ip, port, true);
    let hello = format!("datagram from {}\n", from.name);
    client.send(hello.as_bytes());
    assert!(
        server.wait_for(hello.as_bytes(), Duration::from_secs(3)),
        "UDP {} -> {}: datagram not received\n{}",
        from.name,
        to.name,
        topo.diagnose(&start)
    );
    let answer = format!("datagram from {}\n", to.name);
    server.send(answer.as_bytes());
    assert!(
        client.wait_for(answer.as_bytes(), Duration::from_secs(3)),
        "UDP {} -> {}: answer not received\n{}",
        to.name,
        from.name,
        topo.diagnose(&start)
    );
}

#[test]
fn same_owner_traffic_flows_on_one_host_and_across_hosts() {
    let topo = Topology::standard();
    let modes: Vec<_> = topo
        .hosts
        .iter()
        .map(|h| format!("h{}={}", h.octet, h.xdp_mode))
        .collect();
    println!("xdp on uplinks: {}", modes.join(" "));
    let (a1, a2, a3) = (
        topo.container("alice1"),
        topo.container("alice2"),
        topo.container("alice3"),
    );

    // Same host: from_container redirects into the peer; nothing touches the uplink.
    let before = topo.snapshot();
    ping_ok(a1, a2);
    let after = settle(&topo, |s| {
        s.delta(&before, 1, FROM_CONTAINER, LOCAL) >= 2 * u64::from(PINGS)
    });
    assert_eq!(
        after.delta(&before, 1, FROM_CONTAINER, LOCAL),
        2 * u64::from(PINGS)
    );
    assert_eq!(after.delta(&before, 1, FROM_CONTAINER, REMOTE), 0);
    assert_eq!(after.delta(&before, 1, FROM_UPLINK, LOCAL), 0);
    println!(
        "ping alice1 -> alice2 (same host): {PINGS}/{PINGS}, h1 from_container local +{}",
        2 * PINGS
    );

    // Across hosts: out of h1's uplink, XDP on h2 delivers, and back.
    let before = topo.snapshot();
    ping_ok(a1, a3);
    let n = u64::from(PINGS);
    let after = settle(&topo, |s| s.delta(&before, 1, FROM_UPLINK, LOCAL) >= n);
    for (host, direction, verdict) in [
        (1, FROM_CONTAINER, REMOTE),
        (2, FROM_UPLINK, LOCAL),
        (2, FROM_CONTAINER, REMOTE),
        (1, FROM_UPLINK, LOCAL),
    ] {
        assert_eq!(
            after.delta(&before, host, direction, verdict),
            n,
            "h{host} {direction:?} {verdict:?}"
        );
    }
    println!(
        "ping alice1 -> alice3 (h1 -> h2): {PINGS}/{PINGS}, from_container remote +{n} and from_uplink local +{n} on both hosts"
    );

    // Each routing hop decrements the TTL (with an incremental checksum
    // update the receiving stack accepts): one hop on the same host, two
    // (sender's from_container, receiver's from_uplink) across hosts.
    let local_ttl = a2.ping_reply_ttl(a1.ip);
    let remote_ttl = a3.ping_reply_ttl(a1.ip);
    assert_eq!(local_ttl, Some(63), "reply TTL alice1 -> alice2");
    assert_eq!(remote_ttl, Some(62), "reply TTL alice1 -> alice3");
    println!("reply TTL: 63 on the same host, 62 across hosts (64 minus one per hop)");

    // TCP: a line each way, then 256 KiB in bulk (GSO/GRO-sized segments).
    const BULK: usize = 256 * 1024;
    let before = topo.snapshot();
    tcp_exchange(&topo, a1, a2, 5001, BULK);
    let after = topo.snapshot();
    let local = after.delta(&before, 1, FROM_CONTAINER, LOCAL);
    assert!(local >= 4, "h1 from_container local +{local}");
    println!(
        "TCP alice1 -> alice2 (same host): lines both ways + {BULK} bytes intact, h1 from_container local +{local}"
    );

    let before = topo.snapshot();
    tcp_exchange(&topo, a2, a3, 5002, BULK);
    let after = topo.snapshot();
    let d = |h, dir, v| after.delta(&before, h, dir, v);
    let (r1, u2, r2, u1) = (
        d(1, FROM_CONTAINER, REMOTE),
        d(2, FROM_UPLINK, LOCAL),
        d(2, FROM_CONTAINER, REMOTE),
        d(1, FROM_UPLINK, LOCAL),
    );
    assert!(
        r1 >= 4 && u2 >= 4 && r2 >= 4 && u1 >= 4,
        "h1 remote {r1}, h2 uplink {u2}, h2 remote {r2}, h1 uplink {u1}"
    );
    println!(
        "TCP alice2 -> alice3 (h1 -> h2): lines both ways + {BULK} bytes intact; h1 remote +{r1}, h2 uplink local +{u2}, h2 remote +{r2}, h1 uplink local +{u1}"
    );

    // UDP.
    let before = topo.snapshot();
    udp_exchange(&topo, a2, a1, 5003);
    let after = topo.snapshot();
    assert!(after.delta(&before, 1, FROM_CONTAINER, LOCAL) >= 2);
    println!("UDP alice2 <-> alice1 (same host): a datagram each way");
    let before = topo.snapshot();
    udp_exchange(&topo, a3, a1, 5004);
    let after = topo.snapshot();
    assert!(after.delta(&before, 2, FROM_CONTAINER, REMOTE) >= 1);
    assert!(after.delta(&before, 1, FROM_UPLINK, LOCAL) >= 1);
    assert!(after.delta(&before, 1, FROM_CONTAINER, REMOTE) >= 1);
    assert!(after.delta(&before, 2, FROM_UPLINK, LOCAL) >= 1);
    println!("UDP alice3 <-> alice1 (h2 <-> h1): a datagram each way");
}

#[test]
fn owners_are_isolated_unless_they_share_a_group_and_system_reaches_everyone() {
    let mut topo = Topology::standard();
    let denied = dropped(DropReason::PolicyDenied);
    let n = u64::from(DENIED_PINGS);

    // Different owners, no group: dropped by from_container on the sender's host.
    for (from, to, host) in [
        ("bob1", "alice1", 1),
        ("alice1", "bob2", 1),
        ("bob2", "alice1", 2),
        ("bob2", "carol", 2),
    ] {
        let (f, t) = (topo.container(from), topo.container(to));
        let before = topo.snapshot();
        ping_denied(f, t);
        let after = settle(&topo, |s| {
            s.delta(&before, host, FROM_CONTAINER, denied) >= n
        });
        assert_eq!(
            after.delta(&before, host, FROM_CONTAINER, denied),
            n,
            "{from} -> {to}"
        );
        for h in 1..=3 {
            assert_eq!(
                after.delta(&before, h, FROM_CONTAINER, LOCAL),
                0,
                "{from} -> {to} h{h}"
            );
            assert_eq!(
                after.delta(&before, h, FROM_CONTAINER, REMOTE),
                0,
                "{from} -> {to} h{h}"
            );
            assert_eq!(
                after.delta(&before, h, FROM_UPLINK, LOCAL),
                0,
                "{from} -> {to} h{h}"
            );
        }
        println!(
            "ping {from} -> {to}: 0/{DENIED_PINGS}, h{host} from_container policy_denied +{n}"
        );
    }

    // alice and carol share a group: both directions, across hosts.
    ping_ok(topo.container("alice1"), topo.container("carol"));
    ping_ok(topo.container("carol"), topo.container("alice3"));
    tcp_exchange(
        &topo,
        topo.container("carol"),
        topo.container("alice2"),
        5101,
        64 * 1024,
    );
    println!("alice <-> carol (shared group): ping both ways, TCP carol -> alice2 with 64 KiB");

    // The system container reaches everyone and everyone reaches it.
    let system = topo.container("system");
    for name in ["alice1", "alice2", "bob1", "alice3", "bob2", "carol"] {
        let other = topo.container(name);
        ping_ok(system, other);
        ping_ok(other, system);
    }
    println!("system <-> alice1, alice2, bob1, alice3, bob2, carol: ping both ways");

    // from_uplink enforces policy too: with the pair gone on h3 only (an
    // agent that has not caught up on h1), h1 still forwards and h3's XDP drops.
    topo.host_mut(3)
        .datapath
        .remove_group_pair(ALICE, CAROL)
        .expect("remove_group_pair");
    let before = topo.snapshot();
    ping_denied(topo.container("alice1"), topo.container("carol"));
    let after = settle(&topo, |s| s.delta(&before, 3, FROM_UPLINK, denied) >= n);
    assert_eq!(after.delta(&before, 1, FROM_CONTAINER, REMOTE), n);
    assert_eq!(after.delta(&before, 3, FROM_UPLINK, denied), n);
    println!(
        "alice1 -> carol with the pair removed on h3 only: 0/{DENIED_PINGS}, h3 from_uplink policy_denied +{n}"
    );
}

#[test]
fn removing_a_group_pair_stops_an_open_connection() {
    let mut topo = Topology::standard();
    let (alice, carol) = (topo.container("alice1"), topo.container("carol"));
    let mut server = carol.nc_listen(6000, false);
    let mut client = alice.nc_connect(carol.ip, 6000, false);
    client.send(b"before removal\n");
    assert!(server.wait_for(b"before removal\n", Duration::from_secs(3)));
    server.send(b"carol answers\n");
    assert!(client.wait_for(b"carol answers\n", Duration::from_secs(3)));
    println!("TCP alice1 <-> carol open: a line each way");

    let before = topo.snapshot();
    topo.remove_group_pair(ALICE, CAROL);
    client.send(b"after removal\n");
    server.send(b"carol after removal\n");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !server.wait_for(b"after removal\n", Duration::ZERO),
        "data sent after the group pair was removed arrived at carol"
    );
    assert!(
        !client.wait_for(b"carol after removal\n", Duration::ZERO),
        "data sent after the group pair was removed arrived at alice"
    );
    let after = topo.snapshot();
    let denied = dropped(DropReason::PolicyDenied);
    let (d1, d3) = (
        after.delta(&before, 1, FROM_CONTAINER, denied),
        after.delta(&before, 3, FROM_CONTAINER, denied),
    );
    assert!(d1 >= 1, "h1 from_container policy_denied +{d1}");
    assert!(d3 >= 1, "h3 from_container policy_denied +{d3}");
    println!(
        "group pair removed: nothing arrives in 2.5 s; policy_denied h1 from_container +{d1} (alice's retransmissions), h3 from_container +{d3} (carol's)"
    );

    // The connection itself survived: once the pair is back, TCP's
    // retransmissions get through.
    topo.set_group_pair(ALICE, CAROL);
    assert!(server.wait_for(b"after removal\n", Duration::from_secs(10)));
    assert!(client.wait_for(b"carol after removal\n", Duration::from_secs(10)));
    println!("group pair restored: the retransmitted data arrives on the same connection");
}

#[test]
fn spoofed_frames_from_a_container_are_dropped_with_their_reason() {
    let topo = Topology::standard();
    let (alice1, alice2, alice3, carol) = (
        topo.container("alice1"),
        topo.container("alice2"),
        topo.container("alice3"),
        topo.container("carol"),
    );
    let gw = topo.host(1).gateway_mac;
    let foreign_mac = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];
    let tx = RawSender::open(&alice1.ns, CONTAINER_IFNAME).expect("AF_PACKET socket in alice1");
    let mut listener = alice3.nc_listen(7000, true);

    // An honest frame first: the raw path itself works.
    let before = topo.snapshot();
    tx.send(&raw::ipv4_udp(
        alice1.mac,
        gw,
        alice1.ip,
        alice3.ip,
        7000,
        b"honest\n",
    ))
    .unwrap();
    assert!(
        listener.wait_for(b"honest\n", Duration::from_secs(3)),
        "honest raw frame not delivered"
    );
    let after = settle(&topo, |s| s.delta(&before, 2, FROM_UPLINK, LOCAL) >= 1);
    assert_eq!(after.delta(&before, 1, FROM_CONTAINER, REMOTE), 1);
    assert_eq!(after.delta(&before, 2, FROM_UPLINK, LOCAL), 1);
    println!("raw honest IPv4 alice1 -> alice3: delivered, h1 remote +1, h2 uplink local +1");

    let outside = Ipv4Addr::new(192, 0, 2, 1);
    let spoofed_ip = [
        raw::ipv4_udp(alice1.mac, gw, alice2.ip, alice3.ip, 7000, b"as alice2\n"),
        raw::ipv4_udp(alice1.mac, gw, carol.ip, alice3.ip, 7000, b"as carol\n"),
        raw::ipv4_udp(alice1.mac, gw, outside, alice3.ip, 7000, b"as outside\n"),
    ];
    let spoofed_mac = [
        raw::ipv4_udp(
            foreign_mac,
            gw,
            alice1.ip,
            alice3.ip,
            7000,
            b"foreign mac\n",
        ),
        raw::ipv4_udp(alice2.mac, gw, alice1.ip, alice3.ip, 7000, b"alice2 mac\n"),
    ];
    let gateway: Ipv4Addr = netfabric_tests::topology::GATEWAY;
    let spoofed_arp = [
        // Foreign sender IP.
        raw::arp_request(alice1.mac, alice1.mac, alice2.ip, gateway),
        // Foreign sender MAC.
        raw::arp_request(alice1.mac, foreign_mac, alice1.ip, gateway),
        // Honest ARP body, foreign Ethernet source.
        raw::arp_request(foreign_mac, alice1.mac, alice1.ip, gateway),
    ];
    let ipv6 = [
        raw::ipv6_udp(alice1.mac, gw, 7000, b"v6\n"),
        raw::ipv6_udp(
            alice1.mac,
            [0x33, 0x33, 0, 0, 0, 1],
            7000,
            b"v6 multicast\n",
        ),
    ];
    let cases: [(&str, &[Vec<u8>], DropReason); 4] = [
        (
            "IPv4 with another source IP",
            &spoofed_ip,
            DropReason::SpoofedSourceIp,
        ),
        (
            "own IP, foreign source MAC",
            &spoofed_mac,
            DropReason::SpoofedSourceMac,
        ),
        (
            "ARP with a foreign sender IP or MAC",
            &spoofed_arp,
            DropReason::SpoofedArp,
        ),
        ("IPv6", &ipv6, DropReason::Ipv6NotSupported),
    ];
    for (what, frames, reason) in cases {
        let before = topo.snapshot();
        for f in frames {
            tx.send(f).expect("sending a raw frame");
        }
        let want = frames.len() as u64;
        let after = settle(&topo, |s| {
            s.delta(&before, 1, FROM_CONTAINER, dropped(reason)) >= want
        });
        // Give stragglers a chance to show up as a wrong count.
        std::thread::sleep(Duration::from_millis(100));
        let after_all = topo.snapshot();
        assert_eq!(
            after.delta(&before, 1, FROM_CONTAINER, dropped(reason)),
            want,
            "{what}"
        );
        let snap_after = &after_all.0[0];
        let snap_before = &before.0[0];
        for r in DropReason::ALL {
            let d = snap_after.get(FROM_CONTAINER, dropped(r)).packets
                - snap_before.get(FROM_CONTAINER, dropped(r)).packets;
            let expected = if r == reason { want } else { 0 };
            assert_eq!(d, expected, "{what}: h1 from_container {} +{d}", r.label());
        }
        for h in 1..=3 {
            assert_eq!(
                after_all.delta(&before, h, FROM_CONTAINER, REMOTE),
                0,
                "{what}: h{h} remote"
            );
            assert_eq!(
                after_all.delta(&before, h, FROM_UPLINK, LOCAL),
                0,
                "{what}: h{h} uplink local"
            );
        }
        println!(
            "raw {what}: {want} frames, h1 from_container {} +{want}, nothing forwarded",
            reason.label()
        );
    }
    assert_eq!(
        String::from_utf8_lossy(listener.received()),
        "honest\n",
        "only the honest datagram may reach alice3"
    );
}

#[test]
fn host_stack_reaches_only_system_containers() {
    let topo = Topology::standard();
    let denied = dropped(DropReason::PolicyDenied);
    let n = u64::from(DENIED_PINGS);
    for (host, name) in [(1, "alice1"), (2, "bob2"), (3, "carol")] {
        let target = topo.container(name);
        let before = topo.snapshot();
        let got = ping_from(&topo.host(host).ns, target.ip, DENIED_PINGS, 1);
        assert_eq!(got, 0, "host h{host} -> {name} must be dropped");
        let after = settle(&topo, |s| s.delta(&before, host, TO_CONTAINER, denied) >= n);
        assert_eq!(
            after.delta(&before, host, TO_CONTAINER, denied),
            n,
            "h{host} -> {name}"
        );
        println!(
            "ping host h{host} -> {name}: 0/{DENIED_PINGS}, h{host} to_container policy_denied +{n}"
        );
    }

    let system = topo.container("system");
    let h3 = topo.host(3);
    let before = topo.snapshot();
    let got = ping_from(&h3.ns, system.ip, PINGS, 2);
    assert_eq!(got, PINGS, "host h3 -> system");
    let after = topo.snapshot();
    let passed = after.delta(&before, 3, TO_CONTAINER, LOCAL);
    assert!(
        passed >= u64::from(PINGS),
        "h3 to_container local +{passed}"
    );
    assert_eq!(after.delta(&before, 3, TO_CONTAINER, denied), 0);

    let mut server = system.nc_listen(8000, false);
    let mut client = nc_connect_in(&h3.ns, system.ip, 8000, false);
    client.send(b"from the host\n");
    assert!(
        server.wait_for(b"from the host\n", Duration::from_secs(3)),
        "host h3 -> system TCP"
    );
    server.send(b"system answers\n");
    assert!(
        client.wait_for(b"system answers\n", Duration::from_secs(3)),
        "system -> host h3 TCP"
    );
    println!(
        "host h3 -> system: ping {PINGS}/{PINGS} (to_container local +{passed}), TCP both ways"
    );
}

#[test]
fn uplink_checks_the_sending_host_and_lets_outside_sources_reach_only_system() {
    let topo = Topology::standard();
    let (alice1, alice3, bob2, system) = (
        topo.container("alice1"),
        topo.container("alice3"),
        topo.container("bob2"),
        topo.container("system"),
    );
    let (h1, h2, h3) = (topo.host(1), topo.host(2), topo.host(3));
    // A box on the underlay: raw frames sent on the underlay bridge reach
    // the hosts' uplinks like frames from any other machine on that segment.
    let tx = RawSender::open(&topo.underlay, "ubr").expect("AF_PACKET socket on the underlay");
    let rogue_mac = [0x02, 0xba, 0xd0, 0x00, 0x00, 0x01];
    let mut at_alice3 = alice3.nc_listen(7100, true);
    let mut at_system = system.nc_listen(7101, true);

    // Control: alice1's address from h1's MAC is delivered.
    let before = topo.snapshot();
    tx.send(&raw::ipv4_udp(
        h1.uplink_mac,
        h2.uplink_mac,
        alice1.ip,
        alice3.ip,
        7100,
        b"via h1\n",
    ))
    .unwrap();
    assert!(at_alice3.wait_for(b"via h1\n", Duration::from_secs(3)));
    let after = settle(&topo, |s| s.delta(&before, 2, FROM_UPLINK, LOCAL) >= 1);
    assert_eq!(after.delta(&before, 2, FROM_UPLINK, LOCAL), 1);
    println!(
        "underlay: alice1's address from h1's MAC -> alice3: delivered, h2 from_uplink local +1"
    );

    // A container address of h1 from any other MAC is spoofed.
    let spoofed = [
        raw::ipv4_udp(
            rogue_mac,
            h2.uplink_mac,
            alice1.ip,
            alice3.ip,
            7100,
            b"rogue\n",
        ),
        raw::ipv4_udp(
            h3.uplink_mac,
            h2.uplink_mac,
            alice1.ip,
            alice3.ip,
            7100,
            b"from h3\n",
        ),
        // h2's own /24 never arrives over the uplink.
        raw::ipv4_udp(
            h1.uplink_mac,
            h2.uplink_mac,
            bob2.ip,
            alice3.ip,
            7100,
            b"own net\n",
        ),
    ];
    let before = topo.snapshot();
    for f in &spoofed {
        tx.send(f).unwrap();
    }
    let want = spoofed.len() as u64;
    let wrong_host = dropped(DropReason::SpoofedWrongHost);
    let after = settle(&topo, |s| {
        s.delta(&before, 2, FROM_UPLINK, wrong_host) >= want
    });
    std::thread::sleep(Duration::from_millis(100));
    let after_all = topo.snapshot();
    assert_eq!(after.delta(&before, 2, FROM_UPLINK, wrong_host), want);
    assert_eq!(after_all.delta(&before, 2, FROM_UPLINK, wrong_host), want);
    assert_eq!(after_all.delta(&before, 2, FROM_UPLINK, LOCAL), 0);
    println!(
        "underlay: {want} frames claiming a container source from the wrong MAC: h2 from_uplink spoofed_wrong_host +{want}"
    );

    // A source outside every zone (a client the underlay routed here) may
    // reach the system container only.
    let client = Ipv4Addr::new(203, 0, 113, 7);
    let before = topo.snapshot();
    tx.send(&raw::ipv4_udp(
        rogue_mac,
        h2.uplink_mac,
        client,
        bob2.ip,
        7100,
        b"to bob\n",
    ))
    .unwrap();
    tx.send(&raw::ipv4_udp(
        rogue_mac,
        h3.uplink_mac,
        client,
        system.ip,
        7101,
        b"to system\n",
    ))
    .unwrap();
    assert!(at_system.wait_for(b"to system\n", Duration::from_secs(3)));
    let denied = dropped(DropReason::PolicyDenied);
    let after = settle(&topo, |s| s.delta(&before, 2, FROM_UPLINK, denied) >= 1);
    assert_eq!(after.delta(&before, 2, FROM_UPLINK, denied), 1);
    assert_eq!(after.delta(&before, 3, FROM_UPLINK, LOCAL), 1);
    println!(
        "underlay: outside client -> bob2 dropped (h2 from_uplink policy_denied +1), -> system delivered (h3 from_uplink local +1)"
    );

    assert_eq!(String::from_utf8_lossy(at_alice3.received()), "via h1\n");
}

/// The namespace tier runs what the agent writes: every `ENDPOINTS` entry
/// carries the owner's groups bloom as `agent::plan::Blooms` computes it
/// (known, overlapping for the pair that shares a group, disjoint
/// otherwise), not the "groups unknown" entry no agent writes.
#[test]
fn the_topology_writes_endpoints_with_the_agents_groups_blooms() {
    let topo = Topology::standard();
    let blooms = Blooms::of_groups(
        STANDARD_GROUP_PAIRS
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| (u32::try_from(i).unwrap(), [a, b])),
    );
    for host in &topo.hosts {
        for c in &topo.containers {
            let e = host.datapath.endpoint(0, c.ip).expect("reading ENDPOINTS");
            assert_eq!(
                e,
                Endpoint {
                    owner: c.owner,
                    groups: blooms.of(c.owner)
                },
                "{} on h{}",
                c.name,
                host.octet
            );
            assert_ne!(e.groups & GROUPS_KNOWN, 0, "{} on h{}", c.name, host.octet);
        }
    }
    assert!(may_share_group(blooms.of(ALICE), blooms.of(CAROL)));
    assert!(!may_share_group(blooms.of(ALICE), blooms.of(BOB)));
}

/// `rx_packets` and `rx_bytes` of `dev` as the kernel counts them inside `ns`.
fn rx_stats(ns: &netfabric_tests::netns::Netns, dev: &str) -> (u64, u64) {
    let read = |what: &str| {
        let out = ns.exec(&["cat", &format!("/sys/class/net/{dev}/statistics/{what}")]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{dev} {what} in {}: {e}", ns.name))
    };
    (read("rx_packets"), read("rx_bytes"))
}

/// Bytes per packet counted on host `host` for `direction`/`verdict` since
/// `earlier`, and the packets.
fn bytes_per_packet(
    now: &Snapshot,
    earlier: &Snapshot,
    host: u8,
    direction: Direction,
    verdict: Verdict,
) -> (u64, u64) {
    let i = usize::from(host - 1);
    let (a, b) = (
        now.0[i].get(direction, verdict),
        earlier.0[i].get(direction, verdict),
    );
    let packets = a.packets - b.packets;
    (packets, (a.bytes - b.bytes) / packets.max(1))
}

/// The kernel's default offloads stay on (TSO, GSO, TX checksum on the
/// uplinks) and TCP across hosts still delivers every byte intact, both
/// ways; super-packets stay whole from the sending container to the
/// receiving one: the sending host's `from_container` and the receiving
/// host's uplink program see packets larger than the MTU on average, and so
/// does the receiving container's `eth0`. (An XDP redirect into the port
/// cut every packet to one MTU frame, and lost CHECKSUM_PARTIAL.) As the
/// agent attaches the uplink on a veth: TC only.
#[test]
fn tcp_across_hosts_keeps_super_packets_whole_with_default_offloads() {
    let topo = Topology::standard();
    assert!(topo.hosts.iter().all(|h| h.xdp_mode == "none"));
    tcp_keeps_super_packets_whole(&topo);
}

/// The same with the XDP prefilter in front of the uplink's TC program
/// (what the agent attaches on a NIC): what it passes keeps its checksum
/// state and is aggregated again by GRO.
#[test]
fn tcp_across_hosts_keeps_super_packets_whole_behind_the_xdp_prefilter() {
    let topo = Topology::standard_with_prefilter();
    assert!(topo.hosts.iter().all(|h| h.xdp_mode != "none"));
    tcp_keeps_super_packets_whole(&topo);
}

fn tcp_keeps_super_packets_whole(topo: &Topology) {
    const MTU_FRAME: u64 = 1514;
    const BULK: usize = 4 << 20;
    for h in &topo.hosts {
        let k = String::from_utf8_lossy(&h.ns.exec(&["ethtool", "-k", "up0"]).stdout).into_owned();
        for feature in [
            "tx-checksumming: on",
            "tcp-segmentation-offload: on",
            "generic-segmentation-offload: on",
        ] {
            assert!(k.contains(feature), "h{} up0: want {feature}\n{k}", h.octet);
        }
    }
    let (a1, a3) = (topo.container("alice1"), topo.container("alice3"));
    for (from, to, port) in [(a1, a3, 5101), (a3, a1, 5102)] {
        let (send_host, recv_host) = (from.host, to.host);
        let before = topo.snapshot();
        let eth0_before = rx_stats(&to.ns, CONTAINER_IFNAME);
        tcp_exchange(topo, from, to, port, BULK);
        let after = topo.snapshot();
        let eth0_after = rx_stats(&to.ns, CONTAINER_IFNAME);
        let (sent, sent_size) =
            bytes_per_packet(&after, &before, send_host, FROM_CONTAINER, REMOTE);
        let (delivered, delivered_size) =
            bytes_per_packet(&after, &before, recv_host, FROM_UPLINK, LOCAL);
        let eth0_packets = eth0_after.0 - eth0_before.0;
        let eth0_size = (eth0_after.1 - eth0_before.1) / eth0_packets.max(1);
        println!(
            "TCP {} -> {}: {BULK} bytes intact; h{send_host} from_container remote {sent} packets \
             of {sent_size} bytes on average, h{recv_host} from_uplink local {delivered} of \
             {delivered_size}, {}'s eth0 received {eth0_packets} of {eth0_size}",
            from.name, to.name, to.name
        );
        assert!(
            sent_size > MTU_FRAME,
            "{} -> {}: from_container saw {sent} packets of {sent_size} bytes on average: no GSO",
            from.name,
            to.name
        );
        assert!(
            delivered_size > MTU_FRAME,
            "{} -> {}: the uplink delivered {delivered} packets of {delivered_size} bytes on average: \
             super-packets were cut",
            from.name,
            to.name
        );
        assert!(
            eth0_size > MTU_FRAME,
            "{} -> {}: eth0 received {eth0_packets} packets of {eth0_size} bytes on average",
            from.name,
            to.name
        );
    }
}
