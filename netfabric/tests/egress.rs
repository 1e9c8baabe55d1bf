//! Egress to the outside world in the lab (needs root, bpffs, namespaces):
//! an "outside" namespace of the test's own on the lab's underlay (an
//! address outside every zone) serves HTTP and echoes lines; a container
//! of an ordinary owner fetches through its host's masquerade (the server
//! sees the host's underlay address); unsolicited traffic from outside to
//! that container is dropped and counted; `owner set --egress deny` cuts
//! new connections and an open one at its next packet.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle, sleep},
    time::{Duration, Instant},
};

mod common;

use common::{Lab, TestNetns, free_ports, in_ns, nf, ok, require_root_and_bpffs, unique_name};
use netfabric::{
    agent::nat::{self, NatConfig},
    port::in_netns,
};

/// The outside server's address: on the underlay /24, outside every zone.
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 200);
const HTTP_PORT: u16 = 8080;
const ECHO_PORT: u16 = 8081;
const BODY: &str = "hello from outside";

/// An HTTP server (answers every request with [`BODY`]) and a line echo
/// server in namespace `ns`, recording who connected; stopped on drop.
struct OutsideServers {
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl OutsideServers {
    fn start(ns: &TestNetns) -> OutsideServers {
        let path = std::path::PathBuf::from(ns.path());
        let bind = |port| {
            in_netns(Some(&path), || TcpListener::bind((OUTSIDE, port)))
                .expect("entering the outside namespace")
                .expect("binding in the outside namespace")
        };
        let (http, echo) = (bind(HTTP_PORT), bind(ECHO_PORT));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let serve = |listener: TcpListener, http: bool| {
            listener.set_nonblocking(true).unwrap();
            let (peers, stop) = (peers.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, peer)) => {
                            peers.lock().unwrap().push(peer);
                            conn.set_nonblocking(false).unwrap();
                            let stop = stop.clone();
                            thread::spawn(move || {
                                if http {
                                    answer_http(conn)
                                } else {
                                    echo_lines(conn, &stop)
                                }
                            });
                        }
                        Err(_) => sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        let threads = vec![serve(http, true), serve(echo, false)];
        OutsideServers {
            peers,
            stop,
            threads,
        }
    }

    fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

impl Drop for OutsideServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn answer_http(mut conn: TcpStream) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
}

fn echo_lines(conn: TcpStream, stop: &AtomicBool) {
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if out.write_all(line.as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
            Err(_) => {}
        }
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
}

/// `curl` from namespace `ns` to the outside HTTP server: the body, or
/// `None` when no answer came within `secs`.
fn fetch(ns: &str, secs: u32) -> Option<String> {
    let out = in_ns(
        ns,
        &format!("curl -s --max-time {secs} http://{OUTSIDE}:{HTTP_PORT}/"),
    )
    .output()
    .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        sleep(Duration::from_millis(200));
    }
}

/// Packets counted for `direction`/`reason` on `host` (the pinned
/// counters, as `maps dump COUNTERS` reads them).
fn counted(store: &str, host: &str, direction: &str, reason: &str) -> f64 {
    let out = ok(&nf(&[
        "--store", store, "maps", "dump", "COUNTERS", "--host", host, "-o", "json",
    ]));
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["direction"] == direction && r["reason"] == reason)
        .filter_map(|r| r["packets"].as_f64())
        .sum()
}

fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map_or(out.clone(), |(_, b)| b.to_owned()))
}

/// The value of the sample `series` (name and labels exactly) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn address_of(ns: &str) -> Ipv4Addr {
    let out = Command::new("ip")
        .args(["-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let cidr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {ns}: {text}"));
    cidr.split('/').next().unwrap().parse().unwrap()
}

/// A one-host lab whose /metrics is on a port of our own, with an
/// "outside" namespace of the test's own on the lab's underlay bridge at
/// [`OUTSIDE`], and alice's container `web` in it. Torn down on drop
/// (the outside first).
struct EgressLab {
    outside: TestNetns,
    lab: Lab,
    store: String,
    metrics_addr: String,
    host_ns: String,
    h1: String,
    web: String,
    web_addr: Ipv4Addr,
}

fn egress_lab(prefix: &str) -> EgressLab {
    require_root_and_bpffs();
    let metrics_base = free_ports(1);
    let lab = Lab {
        name: unique_name(prefix),
        dir: format!("/tmp/netfabric-test-{}", unique_name(prefix)),
    };
    ok(&nf(&[
        "lab",
        "up",
        "--hosts",
        "1",
        "--name",
        &lab.name,
        "--dir",
        &lab.dir,
        "--metrics-port-base",
        &metrics_base.to_string(),
    ]));
    let metrics_addr = format!("127.0.0.1:{}", metrics_base + 1);
    let (name, dir) = (lab.name.clone(), lab.dir.clone());
    let store = format!("file://{dir}/state.json");
    let h1 = format!("{name}-h1");
    let host_ns = format!("nf-{h1}");
    let web = format!("nf-{name}-alice-web");
    let web_addr = address_of(&web);

    let outside = TestNetns::new(&format!("{}-out", unique_name(prefix)));
    let tag = std::process::id() % 10_000;
    let (a, b) = (format!("{prefix}o{tag}"), format!("{prefix}u{tag}"));
    let underlay = format!("nf-{name}-underlay");
    sh(&[
        "ip", "link", "add", &a, "netns", &outside.0, "type", "veth", "peer", "name", &b, "netns",
        &underlay,
    ]);
    sh(&[
        "ip", "-n", &underlay, "link", "set", &b, "master", "ubr0", "up",
    ]);
    sh(&[
        "ip",
        "-n",
        &outside.0,
        "addr",
        "add",
        &format!("{OUTSIDE}/24"),
        "dev",
        &a,
    ]);
    sh(&["ip", "-n", &outside.0, "link", "set", &a, "up"]);
    sh(&["ip", "-n", &outside.0, "link", "set", "lo", "up"]);
    // So that it can even try to reach the containers directly.
    sh(&[
        "ip",
        "-n",
        &outside.0,
        "route",
        "add",
        "10.1.0.0/16",
        "via",
        "172.30.0.1",
    ]);
    // The agent masquerades its containers' egress out of the uplink.
    eventually("the agent installs the egress NAT", 15, || {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &host_ns,
                "nft",
                "list",
                "table",
                "ip",
                nat::TABLE,
            ])
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("masquerade")
            })
    });
    EgressLab {
        outside,
        lab,
        store,
        metrics_addr,
        host_ns,
        h1,
        web,
        web_addr,
    }
}

#[test]
fn a_container_reaches_the_outside_through_nat_and_egress_deny_cuts_it() {
    let EgressLab {
        outside,
        lab,
        store,
        metrics_addr,
        host_ns,
        h1,
        web,
        web_addr,
    } = egress_lab("eg");
    let servers = OutsideServers::start(&outside);

    // A flushed ruleset is installed again by the agent.
    sh(&["ip", "netns", "exec", &host_ns, "nft", "flush", "ruleset"]);
    eventually("the agent installs the egress NAT again", 20, || {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &host_ns,
                "nft",
                "list",
                "table",
                "ip",
                nat::TABLE,
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    });

    // ---- a fetch through NAT ---------------------------------------------------
    let mut body = None;
    eventually("alice-web fetches from outside", 15, || {
        body = fetch(&web, 3);
        body.is_some()
    });
    assert_eq!(body.as_deref(), Some(BODY));
    let peers = servers.peers();
    assert!(!peers.is_empty(), "the server saw the request");
    for p in &peers {
        assert_eq!(
            p.ip(),
            std::net::IpAddr::V4(Ipv4Addr::new(172, 30, 0, 1)),
            "the server sees the host's underlay address, never the container's"
        );
    }
    let created = |store: &str| {
        let out = ok(&nf(&[
            "--store",
            store,
            "maps",
            "dump",
            "CONNECTIONS",
            "--host",
            &h1,
            "-o",
            "json",
        ]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let conns = created(&store);
    let tracked = conns.as_array().unwrap().iter().any(|c| {
        c["src"] == web_addr.to_string()
            && c["dst"] == OUTSIDE.to_string()
            && c["dst_port"] == HTTP_PORT
            && c["protocol"] == "tcp"
            && c["src_owner"] == "alice"
    });
    assert!(tracked, "the fetch is tracked: {conns:#}");

    // /metrics: the table's occupancy and capacity like every map, and the
    // connections created.
    let mut scrape = String::new();
    eventually("/metrics counts the connection", 15, || {
        scrape = http_get(&metrics_addr, "/metrics").unwrap_or_default();
        sample(&scrape, "netfabric_map_entries{map=\"CONNECTIONS\"}").is_some_and(|n| n >= 1.0)
    });
    assert_eq!(
        sample(&scrape, "netfabric_map_capacity{map=\"CONNECTIONS\"}"),
        Some(262_144.0)
    );
    assert!(
        sample(&scrape, "netfabric_connections_created_total").is_some_and(|n| n >= 1.0),
        "{scrape}"
    );

    // ---- unsolicited inbound from outside: dropped and counted -------------------
    let denied_before = counted(&store, &h1, "from_uplink", "policy_denied");
    let unsolicited = in_ns(&outside.0, &format!("nc -z -w 2 {web_addr} 80"))
        .output()
        .unwrap();
    assert!(
        !unsolicited.status.success(),
        "outside must not reach alice-web unsolicited"
    );
    let denied_after = counted(&store, &h1, "from_uplink", "policy_denied");
    assert!(
        denied_after > denied_before,
        "the unsolicited SYN is counted ({denied_before} → {denied_after})"
    );

    // ---- an open connection, then egress denied ----------------------------------
    let mut nc = Command::new("ip")
        .args([
            "netns",
            "exec",
            &web,
            "nc",
            &OUTSIDE.to_string(),
            &ECHO_PORT.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut to_nc = nc.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let from_nc = nc.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        for line in BufReader::new(from_nc).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    writeln!(to_nc, "before").unwrap();
    let echoed = rx.recv_timeout(Duration::from_secs(5));
    assert_eq!(echoed.as_deref(), Ok("before"), "the open connection works");

    let egress_denied_before = counted(&store, &h1, "from_container", "egress_denied");
    ok(&nf(&[
        "--store", &store, "owner", "set", "alice", "--egress", "deny",
    ]));
    eventually(
        "a new fetch fails once the agent applied the switch",
        15,
        || fetch(&web, 1).is_none(),
    );
    writeln!(to_nc, "after").unwrap();
    assert!(
        rx.recv_timeout(Duration::from_secs(3)).is_err(),
        "the open connection is cut at its next packet"
    );
    assert!(
        counted(&store, &h1, "from_container", "egress_denied") > egress_denied_before,
        "the refused packets are counted as egress_denied"
    );
    let _ = nc.kill();
    let _ = nc.wait();
    let _ = reader.join();

    // Allowed again: new connections work.
    ok(&nf(&[
        "--store", &store, "owner", "set", "alice", "--egress", "allow",
    ]));
    eventually("alice-web fetches again", 15, || {
        fetch(&web, 2).as_deref() == Some(BODY)
    });
    drop(servers);
    drop(lab);
}

/// The masquerade's table: installed, installed again unchanged, replaced
/// when the zones change, and removed; in a namespace of the test's own.
#[test]
fn the_nat_table_is_idempotent_replaced_whole_and_removed() {
    require_root_and_bpffs();
    let ns = TestNetns::new(&format!("{}-nat", unique_name("eg")));
    let path = std::path::PathBuf::from(ns.path());
    let config = NatConfig {
        host_subnet: "10.1.3.0/24".parse().unwrap(),
        uplink: "up0".into(),
        zones: vec!["10.1.0.0/16".parse().unwrap()],
    };
    let listed = || in_netns(Some(&path), nat::listed).unwrap().unwrap();
    assert_eq!(listed(), None, "a new namespace has no table");
    in_netns(Some(&path), || nat::install(&config))
        .unwrap()
        .unwrap();
    let once = listed().expect("installed");
    assert!(once.contains("ip saddr 10.1.3.0/24"), "{once}");
    assert!(once.contains("masquerade"), "{once}");
    in_netns(Some(&path), || nat::install(&config))
        .unwrap()
        .unwrap();
    assert_eq!(listed().as_deref(), Some(once.as_str()), "idempotent");
    let forwarding = in_netns(Some(&path), || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
    })
    .unwrap();
    assert_eq!(forwarding.trim(), "1", "forwarding is on");

    let more = NatConfig {
        zones: vec![
            "10.1.0.0/16".parse().unwrap(),
            "10.7.0.0/16".parse().unwrap(),
        ],
        ..config
    };
    in_netns(Some(&path), || nat::install(&more))
        .unwrap()
        .unwrap();
    let replaced = listed().expect("installed");
    assert!(replaced.contains("10.7.255.255") || replaced.contains("10.7.0.0/16"));
    assert_eq!(
        replaced.matches("masquerade").count(),
        1,
        "one rule, not one per install: {replaced}"
    );
    in_netns(Some(&path), nat::remove).unwrap().unwrap();
    assert_eq!(listed(), None, "removed");
    in_netns(Some(&path), nat::remove).unwrap().unwrap();
}

/// ICMP errors about a container's own connections to outside reach it
/// (docs/policy.md#connection-tracking): an outside host's "port
/// unreachable" fails a UDP exchange at once, and the host's
/// "fragmentation needed" (a narrower route to outside) teaches the
/// container the path MTU. Errors about nothing it opened stay refused.
#[test]
fn icmp_errors_about_a_containers_connections_reach_it() {
    let EgressLab {
        outside,
        lab,
        store,
        host_ns,
        h1,
        web,
        web_addr,
        ..
    } = egress_lab("ei");
    let web_path = std::path::PathBuf::from(format!("/run/netns/{web}"));

    // Nothing listens on UDP port 9 outside: its kernel answers "port
    // unreachable", which the host's NAT maps back to the container.
    let refused = in_netns(Some(&web_path), || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.connect((OUTSIDE, 9)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 16];
        (0..5).find_map(|_| {
            sock.send(b"anyone there?").ok()?;
            match sock.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(e),
                _ => None,
            }
        })
    })
    .expect("entering the container's namespace");
    assert!(
        refused.is_some(),
        "the port-unreachable error never reached the container"
    );

    // A narrower route from the host to outside: forwarding the container's
    // 1428-byte datagrams with DF set, the host answers "fragmentation
    // needed (mtu = 1300)".
    let route = ok(&Command::new("ip")
        .args(["-n", &host_ns, "-o", "route", "get", &OUTSIDE.to_string()])
        .output()
        .unwrap());
    let dev = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .expect("the route's device")
        .to_owned();
    sh(&[
        "ip",
        "-n",
        &host_ns,
        "route",
        "add",
        &format!("{OUTSIDE}/32"),
        "dev",
        &dev,
        "mtu",
        "1300",
    ]);
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &web,
            "ping",
            "-n",
            "-c",
            "2",
            "-i",
            "0.5",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1400",
            &OUTSIDE.to_string(),
        ])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    println!("ping with DF over the narrow route:\n{said}");
    assert!(
        said.contains("mtu = 1300") || said.contains("mtu=1300"),
        "the container never learnt the path MTU: {said}"
    );
    // Its kernel now sends within the path MTU: a full-size ping passes.
    let fits = Command::new("ip")
        .args([
            "netns",
            "exec",
            &web,
            "ping",
            "-n",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1272",
            &OUTSIDE.to_string(),
        ])
        .status()
        .unwrap();
    assert!(fits.success(), "a ping within the path MTU failed");

    // An error about a connection the container never opened is refused
    // and counted: sent by the host stack (the way every error about the
    // container's egress comes, after the host's NAT), quoting a made-up
    // UDP datagram of the container's.
    let denied_before = counted(&store, &h1, "to_container", "policy_denied");
    let forged = in_netns(
        Some(std::path::Path::new(&format!("/run/netns/{host_ns}"))),
        || send_icmp_error(web_addr, 40_404),
    )
    .expect("entering the host's namespace");
    forged.expect("sending the forged error");
    eventually("the unrelated error is refused and counted", 10, || {
        counted(&store, &h1, "to_container", "policy_denied") > denied_before
    });
    drop(outside);
    drop(lab);
}

/// Sends from this namespace a "port unreachable" to `container` quoting a
/// UDP datagram the container never sent (from `sport` to [`OUTSIDE`]:9).
fn send_icmp_error(container: Ipv4Addr, sport: u16) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    let mut quoted = vec![0u8; 28];
    quoted[0] = 0x45;
    quoted[2..4].copy_from_slice(&28u16.to_be_bytes());
    quoted[8] = 64;
    quoted[9] = 17;
    quoted[12..16].copy_from_slice(&container.octets());
    quoted[16..20].copy_from_slice(&OUTSIDE.octets());
    quoted[20..22].copy_from_slice(&sport.to_be_bytes());
    quoted[22..24].copy_from_slice(&9u16.to_be_bytes());
    let mut msg = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(&quoted);
    let sum = internet_checksum(&msg);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    let to = SockAddr::from(SocketAddr::new(container.into(), 0));
    sock.send_to(&msg, &to)?;
    Ok(())
}

/// RFC 1071.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
