//! Stages 3 to 5 of an uplink: the VF count (and whom changing it disrupts), the VFs
//! released by vPorts that no longer hold them, then driver binding and VF settings (the
//! software switch's VF first, then each vPort's).

use std::collections::{BTreeMap, BTreeSet};

use super::abilities::{clean_vf_config, desired_vf_config, vf_matches};
use super::action::Action;
use super::types::{Disruption, Placement, SWITCH_VF_HOLDER};
use super::uplink::UplinkPlan;
use super::vf_choice::Candidates;
use super::{Draft, Inputs};
use crate::model::mac::Mac;
use crate::model::vf::VfConfig;
use crate::provision::state::VportPath;

/// Stage 3: the VF count this uplink needs, through 0 when it changes a non-zero count
/// (a disruption, blocked unless allowed). Returns whether the count changes.
pub(super) fn vf_count(
    inputs: &Inputs,
    up: &UplinkPlan,
    taken: &BTreeMap<u32, &str>,
    draft: &mut Draft,
) -> bool {
    let (pf, total, current) = (up.pf, up.total_vfs, up.current_vfs);
    let needed = taken
        .keys()
        .next_back()
        .copied()
        .max(up.switch_vf)
        .max(up.reserved.last().copied())
        .map(|i| i + 1)
        .unwrap_or(0);
    let desired = match up.spec.num_vfs {
        Some(n) => n.min(total),
        None if current >= needed => current,
        None => needed,
    };
    if let Some(n) = up.spec.num_vfs
        && n > total
    {
        draft.plan.blockers.push(format!(
            "uplink {pf}: num_vfs = {n} but the PF allows at most {total}"
        ));
    }
    if desired == current {
        return false;
    }
    if current != 0 {
        disruption(inputs, up, taken, desired, draft);
        vfio_blockers(up, draft);
        draft.actions.push(Action::SetNumVfs {
            pf: pf.to_string(),
            pf_ifindex: up.pf_ifindex,
            from: current,
            to: 0,
        });
    }
    if desired != 0 {
        draft.actions.push(Action::SetNumVfs {
            pf: pf.to_string(),
            pf_ifindex: up.pf_ifindex,
            from: 0,
            to: desired,
        });
    }
    true
}

/// Going through 0 removes every VF, and the kernel's removal of a VF whose vfio device a
/// process holds open (a VM, as QEMU holds it) waits until it is closed: the `sriov_numvfs`
/// write would hang. A blocker naming each holder, whatever `--allow-disruption` says.
fn vfio_blockers(up: &UplinkPlan, draft: &mut Draft) {
    let Some(sriov) = up.function.sriov.as_ref() else {
        return;
    };
    for vf in sriov.vfs.iter().filter(|v| !v.vfio_holders.is_empty()) {
        let holders: Vec<String> = vf
            .vfio_holders
            .iter()
            .map(|h| format!("pid {} ({})", h.pid, h.command))
            .collect();
        draft.plan.blockers.push(format!(
            "changing the VF count of {} removes VF {} ({}), which {} {} open through vfio (/dev/vfio/{}); the kernel would wait for it to be closed: stop that process (the VM using the VF) first",
            up.pf,
            vf.index,
            vf.bdf,
            holders.join(", "),
            if holders.len() == 1 { "holds" } else { "hold" },
            vf.iommu_group.map(|g| g.to_string()).unwrap_or_else(|| "?".into()),
        ));
    }
}

/// Whom going from a non-zero VF count to `desired` through 0 tears down: the vPorts
/// holding VFs, and VFs in use that vportd does not manage. A blocker unless allowed.
fn disruption(
    inputs: &Inputs,
    up: &UplinkPlan,
    taken: &BTreeMap<u32, &str>,
    desired: u32,
    draft: &mut Draft,
) {
    let (pf, current, held) = (up.pf, up.current_vfs, &up.held);
    let mut disrupted: BTreeSet<String> = held.values().map(|s| s.to_string()).collect();
    disrupted.extend(
        taken
            .values()
            .filter(|n| held.values().any(|h| h == *n))
            .map(|s| s.to_string()),
    );
    let managed: BTreeSet<u32> = held
        .keys()
        .copied()
        .chain(up.reserved.iter().copied())
        .collect();
    let unmanaged = up
        .function
        .sriov
        .as_ref()
        .map(|s| {
            s.vfs
                .iter()
                .filter(|vf| !managed.contains(&vf.index) && vf.driver.is_some())
                .count() as u32
        })
        .unwrap_or(0);
    let d = Disruption {
        pf: pf.to_string(),
        from: current,
        to: desired,
        vports: disrupted.into_iter().collect(),
        unmanaged_vfs_in_use: unmanaged,
    };
    if !inputs.opts.allow_disruption && (!d.vports.is_empty() || d.unmanaged_vfs_in_use > 0) {
        draft.plan.blockers.push(format!(
            "changing {pf} from {current} to {desired} VFs goes through 0 and tears down the VFs of {}{}; rerun with --allow-disruption to do it",
            if d.vports.is_empty() { "no vPort".to_string() } else { d.vports.join(", ") },
            if d.unmanaged_vfs_in_use > 0 { format!(" and {} VF(s) vportd does not manage", d.unmanaged_vfs_in_use) } else { String::new() }
        ));
    }
    draft.plan.disruptions.push(d);
}

/// Stage 4, releases: VFs held in state by vPorts that no longer hold them are reset, when
/// the VF survives (a resize recreates it clean) and nobody takes it over in this plan
/// (the new holder's settings win).
pub(super) fn release_vfs(
    inputs: &Inputs,
    up: &UplinkPlan,
    taken: &BTreeMap<u32, &str>,
    resized: bool,
    draft: &mut Draft,
) {
    for (index, holder) in &up.held {
        if taken.get(index) == Some(holder) {
            continue;
        }
        if !inputs.wanted.contains(holder) || taken.values().all(|n| n != holder) {
            let survives = !resized && *index < up.current_vfs;
            if survives
                && !taken.contains_key(index)
                && let Some(ifx) = up.pf_ifindex
            {
                draft.resets.push(Action::ResetVf {
                    pf: up.pf.to_string(),
                    pf_ifindex: ifx,
                    released_from: holder.to_string(),
                    config: clean_vf_config(*index, &up.abilities),
                });
            }
        }
    }
}

/// A `BindVf` when the VF is not on `driver` already.
pub(super) fn bind(
    up: &UplinkPlan,
    index: u32,
    driver: Option<&String>,
    resized: bool,
    draft: &mut Draft,
) {
    let existing = up.existing_vf(index, resized);
    if let Some(d) = driver
        && existing.is_none_or(|e| e.driver.as_deref() != Some(d.as_str()))
    {
        draft.actions.push(Action::BindVf {
            pf: up.pf.to_string(),
            vf: index,
            driver: d.clone(),
        });
    }
}

/// Stage 5a, the software switch's VF first (a vPort may take over the MAC it had): the
/// PF's usual VF driver (the switch needs its netdev), no port VLAN, trusted (igb refuses a
/// VF's unicast filters when the PF set its MAC and does not trust it) and without spoof
/// checking (it sends the software vPorts' MACs). Its MAC stays what it is (the VF picks
/// one when none is set) unless a vPort's MAC was left there.
pub(super) fn switch_vf(inputs: &Inputs, up: &UplinkPlan, resized: bool, draft: &mut Draft) {
    let (Some(index), Some(ifx)) = (up.switch_vf, up.pf_ifindex) else {
        return;
    };
    let abilities = &up.abilities;
    bind(up, index, abilities.vf_driver.as_ref(), resized, draft);
    let current_cfg = up
        .existing_vf(index, resized)
        .and_then(|e| e.config.as_ref());
    // An admin MAC a vPort left there (it held this VF, or has that MAC) goes.
    let vport_mac =
        |mac: &Mac| up.held.contains_key(&index) || inputs.cfg.vports.iter().any(|v| v.mac == *mac);
    let want = VfConfig {
        mac: current_cfg
            .map(|c| c.mac)
            .filter(|m| !vport_mac(m))
            .unwrap_or_else(|| VfConfig::clean(index).mac),
        spoofchk: Some(false).filter(|_| abilities.spoofchk),
        trust: Some(true).filter(|_| abilities.trust),
        ..clean_vf_config(index, abilities)
    };
    if current_cfg.is_none_or(|c| !vf_matches(&want, c)) {
        draft.actions.push(Action::ConfigureVf {
            pf: up.pf.to_string(),
            pf_ifindex: ifx,
            vport: SWITCH_VF_HOLDER.to_string(),
            config: want,
        });
    }
}

/// Stage 5b: each vPort's VF bound to the uplink's VF driver and configured as it asks,
/// and its placement.
pub(super) fn vport_vfs(
    inputs: &Inputs,
    up: &UplinkPlan,
    taken: &BTreeMap<u32, &str>,
    candidates: &Candidates,
    resized: bool,
    draft: &mut Draft,
) {
    let pf = up.pf;
    let vf_driver = up.spec.vf_driver.clone().or(up.abilities.vf_driver.clone());
    for (index, name) in taken {
        let v = up
            .vports
            .iter()
            .find(|v| v.name == *name)
            .expect("assigned from vports");
        bind(up, *index, vf_driver.as_ref(), resized, draft);
        let want = desired_vf_config(&candidates.effective[*name], *index, &up.abilities);
        let current_cfg = up
            .existing_vf(*index, resized)
            .and_then(|e| e.config.as_ref());
        if current_cfg.is_none_or(|c| !vf_matches(&want, c)) {
            draft.actions.push(Action::ConfigureVf {
                pf: pf.to_string(),
                pf_ifindex: up.pf_ifindex.expect("VF candidates have a PF netdev"),
                vport: v.name.clone(),
                config: want.clone(),
            });
        }
        let kept = inputs
            .state
            .vports
            .get(*name)
            .is_some_and(|s| s.uplink == pf && s.path == VportPath::Vf { index: *index });
        let reason = if kept {
            format!("keeps VF {index} of {pf}")
        } else {
            format!("free VF {index} of {pf}")
        };
        draft.plan.placements.push(Placement {
            vport: v.name.clone(),
            uplink: pf.to_string(),
            path: VportPath::Vf { index: *index },
            reason,
            vf_config: Some(want),
        });
    }
}
