//! netfabric's datapath: one file per attach point, one module per concern.
//!
//! * `from_container`: TC ingress on a container's host-side port.
//! * `from_uplink`: XDP on the host's uplink, the early-drop prefilter.
//! * `from_uplink_tc`: TC ingress on the host's uplink: judges what the
//!   prefilter passed and delivers into containers (super-packets whole).
//! * `to_container`: TC egress on a container's host-side port (traffic the
//!   host stack sends into a container).
//!
//! The bench's programs are in another binary of this crate
//! (`bench_programs.rs`), so that an agent's object holds none of them.
//!
//! Concerns: `parse` (one parser per header), `spoof` (source checks),
//! `policy` (owner/group rule over the maps), `route` (next hop, MAC and TTL
//! rewrite), `conntrack` (the connections whose replies may pass),
//! `service` (VIPs balanced and translated, replies translated back),
//! `metrics` (the one place where verdicts are counted and drops
//! reported), `maps` (every map, declared once).
#![no_std]
#![no_main]

mod conntrack;
mod from_container;
mod from_uplink;
mod from_uplink_tc;
mod maps;
mod metrics;
mod parse;
mod policy;
mod route;
mod scope;
mod service;
mod spoof;
mod to_container;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
