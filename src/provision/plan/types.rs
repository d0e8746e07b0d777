//! The plan's types: what the planner answers and the errors that stop it.

use serde::Serialize;

use super::action::Action;
use crate::model::vf::VfConfig;
use crate::provision::state::VportPath;

/// Planner options from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Allow VF count changes that tear down existing VFs.
    pub allow_disruption: bool,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub placements: Vec<Placement>,
    /// In execution order.
    pub actions: Vec<Action>,
    pub disruptions: Vec<Disruption>,
    pub warnings: Vec<String>,
    /// Why this plan must not be applied (unmet `offload = "required"`, disruption
    /// not allowed). Apply refuses a plan with blockers before touching anything.
    pub blockers: Vec<String>,
    /// The VFs each `[[pool]]` holds, in config order per uplink: apply records them in
    /// the state, the daemon hands them out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<crate::model::pool::Pool>,
}

impl Plan {
    /// True when applying would change nothing on the host.
    pub fn is_noop(&self) -> bool {
        self.actions
            .iter()
            .all(|a| matches!(a, Action::Record { .. }))
    }
}

/// Where one vPort goes, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    pub vport: String,
    /// The uplink PF's PCI address.
    pub uplink: String,
    pub path: VportPath,
    pub reason: String,
    /// The VF settings this vPort wants (VF placements only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vf_config: Option<VfConfig>,
}

/// A VF count change that destroys existing VFs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disruption {
    pub pf: String,
    pub from: u32,
    pub to: u32,
    /// vPorts whose VFs are torn down and recreated.
    pub vports: Vec<String>,
    /// VFs bound to a driver that vportd did not allocate (someone else's).
    pub unmanaged_vfs_in_use: u32,
}

/// Who a `ConfigureVf` of the `[[uplink]] switch_vf` is for, in plans and journals.
pub const SWITCH_VF_HOLDER: &str = "the software switch";

/// Errors that make planning impossible (as opposed to blockers, which a plan shows).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A resolved uplink is no longer in the inventory.
    #[error("uplink {bdf} is not on this host any more; rerun discover")]
    UplinkGone { bdf: String },
}
