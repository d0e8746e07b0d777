//! Kernel reads turned into the model: discovery of PCI functions, netdevs, queues and
//! IRQs; the parsers of /proc and /sys text; and the hardware profiles that say what a
//! NIC can do.

pub mod inventory;
pub mod irqbalance;
pub mod parse;
pub mod pciids;
pub mod profile;
pub mod scope;
pub mod switchdev;
