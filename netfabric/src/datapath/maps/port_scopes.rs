//! `PORT_SCOPES`: (receiving owner, sending owner) → the protocols and
//! ports the receiver leaves open to that sender (security groups,
//! docs/security-groups.md). A hash: only narrowed pairs are present; the
//! programs look a pair up only when the receiver's endpoint carries
//! `INGRESS_SCOPED`.

use std::collections::BTreeSet;

use aya::maps::IterableMap as _;
use netfabric_common::{
    self as common,
    conntrack::{PortScope, ScopedPair},
};

use super::{DesiredMap, Entries, Result};
use crate::datapath::{Datapath, batch, hash_insert, hash_remove};

/// `PORT_SCOPES` as the agent plans it (`State::port_scopes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortScopes;

impl DesiredMap for PortScopes {
    const NAME: &'static str = common::PORT_SCOPES;
    type Key = ScopedPair;
    type Value = PortScope;

    fn set(dp: &mut Datapath, pair: ScopedPair, scope: PortScope) -> Result<()> {
        dp.set_port_scope(pair, scope)
    }

    fn clear(dp: &mut Datapath, pair: ScopedPair) -> Result<()> {
        dp.remove_port_scope(pair)
    }

    fn read(dp: &Datapath, _zone_slots: &BTreeSet<u32>) -> Result<Entries<Self>> {
        Ok(dp.port_scopes()?.into_iter().collect())
    }

    // An entry that goes opens its pair (cleared with the narrowing
    // changes, after the pairs and lists that go: see `HostPlan::diff`); a
    // new or changed entry is written before any other widening write, so
    // a pair about to be shared, or a receiver about to be flagged
    // `INGRESS_SCOPED`, finds its scope already there. The defaults do
    // exactly that.
}

impl Datapath {
    /// What `pair.sender` may still open towards `pair.receiver`. A full
    /// table is an error (validation bounds the pairs: it should not be).
    pub fn set_port_scope(&mut self, pair: ScopedPair, scope: PortScope) -> Result<()> {
        hash_insert(
            common::PORT_SCOPES,
            common::PORT_SCOPES_ENTRIES,
            self.port_scopes.insert(pair, scope, 0),
        )
    }

    /// The pair is no longer narrowed.
    pub fn remove_port_scope(&mut self, pair: ScopedPair) -> Result<()> {
        hash_remove(common::PORT_SCOPES, self.port_scopes.remove(&pair))
    }

    /// Every narrowed pair (batched).
    pub fn port_scopes(&self) -> Result<Vec<(ScopedPair, PortScope)>> {
        let raw = batch::read_all(self.port_scopes.map(), common::PORT_SCOPES)?;
        Ok(raw.typed().collect())
    }
}
