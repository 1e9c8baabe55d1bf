//! Why a desired state or a change to it was refused.
//!
//! Every error names the offending field as a path into the state file,
//! `<list>[<name>].<field>`, e.g. `hosts[h2].number: 255 is outside 1..=254`.

use std::net::Ipv4Addr;

use super::{names::NAME_RULE, prefix::Ipv4Prefix};

/// A refused state or change. Nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("{field}: {value:?} is not a valid name: {NAME_RULE}")]
    MalformedName { field: String, value: String },

    #[error("{field}: {kind} {name:?} is defined twice")]
    DuplicateName {
        field: String,
        kind: &'static str,
        name: String,
    },

    #[error("{field}: {value} is already used by {other}")]
    Duplicate {
        field: String,
        value: String,
        other: String,
    },

    #[error("{field}: unknown {kind} {name:?}")]
    UnknownReference {
        field: String,
        kind: &'static str,
        name: String,
    },

    #[error("{field}: {value} is outside 1..=254")]
    HostNumberOutOfRange { field: String, value: u32 },

    #[error("{field}: {prefix} overlaps zone {other} ({other_prefix})")]
    OverlappingZones {
        field: String,
        prefix: Ipv4Prefix,
        other: String,
        other_prefix: Ipv4Prefix,
    },

    #[error("{field}: {subnet} is outside zone {zone} ({zone_prefix})")]
    SubnetOutsideZone {
        field: String,
        subnet: Ipv4Prefix,
        zone: String,
        zone_prefix: Ipv4Prefix,
    },

    #[error("{field}: {address} is outside host {host}'s subnet {subnet}")]
    AddressOutsideHost {
        field: String,
        address: Ipv4Addr,
        host: String,
        subnet: Ipv4Prefix,
    },

    #[error("{field}: {address} is the {which} address of {subnet}; containers get .1 to .254")]
    ReservedAddress {
        field: String,
        address: Ipv4Addr,
        which: &'static str,
        subnet: Ipv4Prefix,
    },

    #[error(
        "{field}: host {host} is full: all 254 container addresses of {subnet} are taken \
         (delete a container or use another host)"
    )]
    HostFull {
        field: String,
        host: String,
        subnet: Ipv4Prefix,
    },

    #[error("{field}: {kind} {name:?} not found")]
    NotFound {
        field: String,
        kind: &'static str,
        name: String,
    },

    #[error("{field}: {kind} {name:?} already exists{detail}")]
    AlreadyExists {
        field: String,
        kind: &'static str,
        name: String,
        /// Why the existing one differs, e.g. ` with prefix 10.1.0.0/16`.
        detail: String,
    },

    #[error("{field}: {kind} {name:?} is still used by {users}; {hint}")]
    InUse {
        field: String,
        kind: &'static str,
        name: String,
        users: String,
        hint: &'static str,
    },

    /// Any other rule; `message` says which.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl StateError {
    /// The path of the offending field, e.g. `hosts[h2].number`.
    pub fn field(&self) -> &str {
        match self {
            StateError::MalformedName { field, .. }
            | StateError::DuplicateName { field, .. }
            | StateError::Duplicate { field, .. }
            | StateError::UnknownReference { field, .. }
            | StateError::HostNumberOutOfRange { field, .. }
            | StateError::OverlappingZones { field, .. }
            | StateError::SubnetOutsideZone { field, .. }
            | StateError::AddressOutsideHost { field, .. }
            | StateError::ReservedAddress { field, .. }
            | StateError::HostFull { field, .. }
            | StateError::NotFound { field, .. }
            | StateError::AlreadyExists { field, .. }
            | StateError::InUse { field, .. }
            | StateError::Invalid { field, .. } => field,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StateError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `list[name].leaf`, the field path used in errors.
pub(crate) fn path(list: &str, name: &str, leaf: &str) -> String {
    if leaf.is_empty() {
        format!("{list}[{name}]")
    } else {
        format!("{list}[{name}].{leaf}")
    }
}
