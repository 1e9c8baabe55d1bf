//! Control-plane propagation: the time from a write through the store to
//! the change being applied in the maps of every agent.
//!
//! A change here is a container create: it is applied once the agent has
//! written the container's owner into its pinned `ENDPOINTS` map (every
//! agent of the zone holds every endpoint of the zone). The containers go
//! on extra hosts of the lab's zone that have no agent (`pbench-h<n>`), so
//! the lab's own hosts stay as they are, and a burst can exceed one host's
//! 254 addresses. Everything made is removed at the end.
//!
//! A benchmark, not part of the product: `netfabric-bench-etcd` reports it,
//! and `netfabric/tests/etcd.rs` includes this file (`#[path]`) to check that
//! agents on etcd converge after a burst.
//!
//! * single: one write, wait until every agent applied it, next write;
//! * burst: `burst` writes back to back from one writer (each its own
//!   transaction), while the maps are polled; the latency of each change
//!   is from the start of its write to its arrival in the last agent.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::maps::MapData;
use netfabric_common::{Endpoint, plan::endpoint_index};
use serde::Serialize;

use netfabric::{
    MacAddr,
    conventions::HOST_NUMBERS,
    datapath::batch,
    state::{HostSpec, MAX_CONTAINERS_PER_HOST},
    store::{Store, StoreExt as _},
};

/// Name prefix of everything a measurement makes.
const PREFIX: &str = "pbench";
/// Objects removed per transaction when cleaning up (etcd's default
/// `--max-txn-ops` is 128).
const CLEANUP_CHUNK: usize = 100;

/// A latency distribution.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latencies {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Latencies {
    pub fn of(mut samples: Vec<Duration>) -> Latencies {
        samples.sort();
        let n = samples.len();
        let at = |q: f64| {
            if n == 0 {
                Duration::ZERO
            } else {
                samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
            }
        };
        Latencies {
            n,
            p50: at(0.50),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
            mean: if n == 0 {
                Duration::ZERO
            } else {
                samples.iter().sum::<Duration>() / n as u32
            },
        }
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={:.2?} p99={:.2?} max={:.2?} mean={:.2?}",
            self.n, self.p50, self.p99, self.max, self.mean
        )
    }
}

/// What [`measure`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub store: String,
    pub agents: usize,
    /// One change at a time: write → applied by every agent.
    pub single: Latencies,
    /// Each change of the burst: start of its write → applied by every agent.
    pub burst: Latencies,
    pub burst_size: usize,
    /// Time to write the whole burst.
    pub burst_write: Duration,
    /// First write of the burst → last change applied everywhere.
    pub burst_converged: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "store {} with {} agents", self.store, self.agents)?;
        writeln!(
            f,
            "  single change, write -> applied by every agent: {}",
            self.single
        )?;
        writeln!(
            f,
            "  burst of {}, each write -> applied by every agent: {}",
            self.burst_size, self.burst
        )?;
        write!(
            f,
            "  burst written in {:.2?} ({:.0} writes/s), converged everywhere {:.2?} after its first write",
            self.burst_write,
            self.burst_size as f64 / self.burst_write.as_secs_f64().max(1e-9),
            self.burst_converged
        )
    }
}

/// The pinned `ENDPOINTS` map of one agent, read only.
pub struct PinnedEndpoints {
    map: MapData,
}

impl PinnedEndpoints {
    /// Opens `<pin_dir>/ENDPOINTS`.
    pub fn open(pin_dir: &Path) -> anyhow::Result<Self> {
        Ok(PinnedEndpoints {
            map: batch::open_pinned(pin_dir, netfabric_common::ENDPOINTS)?,
        })
    }

    /// The owner id at `addr` of zone slot `slot` (0: vacant): a batch of
    /// one slot, one syscall.
    pub fn owner(&self, slot: u32, addr: Ipv4Addr) -> anyhow::Result<u32> {
        let index = endpoint_index(slot, addr.into());
        let raw = batch::read_array_range(&self.map, netfabric_common::ENDPOINTS, index, 1)?;
        let (_, e) = raw
            .typed::<u32, Endpoint>()
            .next()
            .with_context(|| format!("ENDPOINTS has no slot {index}"))?;
        Ok(e.owner)
    }
}

/// Measures propagation through `store` to the agents whose maps are
/// pinned in `pin_dirs` (see the module doc). `timeout` bounds the wait for
/// any one change.
pub fn measure(
    store: &dyn Store,
    pin_dirs: &[PathBuf],
    singles: usize,
    burst: usize,
    timeout: Duration,
) -> anyhow::Result<Report> {
    let maps = pin_dirs
        .iter()
        .map(|d| PinnedEndpoints::open(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let snap = store.load().context("reading the store")?;
    let zone = snap
        .state
        .zones
        .first()
        .context("the store has no zone")?
        .clone();
    let slot = zone.slot;
    let owner = format!("{PREFIX}-owner");
    let (owner_id, _) = store.apply(|s| match s.owner(&owner) {
        Some(o) => Ok(o.id),
        None => s.create_owner(&owner),
    })?;
    // Extra hosts without agents: numbers from 254 down that are free.
    let needed = (singles + burst).div_ceil(MAX_CONTAINERS_PER_HOST).max(1);
    let used: Vec<u32> = snap
        .state
        .hosts
        .iter()
        .filter(|h| h.zone == zone.name)
        .map(|h| h.number)
        .collect();
    let numbers: Vec<u32> = HOST_NUMBERS
        .rev()
        .filter(|n| !used.contains(n))
        .take(needed)
        .collect();
    if numbers.len() < needed {
        bail!("the zone has no room for {needed} more hosts");
    }
    let mut hosts = Vec::new();
    for n in &numbers {
        let name = format!("{PREFIX}-h{n}");
        let n8 = *n as u8;
        store.apply(|s| {
            if s.host(&name).is_some() {
                return Ok(());
            }
            s.create_host(HostSpec {
                name: name.clone(),
                zone: zone.name.clone(),
                number: Some(*n),
                subnet: None,
                uplink: "pb0".into(),
                underlay_ip: Ipv4Addr::new(172, 31, 255, n8),
                underlay_mac: MacAddr([0x02, 0xfd, 0, 0, 0xff, n8]),
            })
            .map(|_| ())
        })?;
        hosts.push(name);
    }
    let host_of = |i: usize| hosts[i / MAX_CONTAINERS_PER_HOST].clone();
    let applied_everywhere = |addr: Ipv4Addr| -> anyhow::Result<bool> {
        for m in &maps {
            if m.owner(slot, addr)? != owner_id {
                return Ok(false);
            }
        }
        Ok(true)
    };

    let result = (|| -> anyhow::Result<Report> {
        // Singles.
        let mut single = Vec::with_capacity(singles);
        for i in 0..singles {
            let name = format!("{PREFIX}-s{i}");
            let host = host_of(i);
            let t0 = Instant::now();
            let (addr, _) = store.apply(|s| s.create_container(&name, &owner, &host, None))?;
            loop {
                if applied_everywhere(addr)? {
                    single.push(t0.elapsed());
                    break;
                }
                if t0.elapsed() > timeout {
                    bail!("{name} ({addr}) not applied by every agent within {timeout:?}");
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }

        // Burst: one writer thread, this thread polls.
        let (tx, rx) = mpsc::channel::<(Instant, Ipv4Addr)>();
        let burst_start = Instant::now();
        let (latencies, burst_write) = std::thread::scope(|scope| {
            let writer = scope.spawn(|| -> anyhow::Result<Duration> {
                for i in 0..burst {
                    let name = format!("{PREFIX}-b{i}");
                    let host = host_of(singles + i);
                    let t0 = Instant::now();
                    let (addr, _) =
                        store.apply(|s| s.create_container(&name, &owner, &host, None))?;
                    if tx.send((t0, addr)).is_err() {
                        break;
                    }
                }
                Ok(burst_start.elapsed())
            });
            let mut pending: Vec<(Instant, Ipv4Addr)> = Vec::new();
            let mut done = Vec::with_capacity(burst);
            let mut last_progress = Instant::now();
            while done.len() < burst {
                while let Ok(p) = rx.try_recv() {
                    pending.push(p);
                }
                let before = done.len();
                let mut err = None;
                pending.retain(|(t0, addr)| match applied_everywhere(*addr) {
                    Ok(true) => {
                        done.push(t0.elapsed());
                        false
                    }
                    Ok(false) => true,
                    Err(e) => {
                        err = Some(e);
                        true
                    }
                });
                if let Some(e) = err {
                    return Err(e);
                }
                if done.len() > before {
                    last_progress = Instant::now();
                } else if last_progress.elapsed() > timeout {
                    if writer.is_finished() {
                        writer.join().expect("the writer does not panic")?;
                    }
                    bail!(
                        "burst: {} of {burst} changes applied; none more within {timeout:?}",
                        done.len()
                    );
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            let burst_write = writer.join().expect("the writer does not panic")?;
            Ok((done, burst_write))
        })?;
        let burst_converged = burst_start.elapsed();
        Ok(Report {
            store: store.url(),
            agents: maps.len(),
            single: Latencies::of(single),
            burst: Latencies::of(latencies),
            burst_size: burst,
            burst_write,
            burst_converged,
        })
    })();
    let cleaned = cleanup(store);
    let report = result?;
    cleaned.context("removing what the measurement made")?;
    Ok(report)
}

/// Removes every `pbench-*` container, host and owner, in chunks.
pub fn cleanup(store: &dyn Store) -> anyhow::Result<()> {
    let mine = |n: &str| n.starts_with(&format!("{PREFIX}-"));
    loop {
        let (left, _) = store.apply(|s| {
            let names: Vec<String> = s
                .containers
                .iter()
                .filter(|c| mine(&c.name))
                .take(CLEANUP_CHUNK)
                .map(|c| c.name.clone())
                .collect();
            for n in &names {
                s.delete_container(n)?;
            }
            Ok(names.len())
        })?;
        if left == 0 {
            break;
        }
    }
    store.apply(|s| {
        let hosts: Vec<String> = s
            .hosts
            .iter()
            .filter(|h| mine(&h.name))
            .map(|h| h.name.clone())
            .collect();
        for h in &hosts {
            s.delete_host(h)?;
        }
        if s.owner(&format!("{PREFIX}-owner")).is_some() {
            s.delete_owner(&format!("{PREFIX}-owner"))?;
        }
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let l = Latencies::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!(l.p50, Duration::from_millis(50));
        assert_eq!(l.p99, Duration::from_millis(99));
        assert_eq!(l.max, Duration::from_millis(100));
        assert_eq!(Latencies::of(vec![]).n, 0);
    }
}
