//! The agent's DNS server in the lab (needs root, bpffs, namespaces, `dig`
//! and `dnsmasq`): names from containers of several owners follow the
//! policy (own names, other owners hidden, revealed by a group and hidden
//! again when it is revoked, system), PTR, AAAA NODATA, the search path,
//! forwarding to a fake upstream (dnsmasq in the lab's underlay namespace)
//! with TCP for a large answer, refusal without upstreams, refusal from the
//! underlay, and malformed queries that get an error or silence but never
//! stop the server.

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

mod common;

use common::{BIN, Lab, in_ns, nf, ok, require_root_and_bpffs};
use netfabric::lab::{LabContainer, Manifest};

const DOMAIN: &str = "netfabric.internal";

/// `dig` from namespace `ns` against the host's resolver; its whole output.
fn dig(ns: &str, args: &str) -> String {
    let out = in_ns(ns, &format!("dig @169.254.1.1 +time=2 +tries=1 {args}"))
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `status:` of a dig output (`NOERROR`, `NXDOMAIN`, ...), or `none`.
fn status(out: &str) -> String {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("none")
        .to_owned()
}

/// The answer section's records: (name, ttl, type, data).
fn answers(out: &str) -> Vec<(String, u32, String, String)> {
    let Some(section) = out.split(";; ANSWER SECTION:\n").nth(1) else {
        return Vec::new();
    };
    section
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.parse().ok()?,
                f.get(3)?.to_string(),
                f.get(4)?.to_string(),
            ))
        })
        .collect()
}

/// The A addresses `ns` gets for `name` (an NXDOMAIN or NODATA gives none).
fn a(ns: &str, name: &str) -> Vec<String> {
    answers(&dig(ns, &format!("{name} A")))
        .into_iter()
        .filter(|r| r.2 == "A")
        .map(|r| r.3)
        .collect()
}

/// Polls `f` until it is true (the agent applies store changes
/// asynchronously, within a few hundred ms).
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "not within {timeout:?}: {what}");
        sleep(Duration::from_millis(100));
    }
}

fn fqdn(c: &LabContainer) -> String {
    format!("{}.{}.{DOMAIN}", c.name, c.owner)
}

/// The lab's container whose name ends with `-base`.
fn container<'m>(m: &'m Manifest, base: &str) -> &'m LabContainer {
    m.containers
        .iter()
        .find(|c| c.name.ends_with(&format!("-{base}")))
        .unwrap_or_else(|| panic!("no lab container {base}"))
}

/// A process of ours, killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `/etc/netns/<ns>/` (what `ip netns exec` binds over /etc), removed on
/// drop.
struct EtcNetns(PathBuf);

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replaces the lab agent of host `h` (killed by its pid) with one started
/// here with `extra` options.
fn restart_agent(m: &Manifest, h: usize, extra: &[&str], log: &Path) -> Killed {
    let host = &m.hosts[h];
    for pid in netfabric::conventions::agent_pids(&host.name) {
        // SAFETY: a pid of the agent this test's lab started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    eventually("the lab agent stopped", Duration::from_secs(10), || {
        netfabric::conventions::agent_pids(&host.name).is_empty()
    });
    let child = Command::new(BIN)
        .args(["agent", "--host", &host.name, "--store", &m.store_url])
        .arg("--bpffs")
        .arg(&m.bpffs)
        .args(["--netns"])
        .arg(format!("/run/netns/{}", host.netns))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .expect("starting an agent");
    Killed(child)
}

#[test]
fn names_follow_the_policy_and_the_rest_is_forwarded() {
    require_root_and_bpffs();
    let (lab, _) = Lab::up("dns", 3);
    let (name, dir) = (lab.name.clone(), lab.dir.clone());
    let m = Manifest::load(Path::new(&dir)).unwrap().unwrap();
    let store = m.store_url.clone();
    // alice-web, bob-web on h1; alice-db on h2; bob-api, lb (system) on h3.
    let alice_web = container(&m, "alice-web");
    let alice_db = container(&m, "alice-db");
    let bob_web = container(&m, "bob-web");
    let bob_api = container(&m, "bob-api");
    let lb = container(&m, "lb");
    let aw = alice_web.netns.as_str();

    // Own names, on this host and another one; TTL at most 5 s; authoritative.
    eventually(
        "alice-web resolves alice-db",
        Duration::from_secs(10),
        || a(aw, &fqdn(alice_db)) == [alice_db.address.to_string()],
    );
    let out = dig(aw, &fqdn(alice_db));
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(out.contains(" aa "), "not authoritative: {out}");
    assert!(
        answers(&out).iter().all(|r| r.1 <= 5),
        "TTL over 5 s: {out}"
    );
    assert_eq!(
        a(aw, &fqdn(alice_web)),
        [alice_web.address.to_string()],
        "its own name"
    );
    // Names are case-insensitive.
    assert_eq!(
        a(aw, &fqdn(alice_db).to_uppercase()),
        [alice_db.address.to_string()]
    );
    // Another owner's containers: NXDOMAIN, on this host and others, and
    // the right container under the wrong owner too.
    for hidden in [fqdn(bob_web), fqdn(bob_api)] {
        let out = dig(aw, &hidden);
        assert_eq!(status(&out), "NXDOMAIN", "{hidden}: {out}");
    }
    let wrong_owner = format!("{}.bob.{DOMAIN}", alice_db.name);
    assert_eq!(status(&dig(aw, &wrong_owner)), "NXDOMAIN");
    assert_eq!(
        status(&dig(aw, &format!("nobody.alice.{DOMAIN}"))),
        "NXDOMAIN"
    );
    // System: everyone sees it, it sees everyone.
    assert_eq!(a(aw, &fqdn(lb)), [lb.address.to_string()]);
    assert_eq!(a(&lb.netns, &fqdn(bob_web)), [bob_web.address.to_string()]);
    assert_eq!(
        a(&lb.netns, &fqdn(alice_db)),
        [alice_db.address.to_string()]
    );
    // bob sees his own, not alice's.
    assert_eq!(
        a(&bob_web.netns, &fqdn(bob_api)),
        [bob_api.address.to_string()]
    );
    assert_eq!(status(&dig(&bob_web.netns, &fqdn(alice_web))), "NXDOMAIN");

    // AAAA: the name exists, no IPv6 address (NODATA, with the SOA).
    let out = dig(aw, &format!("{} AAAA", fqdn(alice_db)));
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(answers(&out).is_empty(), "{out}");
    assert!(out.contains("AUTHORITY SECTION"), "no SOA: {out}");
    // ... but not for a hidden one.
    assert_eq!(
        status(&dig(aw, &format!("{} AAAA", fqdn(bob_web)))),
        "NXDOMAIN"
    );

    // PTR, for visible addresses only.
    let out = dig(aw, &format!("-x {}", alice_db.address));
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(answers(&out)[0].3, format!("{}.", fqdn(alice_db)), "{out}");
    assert_eq!(
        status(&dig(aw, &format!("-x {}", bob_api.address))),
        "NXDOMAIN"
    );
    assert_eq!(
        status(&dig(aw, "-x 10.1.9.9")),
        "NXDOMAIN",
        "a vacant zone address"
    );

    // A group reveals bob's names to alice (and alice's to bob) ...
    ok(&nf(&[
        "--store",
        &store,
        "group",
        "add-member",
        "team",
        "bob",
    ]));
    eventually("the group reveals bob-web", Duration::from_secs(5), || {
        a(aw, &fqdn(bob_web)) == [bob_web.address.to_string()]
    });
    // bob asks his own host's agent, which applies the change on its own
    // schedule.
    eventually(
        "the group reveals alice-db to bob",
        Duration::from_secs(5),
        || a(&bob_api.netns, &fqdn(alice_db)) == [alice_db.address.to_string()],
    );
    let out = dig(aw, &format!("-x {}", bob_api.address));
    assert_eq!(answers(&out)[0].3, format!("{}.", fqdn(bob_api)), "{out}");
    // ... and revoking it hides them again at once.
    ok(&nf(&[
        "--store",
        &store,
        "group",
        "remove-member",
        "team",
        "bob",
    ]));
    eventually("the revoke hides bob-web", Duration::from_secs(2), || {
        status(&dig(aw, &fqdn(bob_web))) == "NXDOMAIN"
    });
    assert_eq!(status(&dig(&bob_api.netns, &fqdn(alice_db))), "NXDOMAIN");

    // TCP answers the same.
    let out = dig(aw, &format!("+tcp {}", fqdn(alice_db)));
    assert_eq!(answers(&out)[0].3, alice_db.address.to_string(), "{out}");

    // The search path of `container attach`: `<container>` among the
    // owner's own, `<container>.<owner>` across owners.
    let etc = EtcNetns(PathBuf::from(format!("/etc/netns/{aw}")));
    let attach = ok(&nf(&[
        "--store",
        &store,
        "container",
        "attach",
        &alice_web.name,
        "--netns",
        &format!("/run/netns/{aw}"),
        "--host-netns",
        &format!("/run/netns/nf-{}", alice_web.host),
    ]));
    assert!(
        attach.contains(&format!("/etc/netns/{aw}/resolv.conf")),
        "{attach}"
    );
    let etc_lb = EtcNetns(PathBuf::from(format!("/etc/netns/{}", lb.netns)));
    netfabric::port::resolv::write_resolv_conf(&etc_lb.0.join("resolv.conf"), &lb.owner, DOMAIN)
        .unwrap();
    let short = |ns: &str, name: &str| {
        let out = in_ns(ns, &format!("dig +search +short +time=2 +tries=1 {name}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    eventually(
        "the re-attached port is up",
        Duration::from_secs(10),
        || short(aw, &alice_db.name) == alice_db.address.to_string(),
    );
    let bob_web_short = bob_web.name.clone() + ".bob";
    assert_eq!(
        short(aw, &bob_web_short),
        "",
        "hidden through the search path"
    );
    assert_eq!(
        short(&lb.netns, &bob_web_short),
        bob_web.address.to_string()
    );
    assert_eq!(short(&lb.netns, &lb.name), lb.address.to_string());

    // From the underlay: no answer on the host's underlay address (no open
    // resolver there), and REFUSED at the gateway address.
    let underlay = format!("nf-{name}-underlay");
    // An address on the underlay (the fake upstream listens there too).
    let out = in_ns(&underlay, "ip addr add 172.30.0.200/24 dev ubr0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        in_ns(&underlay, "ping -c 1 -W 1 172.30.0.1")
            .output()
            .unwrap()
            .status
            .success(),
        "h1 is reachable on the underlay"
    );
    let out = in_ns(&underlay, "dig @172.30.0.1 +time=1 +tries=1 example.com")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status(&text), "none", "answered on the underlay: {text}");
    let out = in_ns(
        &underlay,
        "ip route replace 169.254.1.1/32 via 172.30.0.1 && \
         dig @169.254.1.1 +time=2 +tries=1 example.com",
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status(&text), "REFUSED", "{text}");

    // Forwarding: dnsmasq in the underlay namespace is h1's upstream, h2
    // has none.
    let hosts = PathBuf::from(&dir).join("upstream.hosts");
    let mut lines = String::from("10.200.0.1 www.upstream.test\n");
    for i in 1..=100 {
        lines += &format!("10.201.0.{i} big.upstream.test\n");
    }
    std::fs::write(&hosts, lines).unwrap();
    let _dnsmasq = Killed(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &underlay,
                "dnsmasq",
                "--keep-in-foreground",
            ])
            .args(["--no-resolv", "--no-hosts", "--bind-interfaces"])
            .args([
                "--listen-address=172.30.0.200",
                "--user=root",
                "--pid-file=",
            ])
            .arg(format!("--addn-hosts={}", hosts.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq"),
    );
    let metrics_addr = format!("127.0.0.1:{}", common::free_ports(0));
    let _h1 = restart_agent(
        &m,
        0,
        &[
            "--dns-upstream",
            "172.30.0.200",
            "--metrics-addr",
            &metrics_addr,
        ],
        &PathBuf::from(&dir).join("dns-agent-h1.log"),
    );
    let _h2 = restart_agent(
        &m,
        1,
        &["--dns-upstream", "none", "--metrics-addr", ""],
        &PathBuf::from(&dir).join("dns-agent-h2.log"),
    );
    eventually("forwarded to dnsmasq", Duration::from_secs(10), || {
        a(aw, "www.upstream.test") == ["10.200.0.1"]
    });
    let out = dig(aw, "www.upstream.test");
    assert!(
        !out.contains(" aa "),
        "a forwarded answer is not ours: {out}"
    );
    // Our names are still ours after the restart.
    assert_eq!(a(aw, &fqdn(alice_db)), [alice_db.address.to_string()]);
    // 100 addresses do not fit in a UDP answer: truncated over UDP, whole
    // over TCP.
    let out = dig(aw, "+noedns +ignore big.upstream.test");
    assert!(out.contains(" tc"), "not truncated over UDP: {out}");
    let out = dig(aw, "+tcp big.upstream.test");
    assert_eq!(answers(&out).len(), 100, "{out}");
    // No upstream: refused (alice-db is on h2), our names still answered.
    let ad = alice_db.netns.as_str();
    eventually("h2's agent serves again", Duration::from_secs(10), || {
        a(ad, &fqdn(alice_web)) == [alice_web.address.to_string()]
    });
    assert_eq!(status(&dig(ad, "www.upstream.test")), "REFUSED");

    // h1's /metrics counts its queries by transport and its answers by
    // outcome.
    for _ in 0..3 {
        dig(aw, &fqdn(bob_web));
    }
    let scrape = metrics(&metrics_addr);
    let value = |series: &str| -> u64 {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{scrape}"))
    };
    assert!(value(r#"netfabric_dns_queries_total{protocol="udp"} "#) >= 6);
    assert!(value(r#"netfabric_dns_queries_total{protocol="tcp"} "#) >= 1);
    assert!(value(r#"netfabric_dns_responses_total{outcome="answer"} "#) >= 1);
    assert!(value(r#"netfabric_dns_responses_total{outcome="forwarded"} "#) >= 2);
    assert!(value(r#"netfabric_dns_responses_total{outcome="nxdomain"} "#) >= 3);
    assert_eq!(
        value(r#"netfabric_dns_responses_total{outcome="upstream_failed"} "#),
        0
    );

    // `status` shows the DNS server of each agent.
    let out = ok(&nf(&["--store", &store, "status"]));
    assert!(
        out.contains(
            "dns:    169.254.1.1:53 udp+tcp, domain netfabric.internal, upstream 172.30.0.200:53"
        ),
        "{out}"
    );
    assert!(out.contains("upstream none"), "{out}");
    drop(etc);
}

/// The body of `GET /metrics` at `addr`.
fn metrics(addr: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("connecting to /metrics");
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// A raw DNS query: id, flags (RD), the question counts, then `rest`.
fn raw(id: u16, qdcount: u16, rest: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00]);
    m.extend_from_slice(&qdcount.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(rest);
    m
}

/// The wire form of `name` (no compression) + type + class.
fn question(name: &str, qtype: u16, class: u16) -> Vec<u8> {
    let mut q = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&class.to_be_bytes());
    q
}

/// Sends `msg` from inside `netns` and returns the reply's rcode (`None`:
/// silence within a second).
fn ask(netns: &str, msg: &[u8]) -> Option<u8> {
    let path = format!("/run/netns/{netns}");
    let msg = msg.to_vec();
    std::thread::spawn(move || {
        netfabric::port::netns::enter(Path::new(&path)).unwrap();
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s.send_to(&msg, SocketAddr::from((Ipv4Addr::new(169, 254, 1, 1), 53)))
            .unwrap();
        let mut buf = [0u8; 65535];
        let n = s.recv(&mut buf).ok()?;
        assert!(n >= 4, "a reply shorter than a header: {:?}", &buf[..n]);
        Some(buf[3] & 0x0f)
    })
    .join()
    .unwrap()
}

#[test]
fn malformed_queries_get_an_error_or_silence_never_a_crash() {
    require_root_and_bpffs();
    let (lab, _) = Lab::up("dnsbad", 1);
    let dir = lab.dir.clone();
    let m = Manifest::load(Path::new(&dir)).unwrap().unwrap();
    let web = container(&m, "alice-web");
    let db = container(&m, "alice-db");
    let ns = web.netns.as_str();
    let good = raw(7, 1, &question(&fqdn(db), 1, 1));
    eventually("the server answers", Duration::from_secs(10), || {
        ask(ns, &good) == Some(0)
    });

    const FORMERR: u8 = 1;
    const SERVFAIL: u8 = 2;
    const REFUSED: u8 = 5;
    let mut loop_ = raw(9, 1, &[]);
    // A name that is one compression pointer to itself (offset 12).
    loop_.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let mut pointer_forward = raw(10, 1, &[]);
    pointer_forward.extend_from_slice(&[0xc0, 200, 0, 1, 0, 1]);
    let mut many = Vec::new();
    for i in 0..40 {
        many.extend(question(&format!("q{i}.{DOMAIN}"), 1, 1));
    }
    let mut oversized = good.clone();
    oversized.extend(std::iter::repeat_n(0xab, 4000));
    /// What is sent, and the replies allowed (`None`: silence).
    type Case = (&'static str, Vec<u8>, &'static [Option<u8>]);
    let cases: Vec<Case> = vec![
        ("empty", Vec::new(), &[None]),
        ("shorter than a header", vec![0, 1, 1], &[None]),
        (
            "a header announcing a question that is not there",
            raw(2, 1, &[]),
            &[Some(FORMERR)],
        ),
        (
            "a question cut in its name",
            raw(3, 1, &question(&fqdn(db), 1, 1)[..6]),
            &[Some(FORMERR)],
        ),
        (
            "a question cut before its class",
            raw(4, 1, &question(&fqdn(db), 1, 1)[..fqdn(db).len() + 4]),
            &[Some(FORMERR)],
        ),
        ("a compression loop", loop_, &[Some(FORMERR)]),
        (
            "a compression pointer past the end",
            pointer_forward,
            &[Some(FORMERR)],
        ),
        (
            "an unknown class",
            raw(5, 1, &question(&fqdn(db), 1, 99)),
            &[Some(REFUSED)],
        ),
        (
            "class CHAOS",
            raw(6, 1, &question("version.bind", 16, 3)),
            &[Some(REFUSED)],
        ),
        // FORMERR, or SERVFAIL when echoing 40 questions does not fit.
        (
            "40 questions",
            raw(8, 40, &many),
            &[Some(FORMERR), Some(SERVFAIL)],
        ),
        (
            "4 KB of garbage after a query",
            oversized,
            &[Some(FORMERR), Some(0)],
        ),
        (
            "an over-long label",
            raw(11, 1, &{
                let mut q = vec![63];
                q.extend(std::iter::repeat_n(b'a', 63));
                q.extend([64]);
                q.extend(std::iter::repeat_n(b'b', 64));
                q.extend([0, 0, 1, 0, 1]);
                q
            }),
            &[Some(FORMERR)],
        ),
        (
            "a response, not a query",
            {
                let mut r = good.clone();
                r[2] |= 0x80;
                r
            },
            &[None],
        ),
    ];
    for (what, msg, allowed) in cases {
        let got = ask(ns, &msg);
        assert!(
            allowed.contains(&got),
            "{what}: got rcode {got:?}, expected one of {allowed:?}"
        );
        // Still serving.
        assert_eq!(ask(ns, &good), Some(0), "after {what}: no answer");
    }
    // A TCP connection that sends a length and then nothing, and one cut
    // mid-message, do not block others.
    let path = format!("/run/netns/{ns}");
    let idle = std::thread::spawn(move || {
        use std::io::Write as _;
        netfabric::port::netns::enter(Path::new(&path)).unwrap();
        let mut idle = std::net::TcpStream::connect("169.254.1.1:53").unwrap();
        idle.write_all(&[0x10, 0x00]).unwrap();
        let mut cut = std::net::TcpStream::connect("169.254.1.1:53").unwrap();
        cut.write_all(&[0x00, 0x40, 0, 1, 2]).unwrap();
        drop(cut);
        idle
    })
    .join()
    .unwrap();
    assert_eq!(ask(ns, &good), Some(0), "after stalled TCP connections");
    let out = in_ns(ns, &format!("dig @169.254.1.1 +tcp +short {}", fqdn(db)))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        db.address.to_string()
    );
    drop(idle);
}
