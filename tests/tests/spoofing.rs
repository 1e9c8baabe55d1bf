//! Tier 3: forged container identities inside encapsulations the kernel
//! strips (802.1Q with any VID including 0, 802.1ad, stacked tags, the old
//! QinQ 0x9100), and zone sources reaching the host stack by another
//! interface than the uplink.
//!
//! Each test builds its own three-host zone (`netfabric_tests::topology`)
//! and makes the hosts route like the ones NAT and load balancing need:
//! `ip_forward=1` and no reverse-path filtering (the datapath must not rely
//! on it), plus the host's own VLAN devices on the uplink, so a tagged frame
//! the datapath let through would really be untagged and routed into a
//! container. Delivery is judged from the victim container's own IP
//! counters (`/proc/net/snmp` `Ip InReceives`), drops from the datapath's
//! counters, and "nothing tagged leaves" from an AF_PACKET capture of the
//! underlay that sees tags in the frame and tags the kernel moved into the
//! skb (`PACKET_AUXDATA`, as `tcpdump -e`).

use std::{net::Ipv4Addr, time::Duration};

use netfabric_common::{Direction, DropReason, Forward, Verdict};
use netfabric_tests::{
    netns::Netns,
    raw::{self, Capture, RawSender, with_tags},
    topology::{CONTAINER_IFNAME, Snapshot, Topology, UPLINK, ip_in, mac_str, no_ipv6},
    unique,
};

const FROM_CONTAINER: Direction = Direction::FromContainer;
const FROM_UPLINK: Direction = Direction::FromUplink;
const TO_CONTAINER: Direction = Direction::ToContainer;
const LOCAL: Verdict = Verdict::Forwarded(Forward::Local);
const REMOTE: Verdict = Verdict::Forwarded(Forward::Remote);
const STACK: Verdict = Verdict::Forwarded(Forward::Stack);
const VLAN_TAGGED: Verdict = Verdict::Dropped(DropReason::VlanTagged);
const WRONG_HOST: Verdict = Verdict::Dropped(DropReason::SpoofedWrongHost);

const Q: u16 = 0x8100;
const AD: u16 = 0x88a8;
const QINQ_OLD: u16 = 0x9100;

/// IPv4 packets the stack of namespace `ns` received (`Ip InReceives`):
/// every datagram that reached it, whatever happened next.
fn ip_in_receives(ns: &Netns) -> u64 {
    let out = ns.exec(&["cat", "/proc/net/snmp"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ip = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (
        ip.next().expect("Ip: names"),
        ip.next().expect("Ip: values"),
    );
    let col = names
        .split_whitespace()
        .position(|n| n == "InReceives")
        .expect("InReceives column");
    values
        .split_whitespace()
        .nth(col)
        .and_then(|v| v.parse().ok())
        .expect("InReceives value")
}

/// Route like a host that forwards, with no reverse-path filtering on any
/// interface (`devs` are interfaces created after the namespace).
fn forward_without_rp_filter(ns: &Netns, devs: &[&str]) {
    ns.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    for dev in ["all", "default"].iter().chain(devs) {
        ns.exec(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv4.conf.{}.rp_filter=0", dev.replace('.', "/")),
        ]);
    }
}

/// Wait until `done` holds for the counters (softirq may trail the
/// sender), then a little longer so stragglers show up as wrong counts.
fn settle(topo: &Topology, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !done(&topo.snapshot()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    topo.snapshot()
}

/// Every drop reason counted on `host` in `direction` since `before`,
/// except `allowed`, must be zero.
fn no_other_drops(
    after: &Snapshot,
    before: &Snapshot,
    host: u8,
    direction: Direction,
    allowed: DropReason,
) {
    for r in DropReason::ALL {
        if r != allowed {
            let d = after.delta(before, host, direction, Verdict::Dropped(r));
            assert_eq!(d, 0, "h{host} {} {} +{d}", direction.label(), r.label());
        }
    }
}

#[test]
fn tagged_forged_sources_from_the_underlay_never_reach_a_container() {
    let topo = Topology::standard();
    let (alice1, alice3) = (topo.container("alice1"), topo.container("alice3"));
    let (h1, h2) = (topo.host(1), topo.host(2));
    for h in &topo.hosts {
        forward_without_rp_filter(&h.ns, &[UPLINK, "nfbr0"]);
        // Frames for a host's uplink MAC go to that host only (no flooding,
        // so the counts below are exact).
        topo.underlay.exec(&[
            "bridge",
            "fdb",
            "add",
            &mac_str(h.uplink_mac),
            "dev",
            &format!("h{}", h.octet),
            "master",
            "static",
        ]);
    }
    let tx = RawSender::open(&topo.underlay, "ubr").expect("AF_PACKET socket on the underlay");
    let rogue = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];
    // alice3 (on h2) "sending" to alice1 (on h1): the same owner, so only
    // the source check stands between the forger and alice1.
    let forged =
        |payload: &[u8]| raw::ipv4_udp(rogue, h1.uplink_mac, alice3.ip, alice1.ip, 7200, payload);

    // Control: the honest frame (from h2's MAC, untagged) is delivered,
    // so the victim's counter does see what reaches it.
    let (before, seen) = (topo.snapshot(), ip_in_receives(&alice1.ns));
    tx.send(&raw::ipv4_udp(
        h2.uplink_mac,
        h1.uplink_mac,
        alice3.ip,
        alice1.ip,
        7200,
        b"honest\n",
    ))
    .unwrap();
    let after = settle(&topo, |s| s.delta(&before, 1, FROM_UPLINK, LOCAL) >= 1);
    assert_eq!(after.delta(&before, 1, FROM_UPLINK, LOCAL), 1);
    assert_eq!(
        ip_in_receives(&alice1.ns) - seen,
        1,
        "honest frame delivered"
    );

    // Control: the forged frame untagged is a wrong host.
    let (before, seen) = (topo.snapshot(), ip_in_receives(&alice1.ns));
    tx.send(&forged(b"untagged\n")).unwrap();
    let after = settle(&topo, |s| s.delta(&before, 1, FROM_UPLINK, WRONG_HOST) >= 1);
    assert_eq!(after.delta(&before, 1, FROM_UPLINK, WRONG_HOST), 1);
    assert_eq!(ip_in_receives(&alice1.ns) - seen, 0);
    println!("underlay: honest alice3 -> alice1 delivered; forged untagged: spoofed_wrong_host");

    // The same forged frame inside every tag the kernel strips, plus the
    // old QinQ type. VID 0 tags need no VLAN device: the kernel strips
    // them all (any stack of them) and routes what is inside, so those
    // would reach alice1 without the check. Other VIDs have no VLAN device
    // here (no 8021q module on the test machine) and the stack would drop
    // them, but a host with that VLAN would route them just the same.
    let cases: [(&str, &[(u16, u16)]); 9] = [
        ("802.1Q VID 0 (priority tag)", &[(Q, 0)]),
        ("802.1ad VID 0", &[(AD, 0)]),
        ("802.1ad 0 + 802.1Q 0", &[(AD, 0), (Q, 0)]),
        ("802.1Q 0 + 802.1Q 0", &[(Q, 0), (Q, 0)]),
        (
            "three VID-0 tags (deeper than parsed)",
            &[(AD, 0), (Q, 0), (Q, 0)],
        ),
        ("802.1Q VID 5", &[(Q, 5)]),
        ("802.1ad VID 7", &[(AD, 7)]),
        ("802.1ad 7 + 802.1Q 5", &[(AD, 7), (Q, 5)]),
        ("0x9100 VID 7", &[(QINQ_OLD, 7)]),
    ];
    for (what, tags) in cases {
        let (before, seen) = (topo.snapshot(), ip_in_receives(&alice1.ns));
        tx.send(&with_tags(&forged(what.as_bytes()), tags)).unwrap();
        let after = settle(&topo, |s| {
            s.delta(&before, 1, FROM_UPLINK, VLAN_TAGGED) >= 1
        });
        assert_eq!(
            ip_in_receives(&alice1.ns) - seen,
            0,
            "{what}: the forged packet reached alice1"
        );
        assert_eq!(
            after.delta(&before, 1, FROM_UPLINK, VLAN_TAGGED),
            1,
            "{what}: h1 from_uplink vlan_tagged\n{}",
            topo.diagnose(&before)
        );
        no_other_drops(&after, &before, 1, FROM_UPLINK, DropReason::VlanTagged);
        for h in 1..=3 {
            assert_eq!(
                after.delta(&before, h, FROM_UPLINK, LOCAL),
                0,
                "{what}: h{h}"
            );
            assert_eq!(
                after.delta(&before, h, TO_CONTAINER, LOCAL),
                0,
                "{what}: h{h} to_container"
            );
        }
        println!("underlay: forged alice3 -> alice1 in {what}: not delivered, h1 vlan_tagged +1");
    }

    // Tagged traffic touching no zone address (the host's own VLANs; here
    // a priority tag, which needs no VLAN device) still reaches h1.
    let mut at_h1 = netfabric_tests::topology::nc_listen_in(&h1.ns, 7201, true);
    let before = topo.snapshot();
    tx.send(&with_tags(
        &raw::ipv4_udp(
            rogue,
            h1.uplink_mac,
            // An underlay neighbour: nc answers (connects) to the sender.
            Ipv4Addr::new(172, 31, topo.underlay_net, 200),
            h1.underlay_ip,
            7201,
            b"own vlan\n",
        ),
        &[(Q, 0)],
    ))
    .unwrap();
    let got = at_h1.wait_for(b"own vlan\n", Duration::from_secs(3));
    assert!(
        got,
        "a priority-tagged datagram between outside addresses must reach h1\n{}",
        topo.diagnose(&before)
    );
    let after = settle(&topo, |s| s.delta(&before, 1, FROM_UPLINK, STACK) >= 1);
    assert_eq!(after.delta(&before, 1, FROM_UPLINK, STACK), 1);
    assert_eq!(after.delta(&before, 1, FROM_UPLINK, VLAN_TAGGED), 0);
    println!("underlay: 802.1Q VID 0 between outside addresses reaches h1's stack (stack +1)");
}

#[test]
fn containers_never_put_tagged_frames_on_the_underlay() {
    let topo = Topology::standard();
    let (alice1, alice2, alice3) = (
        topo.container("alice1"),
        topo.container("alice2"),
        topo.container("alice3"),
    );
    for h in &topo.hosts {
        forward_without_rp_filter(&h.ns, &[UPLINK, "nfbr0"]);
    }
    let capture = Capture::open_all(&topo.underlay).expect("capture on the underlay");
    let gw = topo.host(1).gateway_mac;

    // Control: the capture sees a tag the kernel strips into the skb on the
    // way (sent tagged by h3's own stack, off the datapath's paths).
    let h3_tx = RawSender::open(&topo.host(3).ns, UPLINK).expect("AF_PACKET socket on h3");
    h3_tx
        .send(&with_tags(
            &raw::ipv4_udp(
                topo.host(3).uplink_mac,
                [0x02, 0x77, 0, 0, 0, 1],
                Ipv4Addr::new(198, 51, 100, 3),
                Ipv4Addr::new(198, 51, 100, 4),
                9,
                b"control\n",
            ),
            &[(Q, 42)],
        ))
        .unwrap();
    let seen = capture.drain(Duration::from_millis(300));
    assert!(
        seen.iter().any(|c| c.tagged()
            && c.ipv4_addresses().map(|a| a.0) == Some(Ipv4Addr::new(198, 51, 100, 3))),
        "the capture must see a tagged frame on the underlay: {} frames, none tagged",
        seen.len()
    );

    let tx = RawSender::open(&alice1.ns, CONTAINER_IFNAME).expect("AF_PACKET socket in alice1");
    let honest =
        |to: Ipv4Addr, payload: &[u8]| raw::ipv4_udp(alice1.mac, gw, alice1.ip, to, 7300, payload);
    let frames = [
        (
            "own address, 802.1Q VID 5, to alice3",
            with_tags(&honest(alice3.ip, b"q5\n"), &[(Q, 5)]),
        ),
        (
            "own address, 802.1Q VID 0, to alice3",
            with_tags(&honest(alice3.ip, b"q0\n"), &[(Q, 0)]),
        ),
        (
            "own address, 802.1ad VID 7, to alice3",
            with_tags(&honest(alice3.ip, b"ad7\n"), &[(AD, 7)]),
        ),
        (
            "own address, 802.1ad 7 + 802.1Q 5, to alice3",
            with_tags(&honest(alice3.ip, b"ad7q5\n"), &[(AD, 7), (Q, 5)]),
        ),
        (
            "own address, 0x9100 VID 7, to alice3",
            with_tags(&honest(alice3.ip, b"9100\n"), &[(QINQ_OLD, 7)]),
        ),
        (
            "own address, 802.1Q VID 0, to alice2 (same host)",
            with_tags(&honest(alice2.ip, b"local\n"), &[(Q, 0)]),
        ),
        (
            "alice2's address, 802.1Q VID 0, to alice3",
            with_tags(
                &raw::ipv4_udp(alice1.mac, gw, alice2.ip, alice3.ip, 7300, b"forged\n"),
                &[(Q, 0)],
            ),
        ),
    ];
    let victims = [
        (alice2, ip_in_receives(&alice2.ns)),
        (alice3, ip_in_receives(&alice3.ns)),
    ];
    let _ = capture.drain(Duration::from_millis(50));
    for (what, frame) in &frames {
        let before = topo.snapshot();
        tx.send(frame).expect("sending a tagged frame");
        let after = settle(&topo, |s| {
            s.delta(&before, 1, FROM_CONTAINER, VLAN_TAGGED) >= 1
        });
        let leaked: Vec<_> = capture
            .drain(Duration::from_millis(100))
            .into_iter()
            .filter(|c| c.tagged())
            .map(|c| (c.ifindex, c.stripped_tag, c.ipv4_addresses()))
            .collect();
        assert!(
            leaked.is_empty(),
            "{what}: tagged frames on the underlay (ifindex, stripped TCI, addresses): {leaked:?}"
        );
        assert_eq!(
            after.delta(&before, 1, FROM_CONTAINER, VLAN_TAGGED),
            1,
            "{what}: h1 from_container vlan_tagged\n{}",
            topo.diagnose(&before)
        );
        no_other_drops(&after, &before, 1, FROM_CONTAINER, DropReason::VlanTagged);
        assert_eq!(after.delta(&before, 1, FROM_CONTAINER, REMOTE), 0, "{what}");
        assert_eq!(after.delta(&before, 1, FROM_CONTAINER, LOCAL), 0, "{what}");
        println!(
            "alice1 sends {what}: h1 from_container vlan_tagged +1, nothing forwarded, nothing tagged on the underlay"
        );
    }
    for (victim, seen) in victims {
        assert_eq!(
            ip_in_receives(&victim.ns) - seen,
            0,
            "a tagged frame from alice1 reached {}",
            victim.name
        );
    }
    println!("alice2 and alice3 received nothing");
}

#[test]
fn zone_sources_through_another_interface_never_reach_a_container() {
    let topo = Topology::standard();
    let (alice1, alice3, system) = (
        topo.container("alice1"),
        topo.container("alice3"),
        topo.container("system"),
    );
    // A second link into h1 the datapath does not watch (a management NIC,
    // a tunnel, ...): a box behind it forges zone sources that h1 routes
    // to its containers.
    let h1 = topo.host(1);
    let side = Netns::new(&unique("nfs"));
    no_ipv6(&side);
    let side_mac = [0x02, 0x5d, 0, 0, 0, 1];
    ip_in(
        &h1.ns,
        &[
            "link", "add", "side0", "type", "veth", "peer", "name", "x0", "netns", &side.name,
        ],
    );
    ip_in(
        &h1.ns,
        &["link", "set", "side0", "address", &mac_str(side_mac), "up"],
    );
    ip_in(&h1.ns, &["addr", "add", "198.51.100.1/24", "dev", "side0"]);
    ip_in(&side, &["link", "set", "x0", "up"]);
    forward_without_rp_filter(&h1.ns, &[UPLINK, "side0", "nfbr0"]);
    let tx = RawSender::open(&side, "x0").expect("AF_PACKET socket behind side0");
    let box_mac = [0x02, 0x5d, 0, 0, 0, 2];

    let sources = [
        ("alice3 (same owner, h2)", alice3.ip),
        (
            "alice2 (same owner, h1 itself)",
            topo.container("alice2").ip,
        ),
        ("the system container (h3)", system.ip),
        ("a vacant zone address", Ipv4Addr::new(10, 1, 2, 250)),
    ];
    for (what, src) in sources {
        let (before, seen) = (topo.snapshot(), ip_in_receives(&alice1.ns));
        tx.send(&raw::ipv4_udp(
            box_mac,
            side_mac,
            src,
            alice1.ip,
            7400,
            what.as_bytes(),
        ))
        .unwrap();
        let after = settle(&topo, |s| {
            s.delta(&before, 1, TO_CONTAINER, WRONG_HOST) >= 1
        });
        assert_eq!(
            ip_in_receives(&alice1.ns) - seen,
            0,
            "{what} via side0 reached alice1"
        );
        assert_eq!(
            after.delta(&before, 1, TO_CONTAINER, WRONG_HOST),
            1,
            "{what}: h1 to_container spoofed_wrong_host\n{}",
            topo.diagnose(&before)
        );
        no_other_drops(
            &after,
            &before,
            1,
            TO_CONTAINER,
            DropReason::SpoofedWrongHost,
        );
        println!(
            "side link: {what} -> alice1: not delivered, h1 to_container spoofed_wrong_host +1"
        );
    }

    // Control: an outside source through the same link is judged by policy
    // (alice1 is no system container): the path does reach to_container.
    let before = topo.snapshot();
    tx.send(&raw::ipv4_udp(
        box_mac,
        side_mac,
        Ipv4Addr::new(198, 51, 100, 2),
        alice1.ip,
        7400,
        b"outside\n",
    ))
    .unwrap();
    let denied = Verdict::Dropped(DropReason::PolicyDenied);
    let after = settle(&topo, |s| s.delta(&before, 1, TO_CONTAINER, denied) >= 1);
    assert_eq!(after.delta(&before, 1, TO_CONTAINER, denied), 1);
    println!(
        "side link: outside -> alice1: policy_denied (outside reaches system containers only)"
    );
}
