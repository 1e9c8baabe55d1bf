//! Traffic generator and sink of `cargo xtask bench` (end-to-end part).
//! Never loaded by the product: they are in the bench's own object
//! (`bench_programs.rs`), which the bench loads into its own namespaces.
//! Their maps are private to them.
//!
//! * `bench_gen`: run with BPF_PROG_TEST_RUN and the XDP live-frames flag in
//!   the sending container's namespace. Live-frame pages are recycled with
//!   whatever the path wrote into them (MACs, TTL), so every frame is
//!   rewritten from `BENCH_TEMPLATE` (64 bytes: Ethernet, IPv4, UDP with a
//!   zero checksum), its UDP source port varied, and sent with `XDP_TX`.
//! * `bench_sink` (XDP) / `bench_sink_tc` (TC ingress, for packets that
//!   skip the veth XDP hook, e.g. `bpf_redirect_peer`): on the receiving
//!   container's interface, count and drop UDP to [`BENCH_UDP_PORT`] and
//!   pass everything else (ARP, ping, iperf3).

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    macros::{classifier, map, xdp},
    maps::{Array, PerCpuArray},
    programs::{TcContext, XdpContext},
};

/// UDP destination port of the generated frames (the bench uses the same).
pub const BENCH_UDP_PORT: u16 = 9;
/// Length of the template frame in bytes.
const TEMPLATE_WORDS: usize = 8;

#[map]
static BENCH_TEMPLATE: Array<[u64; TEMPLATE_WORDS]> = Array::with_max_entries(1, 0);

#[map]
static BENCH_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[map]
static BENCH_RX: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    let data = ctx.data();
    if data + TEMPLATE_WORDS * 8 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let Some(template) = BENCH_TEMPLATE.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let words = data as *mut u64;
    for (i, w) in template.iter().enumerate() {
        unsafe { *words.add(i) = *w };
    }
    let seq = match BENCH_SEQ.get_ptr_mut(0) {
        Some(p) => unsafe {
            *p = (*p).wrapping_add(1);
            *p
        },
        None => 0,
    };
    // UDP source port (offset 14 + 20): 1024..=33791, network order.
    let sport = 1024u16 + (seq & 0x7fff) as u16;
    unsafe { *((data + 34) as *mut u16) = sport.to_be() };
    xdp_action::XDP_TX
}

/// Whether `[data, end)` is IPv4 (no options) UDP to [`BENCH_UDP_PORT`].
#[inline(always)]
fn is_bench(data: usize, end: usize) -> bool {
    if data + 38 > end {
        return false;
    }
    unsafe {
        *((data + 12) as *const u16) == 0x0800u16.to_be()
            && *((data + 14) as *const u8) == 0x45
            && *((data + 23) as *const u8) == 17
            && *((data + 36) as *const u16) == BENCH_UDP_PORT.to_be()
    }
}

#[inline(always)]
fn count() {
    if let Some(p) = BENCH_RX.get_ptr_mut(0) {
        unsafe { *p += 1 };
    }
}

#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    if is_bench(ctx.data(), ctx.data_end()) {
        count();
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[classifier]
pub fn bench_sink_tc(ctx: TcContext) -> i32 {
    if is_bench(ctx.data(), ctx.data_end()) {
        count();
        TC_ACT_SHOT
    } else {
        TC_ACT_OK
    }
}
