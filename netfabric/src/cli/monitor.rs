//! `netfabric monitor`: live drops of one host, one line each.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use netfabric_common::{Direction, DropReason};
use serde::Serialize;

use super::{GlobalArgs, OutputFormat, maps::HostSelect};
use crate::observe::{
    clock::Clock,
    monitor::{self, DropRecord, Filter, Lease, Ports, Reader},
};

/// `netfabric monitor`
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub select: HostSelect,
    /// Only drops with this reason (policy_denied, spoofed_source_ip, ...).
    #[arg(long, value_name = "REASON", value_parser = monitor::parse_reason)]
    pub reason: Option<DropReason>,
    /// Only drops whose source or destination belongs to this owner.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Only drops whose source or destination is this container.
    #[arg(long, value_name = "CONTAINER")]
    pub container: Option<String>,
    /// `table`: one line per drop; `json`: one JSON object per line.
    #[arg(long, short, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Also show the drops queued before the monitor started (events an
    /// earlier monitor left unread; none are produced while no monitor runs).
    #[arg(long)]
    pub backlog: bool,
    /// Stop after this many drops were shown.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
}

/// A JSON line of `monitor --output json`.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum JsonLine<'a> {
    Drop(&'a DropRecord),
    /// Drop events the ring buffer could not take since the last report.
    Lost {
        host: &'a str,
        lost: u64,
        lost_total: u64,
    },
}

pub fn run(args: MonitorArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let (host, dir) = args.select.resolve()?;
    let mut names = super::maps::load_names(global);
    let mut reader =
        Reader::open(&dir, &host).with_context(|| format!("opening the drop events of {host}"))?;
    let mut ports = read_ports(&dir);
    let filter = Filter {
        reason: args.reason,
        owner: args.owner.clone(),
        container: args.container.clone(),
    };
    let started_ns = Clock::monotonic_ns();
    // Drop events flow while we hold the lease; given back when we return.
    let mut lease =
        Lease::take(&dir).with_context(|| format!("starting the drop events of {host}"))?;
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut lost_seen = reader.lost()?;
    eprintln!(
        "monitoring drops on {host} ({} lost before now; Ctrl-C stops)",
        lost_seen
    );
    let (mut shown, mut skipped) = (0u64, 0u64);
    let mut last_lost_check = Instant::now();
    let mut last_reload = Instant::now();
    let json = args.output == OutputFormat::Json;
    loop {
        lease.renew_if_due()?;
        for raw in reader.poll(Duration::from_millis(100)) {
            let Some(mut d) = monitor::decode(&raw, &host, &names, &ports, &reader.clock) else {
                continue;
            };
            if d.timestamp_ns < started_ns && !args.backlog {
                skipped += 1;
                continue;
            }
            let unknown = |e: &monitor::PacketSide| e.ip.is_some() && e.container.is_none();
            let unknown_port = d.direction == Direction::FromContainer.label()
                && d.sender.as_ref().is_none_or(|s| s.container.is_none());
            if (unknown(&d.src) || unknown(&d.dst) || unknown_port)
                && last_reload.elapsed() > Duration::from_secs(1)
            {
                // A container created (or a port attached) after the
                // monitor started.
                names = super::maps::load_names(global);
                ports = read_ports(&dir);
                last_reload = Instant::now();
                d = monitor::decode(&raw, &host, &names, &ports, &reader.clock).unwrap_or(d);
            }
            if !filter.matches(&d) {
                continue;
            }
            if json {
                println!("{}", serde_json::to_string(&JsonLine::Drop(&d))?);
            } else {
                println!("{}", monitor::line(&d));
            }
            shown += 1;
            if args.count.is_some_and(|n| shown >= n) {
                return Ok(());
            }
        }
        if last_lost_check.elapsed() >= Duration::from_millis(500) {
            last_lost_check = Instant::now();
            let lost = reader.lost()?;
            if lost > lost_seen {
                let n = lost - lost_seen;
                if json {
                    let l = JsonLine::Lost {
                        host: &host,
                        lost: n,
                        lost_total: lost,
                    };
                    println!("{}", serde_json::to_string(&l)?);
                } else {
                    println!(
                        "!! {host}: {n} drop events LOST (ring buffer full; {lost} lost in total). \
                         The drops are still counted: see `netfabric maps dump COUNTERS`."
                    );
                }
                lost_seen = lost;
            }
        }
        if skipped > 0 {
            eprintln!(
                "(skipped {skipped} drops queued before the monitor started; --backlog shows them)"
            );
            skipped = 0;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
    }
}

/// The host's container ports, or none (with a note) when the pins cannot
/// be read: drops are still shown, without their sending port.
fn read_ports(pin_dir: &std::path::Path) -> Ports {
    Ports::read(pin_dir).unwrap_or_else(|e| {
        eprintln!("note: sending ports unknown: {e}");
        Ports::default()
    })
}
