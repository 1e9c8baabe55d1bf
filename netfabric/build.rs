//! Builds the eBPF object (netfabric-ebpf, target bpfel-unknown-none) with
//! aya-build and the Debian toolchain that `cargo xtask setup` links as
//! `debian-web`; its two objects (the product's `netfabric` and the bench's
//! `netfabric-bench-programs`, one per binary of the crate) are embedded by
//! `src/datapath/mod.rs`.

use std::{path::Path, process::Command};

use aya_build::{Package, Toolchain};

const TOOLCHAIN: &str = "debian-web";

fn missing(what: &str) -> ! {
    panic!(
        "\n\nnetfabric: cannot build the eBPF programs: {what}.\n\
         Run `cargo xtask setup` once (it installs the Debian rustc with rust-src, links it as \
         the `{TOOLCHAIN}` toolchain and builds bpf-linker against the matching LLVM).\n\n"
    )
}

fn preflight() {
    let rustc = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "-vV"])
        .output();
    match rustc {
        Ok(out) if out.status.success() => {}
        _ => missing(&format!("the rustup toolchain `{TOOLCHAIN}` is not linked")),
    }
    let sysroot = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if !Path::new(&sysroot)
        .join("lib/rustlib/src/rust/library/core")
        .is_dir()
    {
        missing(&format!("rust-src is missing under {sysroot}"));
    }
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_err()
    {
        missing("bpf-linker is not on PATH");
    }
}

fn main() -> aya_build::Result<()> {
    println!("cargo:rerun-if-changed=../netfabric-common/src");
    if std::env::var_os("AYA_BUILD_SKIP").is_none() {
        preflight();
    }
    // The Debian compiler is a stable-channel rustc: allow `-Z build-std=core`.
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../netfabric-ebpf");
    aya_build::build_ebpf(
        [Package {
            name: "netfabric-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(TOOLCHAIN),
    )
}
