//! `SERVICE_TABLES`: a service ([`service_id`]) → its members and the
//! Maglev lookup table over the healthy ones (docs/services.md). The plan
//! holds the members and which are healthy ([`ServiceMembers`], half a
//! KiB); the 65,537-slot table is computed when the entry is written, and
//! written whole in one update, so a packet sees the old table or the new
//! one, never a mix.
//!
//! [`service_id`]: netfabric_common::service::service_id

use std::collections::BTreeSet;

use aya::maps::IterableMap as _;
use netfabric_common::{
    self as common,
    service::{MAX_BACKENDS, NO_MEMBER, ServiceTable, populate},
};

use super::{Change, DesiredMap, Entries, Result};
use crate::datapath::{Datapath, batch, hash_insert, hash_remove};

/// A service's members by member index (backend container addresses, host
/// byte order; 0: unused) and the healthy ones (bit `i`: member `i`).
/// A member keeps its index while it stays a member, so an open flow's
/// index keeps naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceMembers {
    pub members: [u32; MAX_BACKENDS],
    pub healthy: u128,
}

impl Default for ServiceMembers {
    fn default() -> Self {
        ServiceMembers {
            members: [0; MAX_BACKENDS],
            healthy: 0,
        }
    }
}

impl ServiceMembers {
    /// The entry the programs read: the members and Maglev's table.
    pub fn table(&self) -> Box<ServiceTable> {
        let mut table = Box::new(ServiceTable::default());
        table.members = self.members;
        populate(&self.members, self.healthy, &mut table.slots);
        table
    }

    /// The members of a table read back, healthy being those holding a
    /// slot (Maglev gives every healthy member at least one: there are
    /// more slots than members).
    pub fn of_table(table: &ServiceTable) -> ServiceMembers {
        let mut healthy = 0u128;
        for &s in table.slots.iter() {
            if s != NO_MEMBER && (s as usize) < MAX_BACKENDS {
                healthy |= 1u128 << s;
            }
        }
        ServiceMembers {
            members: table.members,
            healthy,
        }
    }
}

/// `SERVICE_TABLES` as the agent plans it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceTables;

impl DesiredMap for ServiceTables {
    const NAME: &'static str = common::SERVICE_TABLES;
    type Key = u32;
    type Value = ServiceMembers;

    fn set(dp: &mut Datapath, service: u32, members: ServiceMembers) -> Result<()> {
        dp.set_service_table(service, &members)
    }

    fn clear(dp: &mut Datapath, service: u32) -> Result<()> {
        dp.remove_service_table(service)
    }

    fn read(dp: &Datapath, _zone_slots: &BTreeSet<u32>) -> Result<Entries<Self>> {
        Ok(dp
            .service_tables()?
            .into_iter()
            .map(|(id, table)| (id, ServiceMembers::of_table(&table)))
            .collect())
    }

    /// A table that goes is cleared after its ports (narrowing). A member
    /// that leaves (or whose index another container takes) is taken out
    /// with the narrowing writes: the table without it, before its
    /// endpoint loses `SERVICE_BACKEND` and before anything widens; the
    /// new or changed table is written whole with the widening writes,
    /// after the endpoints and before any port that leads to it. Health
    /// alone never narrows (an unhealthy member keeps its flows).
    fn narrowing(
        key: u32,
        current: &ServiceMembers,
        desired: Option<&ServiceMembers>,
    ) -> Option<Change<Self>> {
        let Some(desired) = desired else {
            return Some(Change::Clear { key });
        };
        let mut kept = *current;
        let mut left = false;
        for (i, (m, d)) in kept.members.iter_mut().zip(desired.members).enumerate() {
            if *m != 0 && *m != d {
                *m = 0;
                kept.healthy &= !(1u128 << i);
                left = true;
            }
        }
        left.then_some(Change::Set { key, value: kept })
    }
}

impl Datapath {
    /// A service's members and lookup table (replaced whole).
    pub fn set_service_table(&mut self, service: u32, members: &ServiceMembers) -> Result<()> {
        let table = members.table();
        hash_insert(
            common::SERVICE_TABLES,
            common::SERVICE_TABLES_ENTRIES,
            self.service_tables.insert(service, *table, 0),
        )
    }

    /// The service is gone.
    pub fn remove_service_table(&mut self, service: u32) -> Result<()> {
        hash_remove(common::SERVICE_TABLES, self.service_tables.remove(&service))
    }

    /// Every service's table (batched).
    pub fn service_tables(&self) -> Result<Vec<(u32, ServiceTable)>> {
        let raw = batch::read_all(self.service_tables.map(), common::SERVICE_TABLES)?;
        Ok(raw.typed().collect())
    }
}
