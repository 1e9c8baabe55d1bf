//! `netfabric security-group set|delete|list`.

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{GlobalArgs, OutputFormat, output::print_list};
use crate::{
    state::{Allow, SecurityGroup, Via},
    store::StoreExt as _,
};

#[derive(Debug, Subcommand)]
pub enum SecurityGroupCommand {
    /// Narrow what reaches an owner's containers through one way in (a
    /// group the owner is in, or its own containers) to the listed
    /// protocols and ports. Replaces the rules it had for that way in;
    /// takes effect for the very next packet, open connections included.
    #[command(after_help = "\
Examples:
  netfabric security-group set alice --via team --allow tcp/5432 --allow icmp
  netfabric security-group set alice --own --allow tcp/8000-8099
  netfabric security-group set alice --via team --none

Owners that reach alice only through narrowed groups reach her containers only
on the union of those groups' rules; an owner that shares another group with
alice that she did not narrow is not affected. The system owner is never
narrowed.")]
    Set {
        /// The receiving owner.
        owner: String,
        #[command(flatten)]
        via: ViaArgs,
        /// What stays open: tcp/PORT, tcp/FIRST-LAST, udp/PORT,
        /// udp/FIRST-LAST or icmp (repeat for more; at most 8 after merging
        /// overlapping and adjacent ranges).
        #[arg(long = "allow", value_name = "RULE", required_unless_present = "none")]
        allow: Vec<Allow>,
        /// Leave nothing open through this way in.
        #[arg(long, conflicts_with = "allow")]
        none: bool,
    },
    /// Delete a security group: that way in is no longer narrowed (it opens
    /// every port again).
    #[command(after_help = "Example:\n  netfabric security-group delete alice --via team")]
    Delete {
        /// The receiving owner.
        owner: String,
        #[command(flatten)]
        via: ViaArgs,
    },
    /// List security groups.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

/// Which way in a security group narrows.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ViaArgs {
    /// Owners sharing this group with the receiving owner.
    #[arg(long, value_name = "GROUP")]
    via: Option<String>,
    /// The receiving owner's own containers (same-owner traffic).
    #[arg(long)]
    own: bool,
}

impl ViaArgs {
    fn via(self) -> Via {
        match self.via {
            Some(group) => Via::Group(group),
            None => Via::Own,
        }
    }
}

pub fn run(cmd: SecurityGroupCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store()?;
    match cmd {
        SecurityGroupCommand::Set {
            owner,
            via,
            allow,
            none: _,
        } => {
            let via = via.via();
            let (rules, _) = store
                .apply(|s| {
                    s.set_security_group(&owner, via.clone(), &allow)?;
                    Ok(s.security_group(&owner, &via)
                        .map(|g| rules_text(&g.allow))
                        .unwrap_or_default())
                })
                .with_context(|| format!("setting security group {owner}/{via}"))?;
            println!("security group {owner}/{via}: {rules}");
        }
        SecurityGroupCommand::Delete { owner, via } => {
            let via = via.via();
            store
                .apply(|s| s.delete_security_group(&owner, &via))
                .with_context(|| format!("deleting security group {owner}/{via}"))?;
            println!("security group {owner}/{via} deleted");
        }
        SecurityGroupCommand::List { output } => {
            let snapshot = store.load().context("reading the store")?;
            print_list(
                output,
                &snapshot.state.security_groups,
                &["OWNER", "VIA", "ALLOW"],
                |g: &SecurityGroup| {
                    vec![
                        g.owner.clone(),
                        match &g.via {
                            Via::Own => "(own)".to_owned(),
                            Via::Group(group) => group.clone(),
                        },
                        rules_text(&g.allow),
                    ]
                },
            )?;
        }
    }
    Ok(())
}

/// `tcp/5432, icmp`, or `nothing`.
pub(crate) fn rules_text(rules: &[Allow]) -> String {
    if rules.is_empty() {
        "nothing".to_owned()
    } else {
        rules
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
