//! `netfabric zone create|delete|list`.

use std::net::Ipv4Addr;

use anyhow::Context as _;
use clap::Subcommand;

use super::{GlobalArgs, OutputFormat, UsageError, output::print_list};
use crate::{
    MacAddr,
    state::{Gateway, Ipv4Prefix, Zone},
    store::StoreExt as _,
};

#[derive(Debug, Subcommand)]
pub enum ZoneCommand {
    /// Create a zone: one /16 such as 10.1.0.0/16. Hosts of the zone are its
    /// /24s. Re-creating an identical zone does nothing.
    #[command(
        after_help = "Example:\n  netfabric zone create z1 --prefix 10.1.0.0/16\n  \
                            netfabric zone create z2 --prefix 10.2.0.0/16 \
                            --gateway-ip 192.168.60.1 --gateway-mac 02:00:c0:a8:3c:01"
    )]
    Create {
        /// Zone name (lowercase letters, digits, '-'; starts with a letter).
        name: String,
        /// The zone's /16, e.g. 10.1.0.0/16, inside 10.0.0.0/8,
        /// 100.64.0.0/10, 172.16.0.0/12 or 192.168.0.0/16.
        #[arg(long, value_name = "CIDR")]
        prefix: Ipv4Prefix,
        /// Underlay IPv4 of the router that hosts of other zones send this
        /// zone's traffic to.
        #[arg(long, value_name = "IP", requires = "gateway_mac")]
        gateway_ip: Option<Ipv4Addr>,
        /// MAC of that router.
        #[arg(long, value_name = "MAC", requires = "gateway_ip")]
        gateway_mac: Option<MacAddr>,
    },
    /// Delete a zone (it must have no hosts left).
    Delete {
        /// Zone name.
        name: String,
    },
    /// List zones.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

pub fn run(cmd: ZoneCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store()?;
    match cmd {
        ZoneCommand::Create {
            name,
            prefix,
            gateway_ip,
            gateway_mac,
        } => {
            let gateway = match (gateway_ip, gateway_mac) {
                (Some(underlay_ip), Some(underlay_mac)) => Some(Gateway {
                    underlay_ip,
                    underlay_mac,
                }),
                (None, None) => None,
                _ => {
                    return Err(
                        UsageError("--gateway-ip and --gateway-mac go together".into()).into(),
                    );
                }
            };
            let (slot, _) = store
                .apply(|s| s.create_zone(&name, prefix, gateway))
                .with_context(|| format!("creating zone {name}"))?;
            println!("zone {name}: {prefix} (slot {slot})");
        }
        ZoneCommand::Delete { name } => {
            store
                .apply(|s| s.delete_zone(&name))
                .with_context(|| format!("deleting zone {name}"))?;
            println!("zone {name} deleted");
        }
        ZoneCommand::List { output } => {
            let snapshot = store.load().context("reading the store")?;
            let state = &snapshot.state;
            print_list(
                output,
                &state.zones,
                &["NAME", "PREFIX", "SLOT", "GATEWAY", "HOSTS"],
                |z: &Zone| {
                    vec![
                        z.name.clone(),
                        z.prefix.to_string(),
                        z.slot.to_string(),
                        z.gateway
                            .map(|g| format!("{} {}", g.underlay_ip, g.underlay_mac))
                            .unwrap_or_else(|| "-".into()),
                        state
                            .hosts
                            .iter()
                            .filter(|h| h.zone == z.name)
                            .count()
                            .to_string(),
                    ]
                },
            )?;
        }
    }
    Ok(())
}
