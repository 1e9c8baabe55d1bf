//! `netfabric agent`: its options, turned into an [`AgentConfig`].

use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::GlobalArgs;
use crate::agent::{self, AgentConfig};

/// `netfabric agent`: run the agent of one host.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// This host's name in the desired state (checked there when the host
    /// has no pins yet). One agent per host: a second one exits 1 naming
    /// the running one's pid.
    #[arg(long, value_name = "NAME")]
    pub host: String,
    /// Join this network namespace first (a lab host: /run/netns/nf-h1).
    #[arg(long, value_name = "PATH")]
    pub netns: Option<PathBuf>,
    /// The bpffs mount; maps and links go under <bpffs>/netfabric/<host>/.
    #[arg(long, value_name = "DIR", default_value = crate::conventions::DEFAULT_BPFFS)]
    pub bpffs: PathBuf,
    /// Where Prometheus `/metrics` is served (bound before joining
    /// --netns, so a lab agent serves on this machine's loopback); an empty
    /// value serves nothing.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
    /// On exit, detach the programs and remove every pin of this host.
    #[arg(long)]
    pub detach_on_exit: bool,
    /// How often container ports are rescanned, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub rescan_ms: u64,
    /// Keep the pinned maps equal to the desired state, attach nothing: no
    /// uplink or container port programs, no interface scans. For scale
    /// tests (many agents on one machine) and dry runs; the host forwards
    /// nothing.
    #[arg(long)]
    pub maps_only: bool,
}

impl AgentArgs {
    /// The agent's configuration: an empty `--metrics-addr` serves nothing.
    pub fn config(self) -> AgentConfig {
        AgentConfig {
            host: self.host,
            netns: self.netns,
            bpffs: self.bpffs,
            metrics_addr: Some(self.metrics_addr).filter(|a| !a.is_empty()),
            detach_on_exit: self.detach_on_exit,
            rescan_interval: Duration::from_millis(self.rescan_ms),
            maps_only: self.maps_only,
        }
    }
}

/// Opens the store first (see [`agent::run`] for why), then runs the agent.
pub fn run(args: AgentArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store()?;
    agent::run(args.config(), store)
}
