//! The DNS bench: `dnsperf` from a container namespace against the agent's
//! DNS server (`netfabric::dns::DnsServer`, started as the agent starts it,
//! in a host namespace holding the gateway address) and, in the same run,
//! against `dnsmasq` answering the same names from a hosts file at the same
//! address. Queries per second and latency percentiles (from `dnsperf -v`,
//! one line per query).
//!
//! Both servers see the same plumbing (a veth, no datapath programs: the
//! per-packet datapath cost is the same for both and measured by the other
//! parts). Names: 200 containers of one owner, the asker one of them.
//!
//! The two take turns, one run each per repetition (agent, dnsmasq, agent,
//! dnsmasq, ...), so that other work on a shared machine weighs on both
//! alike; the ratio of each pair of runs is reported besides the medians.

use std::{
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use netfabric::{
    MacAddr,
    dns::{DnsConfig, DnsServer, UpstreamSource},
    observe::metrics::DnsMetrics,
    state::{HostSpec, State},
};
use serde_json::{Value, json};

use super::{Settings, Stats, lab::name, out_dir};
use crate::netns::Netns;

const CONTAINERS: u8 = 200;
const DOMAIN: &str = "netfabric.internal";

/// One server's run.
#[derive(Debug, Clone)]
pub struct DnsRow {
    pub server: &'static str,
    pub qps: Stats,
    /// Latency percentiles in microseconds, over every repetition's queries.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub queries: u64,
    pub lost: u64,
}

#[derive(Debug, Clone)]
pub struct DnsBench {
    pub seconds: u64,
    pub rows: Vec<DnsRow>,
    /// The agent's queries per second over dnsmasq's, of each pair of
    /// consecutive runs.
    pub qps_ratio: Stats,
}

impl DnsBench {
    pub fn row(&self, server: &str) -> Option<&DnsRow> {
        self.rows.iter().find(|r| r.server == server)
    }

    pub fn json(&self) -> Value {
        json!({
            "seconds_per_run": self.seconds,
            "qps_ratio_per_pair": self.qps_ratio.json(),
            "rows": self.rows.iter().map(|r| json!({
                "server": r.server,
                "qps": r.qps.json(),
                "p50_us": r.p50_us,
                "p99_us": r.p99_us,
                "p999_us": r.p999_us,
                "queries": r.queries,
                "lost": r.lost,
            })).collect::<Vec<_>>(),
        })
    }
}

/// A child killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The agent's DNS server in `host`'s namespace until the sender drops.
struct AgentDns {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AgentDns {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn state() -> Result<State> {
    let mut s = State::default();
    s.create_zone("z", "10.1.0.0/16".parse()?, None)?;
    s.create_host(HostSpec {
        name: "h1".into(),
        zone: "z".into(),
        number: Some(1),
        subnet: None,
        uplink: "up0".into(),
        underlay_ip: Ipv4Addr::new(192, 0, 2, 1),
        underlay_mac: MacAddr([2, 0, 0, 0, 0, 1]),
    })?;
    s.create_owner("alice")?;
    for i in 1..=CONTAINERS {
        s.create_container(
            &format!("c{i}"),
            "alice",
            "h1",
            Some(Ipv4Addr::new(10, 1, 1, i)),
        )?;
    }
    Ok(s)
}

fn start_agent_dns(host: &Netns, state: State) -> Result<AgentDns> {
    let (stop, stopped) = mpsc::channel::<()>();
    let (ready, is_ready) = mpsc::channel::<Result<(), String>>();
    let path = format!("/run/netns/{}", host.name);
    let thread = std::thread::spawn(move || {
        let started = (|| -> Result<_, String> {
            netfabric::port::netns::enter(std::path::Path::new(&path))
                .map_err(|e| e.to_string())?;
            // As the agent runs it: two worker threads.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let server = rt.block_on(async {
                let config = DnsConfig {
                    upstream: UpstreamSource::Servers(Vec::new()),
                    ..DnsConfig::default()
                };
                DnsServer::start(&config, "h1", DnsMetrics::new()).map_err(|e| e.to_string())
            })?;
            server.publish(&state, 1);
            Ok((rt, server))
        })();
        match started {
            Ok(running) => {
                let _ = ready.send(Ok(()));
                let _ = stopped.recv();
                drop(running);
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
    });
    match is_ready.recv() {
        Ok(Ok(())) => Ok(AgentDns {
            stop: Some(stop),
            thread: Some(thread),
        }),
        Ok(Err(e)) => bail!("starting the agent's DNS server: {e}"),
        Err(_) => bail!("the DNS server's thread died"),
    }
}

fn start_dnsmasq(host: &Netns, hosts_file: &std::path::Path) -> Result<Killed> {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &host.name,
            "dnsmasq",
            "--keep-in-foreground",
        ])
        .args([
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
        ])
        .args([
            "--listen-address=169.254.1.1",
            "--pid-file=",
            "--local-ttl=5",
        ])
        .arg("--cache-size=10000")
        .arg(format!("--addn-hosts={}", hosts_file.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting dnsmasq")?;
    Ok(Killed(child))
}

/// Waits until `client` gets an answer for `c2` from 169.254.1.1.
fn wait_answering(client: &Netns) -> Result<()> {
    let start = Instant::now();
    loop {
        let out = client.try_exec(&[
            "dig",
            "@169.254.1.1",
            "+short",
            "+time=1",
            "+tries=1",
            &format!("c2.alice.{DOMAIN}"),
        ]);
        if String::from_utf8_lossy(&out.stdout).trim() == "10.1.1.2" {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("the server does not answer c2.alice.{DOMAIN}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One dnsperf run: (qps, per-query latencies in µs, sent, lost).
fn dnsperf(
    client: &Netns,
    queries: &std::path::Path,
    seconds: u64,
) -> Result<(f64, Vec<f64>, u64, u64)> {
    let out = client.try_exec(&[
        "dnsperf",
        "-s",
        "169.254.1.1",
        "-d",
        queries.to_str().context("a UTF-8 path")?,
        "-l",
        &seconds.to_string(),
        "-c",
        "4",
        "-T",
        "1",
        "-q",
        "64",
        "-t",
        "2",
        "-v",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |label: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let Some(qps) = value("Queries per second:") else {
        bail!(
            "no result from dnsperf: {}{}",
            text.lines().rev().take(20).collect::<Vec<_>>().join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let sent = value("Queries sent:").unwrap_or(0.0) as u64;
    let lost = value("Queries lost:").unwrap_or(0.0) as u64;
    // `> NOERROR c7.alice.netfabric.internal A 0.000123`
    let latencies = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|s| s * 1e6)
        .collect();
    Ok((qps, latencies, sent, lost))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// The runs of one server so far.
#[derive(Default)]
struct Runs {
    qps: Vec<f64>,
    latencies: Vec<f64>,
    sent: u64,
    lost: u64,
}

impl Runs {
    fn add(&mut self, (qps, latencies, sent, lost): (f64, Vec<f64>, u64, u64)) {
        self.qps.push(qps);
        self.latencies.extend(latencies);
        self.sent += sent;
        self.lost += lost;
    }

    fn row(mut self, server: &'static str) -> DnsRow {
        self.latencies.sort_by(f64::total_cmp);
        DnsRow {
            server,
            qps: Stats::of(&self.qps),
            p50_us: percentile(&self.latencies, 0.50),
            p99_us: percentile(&self.latencies, 0.99),
            p999_us: percentile(&self.latencies, 0.999),
            queries: self.sent,
            lost: self.lost,
        }
    }
}

pub fn run(settings: &Settings) -> Result<DnsBench> {
    let seconds = if settings.quick { 2 } else { 8 };
    let host = Netns::new(&name("dnsh"));
    let client = Netns::new(&name("dnsc"));
    host.exec(&[
        "ip", "link", "add", "nfc1", "type", "veth", "peer", "name", "eth0",
    ]);
    host.exec(&["ip", "link", "set", "eth0", "netns", &client.name]);
    host.exec(&["ip", "addr", "add", "169.254.1.1/32", "dev", "nfc1"]);
    host.exec(&["ip", "link", "set", "nfc1", "up"]);
    host.exec(&["ip", "link", "set", "lo", "up"]);
    host.exec(&["ip", "route", "add", "10.1.1.1/32", "dev", "nfc1"]);
    client.exec(&["ip", "addr", "add", "10.1.1.1/32", "dev", "eth0"]);
    client.exec(&["ip", "link", "set", "eth0", "up"]);
    client.exec(&["ip", "link", "set", "lo", "up"]);
    client.exec(&[
        "ip",
        "route",
        "add",
        "169.254.1.1/32",
        "dev",
        "eth0",
        "scope",
        "link",
    ]);

    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    let queries = dir.join("dns-queries.txt");
    let hosts = dir.join("dns-hosts.txt");
    let (mut q, mut h) = (String::new(), String::new());
    for i in 1..=CONTAINERS {
        q += &format!("c{i}.alice.{DOMAIN} A\n");
        h += &format!("10.1.1.{i} c{i}.alice.{DOMAIN}\n");
    }
    std::fs::write(&queries, q)?;
    std::fs::write(&hosts, h)?;

    let (mut agent, mut dnsmasq) = (Runs::default(), Runs::default());
    let mut ratios = Vec::new();
    for _ in 0..settings.reps {
        {
            let _agent = start_agent_dns(&host, state()?)?;
            wait_answering(&client)?;
            agent.add(dnsperf(&client, &queries, seconds)?);
        }
        {
            let _dnsmasq = start_dnsmasq(&host, &hosts)?;
            wait_answering(&client)?;
            dnsmasq.add(dnsperf(&client, &queries, seconds)?);
        }
        if let (Some(ours), Some(theirs)) = (agent.qps.last(), dnsmasq.qps.last()) {
            ratios.push(ours / theirs);
        }
    }
    Ok(DnsBench {
        seconds,
        rows: vec![agent.row("netfabric agent"), dnsmasq.row("dnsmasq")],
        qps_ratio: Stats::of(&ratios),
    })
}
