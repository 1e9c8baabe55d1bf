//! `netfabric maps list|dump`: the pinned maps of a host, read straight
//! from bpffs (no agent needed), decoded into names with the store.

use std::path::PathBuf;

use anyhow::Context as _;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use super::{GlobalArgs, OutputFormat};
use crate::observe::{dump, names::Names, pins};

/// Which host's pins to read.
#[derive(Debug, Clone, clap::Args)]
pub struct HostSelect {
    /// The host (its pin directory under <bpffs>/netfabric/); may be left
    /// out when exactly one host is pinned.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// The bpffs mount.
    #[arg(long, value_name = "DIR", default_value = crate::conventions::DEFAULT_BPFFS)]
    pub bpffs: PathBuf,
}

impl HostSelect {
    /// The host's name and pin directory.
    pub fn resolve(&self) -> anyhow::Result<(String, PathBuf)> {
        let host = pins::resolve_host(&self.bpffs, self.host.as_deref())?;
        let dir = crate::conventions::pin_dir(&self.bpffs, &host);
        Ok((host, dir))
    }
}

/// `netfabric maps ...`
#[derive(Debug, clap::Subcommand)]
pub enum MapsCommand {
    /// Every pinned map of a host: type, key/value size, entries used and
    /// capacity.
    List(ListArgs),
    /// The entries of one pinned map, decoded into names and addresses
    /// (owners, containers, hosts, groups, MACs, counter reasons).
    Dump(DumpArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub select: HostSelect,
    #[arg(long, short, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// The map: ENDPOINTS, NEXT_HOPS, GROUP_PAIRS, COUNTERS, ... (any case).
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub select: HostSelect,
    #[arg(long, short, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Names from the store; numbers only (with a warning) when it cannot be
/// read.
pub(crate) fn load_names(global: &GlobalArgs) -> Names {
    let loaded = global.open_store().and_then(|s| {
        s.load()
            .with_context(|| format!("reading the store {}", s.url()))
    });
    match loaded {
        Ok(snap) => {
            if snap.state.hosts.is_empty() {
                eprintln!(
                    "note: the store {} has no hosts; pass --store to decode names",
                    global.store_url()
                );
            }
            Names::from_state(&snap.state)
        }
        Err(e) => {
            eprintln!("note: showing numbers only: {}", super::error_message(&e));
            Names::empty()
        }
    }
}

pub fn run(cmd: MapsCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    match cmd {
        MapsCommand::List(args) => {
            let (host, dir) = args.select.resolve()?;
            let maps = pins::list(&dir).with_context(|| format!("listing the maps of {host}"))?;
            match args.output {
                OutputFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&maps)?);
                }
                OutputFormat::Table => {
                    println!("host {host} ({})", dir.display());
                    println!("{}", map_table(&maps));
                }
            }
        }
        MapsCommand::Dump(args) => {
            let (host, dir) = args.select.resolve()?;
            let names = load_names(global);
            let d = dump::dump(&dir, &args.name, &names)
                .with_context(|| format!("dumping {} of {host}", args.name))?;
            match args.output {
                OutputFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&d.json)?);
                }
                OutputFormat::Table => {
                    let mut t = Table::new();
                    t.load_style(UTF8_FULL_CONDENSED);
                    t.set_header(d.header.iter().copied());
                    for r in &d.rows {
                        t.add_row(r.clone());
                    }
                    println!("{} of host {host}: {} entries", d.map, d.json.len());
                    println!("{t}");
                }
            }
        }
    }
    Ok(())
}

/// The `maps list` table (also used by `status`).
pub(crate) fn map_table(maps: &[pins::MapSummary]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "map", "id", "type", "key", "value", "entries", "capacity", "use",
    ]);
    for m in maps {
        let (entries, usage) = if m.kind == "ringbuf" {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                m.entries.to_string(),
                format!("{:.1}%", m.pressure() * 100.0),
            )
        };
        t.add_row(vec![
            m.name.clone(),
            m.id.to_string(),
            m.kind.clone(),
            m.key_size.to_string(),
            m.value_size.to_string(),
            entries,
            m.capacity.to_string(),
            usage,
        ]);
    }
    t
}
