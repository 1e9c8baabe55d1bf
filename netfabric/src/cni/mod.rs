//! The CNI plugin (`netfabric-cni`): container runtimes (podman,
//! containerd, CRI-O, Kubernetes) attach a container to netfabric through
//! it. No clap here: the binary (`src/bin/netfabric-cni.rs`) hands the
//! environment and stdin to [`run`].
//!
//! * Identity by name: the runtime's `K8S_POD_NAME` (prefixed with
//!   `K8S_POD_NAMESPACE-` when given) is the container's name in the store,
//!   so it gets its persistent address. An unknown name is created on this
//!   host when `CNI_ARGS` `owner=` or the configuration's `defaultOwner`
//!   names the owner; otherwise ADD fails (code 100).
//! * ADD makes the port with [`crate::port::attach_as`], as `container
//!   attach` does: the veth is created down and the host's agent attaches
//!   the programs, sets `LOCAL_PORTS` and brings it up. The plugin never
//!   loads programs or touches maps.
//! * DEL removes the interface from the container's namespace (its veth
//!   peer goes with it) and never the container from the store: a container
//!   re-created under the same name keeps its address until `netfabric
//!   container delete`. DEL needs no store, so it succeeds with the store
//!   down, the namespace gone or the container unknown.
//! * CHECK compares the interface, address and routes with what ADD makes,
//!   and requires the agent's pinned links of the port.
//! * One `flock` per host serialises the plugin's invocations on it.

pub mod install;
pub mod plugin;
pub mod spec;

pub use plugin::run;
pub use spec::{CniError, Code};
