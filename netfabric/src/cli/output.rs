//! `--output table|json` for list commands.

use anyhow::Context as _;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

/// How list commands print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    #[default]
    Table,
    /// A JSON array, the objects as in the state file, for scripts.
    Json,
}

/// Prints `rows` as a table with `header` (one `cells` per row) or as JSON.
pub(crate) fn print_list<T: Serialize>(
    format: OutputFormat,
    items: &[T],
    header: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(items).context("encoding JSON")?;
            println!("{json}");
        }
        OutputFormat::Table => {
            let mut table = Table::new();
            table.load_style(UTF8_FULL_CONDENSED);
            table.set_header(header.iter().copied());
            for item in items {
                table.add_row(cells(item));
            }
            println!("{table}");
        }
    }
    Ok(())
}
