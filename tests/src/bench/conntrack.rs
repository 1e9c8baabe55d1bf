//! Connection tracking's lookup, the kernel's against our own (issue 17:
//! "measure the kernel's own conntrack (BPF kfuncs) against a map of your
//! own and choose by measurement"). `tests/bpf/conntrack_lookup.bpf.c`
//! holds three TC programs that parse the same IPv4/UDP frame: one looks
//! the flow up in the kernel's conntrack with the `bpf_skb_ct_lookup`
//! kfunc, one in an LRU hash keyed like `CONNECTIONS`, one does nothing
//! more (the parse both add to). They are built with clang against this
//! kernel's BTF and run with `bpftool prog run` (BPF_PROG_TEST_RUN), in a
//! namespace of our own whose conntrack holds the flow (a datagram sent
//! there with an nftables `ct` rule loaded), for a tracked flow (hit) and
//! an untracked one (miss). C and bpftool because aya 0.14 cannot relocate
//! kfunc calls.

use std::{
    net::{Ipv4Addr, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{Settings, Stats};
use crate::netns::Netns;

const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/conntrack_lookup.bpf.c");
/// The tracked flow: 127.0.0.1:40000 → 127.0.0.1:9, UDP.
const TRACKED_PORT: u16 = 40000;
const UNTRACKED_PORT: u16 = 40001;
const DST_PORT: u16 = 9;

/// The programs, in the order measured.
pub const PROGRAMS: [(&str, &str); 3] = [
    ("ct_parse_only", "parse only"),
    ("ct_map", "LRU hash of our own (CONNECTIONS' key and value)"),
    ("ct_kfunc", "kernel conntrack, bpf_skb_ct_lookup kfunc"),
];

/// ns per packet of one program on the tracked and the untracked flow.
#[derive(Clone, Debug)]
pub struct LookupRow {
    pub program: &'static str,
    pub label: &'static str,
    pub hit: Stats,
    pub miss: Stats,
}

#[derive(Clone, Debug)]
pub struct ConntrackBench {
    pub rows: Vec<LookupRow>,
    pub repeat: u32,
}

impl ConntrackBench {
    pub fn row(&self, program: &str) -> Option<&LookupRow> {
        self.rows.iter().find(|r| r.program == program)
    }

    /// What a lookup adds to the parse, hit: (own map, kfunc), ns.
    pub fn lookup_costs(&self) -> Option<(f64, f64)> {
        let base = self.row("ct_parse_only")?.hit.median;
        Some((
            self.row("ct_map")?.hit.median - base,
            self.row("ct_kfunc")?.hit.median - base,
        ))
    }

    pub fn json(&self) -> Value {
        json!({
            "repeat": self.repeat,
            "rows": self.rows.iter().map(|r| json!({
                "program": r.program,
                "label": r.label,
                "hit_ns": r.hit.json(),
                "miss_ns": r.miss.json(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Pinned programs and maps under bpffs, removed on drop.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_cmd(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds the object against this kernel's BTF.
fn build(dir: &Path) -> Result<PathBuf> {
    let vmlinux = run_cmd(Command::new("bpftool").args([
        "btf",
        "dump",
        "file",
        "/sys/kernel/btf/vmlinux",
        "format",
        "c",
    ]))?;
    std::fs::write(dir.join("vmlinux.h"), vmlinux)?;
    let object = dir.join("conntrack_lookup.o");
    run_cmd(
        Command::new("clang-14")
            .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-I"])
            .arg(dir)
            .args(["-c", SOURCE, "-o"])
            .arg(&object),
    )?;
    Ok(object)
}

/// An Ethernet + IPv4 + UDP frame 127.0.0.1:`sport` → 127.0.0.1:9.
fn frame(sport: u16) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
        .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
        .udp(sport, DST_PORT);
    let mut out = Vec::new();
    builder
        .write(&mut out, &[0u8; 18])
        .expect("building a frame");
    out
}

/// `bpftool prog run`'s average duration, ns.
fn parse_duration(out: &str) -> Option<f64> {
    let rest = out.split("duration (average):").nth(1)?;
    rest.trim().trim_end_matches("ns").trim().parse().ok()
}

/// The kernel's conntrack in `ns` learns the flow from
/// [`TRACKED_PORT`]: an nftables rule that uses conntrack, then one
/// datagram (UDP entries live 30 s unanswered; sent again before every
/// round).
fn track_the_flow(ns: &Netns) -> Result<()> {
    let _inside = ns.enter();
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, TRACKED_PORT))?;
    sock.send_to(b"tracked", (Ipv4Addr::LOCALHOST, DST_PORT))?;
    Ok(())
}

pub fn run(settings: &Settings) -> Result<ConntrackBench> {
    crate::ensure_bpffs();
    let work = tempfile::tempdir()?;
    let object = build(work.path())?;
    let ns = Netns::new(&crate::unique("nfctk"));
    let rules = work.path().join("ct.nft");
    std::fs::write(
        &rules,
        "table ip nfctk {\n chain out {\n  type filter hook output priority 0;\n  ct state new counter\n }\n}\n",
    )?;
    ns.exec(&["nft", "-f", rules.to_str().context("a UTF-8 path")?]);
    let pins = Pins(PathBuf::from(format!(
        "{}/{}",
        netfabric::conventions::DEFAULT_BPFFS,
        crate::unique("netfabric-bench-ctk")
    )));
    std::fs::create_dir_all(&pins.0)?;
    let maps = pins.0.join("maps");
    run_cmd(
        Command::new("bpftool")
            .args(["prog", "loadall"])
            .arg(&object)
            .arg(&pins.0)
            .args(["type", "tc", "pinmaps"])
            .arg(&maps),
    )?;
    // The tracked flow in our map too, as netfabric's programs write it
    // (ConnKey: addresses and ports in host byte order).
    let mut key = Vec::new();
    key.extend_from_slice(&u32::from(Ipv4Addr::LOCALHOST).to_ne_bytes());
    key.extend_from_slice(&u32::from(Ipv4Addr::LOCALHOST).to_ne_bytes());
    key.extend_from_slice(&TRACKED_PORT.to_ne_bytes());
    key.extend_from_slice(&DST_PORT.to_ne_bytes());
    key.extend_from_slice(&[17, 0, 0, 0]);
    let mut value = vec![0u8; 24];
    value[16] = 2;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>();
    let mut update = Command::new("bpftool");
    update
        .args(["map", "update", "pinned"])
        .arg(maps.join("connections"))
        .arg("key")
        .arg("hex")
        .args(hex(&key))
        .arg("value")
        .arg("hex")
        .args(hex(&value));
    run_cmd(&mut update)?;
    let (hit, miss) = (work.path().join("hit.bin"), work.path().join("miss.bin"));
    std::fs::write(&hit, frame(TRACKED_PORT))?;
    std::fs::write(&miss, frame(UNTRACKED_PORT))?;
    let repeat: u32 = if settings.quick { 200_000 } else { 1_000_000 };
    let netns_path = format!("/run/netns/{}", ns.name);
    // `ip netns exec` would remount /sys (and hide bpffs): enter the
    // network namespace only.
    let once = |program: &str, data: &Path, expect: &str| -> Result<f64> {
        let out = run_cmd(
            Command::new("nsenter")
                .arg(format!("--net={netns_path}"))
                .args(["bpftool", "prog", "run", "pinned"])
                .arg(pins.0.join(program))
                .arg("data_in")
                .arg(data)
                .args(["repeat", &repeat.to_string()]),
        )?;
        if !out.contains(&format!("Return value: {expect},")) {
            bail!("{program} on {}: {out}", data.display());
        }
        parse_duration(&out).with_context(|| format!("no duration in {out:?}"))
    };
    let mut samples: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); PROGRAMS.len()];
    for _ in 0..settings.reps.max(3) {
        track_the_flow(&ns)?;
        for (i, (program, _)) in PROGRAMS.iter().enumerate() {
            // The parse-only program passes both frames; the lookups pass
            // (TC_ACT_OK) only the tracked one.
            let miss_expect = if *program == "ct_parse_only" {
                "0"
            } else {
                "2"
            };
            samples[i].0.push(once(program, &hit, "0")?);
            samples[i].1.push(once(program, &miss, miss_expect)?);
        }
    }
    let rows = PROGRAMS
        .iter()
        .zip(samples)
        .map(|(&(program, label), (h, m))| LookupRow {
            program,
            label,
            hit: Stats::of(&h),
            miss: Stats::of(&m),
        })
        .collect();
    drop(pins);
    drop(ns);
    Ok(ConntrackBench { rows, repeat })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftool_durations() {
        assert_eq!(
            parse_duration("Return value: 0, duration (average): 133ns\n"),
            Some(133.0)
        );
        assert_eq!(parse_duration("Return value: 0\n"), None);
    }

    #[test]
    fn the_frames_are_the_flows() {
        let f = frame(TRACKED_PORT);
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::TransportSlice::Udp(udp)) = p.transport else {
            panic!("not UDP");
        };
        assert_eq!((udp.source_port(), udp.destination_port()), (40000, 9));
    }
}
