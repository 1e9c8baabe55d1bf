//! `LOCAL_PORTS`: this host's container octets → the container's port.

use std::collections::BTreeSet;

use aya::maps::IterableMap as _;
use netfabric_common::{self as common, LocalPort};

use super::{DesiredMap, Entries, Result};
use crate::datapath::{Datapath, batch, map_err};

/// `LOCAL_PORTS` as the agent plans it: container octet → port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPorts;

/// A container's port as the plan sees it (a `LocalPort` without flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortEntry {
    /// ifindex of the host-side end of the container's veth.
    pub ifindex: u32,
    /// The container's own MAC.
    pub mac: [u8; 6],
}

impl DesiredMap for LocalPorts {
    const NAME: &'static str = common::LOCAL_PORTS;
    /// The container's last octet.
    type Key = u8;
    type Value = PortEntry;

    fn set(dp: &mut Datapath, octet: u8, port: PortEntry) -> Result<()> {
        dp.set_local_port(octet, port.ifindex, port.mac)
    }

    fn clear(dp: &mut Datapath, octet: u8) -> Result<()> {
        dp.clear_local_port(octet)
    }

    fn read(dp: &Datapath, _zone_slots: &BTreeSet<u32>) -> Result<Entries<Self>> {
        Ok(dp
            .all_local_ports()?
            .into_iter()
            .map(|(octet, p)| {
                (
                    octet,
                    PortEntry {
                        ifindex: p.ifindex,
                        mac: p.mac,
                    },
                )
            })
            .collect())
    }
}

impl Datapath {
    /// The port of this host's container `.container_octet`.
    pub fn set_local_port(
        &mut self,
        container_octet: u8,
        ifindex: u32,
        mac: [u8; 6],
    ) -> Result<()> {
        let port = LocalPort {
            ifindex,
            mac,
            flags: common::FLAG_PRESENT,
        };
        self.local_ports
            .set(container_octet.into(), port, 0)
            .map_err(map_err(common::LOCAL_PORTS))
    }

    pub fn clear_local_port(&mut self, container_octet: u8) -> Result<()> {
        self.local_ports
            .set(container_octet.into(), LocalPort::default(), 0)
            .map_err(map_err(common::LOCAL_PORTS))
    }

    pub fn local_port(&self, container_octet: u8) -> Result<Option<LocalPort>> {
        let p = self
            .local_ports
            .get(&container_octet.into(), 0)
            .map_err(map_err(common::LOCAL_PORTS))?;
        Ok((p.flags & common::FLAG_PRESENT != 0).then_some(p))
    }

    /// Every local port set: container octet → port (batched).
    pub fn all_local_ports(&self) -> Result<Vec<(u8, LocalPort)>> {
        let raw = batch::read_all(self.local_ports.map(), common::LOCAL_PORTS)?;
        Ok(raw
            .typed::<u32, LocalPort>()
            .filter(|(_, p)| p.flags & common::FLAG_PRESENT != 0)
            .filter_map(|(i, p)| Some((u8::try_from(i).ok()?, p)))
            .collect())
    }
}
