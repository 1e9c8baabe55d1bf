//! The desired state of a deployment (docs/concepts.md#the-desired-state): the model, its
//! validation, and the operations that change it (including persistent
//! container addressing).
//!
//! * [`model`]: zones, hosts, owners, groups, containers, as stored;
//!   [`security`] and [`services`]: security groups and services (their
//!   rules over the whole state in `scopes` and `service_ops`).
//! * [`validate`](State::validate): every rule, errors naming the field.
//! * [`changes`]: a change object by object, and a state followed change
//!   by change ([`FollowedState`]), validated by what the change touches.
//! * operations such as [`State::create_container`], which allocates the
//!   lowest free address of the host's /24.
//!
//! ## Names
//! Zones, hosts, owners, groups and containers are named by
//! `^[a-z][a-z0-9-]{0,62}$`: 1 to 63 characters of lowercase letters, digits
//! and `-`, starting with a letter (like a DNS label, so names can later be
//! served by a name service). Names are unique within their kind.

pub mod changes;
mod error;
pub mod model;
mod names;
mod ops;
mod prefix;
mod scopes;
pub mod security;
mod service_ops;
pub mod services;
mod validate;

pub use changes::{Changes, FollowedState, Object, ObjectChange, ObjectId};
pub use error::StateError;
pub use model::{
    Container, Egress, Gateway, Group, Host, Ipv4Prefix, MAX_CONTAINERS_PER_HOST, NAME_RULE, Owner,
    ParsePrefixError, SYSTEM_OWNER_ID, SYSTEM_OWNER_NAME, State, Zone, host_subnet, is_valid_name,
    member_pairs,
};
pub use ops::HostSpec;
pub use security::{Allow, Protocol, SecurityGroup, Via};
pub use service_ops::{ServiceSpec, service_range};
pub use services::{Backend, HealthCheck, MAX_SERVICE_PORTS, Service, ServicePortSpec};
pub use validate::ZONE_RANGES;
