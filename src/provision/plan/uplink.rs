//! One uplink as every stage of its planning sees it: its config, its PF as the inventory
//! reports it, what the PF's driver can do, and the vPorts on it.

use std::collections::{BTreeMap, BTreeSet};

use super::abilities::{VfAbilities, abilities};
use super::{Draft, Inputs, PciFunction, PlanError, Role, VfEntry};
use crate::provision::config::{ResolvedUplink, Uplink, VportSpec};

pub(super) struct UplinkPlan<'a> {
    pub(super) spec: &'a Uplink,
    pub(super) function: &'a PciFunction,
    /// The PF's PCI address.
    pub(super) pf: &'a str,
    pub(super) pf_ifindex: Option<u32>,
    /// The PF's driver, as plans name it.
    pub(super) driver: String,
    pub(super) abilities: VfAbilities,
    /// The vPorts on this uplink, by name.
    pub(super) vports: Vec<&'a VportSpec>,
    /// `sriov_totalvfs` and `sriov_numvfs` now (0 without SR-IOV).
    pub(super) total_vfs: u32,
    pub(super) current_vfs: u32,
    /// The highest VF count this uplink may have.
    pub(super) cap: u32,
    /// The VF the software switch trunks through (`switch_vf`), on a PF with SR-IOV.
    pub(super) switch_vf: Option<u32>,
    /// VFs the state says vPorts hold on this PF, by index.
    pub(super) held: BTreeMap<u32, &'a str>,
    /// VFs the uplink's `[[pool]]`s hold ([`super::pools`]): no vPort is given one.
    pub(super) reserved: BTreeSet<u32>,
}

impl<'a> UplinkPlan<'a> {
    /// Finds the PF of `resolved`; warns when no profile says what its driver can do.
    pub(super) fn new(
        inputs: &Inputs<'a>,
        resolved: &ResolvedUplink,
        draft: &mut Draft,
    ) -> Result<UplinkPlan<'a>, PlanError> {
        let spec = &inputs.cfg.uplinks[resolved.index];
        let function = inputs
            .inv
            .pci_functions
            .iter()
            .find(|f| f.bdf == resolved.bdf)
            .ok_or_else(|| PlanError::UplinkGone {
                bdf: resolved.bdf.clone(),
            })?;
        let pf = function.bdf.as_str();
        let abilities = abilities(inputs.profiles, function);
        if !abilities.known && function.role == Role::Pf {
            draft.plan.warnings.push(format!(
                "no hardware profile matches {pf} ({}:{}); assuming every VF control works and letting the kernel decide",
                function.vendor_id, function.device_id
            ));
        }
        let mut vports: Vec<&VportSpec> = inputs
            .cfg
            .vports
            .iter()
            .filter(|v| {
                inputs
                    .cfg
                    .uplink_of(v)
                    .is_some_and(|u| std::ptr::eq(u, spec))
            })
            .collect();
        vports.sort_by(|a, b| a.name.cmp(&b.name));
        let (total_vfs, current_vfs) = match &function.sriov {
            Some(s) => (s.total_vfs, s.num_vfs),
            None => (0, 0),
        };
        Ok(UplinkPlan {
            spec,
            function,
            pf,
            pf_ifindex: resolved.ifindex,
            driver: function
                .driver
                .clone()
                .unwrap_or_else(|| "the PF driver".into()),
            abilities,
            vports,
            total_vfs,
            current_vfs,
            cap: spec.num_vfs.unwrap_or(total_vfs).min(total_vfs),
            switch_vf: spec.switch_vf.filter(|_| function.sriov.is_some()),
            held: inputs.state.vfs_on(pf),
            reserved: BTreeSet::new(),
        })
    }

    /// The VF at `index` as the inventory saw it, unless a resize recreates it.
    pub(super) fn existing_vf(&self, index: u32, resized: bool) -> Option<&'a VfEntry> {
        self.function
            .sriov
            .as_ref()
            .and_then(|s| s.vfs.iter().find(|vf| vf.index == index))
            .filter(|_| !resized)
    }
}
