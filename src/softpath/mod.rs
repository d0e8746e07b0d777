//! The daemon's software path: what to attach (`plan`, pure: the switches and ports the
//! config and state ask for), the running switches and ports that carry them (`running`),
//! the VMs' TAPs (`taps`), the containers' veths and the host's veth on an internal switch
//! (`veths`), and a vPort's libvirt `<interface>` (`libvirt`).

pub mod libvirt;
pub mod plan;
pub mod running;
pub mod taps;
pub mod veths;

pub use plan::*;
pub use running::*;
