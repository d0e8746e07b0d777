//! What to read of the kernel for a plan: the one place that decides it, so that
//! `vportd plan`, `vportd apply` and the daemon's reconciles (hotplug, `ctl apply`) plan
//! from the same facts.
//!
//! A plan needs the provisioning scope of discovery (functions, drivers, SR-IOV, VF
//! configs, netdevs as rtnetlink reports them; no IRQs or CPUs), narrowed to the PFs the
//! config and state name when they name them all (a no-op apply on a host with many NICs
//! reads only its own), and the PFs' queue facts (ethtool) when the plan can use them.
//! Anything the narrowed read cannot vouch for (an uplink that does not resolve to one PCI
//! network function, a vPort MAC held outside those PFs, a killed run's journal) gets the
//! full provisioning read, so that errors and their hints are the same as without it.
//!
//! The facts layer does not know the provisioning config: it asks it through
//! [`PlanInputs`], which the config answers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::inventory::{self, InventoryError, Scope};
use crate::host::fs::KernelFs;
use crate::host::netlink::{self, NetlinkError, NetlinkSnapshot};
use crate::model::inventory::{Inventory, Role};
use crate::model::profile::ProfileSet;

/// Errors of reading the facts for a plan.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// The netlink snapshot could not be taken.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// Discovery failed.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

/// What the facts layer must know of a plan's inputs (config, state, options) to choose
/// what to read.
pub trait PlanInputs {
    /// Whether the inputs may name the functions at all: not while a killed apply's
    /// journal waits for recovery, nor when the state file cannot be read.
    fn may_narrow(&self) -> bool;
    /// The PCI functions (PF addresses) the plan touches, found through `fs` and `nl`, when
    /// the inputs name them all unambiguously; None when only a full read can say (an
    /// uplink matching nothing or several netdevs, or a netdev that is not a PCI
    /// function's).
    fn functions(
        &self,
        fs: &KernelFs,
        nl: &NetlinkSnapshot,
    ) -> Result<Option<BTreeSet<String>>, InventoryError>;
    /// The MACs the plan gives vPorts, lower-case: one held outside [`Self::functions`]
    /// needs the full read to say whether it clashes.
    fn macs(&self) -> BTreeSet<String>;
    /// Whether a plan made from `inv` can use the PFs' queue facts; probing them costs
    /// several ethtool requests per PF.
    fn wants_queue_facts(&self, inv: &Inventory) -> bool;
}

/// Where the facts come from.
#[derive(Debug, Clone)]
pub struct Source {
    /// sysfs and procfs: the live root, another root, or a fixture.
    pub fs: KernelFs,
    /// A fixed netlink snapshot (a fixture's); None takes a live one at every read.
    pub netlink: Option<NetlinkSnapshot>,
    /// Whether the PFs' queue facts may be asked of the live kernel (by interface name):
    /// only when `fs` is the live kernel's own, else they would describe other devices.
    pub live_queues: bool,
}

impl Source {
    /// The live host.
    pub fn live() -> Source {
        Source {
            fs: KernelFs::system(),
            netlink: None,
            live_queues: true,
        }
    }

    /// /proc and /sys below `root` (the daemon's `--root`), netlink live; queue facts only
    /// when `root` is `/`.
    pub fn at_root(root: &Path) -> Source {
        if root == Path::new("/") {
            return Source::live();
        }
        Source {
            fs: KernelFs::at(root),
            netlink: None,
            live_queues: false,
        }
    }

    /// A captured host: files below `dir`, netlink from `snapshot`.
    pub fn fixture(dir: impl Into<PathBuf>, snapshot: NetlinkSnapshot) -> Source {
        Source {
            fs: KernelFs::at(dir.into()),
            netlink: Some(snapshot),
            live_queues: false,
        }
    }

    fn snapshot(&self) -> Result<NetlinkSnapshot, NetlinkError> {
        match &self.netlink {
            Some(nl) => Ok(nl.clone()),
            None => netlink::snapshot_scoped(false),
        }
    }
}

/// Told when each phase of a read ends, with when it began (the CLI's `VPORTD_TIMING`).
pub type Phases<'a> = dyn FnMut(&'static str, Instant) + 'a;

/// The inventory to plan `inputs` from: provisioning scope, narrowed when the inputs allow
/// it, with the PFs' queue facts when the plan wants them and the source can give them.
pub fn for_plan(
    src: &Source,
    profiles: &ProfileSet,
    inputs: &dyn PlanInputs,
    phases: &mut Phases<'_>,
) -> Result<Inventory, ScopeError> {
    let mut inv = provisioning(src, profiles, inputs, phases)?;
    if src.live_queues && inputs.wants_queue_facts(&inv) {
        let t = Instant::now();
        add_queue_facts(&mut inv);
        phases("queue facts", t);
    }
    Ok(inv)
}

/// What provisioning needs: narrowed to the PFs the inputs name when they name them all
/// and no vPort MAC is held elsewhere, else the full provisioning read.
fn provisioning(
    src: &Source,
    profiles: &ProfileSet,
    inputs: &dyn PlanInputs,
    phases: &mut Phases<'_>,
) -> Result<Inventory, ScopeError> {
    if !inputs.may_narrow() {
        return full_provisioning(src, profiles, phases);
    }
    let t = Instant::now();
    let nl = src.snapshot()?;
    phases("netlink snapshot", t);
    let t = Instant::now();
    if let Some(pfs) = inputs.functions(&src.fs, &nl)? {
        let inv = inventory::discover_pfs(&src.fs, &nl, profiles, &pfs)?;
        if !inventory::mac_outside(&inv, &nl, &inputs.macs()) {
            phases("sysfs discovery (uplinks only)", t);
            return Ok(inv);
        }
    }
    // The full read takes its own snapshot, as it did before the narrowed one was tried.
    full_provisioning(src, profiles, phases)
}

/// Every PCI function and netdev, in the provisioning scope.
fn full_provisioning(
    src: &Source,
    profiles: &ProfileSet,
    phases: &mut Phases<'_>,
) -> Result<Inventory, ScopeError> {
    let t = Instant::now();
    let nl = src.snapshot()?;
    phases("netlink snapshot", t);
    let t = Instant::now();
    let inv = inventory::discover_scoped(&src.fs, &nl, profiles, Scope::Provisioning)?;
    phases("sysfs discovery", t);
    Ok(inv)
}

/// What each PF's netdevs report of their queues: channels, RSS table, ntuple,
/// l2-fwd-offload.
fn add_queue_facts(inv: &mut Inventory) {
    for f in &mut inv.pci_functions {
        if f.role != Role::Vf {
            for n in &mut f.netdevs {
                n.queues = Some(crate::host::ethtool::queue_facts(&n.name));
            }
        }
    }
}
