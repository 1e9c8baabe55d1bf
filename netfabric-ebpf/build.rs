//! Link-time code generation options for the BPF object (bpf-linker does the
//! code generation).
//!
//! `+allows-misaligned-mem-access` (LLVM 22) lets LLVM read and write packet
//! fields such as IPv4 addresses and MACs with one 2-, 4- or 8-byte access
//! instead of a load or store per byte. The kernel's verifier accepts
//! misaligned packet and map-value accesses on architectures with efficient
//! unaligned access (x86-64, arm64), which are the ones netfabric runs on;
//! stack accesses stay aligned (LLVM aligns its stack slots).

fn main() {
    println!("cargo:rustc-link-arg-bins=--cpu-features=+allows-misaligned-mem-access");
    println!("cargo:rerun-if-changed=build.rs");
}
