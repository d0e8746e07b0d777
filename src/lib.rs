//! vportd: gives every virtual switch port the fastest path the NIC allows
//! (SR-IOV VF, dedicated queues, or a software switch) and keeps queue interrupts
//! on the right CPUs. ARCHITECTURE.md draws the layers; in one line: `model` is plain
//! data, `facts` reads the kernel into it, `provision`, `rebalance` and `switch` decide,
//! `host` is the only code that talks to the kernel, and `daemon` and `cli` drive it all.

pub mod attach;
pub mod cli;
pub mod daemon;
pub mod facts;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod model;
pub mod provision;
pub mod rebalance;
pub mod softpath;
pub mod switch;
