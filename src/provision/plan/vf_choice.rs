//! Stages 1 and 2 of an uplink: who can have a VF at all, and with which attributes; then
//! which VF each gets. Those who cannot (or ask for queues) try hardware queues
//! ([`super::steering`]), then the software path.

use std::collections::BTreeMap;

use super::abilities::{missing_abilities, without};
use super::types::Placement;
use super::uplink::UplinkPlan;
use super::{Draft, Inputs};
use crate::provision::config::{Offload, PathChoice, VportSpec};
use crate::provision::state::VportPath;

/// The vPorts of one uplink sorted by what they can have.
pub(super) struct Candidates<'a> {
    /// vPorts that can have a VF, in name order.
    pub(super) want_vf: Vec<&'a VportSpec>,
    /// vPorts without a VF, with the reason.
    pub(super) no_vf: Vec<(&'a VportSpec, String)>,
    /// Each VF candidate as it will be configured (optional attributes the NIC lacks left out).
    pub(super) effective: BTreeMap<String, VportSpec>,
}

/// True when the vPort must have a VF or block the plan.
fn requires_vf(v: &VportSpec) -> bool {
    v.offload == Offload::Required || v.placement == Some(PathChoice::Vf)
}

/// Stage 1: sends vPorts that ask for it to the software path, and sorts the rest into
/// VF candidates and vPorts that try queues.
pub(super) fn who_gets_a_vf<'a>(up: &UplinkPlan<'a>, draft: &mut Draft) -> Candidates<'a> {
    let mut candidates = Candidates {
        want_vf: Vec::new(),
        no_vf: Vec::new(),
        effective: BTreeMap::new(),
    };
    for v in &up.vports {
        let software = |reason: &str| Placement {
            vport: v.name.clone(),
            uplink: up.pf.to_string(),
            path: VportPath::Software,
            reason: reason.into(),
            vf_config: None,
        };
        if v.placement == Some(PathChoice::Software) {
            let asks = "placement = \"software\" asks for the software path";
            draft.plan.placements.push(software(asks));
            continue;
        }
        if v.placement == Some(PathChoice::Queues) {
            let asks = "placement = \"queues\" asks for hardware queues".into();
            candidates.no_vf.push((*v, asks));
            continue;
        }
        if v.offload == Offload::Never {
            let asks = "offload = \"never\" asks for the software path";
            draft.plan.placements.push(software(asks));
            continue;
        }
        let (why_not, dropped) = why_no_vf(up, v, draft);
        if why_not.is_empty() {
            candidates
                .effective
                .insert(v.name.clone(), without(v, &dropped));
            candidates.want_vf.push(*v);
        } else if requires_vf(v) {
            draft.plan.blockers.push(format!(
                "vport \"{}\" requires a VF ({}) but {}",
                v.name,
                if v.placement == Some(PathChoice::Vf) {
                    "placement = \"vf\""
                } else {
                    "offload = \"required\""
                },
                why_not.join("; ")
            ));
        } else {
            let reason = format!("no VF: {}", why_not.join("; "));
            candidates.no_vf.push((*v, reason));
        }
    }
    candidates
}

/// Why `v` cannot have a VF on this uplink (empty: it can), and the optional attributes
/// it loses to get one (each with a warning).
fn why_no_vf(
    up: &UplinkPlan,
    v: &VportSpec,
    draft: &mut Draft,
) -> (Vec<String>, Vec<&'static str>) {
    let (pf, driver) = (up.pf, &up.driver);
    let mut why_not = Vec::new();
    let mut dropped = Vec::new();
    if up.function.sriov.is_none() {
        why_not.push(format!("PF {pf} ({driver}) has no SR-IOV"));
    } else if up.pf_ifindex.is_none() {
        why_not.push(format!(
            "PF {pf} has no netdev (is its driver bound?), so its VFs cannot be configured"
        ));
    } else {
        for (key, reason) in missing_abilities(v, &up.abilities, driver) {
            if v.optional.iter().any(|o| o == key) {
                dropped.push(key);
                draft.plan.warnings.push(format!(
                    "vport \"{}\": {key} dropped because {reason} (the config lists it as optional)",
                    v.name
                ));
            } else {
                why_not.push(reason);
            }
        }
    }
    (why_not, dropped)
}

/// Stage 2, stable assignment: keep what state says, then lowest free index by name; the
/// software switch's VF (`switch_vf`) and the pools' VFs go to no vPort. A candidate left without a VF
/// joins `no_vf` (or blocks the plan when it requires one). Returns VF index -> vPort.
pub(super) fn assign_vfs<'a>(
    inputs: &Inputs,
    up: &UplinkPlan<'a>,
    candidates: &mut Candidates<'a>,
    draft: &mut Draft,
) -> BTreeMap<u32, &'a str> {
    let (pf, cap, switch_vf) = (up.pf, up.cap, up.switch_vf);
    let mut taken: BTreeMap<u32, &str> = BTreeMap::new();
    let mut unassigned = Vec::new();
    for v in &candidates.want_vf {
        let kept = inputs.state.vports.get(&v.name).and_then(|s| match s.path {
            VportPath::Vf { index }
                if s.uplink == pf
                    && index < cap
                    && Some(index) != switch_vf
                    && !up.reserved.contains(&index) =>
            {
                Some(index)
            }
            _ => None,
        });
        match kept {
            Some(i) if !taken.contains_key(&i) => {
                taken.insert(i, &v.name);
            }
            _ => unassigned.push(*v),
        }
    }
    for v in unassigned {
        // Indexes held in state by vPorts being removed are free again.
        let free =
            |i: &u32| !taken.contains_key(i) && Some(*i) != switch_vf && !up.reserved.contains(i);
        match (0..cap).find(free) {
            Some(i) => {
                taken.insert(i, &v.name);
            }
            None => {
                let reason = format!("PF {pf} has {cap} VFs, all taken");
                if requires_vf(v) {
                    draft.plan.blockers.push(format!(
                        "vport \"{}\" requires a VF (offload = \"required\") but {reason}",
                        v.name
                    ));
                } else {
                    candidates.no_vf.push((v, format!("no VF: {reason}")));
                }
            }
        }
    }
    taken
}
