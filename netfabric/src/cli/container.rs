//! `netfabric container create|delete|attach|detach|list`.

use std::{net::Ipv4Addr, path::PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{GlobalArgs, OutputFormat, UsageError, output::print_list};
use crate::{
    state::Container,
    store::{Store, StoreExt as _},
};

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create a container and print its address. The address is the lowest
    /// free one of .1-.254 of the host's /24 and stays the container's until
    /// it is deleted (restarts and re-attaches keep it). Creating the same
    /// container again prints the same address and changes nothing.
    #[command(
        after_help = "Example:\n  netfabric container create web --owner alice --host h1\n  \
                            10.1.1.1\n\nOutput: the address alone on stdout, e.g. \
                            ADDR=$(netfabric container create web --owner alice --host h1)"
    )]
    Create {
        /// Container name (lowercase letters, digits, '-'; starts with a
        /// letter).
        name: String,
        /// The owner of the container.
        #[arg(long)]
        owner: String,
        /// The host it runs on.
        #[arg(long)]
        host: String,
        /// Ask for this address instead of the lowest free one (e.g. when
        /// restoring); it must be a free .1-.254 of the host's /24.
        #[arg(long, value_name = "IP")]
        address: Option<Ipv4Addr>,
    },
    /// Delete a container; its address becomes free.
    Delete {
        /// Container name.
        name: String,
    },
    /// Attach the container's network namespace: veth nfc<octet>/eth0,
    /// its persistent address and MAC, the link-local gateway and routes.
    /// The host's agent attaches the TC programs and brings the port up.
    Attach(AttachArgs),
    /// Remove the container's port (both ends of the veth).
    Detach(DetachArgs),
    /// List containers.
    List {
        /// Only the containers on this host.
        #[arg(long)]
        host: Option<String>,
        /// Only the containers of this owner.
        #[arg(long)]
        owner: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

pub fn run(cmd: ContainerCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store()?;
    match cmd {
        ContainerCommand::Attach(args) => attach(args, store.as_ref())?,
        ContainerCommand::Detach(args) => detach(args, store.as_ref())?,
        ContainerCommand::Create {
            name,
            owner,
            host,
            address,
        } => {
            let (address, revision) = store
                .apply(|s| s.create_container(&name, &owner, &host, address))
                .with_context(|| format!("creating container {name}"))?;
            tracing::info!(container = %name, %address, revision, "container created");
            println!("{address}");
        }
        ContainerCommand::Delete { name } => {
            store
                .apply(|s| s.delete_container(&name))
                .with_context(|| format!("deleting container {name}"))?;
            println!("container {name} deleted");
        }
        ContainerCommand::List {
            host,
            owner,
            output,
        } => {
            let snapshot = store.load().context("reading the store")?;
            let containers: Vec<&Container> = snapshot
                .state
                .containers
                .iter()
                .filter(|c| host.as_ref().is_none_or(|h| &c.host == h))
                .filter(|c| owner.as_ref().is_none_or(|o| &c.owner == o))
                .collect();
            print_list(
                output,
                &containers,
                &["NAME", "OWNER", "HOST", "ADDRESS"],
                |c| {
                    vec![
                        c.name.clone(),
                        c.owner.clone(),
                        c.host.clone(),
                        c.address.to_string(),
                    ]
                },
            )?;
        }
    }
    Ok(())
}

/// Attach a container's network namespace to its host.
#[derive(Debug, Clone, Args)]
pub struct AttachArgs {
    /// Container name (it must exist: `container create`).
    pub name: String,
    /// The container's network namespace, e.g. /run/netns/web.
    #[arg(long, value_name = "PATH")]
    pub netns: PathBuf,
    /// The host's network namespace (default: the current one), e.g.
    /// /run/netns/nf-h1 in the lab.
    #[arg(long, value_name = "PATH")]
    pub host_netns: Option<PathBuf>,
    /// The DNS domain of the host's agent (its --dns-domain): the
    /// container's search list is <owner>.<domain> <domain>. For a named
    /// namespace (/run/netns/NAME) the resolv.conf goes to
    /// /etc/netns/NAME/resolv.conf (what `ip netns exec` uses); for others
    /// it is printed.
    #[arg(long, value_name = "DOMAIN", default_value = crate::conventions::DEFAULT_DNS_DOMAIN,
          value_parser = parse_domain)]
    pub dns_domain: String,
}

/// Remove a container's port.
#[derive(Debug, Clone, Args)]
pub struct DetachArgs {
    /// Container name.
    pub name: String,
    /// The host's network namespace (default: the current one).
    #[arg(long, value_name = "PATH")]
    pub host_netns: Option<PathBuf>,
}

fn parse_domain(s: &str) -> Result<String, String> {
    crate::dns::parse_domain(s)
        .map(|n| n.to_string())
        .map_err(|e| e.to_string())
}

fn lookup(store: &dyn Store, name: &str) -> anyhow::Result<(Container, Ipv4Addr)> {
    let snap = store.load().context("reading the store")?;
    let c = snap
        .state
        .container(name)
        .cloned()
        .ok_or_else(|| UsageError(format!("container: no container named {name:?}")))?;
    let host = snap
        .state
        .host(&c.host)
        .ok_or_else(|| UsageError(format!("container {name}: unknown host {:?}", c.host)))?;
    Ok((c, host.subnet.network()))
}

fn attach(args: AttachArgs, store: &dyn Store) -> anyhow::Result<()> {
    let (c, subnet) = lookup(store, &args.name)?;
    let port = crate::port::attach(&c, subnet, &args.netns, args.host_netns.as_deref())
        .with_context(|| format!("attaching container {}", c.name))?;
    println!(
        "{} {} {} (host port {}, up once the agent attached it)",
        c.name, port.address, port.container_mac, port.name
    );
    match crate::port::resolv::netns_resolv_conf_path(&args.netns) {
        Some(path) => {
            crate::port::resolv::write_resolv_conf(&path, &c.owner, &args.dns_domain)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("resolver: {}", path.display());
        }
        None => print!(
            "resolver (for the container's /etc/resolv.conf):\n{}",
            crate::port::resolv::resolv_conf(&c.owner, &args.dns_domain)
        ),
    }
    Ok(())
}

fn detach(args: DetachArgs, store: &dyn Store) -> anyhow::Result<()> {
    let (c, _) = lookup(store, &args.name)?;
    let had = crate::port::detach(&c, args.host_netns.as_deref())
        .with_context(|| format!("detaching container {}", c.name))?;
    println!(
        "container {} {}",
        c.name,
        if had { "detached" } else { "was not attached" }
    );
    Ok(())
}
