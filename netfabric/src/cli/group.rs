//! `netfabric group create|delete|add-member|remove-member|list`.

use anyhow::Context as _;
use clap::Subcommand;

use super::{GlobalArgs, OutputFormat, output::print_list};
use crate::{
    state::{Group, Via},
    store::StoreExt as _,
};

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group of owners. Containers whose owners share a group may
    /// talk to each other (both directions, every port). Re-creating an
    /// identical group does nothing.
    #[command(after_help = "Example:\n  netfabric group create shop --member alice --member bob")]
    Create {
        /// Group name (lowercase letters, digits, '-'; starts with a letter).
        name: String,
        /// An owner to put in the group (repeat for more).
        #[arg(long = "member", value_name = "OWNER")]
        members: Vec<String>,
    },
    /// Delete a group (its members lose the access it granted at once).
    Delete {
        /// Group name.
        name: String,
    },
    /// Add owners to a group (already a member: nothing changes).
    #[command(after_help = "Example:\n  netfabric group add-member shop carol dave")]
    AddMember {
        /// Group name.
        group: String,
        /// Owners to add.
        #[arg(required = true, value_name = "OWNER")]
        owners: Vec<String>,
    },
    /// Remove owners from a group (not a member: nothing changes). Takes
    /// effect for the very next packet, open connections included.
    RemoveMember {
        /// Group name.
        group: String,
        /// Owners to remove.
        #[arg(required = true, value_name = "OWNER")]
        owners: Vec<String>,
    },
    /// List groups and their members.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

pub fn run(cmd: GroupCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store()?;
    match cmd {
        GroupCommand::Create { name, members } => {
            // Repeated --member names one owner once: count the group's
            // members as stored, not the arguments.
            let (count, _) = store
                .apply(|s| {
                    s.create_group(&name, &members)?;
                    Ok(s.group(&name).map_or(0, |g| g.members.len()))
                })
                .with_context(|| format!("creating group {name}"))?;
            println!("group {name}: {count} member(s)");
        }
        GroupCommand::Delete { name } => {
            let (narrowing, _) = store
                .apply(|s| {
                    let via = Via::Group(name.clone());
                    let narrowing = s.security_groups.iter().filter(|g| g.via == via).count();
                    s.delete_group(&name)?;
                    Ok(narrowing)
                })
                .with_context(|| format!("deleting group {name}"))?;
            if narrowing == 0 {
                println!("group {name} deleted");
            } else {
                println!("group {name} deleted, with the {narrowing} security group(s) via it");
            }
        }
        GroupCommand::AddMember { group, owners } => {
            store
                .apply(|s| s.add_group_members(&group, &owners))
                .with_context(|| format!("adding members to group {group}"))?;
            println!("group {group}: added {}", owners.join(", "));
        }
        GroupCommand::RemoveMember { group, owners } => {
            store
                .apply(|s| s.remove_group_members(&group, &owners))
                .with_context(|| format!("removing members from group {group}"))?;
            println!("group {group}: removed {}", owners.join(", "));
        }
        GroupCommand::List { output } => {
            let snapshot = store.load().context("reading the store")?;
            print_list(
                output,
                &snapshot.state.groups,
                &["NAME", "MEMBERS"],
                |g: &Group| {
                    let members: Vec<&str> = g.members.iter().map(String::as_str).collect();
                    vec![
                        g.name.clone(),
                        if members.is_empty() {
                            "-".into()
                        } else {
                            members.join(", ")
                        },
                    ]
                },
            )?;
        }
    }
    Ok(())
}
