//! ADD, DEL, CHECK, VERSION, STATUS and GC.

use std::{
    fs::File,
    net::Ipv4Addr,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use super::spec::{
    AddResult, CniError, Code, Command, Dns, Environment, Interface, IpConfig, NetConf, Route,
    version_json,
};
use crate::{
    conventions::{self, GATEWAY},
    port::{self, NetnsError, PortError},
    state::Container,
    store::{self, Store, StoreError, StoreExt as _},
};

type Result<T, E = CniError> = std::result::Result<T, E>;

/// Where the per-host lock lives unless the configuration says `lockDir`.
pub const DEFAULT_LOCK_DIR: &str = "/run/netfabric";

/// What the plugin prints and whether it succeeded (exit 0) or failed
/// (exit 1, an error document on stdout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: Option<String>,
    pub success: bool,
}

impl Output {
    fn ok(doc: Option<serde_json::Value>) -> Self {
        Output {
            stdout: doc.map(|d| d.to_string()),
            success: true,
        }
    }

    fn error(e: &CniError, version: &str) -> Self {
        tracing::warn!(code = e.code as u32, msg = %e.msg, details = %e.details, "CNI request failed");
        Output {
            stdout: Some(e.to_json(version).to_string()),
            success: false,
        }
    }
}

/// One invocation: the `CNI_*` environment read through `var`, the
/// network configuration on `stdin`.
pub fn run(var: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Output {
    let env = match Environment::parse(var) {
        Ok(env) => env,
        Err(e) => {
            let version = serde_json::from_slice::<serde_json::Value>(stdin)
                .ok()
                .and_then(|v| v["cniVersion"].as_str().map(str::to_owned))
                .unwrap_or_else(|| super::spec::CONFLIST_VERSION.to_owned());
            return Output::error(&e, &version);
        }
    };
    if env.command == Command::Version {
        return Output::ok(Some(version_json(stdin)));
    }
    let conf = match NetConf::parse(stdin) {
        Ok(conf) => conf,
        Err((e, version)) => return Output::error(&e, &version),
    };
    tracing::debug!(command = ?env.command, args = ?env.args, network = %conf.name, "CNI request");
    let done = match env.command {
        Command::Add => {
            add(&env, &conf).map(|r| Some(serde_json::to_value(r).expect("a result serialises")))
        }
        Command::Del => del(&env, &conf).map(|()| None),
        Command::Check => check(&env, &conf).map(|()| None),
        Command::Status => status(&conf).map(|()| None),
        // The only per-attachment resource is the veth, which the kernel
        // removes with the container's namespace; addresses belong to the
        // store's containers, not to attachments.
        Command::Gc => Ok(None),
        Command::Version => unreachable!("answered above"),
    };
    match done {
        Ok(doc) => Output::ok(doc),
        Err(e) => Output::error(&e, &conf.cni_version),
    }
}

/// The exclusive per-host lock, held while the plugin works.
struct HostLock {
    _file: File,
}

impl HostLock {
    fn take(conf: &NetConf) -> Result<HostLock> {
        let dir = conf
            .lock_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_DIR));
        let path = dir.join(format!("cni-{}.lock", conf.host));
        let io = |what: &str, e: std::io::Error| {
            CniError::new(Code::Io, format!("{what} the lock {}: {e}", path.display()))
        };
        std::fs::create_dir_all(&dir).map_err(|e| io("creating the directory of", e))?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io("opening", e))?;
        loop {
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(HostLock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io("taking", e));
            }
        }
    }
}

fn store_error(e: StoreError) -> CniError {
    let msg = e.to_string();
    match e {
        StoreError::Unavailable { .. } | StoreError::LockTimeout { .. } => {
            CniError::new(Code::TryAgainLater, msg)
        }
        StoreError::BadUrl { .. } => CniError::new(Code::InvalidConfig, format!("store: {msg}")),
        StoreError::Rejected(_) => CniError::new(Code::Refused, msg),
        _ => CniError::new(Code::Io, msg),
    }
}

fn open_store(conf: &NetConf) -> Result<Box<dyn Store>> {
    let url = conf.store.clone().unwrap_or_else(store::default_url);
    store::open(&url).map_err(store_error)
}

fn port_error(what: &str, e: PortError) -> CniError {
    CniError::new(Code::Io, format!("{what}: {e}"))
}

fn container_name(env: &Environment) -> Result<String> {
    env.args.container_name()?.ok_or_else(|| {
        CniError::new(
            Code::InvalidEnvironment,
            "CNI_ARGS: no K8S_POD_NAME: the runtime passed no container name, and netfabric \
             finds a container by its name",
        )
    })
}

fn required<'a, T: ?Sized>(v: Option<&'a T>, what: &str) -> Result<&'a T> {
    v.ok_or_else(|| CniError::new(Code::InvalidEnvironment, format!("{what} is not set")))
}

/// The container `name` on this host: found, or created when an owner is
/// named.
fn find_or_create(
    store: &dyn Store,
    env: &Environment,
    conf: &NetConf,
    name: &str,
) -> Result<(Container, Ipv4Addr)> {
    let snap = store.load().map_err(store_error)?;
    let host = snap.state.host(&conf.host).ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            format!(
                "host: no host named {:?} in the store {}",
                conf.host,
                store.url()
            ),
        )
    })?;
    let subnet = host.subnet.network();
    if let Some(c) = snap.state.container(name) {
        if c.host != conf.host {
            return Err(CniError::new(
                Code::WrongHost,
                format!(
                    "container {name} is on host {} in the store, not on this host {}",
                    c.host, conf.host
                ),
            )
            .with_details("run it on its host, or `netfabric container delete` it first"));
        }
        if let Some(owner) = &env.args.owner
            && owner != &c.owner
        {
            return Err(CniError::new(
                Code::Refused,
                format!(
                    "CNI_ARGS owner: container {name} belongs to {}, not to {owner}",
                    c.owner
                ),
            ));
        }
        return Ok((c.clone(), subnet));
    }
    let (owner, field, code) = match (&env.args.owner, &conf.default_owner) {
        (Some(o), _) => (o, "CNI_ARGS owner", Code::InvalidEnvironment),
        (None, Some(o)) => (o, "defaultOwner", Code::InvalidConfig),
        (None, None) => {
            return Err(CniError::new(
                Code::NoOwner,
                format!(
                    "container {name} is not in the store and nothing names its owner \
                     (CNI_ARGS owner=, or the network's defaultOwner)"
                ),
            )
            .with_details(format!(
                "create it first: netfabric container create {name} --owner OWNER --host {}",
                conf.host
            )));
        }
    };
    if snap.state.owner(owner).is_none() {
        return Err(CniError::new(
            code,
            format!(
                "{field}: unknown owner {owner:?} in the store {}",
                store.url()
            ),
        ));
    }
    let (address, revision) = store
        .apply(|s| s.create_container(name, owner, &conf.host, None))
        .map_err(store_error)?;
    tracing::info!(container = name, %address, revision, "container created");
    Ok((
        Container {
            name: name.to_owned(),
            owner: owner.clone(),
            host: conf.host.clone(),
            address,
        },
        subnet,
    ))
}

fn add(env: &Environment, conf: &NetConf) -> Result<AddResult> {
    let netns = required(env.netns.as_deref(), "CNI_NETNS")?;
    let ifname = required(env.ifname.as_deref(), "CNI_IFNAME")?;
    let name = container_name(env)?;
    let _lock = HostLock::take(conf)?;
    match port::link_state(Some(netns), ifname) {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(CniError::new(
                Code::InterfaceExists,
                format!("CNI_IFNAME: {ifname} already exists in {}", netns.display()),
            ));
        }
        Err(e) => return Err(port_error(&format!("opening {}", netns.display()), e)),
    }
    let store = open_store(conf)?;
    let (container, subnet) = find_or_create(store.as_ref(), env, conf, &name)?;
    let port = port::attach_as(
        &container,
        subnet,
        netns,
        conf.host_netns.as_deref(),
        ifname,
    )
    .map_err(|e| port_error(&format!("attaching container {name}"), e))?;
    let host_mac = port::link_state(conf.host_netns.as_deref(), &port.name)
        .map_err(|e| port_error(&format!("reading {}", port.name), e))?
        .and_then(|l| l.mac);
    Ok(AddResult {
        cni_version: conf.cni_version.clone(),
        interfaces: vec![
            Interface {
                name: port.name.clone(),
                mac: host_mac.map(|m| m.to_string()),
                sandbox: None,
            },
            Interface {
                name: ifname.to_owned(),
                mac: Some(port.container_mac.to_string()),
                sandbox: Some(netns.display().to_string()),
            },
        ],
        ips: vec![IpConfig {
            address: format!("{}/32", port.address),
            gateway: Some(GATEWAY),
            interface: Some(1),
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".into(),
            gw: Some(GATEWAY),
        }],
        // The agent's DNS server at the gateway.
        dns: Dns {
            nameservers: vec![GATEWAY.to_string()],
            domain: None,
            search: port::resolv::search(&container.owner, conventions::DEFAULT_DNS_DOMAIN)
                .to_vec(),
            options: vec![port::resolv::OPTIONS.to_owned()],
        },
    })
}

fn del(env: &Environment, conf: &NetConf) -> Result<()> {
    let ifname = required(env.ifname.as_deref(), "CNI_IFNAME")?;
    let Some(netns) = env.netns.as_deref() else {
        // No namespace: the runtime already removed it, and the veth with it.
        return Ok(());
    };
    let _lock = HostLock::take(conf)?;
    match port::delete_link(Some(netns), ifname) {
        Ok(had) => {
            tracing::info!(netns = %netns.display(), ifname, had, "interface removed");
            Ok(())
        }
        // The namespace is gone (or is an unmounted leftover): nothing to remove.
        Err(PortError::Netns(NetnsError::Open { .. } | NetnsError::Enter { .. })) => Ok(()),
        Err(e) => Err(port_error(
            &format!("removing {ifname} from {}", netns.display()),
            e,
        )),
    }
}

fn check_failed(msg: impl Into<String>) -> CniError {
    CniError::new(Code::CheckFailed, msg)
}

fn check(env: &Environment, conf: &NetConf) -> Result<()> {
    let netns = required(env.netns.as_deref(), "CNI_NETNS")?;
    let ifname = required(env.ifname.as_deref(), "CNI_IFNAME")?;
    let name = container_name(env)?;
    let store = open_store(conf)?;
    let snap = store.load().map_err(store_error)?;
    let c = snap.state.container(&name).ok_or_else(|| {
        check_failed(format!(
            "container {name} is not in the store {}",
            store.url()
        ))
    })?;
    if c.host != conf.host {
        return Err(check_failed(format!(
            "container {name} is on host {}, not on {}",
            c.host, conf.host
        )));
    }
    let cidr = format!("{}/32", c.address);
    // The specification: the runtime passes the ADD result as prevResult.
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "prevResult: missing (CHECK compares with the result of ADD)",
        )
    })?;
    let listed = prev["ips"]
        .as_array()
        .is_some_and(|ips| ips.iter().any(|ip| ip["address"] == cidr.as_str()));
    if !listed {
        return Err(check_failed(format!(
            "prevResult: the address of container {name} ({cidr}) is not in it"
        )));
    }
    let inside = port::inspect(netns, ifname)
        .map_err(|e| port_error(&format!("reading {ifname} in {}", netns.display()), e))?
        .ok_or_else(|| check_failed(format!("no interface {ifname} in {}", netns.display())))?;
    let mac = conventions::container_mac(c.address);
    if inside.link.mac != Some(mac) {
        return Err(check_failed(format!(
            "{ifname}: MAC {:?}, expected {mac}",
            inside.link.mac.map(|m| m.to_string())
        )));
    }
    if !inside.link.up {
        return Err(check_failed(format!("{ifname} is down")));
    }
    if !inside.addresses.contains(&(c.address, 32)) {
        return Err(check_failed(format!(
            "{ifname} has {:?}, not {cidr}",
            inside.addresses
        )));
    }
    let gateway_route = inside
        .routes
        .iter()
        .any(|r| r.destination == GATEWAY && r.prefix_len == 32 && r.scope_link);
    let default_route = inside
        .routes
        .iter()
        .any(|r| r.prefix_len == 0 && r.gateway == Some(GATEWAY));
    if !gateway_route || !default_route {
        return Err(check_failed(format!(
            "routes through {ifname}: {:?}; expected {GATEWAY} scope link and default via {GATEWAY}",
            inside.routes
        )));
    }
    let port_name = conventions::port_name(c.address);
    let host_port = port::link_state(conf.host_netns.as_deref(), &port_name)
        .map_err(|e| port_error(&format!("reading {port_name}"), e))?
        .ok_or_else(|| check_failed(format!("no host port {port_name}")))?;
    if inside.link.peer != Some(host_port.ifindex) {
        return Err(check_failed(format!(
            "{ifname} is not the peer of the host port {port_name}"
        )));
    }
    let pin_dir = conventions::pin_dir(bpffs(conf), &conf.host);
    let (ingress, egress) = conventions::port_link_pins(&pin_dir, &port_name);
    for pin in [&ingress, &egress] {
        if !pin.exists() {
            return Err(check_failed(format!(
                "the agent of host {} has not attached the programs of {port_name} (no {})",
                conf.host,
                pin.display()
            )));
        }
    }
    if !host_port.up {
        return Err(check_failed(format!(
            "the host port {port_name} is down (the agent brings it up once its programs are attached)"
        )));
    }
    Ok(())
}

fn bpffs(conf: &NetConf) -> &Path {
    conf.bpffs
        .as_deref()
        .unwrap_or(Path::new(conventions::DEFAULT_BPFFS))
}

fn status(conf: &NetConf) -> Result<()> {
    let unavailable = |msg: String| CniError::new(Code::NotAvailable, msg);
    let store = open_store(conf)?;
    let snap = store
        .load()
        .map_err(|e| unavailable(format!("the store: {e}")))?;
    if snap.state.host(&conf.host).is_none() {
        return Err(unavailable(format!(
            "host: no host named {:?} in the store {}",
            conf.host,
            store.url()
        )));
    }
    // The uplink's TC program delivers into containers (the XDP prefilter
    // is attached only on some uplinks).
    let uplink = conventions::uplink_tc_link_pin(&conventions::pin_dir(bpffs(conf), &conf.host));
    if !uplink.exists() {
        return Err(unavailable(format!(
            "the agent of host {} has not attached the datapath (no {})",
            conf.host,
            uplink.display()
        )));
    }
    Ok(())
}
