//! `SERVICE_COUNTERS`: per-CPU packets and bytes balanced per service and
//! backend (an LRU per-CPU hash written by the programs only: a
//! [`KernelMap`]). Read in batches and summed over CPUs.

use std::collections::BTreeMap;

use netfabric_common::{self as common, Counter, service::ServiceCounterKey};

use super::{KernelMap, Result};
use crate::datapath::{Datapath, batch};

/// `SERVICE_COUNTERS`: read and summed, never planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCounters;

impl KernelMap for ServiceCounters {
    const NAME: &'static str = common::SERVICE_COUNTERS;
    type Snapshot = BTreeMap<ServiceCounterKey, Counter>;

    fn read(dp: &Datapath) -> Result<Self::Snapshot> {
        let raw = batch::read_all(&dp.service_counters, common::SERVICE_COUNTERS)?;
        Ok(service_counters_from_raw(&raw))
    }
}

/// The one decoder of `SERVICE_COUNTERS` (as read by
/// [`batch::read_all`]): per-CPU values summed.
pub fn service_counters_from_raw(raw: &batch::RawEntries) -> BTreeMap<ServiceCounterKey, Counter> {
    (0..raw.count)
        .map(|i| {
            let key: ServiceCounterKey = batch::pod(raw.key(i));
            let sum = batch::sum_per_cpu_u64(raw.value(i), std::mem::size_of::<Counter>());
            (
                key,
                Counter {
                    packets: sum[0],
                    bytes: sum[1],
                },
            )
        })
        .collect()
}

impl Datapath {
    /// Packets and bytes per (service, backend), summed over CPUs.
    pub fn service_counters(&self) -> Result<BTreeMap<ServiceCounterKey, Counter>> {
        ServiceCounters::read(self)
    }
}
