//! The conventions the product and its tests share, in one place: device
//! names, the MAC schemes, address ranges, where a host's maps and links
//! are pinned, and how to tell that an agent runs. A leaf: it imports
//! nothing but [`crate::mac`], so the pure planner and the test topology
//! can use it without the netlink code of [`crate::port`].

use std::{
    net::Ipv4Addr,
    ops::RangeInclusive,
    path::{Path, PathBuf},
};

use crate::MacAddr;

// ---- devices ------------------------------------------------------------

/// The bridge every container port of a host is enslaved to.
pub const HOST_BRIDGE: &str = "nfbr0";
/// The containers' default gateway, held by [`HOST_BRIDGE`].
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The default domain of container names (`<container>.<owner>.<domain>`,
/// served by the agent at [`GATEWAY`]:53): under `.internal`, which ICANN
/// reserves for private use, so it is never delegated in the public DNS.
pub const DEFAULT_DNS_DOMAIN: &str = "netfabric.internal";
/// Name of the container-side end of the veth.
pub const CONTAINER_IFNAME: &str = "eth0";
/// Prefix of host-side port names: `nfc<octet>`.
pub const PORT_PREFIX: &str = "nfc";

// ---- address ranges -----------------------------------------------------

/// Host numbers a zone can use (the third octet of a host's /24).
pub const HOST_NUMBERS: RangeInclusive<u32> = 1..=254;
/// Container octets a host can hand out (the fourth octet; `.0` is the
/// bridge's MAC, `.255` the broadcast).
pub const CONTAINER_OCTETS: RangeInclusive<u8> = 1..=254;

/// Host-side port name of the container with address `addr`.
pub fn port_name(addr: Ipv4Addr) -> String {
    format!("{PORT_PREFIX}{}", addr.octets()[3])
}

/// The container octet of a port name (`nfc7` → 7).
pub fn port_octet(name: &str) -> Option<u8> {
    let rest = name.strip_prefix(PORT_PREFIX)?;
    if rest.starts_with('0') || rest.is_empty() {
        return None;
    }
    rest.parse::<u8>()
        .ok()
        .filter(|o| CONTAINER_OCTETS.contains(o))
}

// ---- MAC schemes ----------------------------------------------------------

/// The container's MAC: `02:00:<a>:<b>:<c>:<d>` of its address.
pub fn container_mac(addr: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = addr.octets();
    MacAddr([0x02, 0x00, a, b, c, d])
}

/// The host bridge's MAC (what containers resolve [`GATEWAY`] to):
/// `02:00:<a>:<b>:<c>:00` of the host's /24 (no container uses `.0`).
pub fn bridge_mac(host_subnet: Ipv4Addr) -> MacAddr {
    let [a, b, c, _] = host_subnet.octets();
    MacAddr([0x02, 0x00, a, b, c, 0x00])
}

// ---- pins -----------------------------------------------------------------

/// The bpffs mount agents pin under by default.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// `<bpffs>/netfabric`: one directory per host.
pub fn pin_root(bpffs: &Path) -> PathBuf {
    bpffs.join("netfabric")
}

/// `<bpffs>/netfabric/<host>`: a host's maps (by their names in
/// `netfabric_common::ALL_MAPS`) and its [`links_dir`].
pub fn pin_dir(bpffs: &Path, host: &str) -> PathBuf {
    pin_root(bpffs).join(host)
}

/// `<pin dir>/links`: the program links of a host (the agent pins them,
/// `status` reads them).
pub fn links_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("links")
}

/// The pinned link of `from_uplink` (XDP) on the uplink.
pub fn uplink_link_pin(pin_dir: &Path) -> PathBuf {
    links_dir(pin_dir).join("uplink")
}

/// The pinned TCX ingress link of `from_uplink_tc` on the uplink. Not
/// `*-ingress`: that suffix names ports ([`port_of_ingress_pin`]).
pub fn uplink_tc_link_pin(pin_dir: &Path) -> PathBuf {
    links_dir(pin_dir).join("uplink-tc")
}

/// Is `name` (a pin under [`links_dir`]) one of the uplink's links?
pub fn is_uplink_pin(name: &str) -> bool {
    name == "uplink" || name == "uplink-tc"
}

/// The pinned TCX links of a container port: `<port>-ingress`
/// (`from_container`) and `<port>-egress` (`to_container`).
pub fn port_link_pins(pin_dir: &Path, port: &str) -> (PathBuf, PathBuf) {
    let d = links_dir(pin_dir);
    (
        d.join(format!("{port}-ingress")),
        d.join(format!("{port}-egress")),
    )
}

/// The port whose ingress link is pinned as `name` (`nfc3-ingress` → `nfc3`).
pub fn port_of_ingress_pin(name: &str) -> Option<&str> {
    name.strip_suffix("-ingress")
}

// ---- agent liveness ---------------------------------------------------------

/// Whether `args` (a command line) is `netfabric agent` for `host`:
/// an `agent` argument and `--host <host>` (or `--host=<host>`).
pub fn is_agent_command_line<A: AsRef<[u8]>>(args: &[A], host: &str) -> bool {
    let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
    let with_value = format!("--host={host}");
    args.contains(&b"agent".as_slice())
        && (args
            .windows(2)
            .any(|w| w[0] == b"--host" && w[1] == host.as_bytes())
            || args.contains(&with_value.as_bytes()))
}

/// Whether process `pid` is an agent for `host` (the one rule `status`,
/// `lab status` and `lab down` use).
pub fn is_agent_of(pid: u32, host: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        is_agent_command_line(&args, host)
    })
}

/// The pids of the agents running for `host`, sorted.
pub fn agent_pids(host: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_agent_of(*pid, host))
        .collect();
    pids.sort();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_octets_and_macs() {
        let a = Ipv4Addr::new(10, 1, 3, 7);
        assert_eq!(port_name(a), "nfc7");
        assert_eq!(port_octet("nfc7"), Some(7));
        assert_eq!(port_octet("nfc07"), None);
        assert_eq!(port_octet("nfc255"), None);
        assert_eq!(port_octet("nfc0"), None);
        assert_eq!(port_octet("nfp7"), None);
        assert_eq!(port_octet("nfbr0"), None);
        assert_eq!(
            container_mac(Ipv4Addr::new(10, 1, 2, 7)).to_string(),
            "02:00:0a:01:02:07"
        );
        assert_eq!(
            bridge_mac(Ipv4Addr::new(10, 1, 2, 0)).to_string(),
            "02:00:0a:01:02:00"
        );
        assert_eq!(container_mac(a).0, [2, 0, 10, 1, 3, 7]);
        assert_eq!(
            bridge_mac(Ipv4Addr::new(10, 1, 3, 0)).0,
            [2, 0, 10, 1, 3, 0]
        );
    }

    #[test]
    fn the_ranges_agree_with_the_kernel_side() {
        use netfabric_common::plan::{is_valid_container_octet, is_valid_host_octet};
        for n in 0..=255u32 {
            assert_eq!(HOST_NUMBERS.contains(&n), is_valid_host_octet(n), "{n}");
            assert_eq!(
                CONTAINER_OCTETS.contains(&(n as u8)),
                is_valid_container_octet(n),
                "{n}"
            );
        }
    }

    #[test]
    fn the_pin_layout() {
        let dir = pin_dir(Path::new("/sys/fs/bpf"), "h1");
        assert_eq!(dir, Path::new("/sys/fs/bpf/netfabric/h1"));
        assert_eq!(uplink_link_pin(&dir), dir.join("links/uplink"));
        assert_eq!(uplink_tc_link_pin(&dir), dir.join("links/uplink-tc"));
        assert!(is_uplink_pin("uplink") && is_uplink_pin("uplink-tc"));
        assert_eq!(port_of_ingress_pin("uplink-tc"), None);
        let (i, e) = port_link_pins(&dir, "nfc3");
        assert_eq!(i, dir.join("links/nfc3-ingress"));
        assert_eq!(e, dir.join("links/nfc3-egress"));
        assert_eq!(port_of_ingress_pin("nfc3-ingress"), Some("nfc3"));
        assert_eq!(port_of_ingress_pin("nfc3-egress"), None);
    }

    #[test]
    fn an_agent_is_agent_and_its_host() {
        let args = [
            "/usr/bin/netfabric",
            "agent",
            "--host",
            "h1",
            "--store",
            "x",
        ];
        assert!(is_agent_command_line(&args, "h1"));
        assert!(!is_agent_command_line(&args, "h2"));
        assert!(!is_agent_command_line(&args, "h"));
        assert!(is_agent_command_line(
            &["netfabric", "agent", "--host=h1"],
            "h1"
        ));
        // A lab or a CLI command naming a host is no agent.
        assert!(!is_agent_command_line(
            &["netfabric", "maps", "--host", "h1"],
            "h1"
        ));
        assert!(!is_agent_command_line(
            &["netfabric", "agents", "--host", "h1"],
            "h1"
        ));
        assert!(!is_agent_of(std::process::id(), "h1"));
    }
}
