//! `netfabric lab up|down|status|run`: the options, turned into a
//! [`LabConfig`].

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::lab::{self, LabConfig, LabLocation, LabStore};

/// `netfabric lab ...`
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab and start its agents (in the background). With
    /// `--store etcd` the lab's store is a local three-member etcd cluster.
    Up(LabArgs),
    /// Remove everything the lab made (namespaces, pins, agents, state).
    Down(LabName),
    /// Hosts, agents (alive?) and containers of the lab.
    Status(LabName),
    /// Up, print what to try, wait for Ctrl-C, down.
    Run(LabArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LabName {
    /// Lab name: `lab` gives hosts h1..hN; another name prefixes them.
    #[arg(long, default_value = "lab")]
    pub name: String,
    /// Directory of the lab's store, manifest and logs (default
    /// /var/lib/netfabric/<name>).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The bpffs mount.
    #[arg(long, value_name = "DIR", default_value = crate::conventions::DEFAULT_BPFFS)]
    pub bpffs: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct LabArgs {
    #[command(flatten)]
    pub lab: LabName,
    /// Number of hosts (1..=9).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub hosts: u8,
    /// The agent of host N serves /metrics on 127.0.0.1:<base + N>; 0
    /// serves none.
    #[arg(long, value_name = "PORT", default_value_t = 9464)]
    pub metrics_port_base: u16,
}

impl LabName {
    fn location(self) -> LabLocation {
        LabLocation {
            name: self.name,
            dir: self.dir,
            bpffs: self.bpffs,
        }
    }
}

impl LabArgs {
    /// The lab to build; its store comes from the global `--store`.
    fn config(self, global: &GlobalArgs) -> LabConfig {
        LabConfig {
            lab: self.lab.location(),
            hosts: self.hosts,
            store: lab_store(global.store.as_deref()),
            exe: None,
            metrics_port_base: self.metrics_port_base,
        }
    }
}

/// The lab's store from the global `--store` (or `NETFABRIC_STORE`): `etcd`
/// starts a local etcd cluster; anything else is the file store in the
/// lab's directory.
fn lab_store(store: Option<&str>) -> LabStore {
    match store {
        Some("etcd") => LabStore::Etcd,
        // A file store URL (e.g. the exported NETFABRIC_STORE of a lab) is
        // the lab's own business: the lab always keeps its file store in
        // its directory.
        None => LabStore::File,
        Some(url) if url.starts_with("file://") => LabStore::File,
        Some(_) => {
            tracing::warn!("the lab uses its own store: --store takes `etcd` or nothing here");
            LabStore::File
        }
    }
}

pub fn run(cmd: LabCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    match cmd {
        LabCommand::Up(args) => {
            let m = lab::up(&args.config(global))?;
            lab::print_try(&m);
            Ok(())
        }
        LabCommand::Down(name) => lab::down(&name.location()),
        LabCommand::Status(name) => lab::status(&name.location()),
        LabCommand::Run(args) => lab::run(&args.config(global)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_etcd_gives_the_lab_an_etcd_store() {
        assert_eq!(lab_store(Some("etcd")), LabStore::Etcd);
        assert_eq!(lab_store(None), LabStore::File);
        assert_eq!(lab_store(Some("file:///x/state.json")), LabStore::File);
        assert_eq!(lab_store(Some("etcd://127.0.0.1:2379")), LabStore::File);
    }
}
