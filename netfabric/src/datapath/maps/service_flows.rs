//! `SERVICE_FLOWS`: the translations of open service flows (an LRU hash
//! written by the programs only: a [`KernelMap`]). Userspace reads it
//! (`maps dump`, metrics, tests) and may remove entries; nothing plans it.

use aya::maps::{IterableMap as _, MapError};
use netfabric_common::{self as common, conntrack::ConnKey, service::ServiceFlow};

use super::{KernelMap, Result};
use crate::datapath::{Datapath, batch, hash_remove, map_err};

/// `SERVICE_FLOWS`: read in batches, never planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceFlows;

impl KernelMap for ServiceFlows {
    const NAME: &'static str = common::SERVICE_FLOWS;
    type Snapshot = Vec<(ConnKey, ServiceFlow)>;

    fn read(dp: &Datapath) -> Result<Self::Snapshot> {
        let raw = batch::read_all(dp.service_flows.map(), common::SERVICE_FLOWS)?;
        Ok(raw.typed().collect())
    }
}

impl Datapath {
    /// Every flow translation (batched), expired ones included.
    pub fn service_flows(&self) -> Result<Vec<(ConnKey, ServiceFlow)>> {
        ServiceFlows::read(self)
    }

    /// One flow's translation, if any.
    pub fn service_flow(&self, key: &ConnKey) -> Result<Option<ServiceFlow>> {
        match self.service_flows.get(key, 0) {
            Ok(f) => Ok(Some(f)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(common::SERVICE_FLOWS)(e)),
        }
    }

    /// Writes one entry (tests age entries this way; the programs create
    /// them).
    pub fn set_service_flow(&mut self, key: &ConnKey, flow: &ServiceFlow) -> Result<()> {
        self.service_flows
            .insert(key, flow, 0)
            .map_err(map_err(common::SERVICE_FLOWS))
    }

    /// Forgets one translation (absent: nothing to do).
    pub fn remove_service_flow(&mut self, key: &ConnKey) -> Result<()> {
        hash_remove(common::SERVICE_FLOWS, self.service_flows.remove(key))
    }
}
