//! netfabric userspace. Dependencies run one way (ARCHITECTURE.md, "Layers"):
//!
//! * [`cli`] (every command-line type, exit codes) builds plain configurations and
//!   opens the store;
//! * [`agent`], [`lab`] and [`observe`] do the work, without knowing the
//!   command line: the agent takes an [`agent::AgentConfig`] and a store;
//! * [`datapath`] (the typed datapath API: load, attach, fill maps, read
//!   counters), [`agent::plan`], [`port`], [`store`] and [`state`] below them;
//! * `netfabric-common` (the ABI shared with the eBPF programs) at the bottom.

pub mod agent;
pub mod cli;
pub mod cni;
pub mod conventions;
pub mod datapath;
pub mod dns;
pub mod errors;
pub mod health;
pub mod lab;
pub mod mac;
pub mod observe;
pub mod port;
pub mod state;
pub mod store;

pub use datapath::{Datapath, DatapathError};
pub use errors::error_message;
pub use mac::MacAddr;
