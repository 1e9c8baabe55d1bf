//! Egress NAT (docs/policy.md): the host masquerades its containers'
//! connections to addresses outside every zone behind its uplink's address,
//! with the kernel's nftables masquerade. The programs decide whether a
//! packet may leave (`egress_denied`) and which replies may come back
//! (`CONNECTIONS`); the kernel's conntrack only translates.
//!
//! The ruleset is the table `ip netfabric` of the agent's network namespace
//! (the host's), written with Debian's `nft` binary in one transaction
//! (`nft -f -`: the table is replaced whole, so a restart or a change of
//! zones or uplink leaves exactly one current ruleset, never a mix; an
//! identical one changes nothing). Why the binary and not a netlink crate:
//! `nft -f` is the kernel's own transaction format and needs no library
//! (the Rust netlink crates either wrap libnftnl through C bindings or
//! expose raw expressions, and neither is packaged here); the cost is one
//! process per change of the ruleset, which happens when zones or the
//! uplink change, not per packet or container.
//!
//! The agent checks every [`CHECK_EVERY`] that the table is still there
//! and installs it again if someone flushed the ruleset.
//!
//! The agent also turns on IPv4 forwarding in its namespace
//! (`net.ipv4.ip_forward`): the stack routes the containers' egress from
//! the host bridge to the uplink. The table goes when the host leaves the
//! desired state ([`remove`]); the lab's hosts are namespaces, so `lab
//! down` takes it with them.

use std::{
    io::Write as _,
    net::Ipv4Addr,
    process::{Command, Stdio},
};

use crate::{conventions::HOST_BRIDGE, port, state::Ipv4Prefix};

/// The nftables table the agent owns (family `ip`).
pub const TABLE: &str = "netfabric";

/// How often the agent checks that its table is still there (a flushed
/// ruleset is installed again within this time).
pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What the masquerade needs to know about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    /// The host's /24: the containers' sources.
    pub host_subnet: Ipv4Prefix,
    /// The uplink, out of which egress leaves.
    pub uplink: String,
    /// Every zone's /16: destinations that are never translated.
    pub zones: Vec<Ipv4Prefix>,
}

#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("running nft (install Debian's nftables: `cargo xtask setup`): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft refused the ruleset: {0}")]
    Refused(String),
    #[error("turning on IPv4 forwarding: {0}")]
    Forwarding(#[source] port::PortError),
}

impl NatConfig {
    /// The `nft -f` script that makes the table exactly this (created if
    /// missing, then replaced whole, in one transaction).
    pub fn script(&self) -> String {
        let zones = if self.zones.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self.zones.iter().map(prefix).collect();
            format!(" ip daddr != {{ {} }}", list.join(", "))
        };
        format!(
            "table ip {TABLE} {{}}\n\
             delete table ip {TABLE}\n\
             table ip {TABLE} {{\n\
             \tcomment \"netfabric: egress NAT of this host's containers\"\n\
             \tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tip saddr {src} iifname \"{bridge}\" oifname \"{uplink}\"{zones} masquerade\n\
             \t}}\n\
             }}\n",
            src = prefix(&self.host_subnet),
            bridge = HOST_BRIDGE,
            uplink = self.uplink,
        )
    }
}

fn prefix(p: &Ipv4Prefix) -> String {
    let mask = if p.len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(p.len))
    };
    format!("{}/{}", Ipv4Addr::from(u32::from(p.addr) & mask), p.len)
}

/// Runs `nft -f -` with `script` on stdin.
fn nft(script: &str) -> Result<(), NatError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NatError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NatError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NatError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NatError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Makes the table `config`'s and turns on forwarding, in the calling
/// thread's network namespace.
pub fn install(config: &NatConfig) -> Result<(), NatError> {
    port::write_sysctl("net/ipv4/ip_forward", "1").map_err(NatError::Forwarding)?;
    nft(&config.script())
}

/// Removes the table (absent: nothing to do). Forwarding stays as it is:
/// other things on the host may rely on it.
pub fn remove() -> Result<(), NatError> {
    nft(&format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"))
}

/// The table as `nft` lists it, if present (for tests and `status`).
pub fn listed() -> Result<Option<String>, NatError> {
    let out = Command::new("nft")
        .args(["list", "table", "ip", TABLE])
        .output()
        .map_err(NatError::Spawn)?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NatConfig {
        NatConfig {
            host_subnet: "10.1.3.0/24".parse().unwrap(),
            uplink: "up0".into(),
            zones: vec![
                "10.1.0.0/16".parse().unwrap(),
                "10.2.0.0/16".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn the_script_replaces_the_table_whole() {
        let s = config().script();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "table ip netfabric {}");
        assert_eq!(lines[1], "delete table ip netfabric");
        assert!(
            s.contains(
                "ip saddr 10.1.3.0/24 iifname \"nfbr0\" oifname \"up0\" \
                 ip daddr != { 10.1.0.0/16, 10.2.0.0/16 } masquerade"
            ),
            "{s}"
        );
        let no_zones = NatConfig {
            zones: Vec::new(),
            ..config()
        };
        assert!(no_zones.script().contains("oifname \"up0\" masquerade"));
    }
}
