//! `netfabric agent`: its options, turned into an [`AgentConfig`].

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::Args;

use super::GlobalArgs;
use crate::{
    agent::{self, AgentConfig},
    dns::{DnsConfig, UpstreamSource},
};

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
    /// nothing and serves no DNS.
    #[arg(long)]
    pub maps_only: bool,
    /// Serve no DNS at the containers' gateway (169.254.1.1:53).
    #[arg(long)]
    pub no_dns: bool,
    /// The domain of container names: <container>.<owner>.<domain>.
    #[arg(long, value_name = "DOMAIN", default_value = crate::dns::DEFAULT_DOMAIN,
          value_parser = parse_domain)]
    pub dns_domain: hickory_proto::rr::Name,
    /// Where names that are not containers' are forwarded: IP or IP:PORT,
    /// repeatable; `none` refuses them. Default: the nameservers of the
    /// host's /etc/resolv.conf.
    #[arg(long, value_name = "ADDR", value_parser = parse_upstream)]
    pub dns_upstream: Vec<Upstream>,
}

/// One `--dns-upstream` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    None,
    Server(SocketAddr),
}

fn parse_domain(s: &str) -> Result<hickory_proto::rr::Name, String> {
    crate::dns::parse_domain(s).map_err(|e| e.to_string())
}

fn parse_upstream(s: &str) -> Result<Upstream, String> {
    if s == "none" {
        return Ok(Upstream::None);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Upstream::Server(SocketAddr::new(ip, crate::dns::PORT)));
    }
    s.parse::<SocketAddr>()
        .map(Upstream::Server)
        .map_err(|_| format!("{s:?} is not an IP address, IP:PORT or `none`"))
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
            dns: (!self.no_dns).then(|| DnsConfig {
                domain: self.dns_domain,
                upstream: if self.dns_upstream.is_empty() {
                    UpstreamSource::ResolvConf(crate::dns::HOST_RESOLV_CONF.into())
                } else {
                    UpstreamSource::Servers(
                        self.dns_upstream
                            .iter()
                            .filter_map(|u| match u {
                                Upstream::Server(s) => Some(*s),
                                Upstream::None => None,
                            })
                            .collect(),
                    )
                },
                ..DnsConfig::default()
            }),
        }
    }
}

/// Opens the store first (see [`agent::run`] for why), then runs the agent.
pub fn run(args: AgentArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store()?;
    agent::run(args.config(), store)
}
