//! Control plane: loading a full zone (254 x 254 = 64,516 containers,
//! 10,000 owners, 1,000 groups) into freshly loaded maps, and applying one
//! change, through the datapath setters and through the agent's path: a
//! full zone as a plan (`HostPlan::diff` + `agent::apply`), and single
//! changes of a desired state from the change event to the last map write
//! (`agent::incremental::IncrementalPlan::update`, `HostPlan::diff_keys`,
//! `agent::apply`).

use std::{collections::BTreeMap, net::Ipv4Addr, time::Instant};

use anyhow::{Context as _, Result};
use netfabric::{
    MacAddr,
    agent::{
        self, HostPlan, Runtime,
        incremental::{IncrementalPlan, Touched},
        plan::{EndpointKey, NextHopKey, UnderlayHop},
    },
    datapath::{Datapath, LoadOptions},
    state::{Changes, Container, FollowedState, Group, HostSpec, Owner, ServiceSpec, State},
};
use netfabric_common::{Endpoint, HostConfig, OwnerPair};
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
            NextHopKey {
                zone_slot: 0,
                host_octet: h,
            },
            UnderlayHop {
                mac: [0x02, 0xaa, 0, 0, 0, h],
                underlay: Ipv4Addr::new(172, 31, 0, h),
            },
        );
    }
    for (&(h, c), &owner) in &zone.owners {
        plan.endpoints.insert(
            EndpointKey {
                zone_slot: 0,
                low: u16::from_be_bytes([h, c]),
            },
            Endpoint {
                owner,
                groups: zone.bloom(owner),
            },
        );
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
        lists: Default::default(),
        owner_count: full.owner_count,
        group_count: 0,
        label: full.label.clone(),
        scoped: Default::default(),
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
    for i in 0..n {
        let (h, c) = (1 + rng.below(254) as u8, 1 + rng.below(254) as u8);
        let owner = 100 + rng.below(10_000) as u32;
        let t = Instant::now();
        dp.set_endpoint_groups(0, addr(h, c), owner, full.bloom(owner))?;
        endpoint.push(t.elapsed().as_secs_f64());

        let (a, b) = (200_000 + i, 300_000 + i);
        let t = Instant::now();
        dp.set_group_pair(a, b, 1)?;
        pair.push(t.elapsed().as_secs_f64());
        dp.remove_group_pair(a, b)?;
    }
    drop(dp);

    // The agent's path for a desired state: a full zone planned from the
    // state, then single changes from the change event (a new state) to
    // the last map write.
    let state = full_zone_state(&mut rng)?;
    let rt = Runtime {
        uplink_ifindex: 1,
        ready_ports: BTreeMap::new(),
        health: Default::default(),
    };
    let mut planned = Vec::new();
    let mut planner = None;
    for _ in 0..reps {
        let t = Instant::now();
        planner = Some(IncrementalPlan::new(
            state.clone(),
            LOCAL_HOST_NAME,
            rt.clone(),
        )?);
        planned.push(t.elapsed().as_secs_f64());
    }
    let mut planner = planner.context("at least one repetition")?;
    // What the store's watch follows (etcd: the mirror of its keys).
    let (mut followed, verdict) = FollowedState::new(state.clone());
    verdict.context("the full zone's state is valid")?;
    let mut dp = Datapath::load(&LoadOptions::default())?;
    let mut current = HostPlan::default();
    for op in current.diff(planner.plan()) {
        agent::apply(&mut dp, &op)?;
        current.record(&op);
    }
    let mut moved = Vec::new();
    let mut joined = Vec::new();
    for i in 0..n_agent {
        // One container moves to another owner.
        let mut next = planner.state().clone();
        let k = rng.below(next.containers.len() as u64) as usize;
        next.containers[k].owner = format!("o{}", rng.below(10_000));
        moved.push(change_to_maps(
            &mut followed,
            &mut planner,
            next,
            &rt,
            &mut current,
            &mut dp,
        )?);
        // An owner joins a group: its endpoints' blooms, the group's pairs.
        let mut next = planner.state().clone();
        let g = rng.below(next.groups.len() as u64) as usize;
        next.groups[g].members.insert(format!(
            "o{}",
            (i as u64 * 7_919 + rng.below(10_000)) % 10_000
        ));
        joined.push(change_to_maps(
            &mut followed,
            &mut planner,
            next,
            &rt,
            &mut current,
            &mut dp,
        )?);
    }
    // Services on the full zone: 254 (the zone's service range is full),
    // each over half of its owner's containers; then single changes: a
    // backend joins a service, a backend's health report flips.
    let mut next = planner.state().clone();
    let mut spare = Vec::new();
    for o in 0..254u32 {
        let owner = format!("o{o}");
        let mine: Vec<String> = next
            .containers
            .iter()
            .filter(|c| c.owner == owner)
            .map(|c| c.name.clone())
            .collect();
        let (backends, rest) = mine.split_at(mine.len() / 2);
        next.create_service(ServiceSpec {
            name: format!("svc{o}"),
            owner: owner.clone(),
            zone: None,
            vip: None,
            ports: vec!["tcp/80:8080".parse()?, "udp/53".parse()?],
            backends: backends.to_vec(),
            health: Default::default(),
        })?;
        if let Some(c) = rest.first() {
            spare.push((owner, format!("svc{o}"), c.clone()));
        }
    }
    next.normalize();
    let changes = Changes::between(followed.state(), &next);
    followed.apply(&changes)?;
    let update = planner.update_changes(&changes, &rt)?;
    let ops = match &update.touched {
        Touched::Keys(keys) => current.diff_keys(planner.plan(), keys),
        Touched::All => current.diff(planner.plan()),
    };
    for op in &ops {
        agent::apply(&mut dp, op)?;
        current.record(op);
    }
    let mut backend_joins = Vec::new();
    let mut health_flips = Vec::new();
    let mut rt = rt;
    for (owner, name, container) in spare.iter().take(n_agent) {
        let mut next = planner.state().clone();
        next.add_service_backends(owner, name, std::slice::from_ref(container))?;
        backend_joins.push(change_to_maps(
            &mut followed,
            &mut planner,
            next,
            &rt,
            &mut current,
            &mut dp,
        )?);
        let address = planner
            .state()
            .container(container)
            .context("the backend exists")?
            .address;
        let healthy = rt.health.get(&(address, 8080)).copied().unwrap_or(true);
        rt.health.insert((address, 8080), !healthy);
        let same = planner.state().clone();
        health_flips.push(change_to_maps(
            &mut followed,
            &mut planner,
            same,
            &rt,
            &mut current,
            &mut dp,
        )?);
    }
    anyhow::ensure!(
        current == *planner.plan()
            && *planner.plan() == HostPlan::compute(planner.state(), LOCAL_HOST_NAME, &rt)?,
        "the maps written incrementally differ from the full plan"
    );
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
        what: "full zone planned from the desired state (agent: plan + indexes)",
        seconds: Stats::of(&planned),
        target: 1.0,
    });
    rows.push(Timed {
        what: "single change: a container's owner (store change event to last map write)",
        seconds: Stats::of(&moved),
        target: 1e-3,
    });
    rows.push(Timed {
        what: "single change: an owner joins a group (store change event to last map write)",
        seconds: Stats::of(&joined),
        target: 1e-3,
    });
    rows.push(Timed {
        what: "single change: a backend joins a service, 254 services (store change event to last map write)",
        seconds: Stats::of(&backend_joins),
        target: 1e-3,
    });
    rows.push(Timed {
        what: "single change: a backend's health flips, 254 services (report to last map write)",
        seconds: Stats::of(&health_flips),
        target: 1e-3,
    });
    Ok(Control {
        containers: full.containers(),
        group_pairs: full.pairs.len(),
        rows,
    })
}

/// The name of [`LOCAL_HOST`] in [`full_zone_state`].
const LOCAL_HOST_NAME: &str = "h1";

/// One change through the path an etcd change takes, timed from the
/// change event (the objects it changed) to the last map write: the
/// watch's validation by what changed, the agent's incremental plan, the
/// diff of the touched keys, the map writes.
fn change_to_maps(
    followed: &mut FollowedState,
    planner: &mut IncrementalPlan,
    next: State,
    rt: &Runtime,
    current: &mut HostPlan,
    dp: &mut Datapath,
) -> Result<f64> {
    let mut next = next;
    next.normalize();
    // What the watch response carries (decoding one object's JSON is not
    // counted: microseconds).
    let changes = Changes::between(followed.state(), &next);
    let t = Instant::now();
    followed.apply(&changes)?;
    let update = planner.update_changes(&changes, rt)?;
    let ops = match &update.touched {
        Touched::Keys(keys) => current.diff_keys(planner.plan(), keys),
        Touched::All => current.diff(planner.plan()),
    };
    for op in &ops {
        agent::apply(dp, op)?;
        current.record(op);
    }
    let took = t.elapsed().as_secs_f64();
    // As the agent does: the replaced state is freed after the writes.
    drop(update.previous);
    anyhow::ensure!(ops.len() <= 64, "one change, {} ops", ops.len());
    Ok(took)
}

/// A full zone as a desired state: 254 hosts x 254 containers, 10,000
/// owners `o0`.. with random containers, 1,000 groups of 20 random owners.
pub fn full_zone_state(rng: &mut Rng) -> Result<State> {
    let mut s = State::default();
    s.create_zone("z1", "10.1.0.0/16".parse()?, None)?;
    for h in 1..=254u8 {
        s.create_host(HostSpec {
            name: format!("h{h}"),
            zone: "z1".into(),
            number: Some(h.into()),
            subnet: None,
            uplink: "up0".into(),
            underlay_ip: Ipv4Addr::new(172, 31, 0, h),
            underlay_mac: MacAddr([0x02, 0xaa, 0, 0, 0, h]),
        })?;
    }
    for o in 0..10_000u32 {
        s.owners.push(Owner {
            name: format!("o{o}"),
            id: s.next_owner_id,
            egress: Default::default(),
        });
        s.next_owner_id += 1;
    }
    for g in 0..1_000 {
        s.groups.push(Group {
            name: format!("g{g}"),
            members: (0..20).map(|_| format!("o{}", rng.below(10_000))).collect(),
        });
    }
    for h in 1..=254u8 {
        for c in 1..=254u8 {
            s.containers.push(Container {
                name: format!("c{h}-{c}"),
                owner: format!("o{}", rng.below(10_000)),
                host: format!("h{h}"),
                address: addr(h, c),
            });
        }
    }
    s.validate().context("the full zone's state is valid")?;
    Ok(s)
}
