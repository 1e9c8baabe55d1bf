//! What a container's resolver is told: the host's DNS server at the
//! gateway and the search list of its owner.

use std::path::{Path, PathBuf};

use crate::conventions::GATEWAY;

/// The search list of a container of `owner`: `<owner>.<domain>` (so
/// `<container>` finds the owner's own containers), then `<domain>` (so
/// `<container>.<owner>` finds anyone's).
pub fn search(owner: &str, domain: &str) -> [String; 2] {
    let domain = domain.trim_end_matches('.');
    [format!("{owner}.{domain}"), domain.to_owned()]
}

/// `ndots:2`: `web.bob` (one dot) goes through the search list before it is
/// asked as an absolute name (which the upstream resolvers would get).
pub const OPTIONS: &str = "ndots:2";

/// The resolv.conf of a container of `owner`.
pub fn resolv_conf(owner: &str, domain: &str) -> String {
    let [own, all] = search(owner, domain);
    format!(
        "# written by netfabric: the host's resolver; names follow the policy\n\
         nameserver {GATEWAY}\n\
         search {own} {all}\n\
         options {OPTIONS}\n"
    )
}

/// Where `ip netns exec <name>` finds the resolv.conf of the named network
/// namespace `netns` (`/run/netns/<name>` → `/etc/netns/<name>/resolv.conf`);
/// `None` for a namespace that is not a named one.
pub fn netns_resolv_conf_path(netns: &Path) -> Option<PathBuf> {
    let name = netns.strip_prefix("/run/netns").ok()?;
    let name = name
        .to_str()
        .filter(|n| !n.is_empty() && !n.contains('/'))?;
    Some(Path::new("/etc/netns").join(name).join("resolv.conf"))
}

/// Writes [`resolv_conf`] to `path` (its directory created), replacing
/// any file there atomically.
pub fn write_resolv_conf(path: &Path, owner: &str, domain: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension("netfabric-tmp");
    std::fs::write(&temp, resolv_conf(owner, domain))?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_first_then_the_domain() {
        assert_eq!(
            resolv_conf("alice", "netfabric.internal."),
            "# written by netfabric: the host's resolver; names follow the policy\n\
             nameserver 169.254.1.1\n\
             search alice.netfabric.internal netfabric.internal\n\
             options ndots:2\n"
        );
    }

    #[test]
    fn only_named_namespaces_have_an_etc_netns_file() {
        assert_eq!(
            netns_resolv_conf_path(Path::new("/run/netns/web")),
            Some(PathBuf::from("/etc/netns/web/resolv.conf"))
        );
        assert_eq!(netns_resolv_conf_path(Path::new("/proc/42/ns/net")), None);
        assert_eq!(netns_resolv_conf_path(Path::new("/run/netns/")), None);
        assert_eq!(netns_resolv_conf_path(Path::new("/run/netns/a/b")), None);
    }
}
