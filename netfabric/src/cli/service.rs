//! `netfabric service create|delete|add-backend|remove-backend|set|list`.

use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::Context as _;
use clap::Subcommand;
use netfabric_common::service::service_id;
use serde::Serialize;

use super::{GlobalArgs, OutputFormat, UsageError, output::print_list};
use crate::{
    observe::{
        dump::{self, ServiceMembers},
        pins,
    },
    state::{HealthCheck, Service, ServicePortSpec, ServiceSpec, State},
    store::StoreExt as _,
};

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service and print its VIP: the lowest free address of its
    /// zone's service range (<zone>.0.1-254), kept for the service's life.
    /// Clients of owners that may talk to the service's owner reach the
    /// backends through it, balanced at the client's host (Maglev);
    /// established connections keep their backend. Creating the same
    /// service again prints the same VIP and changes nothing.
    #[command(after_help = "\
Examples:
  netfabric service create api --owner alice --port tcp/80:8080 --backend web-1 --backend web-2
  10.1.0.1
  netfabric service create dns --owner alice --port udp/53 --port tcp/53 --backend ns-1
  netfabric service create api --owner alice --port tcp/80 --health http:/healthz

Output: the VIP alone on stdout. Backends are containers of the service's owner
in the service's zone. VIPs are reachable from containers only (east-west): the
uplink never serves them; publish a service through a system-owned container
(e.g. haproxy) instead. See docs/services.md.")]
    Create {
        /// Service name (lowercase letters, digits, '-'; starts with a
        /// letter); unique per owner and not the name of one of the owner's
        /// containers.
        name: String,
        /// The owner of the service and of its backends.
        #[arg(long)]
        owner: String,
        /// A port the VIP serves: tcp/PORT or udp/PORT, with :TARGET when
        /// the backends listen on another port (tcp/80:8080). Repeat for
        /// more (at most 16).
        #[arg(long = "port", value_name = "PORT", required = true)]
        ports: Vec<ServicePortSpec>,
        /// A backend container (repeat for more; at most 128). Each gets
        /// the lowest free member index.
        #[arg(long = "backend", value_name = "CONTAINER")]
        backends: Vec<String>,
        /// The zone whose service range holds the VIP (default: the only
        /// zone).
        #[arg(long)]
        zone: Option<String>,
        /// Ask for this VIP instead of the lowest free one: a free .1-.254
        /// of the zone's service range.
        #[arg(long, value_name = "IP")]
        vip: Option<Ipv4Addr>,
        /// How each agent checks its local backends on the first port's
        /// target port: tcp (connect) or http:/PATH (GET, 2xx and 3xx are
        /// healthy).
        #[arg(long, value_name = "CHECK", default_value = "tcp")]
        health: HealthCheck,
    },
    /// Delete a service: its VIP stops answering (open flows end) and
    /// becomes free.
    #[command(after_help = "Example:\n  netfabric service delete api --owner alice")]
    Delete {
        /// Service name.
        name: String,
        #[arg(long)]
        owner: String,
    },
    /// Add backends to a service (already one: no change). A new backend
    /// takes a share of the new connections; open ones keep theirs.
    #[command(after_help = "Example:\n  netfabric service add-backend api web-3 --owner alice")]
    AddBackend {
        /// Service name.
        name: String,
        /// Backend containers.
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
        #[arg(long)]
        owner: String,
    },
    /// Remove backends from a service: their open flows through the VIP
    /// end, and only their share of new ones moves to the others.
    #[command(after_help = "Example:\n  netfabric service remove-backend api web-1 --owner alice")]
    RemoveBackend {
        /// Service name.
        name: String,
        /// Backend containers.
        #[arg(value_name = "CONTAINER", required = true)]
        containers: Vec<String>,
        #[arg(long)]
        owner: String,
    },
    /// Replace a service's ports and/or its health check.
    #[command(after_help = "\
Examples:
  netfabric service set api --owner alice --port tcp/80:8080 --port tcp/443:8443
  netfabric service set api --owner alice --health http:/ready")]
    Set {
        /// Service name.
        name: String,
        #[arg(long)]
        owner: String,
        /// The ports, replacing all the service had (tcp/PORT[:TARGET],
        /// udp/PORT[:TARGET]; repeat for more).
        #[arg(long = "port", value_name = "PORT")]
        ports: Vec<ServicePortSpec>,
        /// The health check: tcp or http:/PATH.
        #[arg(long, value_name = "CHECK")]
        health: Option<HealthCheck>,
    },
    /// List services: VIP, ports, health check, backends with their
    /// member index and, on a machine with pinned maps, their health as
    /// that host's SERVICE_TABLES holds it (up: takes new flows; down: a
    /// failed health check; not applied: the agent has not written it yet).
    List {
        /// Only the services of this owner.
        #[arg(long)]
        owner: Option<String>,
        /// The host whose pinned tables give the health (default: the only
        /// host pinned here, if there is one).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// The bpffs mount.
        #[arg(long, value_name = "DIR", default_value = crate::conventions::DEFAULT_BPFFS)]
        bpffs: std::path::PathBuf,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

pub fn run(cmd: ServiceCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    if let ServiceCommand::Set {
        ports,
        health: None,
        ..
    } = &cmd
        && ports.is_empty()
    {
        return Err(UsageError("service set: give --port and/or --health".into()).into());
    }
    let store = global.open_store()?;
    match cmd {
        ServiceCommand::Create {
            name,
            owner,
            ports,
            backends,
            zone,
            vip,
            health,
        } => {
            let spec = ServiceSpec {
                name: name.clone(),
                owner: owner.clone(),
                zone,
                vip,
                ports,
                backends,
                health,
            };
            let (vip, revision) = store
                .apply(|s| s.create_service(spec.clone()))
                .with_context(|| format!("creating service {owner}/{name}"))?;
            tracing::info!(service = %name, %owner, %vip, revision, "service created");
            println!("{vip}");
        }
        ServiceCommand::Delete { name, owner } => {
            store
                .apply(|s| s.delete_service(&owner, &name))
                .with_context(|| format!("deleting service {owner}/{name}"))?;
            println!("service {owner}/{name} deleted");
        }
        ServiceCommand::AddBackend {
            name,
            containers,
            owner,
        } => {
            let (backends, _) = store
                .apply(|s| {
                    s.add_service_backends(&owner, &name, &containers)?;
                    Ok(s.service(&owner, &name)
                        .map(backends_text)
                        .unwrap_or_default())
                })
                .with_context(|| format!("adding backends to service {owner}/{name}"))?;
            println!("service {owner}/{name}: backends {backends}");
        }
        ServiceCommand::RemoveBackend {
            name,
            containers,
            owner,
        } => {
            let (backends, _) = store
                .apply(|s| {
                    s.remove_service_backends(&owner, &name, &containers)?;
                    Ok(s.service(&owner, &name)
                        .map(backends_text)
                        .unwrap_or_default())
                })
                .with_context(|| format!("removing backends from service {owner}/{name}"))?;
            println!("service {owner}/{name}: backends {backends}");
        }
        ServiceCommand::Set {
            name,
            owner,
            ports,
            health,
        } => {
            let ports = (!ports.is_empty()).then_some(ports);
            let (text, _) = store
                .apply(|s| {
                    s.set_service(&owner, &name, ports.clone(), health.clone())?;
                    Ok(s.service(&owner, &name)
                        .map(|svc| format!("{} health {}", ports_text(svc), svc.health))
                        .unwrap_or_default())
                })
                .with_context(|| format!("setting service {owner}/{name}"))?;
            println!("service {owner}/{name}: {text}");
        }
        ServiceCommand::List {
            owner,
            host,
            bpffs,
            output,
        } => {
            let snapshot = store.load().context("reading the store")?;
            let state = &snapshot.state;
            let seen = match host {
                Some(h) => Some(
                    pins::resolve_host(&bpffs, Some(&h))
                        .map_err(|e| UsageError(format!("--host: {e}")))?,
                ),
                None => pins::resolve_host(&bpffs, None).ok(),
            };
            let tables = seen
                .as_ref()
                .map(|h| dump::service_members(&crate::conventions::pin_dir(&bpffs, h)))
                .transpose()?;
            let rows: Vec<ServiceRow> = state
                .services
                .iter()
                .filter(|s| owner.as_ref().is_none_or(|o| s.owner == *o))
                .map(|s| ServiceRow::of(state, s, seen.as_deref(), tables.as_ref()))
                .collect();
            print_list(
                output,
                &rows,
                &["OWNER", "NAME", "ZONE", "VIP", "PORTS", "CHECK", "BACKENDS"],
                |r: &ServiceRow| {
                    let s = &r.service;
                    vec![
                        s.owner.clone(),
                        s.name.clone(),
                        s.zone.clone(),
                        s.vip.to_string(),
                        ports_text(s),
                        s.health.to_string(),
                        r.backends_text(),
                    ]
                },
            )?;
        }
    }
    Ok(())
}

/// A service as `list` shows it: as stored, with each backend's health as
/// one host's pinned tables hold it.
#[derive(Debug, Serialize)]
struct ServiceRow {
    #[serde(flatten)]
    service: Service,
    /// The host whose tables gave the health (`None`: no pinned host here).
    #[serde(skip_serializing_if = "Option::is_none")]
    health_seen_by: Option<String>,
    /// Backend → `up`, `down` or `not applied`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    backend_health: BTreeMap<String, &'static str>,
}

impl ServiceRow {
    fn of(
        state: &State,
        s: &Service,
        host: Option<&str>,
        tables: Option<&BTreeMap<u32, ServiceMembers>>,
    ) -> ServiceRow {
        let mut backend_health = BTreeMap::new();
        if let Some(tables) = tables {
            let table = state
                .zone(&s.zone)
                .and_then(|z| tables.get(&service_id(z.slot, u32::from(s.vip))));
            for b in &s.backends {
                let address = state.container(&b.container).map(|c| u32::from(c.address));
                let i = usize::from(b.member);
                let health = match table {
                    Some(t) if address.is_some() && t.members.get(i).copied() == address => {
                        if t.healthy & (1u128 << i) != 0 {
                            "up"
                        } else {
                            "down"
                        }
                    }
                    _ => "not applied",
                };
                backend_health.insert(b.container.clone(), health);
            }
        }
        ServiceRow {
            service: s.clone(),
            health_seen_by: tables.and(host.map(str::to_owned)),
            backend_health,
        }
    }

    /// `web-1#0 up, web-2#1 down`.
    fn backends_text(&self) -> String {
        if self.service.backends.is_empty() {
            return "none".to_owned();
        }
        self.service
            .backends
            .iter()
            .map(|b| match self.backend_health.get(&b.container) {
                Some(h) => format!("{}#{} {h}", b.container, b.member),
                None => format!("{}#{}", b.container, b.member),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `tcp/80:8080, udp/53`.
pub(crate) fn ports_text(s: &Service) -> String {
    s.ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `web-1#0, web-2#1` (container and member index), or `none`.
pub(crate) fn backends_text(s: &Service) -> String {
    if s.backends.is_empty() {
        return "none".to_owned();
    }
    s.backends
        .iter()
        .map(|b| format!("{}#{}", b.container, b.member))
        .collect::<Vec<_>>()
        .join(", ")
}
