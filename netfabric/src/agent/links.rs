//! Pinned program links: attach once, adopt and replace atomically after a
//! restart (`bpf_link_update`), so the datapath never goes without a program.
//!
//! Layout under the host's pin dir: `links/uplink` (XDP prefilter),
//! `links/uplink-tc` (TCX ingress of the uplink: judgement and delivery),
//! and `links/nfc<octet>-ingress` / `links/nfc<octet>-egress` (TCX).

use std::path::{Path, PathBuf};

use aya::{
    pin::PinError,
    programs::{
        ProgramError, TcAttachType, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        tc::SchedClassifierLink,
        xdp::XdpLink,
    },
};

use crate::{
    Datapath, DatapathError,
    conventions::{
        links_dir, port_link_pins, port_of_ingress_pin, uplink_link_pin, uplink_tc_link_pin,
    },
    datapath::{PROG_FROM_CONTAINER, PROG_FROM_UPLINK, PROG_FROM_UPLINK_TC, PROG_TO_CONTAINER},
};

#[derive(Debug, thiserror::Error)]
pub enum LinkPinError {
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("link {path}: {source}")]
    Link {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error("pinning link {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = LinkPinError> = std::result::Result<T, E>;

fn prog(name: &'static str) -> impl FnOnce(ProgramError) -> LinkPinError {
    move |source| LinkPinError::Program { name, source }
}

fn link_err(path: &Path) -> impl FnOnce(LinkError) -> LinkPinError + '_ {
    move |source| LinkPinError::Link {
        path: path.to_owned(),
        source,
    }
}

fn pin(link: FdLink, path: &Path) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("a pin path has a parent")).map_err(|source| {
        LinkPinError::Io {
            path: path.to_owned(),
            source,
        }
    })?;
    link.pin(path).map_err(|source| LinkPinError::Pin {
        path: path.to_owned(),
        source,
    })?;
    Ok(())
}

/// How a link came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// A pinned link was adopted and now runs this process's program.
    Replaced,
    /// A new link was made and pinned.
    New,
}

/// Whether the uplink `ifname` gets the XDP prefilter `from_uplink`: not on
/// a veth. XDP on a veth makes its peer give up TSO/GSO (the kernel turns
/// them off while the peer has an XDP program), so everything sent into the
/// uplink is segmented in software and aggregated again by GRO, and each
/// skb is converted for XDP on receive; `from_uplink_tc` alone judges the
/// same and costs less there (measured, see `tests/src/bench/e2e.rs`). A
/// NIC's native XDP drops before the kernel allocates anything.
pub fn wants_prefilter(ifname: &str) -> bool {
    match crate::port::driver(ifname) {
        Ok(driver) => driver != "veth",
        Err(e) => {
            tracing::warn!(ifname, error = %e, "unknown uplink driver; attaching the XDP prefilter");
            true
        }
    }
}

/// Attaches the uplink's programs to `ifname`: the TCX ingress program
/// `from_uplink_tc` (judgement and delivery), then, when
/// [`wants_prefilter`], the XDP prefilter `from_uplink` (else a pinned
/// prefilter is detached). With `adopt` (same interface as before) each
/// pinned link gets this process's program (`bpf_link_update`); a link with
/// no pin yet is made and pinned.
pub fn attach_uplink(
    dp: &mut Datapath,
    pin_dir: &Path,
    ifname: &str,
    adopt: bool,
) -> Result<Attached> {
    let tc = attach_uplink_tc(dp, pin_dir, ifname, adopt)?;
    let xdp = if wants_prefilter(ifname) {
        attach_uplink_xdp(dp, pin_dir, ifname, adopt)?
    } else {
        remove_pin(&uplink_link_pin(pin_dir));
        Attached::Replaced
    };
    Ok(if xdp == Attached::Replaced && tc == Attached::Replaced {
        Attached::Replaced
    } else {
        Attached::New
    })
}

fn attach_uplink_xdp(
    dp: &mut Datapath,
    pin_dir: &Path,
    ifname: &str,
    adopt: bool,
) -> Result<Attached> {
    let path = uplink_link_pin(pin_dir);
    let xdp = dp.xdp(PROG_FROM_UPLINK)?;
    if adopt && path.exists() {
        let old = PinnedLink::from_pin(&path).map_err(link_err(&path))?;
        let link = XdpLink::try_from(FdLink::from(old)).map_err(link_err(&path))?;
        let id = xdp.attach_to_link(link).map_err(prog(PROG_FROM_UPLINK))?;
        // Keep the link out of the program's care; the pin holds it.
        let _ = xdp.take_link(id).map_err(prog(PROG_FROM_UPLINK))?;
        return Ok(Attached::Replaced);
    }
    remove_pin(&path);
    let id = match xdp.attach(ifname, XdpMode::Driver) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(ifname, error = %e, "native XDP refused; using generic XDP");
            xdp.attach(ifname, XdpMode::Skb)
                .map_err(prog(PROG_FROM_UPLINK))?
        }
    };
    let link = xdp.take_link(id).map_err(prog(PROG_FROM_UPLINK))?;
    let fd = FdLink::try_from(link).map_err(link_err(&path))?;
    pin(fd, &path)?;
    Ok(Attached::New)
}

fn attach_uplink_tc(
    dp: &mut Datapath,
    pin_dir: &Path,
    ifname: &str,
    adopt: bool,
) -> Result<Attached> {
    let path = uplink_tc_link_pin(pin_dir);
    let tc = dp.tc(PROG_FROM_UPLINK_TC)?;
    if adopt && path.exists() {
        let old = PinnedLink::from_pin(&path).map_err(link_err(&path))?;
        let link = SchedClassifierLink::try_from(FdLink::from(old)).map_err(link_err(&path))?;
        let id = tc.attach_to_link(link).map_err(prog(PROG_FROM_UPLINK_TC))?;
        let _ = tc.take_link(id).map_err(prog(PROG_FROM_UPLINK_TC))?;
        return Ok(Attached::Replaced);
    }
    remove_pin(&path);
    let id = tc
        .attach(ifname, TcAttachType::Ingress)
        .map_err(prog(PROG_FROM_UPLINK_TC))?;
    let link = tc.take_link(id).map_err(prog(PROG_FROM_UPLINK_TC))?;
    let fd = FdLink::try_from(link).map_err(link_err(&path))?;
    pin(fd, &path)?;
    Ok(Attached::New)
}

/// Attaches `from_container` (ingress) and `to_container` (egress) to the
/// port `ifname`, adopting the pinned links when `adopt`.
pub fn attach_port(
    dp: &mut Datapath,
    pin_dir: &Path,
    ifname: &str,
    adopt: bool,
) -> Result<Attached> {
    let (ingress, egress) = port_link_pins(pin_dir, ifname);
    if adopt && ingress.exists() && egress.exists() {
        for (name, path) in [
            (PROG_FROM_CONTAINER, &ingress),
            (PROG_TO_CONTAINER, &egress),
        ] {
            let tc = dp.tc(name)?;
            let old = PinnedLink::from_pin(path).map_err(link_err(path))?;
            let link = SchedClassifierLink::try_from(FdLink::from(old)).map_err(link_err(path))?;
            let id = tc.attach_to_link(link).map_err(prog(name))?;
            let _ = tc.take_link(id).map_err(prog(name))?;
        }
        return Ok(Attached::Replaced);
    }
    remove_port_pins(pin_dir, ifname);
    for (name, path, at) in [
        (PROG_FROM_CONTAINER, &ingress, TcAttachType::Ingress),
        (PROG_TO_CONTAINER, &egress, TcAttachType::Egress),
    ] {
        let tc = dp.tc(name)?;
        let id = tc.attach(ifname, at).map_err(prog(name))?;
        let link = tc.take_link(id).map_err(prog(name))?;
        let fd = FdLink::try_from(link).map_err(link_err(path))?;
        pin(fd, path)?;
    }
    Ok(Attached::New)
}

fn remove_pin(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "removing a stale link pin");
    }
}

/// Unpins a port's links (a vanished interface, or detach on exit).
pub fn remove_port_pins(pin_dir: &Path, port: &str) {
    let (i, e) = port_link_pins(pin_dir, port);
    remove_pin(&i);
    remove_pin(&e);
}

/// The port names that have pinned links.
pub fn pinned_ports(pin_dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(links_dir(pin_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            port_of_ingress_pin(&name).map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}

/// Removes every link pin (detaching the programs) and every map pin of a
/// host, then its directory, and the lock and report a killed agent of it
/// left under [`super::lock::RUN_DIR`] (a running agent's stay).
pub fn remove_all(pin_dir: &Path) -> std::io::Result<()> {
    if let Some(host) = pin_dir.file_name().and_then(|h| h.to_str()) {
        super::lock::remove_if_unheld(Path::new(super::lock::RUN_DIR), pin_dir, host);
    }
    match std::fs::remove_dir_all(pin_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
