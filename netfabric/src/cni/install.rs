//! `netfabric cni install`: the plugin binary into the runtime's plugin
//! directory and a conflist into its configuration directory.

use std::path::{Path, PathBuf};

use super::spec::{CONFLIST_VERSION, PLUGIN_TYPE};
use crate::{
    state::is_valid_name,
    store::{Store, StoreError},
};

/// Where runtimes look for plugins by default (containerd, CRI-O,
/// Kubernetes; podman searches it too).
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
/// Where runtimes look for network configurations by default.
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// The network's default name.
pub const DEFAULT_NETWORK: &str = "netfabric";

/// What to install.
#[derive(Debug, Clone)]
pub struct InstallConfig {
    /// The `netfabric-cni` executable to copy.
    pub plugin: PathBuf,
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    /// The network's name (`podman run --network NAME`).
    pub network: String,
    /// The store URL the plugin opens.
    pub store_url: String,
    /// This host's name in the store.
    pub host: String,
    pub default_owner: Option<String>,
    /// The host's network namespace, when it is not the runtime's.
    pub host_netns: Option<PathBuf>,
    /// bpffs, when not `/sys/fs/bpf`.
    pub bpffs: Option<PathBuf>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub plugin: PathBuf,
    pub conflist: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Bad input; nothing was written.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> InstallError {
    InstallError::Invalid {
        field,
        message: message.into(),
    }
}

/// The conflist's file name: `10-<network>.conflist`.
pub fn conflist_name(network: &str) -> String {
    format!("10-{network}.conflist")
}

/// The conflist for `config`.
pub fn conflist(config: &InstallConfig) -> serde_json::Value {
    let mut plugin = serde_json::json!({
        "type": PLUGIN_TYPE,
        "store": config.store_url,
        "host": config.host,
    });
    if let Some(owner) = &config.default_owner {
        plugin["defaultOwner"] = owner.clone().into();
    }
    if let Some(ns) = &config.host_netns {
        plugin["hostNetns"] = ns.display().to_string().into();
    }
    if let Some(bpffs) = &config.bpffs {
        plugin["bpffs"] = bpffs.display().to_string().into();
    }
    serde_json::json!({
        "cniVersion": CONFLIST_VERSION,
        "name": config.network,
        "plugins": [plugin],
    })
}

/// Checks `config` against the store (the host and the default owner must
/// exist), then copies the plugin and writes the conflist, each by a rename
/// (a runtime never sees half a file; a running plugin binary is replaced,
/// not overwritten).
pub fn install(config: &InstallConfig, store: &dyn Store) -> Result<Installed, InstallError> {
    // A network name is a file name and podman's network name.
    if !is_valid_name(&config.network) {
        return Err(invalid(
            "--network",
            format!(
                "{:?} is not a valid network name: {}",
                config.network,
                crate::state::NAME_RULE
            ),
        ));
    }
    if !config.plugin.is_file() {
        return Err(invalid(
            "--plugin",
            format!("{} is not a file", config.plugin.display()),
        ));
    }
    let snap = store.load()?;
    if snap.state.host(&config.host).is_none() {
        return Err(invalid(
            "--host",
            format!(
                "no host named {:?} in the store {}",
                config.host,
                store.url()
            ),
        ));
    }
    if let Some(owner) = &config.default_owner
        && snap.state.owner(owner).is_none()
    {
        return Err(invalid(
            "--default-owner",
            format!("no owner named {owner:?} in the store {}", store.url()),
        ));
    }
    let plugin = config.bin_dir.join(PLUGIN_TYPE);
    let conflist_path = config.conf_dir.join(conflist_name(&config.network));
    let text = serde_json::to_vec_pretty(&conflist(config)).expect("a conflist serialises");
    write_atomically(&plugin, |tmp| {
        std::fs::copy(&config.plugin, tmp).map(|_| ())?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755))
    })?;
    write_atomically(&conflist_path, |tmp| std::fs::write(tmp, &text))?;
    Ok(Installed {
        plugin,
        conflist: conflist_path,
    })
}

fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), InstallError> {
    let dir = path.parent().expect("an install path has a directory");
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| InstallError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let name = path.file_name().expect("a file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("writing", &tmp)(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("renaming into", path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::spec::NetConf;

    /// The plugin's entry of the conflist, with the list's `cniVersion` and
    /// `name` (what libcni hands a plugin), is a configuration it accepts.
    #[test]
    fn the_conflist_is_what_the_plugin_reads() {
        let config = InstallConfig {
            plugin: "/x".into(),
            bin_dir: "/b".into(),
            conf_dir: "/c".into(),
            network: "netfabric".into(),
            store_url: "etcd://10.0.0.5:2379".into(),
            host: "h1".into(),
            default_owner: Some("alice".into()),
            host_netns: Some("/run/netns/nf-h1".into()),
            bpffs: None,
        };
        let list = conflist(&config);
        assert_eq!(list["cniVersion"], CONFLIST_VERSION);
        assert_eq!(list["name"], "netfabric");
        let mut entry = list["plugins"][0].clone();
        entry["cniVersion"] = list["cniVersion"].clone();
        entry["name"] = list["name"].clone();
        let conf = NetConf::parse(entry.to_string().as_bytes()).unwrap();
        assert_eq!(conf.plugin_type, PLUGIN_TYPE);
        assert_eq!(conf.host, "h1");
        assert_eq!(conf.default_owner.as_deref(), Some("alice"));
        assert_eq!(
            conf.host_netns.as_deref(),
            Some(Path::new("/run/netns/nf-h1"))
        );
        assert_eq!(conf.store.as_deref(), Some("etcd://10.0.0.5:2379"));
        assert_eq!(conflist_name("netfabric"), "10-netfabric.conflist");
    }
}
