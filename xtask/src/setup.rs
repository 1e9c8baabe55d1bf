//! `cargo xtask setup`: everything the build and the tests need, installed
//! on first use and checked in well under a second afterwards.
//!
//! See `docs/development.md#the-build` for why: the eBPF crate needs a compiler with
//! its own `rust-src` (Debian's `rustc-web`, linked into rustup as
//! `debian-web`) and a bpf-linker built against the same LLVM major.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context as _, Result, bail};

use crate::run_cmd;

pub const TOOLCHAIN: &str = "debian-web";
const TOOLCHAIN_PREFIX: &str = "/usr";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The LLVM majors bpf-linker 0.13 can be built against.
const BPF_LINKER_LLVM: std::ops::RangeInclusive<u32> = 21..=23;

/// Debian packages the build needs (the LLVM ones are added once the
/// compiler's LLVM major is known).
const BUILD_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "rust-web-clippy",
    "libzstd-dev",
    "zlib1g-dev",
    // etcd-client generates its gRPC code with protoc, which needs the
    // well-known types (google/protobuf/*.proto) of libprotobuf-dev;
    // `--no-install-recommends` does not bring them with protobuf-compiler.
    "protobuf-compiler",
    "libprotobuf-dev",
];
/// Debian packages the tests, the lab and the benchmarks use.
const RUNTIME_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "netcat-openbsd",
    "ethtool",
    "bpftool",
    "tcpdump",
    // The cluster store: the lab on etcd, its tests and benchmark;
    // openssl makes the certificates of the TLS test.
    "etcd-server",
    // etcdctl: tests edit and restore a cluster behind netfabric's back.
    "etcd-client",
    "openssl",
    // sysctl: the lab and the tests set per-namespace knobs (IPv6 off,
    // ip_forward, rp_filter).
    "procps",
    // nft: the agent's masquerade of its containers' egress (and a peer
    // the bench measures).
    "nftables",
    // `cargo xtask bench`: the peers it measures, TCP throughput and
    // request/response round trips.
    "iptables",
    "iperf3",
    "sockperf",
    // The conntrack bench's C programs (the kernel's conntrack kfuncs,
    // which aya cannot call): clang and libbpf's headers; bpftool (above)
    // loads and runs them.
    "clang-14",
    "libbpf-dev",
    // promtool and the Prometheus server for the observability tests.
    "prometheus",
    // The lab prints `curl .../metrics` lines; the lab guide test runs them.
    "curl",
    // The systemd unit test runs `systemd-analyze verify`, which also checks
    // the unit's documentation links with man (man-db is not in a minimal root).
    "systemd",
    "man-db",
    // The CNI plugin's podman test: podman 4.3 with its CNI backend, runc
    // (crun refuses this VM's hybrid cgroups), containers run from a
    // busybox-static root filesystem (no image registry).
    "podman",
    "runc",
    "busybox-static",
    "containernetworking-plugins",
    // The agent's DNS server: its tests query it with dig and forward to a
    // fake upstream (dnsmasq in a namespace); the bench loads it with
    // dnsperf against dnsmasq serving the same names.
    "bind9-dnsutils",
    "dnsmasq-base",
    "dnsperf",
    // The services bench: wrk loads nginx backends through a VIP, directly
    // and through haproxy.
    "wrk",
    "nginx-light",
    "haproxy",
];

fn say(msg: &str) {
    eprintln!("xtask setup: {msg}");
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn missing_packages(packages: &[String]) -> Vec<String> {
    // dpkg-query exits non-zero when a package is unknown: read what it printed anyway.
    let listed = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Status}\n"])
        .args(packages)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    packages
        .iter()
        .filter(|p| !listed.lines().any(|l| l == format!("{p} installed")))
        .cloned()
        .collect()
}

pub fn apt_install(packages: &[String]) -> Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        return Ok(());
    }
    say(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    run_cmd(Command::new("apt-get").args(["update", "-qq"]))
        .context("apt-get update (are you root?)")?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get install")?;
    let still = missing_packages(&missing);
    if !still.is_empty() {
        bail!(
            "packages still missing after apt-get install: {}",
            still.join(" ")
        );
    }
    Ok(())
}

fn toolchain_linked() -> bool {
    output(Command::new("rustup").args(["toolchain", "list"])).is_some_and(|l| {
        l.lines()
            .any(|t| t.split_whitespace().next() == Some(TOOLCHAIN))
    })
}

/// LLVM major version of the `debian-web` rustc.
fn llvm_major() -> Result<u32> {
    let vv = output(
        Command::new("rustc")
            .arg(format!("+{TOOLCHAIN}"))
            .arg("-vV"),
    )
    .with_context(|| format!("running rustc +{TOOLCHAIN} -vV"))?;
    let line = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("rustc -vV printed no LLVM version")?;
    line.split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("unparseable LLVM version {line:?}"))
}

fn which(bin: &str) -> Option<String> {
    output(Command::new("sh").args(["-c", &format!("command -v {bin}")]))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Is the bpf-linker on PATH linked against `libLLVM.so.<major>`?
fn bpf_linker_matches(major: u32) -> bool {
    let Some(path) = which("bpf-linker") else {
        return false;
    };
    output(Command::new("ldd").arg(&path))
        .is_some_and(|l| l.contains(&format!("libLLVM.so.{major}")))
}

fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let mut f = l.split_whitespace();
            let (_, mnt, fs) = (f.next(), f.next(), f.next());
            mnt == Some("/sys/fs/bpf") && fs == Some("bpf")
        })
    })
}

/// Install and check everything; returns how long it took.
pub fn run() -> Result<std::time::Duration> {
    let started = Instant::now();
    let mut packages: Vec<String> = BUILD_PACKAGES
        .iter()
        .chain(RUNTIME_PACKAGES)
        .map(|s| s.to_string())
        .collect();
    apt_install(&packages)?;

    if !toolchain_linked() {
        say(&format!(
            "linking {TOOLCHAIN_PREFIX} as rustup toolchain `{TOOLCHAIN}`"
        ));
        run_cmd(Command::new("rustup").args(["toolchain", "link", TOOLCHAIN, TOOLCHAIN_PREFIX]))?;
    }
    if !Path::new(TOOLCHAIN_PREFIX)
        .join("lib/rustlib/src/rust/library/core")
        .is_dir()
    {
        bail!("rust-src of the {TOOLCHAIN} toolchain is missing (package rust-web-src)");
    }

    let mut major = llvm_major()?;
    if !BPF_LINKER_LLVM.contains(&major) {
        // Debian ships newer rustc-web builds through bookworm-security; a
        // machine that installed an older one upgrades it here.
        say(&format!(
            "rustc-web uses LLVM {major}; bpf-linker {BPF_LINKER_VERSION} needs LLVM {}-{}: upgrading rustc-web",
            BPF_LINKER_LLVM.start(),
            BPF_LINKER_LLVM.end()
        ));
        run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
        run_cmd(
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "--only-upgrade",
                ])
                .args(BUILD_PACKAGES.iter().filter(|p| p.contains("-web")))
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        major = llvm_major()?;
        if !BPF_LINKER_LLVM.contains(&major) {
            bail!(
                "rustc-web still uses LLVM {major} after an upgrade; bpf-linker {BPF_LINKER_VERSION} needs LLVM {}-{}. \
                 Debian publishes current rustc-web builds in bookworm-security: add \
                 `deb http://deb.debian.org/debian-security bookworm-security main` to the apt sources",
                BPF_LINKER_LLVM.start(),
                BPF_LINKER_LLVM.end()
            );
        }
    }
    packages = vec![format!("llvm-{major}-dev"), format!("libpolly-{major}-dev")];
    apt_install(&packages)?;

    if !bpf_linker_matches(major) {
        say(&format!(
            "building bpf-linker {BPF_LINKER_VERSION} against LLVM {major} (a few minutes, once)"
        ));
        run_cmd(
            Command::new("cargo")
                .args([
                    "install",
                    "--locked",
                    "--force",
                    "bpf-linker",
                    "--version",
                    BPF_LINKER_VERSION,
                    "--no-default-features",
                    "--features",
                    &format!("llvm-{major}"),
                ])
                .env("LLVM_PREFIX", format!("/usr/lib/llvm-{major}")),
        )
        .context("cargo install bpf-linker")?;
        if !bpf_linker_matches(major) {
            bail!(
                "bpf-linker on PATH is not linked against LLVM {major} (is ~/.cargo/bin first on PATH?)"
            );
        }
    }

    if !bpffs_mounted() {
        say("mounting bpffs at /sys/fs/bpf");
        run_cmd(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
            .context("mounting bpffs (root needed)")?;
    }
    let took = started.elapsed();
    say(&format!(
        "ok: {TOOLCHAIN} toolchain (LLVM {major}), bpf-linker, bpffs ({took:.1?})"
    ));
    Ok(took)
}
