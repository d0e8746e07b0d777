//! A simulated SR-IOV host with the kernel's rules (drivers/pci/iov.c, rtnetlink),
//! for unit tests and demos. Most paths it drives also run in the QEMU guest against the
//! real igb driver, but not all: igb refuses a VF's min rate, link state and 802.1ad port
//! VLAN, and has no RSS contexts, ntuple rules or VMDq stations, so for those steps this
//! simulator (and, for the queue steps, the request bytes of tests/queues_bytes.rs) is the
//! only proof today.
//!
//! Faults can be injected at any operation, with the errnos the kernel really
//! returns, to prove that apply rolls back and converges.

mod faults;
mod inventory;
mod nics;
mod queues;
mod sriov;
mod steering;
mod vf_settings;
mod vfs;

use std::collections::BTreeMap;

use nix::errno::Errno;

use crate::model::queues::{FlowRule, QueueFacts};
use crate::model::vf::VfConfig;
use crate::provision::ops::HostError;

/// One simulated PF.
#[derive(Debug, Clone)]
pub struct SimPf {
    pub bdf: String,
    pub ifindex: u32,
    pub vendor: u16,
    pub device: u16,
    pub driver: String,
    pub vf_driver: String,
    pub total_vfs: u32,
    /// Attributes the driver refuses with EOPNOTSUPP ("link_state", "min_rate", "802.1ad").
    pub refuses: Vec<&'static str>,
    pub vfs: Vec<SimVf>,
    /// Queue facts the simulated driver reports (None: no channel or RSS control), and
    /// which queue controls it refuses ("channels", "rss").
    pub queue_facts: Option<QueueFacts>,
    pub queue_refuses: Vec<&'static str>,
    /// Per-vPort steering the simulated driver holds (RSS contexts, ntuple rules,
    /// macvlan stations); `queue_refuses` may name "rss-context", "ntuple", "macvlan"
    /// or "l2-fwd-offload" to refuse them.
    pub steer: SimSteering,
    /// Administratively up (IFF_UP); a simulated PF starts up, a test may put it down.
    pub admin_up: bool,
}

/// RSS contexts, ntuple rules and macvlans on a simulated PF, with the kernel's rules:
/// context ids from 1, a context's table only over existing channels, a rule into an
/// existing context or queue, one macvlan per MAC, l2-fwd-offload only when changeable.
#[derive(Debug, Clone, Default)]
pub struct SimSteering {
    pub contexts: BTreeMap<u32, Vec<u32>>,
    pub rules: BTreeMap<u32, FlowRule>,
    /// (ifindex, name, MAC, in a VMDq pool).
    pub macvlans: Vec<(u32, String, [u8; 6], bool)>,
    /// At most this many contexts (0: none at all).
    pub max_contexts: u32,
}

#[derive(Debug, Clone)]
pub struct SimVf {
    pub bdf: String,
    pub driver: Option<String>,
    pub config: VfConfig,
}

/// Which operation a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    SetNumVfs,
    Bind,
    SetVf,
    VfConfig,
}

/// A simulated host.
#[derive(Debug, Clone, Default)]
pub struct SimHost {
    pub pfs: Vec<SimPf>,
    /// Operations counted so far, per kind, to aim faults.
    pub calls: BTreeMap<&'static str, u32>,
    /// (operation, nth call of it from 1, errno, how many times in a row).
    pub faults: Vec<(Op, u32, Errno, u32)>,
    /// Every mutating operation, in order, for assertions.
    pub log: Vec<String>,
}

/// Lookups every concern shares.
impl SimHost {
    pub(super) fn pf_mut(&mut self, bdf: &str) -> Option<&mut SimPf> {
        self.pfs.iter_mut().find(|p| p.bdf == bdf)
    }

    pub(super) fn pf_by_ifindex(&mut self, ifindex: u32) -> Result<&mut SimPf, HostError> {
        self.pfs
            .iter_mut()
            .find(|p| p.ifindex == ifindex)
            .ok_or(HostError::Netlink {
                what: format!("link {ifindex}"),
                errno: Some(Errno::ENODEV),
                message: "no such device".into(),
            })
    }

    pub(super) fn vf_mut(&mut self, bdf: &str) -> Option<&mut SimVf> {
        self.pfs
            .iter_mut()
            .flat_map(|p| p.vfs.iter_mut())
            .find(|v| v.bdf == bdf)
    }
}
