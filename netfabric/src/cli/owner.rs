//! `netfabric owner create|delete|list`.

use anyhow::Context as _;
use clap::Subcommand;

use super::{GlobalArgs, OutputFormat, output::print_list};
use crate::{state::Owner, store::StoreExt as _};

#[derive(Debug, Subcommand)]
pub enum OwnerCommand {
    /// Create an owner (a user). It gets a numeric id that is never reused.
    /// The owner `system` (id 1) always exists: its containers (load
    /// balancers, monitoring) may talk to every container. Re-creating an
    /// existing owner does nothing.
    #[command(after_help = "Example:\n  netfabric owner create alice")]
    Create {
        /// Owner name (lowercase letters, digits, '-'; starts with a letter).
        name: String,
    },
    /// Delete an owner (it must own no container and be in no group).
    Delete {
        /// Owner name.
        name: String,
    },
    /// List owners.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

pub fn run(cmd: OwnerCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = global.open_store()?;
    match cmd {
        OwnerCommand::Create { name } => {
            let (id, _) = store
                .apply(|s| s.create_owner(&name))
                .with_context(|| format!("creating owner {name}"))?;
            println!("owner {name}: id {id}");
        }
        OwnerCommand::Delete { name } => {
            store
                .apply(|s| s.delete_owner(&name))
                .with_context(|| format!("deleting owner {name}"))?;
            println!("owner {name} deleted");
        }
        OwnerCommand::List { output } => {
            let snapshot = store.load().context("reading the store")?;
            let state = &snapshot.state;
            print_list(
                output,
                &state.owners,
                &["NAME", "ID", "CONTAINERS", "GROUPS"],
                |o: &Owner| {
                    let groups: Vec<&str> = state
                        .groups
                        .iter()
                        .filter(|g| g.members.contains(&o.name))
                        .map(|g| g.name.as_str())
                        .collect();
                    vec![
                        o.name.clone(),
                        o.id.to_string(),
                        state
                            .containers
                            .iter()
                            .filter(|c| c.owner == o.name)
                            .count()
                            .to_string(),
                        if groups.is_empty() {
                            "-".into()
                        } else {
                            groups.join(", ")
                        },
                    ]
                },
            )?;
        }
    }
    Ok(())
}
