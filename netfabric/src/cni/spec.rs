//! The CNI specification's wire formats (<https://www.cni.dev/docs/spec/>,
//! 1.0.0 and 1.1.0): the environment, the network configuration the plugin
//! reads on stdin, and the result, error and version documents it prints.
//!
//! Hand-written serde types: the few documents a plugin exchanges are
//! small, and the Rust CNI crates are either unmaintained (`cni-plugin`,
//! last release 2021) or bring their own plugin loop and change their API
//! between minor versions (`rscni-plugin`).

use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::{is_valid_name, model::is_valid_interface_name};

/// The specification versions this plugin speaks (results are the same in
/// both; 1.1.0 adds STATUS and GC).
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0", "1.1.0"];
/// The version a conflist written by `netfabric cni install` asks for: the
/// newest one podman 4.3's libcni (1.1.x) knows.
pub const CONFLIST_VERSION: &str = "1.0.0";
/// The `type` of the plugin in a network configuration (its executable's
/// name).
pub const PLUGIN_TYPE: &str = "netfabric-cni";

/// The specification's well-known error codes (section "Error"), and this
/// plugin's own (100 and up, as the specification reserves them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    /// 1: incompatible CNI version.
    IncompatibleVersion = 1,
    /// 2: unsupported field in the network configuration.
    UnsupportedField = 2,
    /// 3: container unknown or does not exist.
    ContainerUnknown = 3,
    /// 4: invalid necessary environment variables (`CNI_COMMAND`,
    /// `CNI_CONTAINERID`, `CNI_ARGS`, ...).
    InvalidEnvironment = 4,
    /// 5: I/O failure.
    Io = 5,
    /// 6: failed to decode content (the configuration is not JSON).
    Decode = 6,
    /// 7: invalid network configuration.
    InvalidConfig = 7,
    /// 11: try again later (the store is unreachable).
    TryAgainLater = 11,
    /// 50 (1.1.0 STATUS): the plugin cannot serve ADD now.
    NotAvailable = 50,
    /// 100: the container is not in the store and nothing names its owner.
    NoOwner = 100,
    /// 101: the container exists in the store on another host.
    WrongHost = 101,
    /// 102: the store refused to create the container (host full, owner
    /// mismatch, ...).
    Refused = 102,
    /// 103: CHECK found the attachment different from what ADD made.
    CheckFailed = 103,
    /// 104: ADD found `CNI_IFNAME` in the container already (the
    /// specification requires an error).
    InterfaceExists = 104,
}

/// A CNI error: what the plugin prints on stdout (and exits non-zero).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {}: {msg}{}", *code as u32, if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error document for `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code as u32,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            doc["details"] = self.details.clone().into();
        }
        doc
    }
}

type Result<T, E = CniError> = std::result::Result<T, E>;

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(CniError::new(
                    Code::InvalidEnvironment,
                    format!(
                        "CNI_COMMAND: unknown command {other:?} (ADD, DEL, CHECK, VERSION, STATUS, GC)"
                    ),
                ));
            }
        })
    }
}

/// The `CNI_*` environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub command: Command,
    /// `CNI_CONTAINERID` (ADD, DEL, CHECK).
    pub container_id: Option<String>,
    /// `CNI_NETNS`: required for ADD and CHECK, optional for DEL.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (ADD, DEL, CHECK).
    pub ifname: Option<String>,
    pub args: CniArgs,
}

fn env_error(msg: impl Into<String>) -> CniError {
    CniError::new(Code::InvalidEnvironment, msg)
}

impl Environment {
    /// Reads the environment through `var` (`std::env::var` in the plugin,
    /// a map in tests). Checks what the command needs.
    pub fn parse(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        let command = Command::parse(
            &get("CNI_COMMAND").ok_or_else(|| env_error("CNI_COMMAND is not set"))?,
        )?;
        let needs_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = get("CNI_CONTAINERID");
        if let Some(id) = &container_id {
            // The specification: alphanumeric plus underscore, dot and hyphen.
            if !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                return Err(env_error(format!(
                    "CNI_CONTAINERID: {id:?} has characters other than letters, digits, '_', '.', '-'"
                )));
            }
        } else if needs_container {
            return Err(env_error("CNI_CONTAINERID is not set"));
        }
        let netns = get("CNI_NETNS").map(PathBuf::from);
        if netns.is_none() && matches!(command, Command::Add | Command::Check) {
            return Err(env_error("CNI_NETNS is not set"));
        }
        let ifname = get("CNI_IFNAME");
        match &ifname {
            Some(name) if !is_valid_interface_name(name) => {
                return Err(env_error(format!(
                    "CNI_IFNAME: {name:?} is not a valid interface name"
                )));
            }
            None if needs_container => return Err(env_error("CNI_IFNAME is not set")),
            _ => {}
        }
        let args = CniArgs::parse(get("CNI_ARGS").as_deref().unwrap_or(""))?;
        Ok(Environment {
            command,
            container_id,
            netns,
            ifname,
            args,
        })
    }
}

/// `CNI_ARGS`: `KEY=VALUE;KEY=VALUE`. The keys this plugin reads are the
/// pod identity runtimes pass (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`) and
/// `owner`; other keys are refused unless `IgnoreUnknown=1` (the libcni
/// convention, which podman and Kubernetes set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub owner: Option<String>,
}

/// Keys runtimes pass that carry nothing for this plugin.
const IGNORED_KEYS: &[&str] = &["IgnoreUnknown", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"];

impl CniArgs {
    pub fn parse(s: &str) -> Result<Self> {
        let mut pairs = BTreeMap::new();
        for part in s.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| env_error(format!("CNI_ARGS: {part:?} is not KEY=VALUE")))?;
            if k.is_empty() {
                return Err(env_error(format!("CNI_ARGS: {part:?} has an empty key")));
            }
            pairs.insert(k.to_owned(), v.to_owned());
        }
        let ignore_unknown = pairs
            .get("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        let mut args = CniArgs::default();
        for (k, v) in pairs {
            let v = Some(v).filter(|v| !v.is_empty());
            match k.as_str() {
                "K8S_POD_NAMESPACE" => args.pod_namespace = v,
                "K8S_POD_NAME" => args.pod_name = v,
                "owner" => args.owner = v,
                k if IGNORED_KEYS.contains(&k) || ignore_unknown => {}
                k => {
                    return Err(env_error(format!(
                        "CNI_ARGS: unknown key {k:?} (known: K8S_POD_NAMESPACE, K8S_POD_NAME, owner; \
                         IgnoreUnknown=1 ignores others)"
                    )));
                }
            }
        }
        if let Some(owner) = &args.owner
            && !is_valid_name(owner)
        {
            return Err(env_error(format!(
                "CNI_ARGS owner: {owner:?} is not a valid owner name"
            )));
        }
        Ok(args)
    }

    /// The netfabric container name: `K8S_POD_NAME`, prefixed with
    /// `K8S_POD_NAMESPACE-` when a namespace is given (Kubernetes), so pods
    /// of two namespaces never share an address. `None` when the runtime
    /// passed no name.
    pub fn container_name(&self) -> Result<Option<String>> {
        let Some(pod) = &self.pod_name else {
            return Ok(None);
        };
        let name = match &self.pod_namespace {
            Some(ns) => format!("{ns}-{pod}"),
            None => pod.clone(),
        };
        if !is_valid_name(&name) {
            let from = if self.pod_namespace.is_some() {
                "K8S_POD_NAMESPACE-K8S_POD_NAME"
            } else {
                "K8S_POD_NAME"
            };
            return Err(env_error(format!(
                "CNI_ARGS {from}: {name:?} is not a netfabric container name: {}",
                crate::state::NAME_RULE
            )));
        }
        Ok(Some(name))
    }
}

/// The keys a network configuration of this plugin may have: the
/// specification's (some inserted by the runtime) and the plugin's own.
const KNOWN_FIELDS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "disableCheck",
    "disableGC",
    "ipam",
    "dns",
    "capabilities",
    "runtimeConfig",
    "args",
    "prevResult",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
    // The plugin's own.
    "store",
    "host",
    "hostNetns",
    "defaultOwner",
    "bpffs",
    "lockDir",
];

/// The network configuration given on stdin (the plugin's entry of a
/// conflist, with `cniVersion` and `name` of the list).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The store URL (`file:///...` or `etcd://...`); default
    /// `file:///var/lib/netfabric/state.json`.
    #[serde(default)]
    pub store: Option<String>,
    /// This host's name in the store.
    pub host: String,
    /// The host's network namespace when it is not the runtime's (the lab's
    /// hosts are namespaces): `/run/netns/nf-h1`.
    #[serde(default)]
    pub host_netns: Option<PathBuf>,
    /// The owner of containers this network creates when `CNI_ARGS` names
    /// none.
    #[serde(default)]
    pub default_owner: Option<String>,
    /// Where bpffs is mounted (CHECK reads the agent's pinned links).
    #[serde(default)]
    pub bpffs: Option<PathBuf>,
    /// Where the plugin's per-host lock lives (default `/run/netfabric`).
    #[serde(default)]
    pub lock_dir: Option<PathBuf>,
    #[serde(default)]
    pub prev_result: Option<serde_json::Value>,
}

impl NetConf {
    /// Parses and checks a configuration. Errors carry the version to
    /// answer in (the configuration's, when it could be read).
    pub fn parse(stdin: &[u8]) -> std::result::Result<Self, (CniError, String)> {
        let fallback = || CONFLIST_VERSION.to_owned();
        let value: serde_json::Value = serde_json::from_slice(stdin).map_err(|e| {
            (
                CniError::new(
                    Code::Decode,
                    format!("the network configuration is not JSON: {e}"),
                ),
                fallback(),
            )
        })?;
        let Some(obj) = value.as_object() else {
            return Err((
                CniError::new(
                    Code::Decode,
                    "the network configuration is not a JSON object",
                ),
                fallback(),
            ));
        };
        let version = obj
            .get("cniVersion")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let answer_in = version.clone().unwrap_or_else(fallback);
        let fail = |code, msg: String| Err((CniError::new(code, msg), answer_in.clone()));
        match &version {
            None => return fail(Code::InvalidConfig, "cniVersion: missing".into()),
            Some(v) if !SUPPORTED_VERSIONS.contains(&v.as_str()) => {
                return Err((
                    CniError::new(
                        Code::IncompatibleVersion,
                        format!(
                            "cniVersion: {v:?} is not supported (supported: {})",
                            SUPPORTED_VERSIONS.join(", ")
                        ),
                    ),
                    // The answer must be in a version the caller reads.
                    v.clone(),
                ));
            }
            Some(_) => {}
        }
        if let Some(field) = obj.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
            return Err((
                CniError::new(
                    Code::UnsupportedField,
                    format!("{field}: unknown field of the netfabric-cni configuration"),
                )
                .with_details(format!("known fields: {}", KNOWN_FIELDS.join(", "))),
                answer_in,
            ));
        }
        for field in ["name", "type", "host"] {
            if !obj.get(field).is_some_and(|v| v.is_string()) {
                return fail(
                    Code::InvalidConfig,
                    format!("{field}: missing (a string is required)"),
                );
            }
        }
        let conf: NetConf = serde_json::from_value(value.clone()).map_err(|e| {
            (
                CniError::new(
                    Code::InvalidConfig,
                    format!("the network configuration: {e}"),
                ),
                answer_in.clone(),
            )
        })?;
        if !is_valid_name(&conf.host) {
            return fail(
                Code::InvalidConfig,
                format!("host: {:?} is not a valid host name", conf.host),
            );
        }
        if let Some(owner) = &conf.default_owner
            && !is_valid_name(owner)
        {
            return fail(
                Code::InvalidConfig,
                format!("defaultOwner: {owner:?} is not a valid owner name"),
            );
        }
        Ok(conf)
    }
}

/// The minimal document VERSION reads (`{"cniVersion": "..."}`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionRequest {
    cni_version: Option<String>,
}

/// The VERSION answer.
pub fn version_json(stdin: &[u8]) -> serde_json::Value {
    let asked = serde_json::from_slice::<VersionRequest>(stdin)
        .ok()
        .and_then(|r| r.cni_version)
        .unwrap_or_else(|| SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1].to_owned());
    serde_json::json!({
        "cniVersion": asked,
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

/// An interface of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The container's network namespace; absent for a host-side interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR notation, e.g. `10.1.1.1/32`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<Ipv4Addr>,
}

/// The DNS settings of a result: the agent's resolver at the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The ADD result (1.0.0 and 1.1.0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Environment> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Environment::parse(|k| map.get(k).cloned())
    }

    #[test]
    fn the_environment_of_each_command() {
        let add = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "a1b2_c.3-d"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web;FOO=bar"),
        ])
        .unwrap();
        assert_eq!(add.command, Command::Add);
        assert_eq!(
            add.netns.as_deref(),
            Some(std::path::Path::new("/run/netns/x"))
        );
        assert_eq!(add.args.container_name().unwrap().as_deref(), Some("web"));
        // DEL needs no namespace (it may be gone already).
        let del = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(del.netns, None);
        // VERSION needs nothing else.
        assert_eq!(
            env(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
        for (pairs, field) in [
            (vec![], "CNI_COMMAND"),
            (vec![("CNI_COMMAND", "NUKE")], "CNI_COMMAND"),
            (
                vec![
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_NETNS", "/x"),
                    ("CNI_IFNAME", "eth0"),
                ],
                "CNI_CONTAINERID",
            ),
            (
                vec![
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", "c"),
                    ("CNI_IFNAME", "eth0"),
                ],
                "CNI_NETNS",
            ),
            (
                vec![
                    ("CNI_COMMAND", "CHECK"),
                    ("CNI_CONTAINERID", "c"),
                    ("CNI_NETNS", "/x"),
                ],
                "CNI_IFNAME",
            ),
            (
                vec![
                    ("CNI_COMMAND", "DEL"),
                    ("CNI_CONTAINERID", "c/d"),
                    ("CNI_IFNAME", "eth0"),
                ],
                "CNI_CONTAINERID",
            ),
            (
                vec![
                    ("CNI_COMMAND", "DEL"),
                    ("CNI_CONTAINERID", "c"),
                    ("CNI_IFNAME", "a/b"),
                ],
                "CNI_IFNAME",
            ),
        ] {
            let e = env(&pairs).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnvironment, "{pairs:?}");
            assert!(e.msg.starts_with(field), "{pairs:?}: {}", e.msg);
        }
    }

    #[test]
    fn cni_args_pod_identity_and_owner() {
        let k8s = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u",
        )
        .unwrap();
        assert_eq!(k8s.container_name().unwrap().as_deref(), Some("shop-web-0"));
        let podman = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web").unwrap();
        assert_eq!(podman.container_name().unwrap().as_deref(), Some("web"));
        let owned = CniArgs::parse("K8S_POD_NAME=web;owner=alice").unwrap();
        assert_eq!(owned.owner.as_deref(), Some("alice"));
        assert_eq!(CniArgs::parse("").unwrap().container_name().unwrap(), None);
        // Unknown keys are refused unless IgnoreUnknown says otherwise.
        let e = CniArgs::parse("K8S_POD_NAME=web;COLOR=blue").unwrap_err();
        assert_eq!(e.code, Code::InvalidEnvironment);
        assert!(e.msg.contains("COLOR"), "{}", e.msg);
        assert!(CniArgs::parse("IgnoreUnknown=true;COLOR=blue").is_ok());
        for bad in ["K8S_POD_NAME", "=web", "owner=Alice"] {
            let e = CniArgs::parse(bad).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnvironment, "{bad}");
        }
        // A runtime's name that is no netfabric name is refused, naming the key.
        let e = CniArgs::parse("K8S_POD_NAME=Web_1")
            .unwrap()
            .container_name()
            .unwrap_err();
        assert!(e.msg.starts_with("CNI_ARGS K8S_POD_NAME:"), "{}", e.msg);
    }

    fn conf(json: serde_json::Value) -> std::result::Result<NetConf, (CniError, String)> {
        NetConf::parse(json.to_string().as_bytes())
    }

    #[test]
    fn network_configurations() {
        // The shape `netfabric cni install` writes, plus what runtimes insert.
        let c = conf(serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "netfabric",
            "type": "netfabric-cni",
            "store": "etcd://10.0.0.5:2379",
            "host": "h1",
            "defaultOwner": "alice",
            "runtimeConfig": {},
            "args": {"cni": {}},
        }))
        .unwrap();
        assert_eq!(c.host, "h1");
        assert_eq!(c.default_owner.as_deref(), Some("alice"));
        assert_eq!(c.store.as_deref(), Some("etcd://10.0.0.5:2379"));

        let base = serde_json::json!({
            "cniVersion": "1.0.0", "name": "n", "type": "netfabric-cni", "host": "h1",
        });
        let with = |k: &str, v: serde_json::Value| {
            let mut j = base.clone();
            j[k] = v;
            conf(j)
        };
        let (e, v) = with("cniVersion", "0.3.1".into()).unwrap_err();
        assert_eq!((e.code, v.as_str()), (Code::IncompatibleVersion, "0.3.1"));
        let (e, _) = with("defaultowner", "alice".into()).unwrap_err();
        assert_eq!(e.code, Code::UnsupportedField);
        assert!(e.msg.starts_with("defaultowner:"), "{}", e.msg);
        let (e, _) = with("host", "H 1".into()).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
        assert!(e.msg.starts_with("host:"), "{}", e.msg);
        let (e, _) = with("defaultOwner", "Alice".into()).unwrap_err();
        assert!(e.msg.starts_with("defaultOwner:"), "{}", e.msg);
        let (e, _) = with("host", 7.into()).unwrap_err();
        assert!(e.msg.starts_with("host:"), "{}", e.msg);
        let mut no_host = base.clone();
        no_host.as_object_mut().unwrap().remove("host");
        let (e, _) = conf(no_host).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
        assert!(e.msg.starts_with("host: missing"), "{}", e.msg);
        let (e, v) = NetConf::parse(b"{not json").unwrap_err();
        assert_eq!((e.code, v.as_str()), (Code::Decode, "1.0.0"));
    }

    /// The result example of the specification (1.0.0, "Success"), shaped
    /// for one interface pair: the same field names and nesting.
    #[test]
    fn the_result_document_matches_the_specification() {
        let result = AddResult {
            cni_version: "1.0.0".into(),
            interfaces: vec![
                Interface {
                    name: "nfc1".into(),
                    mac: Some("92:0f:8a:1d:2c:3b".into()),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("02:00:0a:01:01:01".into()),
                    sandbox: Some("/var/run/netns/blue".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "10.1.1.1/32".into(),
                gateway: Some(Ipv4Addr::new(169, 254, 1, 1)),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: Some(Ipv4Addr::new(169, 254, 1, 1)),
            }],
            dns: Dns::default(),
        };
        let expected: serde_json::Value = serde_json::from_str(
            r#"{
              "cniVersion": "1.0.0",
              "interfaces": [
                  {"name": "nfc1", "mac": "92:0f:8a:1d:2c:3b"},
                  {"name": "eth0", "mac": "02:00:0a:01:01:01", "sandbox": "/var/run/netns/blue"}
              ],
              "ips": [
                  {"address": "10.1.1.1/32", "gateway": "169.254.1.1", "interface": 1}
              ],
              "routes": [
                  {"dst": "0.0.0.0/0", "gw": "169.254.1.1"}
              ],
              "dns": {}
            }"#,
        )
        .unwrap();
        assert_eq!(serde_json::to_value(&result).unwrap(), expected);
        // And the specification's own example parses into these types.
        let spec_example = r#"{
          "cniVersion": "1.0.0",
          "interfaces": [
              {"name": "cni0", "mac": "00:11:22:33:44:55"},
              {"name": "veth3243", "mac": "55:44:33:22:11:11"},
              {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
          ],
          "ips": [
              {"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}
          ],
          "routes": [
            {"dst": "0.0.0.0/0"}
          ],
          "dns": {
            "nameservers": ["10.1.0.1"]
          }
        }"#;
        let parsed: AddResult = serde_json::from_str(spec_example).unwrap();
        assert_eq!(parsed.ips[0].interface, Some(2));
        assert_eq!(parsed.dns.nameservers, ["10.1.0.1"]);
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::from_str::<serde_json::Value>(spec_example).unwrap()
        );
    }

    /// The specification's error example: `cniVersion`, `code`, `msg`,
    /// `details`.
    #[test]
    fn the_error_document_matches_the_specification() {
        let e = CniError::new(Code::IncompatibleVersion, "Incompatible CNI version")
            .with_details("config version is 0.3.1; plugin supports 1.0.0, 1.1.0");
        assert_eq!(
            e.to_json("1.0.0"),
            serde_json::json!({
                "cniVersion": "1.0.0",
                "code": 1,
                "msg": "Incompatible CNI version",
                "details": "config version is 0.3.1; plugin supports 1.0.0, 1.1.0",
            })
        );
        // `details` is optional.
        let e = CniError::new(Code::TryAgainLater, "store unreachable");
        assert_eq!(
            e.to_json("1.1.0"),
            serde_json::json!({"cniVersion": "1.1.0", "code": 11, "msg": "store unreachable"})
        );
        for (code, n) in [
            (Code::IncompatibleVersion, 1),
            (Code::UnsupportedField, 2),
            (Code::ContainerUnknown, 3),
            (Code::InvalidEnvironment, 4),
            (Code::Io, 5),
            (Code::Decode, 6),
            (Code::InvalidConfig, 7),
            (Code::TryAgainLater, 11),
            (Code::NotAvailable, 50),
        ] {
            assert_eq!(code as u32, n, "{code:?} is the specification's {n}");
        }
    }

    /// The specification's VERSION example.
    #[test]
    fn the_version_document() {
        assert_eq!(
            version_json(br#"{"cniVersion": "1.0.0"}"#),
            serde_json::json!({"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]})
        );
        assert_eq!(version_json(b"")["cniVersion"], "1.1.0");
    }
}
