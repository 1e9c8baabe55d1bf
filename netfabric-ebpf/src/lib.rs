//! Library half of the eBPF crate: exists so that `netfabric`'s build.rs can
//! depend on this crate (and be rebuilt when it changes). The programs are in
//! the `netfabric` binary target (`main.rs`), built for `bpfel-unknown-none`.
#![no_std]
