//! The planner: a pure function from (inventory, profiles, config, state) to a
//! placement for every vPort, with its reason, and the ordered actions that get the
//! host there. No I/O and no clock, so every case is tested without root.
//!
//! Rules that come from users' complaints (../shared/facts/USERS.md):
//! - a vPort keeps its VF across runs and config reorderings (state decides first,
//!   then new vPorts take the lowest free index in name order);
//! - a VF count change that must go through 0 is disruptive: the plan names every
//!   vPort it disrupts, and it is a blocker unless disruption is allowed;
//! - an attribute the NIC lacks is known before anything is written: `required`
//!   blocks the plan, `preferred` sends the vPort to the software path.
//!
//! The stages, in the order [`plan`] runs them for each uplink:
//! - [`uplink`], the PF as the inventory sees it and what its driver can do ([`abilities`]);
//! - [`pf_link`], the PF brought up when it is administratively down (`bring_up`);
//! - [`pools`], the VFs each `[[pool]]` of the uplink holds (kept from the state);
//! - [`vf_choice`], who can have a VF at all, then which VF (stable assignment);
//! - [`vf_steps`], the VF count (and the disruption it causes), released VFs, driver
//!   binding and VF settings;
//! - [`steering`], the PF's channels, the vPorts without a VF on queues of their own
//!   ([`queues`] picks them), the PF's own RSS table ([`pf_queues`]);
//! - [`switchdev`], a PF whose eswitch is in switchdev mode: its legacy VF steps blocked;
//! - [`switched`], the vPorts on a `[[switch]]`: the software path, no NIC;
//! - then, over every uplink, [`leftovers`]: steering on PFs that left the config,
//!   state-only changes, and warnings that need the whole plan.
//!
//! The actions themselves are in [`action`]; the plan's types in [`types`].

mod abilities;
mod action;
mod leftovers;
mod pf_link;
mod pf_queues;
mod pools;
mod queues;
mod steering;
mod switchdev;
mod switched;
mod types;
mod uplink;
mod vf_choice;
mod vf_steps;

use std::collections::BTreeSet;

// What discovery found and what the hardware profiles say, as plain model data.
use crate::model::inventory::{Inventory, PciFunction, Role, VfEntry};
use crate::model::profile::{self, ProfileSet};
use crate::provision::config::{Config, ResolvedUplink};
use crate::provision::state::State;

pub use abilities::vf_matches;
pub use action::Action;
pub use queues::macvlan_name;
pub use types::{Disruption, Placement, Plan, PlanError, PlanOptions, SWITCH_VF_HOLDER};

/// What every stage reads: the planner's inputs, unchanged while it runs.
struct Inputs<'a> {
    inv: &'a Inventory,
    profiles: &'a ProfileSet,
    cfg: &'a Config,
    state: &'a State,
    opts: PlanOptions,
    /// The vPorts the config names.
    wanted: BTreeSet<&'a str>,
}

/// The plan as the stages build it: removals (`resets`) run before everything else
/// (`actions`), so a VF or a queue is free before another vPort takes it.
struct Draft {
    plan: Plan,
    resets: Vec<action::Action>,
    actions: Vec<action::Action>,
}

/// Plans the host for `cfg`.
pub fn plan(
    inv: &Inventory,
    profiles: &ProfileSet,
    cfg: &Config,
    uplinks: &[ResolvedUplink],
    state: &State,
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
    let inputs = Inputs {
        inv,
        profiles,
        cfg,
        state,
        opts,
        wanted: cfg.vports.iter().map(|v| v.name.as_str()).collect(),
    };
    let mut draft = Draft {
        plan: Plan {
            placements: Vec::new(),
            actions: Vec::new(),
            disruptions: Vec::new(),
            warnings: Vec::new(),
            blockers: Vec::new(),
            pools: Vec::new(),
        },
        resets: Vec::new(),
        actions: Vec::new(),
    };
    for resolved in uplinks {
        let mut up = uplink::UplinkPlan::new(&inputs, resolved, &mut draft)?;
        pf_link::bring_up(&up, &mut draft);
        pools::reserve(&inputs, &mut up, &mut draft);
        let mut candidates = vf_choice::who_gets_a_vf(&up, &mut draft);
        let taken = vf_choice::assign_vfs(&inputs, &up, &mut candidates, &mut draft);
        let resized = vf_steps::vf_count(&inputs, &up, &taken, &mut draft);
        pools::resize_blockers(&inputs, &up, resized, &mut draft);
        vf_steps::release_vfs(&inputs, &up, &taken, resized, &mut draft);
        vf_steps::switch_vf(&inputs, &up, resized, &mut draft);
        pools::steps(&inputs, &up, resized, &mut draft);
        vf_steps::vport_vfs(&inputs, &up, &taken, &candidates, resized, &mut draft);
        steering::queues_and_steering(&inputs, &up, candidates.no_vf, &mut draft);
        switchdev::legacy_vf_steps(&up, &mut draft);
    }
    switched::place_switch_members(&inputs, &mut draft);
    pools::removed(&inputs, uplinks, &mut draft);
    leftovers::release_orphaned_steering(&inputs, uplinks, &mut draft);
    leftovers::record_state_only_changes(&inputs, &mut draft);
    leftovers::warn_unicast_filters(&inputs, uplinks, &mut draft);

    let Draft {
        mut plan,
        resets,
        actions,
    } = draft;
    plan.placements.sort_by(|a, b| a.vport.cmp(&b.vport));
    plan.actions = resets;
    plan.actions.extend(actions);
    Ok(plan)
}
