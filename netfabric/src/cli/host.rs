//! `netfabric host create|delete|list`.

use std::net::Ipv4Addr;

use anyhow::Context as _;
use clap::Subcommand;

use super::{GlobalArgs, OutputFormat, output::print_list};
use crate::{
    MacAddr,
    state::{Host, HostSpec, Ipv4Prefix},
    store::StoreExt as _,
};

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Create a host: one /24 of its zone (10.<zone>.<number>.0/24) whose
    /// containers get .1-.254. Give --number or --subnet; with neither the
    /// lowest free number of the zone is used. Re-creating an identical host
    /// does nothing.
    #[command(
        after_help = "Example:\n  netfabric host create h1 --zone z1 --number 1 --uplink eth0 \\\n      \
                            --underlay-ip 192.168.50.11 --underlay-mac 02:00:c0:a8:32:0b"
    )]
    Create {
        /// Host name (lowercase letters, digits, '-'; starts with a letter).
        name: String,
        /// The zone the host belongs to.
        #[arg(long)]
        zone: String,
        /// Host number 1..=254: the third octet of the host's /24.
        #[arg(long, value_name = "N")]
        number: Option<u32>,
        /// The host's /24 instead of --number, e.g. 10.1.7.0/24 (must lie in
        /// the zone).
        #[arg(long, value_name = "CIDR")]
        subnet: Option<Ipv4Prefix>,
        /// Name of the uplink interface to the underlay (XDP attaches there).
        #[arg(long, value_name = "IFNAME")]
        uplink: String,
        /// The uplink's underlay IPv4 address (outside every zone).
        #[arg(long, value_name = "IP")]
        underlay_ip: Ipv4Addr,
        /// The uplink's MAC: other hosts send this host's traffic to it.
        #[arg(long, value_name = "MAC")]
        underlay_mac: MacAddr,
    },
    /// Delete a host (it must have no containers left).
    Delete {
        /// Host name.
        name: String,
    },
    /// List hosts.
    List {
        /// Only the hosts of this zone.
        #[arg(long)]
        zone: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

pub fn run(cmd: HostCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store()?;
    match cmd {
        HostCommand::Create {
            name,
            zone,
            number,
            subnet,
            uplink,
            underlay_ip,
            underlay_mac,
        } => {
            let spec = HostSpec {
                name: name.clone(),
                zone,
                number,
                subnet,
                uplink,
                underlay_ip,
                underlay_mac,
            };
            let (_, revision) = store
                .apply(|s| s.create_host(spec.clone()))
                .with_context(|| format!("creating host {name}"))?;
            let snapshot = store.load().context("reading the store")?;
            match snapshot.state.host(&name) {
                Some(h) => println!(
                    "host {name}: {} in zone {} (number {})",
                    h.subnet, h.zone, h.number
                ),
                None => tracing::warn!(revision, "host {name} was deleted right after creation"),
            }
        }
        HostCommand::Delete { name } => {
            store
                .apply(|s| s.delete_host(&name))
                .with_context(|| format!("deleting host {name}"))?;
            println!("host {name} deleted");
        }
        HostCommand::List { zone, output } => {
            let snapshot = store.load().context("reading the store")?;
            let state = &snapshot.state;
            let hosts: Vec<&Host> = state
                .hosts
                .iter()
                .filter(|h| zone.as_ref().is_none_or(|z| &h.zone == z))
                .collect();
            print_list(
                output,
                &hosts,
                &[
                    "NAME",
                    "ZONE",
                    "NUMBER",
                    "SUBNET",
                    "UPLINK",
                    "UNDERLAY IP",
                    "UNDERLAY MAC",
                    "CONTAINERS",
                ],
                |h| {
                    vec![
                        h.name.clone(),
                        h.zone.clone(),
                        h.number.to_string(),
                        h.subnet.to_string(),
                        h.uplink.clone(),
                        h.underlay_ip.to_string(),
                        h.underlay_mac.to_string(),
                        state.containers_on(&h.name).count().to_string(),
                    ]
                },
            )?;
        }
    }
    Ok(())
}
