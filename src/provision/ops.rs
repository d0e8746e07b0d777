//! What provisioning asks of a host, as traits the kernel layer implements (`host::sriov`,
//! `host::ethtool`, `host::faults`) and the simulated host does too: apply and its rollback
//! speak only these, so they run the same against the kernel and against `sim_host`. The
//! error types are here because the traits' signatures name them (the file errors inside
//! them are `model::file_errors`, which discovery and the rebalancer share); the kernel layer fills
//! them with the errno the kernel returned, and apply classifies them (retry or not).

use std::time::Duration;

use nix::errno::Errno;

use crate::model::file_errors::{FsError, WriteFailed};
use crate::model::queues::{FlowRule, QueueFacts};
use crate::model::vf::VfConfig;

/// Errors from provisioning writes. Each names the device and, where the kernel gave
/// one, the errno, with the likely cause for the errnos users find cryptic.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A sysfs write failed.
    #[error(transparent)]
    Write(#[from] WriteFailed),
    /// A netlink request failed.
    #[error("{what} failed: {message}")]
    Netlink {
        what: String,
        errno: Option<Errno>,
        message: String,
    },
    /// Something did not happen within its time bound.
    #[error("{what} did not happen within {} ms", waited.as_millis())]
    Timeout { what: String, waited: Duration },
    /// Reading sysfs failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl HostError {
    /// The errno behind the failure, if the kernel gave one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            HostError::Write(w) => Some(w.errno),
            HostError::Netlink { errno, .. } => *errno,
            HostError::Fs(FsError::Read { source, .. } | FsError::List { source, .. }) => {
                source.raw_os_error().map(Errno::from_raw)
            }
            _ => None,
        }
    }

    /// Errors a driver returns while a VF resets: worth a bounded retry.
    pub fn is_transient(&self) -> bool {
        matches!(self.errno(), Some(Errno::EBUSY | Errno::EAGAIN))
    }
}

/// Provisioning operations on a host. The live implementation writes sysfs and
/// rtnetlink (`host::sriov::LiveSriov`); a simulated one (`crate::provision::sim_host`) lets apply and its rollback be tested
/// exhaustively, with faults injected at any step.
pub trait SriovOps {
    /// Current `sriov_numvfs` of a PF.
    fn num_vfs(&mut self, pf: &str) -> Result<u32, HostError>;
    /// Writes `sriov_numvfs` and waits (bounded) until the VFs exist; returns the
    /// count the kernel then reports (a driver may enable fewer than asked).
    fn set_num_vfs(&mut self, pf: &str, n: u32) -> Result<u32, HostError>;
    /// The PCI address of VF `index` of a PF, if that VF exists.
    fn vf_bdf(&mut self, pf: &str, index: u32) -> Result<Option<String>, HostError>;
    /// The driver a PCI function is bound to.
    fn driver(&mut self, bdf: &str) -> Result<Option<String>, HostError>;
    /// Binds a function to `driver` (None: unbind and clear the override).
    fn bind(&mut self, bdf: &str, driver: Option<&str>) -> Result<(), HostError>;
    /// The PF's rtnetlink view of one VF.
    fn vf_config(&mut self, pf_ifindex: u32, vf: u32) -> Result<Option<VfConfig>, HostError>;
    /// Sets a VF's attributes in one rtnetlink request; `None` fields are left alone.
    fn set_vf(&mut self, pf_ifindex: u32, cfg: &VfConfig) -> Result<(), HostError>;
    /// Whether the PF's netdev has carrier. Drivers reset the PF when VFs are
    /// enabled, and igb refuses VF rates (EINVAL) until the link is back.
    fn pf_carrier(&mut self, pf: &str) -> Result<bool, HostError>;
    /// Whether the PF's netdev is administratively up (IFF_UP).
    fn pf_admin_up(&mut self, pf_ifindex: u32) -> Result<bool, HostError>;
    /// Sets the PF's netdev administratively up or down (`ip link set ... up`/`down`).
    fn set_pf_admin_up(&mut self, pf_ifindex: u32, up: bool) -> Result<(), HostError>;
    /// The PF queue controls (channels, RSS), where this host has them.
    fn queues(&mut self) -> Option<&mut dyn QueueOps> {
        None
    }
}

/// Lets the CLI pick its host (live, or live under the fault-injection layer) at run time.
impl<T: SriovOps + ?Sized> SriovOps for Box<T> {
    fn num_vfs(&mut self, pf: &str) -> Result<u32, HostError> {
        (**self).num_vfs(pf)
    }
    fn set_num_vfs(&mut self, pf: &str, n: u32) -> Result<u32, HostError> {
        (**self).set_num_vfs(pf, n)
    }
    fn vf_bdf(&mut self, pf: &str, index: u32) -> Result<Option<String>, HostError> {
        (**self).vf_bdf(pf, index)
    }
    fn driver(&mut self, bdf: &str) -> Result<Option<String>, HostError> {
        (**self).driver(bdf)
    }
    fn bind(&mut self, bdf: &str, driver: Option<&str>) -> Result<(), HostError> {
        (**self).bind(bdf, driver)
    }
    fn vf_config(&mut self, pf_ifindex: u32, vf: u32) -> Result<Option<VfConfig>, HostError> {
        (**self).vf_config(pf_ifindex, vf)
    }
    fn set_vf(&mut self, pf_ifindex: u32, cfg: &VfConfig) -> Result<(), HostError> {
        (**self).set_vf(pf_ifindex, cfg)
    }
    fn pf_carrier(&mut self, pf: &str) -> Result<bool, HostError> {
        (**self).pf_carrier(pf)
    }
    fn pf_admin_up(&mut self, pf_ifindex: u32) -> Result<bool, HostError> {
        (**self).pf_admin_up(pf_ifindex)
    }
    fn set_pf_admin_up(&mut self, pf_ifindex: u32, up: bool) -> Result<(), HostError> {
        (**self).set_pf_admin_up(pf_ifindex, up)
    }
    fn queues(&mut self) -> Option<&mut dyn QueueOps> {
        (**self).queues()
    }
}

/// Errors from queue controls. Each names the device and the request.
#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    /// A socket for the request could not be opened.
    #[error("cannot open a socket to {what} on {dev}: {errno}")]
    Socket {
        dev: String,
        what: &'static str,
        errno: Errno,
    },
    /// The kernel refused the request.
    #[error("{dev}: the kernel refused to {what}: {errno}{}", hint(*.errno, what))]
    Refused {
        dev: String,
        what: String,
        errno: Errno,
    },
    /// The device name cannot be a netdev name.
    #[error("{dev:?} is not a network interface name")]
    BadName { dev: String },
    /// The kernel answered something this code does not understand.
    #[error("{dev}: unexpected answer to {what}: {why}")]
    Protocol {
        dev: String,
        what: String,
        why: String,
    },
}

impl EthtoolError {
    /// The errno behind a refusal.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            EthtoolError::Refused { errno, .. } | EthtoolError::Socket { errno, .. } => {
                Some(*errno)
            }
            _ => None,
        }
    }
}

/// The likely cause of the errnos users meet here, as a sentence tail.
fn hint(errno: Errno, what: &str) -> &'static str {
    match errno {
        Errno::EOPNOTSUPP if what.contains("context") => {
            " (the driver has no RSS contexts; igb, ixgbe, i40e and ice have none)"
        }
        Errno::EOPNOTSUPP if what.contains("flow rule") => {
            " (the driver has no ntuple filters, or they are off: ethtool -k shows ntuple-filters)"
        }
        Errno::EOPNOTSUPP => " (the driver does not implement this control)",
        Errno::EINVAL if what.contains("indirection") => {
            " (a table entry names a queue the device does not have, or the table size is not the device's)"
        }
        Errno::EINVAL if what.contains("channels") => {
            " (above the maximum ethtool -l shows, or below what RSS contexts or AF_XDP sockets still use)"
        }
        Errno::EBUSY => {
            " (the device is busy; drivers refuse while VFs or an XDP program need the queues)"
        }
        Errno::EPERM => " (needs CAP_NET_ADMIN)",
        _ => "",
    }
}

/// PF queue controls as apply uses them, by ifindex (names are resolved at each call:
/// a rename between plan and apply must not send a request to another device). The live
/// implementation is `host::ethtool::LiveQueues`; `crate::provision::sim_host` has one with the kernel's rules.
pub trait QueueOps {
    fn facts(&mut self, ifindex: u32) -> Result<QueueFacts, EthtoolError>;
    /// Sets the combined channel count. Drivers re-create their queue interrupts.
    fn set_channels(&mut self, ifindex: u32, combined: u32) -> Result<(), EthtoolError>;
    /// Sets the main RSS indirection table; an empty table restores the driver's default.
    fn set_rss_table(&mut self, ifindex: u32, indir: &[u32]) -> Result<(), EthtoolError>;
    /// The table of RSS context `id`; None when the device has no such context.
    fn rss_context(&mut self, ifindex: u32, id: u32) -> Result<Option<Vec<u32>>, EthtoolError>;
    /// Creates an RSS context spreading over `indir`; returns the id the driver gave it.
    fn create_rss_context(&mut self, ifindex: u32, indir: &[u32]) -> Result<u32, EthtoolError>;
    fn delete_rss_context(&mut self, ifindex: u32, id: u32) -> Result<(), EthtoolError>;
    /// The ntuple rule at `location`; None when the slot is empty.
    fn rule(&mut self, ifindex: u32, location: u32) -> Result<Option<FlowRule>, EthtoolError>;
    fn insert_rule(&mut self, ifindex: u32, rule: &FlowRule) -> Result<(), EthtoolError>;
    fn delete_rule(&mut self, ifindex: u32, location: u32) -> Result<(), EthtoolError>;
    /// Turns a feature on or off and checks that it reads back as asked.
    fn set_feature(&mut self, ifindex: u32, name: &str, on: bool) -> Result<(), EthtoolError>;
    /// Creates a macvlan (bridge mode) on `parent` with `mac`; returns its ifindex.
    fn create_macvlan(
        &mut self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<u32, EthtoolError>;
    /// The macvlan on `parent` with `mac`, by ifindex (MACs of vPorts are unique).
    fn find_macvlan(&mut self, parent: u32, mac: [u8; 6]) -> Result<Option<u32>, EthtoolError>;
    fn delete_link(&mut self, ifindex: u32) -> Result<(), EthtoolError>;
}

/// The highest RSS context id a search for a lost context tries (a run killed between
/// creating a context and journaling its id): drivers hand out small ids.
pub const CONTEXT_SEARCH_LIMIT: u32 = 64;
