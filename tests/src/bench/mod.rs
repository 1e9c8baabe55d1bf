//! `cargo xtask bench`: the benchmark harness behind `netfabric-bench`.
//!
//! * [`decision`]: per-packet cost of every datapath decision with
//!   BPF_PROG_TEST_RUN, against the empty programs, over zone sizes;
//! * [`e2e`]: packets per second and TCP throughput between containers of a
//!   namespace lab ([`lab`]), netfabric against plain routing, iptables and
//!   nftables enforcing the same owner policy;
//! * [`control`]: loading a full zone into the maps, applying one change;
//! * [`zone`]: 254 maps-only agents on a three-member etcd, one watch per
//!   agent against a fan-out (`--only zone`; not in `--quick` unless named);
//! * [`services`]: Maglev's disruption when a backend leaves, and HTTP
//!   requests per second and latency through a service's VIP, direct and
//!   through haproxy (`--only services`; not in `--quick` unless named);
//! * [`plot`] and [`report`]: PNG plots, Markdown and JSON under
//!   `target/bench/`.
//!
//! Every figure is a ratio against a baseline measured in the same run, from
//! the median of several repetitions, with min..max as the spread.

pub mod conntrack;
pub mod control;
pub mod decision;
pub mod dns;
pub mod e2e;
pub mod lab;
pub mod plot;
pub mod report;
pub mod services;
pub mod zone;

use std::path::PathBuf;

use serde_json::{Value, json};

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub quick: bool,
    /// Repetitions of every measurement (the median is reported).
    pub reps: usize,
}

impl Settings {
    pub fn new(quick: bool) -> Settings {
        Settings {
            quick,
            reps: if quick { 3 } else { 5 },
        }
    }
}

/// A small deterministic PRNG (xorshift64*): the bench needs no crate for it.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Median and spread of repeated measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stats {
    pub fn of(xs: &[f64]) -> Stats {
        assert!(!xs.is_empty(), "no measurements");
        let mut xs = xs.to_vec();
        xs.sort_by(|a, b| a.total_cmp(b));
        let n = xs.len();
        let median = if !n.is_multiple_of(2) {
            xs[n / 2]
        } else {
            (xs[n / 2 - 1] + xs[n / 2]) / 2.0
        };
        Stats {
            median,
            min: xs[0],
            max: xs[n - 1],
            n,
        }
    }

    /// Spread as a fraction of the median: (max - min) / median.
    pub fn spread(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median
        }
    }

    pub fn json(&self) -> Value {
        json!({ "median": self.median, "min": self.min, "max": self.max, "reps": self.n })
    }
}

/// `target/bench/` of the workspace.
pub fn out_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench"))
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_and_spread() {
        let s = Stats::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stats::of(&[1.0, 2.0, 3.0, 4.0]).median, 2.5);
        assert!((s.spread() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(64_516), "64,516");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
