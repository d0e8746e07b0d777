//! The provisioning config's answers to [`facts::scope`](crate::facts::scope): which PFs
//! a plan touches, which MACs it hands out, whether it can use queue facts. Here, above
//! both the facts and the provisioning layers, because each of those may not name the
//! other; `vportd plan`/`apply` and the daemon's reconciles both read through
//! [`plan_inventory`], so they plan from the same facts.

use std::collections::BTreeSet;

use crate::facts::inventory::{self, InventoryError};

use crate::facts::scope::{self, Phases, PlanInputs, ScopeError, Source};
use crate::host::fs::KernelFs;
use crate::host::netlink::NetlinkSnapshot;
use crate::host::userfiles::UserFiles;
use crate::model::inventory::Inventory;
use crate::model::profile::ProfileSet;
use crate::provision;
use crate::provision::config::{Config, Offload};
use crate::provision::plan::PlanOptions;
use crate::provision::state::{State, VportPath};

/// A config to plan, with the plan's options and profiles.
pub struct ConfigInputs<'a> {
    pub config: &'a Config,
    pub opts: PlanOptions,
    pub profiles: &'a ProfileSet,
}

/// The inventory to plan `config` from, read from `src` as [`scope::for_plan`] decides.
pub fn plan_inventory(
    src: &Source,
    config: &Config,
    opts: PlanOptions,
    phases: &mut Phases<'_>,
) -> Result<Inventory, ScopeError> {
    let profiles = ProfileSet::builtin();
    let inputs = ConfigInputs {
        config,
        opts,
        profiles,
    };
    scope::for_plan(src, profiles, &inputs, phases)
}

impl PlanInputs for ConfigInputs<'_> {
    fn may_narrow(&self) -> bool {
        let dir = &self.config.state_dir;
        !dir.join(provision::apply::JOURNAL_FILE).exists() && State::load(&UserFiles, dir).is_ok()
    }

    /// The config's uplinks and, from the state file, the PFs of vPorts applied before (a
    /// vPort removed from the config still has a VF to reset there).
    fn functions(
        &self,
        fs: &KernelFs,
        nl: &NetlinkSnapshot,
    ) -> Result<Option<BTreeSet<String>>, InventoryError> {
        let Ok(state) = State::load(&UserFiles, &self.config.state_dir) else {
            return Ok(None);
        };
        let held = state.vports.values().map(|v| v.uplink.clone());
        inventory::uplink_functions(fs, nl, self.config.selectors(), held)
    }

    fn macs(&self) -> BTreeSet<String> {
        self.config
            .vports
            .iter()
            .map(|v| v.mac.to_string())
            .collect()
    }

    /// When the config sets PF queues or asks for queues or a placement, or when some vPort
    /// that may be offloaded does not get a VF: without facts the planner trusts the
    /// hwprofile, so a plan that puts every such vPort on a VF is the same with them (the
    /// common no-op apply goes without).
    fn wants_queue_facts(&self, inv: &Inventory) -> bool {
        let cfg = self.config;
        let asks = cfg
            .uplinks
            .iter()
            .any(|u| u.channels.is_some() || u.rss.is_some())
            || cfg
                .vports
                .iter()
                .any(|v| v.queues.is_some() || v.placement.is_some());
        asks || provision::prepare_config(&UserFiles, cfg.clone(), inv, self.profiles, self.opts)
            .map(|p| {
                p.plan.placements.iter().any(|pl| {
                    !matches!(pl.path, VportPath::Vf { .. })
                        && cfg
                            .vports
                            .iter()
                            .any(|v| v.name == pl.vport && v.offload != Offload::Never)
                })
            })
            .unwrap_or(true)
    }
}
