//! `cargo xtask fresh-check`: the README's two commands on a machine that
//! remembers nothing.
//!
//! A machine that has built the project before already has every package
//! the build needs, so a missing install step hides there. This task builds
//! a pristine Debian 12 root with debootstrap (from this machine's
//! configured apt source), adds only the README's prerequisites (the
//! packages of its `apt-get install` line, and rustup with its stable
//! toolchain, copied from this machine since no installer can be downloaded
//! here) and this machine's resolver and CA bundle (its network, not the
//! project's), clones the committed `HEAD` into it and runs, as root inside
//! it:
//!
//! 1. `cargo xtask test`;
//! 2. a non-interactive `cargo xtask run`: the lab comes up, the printed
//!    allowed ping answers and the printed denied ping does not, Ctrl-C
//!    (SIGINT) takes it down and leaves no namespace behind.
//!
//! The root lives in its own mount namespace (bound onto itself so that it
//! is a mount point, which `ip netns exec` needs; proc, sys, dev, a bpffs of
//! its own and a private `/run`), so nothing it mounts outlives it. It shares
//! the kernel: namespaces and programs are real, and the tests' unique names
//! keep them apart from anything else running here.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{run_cmd, workspace_root};

/// The README's `apt-get install` line: what a fresh machine needs before
/// its two commands (besides rustup with a stable toolchain).
const PREREQUISITES: &[&str] = &["build-essential", "git", "curl", "ca-certificates"];
const SUITE: &str = "bookworm";

/// The first Debian mirror of this machine's apt sources (deb822 or
/// one-line format).
fn apt_mirror() -> Result<String> {
    let mut texts = Vec::new();
    for path in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        if let Ok(t) = std::fs::read_to_string(path) {
            texts.push(t);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in dir.flatten() {
            if let Ok(t) = std::fs::read_to_string(entry.path()) {
                texts.push(t);
            }
        }
    }
    for text in &texts {
        for line in text.lines().map(str::trim) {
            let url = if let Some(uris) = line.strip_prefix("URIs:") {
                uris.split_whitespace().next()
            } else if let Some(rest) = line.strip_prefix("deb ") {
                rest.split_whitespace().find(|w| w.contains("://"))
            } else {
                None
            };
            if let Some(url) = url.filter(|u| !u.contains("security")) {
                return Ok(url.trim_end_matches('/').to_owned());
            }
        }
    }
    bail!("no Debian mirror found in /etc/apt/sources.list{{,.d/*}}")
}

/// This machine's active apt source files, relative to `/etc/apt`.
fn apt_sources() -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut files = Vec::new();
    let etc = Path::new("/etc/apt");
    if etc.join("sources.list").is_file() {
        files.push((etc.join("sources.list"), "sources.list".into()));
    }
    for entry in std::fs::read_dir(etc.join("sources.list.d"))?.flatten() {
        let name = entry.file_name();
        let n = name.to_string_lossy();
        if n.ends_with(".list") || n.ends_with(".sources") {
            files.push((entry.path(), Path::new("sources.list.d").join(&name)));
        }
    }
    Ok(files)
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into())
}

/// `rustup` and its proxies (`cargo`, `rustc`, ... : links to it), not the
/// tools `cargo install` put beside them (bpf-linker is setup's to build).
fn copy_rustup_proxies(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    let rustup = from.join("rustup");
    std::fs::copy(&rustup, to.join("rustup")).context("copying rustup")?;
    let rustup_id = std::fs::canonicalize(&rustup)?;
    for entry in std::fs::read_dir(from)?.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "rustup" || std::fs::canonicalize(&path).ok() != Some(rustup_id.clone()) {
            continue;
        }
        std::os::unix::fs::symlink("rustup", to.join(&name))
            .with_context(|| format!("linking {}", to.join(&name).display()))?;
    }
    Ok(())
}

/// rustup's default toolchain name, from `rustup default`.
fn default_toolchain() -> Result<String> {
    let out = Command::new("rustup")
        .arg("default")
        .output()
        .context("running rustup default")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .map(str::to_owned)
        .filter(|t| out.status.success() && !t.is_empty())
        .context("rustup has no default toolchain")
}

/// The script run inside the root: the README's two commands.
const INSIDE: &str = r#"
set -euo pipefail
export HOME=/root PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export CARGO_TERM_COLOR=never
cd /root/netfabric
echo "fresh-check: prerequisites only: $(dpkg-query -W -f='${Package}\n' | wc -l) Debian packages"
t0=$(date +%s)
cargo xtask test
t1=$(date +%s)
echo "fresh-check: cargo xtask test passed in $((t1 - t0)) s"

# cargo xtask run, as a user would: wait for the lab, paste two pings, Ctrl-C.
log=/root/xtask-run.log
setsid cargo xtask run >"$log" 2>&1 < /dev/null &
pid=$!
for _ in $(seq 1 900); do
    grep -q "Ctrl-C tears the lab down" "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "fresh-check: cargo xtask run exited early"; exit 1; }
    sleep 1
done
grep -q "Ctrl-C tears the lab down" "$log" || { cat "$log"; echo "fresh-check: no lab after 15 min"; kill -INT -- "-$pid"; exit 1; }
cat "$log"
pings=$(grep -E '^  ip netns exec .* ping ' "$log")
allowed=$(sed -n 1p <<<"$pings")
denied=$(sed -n 2p <<<"$pings")
status=0
if sh -c "$allowed"; then echo "fresh-check: allowed ping answered"; else echo "fresh-check: FAILED: allowed ping: $allowed"; status=1; fi
if sh -c "$denied"; then echo "fresh-check: FAILED: denied ping answered: $denied"; status=1; else echo "fresh-check: denied ping dropped"; fi
kill -INT -- "-$pid"
wait "$pid" || true
cat "$log" | tail -n 3
grep -q "is down" "$log" || { echo "fresh-check: FAILED: the lab did not go down on Ctrl-C"; status=1; }
left=$(ip netns list | grep -c '^nf-lab-' || true)
[ "$left" = 0 ] || { echo "fresh-check: FAILED: $left lab namespaces left"; ip netns list; status=1; }
t2=$(date +%s)
echo "fresh-check: cargo xtask run smoke took $((t2 - t1)) s"
exit $status
"#;

pub fn run(keep: bool) -> Result<()> {
    let started = Instant::now();
    crate::setup::apt_install(&["debootstrap".to_owned()])?;
    let mirror = apt_mirror()?;
    let toolchain = default_toolchain()?;
    let root = PathBuf::from(format!(
        "/var/tmp/netfabric-fresh-check-{}",
        std::process::id()
    ));
    let result = check(&root, &mirror, &toolchain);
    if keep {
        eprintln!("xtask fresh-check: root kept at {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    let took = started.elapsed();
    match &result {
        Ok(()) => eprintln!(
            "xtask fresh-check: the README's two commands passed on a pristine Debian 12 root in {took:.0?}"
        ),
        Err(_) => eprintln!("xtask fresh-check: FAILED after {took:.0?}"),
    }
    result
}

fn check(root: &Path, mirror: &str, toolchain: &str) -> Result<()> {
    let phase = Instant::now();
    run_cmd(
        Command::new("debootstrap")
            .args(["--variant=minbase"])
            .arg(format!("--include={}", PREREQUISITES.join(",")))
            .arg(SUITE)
            .arg(root)
            .arg(mirror),
    )
    .context("debootstrap")?;
    eprintln!(
        "xtask fresh-check: Debian 12 root with {} in {:.0?}",
        PREREQUISITES.join(" "),
        phase.elapsed()
    );

    // The machine's apt sources, as a fresh install of it has them
    // (bookworm-security carries the current rustc-web; debootstrap only
    // writes the base suite).
    let apt = root.join("etc/apt");
    let _ = std::fs::remove_file(apt.join("sources.list"));
    for (from, to) in apt_sources()? {
        std::fs::copy(&from, apt.join(&to))
            .with_context(|| format!("copying {}", from.display()))?;
    }

    // rustup and its default toolchain, nothing else from this machine.
    let home = home();
    let rhome = root.join("root");
    std::fs::create_dir_all(rhome.join(".rustup/toolchains"))?;
    std::fs::create_dir_all(rhome.join(".cargo"))?;
    run_cmd(
        Command::new("cp")
            .arg("-a")
            .arg(home.join(".rustup/toolchains").join(toolchain))
            .arg(rhome.join(".rustup/toolchains")),
    )?;
    std::fs::write(
        rhome.join(".rustup/settings.toml"),
        format!("version = \"12\"\ndefault_toolchain = \"{toolchain}\"\nprofile = \"default\"\n"),
    )?;
    copy_rustup_proxies(&home.join(".cargo/bin"), &rhome.join(".cargo/bin"))?;
    // The machine's network setup is not the project's to install: its
    // resolver and its trusted CAs (which may include a proxy's own).
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf"))?;
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        root.join("etc/ssl/certs/ca-certificates.crt"),
    )
    .context("copying this machine's CA bundle")?;

    // The committed HEAD, as a fresh clone (no target/, no local changes).
    let src = workspace_root();
    run_cmd(
        Command::new("git")
            .args(["clone", "--quiet", "--no-local"])
            .arg(&src)
            .arg(rhome.join("netfabric")),
    )?;
    std::fs::write(root.join("fresh-check.sh"), INSIDE)?;

    let r = root.display();
    let mounts = format!(
        "set -e
mount --bind {r} {r}
mount -t proc proc {r}/proc
mount --rbind /sys {r}/sys
mount --make-rslave {r}/sys
mount -t bpf bpf {r}/sys/fs/bpf
mount --rbind /dev {r}/dev
mount --make-rslave {r}/dev
mount -t tmpfs tmpfs {r}/run
exec chroot {r} /bin/bash /fresh-check.sh"
    );
    run_cmd(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(&mounts)
            .env_clear()
            .env("TERM", "dumb")
            .env("LANG", "C.UTF-8"),
    )
    .context("the README's commands in the fresh root")
}
