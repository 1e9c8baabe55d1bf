//! Control plane: loading a full zone (254 x 254 = 64,516 containers,
//! 10,000 owners, 1,000 groups) into freshly loaded maps, and applying one
//! change, through the datapath setters and through the agent's plan/diff
//! (`HostPlan::diff` + `agent::apply`, the path a store change takes; the
//! plan is built directly, not computed from a stored state).

use std::{collections::BTreeMap, net::Ipv4Addr, time::Instant};

use anyhow::{Context as _, Result};
use netfabric::{
    agent::{self, HostPlan, plan::UnderlayHop},
    datapath::{Datapath, LoadOptions},
};
use netfabric_common::{HostConfig, OwnerPair};
use serde_json::{Value, json};

use super::{
    Rng, Settings, Stats,
    decision::{LOCAL_HOST, Zone, addr, fill, zone},
};

/// A timed operation: seconds, median and spread.
pub struct Timed {
    pub what: &'static str,
    pub seconds: Stats,
    /// The project's target for it, in seconds.
    pub target: f64,
}

pub struct Control {
    pub containers: usize,
    pub group_pairs: usize,
    pub rows: Vec<Timed>,
}

impl Control {
    pub fn json(&self) -> Value {
        json!({
            "containers": self.containers,
            "group_pairs": self.group_pairs,
            "rows": self.rows.iter().map(|r| json!({
                "what": r.what, "seconds": r.seconds.json(), "target_s": r.target,
                "fraction_of_target": r.seconds.median / r.target,
            })).collect::<Vec<_>>(),
        })
    }
}

fn plan_of(zone: &Zone) -> HostPlan {
    let mut plan = HostPlan {
        host: Some(HostConfig {
            zone_prefix: u32::from(addr(0, 0)),
            zone_slot: 0,
            host_octet: LOCAL_HOST.into(),
            uplink_ifindex: 1,
            uplink_mac: [0x02, 0xaa, 0, 0, 0, LOCAL_HOST],
            gateway_mac: [0x02, 0xbb, 0, 0, 0, 1],
            zone_router_mac: [0; 6],
            flags: 0,
        }),
        ..HostPlan::default()
    };
    plan.zones.insert(0x0a01, 0);
    for h in 1..=254u8 {
        plan.next_hops.insert(
            (0, h),
            UnderlayHop {
                mac: [0x02, 0xaa, 0, 0, 0, h],
                underlay: Ipv4Addr::new(172, 31, 0, h),
            },
        );
    }
    for (&(h, c), &owner) in &zone.owners {
        plan.endpoints
            .insert((0, u16::from_be_bytes([h, c])), (owner, zone.bloom(owner)));
    }
    for &(a, b) in &zone.pairs {
        plan.group_pairs.insert(OwnerPair { low: a, high: b }, 1);
    }
    plan
}

pub fn run(settings: &Settings) -> Result<Control> {
    crate::ensure_bpffs();
    let mut rng = Rng(0x636f_6e74_726f_6c21);
    let full = zone(254, 10_000, 1_000, &mut rng);
    let ports = BTreeMap::new();
    let reps = settings.reps;
    let mut rows = Vec::new();

    // Full zone through the setters, and through plan/diff/apply, each into
    // freshly loaded (empty) maps. Loading the programs is not counted.
    let mut setters = Vec::new();
    let mut endpoints_only = Vec::new();
    let mut via_agent = Vec::new();
    let mut read_back = Vec::new();
    let plan = plan_of(&full);
    let endpoint_only = Zone {
        owners: full.owners.clone(),
        pairs: Vec::new(),
        blooms: Default::default(),
        owner_count: full.owner_count,
        group_count: 0,
        label: full.label.clone(),
    };
    for _ in 0..reps {
        let mut dp = Datapath::load(&LoadOptions::default()).context("loading the datapath")?;
        let t = Instant::now();
        fill(&mut dp, &endpoint_only, &ports)?;
        endpoints_only.push(t.elapsed().as_secs_f64());
        drop(dp);

        let mut dp = Datapath::load(&LoadOptions::default())?;
        let t = Instant::now();
        fill(&mut dp, &full, &ports)?;
        setters.push(t.elapsed().as_secs_f64());
        drop(dp);

        let mut dp = Datapath::load(&LoadOptions::default())?;
        let t = Instant::now();
        for op in HostPlan::default().diff(&plan) {
            agent::apply(&mut dp, &op)?;
        }
        via_agent.push(t.elapsed().as_secs_f64());

        // What a restarted agent does first: read the maps back (batched).
        let t = Instant::now();
        let read = agent::read_maps(&dp)?;
        read_back.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            read == plan,
            "the full zone read back differs from the plan written"
        );
        drop(dp);
    }
    rows.push(Timed {
        what: "full zone: 64,516 endpoints + 254 next hops (setters)",
        seconds: Stats::of(&endpoints_only),
        target: 1.0,
    });
    rows.push(Timed {
        what: "full zone with its group pairs (setters)",
        seconds: Stats::of(&setters),
        target: 1.0,
    });
    rows.push(Timed {
        what: "full zone with its group pairs (agent: diff + apply)",
        seconds: Stats::of(&via_agent),
        target: 1.0,
    });
    rows.push(Timed {
        what: "full zone with its group pairs (agent start-up: read back)",
        seconds: Stats::of(&read_back),
        target: 1.0,
    });

    // Single changes on a loaded full zone: each timed alone, many times.
    let mut dp = Datapath::load(&LoadOptions::default())?;
    fill(&mut dp, &full, &ports)?;
    let (n, n_agent) = if settings.quick {
        (200, 20)
    } else {
        (1_000, 100)
    };
    let mut endpoint = Vec::new();
    let mut pair = Vec::new();
    let mut diffed = Vec::new();
    // Two equal plans: `desired` takes the change, `current` follows it
    // after the timed diff (no clone of a 250k-entry plan per change).
    let mut current = plan.clone();
    let mut desired = plan;
    for i in 0..n {
        let (h, c) = (1 + rng.below(254) as u8, 1 + rng.below(254) as u8);
        let owner = 100 + rng.below(10_000) as u32;
        let t = Instant::now();
        dp.set_endpoint_groups_unknown(0, addr(h, c), owner)?;
        endpoint.push(t.elapsed().as_secs_f64());

        let (a, b) = (200_000 + i, 300_000 + i);
        let t = Instant::now();
        dp.set_group_pair(a, b, 1)?;
        pair.push(t.elapsed().as_secs_f64());
        dp.remove_group_pair(a, b)?;

        // One container moves to another owner: the agent diffs the whole
        // plan (O(zone)) and applies the single resulting op.
        if i >= n_agent {
            continue;
        }
        let key = (0, u16::from_be_bytes([h, c]));
        let new_owner = current.endpoints[&key].0 + 1;
        desired
            .endpoints
            .insert(key, (new_owner, full.bloom(new_owner)));
        let t = Instant::now();
        let ops = current.diff(&desired);
        for op in &ops {
            agent::apply(&mut dp, op)?;
        }
        diffed.push(t.elapsed().as_secs_f64());
        // An owner change is narrowed first: clear, then set.
        assert!(
            (1..=2).contains(&ops.len()),
            "one change, {} ops",
            ops.len()
        );
        current
            .endpoints
            .insert(key, (new_owner, full.bloom(new_owner)));
    }
    rows.push(Timed {
        what: "single change: one endpoint (setter)",
        seconds: Stats::of(&endpoint),
        target: 1e-3,
    });
    rows.push(Timed {
        what: "single change: one group pair (setter)",
        seconds: Stats::of(&pair),
        target: 1e-3,
    });
    rows.push(Timed {
        what: "single change: one endpoint (agent: full-plan diff + apply)",
        seconds: Stats::of(&diffed),
        target: 1e-3,
    });
    Ok(Control {
        containers: full.containers(),
        group_pairs: full.pairs.len(),
        rows,
    })
}
