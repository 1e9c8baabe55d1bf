//! `netfabric cni install`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{GlobalArgs, UsageError};
use crate::cni::install::{
    self, DEFAULT_BIN_DIR, DEFAULT_CONF_DIR, DEFAULT_NETWORK, InstallConfig, InstallError,
};

#[derive(Debug, Subcommand)]
pub enum CniCommand {
    /// Install the CNI plugin `netfabric-cni` and a network configuration
    /// (conflist) where container runtimes look for them. The plugin finds
    /// a container by its name in the store (the runtime's K8S_POD_NAME,
    /// prefixed with K8S_POD_NAMESPACE- when given) and gives it its
    /// persistent address; an unknown container is created with the
    /// owner named by CNI_ARGS owner= or --default-owner.
    #[command(after_help = "Example (podman, host h1):\n  \
        netfabric --store etcd://10.0.0.5:2379 cni install --host h1 --default-owner alice\n  \
        podman run --network netfabric --name web ...")]
    Install(InstallArgs),
}

/// Where and what to install.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// This host's name in the store.
    #[arg(long)]
    pub host: String,
    /// The network's name (podman --network NAME); the conflist is
    /// 10-NAME.conflist.
    #[arg(long, default_value = DEFAULT_NETWORK)]
    pub network: String,
    /// The owner of containers the network creates when the runtime names
    /// none (without it, unknown containers are refused).
    #[arg(long, value_name = "OWNER")]
    pub default_owner: Option<String>,
    /// The directory the runtime looks for plugins in (podman on Debian
    /// also searches /usr/lib/cni).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BIN_DIR)]
    pub bin_dir: PathBuf,
    /// The directory the runtime reads network configurations from.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CONF_DIR)]
    pub conf_dir: PathBuf,
    /// The plugin executable to install (default: netfabric-cni beside
    /// this netfabric).
    #[arg(long, value_name = "PATH")]
    pub plugin: Option<PathBuf>,
    /// The host's network namespace, when it is not the runtime's (a lab
    /// host: /run/netns/nf-h1).
    #[arg(long, value_name = "PATH")]
    pub host_netns: Option<PathBuf>,
    /// Where bpffs is mounted (default /sys/fs/bpf).
    #[arg(long, value_name = "DIR")]
    pub bpffs: Option<PathBuf>,
}

pub fn run(cmd: CniCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    match cmd {
        CniCommand::Install(args) => install(args, global),
    }
}

fn install(args: InstallArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let plugin = match args.plugin {
        Some(p) => p,
        None => std::env::current_exe()
            .context("finding this executable")?
            .with_file_name(crate::cni::spec::PLUGIN_TYPE),
    };
    let store = global.open_store()?;
    let config = InstallConfig {
        plugin,
        bin_dir: args.bin_dir,
        conf_dir: args.conf_dir,
        network: args.network,
        store_url: store.url(),
        host: args.host,
        default_owner: args.default_owner,
        host_netns: args.host_netns,
        bpffs: args.bpffs,
    };
    let installed = install::install(&config, store.as_ref()).map_err(|e| match e {
        InstallError::Invalid { .. } => anyhow::Error::new(UsageError(e.to_string())),
        e => anyhow::Error::new(e).context("installing the CNI plugin"),
    })?;
    println!("plugin   {}", installed.plugin.display());
    println!("conflist {}", installed.conflist.display());
    Ok(())
}
