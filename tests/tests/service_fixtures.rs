//! Tier-2 fixtures of services in the datapath (docs/datapath.md#services):
//! packets to VIPs through the real programs (BPF_PROG_TEST_RUN) with real
//! maps, the services written through the agent's map writers
//! (`ServicePorts::set`, `Datapath::set_service_table`) and the members'
//! endpoints carrying `SERVICE_BACKEND`.
//!
//! Every row asserts what `fixtures.rs` asserts (action, the one counter,
//! the drop event) and, for a translation, every byte of the output: the
//! addresses and ports translated, the MACs and TTL of the hop, and both
//! checksums recomputed independently (the IPv4 header's by etherparse and
//! a plain sum, the transport's as a one's complement sum over the pseudo
//! header; a UDP checksum of 0 stays 0). The expectations are written by
//! hand; the reference model must predict the same, and after each table
//! the flow entries, the service counters and the tracked connections in
//! the maps must be the model's.
//!
//! Run: `cargo test -p netfabric-tests --test service_fixtures -- --nocapture`

use std::{collections::BTreeMap, net::Ipv4Addr};

use netfabric::datapath::{Datapath, LoadOptions, maps::service_tables::ServiceMembers};
use netfabric_common::{
    DropReason as R, Forward, SYSTEM_OWNER, Verdict,
    conntrack::{ConnKey, PROTO_TCP, PROTO_UDP},
    policy::SERVICE_BACKEND,
    service::{
        FLOW_FORWARD, FLOW_REVERSE, HEALTH_PROBE_MARK, MAX_BACKENDS, ServicePort, service_id,
        slot_of,
    },
};
use netfabric_tests::{
    ensure_bpffs,
    model::{
        Expect, Harness, HostModel, Model, PortModel, Prediction, Prog, TC_ACT_OK, TC_ACT_REDIRECT,
        ZoneModel, check, dummies,
    },
    netns::Netns,
    packets::{Ipv4Frame, Mac, TCP_ACK, TCP_SYN, Transport, mac, with_l4_checksum, with_transport},
    unique,
};

const ALICE: u32 = 10;
const BOB: u32 = 20;
const SYS: u32 = SYSTEM_OWNER;

const UPLINK_MAC: Mac = mac(0xee, 0, 0, 1);
const GW_MAC: Mac = mac(0xbb, 0, 0, 1);
const ROUTER_MAC: Mac = mac(0xfe, 0, 0, 1);
const H2_MAC: Mac = mac(0xee, 0, 0, 2);
const RESOLVER: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

/// Zone A (10.1.0.0/16, slot 0) is ours; this host is 10.1.1.0/24.
const fn a(h: u8, c: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, h, c)
}
/// This host's container `.c`.
const fn l(c: u8) -> Ipv4Addr {
    a(1, c)
}
const fn cmac(c: u8) -> Mac {
    mac(1, 1, 1, c)
}
/// A VIP of zone A.
const fn vip(n: u8) -> Ipv4Addr {
    a(0, n)
}

/// Local containers with a port: octet and owner. `.10`, `.12` clients,
/// `.11` a local backend, all Alice's; `.20` Bob's (no group with Alice);
/// `.50` a system container.
const LOCAL: [(u8, u32); 5] = [(10, ALICE), (11, ALICE), (12, ALICE), (20, BOB), (50, SYS)];

/// The services: one member on this host, one on host 2, three (one here,
/// two on host 2), none healthy, a port without a table, the client `.10`
/// alone (hairpin).
const LOCAL_ONLY: u8 = 9;
const REMOTE_ONLY: u8 = 10;
const THREE: u8 = 5;
const NONE_HEALTHY: u8 = 6;
const NO_TABLE: u8 = 7;
const HAIRPIN: u8 = 8;

fn sid(n: u8) -> u32 {
    service_id(0, vip(n).into())
}

fn members(addrs: &[Ipv4Addr], healthy: &[Ipv4Addr]) -> ServiceMembers {
    let mut m = ServiceMembers::default();
    for (i, a) in addrs.iter().enumerate() {
        m.members[i] = (*a).into();
        if healthy.contains(a) {
            m.healthy |= 1u128 << i;
        }
    }
    m
}

struct World {
    model: Model,
    h: Harness,
    ports: BTreeMap<u8, u32>,
    stray: u32,
    _ns: Netns,
}

fn world() -> World {
    ensure_bpffs();
    let ns = Netns::new(&unique("nfsvc"));
    let mut names: Vec<String> = LOCAL.iter().map(|(c, _)| format!("p{c}")).collect();
    names.push("stray".into());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ifx = dummies(&ns, &refs);

    let mut m = Model::default();
    m.host = Some(HostModel {
        zone_prefix: Ipv4Addr::new(10, 1, 0, 0),
        zone_slot: 0,
        host_octet: 1,
        uplink_ifindex: 1000,
        uplink_mac: UPLINK_MAC,
        gateway_mac: GW_MAC,
        router_mac: ROUTER_MAC,
    });
    m.zones.insert(
        0,
        ZoneModel {
            prefix: Ipv4Addr::new(10, 1, 0, 0),
            gateway: None,
        },
    );
    m.next_hops.insert((0, 1), UPLINK_MAC);
    m.next_hops.insert((0, 2), H2_MAC);
    let mut ports = BTreeMap::new();
    for (i, (c, owner)) in LOCAL.iter().enumerate() {
        m.owners.insert(l(*c), *owner);
        m.ports.insert(
            *c,
            PortModel {
                ifindex: ifx[i],
                mac: cmac(*c),
            },
        );
        ports.insert(*c, ifx[i]);
    }
    for c in [10, 11, 12] {
        m.owners.insert(a(2, c), ALICE);
    }
    m.owners.insert(a(2, 20), BOB);

    let mut dp = Datapath::load(&LoadOptions::default()).expect("load datapath");
    m.apply(&mut dp);
    let port = |n: u8, target_port: u16| ServicePort {
        service: sid(n),
        owner: ALICE,
        target_port,
        _pad: [0; 6],
    };
    let all = |addrs: &[Ipv4Addr]| members(addrs, addrs);
    m.set_service_table(&mut dp, sid(LOCAL_ONLY), all(&[l(11)]));
    m.set_service_port(
        &mut dp,
        vip(LOCAL_ONLY),
        80,
        PROTO_TCP,
        port(LOCAL_ONLY, 8080),
    );
    m.set_service_port(
        &mut dp,
        vip(LOCAL_ONLY),
        53,
        PROTO_UDP,
        port(LOCAL_ONLY, 5353),
    );
    m.set_service_table(&mut dp, sid(REMOTE_ONLY), all(&[a(2, 10)]));
    m.set_service_port(
        &mut dp,
        vip(REMOTE_ONLY),
        80,
        PROTO_TCP,
        port(REMOTE_ONLY, 8080),
    );
    m.set_service_table(&mut dp, sid(THREE), all(&[l(11), a(2, 10), a(2, 11)]));
    m.set_service_port(&mut dp, vip(THREE), 80, PROTO_TCP, port(THREE, 8080));
    m.set_service_table(&mut dp, sid(NONE_HEALTHY), members(&[l(11)], &[]));
    m.set_service_port(
        &mut dp,
        vip(NONE_HEALTHY),
        80,
        PROTO_TCP,
        port(NONE_HEALTHY, 80),
    );
    m.set_service_port(&mut dp, vip(NO_TABLE), 443, PROTO_TCP, port(NO_TABLE, 443));
    m.set_service_table(&mut dp, sid(HAIRPIN), all(&[l(10)]));
    m.set_service_port(&mut dp, vip(HAIRPIN), 80, PROTO_TCP, port(HAIRPIN, 8080));
    World {
        model: m,
        h: Harness::new(dp),
        ports,
        stray: ifx[LOCAL.len()],
        _ns: ns,
    }
}

// ---- packets ------------------------------------------------------------------------

/// `src:sport → dst:dport` TCP with `flags` and a valid checksum, between
/// these MACs.
fn tcp(macs: (Mac, Mac), src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Vec<u8> {
    let frame = Ipv4Frame::new(macs.0, macs.1, src.0, dst.0)
        .payload(40)
        .build();
    with_l4_checksum(with_transport(
        frame,
        Transport::Tcp {
            sport: src.1,
            dport: dst.1,
            flags,
        },
    ))
}

/// UDP with a valid checksum (`checksum`) or none (0).
fn udp(macs: (Mac, Mac), src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), checksum: bool) -> Vec<u8> {
    let frame = Ipv4Frame::new(macs.0, macs.1, src.0, dst.0)
        .payload(40)
        .build();
    let frame = with_transport(
        frame,
        Transport::Udp {
            sport: src.1,
            dport: dst.1,
        },
    );
    if checksum {
        with_l4_checksum(frame)
    } else {
        frame
    }
}

/// Sent by this host's container `.c`.
fn out(c: u8) -> (Mac, Mac) {
    (cmac(c), GW_MAC)
}
/// Arriving from host 2 on the uplink.
const FROM_H2: (Mac, Mac) = (H2_MAC, UPLINK_MAC);

fn key(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), protocol: u8) -> ConnKey {
    ConnKey {
        src: src.0.into(),
        dst: dst.0.into(),
        src_port: src.1,
        dst_port: dst.1,
        protocol,
        _pad: [0; 3],
    }
}

// ---- expectations ----------------------------------------------------------------------

/// Balanced to the backend `to` and delivered into this host's container
/// `.c` behind it.
fn balanced_local(from: (Ipv4Addr, u16), to: (Ipv4Addr, u16)) -> Prediction {
    Prediction::forward(
        TC_ACT_REDIRECT,
        Forward::Local,
        Expect::Nat {
            routed: Some((GW_MAC, cmac(to.0.octets()[3]))),
            src: from,
            dst: to,
        },
    )
}

/// Balanced to the backend `to` on host 2, out of the uplink.
fn balanced_remote(from: (Ipv4Addr, u16), to: (Ipv4Addr, u16)) -> Prediction {
    Prediction::forward(
        TC_ACT_REDIRECT,
        Forward::Remote,
        Expect::Nat {
            routed: Some((UPLINK_MAC, H2_MAC)),
            src: from,
            dst: to,
        },
    )
}

/// A reply delivered into this host's container `.c` with its source
/// translated back to `vip`.
fn reply_to(vip: (Ipv4Addr, u16), to: (Ipv4Addr, u16)) -> Prediction {
    Prediction::forward(
        TC_ACT_REDIRECT,
        Forward::Local,
        Expect::Nat {
            routed: Some((GW_MAC, cmac(to.0.octets()[3]))),
            src: vip,
            dst: to,
        },
    )
}

/// Delivered into this host's container `.c` untranslated.
fn delivered(c: u8) -> Prediction {
    Prediction::forward(
        TC_ACT_REDIRECT,
        Forward::Local,
        Expect::Routed {
            src: GW_MAC,
            dst: cmac(c),
        },
    )
}

/// Dropped after the translation to `to`: the packet stays translated
/// (not routed) and the event names the backend.
fn denied_after(prog: Prog, reason: R, from: (Ipv4Addr, u16), to: (Ipv4Addr, u16)) -> Prediction {
    Prediction {
        action: prog.drop_action(),
        verdict: Verdict::Dropped(reason),
        output: Expect::Nat {
            routed: None,
            src: from,
            dst: to,
        },
    }
}

// ---- running -----------------------------------------------------------------------------

type Step = Box<dyn Fn(&mut Model, &mut Datapath)>;

/// What a row expects of one `SERVICE_FLOWS` entry after its packet:
/// (address, port, kind), or none.
type FlowWant = (ConnKey, Option<(Ipv4Addr, u16, u8)>);

struct Row {
    desc: &'static str,
    before: Option<Step>,
    prog: Prog,
    pkt: Vec<u8>,
    mark: u32,
    want: Prediction,
    flows: Vec<FlowWant>,
}

fn row(desc: &'static str, prog: Prog, pkt: Vec<u8>, want: Prediction) -> Row {
    Row {
        desc,
        before: None,
        prog,
        pkt,
        mark: 0,
        want,
        flows: Vec::new(),
    }
}

impl Row {
    fn after(mut self, step: Step) -> Self {
        self.before = Some(step);
        self
    }
    fn marked(mut self, mark: u32) -> Self {
        self.mark = mark;
        self
    }
    fn leaves(mut self, key: ConnKey, entry: Option<(Ipv4Addr, u16, u8)>) -> Self {
        self.flows.push((key, entry));
        self
    }
}

fn set_members(n: u8, m: ServiceMembers) -> Step {
    Box::new(move |model: &mut Model, dp: &mut Datapath| {
        model.set_service_table(dp, sid(n), m);
    })
}

fn run(w: &mut World, title: &str, rows: Vec<Row>) {
    println!("== {title}: {} fixtures", rows.len());
    let _in = w._ns.enter();
    let mut failures = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if let Some(step) = &r.before {
            step(&mut w.model, &mut w.h.dp);
        }
        let mut errs = Vec::new();
        let modelled = w.model.step_marked(r.prog, &r.pkt, r.mark);
        if modelled != r.want {
            errs.push(format!("the model predicts {modelled:?}"));
        }
        match w.h.run_marked(r.prog, &r.pkt, r.mark) {
            Ok(got) => errs.extend(check(r.prog, &r.pkt, &r.want, &got)),
            Err(e) => errs.push(format!("test run failed: {e}")),
        }
        for (key, want) in &r.flows {
            let got =
                w.h.dp
                    .service_flow(key)
                    .expect("reading SERVICE_FLOWS")
                    .map(|f| (Ipv4Addr::from(f.addr), f.port, f.kind));
            if got != *want {
                errs.push(format!("flow {key:?} is {got:?}, want {want:?}"));
            }
        }
        println!(
            "{i:3} {:<16} {:<70} {}",
            r.prog.name(),
            r.desc,
            if errs.is_empty() { "ok" } else { "FAIL" }
        );
        if !errs.is_empty() {
            failures.push(format!(
                "[{title} #{i}] {}:\n    {}",
                r.desc,
                errs.join("\n    ")
            ));
        }
    }
    // The maps hold what the model follows: flows, counters, connections.
    let flows: BTreeMap<ConnKey, (u32, u16, u8, u8, u32)> =
        w.h.dp
            .service_flows()
            .expect("reading SERVICE_FLOWS")
            .into_iter()
            .map(|(k, f)| (k, (f.addr, f.port, f.kind, f.member, f.service)))
            .collect();
    if flows != w.model.expected_service_flows() {
        failures.push(format!(
            "SERVICE_FLOWS holds {flows:#?}\nthe model: {:#?}",
            w.model.expected_service_flows()
        ));
    }
    let counters: BTreeMap<(u32, u32), (u64, u64)> =
        w.h.dp
            .service_counters()
            .expect("reading SERVICE_COUNTERS")
            .into_iter()
            .map(|(k, c)| ((k.service, k.backend), (c.packets, c.bytes)))
            .collect();
    if counters != w.model.service_counters {
        failures.push(format!(
            "SERVICE_COUNTERS holds {counters:?}\nthe model: {:?}",
            w.model.service_counters
        ));
    }
    let conns: BTreeMap<_, _> =
        w.h.dp
            .connections()
            .expect("reading CONNECTIONS")
            .into_iter()
            .map(|(k, c)| (k, (c.src_owner, c.dst_owner)))
            .collect();
    let model_conns: BTreeMap<_, _> = w
        .model
        .expected_connections()
        .into_iter()
        .map(|(k, (s, d, _, _))| (k, (s, d)))
        .collect();
    if conns != model_conns {
        failures.push(format!(
            "CONNECTIONS holds {conns:?}\nthe model: {model_conns:?}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// The member Maglev gives `key` in the table the agent computes for
/// `m` (the agent's writer computes the same one).
fn maglev(m: &ServiceMembers, key: &ConnKey) -> Ipv4Addr {
    let table = m.table();
    let member = table.slots[slot_of(key)];
    assert!((member as usize) < MAX_BACKENDS, "no healthy member");
    Ipv4Addr::from(table.members[member as usize])
}

// ---- the tables -------------------------------------------------------------------------

#[test]
fn service_fixtures() {
    let mut w = world();
    let p = |c: u8| Prog::FromContainer(w.ports[&c]);
    let (p10, p11, p12, p20) = (p(10), p(11), p(12), p(20));
    let uplink_tc = Prog::UplinkTc(w.stray);

    let c10 = (l(10), 40000);
    let local_http = (vip(LOCAL_ONLY), 80);
    let local_dns = (vip(LOCAL_ONLY), 53);
    let remote_http = (vip(REMOTE_ONLY), 80);
    let b11 = (l(11), 8080);
    let b11_dns = (l(11), 5353);
    let r10 = (a(2, 10), 8080);

    let rows = vec![
        // VIP → a backend on this host, and its reply back to the VIP.
        row(
            "TCP SYN to a VIP → the local backend, translated",
            p10,
            tcp(out(10), c10, local_http, TCP_SYN),
            balanced_local(c10, b11),
        )
        .leaves(
            key(c10, local_http, PROTO_TCP),
            Some((b11.0, b11.1, FLOW_FORWARD)),
        )
        .leaves(
            key(b11, c10, PROTO_TCP),
            Some((local_http.0, local_http.1, FLOW_REVERSE)),
        ),
        row(
            "the local backend's SYN-ACK → back from the VIP",
            p11,
            tcp(out(11), b11, c10, TCP_SYN | TCP_ACK),
            reply_to(local_http, c10),
        ),
        row(
            "the client's next segment keeps the flow",
            p10,
            tcp(out(10), c10, local_http, TCP_ACK),
            balanced_local(c10, b11),
        ),
        row(
            "the backend to the same client, another port: not a flow, untranslated",
            p11,
            tcp(out(11), b11, (l(10), 40999), TCP_ACK),
            delivered(10),
        ),
        row(
            "the backend to its client directly (no VIP): untranslated",
            p11,
            tcp(out(11), (l(11), 22), c10, TCP_ACK),
            delivered(10),
        ),
        // UDP, with and without a checksum.
        row(
            "UDP with a checksum to a VIP → translated, checksum updated",
            p10,
            udp(out(10), (l(10), 5000), local_dns, true),
            balanced_local((l(10), 5000), b11_dns),
        ),
        row(
            "its reply from the backend → from the VIP, checksum updated",
            p11,
            udp(out(11), b11_dns, (l(10), 5000), true),
            reply_to(local_dns, (l(10), 5000)),
        ),
        row(
            "UDP without a checksum (0) to a VIP → translated, stays 0",
            p10,
            udp(out(10), (l(10), 5001), local_dns, false),
            balanced_local((l(10), 5001), b11_dns),
        ),
        row(
            "its reply without a checksum → from the VIP, stays 0",
            p11,
            udp(out(11), b11_dns, (l(10), 5001), false),
            reply_to(local_dns, (l(10), 5001)),
        ),
        // VIP → a backend on host 2, and its reply from the uplink.
        row(
            "TCP SYN to a VIP → the backend on host 2, out of the uplink",
            p10,
            tcp(out(10), (l(10), 40001), remote_http, TCP_SYN),
            balanced_remote((l(10), 40001), r10),
        )
        .leaves(
            key(r10, (l(10), 40001), PROTO_TCP),
            Some((remote_http.0, remote_http.1, FLOW_REVERSE)),
        ),
        row(
            "host 2's backend answers → from the VIP (from_uplink_tc)",
            uplink_tc,
            tcp(FROM_H2, r10, (l(10), 40001), TCP_SYN | TCP_ACK),
            reply_to(remote_http, (l(10), 40001)),
        ),
        row(
            "… which the XDP prefilter passes untouched",
            Prog::Uplink,
            tcp(FROM_H2, r10, (l(10), 40001), TCP_SYN | TCP_ACK),
            Prediction::forward(TC_ACT_REDIRECT, Forward::Local, Expect::Untouched).at_prefilter(),
        ),
        row(
            "host 2's backend from another port: no flow, untranslated",
            uplink_tc,
            tcp(FROM_H2, (a(2, 10), 22), (l(10), 40001), TCP_ACK),
            delivered(10),
        ),
        // No backend.
        row(
            "a port the VIP does not serve → no_backend",
            p10,
            tcp(out(10), (l(10), 40002), (vip(LOCAL_ONLY), 81), TCP_SYN),
            Prediction::drop(p10, R::NoBackend),
        ),
        row(
            "UDP to a port served over TCP only → no_backend",
            p10,
            udp(out(10), (l(10), 40002), (vip(LOCAL_ONLY), 80), true),
            Prediction::drop(p10, R::NoBackend),
        ),
        row(
            "a VIP without any service → no_backend",
            p10,
            tcp(out(10), (l(10), 40002), (vip(200), 80), TCP_SYN),
            Prediction::drop(p10, R::NoBackend),
        ),
        row(
            "a service with no healthy member → no_backend",
            p10,
            tcp(out(10), (l(10), 40002), (vip(NONE_HEALTHY), 80), TCP_SYN),
            Prediction::drop(p10, R::NoBackend),
        )
        .leaves(
            key((l(10), 40002), (vip(NONE_HEALTHY), 80), PROTO_TCP),
            None,
        ),
        row(
            "a port whose service has no table → no_backend",
            p10,
            tcp(out(10), (l(10), 40002), (vip(NO_TABLE), 443), TCP_SYN),
            Prediction::drop(p10, R::NoBackend),
        ),
        row(
            "ICMP echo to a VIP → no_backend",
            p10,
            with_transport(
                Ipv4Frame::new(cmac(10), GW_MAC, l(10), vip(LOCAL_ONLY))
                    .payload(40)
                    .build(),
                Transport::Echo {
                    request: true,
                    id: 7,
                },
            ),
            Prediction::drop(p10, R::NoBackend),
        ),
        row(
            "a later fragment to a VIP (no ports) → no_backend",
            p10,
            Ipv4Frame::new(cmac(10), GW_MAC, l(10), vip(LOCAL_ONLY))
                .fragment(false, 100)
                .build(),
            Prediction::drop(p10, R::NoBackend),
        ),
        row(
            "the client is the only backend (hairpin) → no_backend",
            p10,
            tcp(out(10), (l(10), 40003), (vip(HAIRPIN), 80), TCP_SYN),
            Prediction::drop(p10, R::NoBackend),
        ),
        row(
            "… another client of that service reaches it",
            p12,
            tcp(out(12), (l(12), 40003), (vip(HAIRPIN), 80), TCP_SYN),
            balanced_local((l(12), 40003), (l(10), 8080)),
        ),
        // The policy judges the translated packet.
        row(
            "Bob's client to Alice's service → policy_denied, no flow",
            p20,
            tcp(out(20), (l(20), 40000), local_http, TCP_SYN),
            denied_after(p20, R::PolicyDenied, (l(20), 40000), b11),
        )
        .leaves(key((l(20), 40000), local_http, PROTO_TCP), None)
        .leaves(key(b11, (l(20), 40000), PROTO_TCP), None),
        row(
            "TTL 1 to a VIP → ttl_exceeded after the translation",
            p10,
            with_l4_checksum(with_transport(
                Ipv4Frame::new(cmac(10), GW_MAC, l(10), vip(LOCAL_ONLY))
                    .ttl(1)
                    .payload(40)
                    .build(),
                Transport::Tcp {
                    sport: 40004,
                    dport: 80,
                    flags: TCP_SYN,
                },
            )),
            denied_after(p10, R::TtlExceeded, (l(10), 40004), b11),
        )
        .leaves(key((l(10), 40004), local_http, PROTO_TCP), None),
    ];
    run(&mut w, "services", rows);

    // Counted per service and backend: packets and bytes of the forward
    // direction only (replies are not counted here).
    let counters = w.h.dp.service_counters().expect("SERVICE_COUNTERS");
    let count = |n: u8, backend: Ipv4Addr| {
        counters
            .iter()
            .find(|(k, _)| k.service == sid(n) && k.backend == u32::from(backend))
            .map(|(_, c)| (c.packets, c.bytes))
    };
    let tcp_len = tcp(out(10), c10, local_http, TCP_SYN).len() as u64;
    let udp_len = udp(out(10), c10, local_dns, true).len() as u64;
    assert_eq!(
        count(LOCAL_ONLY, l(11)),
        Some((4, 2 * tcp_len + 2 * udp_len)),
        "local service: two TCP segments, two datagrams"
    );
    assert_eq!(count(REMOTE_ONLY, a(2, 10)), Some((1, tcp_len)));
    assert_eq!(count(HAIRPIN, l(10)), Some((1, tcp_len)));
    assert_eq!(count(NONE_HEALTHY, l(11)), None);

    // The endpoints of members carry SERVICE_BACKEND; others do not.
    let flagged =
        |addr: Ipv4Addr| w.h.dp.endpoint(0, addr).expect("ENDPOINTS").groups & SERVICE_BACKEND != 0;
    for member in [l(10), l(11), a(2, 10), a(2, 11)] {
        assert!(flagged(member), "{member} is a member");
    }
    for other in [l(12), l(20), l(50), a(2, 12), a(2, 20)] {
        assert!(!flagged(other), "{other} is no member");
    }
}

#[test]
fn a_flow_keeps_its_backend_while_it_stays_a_member() {
    let mut w = world();
    let p10 = Prog::FromContainer(w.ports[&10]);
    let http = (vip(THREE), 80);
    let all = [l(11), a(2, 10), a(2, 11)];
    let both = members(&all, &all);
    // A client port whose Maglev member is on host 2 (so that the local
    // member can be removed under it), and the member it gets.
    let client = (30000..31000)
        .map(|p| (l(10), p))
        .find(|c| maglev(&both, &key(*c, http, PROTO_TCP)) != l(11))
        .expect("a port balanced to host 2");
    let fkey = key(client, http, PROTO_TCP);
    let chosen = maglev(&both, &fkey);
    let other_remote = if chosen == a(2, 10) {
        a(2, 11)
    } else {
        a(2, 10)
    };
    let to = |b: Ipv4Addr| {
        if b == l(11) {
            balanced_local(client, (b, 8080))
        } else {
            balanced_remote(client, (b, 8080))
        }
    };
    // Without `chosen`, Maglev gives the flow to another member.
    let without = members(&[l(11), other_remote], &[l(11), other_remote]);
    let rebalanced = maglev(&without, &fkey);
    assert_ne!(rebalanced, chosen);
    // A second client port for which `chosen`'s unhealthiness matters.
    let fresh = (30000..31000)
        .map(|p| (l(10), p))
        .find(|c| *c != client && maglev(&both, &key(*c, http, PROTO_TCP)) == chosen)
        .expect("another port balanced to the chosen member");
    let unhealthy = members(&all, &[l(11), other_remote]);
    let fresh_to = maglev(&unhealthy, &key(fresh, http, PROTO_TCP));

    let rows = vec![
        row(
            "SYN → the Maglev member",
            p10,
            tcp(out(10), client, http, TCP_SYN),
            to(chosen),
        )
        .leaves(fkey, Some((chosen, 8080, FLOW_FORWARD))),
        row(
            "another member removed: the flow keeps its backend",
            p10,
            tcp(out(10), client, http, TCP_ACK),
            to(chosen),
        )
        .after(set_members(
            THREE,
            members(&[l(11), a(2, 10), a(2, 11)], &[a(2, 10), a(2, 11)]),
        )),
        row(
            "its backend unhealthy (still a member): the flow keeps it",
            p10,
            tcp(out(10), client, http, TCP_ACK),
            to(chosen),
        )
        .after(set_members(THREE, unhealthy)),
        row(
            "a new flow that would have gone there goes to a healthy member",
            p10,
            tcp(out(10), fresh, http, TCP_SYN),
            if fresh_to == l(11) {
                balanced_local(fresh, (fresh_to, 8080))
            } else {
                balanced_remote(fresh, (fresh_to, 8080))
            },
        ),
        row(
            "its backend removed from the service: rebalanced",
            p10,
            tcp(out(10), client, http, TCP_ACK),
            to(rebalanced),
        )
        .after(set_members(THREE, without))
        .leaves(fkey, Some((rebalanced, 8080, FLOW_FORWARD))),
    ];
    run(&mut w, "flows across table changes", rows);
}

#[test]
fn health_probes_reach_every_container() {
    let mut w = world();
    let p10 = Prog::ToContainer(w.ports[&10]);
    let probe = |src: Ipv4Addr| {
        with_l4_checksum(with_transport(
            Ipv4Frame::new(GW_MAC, cmac(10), src, l(10))
                .payload(40)
                .build(),
            Transport::Tcp {
                sport: 45000,
                dport: 8080,
                flags: TCP_SYN,
            },
        ))
    };
    let ok = Prediction::forward(TC_ACT_OK, Forward::Local, Expect::Untouched);
    let rows = vec![
        row(
            "a marked probe from the gateway address → any owner's container",
            p10,
            probe(RESOLVER),
            ok,
        )
        .marked(HEALTH_PROBE_MARK),
        row(
            "the same probe unmarked → policy_denied",
            p10,
            probe(RESOLVER),
            Prediction::drop(p10, R::PolicyDenied),
        ),
        row(
            "another mark → policy_denied",
            p10,
            probe(RESOLVER),
            Prediction::drop(p10, R::PolicyDenied),
        )
        .marked(HEALTH_PROBE_MARK ^ 1),
        row(
            "the probe's mark from another source → policy_denied",
            p10,
            probe(OUTSIDE),
            Prediction::drop(p10, R::PolicyDenied),
        )
        .marked(HEALTH_PROBE_MARK),
        row(
            "the probe's mark on a zone source → spoofed_wrong_host",
            p10,
            probe(a(2, 10)),
            Prediction::drop(p10, R::SpoofedWrongHost),
        )
        .marked(HEALTH_PROBE_MARK),
    ];
    run(&mut w, "health probes", rows);
}

/// The checks above are not vacuous: a translation that leaves either
/// checksum as it was, or rewrites a UDP checksum of 0, is caught.
#[test]
fn the_translation_check_catches_stale_checksums() {
    let input = tcp(out(10), (l(10), 40000), (vip(LOCAL_ONLY), 80), TCP_SYN);
    let (src, dst) = ((l(10), 40000), (l(11), 8080));
    let stale = netfabric_tests::packets::translated(&input, None, src, dst);
    let err = netfabric_tests::packets::check_translated(&input, &stale, None, src, dst)
        .expect_err("stale IPv4 checksum accepted");
    assert!(err.contains("IPv4"), "{err}");
    // The IPv4 header fixed, the TCP checksum still stale.
    let mut ip_fixed = stale.clone();
    netfabric_tests::packets::refresh_checksum(&mut ip_fixed);
    let err = netfabric_tests::packets::check_translated(&input, &ip_fixed, None, src, dst)
        .expect_err("stale TCP checksum accepted");
    assert!(err.contains("transport checksum"), "{err}");
    // Recomputed from scratch: accepted.
    let good = with_l4_checksum(ip_fixed);
    netfabric_tests::packets::check_translated(&input, &good, None, src, dst)
        .expect("a correct translation");
    // UDP: a checksum of 0 must stay 0.
    let udp0 = udp(out(10), (l(10), 5001), (vip(LOCAL_ONLY), 53), false);
    let (src, dst) = ((l(10), 5001), (l(11), 5353));
    let mut filled = netfabric_tests::packets::translated(&udp0, None, src, dst);
    netfabric_tests::packets::refresh_checksum(&mut filled);
    let filled = with_l4_checksum(filled);
    let err = netfabric_tests::packets::check_translated(&udp0, &filled, None, src, dst)
        .expect_err("a UDP checksum of 0 rewritten accepted");
    assert!(err.contains("UDP checksum of 0"), "{err}");
}
