//! The `[[pool]]`s of an uplink: which VFs each holds. Chosen once and kept in the state
//! (an attachment's VF never changes pool under it), new ones the lowest indexes that
//! neither a vPort (kept in the state), the software switch's VF nor another pool holds;
//! vPorts then choose around them ([`super::vf_choice`]). A pool VF is bound to the pool's
//! driver and left clean in the host namespace when it joins its pool; after that it is the
//! daemon's (its attachment book), and no plan configures it again. Taking a VF that an
//! attachment holds (a pool shrunk or removed, the VF count changed) is a blocker naming
//! the attachments.

use std::collections::BTreeSet;

use super::abilities::{clean_vf_config, vf_matches};
use super::action::Action;
use super::uplink::UplinkPlan;
use super::vf_steps::bind;
use super::{Draft, Inputs};
use crate::model::pool::{Pool, PoolSpec};
use crate::provision::config::ResolvedUplink;

/// Chooses the VFs of every pool on this uplink, records them in `up.reserved` (which no
/// vPort is given) and in the plan.
pub(super) fn reserve(inputs: &Inputs, up: &mut UplinkPlan, draft: &mut Draft) {
    let specs: Vec<&PoolSpec> = inputs
        .cfg
        .pools
        .iter()
        .filter(|p| {
            inputs
                .cfg
                .uplink_of_pool(p)
                .is_some_and(|u| std::ptr::eq(u, up.spec))
        })
        .collect();
    if specs.is_empty() {
        return;
    }
    if up.function.sriov.is_none() || up.pf_ifindex.is_none() {
        let names: Vec<String> = specs.iter().map(|p| format!("{:?}", p.name)).collect();
        draft.plan.blockers.push(format!(
            "pool {}: PF {} ({}) {}, so it has no VFs to pool",
            names.join(", "),
            up.pf,
            up.driver,
            if up.function.sriov.is_none() {
                "has no SR-IOV"
            } else {
                "has no netdev (is its driver bound?)"
            }
        ));
        return;
    }
    // vPorts that keep their VF keep it; the pools choose around them.
    let mut used: BTreeSet<u32> = up
        .held
        .iter()
        .filter(|(_, name)| inputs.wanted.contains(**name))
        .map(|(i, _)| *i)
        .chain(up.switch_vf)
        .collect();
    let mut chosen: Vec<(&PoolSpec, Vec<u32>)> = Vec::new();
    for spec in &specs {
        let kept = kept(inputs, up, spec, &used, draft);
        used.extend(&kept);
        chosen.push((spec, kept));
    }
    for (spec, vfs) in &mut chosen {
        let want = spec.count as usize;
        let mut free = (0..up.cap).filter(|i| !used.contains(i));
        while vfs.len() < want {
            let Some(i) = free.next() else { break };
            vfs.push(i);
        }
        used.extend(vfs.iter().copied());
        vfs.sort_unstable();
        if vfs.len() < want {
            draft.plan.blockers.push(format!(
                "pool {:?} wants {want} VFs of {} but only {} are free of its {} (vPorts and other pools hold the rest); raise num_vfs or lower count",
                spec.name,
                up.pf,
                vfs.len(),
                up.cap
            ));
        }
    }
    for (spec, vfs) in chosen {
        up.reserved.extend(&vfs);
        draft.plan.pools.push(Pool {
            name: spec.name.clone(),
            pf: up.pf.to_string(),
            vfs,
            driver: spec.driver.clone(),
            defaults: spec.defaults,
        });
    }
}

/// The VFs of `spec` the state already has, as far as they still fit; an index it loses
/// while an attachment holds it is a blocker.
fn kept(
    inputs: &Inputs,
    up: &UplinkPlan,
    spec: &PoolSpec,
    used: &BTreeSet<u32>,
    draft: &mut Draft,
) -> Vec<u32> {
    let Some(before) = inputs
        .state
        .pools
        .iter()
        .find(|p| p.name == spec.name && p.pf == up.pf)
    else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    for &i in &before.vfs {
        if i < up.cap && !used.contains(&i) && kept.len() < spec.count as usize {
            kept.push(i);
        } else {
            blocked_by_holder(inputs, &spec.name, up.pf, i, "leaves the pool", draft);
        }
    }
    kept
}

/// A blocker when an attachment holds VF `vf` of `pf`.
fn blocked_by_holder(
    inputs: &Inputs,
    pool: &str,
    pf: &str,
    vf: u32,
    what: &str,
    draft: &mut Draft,
) {
    if let Some(holder) = inputs.state.pool_holders.get(&(pf.to_string(), vf)) {
        draft.plan.blockers.push(format!(
            "pool {pool:?}: VF {vf} of {pf} {what} but {holder} holds it; delete that container (or its network) first"
        ));
    }
}

/// Pools of the state this plan did not visit: kept as they are when the config still has
/// them (their uplink is away: a hot-unplug, and the daemon plans the uplinks present), else
/// gone, with a blocker for each VF an attachment still holds.
pub(super) fn removed(inputs: &Inputs, uplinks: &[ResolvedUplink], draft: &mut Draft) {
    for before in &inputs.state.pools {
        let planned = draft.plan.pools.iter().any(|p| p.name == before.name);
        let visited = uplinks.iter().any(|u| u.bdf == before.pf);
        if !planned && !visited && inputs.cfg.pools.iter().any(|p| p.name == before.name) {
            draft.plan.pools.push(before.clone());
            continue;
        }
        let kept = draft
            .plan
            .pools
            .iter()
            .any(|p| p.name == before.name && p.pf == before.pf);
        if !kept {
            for &vf in &before.vfs {
                let what = "leaves its removed pool";
                blocked_by_holder(inputs, &before.name, &before.pf, vf, what, draft);
            }
        }
    }
}

/// A VF count change (through 0) destroys every VF: a blocker for each attachment holding
/// one of this PF's pool VFs, whatever `--allow-disruption` says (a container's NIC would
/// vanish under it).
pub(super) fn resize_blockers(inputs: &Inputs, up: &UplinkPlan, resized: bool, draft: &mut Draft) {
    if !resized || up.current_vfs == 0 {
        return;
    }
    for ((pf, vf), holder) in &inputs.state.pool_holders {
        if pf == up.pf {
            draft.plan.blockers.push(format!(
                "changing the VF count of {pf} destroys VF {vf}, which {holder} holds from a pool; delete that container (or its network) first"
            ));
        }
    }
}

/// Each pool VF bound to its pool's driver; one that joins its pool in this plan is made
/// clean (no admin MAC, VLAN or rate) when it is not already.
pub(super) fn steps(inputs: &Inputs, up: &UplinkPlan, resized: bool, draft: &mut Draft) {
    let Some(ifx) = up.pf_ifindex else { return };
    let mine: Vec<Pool> = draft
        .plan
        .pools
        .iter()
        .filter(|p| p.pf == up.pf)
        .cloned()
        .collect();
    for pool in mine {
        let driver = pool.driver.clone().or(up.abilities.vf_driver.clone());
        let before = inputs
            .state
            .pools
            .iter()
            .find(|p| p.name == pool.name && p.pf == pool.pf);
        for &i in &pool.vfs {
            bind(up, i, driver.as_ref(), resized, draft);
            if before.is_some_and(|b| b.vfs.contains(&i)) {
                continue;
            }
            let want = clean_vf_config(i, &up.abilities);
            let current = up.existing_vf(i, resized).and_then(|e| e.config.as_ref());
            if current.is_none_or(|c| !vf_matches(&want, c)) {
                draft.actions.push(Action::ConfigureVf {
                    pf: up.pf.to_string(),
                    pf_ifindex: ifx,
                    vport: format!("pool {}", pool.name),
                    config: want,
                });
            }
        }
    }
}
