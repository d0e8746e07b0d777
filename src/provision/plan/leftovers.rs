//! What the plan needs after every uplink was planned: steering on PFs that left the
//! config, the changes only the state file sees, and warnings over the whole plan.

use std::collections::{BTreeMap, BTreeSet};

use super::abilities::abilities;
use super::action::Action;
use super::queues::release_steering;
use super::{Draft, Inputs};
use crate::provision::config::ResolvedUplink;
use crate::provision::state::{QueueMode, Steering, VportPath};

/// Steering on a PF whose uplink left the config: the loop over uplinks never visits that
/// PF, so its rules, contexts and macvlans are released here. When the PF (or its netdev,
/// by ifindex) is gone from the host, what was programmed went with it: the state's entry
/// is dropped, with a note in the plan.
pub(super) fn release_orphaned_steering(
    inputs: &Inputs,
    uplinks: &[ResolvedUplink],
    draft: &mut Draft,
) {
    let state = inputs.state;
    let visited: BTreeSet<&str> = uplinks.iter().map(|u| u.bdf.as_str()).collect();
    let mut orphans: BTreeMap<&str, Vec<(&String, &Steering)>> = BTreeMap::new();
    for (name, st) in &state.steering {
        let Some(pf) = state.vports.get(name).map(|v| v.uplink.as_str()) else {
            continue;
        };
        if !visited.contains(pf) {
            orphans.entry(pf).or_default().push((name, st));
        }
    }
    for (pf, entries) in orphans {
        release_on_pf(inputs, pf, entries, draft);
    }
}

/// Releases the steering `entries` of one PF that left the config, then gives its RSS table
/// back to the driver and turns off the l2-fwd-offload the plan turned on.
fn release_on_pf(inputs: &Inputs, pf: &str, entries: Vec<(&String, &Steering)>, draft: &mut Draft) {
    let on_host = |ifx: u32| {
        inputs
            .inv
            .pci_functions
            .iter()
            .any(|f| f.bdf == pf && f.netdevs.iter().any(|n| n.ifindex == ifx))
    };
    let mut feature_off = None;
    let mut table_back = None;
    for (name, st) in entries {
        if !on_host(st.pf_ifindex) {
            draft.actions.push(Action::Record {
                vport: name.clone(),
                what: format!(
                    "steering on {pf} dropped from the state: its uplink left the config and the PF (ifindex {}) is no longer on this host, so the {} went with it",
                    st.pf_ifindex,
                    match st.mode {
                        QueueMode::RssContext => "RSS context and rule",
                        QueueMode::Ntuple => "ntuple rule",
                        QueueMode::Vmdq => "macvlan station",
                    }
                ),
            });
            continue;
        }
        release_steering(pf, name, st, &mut draft.resets);
        if st.feature_set {
            feature_off = Some(st.pf_ifindex);
        }
        if st.mode != QueueMode::Vmdq {
            table_back = Some(st.pf_ifindex);
        }
    }
    // The PF's own RSS table was narrowed away from these queues (`PfTable`).
    if let Some(ifx) = table_back {
        draft.resets.push(Action::SetRssTable {
            pf: pf.into(),
            pf_ifindex: ifx,
            spread: "the driver's default: its uplink left the config".into(),
            table: Vec::new(),
        });
    }
    if let Some(ifx) = feature_off {
        draft.resets.push(Action::SetFeature {
            pf: pf.into(),
            pf_ifindex: ifx,
            feature: "l2-fwd-offload".into(),
            on: false,
        });
    }
}

/// vPorts on the software path and releases are state-only changes.
pub(super) fn record_state_only_changes(inputs: &Inputs, draft: &mut Draft) {
    let state = inputs.state;
    for placement in &draft.plan.placements {
        let before = state.vports.get(&placement.vport);
        if placement.path == VportPath::Software
            && before.is_none_or(|b| b.path != VportPath::Software || b.reason != placement.reason)
        {
            draft.actions.push(Action::Record {
                vport: placement.vport.clone(),
                what: format!("software path: {}", placement.reason),
            });
        }
    }
    for name in state.vports.keys() {
        if !inputs.wanted.contains(name.as_str()) {
            draft.actions.push(Action::Record {
                vport: name.clone(),
                what: "released: removed from the config".into(),
            });
        }
    }
}

/// A switch trunked through a VF hears a vPort only through a unicast filter its PF holds
/// for that VF; past the VF driver's count the driver programs none of the rest, and says
/// so only in the kernel log.
pub(super) fn warn_unicast_filters(inputs: &Inputs, uplinks: &[ResolvedUplink], draft: &mut Draft) {
    for resolved in uplinks {
        let (Some(vf), Some(function)) = (
            inputs.cfg.uplinks[resolved.index].switch_vf,
            inputs
                .inv
                .pci_functions
                .iter()
                .find(|f| f.bdf == resolved.bdf),
        ) else {
            continue;
        };
        let abilities = abilities(inputs.profiles, function);
        let software = draft
            .plan
            .placements
            .iter()
            .filter(|pl| pl.uplink == resolved.bdf && pl.path == VportPath::Software)
            .count() as u32;
        if let Some(max) = abilities.unicast_filters
            && software > max
        {
            draft.plan.warnings.push(format!(
                "uplink {}: {software} software vPorts trunk through VF {vf}, but {} ({} hwprofile) has its PF filter at most {max} unicast addresses per VF: the vPorts past that are not reachable from the wire",
                resolved.bdf,
                abilities.vf_driver.as_deref().unwrap_or("its VF driver"),
                abilities.family.as_deref().unwrap_or("its"),
            ));
        }
    }
}
