//! The only module that touches the kernel: sysfs and procfs (through [`fs::KernelFs`],
//! under a configurable root), rtnetlink and ethtool netlink. Everything above it is
//! pure data in, data out, and is tested without root.

pub mod afpacket;
pub mod afxdp;
pub(crate) mod bpf;
pub mod ethtool;
pub mod ethtool_stats;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod fs;
pub mod http;
pub mod ipconf;
pub mod netlink;
pub mod netns;
pub mod qstats;
pub mod sched;
pub mod sriov;
pub mod tap;
pub mod tcflow;
pub mod uevent;
pub mod unix_socket;
pub mod userfiles;
pub mod vlan;
pub mod wait;

/// Runs a netlink future to completion on a private current-thread runtime, so that
/// synchronous callers (the CLI, discovery) need not own one.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime always builds")
        .block_on(f)
}
