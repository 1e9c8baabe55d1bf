//! `HOST_CONFIG`: this host's identity (one entry, never cleared).

use netfabric_common::{self as common, HostConfig};

use super::Result;
use crate::datapath::{Datapath, map_err};

impl Datapath {
    /// Who this host is. Set it before attaching: until then every program
    /// fails closed (`no_route`) or passes to the stack (uplink).
    pub fn set_host(&mut self, host: &HostConfig) -> Result<()> {
        let mut host = *host;
        host.flags |= common::FLAG_PRESENT;
        self.host_config
            .set(0, host, 0)
            .map_err(map_err(common::HOST_CONFIG))
    }

    /// The host's configuration as the plan holds it: `None` until set,
    /// flags cleared.
    pub fn host(&self) -> Result<Option<HostConfig>> {
        let h = self
            .host_config
            .get(&0, 0)
            .map_err(map_err(common::HOST_CONFIG))?;
        Ok((h.flags & common::FLAG_PRESENT != 0).then_some(HostConfig { flags: 0, ..h }))
    }
}
