//! vportd: gives every virtual switch port the fastest path the NIC allows
//! (SR-IOV VF, dedicated queues, or a software switch) and keeps queue interrupts
//! on the right CPUs. See ARCHITECTURE.md for the data flow.

pub mod apply;
pub mod config;
pub mod control;
pub mod control_plane;
pub mod ctl;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod hotplug;
pub mod inventory;
pub mod location;
pub mod metrics;
pub mod parse;
pub mod plan;
pub mod profile;
pub mod provision;
pub mod rebalance;
pub mod reconcile;
pub mod render;
pub mod sim;
pub mod softpath;
pub mod state;
pub mod switch;
pub mod top;
