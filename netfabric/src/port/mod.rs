//! Container ports: the veth pair between a container's network namespace
//! and its host's bridge (docs/address-plan.md#the-gateway), set up over rtnetlink.
//!
//! ## Conventions (defined in [`crate::conventions`])
//! * The host-side end of a container's veth is `nfc<octet>` (the
//!   container's last address octet), unique inside the host's namespace.
//!   It is created **down**: the agent brings it up only after attaching the
//!   TC programs (`from_container`/`to_container`), so no packet of a new
//!   container ever passes unchecked.
//! * The container-side end is `eth0`, with the MAC `02:00:<a>:<b>:<c>:<d>`
//!   derived from the container address `a.b.c.d` ([`container_mac`]), so a
//!   re-created namespace gets the same MAC as well as the same address.
//! * The host bridge `nfbr0` holds `169.254.1.1/32` (the containers' gateway)
//!   and has the fixed MAC `02:00:<a>:<b>:<c>:00` of its host /24
//!   ([`bridge_mac`]); the host routes `<host /24> dev nfbr0`. Every
//!   `nfc<octet>` is a port of `nfbr0`.
//! * A container gets `<addr>/32` on `eth0`, `169.254.1.1 dev eth0 scope
//!   link` and `default via 169.254.1.1`; IPv6 is disabled in the namespace;
//!   GRO is on on `eth0` (XDP redirects into a veth need NAPI on the peer).

pub mod netns;
pub mod resolv;

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use futures::TryStreamExt as _;
use netlink_packet_route::{
    link::{InfoData, InfoVeth, LinkAttribute, LinkMessage},
    route::RouteScope,
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

pub use netns::{NetnsError, in_netns};

use crate::{
    MacAddr,
    conventions::{CONTAINER_IFNAME, GATEWAY, HOST_BRIDGE, bridge_mac, container_mac, port_name},
    state::Container,
};

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("netlink: {action}: {source}")]
    Netlink {
        action: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("opening the network namespace {path}: {source}")]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {0} not found")]
    NoInterface(String),
    #[error("setting {feature} on {ifname}: {source}")]
    Ethtool {
        feature: &'static str,
        ifname: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the driver of {ifname}: {source}")]
    Driver {
        ifname: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {value} to /proc/sys/{path}: {source}")]
    Sysctl {
        path: String,
        value: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = PortError> = std::result::Result<T, E>;

fn nl(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> PortError {
    let action = action.into();
    move |source| PortError::Netlink { action, source }
}

/// Whether a netlink error is the errno `errno`.
pub fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// What [`attach`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Host-side name (`nfc<octet>`).
    pub name: String,
    pub ifindex: u32,
    /// The container's MAC.
    pub container_mac: MacAddr,
    pub address: Ipv4Addr,
}

/// A netlink connection in the calling thread's network namespace.
pub fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| PortError::Netlink {
        action: "opening a netlink socket".into(),
        source: rtnetlink::Error::NamespaceError(e.to_string()),
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The link called `name`, if any.
pub async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("looking up {name}"))(e)),
    }
}

/// Every link of the namespace as (name, ifindex, up).
pub async fn links(handle: &Handle) -> Result<Vec<(String, u32, bool)>> {
    let mut out = Vec::new();
    let mut stream = handle.link().get().execute();
    while let Some(link) = stream.try_next().await.map_err(nl("listing links"))? {
        let name = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        let up = link
            .header
            .flags
            .contains(netlink_packet_route::link::LinkFlags::Up);
        if let Some(name) = name {
            out.push((name, link.header.index, up));
        }
    }
    Ok(out)
}

/// Sets a link up.
pub async fn set_up(handle: &Handle, ifindex: u32) -> Result<()> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(ifindex).up().build())
        .execute()
        .await
        .map_err(nl(format!("setting ifindex {ifindex} up")))
}

/// Adds `addr/len` to a link (an existing one is fine).
pub async fn add_address(handle: &Handle, ifindex: u32, addr: Ipv4Addr, len: u8) -> Result<()> {
    match handle
        .address()
        .add(ifindex, IpAddr::V4(addr), len)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
        Err(e) => Err(nl(format!("adding {addr}/{len}"))(e)),
    }
}

async fn add_route(
    handle: &Handle,
    route: RouteMessageBuilder<Ipv4Addr>,
    what: &str,
) -> Result<()> {
    match handle.route().add(route.build()).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
        Err(e) => Err(nl(format!("adding route {what}"))(e)),
    }
}

/// Creates (or completes) the host bridge: fixed MAC, `169.254.1.1/32`, up,
/// and the route of the host's /24. Returns its ifindex.
pub async fn ensure_bridge(handle: &Handle, host_subnet: Ipv4Addr) -> Result<u32> {
    let mac = bridge_mac(host_subnet);
    if link_by_name(handle, HOST_BRIDGE).await?.is_none() {
        match handle
            .link()
            .add(LinkBridge::new(HOST_BRIDGE).address(mac.0.to_vec()).build())
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) => return Err(nl(format!("creating {HOST_BRIDGE}"))(e)),
        }
    }
    let index = link_by_name(handle, HOST_BRIDGE)
        .await?
        .ok_or_else(|| PortError::NoInterface(HOST_BRIDGE.into()))?
        .header
        .index;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .address(mac.0.to_vec())
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("setting {HOST_BRIDGE} up")))?;
    add_address(handle, index, GATEWAY, 32).await?;
    add_route(
        handle,
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(host_subnet, 24)
            .output_interface(index)
            .scope(RouteScope::Link),
        &format!("{host_subnet}/24 dev {HOST_BRIDGE}"),
    )
    .await?;
    Ok(index)
}

/// Creates the bridge `name` if it is missing and sets it up; returns its
/// ifindex.
pub async fn ensure_plain_bridge(handle: &Handle, name: &str) -> Result<u32> {
    if link_by_name(handle, name).await?.is_none() {
        match handle
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) => return Err(nl(format!("creating {name}"))(e)),
        }
    }
    let index = link_index(handle, name).await?;
    set_up(handle, index).await?;
    Ok(index)
}

/// The ifindex of the link called `name` (an error if there is none).
pub async fn link_index(handle: &Handle, name: &str) -> Result<u32> {
    Ok(link_by_name(handle, name)
        .await?
        .ok_or_else(|| PortError::NoInterface(name.into()))?
        .header
        .index)
}

/// Creates the veth `name` here with its peer `peer` in the network
/// namespace open as `peer_netns`; returns the ifindex of `name`.
pub async fn add_veth_into(
    handle: &Handle,
    name: &str,
    peer: &str,
    peer_netns: &std::fs::File,
) -> Result<u32> {
    let peer_msg = LinkUnspec::new_with_name(peer)
        .setns_by_fd(peer_netns.as_raw_fd())
        .build();
    let veth = LinkVeth::new(name, peer)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    handle
        .link()
        .add(veth)
        .execute()
        .await
        .map_err(nl(format!("creating the veth {name} / {peer}")))?;
    link_index(handle, name).await
}

/// Makes link `ifindex` a port of the bridge `bridge` and sets it up.
pub async fn enslave_up(handle: &Handle, ifindex: u32, bridge: u32) -> Result<()> {
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(ifindex)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("adding ifindex {ifindex} to bridge {bridge}")))
}

/// Sets link `ifindex`'s MAC and sets it up.
pub async fn set_mac_up(handle: &Handle, ifindex: u32, mac: MacAddr) -> Result<()> {
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(ifindex)
                .address(mac.0.to_vec())
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("setting ifindex {ifindex} to {mac} and up")))
}

/// Writes a sysctl under `/proc/sys` of the calling thread's network
/// namespace.
pub fn write_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(Path::new("/proc/sys").join(path), value).map_err(|source| PortError::Sysctl {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// Best-effort [`write_sysctl`].
fn sysctl(path: &str, value: &str) {
    if let Err(e) = write_sysctl(path, value) {
        tracing::debug!(error = %e, "sysctl not written");
    }
}

/// Turns GRO on or off with the ethtool ioctl (`ETHTOOL_SGRO`), in the
/// calling thread's network namespace.
pub fn set_gro(ifname: &str, on: bool) -> Result<()> {
    const ETHTOOL_SGRO: u32 = 0x0000_002c;
    ethtool_set(ifname, "GRO", ETHTOOL_SGRO, on)
}

/// One legacy ethtool "set value" ioctl (`struct ethtool_value`).
fn ethtool_set(ifname: &str, feature: &'static str, cmd: u32, on: bool) -> Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue {
        cmd,
        data: u32::from(on),
    };
    ethtool_ioctl(ifname, (&raw mut value).cast()).map_err(|source| PortError::Ethtool {
        feature,
        ifname: ifname.to_owned(),
        source,
    })
}

/// The driver of `ifname` (`veth`, `ixgbe`, ...; `ETHTOOL_GDRVINFO`, what
/// `ethtool -i` prints), in the calling thread's network namespace.
pub fn driver(ifname: &str) -> Result<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    /// `struct ethtool_drvinfo`.
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        counts: [u32; 5],
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        counts: [0; 5],
    };
    ethtool_ioctl(ifname, (&raw mut info).cast()).map_err(|source| PortError::Driver {
        ifname: ifname.to_owned(),
        source,
    })?;
    let len = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..len]).into_owned())
}

/// One `SIOCETHTOOL` ioctl on `ifname` with the command structure at `data`.
fn ethtool_ioctl(ifname: &str, data: *mut libc::c_char) -> std::io::Result<()> {
    // SAFETY: a plain datagram socket; checked below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a socket we own; wrapping closes it on every path.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr
        .ifr_name
        .iter_mut()
        .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = data;
    // SAFETY: SIOCETHTOOL reads ifr and the command structure it points to,
    // both alive for the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &raw mut ifr) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches `container` to the network namespace at `netns`: creates the
/// veth pair (host side `nfc<octet>`, down, port of `nfbr0`; container side
/// `eth0` with its MAC), sets the address, gateway route and default route
/// and GRO inside, and returns the port. `host_netns` is the host's
/// namespace (the calling thread's when `None`). An existing port of the same
/// container is replaced (re-attach after the namespace was re-created).
///
/// The agent of the host attaches the TC programs and brings the port up.
pub fn attach(
    container: &Container,
    host_subnet: Ipv4Addr,
    netns: &Path,
    host_netns: Option<&Path>,
) -> Result<Port> {
    attach_as(container, host_subnet, netns, host_netns, CONTAINER_IFNAME)
}

/// [`attach`] with the container-side interface called `ifname` (a
/// container runtime names it: CNI's `CNI_IFNAME`) instead of `eth0`.
pub fn attach_as(
    container: &Container,
    host_subnet: Ipv4Addr,
    netns: &Path,
    host_netns: Option<&Path>,
    ifname: &str,
) -> Result<Port> {
    let addr = container.address;
    let name = port_name(addr);
    let mac = container_mac(addr);
    let ns_file = std::fs::File::open(netns).map_err(|source| PortError::OpenNetns {
        path: netns.to_owned(),
        source,
    })?;
    // Inside the container first: no IPv6 on interfaces created from now on.
    in_netns(Some(netns), || {
        sysctl("net/ipv6/conf/default/disable_ipv6", "1");
        sysctl("net/ipv6/conf/all/disable_ipv6", "1");
        Ok::<_, PortError>(())
    })??;
    let ifindex = in_netns(host_netns, || {
        block_on(async {
            let handle = connect()?;
            let bridge = ensure_bridge(&handle, host_subnet).await?;
            if let Some(old) = link_by_name(&handle, &name).await? {
                handle
                    .link()
                    .del(old.header.index)
                    .execute()
                    .await
                    .map_err(nl(format!("deleting the old {name}")))?;
            }
            let peer = LinkUnspec::new_with_name(ifname)
                .address(mac.0.to_vec())
                .setns_by_fd(ns_file.as_raw_fd())
                .build();
            let veth = LinkVeth::new(&name, ifname)
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .controller(bridge)
                .build();
            handle
                .link()
                .add(veth)
                .execute()
                .await
                .map_err(nl(format!("creating the veth {name} / {ifname}")))?;
            let link = link_by_name(&handle, &name)
                .await?
                .ok_or_else(|| PortError::NoInterface(name.clone()))?;
            sysctl(&format!("net/ipv6/conf/{name}/disable_ipv6"), "1");
            Ok::<_, PortError>(link.header.index)
        })
    })??;
    in_netns(Some(netns), || {
        block_on(async {
            let handle = connect()?;
            if let Some(lo) = link_by_name(&handle, "lo").await? {
                set_up(&handle, lo.header.index).await?;
            }
            let container_if = link_by_name(&handle, ifname)
                .await?
                .ok_or_else(|| PortError::NoInterface(ifname.into()))?
                .header
                .index;
            set_up(&handle, container_if).await?;
            add_address(&handle, container_if, addr, 32).await?;
            add_route(
                &handle,
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(GATEWAY, 32)
                    .output_interface(container_if)
                    .scope(RouteScope::Link),
                &format!("169.254.1.1 dev {ifname} scope link"),
            )
            .await?;
            add_route(
                &handle,
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                    .gateway(GATEWAY)
                    .output_interface(container_if),
                "default via 169.254.1.1",
            )
            .await?;
            set_gro(ifname, true)?;
            Ok::<_, PortError>(())
        })
    })??;
    tracing::info!(container = %container.name, port = %name, ifindex, %addr, %mac, "container attached");
    Ok(Port {
        name,
        ifindex,
        container_mac: mac,
        address: addr,
    })
}

/// Removes the container's port (both ends of the veth). Returns whether
/// there was one.
pub fn detach(container: &Container, host_netns: Option<&Path>) -> Result<bool> {
    let name = port_name(container.address);
    in_netns(host_netns, || {
        block_on(async {
            let handle = connect()?;
            match link_by_name(&handle, &name).await? {
                Some(link) => {
                    handle
                        .link()
                        .del(link.header.index)
                        .execute()
                        .await
                        .map_err(nl(format!("deleting {name}")))?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
    })?
}

/// Runs a future to completion on a fresh current-thread runtime (the port
/// functions are called from threads placed in a namespace).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a current-thread tokio runtime")
        .block_on(fut)
}

/// An IPv4 route of the main table, as [`inspect`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteV4 {
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// The output interface's ifindex.
    pub output: Option<u32>,
    /// Scope `link` (a directly reachable destination).
    pub scope_link: bool,
}

/// A link as [`inspect`] and [`link_state`] report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub ifindex: u32,
    pub mac: Option<MacAddr>,
    /// Administratively up.
    pub up: bool,
    /// A veth's peer ifindex (in the peer's namespace).
    pub peer: Option<u32>,
}

/// What an interface inside a namespace looks like: the link, its IPv4
/// addresses and the namespace's IPv4 routes through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub link: LinkState,
    pub addresses: Vec<(Ipv4Addr, u8)>,
    pub routes: Vec<RouteV4>,
}

fn link_state_of(link: &LinkMessage) -> LinkState {
    let mac = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr),
        _ => None,
    });
    let peer = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(index) => Some(*index),
        _ => None,
    });
    LinkState {
        ifindex: link.header.index,
        mac,
        peer,
        up: link
            .header
            .flags
            .contains(netlink_packet_route::link::LinkFlags::Up),
    }
}

/// The link `name` in the namespace at `netns` (the caller's when `None`),
/// if there is one.
pub fn link_state(netns: Option<&Path>, name: &str) -> Result<Option<LinkState>> {
    in_netns(netns, || {
        block_on(async {
            let handle = connect()?;
            Ok(link_by_name(&handle, name)
                .await?
                .as_ref()
                .map(link_state_of))
        })
    })?
}

/// The interface `ifname` in the namespace at `netns` with its IPv4
/// addresses and the main table's IPv4 routes through it; `None` if the
/// namespace has no such interface.
pub fn inspect(netns: &Path, ifname: &str) -> Result<Option<Inspected>> {
    use netlink_packet_route::{
        address::AddressAttribute,
        route::{RouteAddress, RouteAttribute, RouteHeader},
    };
    in_netns(Some(netns), || {
        block_on(async {
            let handle = connect()?;
            let Some(link) = link_by_name(&handle, ifname).await? else {
                return Ok(None);
            };
            let link = link_state_of(&link);
            let mut addresses = Vec::new();
            let mut stream = handle
                .address()
                .get()
                .set_link_index_filter(link.ifindex)
                .execute();
            while let Some(msg) = stream
                .try_next()
                .await
                .map_err(nl(format!("listing the addresses of {ifname}")))?
            {
                for attr in &msg.attributes {
                    if let AddressAttribute::Address(IpAddr::V4(a)) = attr {
                        addresses.push((*a, msg.header.prefix_len));
                    }
                }
            }
            let mut routes = Vec::new();
            let mut stream = handle
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute();
            while let Some(msg) = stream.try_next().await.map_err(nl("listing routes"))? {
                let table = msg
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Table(t) => Some(*t),
                        _ => None,
                    })
                    .unwrap_or(u32::from(msg.header.table));
                if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
                    continue;
                }
                let mut route = RouteV4 {
                    destination: Ipv4Addr::UNSPECIFIED,
                    prefix_len: msg.header.destination_prefix_length,
                    gateway: None,
                    output: None,
                    scope_link: msg.header.scope == RouteScope::Link,
                };
                for attr in &msg.attributes {
                    match attr {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => {
                            route.destination = *d;
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet(g)) => route.gateway = Some(*g),
                        RouteAttribute::Oif(i) => route.output = Some(*i),
                        _ => {}
                    }
                }
                if route.output == Some(link.ifindex) {
                    routes.push(route);
                }
            }
            Ok(Some(Inspected {
                link,
                addresses,
                routes,
            }))
        })
    })?
}

/// Deletes the link `name` in the namespace at `netns` (the caller's when
/// `None`); a veth takes its peer with it. Returns whether there was one.
pub fn delete_link(netns: Option<&Path>, name: &str) -> Result<bool> {
    in_netns(netns, || {
        block_on(async {
            let handle = connect()?;
            let Some(link) = link_by_name(&handle, name).await? else {
                return Ok(false);
            };
            match handle.link().del(link.header.index).execute().await {
                Ok(()) => Ok(true),
                // Gone meanwhile (its peer's namespace went away).
                Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
                Err(e) => Err(nl(format!("deleting {name}"))(e)),
            }
        })
    })?
}
