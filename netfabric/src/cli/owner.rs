//! `netfabric owner create|set|delete|list`.

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};

use super::{GlobalArgs, OutputFormat, output::print_list};
use crate::{
    state::{Egress, Owner, StateError},
    store::StoreExt as _,
};

/// `--egress`: may the owner's containers open connections to addresses
/// outside every zone?
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EgressArg {
    /// Yes (the default): NATed to the host's underlay address, only the
    /// replies come back.
    Allow,
    /// No: their packets to outside are dropped (`egress_denied`), open
    /// connections included, at their next packet. The host's DNS resolver
    /// stays reachable.
    Deny,
}

impl From<EgressArg> for Egress {
    fn from(e: EgressArg) -> Egress {
        match e {
            EgressArg::Allow => Egress::Allow,
            EgressArg::Deny => Egress::Deny,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum OwnerCommand {
    /// Create an owner (a user). It gets a numeric id that is never reused.
    /// The owner `system` (id 1) always exists: its containers (load
    /// balancers, monitoring) may talk to every container. Re-creating an
    /// existing owner does nothing.
    #[command(
        after_help = "Examples:\n  netfabric owner create alice\n  netfabric owner create batch --egress deny"
    )]
    Create {
        /// Owner name (lowercase letters, digits, '-'; starts with a letter).
        name: String,
        /// May its containers open connections to addresses outside every
        /// zone? Re-creating an existing owner with another value is refused
        /// (use `owner set`).
        #[arg(long, value_enum)]
        egress: Option<EgressArg>,
    },
    /// Change an existing owner. `--egress deny` cuts its open connections
    /// to outside at their next packet.
    #[command(after_help = "Example:\n  netfabric owner set alice --egress deny")]
    Set {
        /// Owner name.
        name: String,
        /// May its containers open connections to addresses outside every
        /// zone?
        #[arg(long, value_enum)]
        egress: EgressArg,
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
        OwnerCommand::Create { name, egress } => {
            let egress = egress.map(Egress::from);
            let (id, _) = store
                .apply(|s| {
                    let existed = s.owner(&name).map(|o| o.egress);
                    let id = s.create_owner(&name)?;
                    match (existed, egress) {
                        (Some(was), Some(want)) if was != want => {
                            return Err(StateError::AlreadyExists {
                                field: format!("owners[{name}].egress"),
                                kind: "owner",
                                name: name.clone(),
                                detail: format!(
                                    " with egress {}; change it with `netfabric owner set {name} --egress {}`",
                                    was.label(),
                                    want.label()
                                ),
                            });
                        }
                        (None, Some(want)) => s.set_owner_egress(&name, want)?,
                        _ => {}
                    }
                    Ok(id)
                })
                .with_context(|| format!("creating owner {name}"))?;
            println!("owner {name}: id {id}");
        }
        OwnerCommand::Set { name, egress } => {
            let egress = Egress::from(egress);
            store
                .apply(|s| s.set_owner_egress(&name, egress))
                .with_context(|| format!("changing owner {name}"))?;
            println!("owner {name}: egress {}", egress.label());
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
                &["NAME", "ID", "CONTAINERS", "GROUPS", "EGRESS"],
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
                        o.egress.label().into(),
                    ]
                },
            )?;
        }
    }
    Ok(())
}
