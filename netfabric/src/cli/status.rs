//! `netfabric status`: one screen per host: the agent process, programs
//! attached (with link and program ids), map pressure, counters by reason
//! since the maps were created, whether the store answers, and the
//! services as the host's `SERVICE_TABLES` holds them (members, shares,
//! health); before the hosts, the security groups of the store and whom
//! each narrows.

use std::{path::Path, time::Instant};

use anyhow::Context as _;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use super::{GlobalArgs, OutputFormat, maps::HostSelect};
use crate::agent::lock::{self, AgentReport};
use crate::observe::{
    dump::{self, CounterRow},
    names::Names,
    pins::{self, MapSummary},
    status::{AttachedProgram, attached_programs},
};
use crate::state::{Allow, State, Via};

/// `netfabric status`
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub select: HostSelect,
    #[arg(long, short, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Serialize)]
struct StoreStatus {
    url: String,
    reachable: bool,
    revision: Option<u64>,
    latency_ms: f64,
    error: Option<String>,
    /// Whether the stored state passes validation (`None`: not read).
    state_valid: Option<bool>,
    /// Why it does not.
    invalid_reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct HostStatus {
    host: String,
    pin_dir: String,
    agent_pids: Vec<u32>,
    /// What the running agent says it enforces (from its report).
    agent: Option<AgentReport>,
    programs: Vec<AttachedProgram>,
    maps: Vec<MapSummary>,
    counters: Vec<CounterRow>,
    monitor_events_lost: u64,
    /// Each member of each service as this host's `SERVICE_TABLES` holds
    /// it (`maps dump SERVICE_TABLES`): a member with no slot gets no new
    /// flows (unhealthy).
    services: Vec<serde_json::Value>,
    #[serde(skip)]
    service_rows: Vec<Vec<String>>,
}

fn host_status(
    host: &str,
    dir: &Path,
    uplink: Option<&str>,
    names: &Names,
) -> anyhow::Result<HostStatus> {
    let snap = dump::read_counters(dir)?;
    // Pins of a datapath without services have no table: nothing to show.
    let services = dump::dump(dir, netfabric_common::SERVICE_TABLES, names).ok();
    let (counters, lost) = (CounterRow::rows(&snap), snap.monitor_events_lost);
    let pids = crate::conventions::agent_pids(host);
    Ok(HostStatus {
        host: host.to_owned(),
        pin_dir: dir.display().to_string(),
        // A killed agent leaves its report behind: only a running one's.
        agent: lock::read_report(Path::new(lock::RUN_DIR), dir, host)
            .filter(|r| pids.contains(&r.pid)),
        agent_pids: pids,
        programs: attached_programs(dir, uplink),
        maps: pins::list(dir)?,
        counters,
        monitor_events_lost: lost,
        service_rows: services
            .as_ref()
            .map(|d| d.rows.clone())
            .unwrap_or_default(),
        services: services.map(|d| d.json).unwrap_or_default(),
    })
}

/// One security group as `status` shows it.
#[derive(Debug, Serialize)]
struct SecurityGroupRow {
    owner: String,
    /// A group's name, or `(own)`.
    via: String,
    allow: Vec<Allow>,
    /// The senders this security group narrows (`PORT_SCOPES` pairs with
    /// the owner as receiver): owners that reach the owner only through
    /// narrowed groups, this one among them; for `(own)`, the owner.
    narrows: Vec<String>,
}

fn security_group_rows(state: &State) -> Vec<SecurityGroupRow> {
    // A state that does not validate shows no pairs (the refusal is shown).
    let pairs = state.port_scopes().unwrap_or_default();
    let name = |id: u32| {
        state
            .owner_by_id(id)
            .map_or_else(|| id.to_string(), |o| o.name.clone())
    };
    state
        .security_groups
        .iter()
        .map(|sg| {
            let receiver = state.owner(&sg.owner).map(|o| o.id);
            let narrows = pairs
                .keys()
                .filter(|p| Some(p.receiver) == receiver)
                .map(|p| name(p.sender))
                .filter(|sender| match &sg.via {
                    Via::Own => *sender == sg.owner,
                    Via::Group(g) => state.group(g).is_some_and(|g| g.members.contains(sender)),
                })
                .collect();
            SecurityGroupRow {
                owner: sg.owner.clone(),
                via: sg.via.to_string(),
                allow: sg.allow.clone(),
                narrows,
            }
        })
        .collect()
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    t
}

pub fn run(args: StatusArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let hosts =
        match &args.select.host {
            Some(_) => vec![args.select.resolve()?.0],
            None => {
                let all = pins::hosts(&args.select.bpffs);
                if all.is_empty() {
                    return Err(crate::observe::ObserveError::NoHosts(
                        crate::conventions::pin_root(&args.select.bpffs),
                    )
                    .into());
                }
                all
            }
        };
    // The store, as this machine reaches it.
    let started = Instant::now();
    let loaded = global.open_store().and_then(|s| {
        s.load()
            .with_context(|| format!("reading the store {}", s.url()))
    });
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (store, state) = match loaded {
        Ok(snap) => {
            let invalid = snap.state.validate().err();
            (
                StoreStatus {
                    url: global.store_url(),
                    reachable: true,
                    revision: Some(snap.revision),
                    latency_ms,
                    error: None,
                    state_valid: Some(invalid.is_none()),
                    invalid_reason: invalid.map(|e| e.to_string()),
                },
                Some(snap.state),
            )
        }
        Err(e) => (
            StoreStatus {
                url: global.store_url(),
                reachable: false,
                revision: None,
                latency_ms,
                error: Some(super::error_message(&e)),
                state_valid: None,
                invalid_reason: None,
            },
            None,
        ),
    };
    let names = state.as_ref().map_or_else(Names::empty, Names::from_state);
    let mut report = Vec::new();
    for host in &hosts {
        let dir = crate::conventions::pin_dir(&args.select.bpffs, host);
        let uplink = state
            .as_ref()
            .and_then(|s| s.host(host))
            .map(|h| h.uplink.clone());
        match host_status(host, &dir, uplink.as_deref(), &names) {
            Ok(h) => report.push(h),
            // Listed a moment ago, its pins removed since (its datapath
            // uninstalled, e.g. another lab going down): nothing to report.
            Err(_) if args.select.host.is_none() && !dir.exists() => {}
            Err(e) => return Err(e).with_context(|| format!("reading the pins of {host}")),
        }
    }
    let security_groups = state.as_ref().map(security_group_rows).unwrap_or_default();
    if args.output == OutputFormat::Json {
        let json = serde_json::json!({
            "store": store,
            "security_groups": security_groups,
            "hosts": report,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    if !security_groups.is_empty() {
        println!("security groups (the store's; every host enforces them):");
        let mut t = table(&["owner", "via", "allows", "narrows"]);
        for g in &security_groups {
            t.add_row(vec![
                g.owner.clone(),
                g.via.clone(),
                super::security_group::rules_text(&g.allow),
                if g.narrows.is_empty() {
                    "nobody (no owner reaches it only this way)".to_owned()
                } else {
                    g.narrows.join(", ")
                },
            ]);
        }
        println!("{t}\n");
    }
    for (i, h) in report.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("═══ host {} ═══  (pins {})", h.host, h.pin_dir);
        match h.agent_pids.as_slice() {
            [] => println!("agent:  NOT RUNNING (the datapath keeps running on its pinned links)"),
            pids => println!(
                "agent:  running (pid {})",
                pids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        if let Some(a) = &h.agent {
            // Before its first valid state an agent leaves the pinned maps
            // as the previous agent left them.
            let enforced = a.enforced_revision.map_or_else(
                || "the maps as pinned before it started".to_owned(),
                |r| format!("revision {r}"),
            );
            if a.state_valid {
                println!("        enforcing the state of {enforced}");
            } else {
                println!(
                    "        REFUSED the store's state ({}); still enforcing {enforced}",
                    a.invalid_reason.as_deref().unwrap_or("invalid")
                );
            }
            match &a.dns {
                Some(dns) => println!("dns:    {dns}"),
                None => println!("dns:    not served by this agent"),
            }
        }
        if store.reachable {
            println!(
                "store:  {} reachable (revision {}, {:.1} ms)",
                store.url,
                store.revision.unwrap_or(0),
                store.latency_ms
            );
            if let Some(reason) = &store.invalid_reason {
                println!(
                    "        STATE INVALID: {reason}\n        \
                     (agents refuse it and keep enforcing their last valid state; \
                     fix the store or restore a backup)"
                );
            }
        } else {
            println!(
                "store:  {} UNREACHABLE: {}",
                store.url,
                store.error.as_deref().unwrap_or("")
            );
        }
        println!("\nprograms attached: {}", h.programs.len());
        let mut t = table(&[
            "interface",
            "program",
            "prog id",
            "link id",
            "link",
            "runs",
            "loaded",
        ]);
        for p in &h.programs {
            t.add_row(vec![
                p.interface.clone(),
                if p.program.is_empty() {
                    p.error.clone().unwrap_or_else(|| "?".into())
                } else {
                    p.program.clone()
                },
                p.program_id.to_string(),
                p.link_id.to_string(),
                p.link_type.clone(),
                p.run_count
                    .map_or_else(|| "off".to_owned(), |n| n.to_string()),
                p.loaded_at.clone().unwrap_or_default(),
            ]);
        }
        println!("{t}");
        if h.programs.iter().any(|p| p.run_count.is_none()) {
            println!(
                "runs: off: the kernel counts program runs only with \
                 `sysctl -w kernel.bpf_stats_enabled=1` (costs ~2 clock reads a packet)"
            );
        }
        println!("\nmap pressure:");
        println!("{}", super::maps::map_table(&h.maps));
        println!("\ncounters since the maps were created:");
        let mut t = table(&["direction", "verdict", "reason", "packets", "bytes"]);
        for c in &h.counters {
            t.add_row(vec![
                c.direction.to_owned(),
                c.verdict.to_owned(),
                c.reason.to_owned(),
                c.packets.to_string(),
                c.bytes.to_string(),
            ]);
        }
        println!("{t}");
        println!("monitor events lost: {}", h.monitor_events_lost);
        if !h.service_rows.is_empty() {
            println!("\nservices (this host's SERVICE_TABLES; 0 slots: unhealthy, no new flows):");
            let mut t = table(&["service", "member", "backend", "slots", "share"]);
            for row in &h.service_rows {
                t.add_row(row.clone());
            }
            println!("{t}");
        }
    }
    Ok(())
}
