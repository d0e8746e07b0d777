//! The only module that touches the kernel: sysfs and procfs (through [`fs::KernelFs`],
//! under a configurable root), rtnetlink and ethtool netlink. Everything above it is
//! pure data in, data out, and is tested without root.

pub mod files;
pub mod fs;
