//! Stage 6 of an uplink: the PF's queues (channels, RSS table), then the vPorts without a
//! VF: steering programmed earlier is kept when it still fits, else removed; the rest get
//! queues of their own where the NIC has them, else the software path.

use std::collections::{BTreeMap, BTreeSet};

use super::action::Action;
use super::pf_queues::{PfTable, pf_channel_actions};
use super::queues::{Alloc, choose_queues, macvlan_name, release_steering};
use super::types::Placement;
use super::uplink::UplinkPlan;
use super::{Draft, Inputs};
use crate::model::queues::{QueueFacts, equal_table};
use crate::provision::config::{PathChoice, VportSpec};
use crate::provision::state::{QueueMode, Steering, VportPath};

/// The l2-fwd-offload feature a VMDq pool needs, as the plan changes it.
struct L2Fwd {
    /// A macvlan station is left on the PF after the plan.
    vmdq_left: bool,
    /// The feature is on (now, or from an earlier action of this plan).
    on: bool,
    /// This plan (or an earlier run) turned it on, so it goes off with the last station.
    by_plan: bool,
}

impl L2Fwd {
    /// The feature as the kept steering leaves it.
    fn after_keeping(
        facts: Option<&QueueFacts>,
        programmed: &[(&String, &Steering)],
        kept: &BTreeMap<String, VportPath>,
    ) -> L2Fwd {
        L2Fwd {
            vmdq_left: kept.values().any(|p| {
                matches!(
                    p,
                    VportPath::Queues {
                        mode: QueueMode::Vmdq,
                        ..
                    }
                )
            }),
            on: facts
                .and_then(|q| q.features.l2_fwd_offload)
                .is_some_and(|f| f.active),
            by_plan: programmed
                .iter()
                .any(|(n, st)| kept.contains_key(*n) && st.feature_set),
        }
    }
}

/// Removes the steering programmed earlier that is not kept; returns whether a removed
/// macvlan station was one the plan turned l2-fwd-offload on for.
fn release_unkept(
    pf: &str,
    programmed: &[(&String, &Steering)],
    kept: &BTreeMap<String, VportPath>,
    draft: &mut Draft,
) -> bool {
    let mut feature_off = false;
    for (name, st) in programmed {
        if !kept.contains_key(*name) {
            release_steering(pf, name, st, &mut draft.resets);
            feature_off |= st.mode == QueueMode::Vmdq && st.feature_set;
        }
    }
    feature_off
}

/// The PF's queues and the vPorts of this uplink that have no VF.
pub(super) fn queues_and_steering(
    inputs: &Inputs,
    up: &UplinkPlan,
    mut no_vf: Vec<(&VportSpec, String)>,
    draft: &mut Draft,
) {
    let (state, pf) = (inputs.state, up.pf);
    let netdev = up
        .function
        .netdevs
        .iter()
        .find(|n| Some(n.ifindex) == up.pf_ifindex);
    let facts = netdev.and_then(|n| n.queues.as_ref());
    let steering = super::abilities::profile_steering(inputs.profiles, up.function);
    // Queues that vPorts owned after the last run (their RSS context or ntuple rule): the
    // PF's own table was narrowed away from them, and is the driver's again once none is left.
    let had_owned = state.steering.iter().any(|(name, st)| {
        st.mode != QueueMode::Vmdq && state.vports.get(name).is_some_and(|s| s.uplink == pf)
    });
    let table_of_ours = up.spec.rss.is_some() || had_owned;
    let channels = pf_channel_actions(draft, up.spec, pf, up.pf_ifindex, facts, table_of_ours);
    let mut alloc = Alloc {
        channels: channels.0.unwrap_or(1),
        queues: BTreeSet::new(),
        locations: BTreeSet::new(),
    };
    let programmed: Vec<(&String, &Steering)> = state
        .steering
        .iter()
        .filter(|(name, _)| state.vports.get(*name).is_some_and(|s| s.uplink == pf))
        .collect();
    let kept = keep_steering(inputs, up, &programmed, &no_vf, &mut alloc);
    let feature_off = release_unkept(pf, &programmed, &kept, draft);
    let mut l2fwd = L2Fwd::after_keeping(facts, &programmed, &kept);
    let site = QueueSite {
        up,
        facts,
        ifname: netdev.map(|n| n.name.as_str()).unwrap_or(pf),
        steering: steering.as_ref(),
        table_size: facts
            .and_then(|q| q.rss_table.as_ref().map(|t| t.len() as u32))
            .or(steering.as_ref().and_then(|s| s.pf_rss_table))
            .unwrap_or(128),
    };
    no_vf.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    for (v, why) in no_vf {
        if let Some(path) = kept.get(&v.name) {
            draft.plan.placements.push(Placement {
                vport: v.name.clone(),
                uplink: pf.to_string(),
                path: path.clone(),
                reason: state.vports[&v.name].reason.clone(),
                vf_config: None,
            });
            continue;
        }
        site.place(v, &why, &mut alloc, &mut l2fwd, draft);
    }
    let table = PfTable {
        uplink: up.spec,
        pf,
        pf_ifindex: up.pf_ifindex,
        facts,
        steering: steering.as_ref(),
        channels,
        owned: &alloc.queues,
        had_owned,
    };
    table.actions(draft);
    if feature_off
        && !l2fwd.vmdq_left
        && let Some(ifx) = up.pf_ifindex
    {
        draft.resets.push(Action::SetFeature {
            pf: pf.into(),
            pf_ifindex: ifx,
            feature: "l2-fwd-offload".into(),
            on: false,
        });
    }
}

/// Steering programmed earlier on this PF, kept when the vPort still wants the same (same
/// MAC and VLAN, queues still inside the channels); its queues and slot are taken in
/// `alloc`. Returns the kept vPorts' paths by name.
fn keep_steering(
    inputs: &Inputs,
    up: &UplinkPlan,
    programmed: &[(&String, &Steering)],
    no_vf: &[(&VportSpec, String)],
    alloc: &mut Alloc,
) -> BTreeMap<String, VportPath> {
    let mut kept = BTreeMap::new();
    for (name, st) in programmed {
        let Some(v) = no_vf.iter().map(|(v, _)| *v).find(|v| &v.name == *name) else {
            continue;
        };
        let Some(path) = inputs.state.vports.get(*name).map(|s| s.path.clone()) else {
            continue;
        };
        let same = !st.drifted
            && st.mac.eq_ignore_ascii_case(&v.mac.to_string())
            && st.vlan == v.vlan
            && Some(st.pf_ifindex) == up.pf_ifindex;
        let fits = match &path {
            VportPath::Queues {
                mode: QueueMode::RssContext,
                first,
                count,
                ..
            } => *count == v.queues.unwrap_or(1) && first + count <= alloc.channels,
            VportPath::Queues {
                mode: QueueMode::Ntuple,
                first,
                ..
            } => *first < alloc.channels,
            VportPath::Queues { .. } => true,
            _ => false,
        };
        if !(same && fits) {
            continue;
        }
        if let VportPath::Queues {
            mode,
            first,
            count,
            location,
        } = &path
        {
            if *mode != QueueMode::Vmdq {
                alloc.queues.extend(*first..first + count);
            }
            alloc.locations.extend(*location);
        }
        kept.insert(name.to_string(), path);
    }
    kept
}

/// The PF a vPort without a VF may get queues on.
struct QueueSite<'a> {
    up: &'a UplinkPlan<'a>,
    facts: Option<&'a QueueFacts>,
    /// The PF's netdev name, as refusals name it.
    ifname: &'a str,
    steering: Option<&'a super::abilities::SteeringAbilities>,
    /// The size of the tables RSS contexts get.
    table_size: u32,
}

impl QueueSite<'_> {
    /// Places `v` on queues of its own with the actions that program them, else on the
    /// software path (or a blocker, when it asked for queues).
    fn place(
        &self,
        v: &VportSpec,
        why: &str,
        alloc: &mut Alloc,
        l2fwd: &mut L2Fwd,
        draft: &mut Draft,
    ) {
        let pf = self.up.pf;
        let choice = choose_queues(
            v,
            &self.up.driver,
            self.ifname,
            self.facts,
            self.steering,
            alloc,
        );
        let reason = match &choice {
            Ok((_, how)) => format!("{why}; {how}"),
            Err(refusals) => format!("{why}; no queues of its own: {}", refusals.join("; ")),
        };
        let path = match (choice, self.up.pf_ifindex) {
            (Ok((path, _)), Some(ifx)) => {
                self.steering_actions(v, &path, ifx, l2fwd, draft);
                Some(path)
            }
            _ => None,
        };
        let forced = v.placement == Some(PathChoice::Queues);
        match path {
            Some(path) => draft.plan.placements.push(Placement {
                vport: v.name.clone(),
                uplink: pf.to_string(),
                path,
                reason,
                vf_config: None,
            }),
            None if forced => draft
                .plan
                .blockers
                .push(format!("vport \"{}\": {reason}", v.name)),
            None => draft.plan.placements.push(Placement {
                vport: v.name.clone(),
                uplink: pf.to_string(),
                path: VportPath::Software,
                reason,
                vf_config: None,
            }),
        }
    }

    /// The actions that program `path` for `v`: an RSS context and a rule into it, an
    /// ntuple rule into one queue, or a macvlan station (with l2-fwd-offload turned on first).
    fn steering_actions(
        &self,
        v: &VportSpec,
        path: &VportPath,
        ifx: u32,
        l2fwd: &mut L2Fwd,
        draft: &mut Draft,
    ) {
        let pf = self.up.pf;
        let mac = v.mac.to_string();
        let rule = |location: &Option<u32>, queue: Option<u32>| Action::InsertRule {
            pf: pf.into(),
            pf_ifindex: ifx,
            vport: v.name.clone(),
            mac: mac.clone(),
            vlan: v.vlan,
            location: location.unwrap_or(0),
            queue,
        };
        match path {
            VportPath::Queues {
                mode: QueueMode::RssContext,
                first,
                count,
                location,
            } => {
                draft.actions.push(Action::CreateRssContext {
                    pf: pf.into(),
                    pf_ifindex: ifx,
                    vport: v.name.clone(),
                    first: *first,
                    count: *count,
                    table: equal_table(self.table_size, *first, *count),
                });
                draft.actions.push(rule(location, None));
            }
            VportPath::Queues {
                mode: QueueMode::Ntuple,
                first,
                location,
                ..
            } => draft.actions.push(rule(location, Some(*first))),
            _ => {
                if !l2fwd.on {
                    draft.actions.push(Action::SetFeature {
                        pf: pf.into(),
                        pf_ifindex: ifx,
                        feature: "l2-fwd-offload".into(),
                        on: true,
                    });
                    l2fwd.on = true;
                    l2fwd.by_plan = true;
                }
                l2fwd.vmdq_left = true;
                draft.actions.push(Action::CreateMacvlan {
                    pf: pf.into(),
                    pf_ifindex: ifx,
                    vport: v.name.clone(),
                    name: macvlan_name(&v.name),
                    mac: mac.clone(),
                    feature_set: l2fwd.by_plan,
                });
            }
        }
    }
}
