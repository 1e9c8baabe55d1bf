//! netfabric userspace: the typed datapath API (load, attach, fill maps, read
//! counters), used by the agent, the CLI, the tests and the benchmarks.

pub mod agent;
pub mod cli;
pub mod datapath;
pub mod errors;
pub mod lab;
pub mod mac;
pub mod observe;
pub mod port;
pub mod state;
pub mod store;

pub use datapath::{Datapath, DatapathError};
pub use errors::error_message;
pub use mac::MacAddr;
