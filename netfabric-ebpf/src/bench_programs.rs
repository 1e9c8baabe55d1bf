//! The benchmark's programs, in an object of their own (`BENCH_OBJECT` in
//! `netfabric::datapath`) that only `cargo xtask bench` loads; the product's
//! object (`main.rs`) has none of their programs or maps.
//!
//! * `baseline`: empty programs, measured next to the real ones.
//! * `bench`: the traffic generator and sink of the end-to-end part, with
//!   their own `BENCH_*` maps.
#![no_std]
#![no_main]

mod baseline;
mod bench;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
