//! The `netfabric` command line (clap derive): global options, the
//! subcommand tree, and exit codes.
//!
//! To add a subcommand: add a module under `cli/` with its clap
//! `Args`/`Subcommand` type and a `run(args, &GlobalArgs) ->
//! anyhow::Result<()>`, a variant to [`Command`] and an arm to [`run`].
//!
//! ## Exit codes
//! * `0` ([`EXIT_OK`]): success.
//! * `1` ([`EXIT_RUNTIME`]): runtime error: the store could not be read or
//!   written (I/O, permissions, lock timeout, a corrupt or invalid state
//!   file).
//! * `2` ([`EXIT_USAGE`]): usage or validation error: bad arguments, or the
//!   change was refused (bad input such as overlapping zones, an unknown
//!   owner, a full host). Nothing was applied.

mod agent;
mod cni;
mod container;
mod group;
mod host;
mod lab;
mod maps;
mod monitor;
mod output;
mod owner;
mod security_group;
mod service;
mod status;
mod zone;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

pub use output::OutputFormat;

pub use crate::errors::error_message;

use crate::{
    state::StateError,
    store::{self, FileStore, Store, StoreError},
};

/// Success.
pub const EXIT_OK: u8 = 0;
/// Runtime error (store I/O, lock timeout, corrupt state file).
pub const EXIT_RUNTIME: u8 = 1;
/// Usage or validation error; nothing was applied.
pub const EXIT_USAGE: u8 = 2;

const ABOUT: &str = "netfabric: the network of the container PaaS";

const LONG_ABOUT: &str = "\
netfabric: the network of the container PaaS.

The network is flat (no subnets or VLANs between users) and isolation is by
ownership: containers of the same owner may always talk to each other, owners
that share a group may talk to each other, and the reserved `system` owner
(load balancers, monitoring) may talk to everyone. Everything else is dropped.

These commands edit the desired state (zones, hosts, owners, groups,
containers) in the store; the agent on every host applies it to the datapath.

Address plan: a zone is a /16 (10.1.0.0/16), a host is a /24 of its zone
(host number 7 -> 10.1.7.0/24), a container gets one of .1-.254 of its host's
/24 when it is created and keeps it until it is deleted.

Names (zones, hosts, owners, groups, containers) are 1 to 63 characters of
lowercase letters, digits and '-', starting with a letter.";

const AFTER_HELP: &str = "\
Quick start:
  netfabric zone create z1 --prefix 10.1.0.0/16
  netfabric host create h1 --zone z1 --number 1 --uplink eth0 \\
      --underlay-ip 192.168.50.11 --underlay-mac 02:00:c0:a8:32:0b
  netfabric owner create alice
  netfabric container create web --owner alice --host h1   # prints 10.1.1.1
  netfabric container list

Store: --store file:///path/state.json (default file:///var/lib/netfabric/state.json)
or etcd://host:port[,host:port...] (the cluster store),
or --state-dir DIR for DIR/state.json; without either, NETFABRIC_STORE.

Exit codes: 0 ok; 1 runtime error (store unreadable or unwritable, lock timeout);
2 usage or validation error (bad arguments, refused change: nothing was applied).

More logs: -v (info), -vv (debug), or RUST_LOG=netfabric=trace.";

/// The `netfabric` command line.
#[derive(Debug, Parser)]
#[command(
    name = "netfabric",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Where the desired state is stored: file:///path/state.json (the
    /// embedded store; default file:///var/lib/netfabric/state.json) or the
    /// cluster store etcd://[user:pass@]host:port[,host:port...][/prefix]
    /// (etcds:// or ?ca=..&cert=..&key=.. for TLS). Without --store and
    /// --state-dir, the environment variable NETFABRIC_STORE names it.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,

    /// Use the embedded store in DIR (DIR/state.json); shorthand for
    /// --store file:///DIR/state.json.
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "store")]
    pub state_dir: Option<PathBuf>,

    /// More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG
    /// overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The environment variable that names the store when neither `--store`
/// nor `--state-dir` is given (`lab up` prints a line that sets it).
pub const STORE_ENV: &str = "NETFABRIC_STORE";

impl GlobalArgs {
    /// Fills `store` from [`STORE_ENV`] unless the command line chose a
    /// store: an exported variable never conflicts with `--state-dir`.
    pub fn with_store_from_env(mut self) -> Self {
        if self.store.is_none() && self.state_dir.is_none() {
            self.store = std::env::var(STORE_ENV).ok().filter(|s| !s.is_empty());
        }
        self
    }

    /// The store URL these options name.
    pub fn store_url(&self) -> String {
        match (&self.store, &self.state_dir) {
            (Some(url), _) => url.clone(),
            (None, Some(dir)) => {
                let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
                format!("file://{}", dir.join(store::STATE_FILE_NAME).display())
            }
            (None, None) => store::default_url(),
        }
    }

    /// Opens the store these options name.
    pub fn open_store(&self) -> anyhow::Result<Box<dyn Store>> {
        if let (None, Some(dir)) = (&self.store, &self.state_dir) {
            return Ok(Box::new(FileStore::in_dir(dir)));
        }
        let url = self.store_url();
        // Every error of `open` names the URL already.
        let store = store::open(&url).context("opening the store")?;
        tracing::debug!(store = %store.url(), "store opened");
        Ok(store)
    }

    /// The default log filter for `-v` counts.
    pub fn log_filter(&self) -> &'static str {
        match self.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Zones: one /16 each (create, delete, list).
    #[command(subcommand)]
    Zone(zone::ZoneCommand),

    /// Hosts: one /24 of a zone each, with the uplink and its underlay
    /// address (create, delete, list).
    #[command(subcommand)]
    Host(host::HostCommand),

    /// Owners: the users whose containers may always talk to each other
    /// (create, delete, list).
    #[command(subcommand)]
    Owner(owner::OwnerCommand),

    /// Groups: sets of owners whose containers may talk to each other
    /// (create, delete, add-member, remove-member, list).
    #[command(subcommand)]
    Group(group::GroupCommand),

    /// Security groups: an owner narrows what reaches its containers
    /// through a group (or from its own containers) to some protocols and
    /// ports (set, delete, list).
    #[command(subcommand)]
    SecurityGroup(security_group::SecurityGroupCommand),

    /// Containers: each gets a persistent address on its host (create,
    /// delete, list).
    #[command(subcommand)]
    Container(container::ContainerCommand),

    /// Services: a persistent virtual address (VIP) in front of an owner's
    /// containers, balanced at the client's host (create, delete,
    /// add-backend, remove-backend, set, list).
    #[command(subcommand)]
    Service(service::ServiceCommand),

    /// The agent of one host: loads, attaches and pins the datapath and
    /// keeps its maps equal to the desired state.
    Agent(agent::AgentArgs),

    /// The lab: a zone of hosts, containers and agents built from network
    /// namespaces on this machine (up, down, status, run).
    #[command(subcommand)]
    Lab(lab::LabCommand),

    /// The pinned BPF maps of a host, read from bpffs (no agent needed):
    /// list them, or dump one decoded into names and addresses.
    #[command(subcommand)]
    Maps(maps::MapsCommand),

    /// Live drops of a host from its ring buffer: time, direction, source,
    /// destination, reason; filters and JSON lines.
    Monitor(monitor::MonitorArgs),

    /// One screen per host: agent, programs attached, map pressure,
    /// counters by reason, store reachability.
    Status(status::StatusArgs),

    /// Container runtimes (podman, containerd, Kubernetes): install the
    /// CNI plugin and its network configuration.
    #[command(subcommand)]
    Cni(cni::CniCommand),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { global, command } = cli;
    let global = &global.with_store_from_env();
    match command {
        Command::Zone(cmd) => zone::run(cmd, global),
        Command::Host(cmd) => host::run(cmd, global),
        Command::Owner(cmd) => owner::run(cmd, global),
        Command::Group(cmd) => group::run(cmd, global),
        Command::SecurityGroup(cmd) => security_group::run(cmd, global),
        Command::Container(cmd) => container::run(cmd, global),
        Command::Service(cmd) => service::run(cmd, global),
        Command::Agent(args) => agent::run(args, global),
        Command::Lab(cmd) => lab::run(cmd, global),
        Command::Maps(cmd) => maps::run(cmd, global),
        Command::Monitor(args) => monitor::run(args, global),
        Command::Status(args) => status::run(args, global),
        Command::Cni(cmd) => cni::run(cmd, global),
    }
}

/// A usage error found after parsing (a bad combination of options, a bad
/// store URL): exits with [`EXIT_USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error: [`EXIT_USAGE`] for refused input,
/// [`EXIT_RUNTIME`] otherwise.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    let usage = err.chain().any(|cause| {
        cause.is::<StateError>()
            || cause.is::<UsageError>()
            || cause.is::<crate::agent::UnknownHost>()
            || matches!(
                cause.downcast_ref::<StoreError>(),
                Some(StoreError::Rejected(_) | StoreError::BadUrl { .. })
            )
    });
    ExitCode::from(if usage { EXIT_USAGE } else { EXIT_RUNTIME })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn refused_changes_exit_2_and_failures_exit_1() {
        let refused = anyhow::Error::new(StoreError::from(StateError::Invalid {
            field: "zones[z].prefix".into(),
            message: "x".into(),
        }))
        .context("creating zone z");
        assert_eq!(exit_code(&refused), ExitCode::from(EXIT_USAGE));
        let io = anyhow::Error::new(StoreError::Io {
            action: "reading",
            path: "/x".into(),
            source: std::io::Error::other("boom"),
        });
        assert_eq!(exit_code(&io), ExitCode::from(EXIT_RUNTIME));
    }
}
