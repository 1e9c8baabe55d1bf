//! The lab end to end (needs root, bpffs, namespaces): policy across hosts,
//! a group change through the store, an agent killed with -9 and restarted
//! under ping + TCP (zero loss, no reset, denied stays denied), and a clean
//! `lab down`.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::Duration,
};

mod common;

use common::{BIN, Lab, TestNetns, in_ns, nf, ok, ping, require_root_and_bpffs};

/// Ping until it succeeds (or `tries` attempts failed): the agent applies
/// store changes and new ports asynchronously (within a few hundred ms).
fn ping_eventually(ns: &str, to: &str, tries: u32) -> bool {
    (0..tries).any(|_| {
        let ok = ping(ns, to, 1);
        if !ok {
            sleep(Duration::from_millis(300));
        }
        ok
    })
}

#[test]
fn lab_container_create_delete_recreate_keeps_its_address() {
    require_root_and_bpffs();
    let (lab, _) = Lab::up("c", 2);
    let (name, dir) = (lab.name.clone(), lab.dir.clone());
    let store = format!("file://{dir}/state.json");
    let h2 = format!("{name}-h2");
    let aw = format!("nf-{name}-alice-web");
    let create = || {
        ok(&nf(&[
            "--store",
            &store,
            "container",
            "create",
            "cache",
            "--owner",
            "alice",
            "--host",
            &h2,
        ]))
        .trim()
        .to_owned()
    };
    let address = create();
    println!("cache got {address}");
    let attach = |ns: &TestNetns| {
        ok(&nf(&[
            "--store",
            &store,
            "container",
            "attach",
            "cache",
            "--netns",
            &format!("/run/netns/{}", ns.0),
            "--host-netns",
            &format!("/run/netns/nf-{h2}"),
        ]));
    };
    let container_ns = format!("nf-{name}-cache");
    {
        let ns = TestNetns::new(&container_ns);
        attach(&ns);
        assert!(
            ping_eventually(&aw, &address, 10),
            "a new container is reachable by its owner"
        );
    }
    // The namespace is gone (and its veth with it); a new one gets the same address.
    {
        let ns = TestNetns::new(&container_ns);
        attach(&ns);
        let got = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-n", &ns.0, "-4", "-o", "addr", "show", "dev", "eth0"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        assert!(
            got.contains(&format!("{address}/32")),
            "re-created namespace got {got}"
        );
        assert!(
            ping_eventually(&aw, &address, 10),
            "re-attached container is reachable"
        );
        // Deleted: its address stops answering (the endpoint is gone from the maps).
        ok(&nf(&["--store", &store, "container", "delete", "cache"]));
        sleep(Duration::from_millis(600));
        assert!(
            !ping(&aw, &address, 2),
            "a deleted container must not be reachable"
        );
    }
    // Re-created: the lowest free address, which is the one it had.
    assert_eq!(create(), address, "re-created container keeps its address");

    // SIGTERM leaves the datapath running: h2's programs and maps stay
    // pinned and keep forwarding (and enforcing) without their agent.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/manifest.json")).unwrap()).unwrap();
    let h2_agent = manifest["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == h2.as_str())
        .and_then(|h| h["agent_pid"].as_u64())
        .expect("h2's agent pid");
    Command::new("kill")
        .args(["-TERM", &h2_agent.to_string()])
        .status()
        .unwrap();
    let gone = (0..50).any(|_| {
        sleep(Duration::from_millis(100));
        !Path::new(&format!("/proc/{h2_agent}")).exists()
            || std::fs::read_to_string(format!("/proc/{h2_agent}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    assert!(gone, "the agent did not stop on SIGTERM");
    assert!(
        Path::new(&format!("/sys/fs/bpf/netfabric/{h2}/ENDPOINTS")).exists(),
        "SIGTERM must leave the pinned maps"
    );
    assert!(
        ping(&aw, "10.1.2.1", 3),
        "h2 still delivers after its agent stopped"
    );
    let ad = format!("nf-{name}-alice-db");
    assert!(
        !ping(&ad, "10.1.1.2", 2),
        "h2 still denies alice -> bob without its agent"
    );
    drop(lab);
}

#[test]
fn lab_policy_group_change_restart_under_traffic_and_clean_down() {
    require_root_and_bpffs();
    let (lab, _) = Lab::up("r", 2);
    let (name, dir) = (lab.name.clone(), lab.dir.clone());
    let name = name.as_str();
    // The uplinks as `lab up` documents them: MAC, address, GRO on and the
    // kernel's default TX checksum offload on both ends of each veth.
    for (n, h) in [(1, "h1"), (2, "h2")] {
        let ns = format!("nf-{name}-{h}");
        let link = ok(&in_ns(&ns, "ip -o link show up0; ip -o -4 addr show up0")
            .output()
            .unwrap());
        assert!(link.contains(&format!("02:fe:00:00:00:0{n}")), "{link}");
        assert!(link.contains(&format!("172.30.0.{n}/24")), "{link}");
        assert!(link.contains(",UP") || link.contains("<UP"), "{link}");
        for (ns, dev) in [
            (ns.clone(), "up0".to_owned()),
            (format!("nf-{name}-underlay"), format!("u{n}")),
        ] {
            let k = ok(&in_ns(&ns, &format!("ethtool -k {dev}")).output().unwrap());
            assert!(k.contains("tx-checksumming: on"), "{ns} {dev}: {k}");
            assert!(k.contains("generic-receive-offload: on"), "{ns} {dev}: {k}");
        }
    }
    let store = format!("file://{dir}/state.json");
    // alice-web on h1 (10.1.1.1), alice-db on h2 (10.1.2.1), bob-web on h1 (10.1.1.2).
    let aw = format!("nf-{name}-alice-web");
    let ad = format!("nf-{name}-alice-db");
    assert!(ping(&aw, "10.1.2.1", 3), "same owner across hosts");
    assert!(!ping(&aw, "10.1.1.2", 2), "alice -> bob must be denied");
    // On a veth uplink the agents attach only the uplink's TC program (no
    // XDP prefilter, which would take TSO away from the underlay end), so
    // TSO stays on at both ends.
    for (n, h) in [(1, "h1"), (2, "h2")] {
        let links = format!("/sys/fs/bpf/netfabric/{name}-{h}/links");
        assert!(
            Path::new(&format!("{links}/uplink-tc")).exists(),
            "{links}/uplink-tc"
        );
        assert!(
            !Path::new(&format!("{links}/uplink")).exists(),
            "{links}/uplink: no XDP on a veth uplink"
        );
        for (ns, dev) in [
            (format!("nf-{name}-{h}"), "up0".to_owned()),
            (format!("nf-{name}-underlay"), format!("u{n}")),
        ] {
            let k = ok(&in_ns(&ns, &format!("ethtool -k {dev}")).output().unwrap());
            assert!(
                k.contains("tcp-segmentation-offload: on"),
                "{ns} {dev}: {k}"
            );
        }
    }

    // A group change takes effect.
    ok(&nf(&[
        "--store",
        &store,
        "group",
        "add-member",
        "team",
        "bob",
    ]));
    sleep(Duration::from_millis(600));
    assert!(ping(&aw, "10.1.1.2", 2), "alice and bob share team");
    ok(&nf(&[
        "--store",
        &store,
        "group",
        "remove-member",
        "team",
        "bob",
    ]));
    sleep(Duration::from_millis(600));
    assert!(!ping(&aw, "10.1.1.2", 2), "denied again");

    // kill -9 the agent of h1 and restart it under traffic.
    let listener: Child = in_ns(&ad, "timeout 30 nc -l 9000 | wc -c")
        .stdout(Stdio::piped())
        .spawn()
        .expect("nc -l");
    sleep(Duration::from_millis(300));
    let stream: Child = in_ns(
        &aw,
        "for i in $(seq 1 40); do head -c 20000 /dev/zero; sleep 0.1; done | timeout 30 nc -q 1 10.1.2.1 9000",
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("nc");
    let pinger = in_ns(&aw, "ping -i 0.01 -c 400 10.1.2.1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("ping");
    let denied = in_ns(&aw, "ping -i 0.05 -c 60 -W 1 10.1.1.2")
        .stdout(Stdio::piped())
        .spawn()
        .expect("denied ping");
    sleep(Duration::from_millis(1000));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/manifest.json")).unwrap()).unwrap();
    let pid = manifest["hosts"][0]["agent_pid"].as_u64().unwrap();
    let host = manifest["hosts"][0]["name"].as_str().unwrap().to_owned();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    sleep(Duration::from_millis(300));
    let log = std::fs::File::create(format!("{dir}/agent-{host}.restart.log")).unwrap();
    let mut restarted = Command::new(BIN)
        .args(["agent", "--host", &host, "--store", &store])
        .args(["--netns", &format!("/run/netns/nf-{host}")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("restarting the agent");
    let ping_out = pinger.wait_with_output().unwrap();
    let stream_out = stream.wait_with_output().unwrap();
    let received = listener.wait_with_output().unwrap();
    let denied_out = denied.wait_with_output().unwrap();
    let _ = Command::new("kill")
        .arg(restarted.id().to_string())
        .status();
    let _ = restarted.wait();
    let text = String::from_utf8_lossy(&ping_out.stdout);
    assert!(
        text.contains(" 0% packet loss"),
        "pings lost during the restart: {text}"
    );
    assert!(
        stream_out.status.success(),
        "the TCP stream failed: {stream_out:?}"
    );
    let bytes: u64 = String::from_utf8_lossy(&received.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert_eq!(bytes, 40 * 20000, "the TCP stream was cut");
    let denied_text = String::from_utf8_lossy(&denied_out.stdout);
    assert!(
        denied_text.contains(" 0 received"),
        "a denied pair got through: {denied_text}"
    );

    // down leaves nothing behind.
    drop(lab);
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        !netns.contains(&format!("nf-{name}")),
        "namespaces left: {netns}"
    );
    assert!(
        !Path::new(&format!("/sys/fs/bpf/netfabric/{name}-h1")).exists(),
        "pins left"
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    for h in manifest["hosts"].as_array().unwrap() {
        let p = h["agent_pid"].as_u64().unwrap();
        let alive = std::fs::read(format!("/proc/{p}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("agent"))
            .unwrap_or(false);
        assert!(!alive, "agent {p} left running");
    }
}
