//! BPF_PROG_TEST_RUN of the loaded programs: packet fixtures in the tests,
//! per-packet cost in the benchmarks.

use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions};

use super::{Datapath, DatapathError, prog_err};

/// `struct __sk_buff` up to and including `ifindex` (offset 40): the kernel
/// takes a prefix and requires the fields it does not accept to be zero.
const SKB_CTX_LEN: usize = 44;
const SKB_IFINDEX_OFFSET: usize = 40;
/// `__sk_buff::mark`, which the kernel copies into the test skb.
const SKB_MARK_OFFSET: usize = 8;

/// What a program did to one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// The program's return code (`XDP_*` or `TC_ACT_*`).
    pub action: u32,
    /// The packet as the program left it.
    pub packet: Vec<u8>,
    /// Average time per run as measured by the kernel.
    pub duration: Duration,
}

fn skb_ctx(ifindex: u32, mark: u32) -> [u8; SKB_CTX_LEN] {
    let mut ctx = [0u8; SKB_CTX_LEN];
    ctx[SKB_IFINDEX_OFFSET..SKB_IFINDEX_OFFSET + 4].copy_from_slice(&ifindex.to_ne_bytes());
    ctx[SKB_MARK_OFFSET..SKB_MARK_OFFSET + 4].copy_from_slice(&mark.to_ne_bytes());
    ctx
}

impl Datapath {
    /// Run XDP program `name` on `packet` `repeat` times.
    pub fn test_run_xdp(
        &mut self,
        name: &'static str,
        packet: &[u8],
        repeat: u32,
    ) -> Result<RunOutcome, DatapathError> {
        let mut out = vec![0u8; packet.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::new()
        };
        let res = self.xdp(name)?.test_run(opts).map_err(prog_err(name))?;
        out.truncate(res.data_size_out as usize);
        Ok(RunOutcome {
            action: res.return_value,
            packet: out,
            duration: res.duration,
        })
    }

    /// Run TC program `name` on `packet` as if it arrived on (ingress) or
    /// left through (egress) interface `ifindex`, which must exist in the
    /// calling thread's network namespace (0: the loopback device).
    pub fn test_run_tc(
        &mut self,
        name: &'static str,
        packet: &[u8],
        ifindex: u32,
        repeat: u32,
    ) -> Result<RunOutcome, DatapathError> {
        self.test_run_tc_marked(name, packet, ifindex, 0, repeat)
    }

    /// [`Datapath::test_run_tc`] of an skb carrying `mark` (`skb->mark`,
    /// as `SO_MARK` sets it on a socket's packets).
    pub fn test_run_tc_marked(
        &mut self,
        name: &'static str,
        packet: &[u8],
        ifindex: u32,
        mark: u32,
        repeat: u32,
    ) -> Result<RunOutcome, DatapathError> {
        let mut out = vec![0u8; packet.len() + 256];
        let ctx = skb_ctx(ifindex, mark);
        let opts = TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ctx_in: (ifindex != 0 || mark != 0).then_some(&ctx[..]),
            repeat,
            ..TestRunOptions::new()
        };
        let res = self.tc(name)?.test_run(opts).map_err(prog_err(name))?;
        out.truncate(res.data_size_out as usize);
        Ok(RunOutcome {
            action: res.return_value,
            packet: out,
            duration: res.duration,
        })
    }
}
