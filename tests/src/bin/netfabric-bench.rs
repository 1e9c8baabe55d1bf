//! `cargo xtask bench [--quick] [--only decision,e2e,control,zone,dns,services,conntrack] [--zone-agents N]`:
//! netfabric's benchmarks (see `netfabric_tests::bench`). Writes
//! `target/bench/report.md`, `report.json` and PNG plots, and prints the
//! summary. `zone` (254 agents on etcd), `dns` (the agent's DNS against
//! dnsmasq) and `services` (Maglev's disruption; HTTP through a VIP, direct
//! and through haproxy) run in full mode, or when named in `--only`.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use netfabric_tests::bench::{
    Settings, conntrack, control, decision, dns, e2e, lab, report, services, zone,
};

const PARTS: [&str; 7] = [
    "decision",
    "e2e",
    "control",
    "zone",
    "dns",
    "services",
    "conntrack",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut parts = PARTS.to_vec();
    if quick {
        parts.retain(|p| !["zone", "dns", "services"].contains(p));
    }
    if let Some(i) = args.iter().position(|a| a == "--only") {
        let Some(list) = args.get(i + 1) else {
            bail!("--only needs a list: {}", PARTS.join(","));
        };
        let wanted: Vec<&str> = list.split(',').collect();
        if let Some(bad) = wanted.iter().find(|w| !PARTS.contains(w)) {
            bail!("unknown part {bad:?} ({})", PARTS.join(", "));
        }
        parts = PARTS.to_vec();
        parts.retain(|p| wanted.contains(p));
    }
    let zone_agents = match args.iter().position(|a| a == "--zone-agents") {
        None => zone::AGENTS,
        Some(i) => {
            let n: usize = args
                .get(i + 1)
                .and_then(|n| n.parse().ok())
                .context("--zone-agents needs a number of agents (1 to 254)")?;
            if !(1..=254).contains(&n) {
                bail!("--zone-agents {n}: 1 to 254 (one agent per host of one zone)");
            }
            n
        }
    };
    let settings = Settings::new(quick);
    let started = Instant::now();
    lab::remove_stale();
    let mut results = report::Results::default();
    let total = parts.len();
    let mut step = 0;
    let mut next = |what: &str| {
        step += 1;
        eprintln!("bench: {step}/{total} {what}");
    };
    if parts.contains(&"decision") {
        next("per-packet decision cost");
        results.decision = Some(decision::run(&settings)?);
    }
    if parts.contains(&"e2e") {
        next("end to end through namespaces");
        results.e2e = Some(e2e::run(&settings)?);
    }
    if parts.contains(&"control") {
        next("control plane");
        results.control = Some(control::run(&settings)?);
    }
    if parts.contains(&"zone") {
        next("control plane at zone scale");
        results.zone = Some(zone::run(&settings, zone_agents)?);
    }
    if parts.contains(&"dns") {
        next("DNS: the agent's server vs dnsmasq (dnsperf)");
        results.dns = Some(dns::run(&settings)?);
    }
    if parts.contains(&"services") {
        next("services: Maglev disruption; HTTP via the VIP, direct and haproxy (wrk)");
        results.services = Some(services::run(&settings)?);
    }
    if parts.contains(&"conntrack") {
        next("connection tracking: the kernel's conntrack (kfunc) vs our own map");
        results.conntrack = Some(conntrack::run(&settings)?);
    }
    report::write(&results, &settings, started.elapsed())
}
