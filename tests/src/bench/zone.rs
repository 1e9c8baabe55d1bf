//! The control plane at zone scale (`--only zone`): a zone of maps-only
//! agents on a local three-member etcd, one watch per agent against the
//! fan-out through `etcd grpc-proxy` ([`crate::zone`]). The agents run the
//! `netfabric` binary next to the bench's own (`cargo xtask bench` builds
//! it).

use std::{path::PathBuf, time::Duration};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::Settings;
use crate::zone::{self, Design, Spec};

/// Issue 19's zone: one agent per host.
pub const AGENTS: usize = 254;
/// The burst the target is set for.
pub const BURST: usize = 1000;
/// Goals: a single change on every agent (p99), the burst everywhere.
pub const SINGLE_P99_GOAL: Duration = Duration::from_millis(100);
pub const BURST_GOAL: Duration = Duration::from_secs(2);

pub struct Zone {
    pub report: zone::Report,
}

impl Zone {
    pub fn json(&self) -> Value {
        json!({
            "goals": { "single_p99_ms": SINGLE_P99_GOAL.as_secs_f64() * 1e3,
                       "burst_converged_s": BURST_GOAL.as_secs_f64() },
            "designs": self.report.designs,
            "kept": self.kept().map(|d| d.label),
        })
    }

    /// The better design: the one meeting more goals; on a tie, the one
    /// with less etcd CPU during the burst (what a bigger cluster of zones
    /// runs out of first).
    pub fn kept(&self) -> Option<&zone::DesignReport> {
        self.report.designs.iter().min_by(|a, b| {
            let missed = |d: &zone::DesignReport| {
                usize::from(d.single.p99 >= SINGLE_P99_GOAL)
                    + usize::from(d.bulk.converged >= BURST_GOAL)
                    + usize::from(d.burst.after_last_write >= BURST_GOAL)
            };
            let control_plane_cpu = |d: &zone::DesignReport| {
                d.burst.cpu.etcd_cpu_s + d.burst.cpu.proxy_cores * d.burst.cpu.wall_s
            };
            missed(a)
                .cmp(&missed(b))
                .then(control_plane_cpu(a).total_cmp(&control_plane_cpu(b)))
        })
    }
}

/// The `netfabric` binary of the same build as this one.
pub fn netfabric_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe()?.with_file_name("netfabric");
    if !exe.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p netfabric --bin netfabric)",
            exe.display()
        );
    }
    Ok(exe)
}

pub fn run(settings: &Settings, agents: usize) -> Result<Zone> {
    let spec = Spec {
        exe: netfabric_exe()?,
        agents,
        containers_per_host: 4,
        singles: if settings.quick { 40 } else { 100 },
        burst: BURST,
        timeout: Duration::from_secs(60),
    };
    eprintln!(
        "bench: zone of {} maps-only agents on a three-member etcd, {} single changes, a burst \
         of {}, for each of: {}",
        spec.agents,
        spec.singles,
        spec.burst,
        Design::ALL.map(Design::label).join(", ")
    );
    // zone::run prints each design's figures as it finishes.
    let report = zone::run(&spec, &Design::ALL)?;
    Ok(Zone { report })
}
