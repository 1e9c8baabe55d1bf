//! `cargo xtask bench [--quick] [--only decision,e2e,control,dns]`: netfabric's
//! benchmarks (see `netfabric_tests::bench`). Writes `target/bench/report.md`,
//! `report.json` and PNG plots, and prints the summary.

use std::time::Instant;

use anyhow::{Result, bail};
use netfabric_tests::bench::{Settings, control, decision, dns, e2e, lab, report};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut parts = vec!["decision", "e2e", "control", "dns"];
    if let Some(i) = args.iter().position(|a| a == "--only") {
        let Some(list) = args.get(i + 1) else {
            bail!("--only needs a list: decision,e2e,control,dns");
        };
        let wanted: Vec<&str> = list.split(',').collect();
        if let Some(bad) = wanted.iter().find(|w| !parts.contains(w)) {
            bail!("unknown part {bad:?} (decision, e2e, control, dns)");
        }
        parts.retain(|p| wanted.contains(p));
    }
    let settings = Settings::new(quick);
    let started = Instant::now();
    lab::remove_stale();
    let mut results = report::Results::default();
    if parts.contains(&"decision") {
        eprintln!("bench: 1/4 per-packet decision cost");
        results.decision = Some(decision::run(&settings)?);
    }
    if parts.contains(&"e2e") {
        eprintln!("bench: 2/4 end to end through namespaces");
        results.e2e = Some(e2e::run(&settings)?);
    }
    if parts.contains(&"control") {
        eprintln!("bench: 3/4 control plane");
        results.control = Some(control::run(&settings)?);
    }
    if parts.contains(&"dns") {
        eprintln!("bench: 4/4 DNS: the agent's server vs dnsmasq (dnsperf)");
        results.dns = Some(dns::run(&settings)?);
    }
    report::write(&results, &settings, started.elapsed())
}
