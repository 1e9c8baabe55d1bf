//! `netfabric status`: what is attached on a host, from its pinned links
//! (link id → program id → the kernel's program info, like `bpftool link`).

use std::{collections::BTreeMap, path::Path};

use aya::programs::{
    ProgramInfo,
    links::{FdLink, PinnedLink},
    loaded_programs,
};
use serde::Serialize;

/// One pinned link and the program it runs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AttachedProgram {
    /// The pin's name under `links/` (`uplink`, `uplink-tc`, `nfc3-ingress`).
    pub pin: String,
    /// The interface (`nfc3`, or the host's uplink name when known).
    pub interface: String,
    /// `xdp` or `tcx`.
    pub link_type: String,
    pub link_id: u32,
    pub program_id: u32,
    /// The program's name as the kernel knows it (`from_container`).
    pub program: String,
    /// Runs counted by the kernel; `None` while `kernel.bpf_stats_enabled`
    /// is 0 (the kernel then counts nothing, and 0 would read as "idle").
    pub run_count: Option<u64>,
    /// When the program was loaded.
    pub loaded_at: Option<String>,
    /// Why the link could not be read, if it could not.
    pub error: Option<String>,
}

/// Whether the kernel counts program runs (`sysctl kernel.bpf_stats_enabled`);
/// it costs two clock reads per packet, so it is off unless asked for.
pub fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() != "0")
}

fn info_by_id() -> BTreeMap<u32, ProgramInfo> {
    loaded_programs()
        .filter_map(Result::ok)
        .map(|p| (p.id(), p))
        .collect()
}

/// The links pinned under `<pin_dir>/links/`; `uplink` names the uplink
/// interface (from the store) when known.
pub fn attached_programs(pin_dir: &Path, uplink: Option<&str>) -> Vec<AttachedProgram> {
    let dir = crate::conventions::links_dir(pin_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut pins: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pins.sort();
    let programs = info_by_id();
    let stats = bpf_stats_enabled();
    pins.into_iter()
        .map(|pin| {
            let interface = if crate::conventions::is_uplink_pin(&pin) {
                uplink.unwrap_or("uplink").to_owned()
            } else {
                pin.rsplit_once('-')
                    .map_or(pin.clone(), |(i, _)| i.to_owned())
            };
            let mut a = AttachedProgram {
                pin: pin.clone(),
                interface,
                link_type: String::new(),
                link_id: 0,
                program_id: 0,
                program: String::new(),
                run_count: None,
                loaded_at: None,
                error: None,
            };
            match PinnedLink::from_pin(dir.join(&pin))
                .map(FdLink::from)
                .and_then(|l| l.info())
            {
                Ok(info) => {
                    a.link_id = info.id();
                    a.program_id = info.program_id();
                    a.link_type = info
                        .link_type()
                        .map_or_else(|_| "unknown".into(), |t| format!("{t:?}").to_lowercase());
                    if let Some(p) = programs.get(&a.program_id) {
                        a.program = p.name_as_str().unwrap_or_default().to_owned();
                        a.run_count = stats.then(|| p.run_count());
                        a.loaded_at = p.loaded_at().and_then(|t| {
                            let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
                            Some(super::clock::format_utc_ns(d.as_nanos() as i128))
                        });
                    }
                }
                Err(e) => a.error = Some(e.to_string()),
            }
            a
        })
        .collect()
}
