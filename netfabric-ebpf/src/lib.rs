//! Library half of the eBPF crate: exists so that `netfabric`'s build.rs can
//! depend on this crate (and be rebuilt when it changes). The programs are in
//! the binary targets, built for `bpfel-unknown-none`: the product's
//! `netfabric` (`main.rs`) and the bench's `netfabric-bench-programs`
//! (`bench_programs.rs`).
#![no_std]
