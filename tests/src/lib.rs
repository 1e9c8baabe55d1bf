//! Shared harness for netfabric's integration tests (root, BPF, namespaces).
//!
//! Every test gets its own names from [`unique`] so runs cannot collide, and
//! every resource is owned by a guard that removes it on drop, also when the
//! test panics.

pub mod bench;
pub mod model;
pub mod netns;
pub mod packets;
pub mod propagation;
pub mod raw;
pub mod topology;
pub mod zone;

use std::sync::atomic::{AtomicU32, Ordering};

/// A short name unique to this process and call, e.g. `nft3a1f2` (kernel
/// interface names are limited to 15 bytes).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}{n:x}", std::process::id() & 0xffff)
}

/// Mount bpffs at the product's default place when it is not (idempotent).
pub fn ensure_bpffs() {
    use netfabric::conventions::DEFAULT_BPFFS;
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(DEFAULT_BPFFS) && l.contains(" bpf "))
        })
        .unwrap_or(false);
    if !mounted {
        let status = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf", DEFAULT_BPFFS])
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting bpffs at {DEFAULT_BPFFS} failed");
    }
}
