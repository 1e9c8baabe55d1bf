//! The agent's DNS server over UDP, started as the agent starts it
//! (`DnsServer::start`) in a namespace of the test's own (needs root and
//! namespaces, no BPF): the replies of its UDP receive loop, first built
//! and then repeated from its per-thread cache, are byte for byte what
//! hickory's server sends for the same query over TCP; a cached reply is
//! never given to another asker nor outlives the state it was built under;
//! every query is counted, cached or not; dropping the server frees the
//! port.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    path::Path,
    process::Command,
    time::Duration,
};

mod common;

use common::{TestNetns, unique_name};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RData,
};
use netfabric::{
    MacAddr,
    dns::{DnsConfig, DnsServer, UpstreamSource},
    observe::metrics::{DnsMetrics, DnsOutcomeLabel, DnsProtocolLabel},
    state::{HostSpec, State},
};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
const ALICE_WEB: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);
const BOB_WEB: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);
const CAROL_API: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 3);

/// alice and carol share `team` (unless `team` is false); bob is alone.
/// Host h1 holds alice-web, bob-web and carol-api.
fn state(team: bool) -> State {
    let mut s = State::default();
    s.create_zone("z", "10.1.0.0/16".parse().unwrap(), None)
        .unwrap();
    s.create_host(HostSpec {
        name: "h1".into(),
        zone: "z".into(),
        number: Some(1),
        subnet: None,
        uplink: "up0".into(),
        underlay_ip: Ipv4Addr::new(192, 0, 2, 1),
        underlay_mac: MacAddr([2, 0, 0, 0, 0, 1]),
    })
    .unwrap();
    for owner in ["alice", "bob", "carol"] {
        s.create_owner(owner).unwrap();
    }
    if team {
        s.create_group("team", &["alice".to_owned(), "carol".to_owned()])
            .unwrap();
    }
    for (name, owner, addr) in [
        ("alice-web", "alice", ALICE_WEB),
        ("bob-web", "bob", BOB_WEB),
        ("carol-api", "carol", CAROL_API),
    ] {
        s.create_container(name, owner, "h1", Some(addr)).unwrap();
    }
    s
}

/// Runs `f` on a thread inside a new namespace whose loopback holds the
/// gateway and the containers' addresses; the namespace is deleted after,
/// also when `f` panics (the panic is then the test's).
fn in_netns(tag: &str, f: impl FnOnce() + Send + 'static) {
    let ns = TestNetns::new(&unique_name(tag));
    for args in [
        vec!["link", "set", "lo", "up"],
        vec!["addr", "add", "169.254.1.1/32", "dev", "lo"],
        vec!["addr", "add", "10.1.1.1/32", "dev", "lo"],
        vec!["addr", "add", "10.1.1.2/32", "dev", "lo"],
        vec!["addr", "add", "10.1.1.3/32", "dev", "lo"],
    ] {
        let out = Command::new("ip")
            .args(["-n", &ns.0])
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    }
    let path = ns.path();
    let result = std::thread::spawn(move || {
        netfabric::port::netns::enter(Path::new(&path)).unwrap();
        f();
    })
    .join();
    drop(ns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The agent's DNS server on 169.254.1.1:53 without upstreams, on a
/// runtime like the agent's, for host h1.
struct Running {
    server: Option<DnsServer>,
    metrics: DnsMetrics,
    _rt: tokio::runtime::Runtime,
}

fn start(state: &State) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let metrics = DnsMetrics::new();
    let config = DnsConfig {
        upstream: UpstreamSource::Servers(Vec::new()),
        ..DnsConfig::default()
    };
    let server = rt
        .block_on(async { DnsServer::start(&config, "h1", metrics.clone()) })
        .unwrap();
    server.publish(state, 1);
    Running {
        server: Some(server),
        metrics,
        _rt: rt,
    }
}

/// A query: `id`, RD, one question `name`/`qtype`/`class`, and an OPT
/// record advertising `edns` bytes if given.
fn query(id: u16, name: &str, qtype: u16, class: u16, edns: Option<u16>) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for label in name.trim_end_matches('.').split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&class.to_be_bytes());
    if let Some(size) = edns {
        m.push(0);
        m.extend_from_slice(&41u16.to_be_bytes());
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    m
}

/// A UDP client at `from`. Its queries all reach the same receive thread
/// of the server (the kernel picks a `SO_REUSEPORT` socket by flow), so
/// a repeated query is answered from that thread's cache.
fn client(from: Ipv4Addr) -> UdpSocket {
    let s = UdpSocket::bind((from, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Sends `msg` over UDP from `client` and returns the reply.
fn udp(client: &UdpSocket, msg: &[u8]) -> Vec<u8> {
    client.send_to(msg, (GATEWAY, 53)).unwrap();
    let mut buf = [0u8; 65535];
    let n = client
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no UDP reply to {client:?}: {e}"));
    buf[..n].to_vec()
}

/// Sends `msg` over TCP from `from` and returns the reply.
fn tcp(from: Ipv4Addr, msg: &[u8]) -> Vec<u8> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    s.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())
        .unwrap();
    s.connect(&SocketAddr::V4(SocketAddrV4::new(GATEWAY, 53)).into())
        .unwrap();
    let mut s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    s.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut reply).unwrap();
    reply
}

/// The rcode and the A addresses of a reply.
fn decode(reply: &[u8]) -> (ResponseCode, Vec<Ipv4Addr>) {
    let m = Message::from_vec(reply).unwrap();
    let addrs = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    (m.metadata.response_code, addrs)
}

fn name(container: &str, owner: &str) -> String {
    format!("{container}.{owner}.netfabric.internal")
}

#[test]
fn udp_replies_are_the_bytes_hickory_sends_over_tcp() {
    in_netns("dnsudpb", || {
        let _server = start(&state(true));
        let (a, aaaa, ptr, soa, txt) = (1, 28, 12, 6, 16);
        // (asker, query without its ID)
        let cases: Vec<(Ipv4Addr, Vec<u8>)> = vec![
            // Own name, a group's, a hidden one, an absent one.
            (ALICE_WEB, query(0, &name("alice-web", "alice"), a, 1, None)),
            (ALICE_WEB, query(0, &name("carol-api", "carol"), a, 1, None)),
            (ALICE_WEB, query(0, &name("bob-web", "bob"), a, 1, None)),
            (ALICE_WEB, query(0, &name("nobody", "alice"), a, 1, None)),
            // Mixed case (echoed as asked, answered in lower case), EDNS
            // at several sizes.
            (
                ALICE_WEB,
                query(0, "Carol-API.Carol.NetFabric.Internal", a, 1, None),
            ),
            (
                ALICE_WEB,
                query(0, &name("carol-api", "carol"), a, 1, Some(4096)),
            ),
            (
                ALICE_WEB,
                query(0, &name("carol-api", "carol"), a, 1, Some(100)),
            ),
            // NODATA, PTR, the apex's SOA and its NODATA.
            (
                ALICE_WEB,
                query(0, &name("alice-web", "alice"), aaaa, 1, None),
            ),
            (
                BOB_WEB,
                query(0, "2.1.1.10.in-addr.arpa", ptr, 1, Some(1232)),
            ),
            (ALICE_WEB, query(0, "2.1.1.10.in-addr.arpa", ptr, 1, None)),
            (CAROL_API, query(0, "netfabric.internal", soa, 1, None)),
            (CAROL_API, query(0, "netfabric.internal", txt, 1, None)),
            // Not ours without upstreams, another class, the host asking.
            (ALICE_WEB, query(0, "example.com", a, 1, None)),
            (ALICE_WEB, query(0, &name("alice-web", "alice"), a, 3, None)),
            (GATEWAY, query(0, &name("alice-web", "alice"), a, 1, None)),
        ];
        for (i, (asker, msg)) in cases.iter().enumerate() {
            let with_id = |id: u16| {
                let mut m = msg.clone();
                m[..2].copy_from_slice(&id.to_be_bytes());
                m
            };
            let over_tcp = tcp(*asker, &with_id(1000 + i as u16));
            assert!(over_tcp.len() > 12, "case {i}: {over_tcp:?}");
            // The first UDP reply is built, the next come from the cache
            // (another ID each time).
            let client = client(*asker);
            for round in 0..3u16 {
                let id = 1000 + i as u16 + 100 * (round + 1);
                let mut expected = over_tcp.clone();
                expected[..2].copy_from_slice(&id.to_be_bytes());
                assert_eq!(
                    udp(&client, &with_id(id)),
                    expected,
                    "case {i} from {asker}, round {round}"
                );
            }
        }
    });
}

#[test]
fn cached_replies_follow_the_asker_and_the_published_state() {
    in_netns("dnsudpc", || {
        let running = start(&state(true));
        let carol = query(7, &name("carol-api", "carol"), 1, 1, None);
        let (alice, bob) = (client(ALICE_WEB), client(BOB_WEB));
        for _ in 0..3 {
            assert_eq!(
                decode(&udp(&alice, &carol)),
                (ResponseCode::NoError, vec![CAROL_API])
            );
        }
        // The very same bytes from bob, who shares no group with carol.
        assert_eq!(decode(&udp(&bob, &carol)), (ResponseCode::NXDomain, vec![]));
        // Revoking the group hides the name from the next query on.
        running.server.as_ref().unwrap().publish(&state(false), 2);
        assert_eq!(
            decode(&udp(&alice, &carol)),
            (ResponseCode::NXDomain, vec![])
        );
        running.server.as_ref().unwrap().publish(&state(true), 3);
        assert_eq!(
            decode(&udp(&alice, &carol)),
            (ResponseCode::NoError, vec![CAROL_API])
        );
        // Every query counted, cached or not: 3 + 1 + 1 + 1.
        let udp_queries = running
            .metrics
            .queries
            .get_or_create(&DnsProtocolLabel { protocol: "udp" })
            .get();
        let outcome = |outcome| {
            running
                .metrics
                .responses
                .get_or_create(&DnsOutcomeLabel { outcome })
                .get()
        };
        assert_eq!(udp_queries, 6);
        assert_eq!((outcome("answer"), outcome("nxdomain")), (4, 2));
    });
}

#[test]
fn dropping_the_server_frees_the_port() {
    in_netns("dnsudpd", || {
        let mut running = start(&state(true));
        let own = query(9, &name("alice-web", "alice"), 1, 1, None);
        assert_eq!(
            decode(&udp(&client(ALICE_WEB), &own)).0,
            ResponseCode::NoError
        );
        drop(running.server.take());
        // Another server (dnsmasq in the bench) can bind the port at once,
        // the runtime still running.
        let s = UdpSocket::bind((GATEWAY, 53)).expect("port 53 still taken");
        drop(s);
    });
}
