//! `netfabric container attach|detach` (the variants live in
//! `cli::container`; the arguments and handlers here).

use std::path::PathBuf;

use anyhow::Context as _;

use crate::{cli::GlobalArgs, store::Store};

/// Attach a container's network namespace to its host.
#[derive(Debug, Clone, clap::Args)]
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
}

/// Remove a container's port.
#[derive(Debug, Clone, clap::Args)]
pub struct DetachArgs {
    /// Container name.
    pub name: String,
    /// The host's network namespace (default: the current one).
    #[arg(long, value_name = "PATH")]
    pub host_netns: Option<PathBuf>,
}

fn lookup(
    store: &dyn Store,
    name: &str,
) -> anyhow::Result<(crate::state::Container, std::net::Ipv4Addr)> {
    let snap = store.load().context("reading the store")?;
    let c =
        snap.state.container(name).cloned().ok_or_else(|| {
            crate::cli::UsageError(format!("container: no container named {name:?}"))
        })?;
    let host = snap.state.host(&c.host).ok_or_else(|| {
        crate::cli::UsageError(format!("container {name}: unknown host {:?}", c.host))
    })?;
    Ok((c, host.subnet.network()))
}

pub fn attach(args: AttachArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store()?;
    let (c, subnet) = lookup(store.as_ref(), &args.name)?;
    let port = super::attach(&c, subnet, &args.netns, args.host_netns.as_deref())
        .with_context(|| format!("attaching container {}", c.name))?;
    println!(
        "{} {} {} (host port {}, up once the agent attached it)",
        c.name, port.address, port.container_mac, port.name
    );
    Ok(())
}

pub fn detach(args: DetachArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store()?;
    let (c, _) = lookup(store.as_ref(), &args.name)?;
    let had = super::detach(&c, args.host_netns.as_deref())
        .with_context(|| format!("detaching container {}", c.name))?;
    println!(
        "container {} {}",
        c.name,
        if had { "detached" } else { "was not attached" }
    );
    Ok(())
}
