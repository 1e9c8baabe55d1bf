//! Control-plane benchmark: a lab on a local three-member etcd cluster
//! (`lab up --store etcd`), then the time from a write through the store to
//! the change being applied in the maps of every agent, for single changes
//! and for a burst (see `netfabric_tests::propagation`).
//!
//! `cargo run --release -p netfabric-tests --bin netfabric-bench-etcd -- [--quick] [--hosts N] [--singles N] [--burst N]`
//! (root, bpffs; the agents run the `netfabric` binary of the same profile:
//! `cargo build --release -p netfabric --bin netfabric` first). Writes
//! `target/bench/control-plane.{txt,json}`.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
use netfabric::{
    lab::{self, LabConfig, LabLocation, LabStore},
    store,
};
use netfabric_tests::{ensure_bpffs, propagation};

struct Args {
    hosts: u8,
    singles: usize,
    burst: usize,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        hosts: 3,
        singles: 100,
        burst: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> Result<usize> {
            it.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--quick" => {
                a.singles = 20;
                a.burst = 200;
            }
            "--hosts" => a.hosts = u8::try_from(num("--hosts")?)?,
            "--singles" => a.singles = num("--singles")?,
            "--burst" => a.burst = num("--burst")?,
            "--control-plane" => {}
            other => {
                bail!("unknown argument {other:?} (--quick, --hosts N, --singles N, --burst N)")
            }
        }
    }
    Ok(a)
}

/// The `netfabric` binary of the same build, which the agents run.
fn netfabric_exe() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let exe = me.with_file_name("netfabric");
    if !exe.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p netfabric --bin netfabric)",
            exe.display()
        );
    }
    Ok(exe)
}

fn main() -> Result<()> {
    let args = parse()?;
    ensure_bpffs();
    let name = format!("cpb{}", std::process::id() % 10_000);
    let dir = std::env::temp_dir().join(format!("netfabric-bench-{name}"));
    let lab_config = LabConfig {
        lab: LabLocation {
            name: name.clone(),
            dir: Some(dir.clone()),
            bpffs: PathBuf::from(netfabric::conventions::DEFAULT_BPFFS),
        },
        hosts: args.hosts,
        store: LabStore::Etcd,
        exe: Some(netfabric_exe()?),
        metrics_port_base: 0,
    };
    eprintln!(
        "bench: lab {name} on etcd with {} hosts, {} single changes, a burst of {}",
        args.hosts, args.singles, args.burst
    );
    let result = (|| -> Result<propagation::Report> {
        let m = lab::up(&lab_config).context("lab up --store etcd")?;
        let store = store::open(&m.store_url)?;
        let pins: Vec<PathBuf> = m.hosts.iter().map(|h| h.pin_dir.clone()).collect();
        propagation::measure(
            store.as_ref(),
            &pins,
            args.singles,
            args.burst,
            Duration::from_secs(30),
        )
    })();
    let down = lab::down(&lab_config.lab);
    let report = result?;
    down?;
    let text = format!("control plane (etcd, 3 members, loopback)\n{report}\n");
    print!("{text}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("control-plane.txt"), &text)?;
    std::fs::write(
        out.join("control-plane.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    eprintln!("bench: report written to {}", out.display());
    Ok(())
}
