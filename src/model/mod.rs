//! Plain data shared by every layer: no I/O, and nothing else of the crate imported, so
//! that the pure layers and the kernel adapters can both speak it.

pub mod edge;
pub mod file_errors;
pub mod inventory;
pub mod location;
pub mod mac;
pub mod pool;
pub mod port_counters;
pub mod profile;
pub mod queues;
pub mod suggest;
pub mod uplink;
pub mod vf;
