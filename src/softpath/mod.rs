//! The daemon's software path: the vPorts the state puts on the software switch, and
//! the running switches and ports that carry them.

pub mod libvirt;
pub mod running;
pub mod taps;

pub use running::*;
