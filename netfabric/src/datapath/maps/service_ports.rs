//! `SERVICE_PORTS`: every port of every service's VIP → the service and
//! the port its backends listen on (docs/services.md). A hash of the VIP
//! ports in use; the programs look it up only for a destination in a
//! zone's service range.

use std::collections::BTreeSet;

use aya::maps::IterableMap as _;
use netfabric_common::{
    self as common,
    service::{ServicePort, ServicePortKey},
};

use super::{DesiredMap, Entries, Result};
use crate::datapath::{Datapath, batch, hash_insert, hash_remove};

/// `SERVICE_PORTS` as the agent plans it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicePorts;

impl DesiredMap for ServicePorts {
    const NAME: &'static str = common::SERVICE_PORTS;
    type Key = ServicePortKey;
    type Value = ServicePort;

    fn set(dp: &mut Datapath, key: ServicePortKey, port: ServicePort) -> Result<()> {
        dp.set_service_port(key, port)
    }

    fn clear(dp: &mut Datapath, key: ServicePortKey) -> Result<()> {
        dp.remove_service_port(key)
    }

    fn read(dp: &Datapath, _zone_slots: &BTreeSet<u32>) -> Result<Entries<Self>> {
        Ok(dp.service_ports()?.into_iter().collect())
    }

    // A port that goes stops new flows to it (narrowing, with the other
    // removals); a new port is written with the widening writes, after its
    // service's table (`SERVICE_TABLES` widens first in `diff_over`), so
    // the first packet to it finds its backends. The defaults do that.
}

impl Datapath {
    /// One VIP port. A full table is an error (validation bounds the
    /// services: it should not be).
    pub fn set_service_port(&mut self, key: ServicePortKey, port: ServicePort) -> Result<()> {
        hash_insert(
            common::SERVICE_PORTS,
            common::SERVICE_PORTS_ENTRIES,
            self.service_ports.insert(key, port, 0),
        )
    }

    /// The VIP port is no longer served.
    pub fn remove_service_port(&mut self, key: ServicePortKey) -> Result<()> {
        hash_remove(common::SERVICE_PORTS, self.service_ports.remove(&key))
    }

    /// Every VIP port (batched).
    pub fn service_ports(&self) -> Result<Vec<(ServicePortKey, ServicePort)>> {
        let raw = batch::read_all(self.service_ports.map(), common::SERVICE_PORTS)?;
        Ok(raw.typed().collect())
    }
}
