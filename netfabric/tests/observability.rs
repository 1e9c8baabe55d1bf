//! Observability end to end (needs root, bpffs, namespaces, and the Debian
//! `prometheus` package for `promtool` and the server): in a two-host lab,
//! known denied and allowed traffic must show up exactly in `/metrics`, in
//! a real Prometheus scraping the agents, in `maps dump`, and in `monitor`
//! (how soon is printed, not asserted: timing belongs in the bench, and a
//! loaded 2-core machine delays a process by seconds).

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread::sleep,
    time::{Duration, Instant},
};

use netfabric::observe::metrics::AgentMetrics;
use serde_json::Value;

mod common;

use common::{BIN, Lab, free_ports, in_ns, nf, ok, require_root_and_bpffs, unique_name};

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("JSON output")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `GET path` over HTTP/1.0 on loopback; the body.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(std::io::Error::other(format!("{path}: {head}")));
    }
    Ok(body.to_owned())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of one sample of a Prometheus text scrape.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

fn promtool_accepts(text: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; `cargo xtask setup` installs it)");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused the scrape:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn agent_metrics_without_a_datapath_pass_promtool() {
    if !have("promtool") {
        panic!("promtool is missing: run `cargo xtask setup` (Debian package prometheus)");
    }
    let m = AgentMetrics::default();
    m.reconciles.inc();
    m.reconcile_duration.observe(0.002);
    m.set_map("ENDPOINTS", 5, 1 << 20);
    m.map_full("GROUP_PAIRS");
    m.set_attached("from_uplink", "up0", true);
    let text = netfabric::observe::metrics::encode(&m.registry(None, None));
    assert!(
        text.contains("netfabric_map_full_total{map=\"GROUP_PAIRS\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("netfabric_reconcile_duration_seconds_count 1"),
        "{text}"
    );
    promtool_accepts(&text);
}

/// `netfabric monitor --output json` for one drop `reason` on `host`, once
/// it has said it is monitoring: the process (killed on drop) and its
/// stdout lines.
fn monitor_json(store: &str, host: &str, reason: &str) -> (Killed, mpsc::Receiver<String>) {
    let mut monitor = Killed(
        Command::new(BIN)
            .args(["--store", store, "monitor", "--host", host])
            .args(["--reason", reason, "--output", "json"])
            .args(["--count", "1", "--duration", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("netfabric monitor"),
    );
    let mut started = BufReader::new(monitor.0.stderr.take().unwrap());
    let mut line = String::new();
    started.read_line(&mut line).unwrap();
    assert!(line.contains("monitoring drops"), "monitor said: {line}");
    let (tx, rx) = mpsc::channel();
    let stdout = monitor.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (monitor, rx)
}

/// `lab up` with two hosts whose agents serve metrics on `base + 1` and
/// `base + 2`: the lab (down on drop), its directory and `base`.
fn two_hosts_with_metrics(name: &str) -> (Lab, String, u16) {
    let dir = format!("/tmp/netfabric-test-{name}");
    let base = free_ports(2);
    let lab = Lab {
        name: name.to_owned(),
        dir: dir.clone(),
    };
    ok(&nf(&[
        "lab",
        "up",
        "--hosts",
        "2",
        "--name",
        name,
        "--dir",
        &dir,
        "--metrics-port-base",
        &base.to_string(),
    ]));
    (lab, dir, base)
}

/// Prometheus' instant query API: every series `query` returns, or why the
/// query failed (Prometheus' own error: a typo in a dashboard shows here).
fn prom_series(addr: &str, query: &str) -> Result<Vec<Value>, String> {
    let body = http_get(addr, &format!("/api/v1/query?query={}", urlencode(query)))
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    v["data"]["result"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("no result in {body}"))
}

/// Every PromQL expression of a Grafana dashboard (panels nested in rows
/// included), with the panel's title.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Grafana's variables as Grafana would expand them here: every agent
/// (`$instance` = All) and a rate window of a few 1 s scrapes.
fn expand_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("${instance}", ".*")
        .replace("$instance", ".*")
}

/// Prometheus' instant query API: the single value of `query`, if any.
fn prom_query(addr: &str, query: &str) -> Option<f64> {
    let body = http_get(addr, &format!("/api/v1/query?query={}", urlencode(query))).ok()?;
    let v: Value = serde_json::from_str(&body).ok()?;
    let r = v["data"]["result"].as_array()?;
    r.first()?["value"][1].as_str()?.parse().ok()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(200));
    }
}

#[test]
fn lab_metrics_prometheus_maps_dump_and_monitor_agree_with_known_traffic() {
    require_root_and_bpffs();
    assert!(
        have("promtool") && have("prometheus"),
        "the Debian package prometheus is missing: run `cargo xtask setup`"
    );
    let name = unique_name("o");
    let name = name.as_str();
    let (lab, dir, base) = two_hosts_with_metrics(name);
    let store = format!("file://{dir}/state.json");
    let (h1, h2) = (format!("{name}-h1"), format!("{name}-h2"));
    let (m1, m2) = (
        format!("127.0.0.1:{}", base + 1),
        format!("127.0.0.1:{}", base + 2),
    );
    // alice-web (10.1.1.1), bob-web (10.1.1.2), bob-api, lb on h1; alice-db (10.1.2.1) on h2.
    let aw = format!("nf-{name}-alice-web");

    // ---- /metrics passes promtool ------------------------------------------
    let scrape = wait_for("the agent's /metrics", Duration::from_secs(10), || {
        http_get(&m1, "/metrics").ok()
    });
    promtool_accepts(&scrape);
    for needle in [
        "netfabric_packets_total{direction=\"from_container\",verdict=\"dropped\",reason=\"policy_denied\"}",
        "netfabric_map_entries{map=\"ENDPOINTS\"} 5",
        "netfabric_map_capacity{map=\"ENDPOINTS\"} 1048576",
        "netfabric_store_up 1",
        "netfabric_program_attached{program=\"from_uplink\",interface=\"up0\"} 1",
        "netfabric_monitor_events_lost_total",
        "netfabric_reconcile_errors_total",
        "netfabric_reconcile_duration_seconds_bucket",
    ] {
        assert!(scrape.contains(needle), "{needle} missing from\n{scrape}");
    }

    // ---- a real Prometheus scraping both agents ------------------------------
    let prom_dir = tempfile::tempdir().unwrap();
    let prom_port = free_ports(0);
    let prom_addr = format!("127.0.0.1:{prom_port}");
    std::fs::write(
        prom_dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: netfabric\n    static_configs:\n      - targets: ['{m1}', '{m2}']\n"
        ),
    )
    .unwrap();
    let prom_log = std::fs::File::create(prom_dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                prom_dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdout(prom_log.try_clone().unwrap())
            .stderr(prom_log)
            .spawn()
            .expect("starting prometheus"),
    );
    let denied_q = format!(
        "netfabric_packets_total{{instance=\"{m1}\",direction=\"from_container\",reason=\"policy_denied\"}}"
    );
    let remote_q = format!(
        "netfabric_packets_total{{instance=\"{m1}\",direction=\"from_container\",verdict=\"forwarded\",reason=\"remote\"}}"
    );
    let up_q = "sum(up{job=\"netfabric\"})";
    wait_for(
        "Prometheus scraping both agents",
        Duration::from_secs(30),
        || (prom_query(&prom_addr, up_q)? == 2.0).then_some(()),
    );
    let denied_before = wait_for(
        "a first policy_denied sample",
        Duration::from_secs(10),
        || prom_query(&prom_addr, &denied_q),
    );
    let remote_before = prom_query(&prom_addr, &remote_q).expect("forwarded remote series");

    // ---- monitor: a denied ping shows as its drop event -----------------------
    let (monitor, rx) = monitor_json(&store, &h1, "policy_denied");
    let ping = in_ns(&aw, "ping -c 1 -W 1 10.1.1.2").spawn().unwrap();
    let sent = Instant::now();
    let event = rx
        .recv_timeout(Duration::from_secs(15))
        .unwrap_or_else(|_| panic!("no drop event within 15 s of the denied ping"));
    eprintln!("monitor showed the denied ping after {:?}", sent.elapsed());
    let one = ping.wait_with_output().unwrap();
    assert!(!one.status.success(), "alice -> bob must be denied");
    let e: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(e["event"], "drop", "{e}");
    assert_eq!(e["reason"], "policy_denied", "{e}");
    assert_eq!(e["direction"], "from_container", "{e}");
    assert_eq!(e["host"], h1.as_str(), "{e}");
    assert_eq!(e["src"]["container"], format!("{name}-alice-web"), "{e}");
    assert_eq!(e["src"]["owner"], "alice", "{e}");
    assert_eq!(e["src"]["ip"], "10.1.1.1", "{e}");
    assert_eq!(e["dst"]["container"], format!("{name}-bob-web"), "{e}");
    assert_eq!(e["dst"]["owner"], "bob", "{e}");
    drop(monitor);

    // ---- exactly N more denied pings, M allowed ones ----------------------------
    const DENIED: u32 = 5;
    const ALLOWED: u32 = 3;
    let denied = in_ns(&aw, &format!("ping -c {DENIED} -i 0.2 -W 1 10.1.1.2"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&denied.stdout).contains(" 0 received"));
    let allowed = in_ns(&aw, &format!("ping -c {ALLOWED} -i 0.2 10.1.2.1"))
        .output()
        .unwrap();
    assert!(allowed.status.success(), "alice -> alice must pass");
    let want_denied = denied_before + f64::from(DENIED + 1);
    let want_remote = remote_before + f64::from(ALLOWED);
    let got = wait_for(
        "Prometheus to see the new counters",
        Duration::from_secs(15),
        || {
            let d = prom_query(&prom_addr, &denied_q)?;
            let r = prom_query(&prom_addr, &remote_q)?;
            (d >= want_denied && r >= want_remote).then_some((d, r))
        },
    );
    assert_eq!(got.0, want_denied, "policy_denied increase in Prometheus");
    assert_eq!(
        got.1, want_remote,
        "forwarded remote increase in Prometheus"
    );
    // The same numbers straight from /metrics and from the pinned map.
    let scrape = http_get(&m1, "/metrics").unwrap();
    assert_eq!(
        sample(
            &scrape,
            "netfabric_packets_total{direction=\"from_container\",verdict=\"dropped\",reason=\"policy_denied\"}"
        ),
        Some(want_denied)
    );
    let counters = json(&nf(&[
        "--store", &store, "maps", "dump", "COUNTERS", "--host", &h1, "-o", "json",
    ]));
    let denied_row = counters
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["direction"] == "from_container" && r["reason"] == "policy_denied")
        .expect("a policy_denied row");
    assert_eq!(denied_row["packets"].as_f64(), Some(want_denied));
    assert_eq!(
        prom_query(
            &prom_addr,
            &format!("netfabric_store_up{{instance=\"{m2}\"}}")
        ),
        Some(1.0)
    );

    // ---- the Grafana dashboard: every panel's query returns series ----------------
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/netfabric.json"),
        )
        .expect("dashboards/netfabric.json"),
    )
    .expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 10, "only {} panel queries", queries.len());
    for (title, expr) in &queries {
        let query = expand_grafana_variables(expr);
        assert!(
            !query.contains('$'),
            "unexpanded variable in {title:?}: {query}"
        );
        let series = prom_series(&prom_addr, &query)
            .unwrap_or_else(|e| panic!("panel {title:?}: {query}: {e}"));
        assert!(
            !series.is_empty(),
            "panel {title:?} returned no series: {query}"
        );
    }
    // The `instance` variable lists both agents.
    let instances = prom_series(&prom_addr, "group by (instance) (netfabric_store_up)").unwrap();
    assert_eq!(
        instances.len(),
        2,
        "instance variable values: {instances:?}"
    );
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["name"] == "instance" {
            assert_eq!(v["query"], "label_values(netfabric_store_up, instance)");
        }
    }

    // ---- maps dump round-trips what the agent wrote ------------------------------
    let containers = json(&nf(&["--store", &store, "container", "list", "-o", "json"]));
    let owners = json(&nf(&["--store", &store, "owner", "list", "-o", "json"]));
    let hosts = json(&nf(&["--store", &store, "host", "list", "-o", "json"]));
    let owner_id = |o: &str| {
        owners
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == o)
            .and_then(|x| x["id"].as_u64())
            .unwrap()
    };
    let want: BTreeSet<(String, String, String, u64)> = containers
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let owner = c["owner"].as_str().unwrap().to_owned();
            (
                c["address"].as_str().unwrap().to_owned(),
                c["name"].as_str().unwrap().to_owned(),
                owner.clone(),
                owner_id(&owner),
            )
        })
        .collect();
    for h in [&h1, &h2] {
        let endpoints = json(&nf(&[
            "--store",
            &store,
            "maps",
            "dump",
            "ENDPOINTS",
            "--host",
            h,
            "-o",
            "json",
        ]));
        let got: BTreeSet<(String, String, String, u64)> = endpoints
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["address"].as_str().unwrap().to_owned(),
                    e["container"].as_str().unwrap_or("?").to_owned(),
                    e["owner"].as_str().unwrap_or("?").to_owned(),
                    e["owner_id"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "ENDPOINTS of {h}");
        let hops = json(&nf(&[
            "--store",
            &store,
            "maps",
            "dump",
            "NEXT_HOPS",
            "--host",
            h,
            "-o",
            "json",
        ]));
        let got: BTreeSet<(String, String, String)> = hops
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["host"].as_str().unwrap_or("?").to_owned(),
                    x["underlay_ip"].as_str().unwrap().to_owned(),
                    x["mac"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let want_hops: BTreeSet<(String, String, String)> = hosts
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["name"].as_str().unwrap().to_owned(),
                    x["underlay_ip"].as_str().unwrap().to_owned(),
                    x["underlay_mac"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, want_hops, "NEXT_HOPS of {h}");
        let ports = json(&nf(&[
            "--store",
            &store,
            "maps",
            "dump",
            "LOCAL_PORTS",
            "--host",
            h,
            "-o",
            "json",
        ]));
        let got: BTreeSet<String> = ports
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["container"].as_str().unwrap_or("?").to_owned())
            .collect();
        let want_ports: BTreeSet<String> = containers
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["host"] == h.as_str())
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, want_ports, "LOCAL_PORTS of {h}");
    }
    // A group change appears as a decoded pair.
    ok(&nf(&[
        "--store",
        &store,
        "group",
        "add-member",
        "team",
        "bob",
    ]));
    let pairs = wait_for("the alice/bob group pair", Duration::from_secs(5), || {
        let v = json(&nf(&[
            "--store",
            &store,
            "maps",
            "dump",
            "GROUP_PAIRS",
            "--host",
            &h2,
            "-o",
            "json",
        ]));
        (!v.as_array()?.is_empty()).then_some(v)
    });
    assert_eq!(pairs[0]["low_owner"], "alice", "{pairs}");
    assert_eq!(pairs[0]["high_owner"], "bob", "{pairs}");
    assert_eq!(pairs[0]["shared_groups"], 1, "{pairs}");
    assert_eq!(pairs[0]["groups"], serde_json::json!(["team"]), "{pairs}");
    // And as the two owners' group lists, decoded to the store's names.
    let lists = wait_for("bob's group list", Duration::from_secs(5), || {
        let v = json(&nf(&[
            "--store",
            &store,
            "maps",
            "dump",
            "OWNER_GROUPS",
            "--host",
            &h2,
            "-o",
            "json",
        ]));
        v.as_array()?
            .iter()
            .any(|l| l["owner"] == "bob")
            .then_some(v)
    });
    for owner in ["alice", "bob"] {
        let list = lists
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["owner"] == owner)
            .unwrap_or_else(|| panic!("{owner} listed: {lists}"));
        let groups = list["groups"].as_array().unwrap();
        assert!(groups.contains(&serde_json::json!("team")), "{list}");
        assert_eq!(
            groups.len(),
            list["group_keys"].as_array().unwrap().len(),
            "{list}"
        );
        assert!(groups.iter().all(Value::is_string), "{list}");
    }

    // ---- maps list and status ------------------------------------------------------
    let list = json(&nf(&["maps", "list", "--host", &h1, "-o", "json"]));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, netfabric_common::ALL_MAPS.to_vec());
    let endpoints = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "ENDPOINTS")
        .unwrap();
    assert_eq!(endpoints["entries"], want.len());
    assert_eq!(endpoints["capacity"], 1 << 20);
    let status = ok(&nf(&["--store", &store, "status", "--host", &h1]));
    for needle in [
        "from_uplink",
        "from_container",
        "to_container",
        "policy_denied",
        "reachable",
        "running",
    ] {
        assert!(
            status.contains(needle),
            "{needle} missing from status:\n{status}"
        );
    }
    drop(lab);
    assert!(!Path::new(&format!("/sys/fs/bpf/netfabric/{h1}")).exists());
}

/// `monitor` blames the sender of a spoofed frame, not the party whose
/// address it forged: the drop names the port the frame came in on (and
/// the container behind it), and the forged address without its owner.
#[test]
fn monitor_names_the_sending_port_of_a_spoofed_frame() {
    require_root_and_bpffs();
    let name = unique_name("m");
    let name = name.as_str();
    let (lab, dir, _) = two_hosts_with_metrics(name);
    let store = format!("file://{dir}/state.json");
    let h1 = format!("{name}-h1");
    // alice-web (10.1.1.1, port nfc1) forges bob-web's address (10.1.1.2).
    let aw = format!("nf-{name}-alice-web");
    assert!(
        common::ping(&aw, "10.1.2.1", 1),
        "alice-web -> alice-db must pass (and resolve the gateway)"
    );
    ok(&in_ns(
        &aw,
        "sysctl -q -w net.ipv4.conf.eth0.arp_announce=2 && ip addr add 10.1.1.2/32 dev eth0",
    )
    .output()
    .unwrap());

    let (monitor, rx) = monitor_json(&store, &h1, "spoofed_source_ip");
    let spoofed = in_ns(&aw, "ping -c 1 -W 1 -I 10.1.1.2 10.1.2.1")
        .output()
        .unwrap();
    assert!(
        !spoofed.status.success(),
        "a ping from a forged source must be dropped"
    );
    let event = rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("no spoofed_source_ip drop event"));
    let e: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(e["reason"], "spoofed_source_ip", "{e}");
    assert_eq!(e["direction"], "from_container", "{e}");
    assert_eq!(e["src"]["ip"], "10.1.1.2", "{e}");
    assert_eq!(e["src"]["container"], Value::Null, "{e}");
    assert_eq!(e["src"]["owner"], Value::Null, "{e}");
    assert_eq!(e["src_unverified"], true, "{e}");
    assert_eq!(e["sender"]["port"], "nfc1", "{e}");
    assert_eq!(e["sender"]["ip"], "10.1.1.1", "{e}");
    assert_eq!(e["sender"]["container"], format!("{name}-alice-web"), "{e}");
    assert_eq!(e["sender"]["owner"], "alice", "{e}");
    assert_eq!(e["dst"]["container"], format!("{name}-alice-db"), "{e}");
    drop(monitor);
    drop(lab);
}
