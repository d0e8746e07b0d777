//! `SetNumVfs`: the PF's VF count. Going through 0 destroys the VFs, so the undo record
//! keeps each VF's driver and settings to give them back.

use std::time::{Duration, Instant};

use super::journal::Undo;
use super::vf_config::converge_vf;
use super::{ApplyOptions, StepError, not_mine, wait_for_carrier};
use crate::provision::ops::SriovOps;
use crate::provision::plan::Action;

pub(super) fn describe(a: &Action) -> String {
    let Action::SetNumVfs { pf, from, to, .. } = a else {
        not_mine("vf_count")
    };
    format!("set {pf} sriov_numvfs {from} -> {to}")
}

pub(super) fn prepare(ops: &mut dyn SriovOps, a: &Action) -> Result<Undo, StepError> {
    let Action::SetNumVfs {
        pf,
        pf_ifindex,
        from,
        ..
    } = a
    else {
        not_mine("vf_count")
    };
    let now = ops.num_vfs(pf)?;
    if now != *from {
        return Err(StepError::Changed(format!(
            "{pf} has {now} VFs, not the {from} the plan saw; rerun plan"
        )));
    }
    // Tearing VFs down loses their drivers and settings: remember them.
    let mut vfs = Vec::new();
    for index in 0..now {
        let driver = match ops.vf_bdf(pf, index)? {
            Some(bdf) => ops.driver(&bdf)?,
            None => None,
        };
        let config = match pf_ifindex {
            Some(ifx) => ops.vf_config(*ifx, index)?,
            None => None,
        };
        vfs.push((driver, config));
    }
    Ok(Undo::NumVfs {
        pf: pf.clone(),
        to: *from,
        pf_ifindex: *pf_ifindex,
        vfs,
    })
}

pub(super) fn execute(
    ops: &mut dyn SriovOps,
    a: &Action,
    opts: &ApplyOptions,
) -> Result<(), StepError> {
    let Action::SetNumVfs { pf, to, .. } = a else {
        not_mine("vf_count")
    };
    let carrier = ops.pf_carrier(pf)?;
    let got = ops.set_num_vfs(pf, *to)?;
    if got != *to {
        return Err(StepError::Verify(format!(
            "{pf} enabled {got} VFs when asked for {to}"
        )));
    }
    // Enabling VFs resets the PF on many drivers; VF settings made before its
    // link returns can be refused (igb: rates, EINVAL). Bounded: a PF whose
    // link does not come back is not an error here.
    if carrier && *to > 0 {
        wait_for_carrier(ops, pf, opts.link_wait)?;
    }
    Ok(())
}

pub(super) fn undo(ops: &mut dyn SriovOps, u: &Undo, link_wait: Duration) -> Result<(), StepError> {
    let Undo::NumVfs {
        pf,
        to,
        pf_ifindex,
        vfs,
    } = u
    else {
        not_mine("vf_count")
    };
    let now = ops.num_vfs(pf)?;
    if now != *to {
        let carrier = ops.pf_carrier(pf)?;
        if now != 0 {
            ops.set_num_vfs(pf, 0)?;
        }
        if *to != 0 {
            ops.set_num_vfs(pf, *to)?;
            // As in the step itself: the PF resets, and igb refuses the VF rates
            // restored below (EINVAL) until its link is back.
            if carrier {
                wait_for_carrier(ops, pf, link_wait)?;
            }
        }
    }
    for (index, (driver, config)) in vfs.iter().enumerate() {
        if let Some(bdf) = ops.vf_bdf(pf, index as u32)?
            && ops.driver(&bdf)? != *driver
        {
            ops.bind(&bdf, driver.as_deref())?;
        }
        if let (Some(ifx), Some(c)) = (pf_ifindex, config) {
            // igb answers EINVAL to a rate while the PF resets after VFs are enabled,
            // even once its carrier reads up (seen in the guest): retried, bounded.
            let start = Instant::now();
            loop {
                match converge_vf(ops, *ifx, c) {
                    Err(StepError::Host(e))
                        if e.errno() == Some(nix::errno::Errno::EINVAL)
                            && start.elapsed() < link_wait =>
                    {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    other => break other?,
                }
            }
        }
    }
    Ok(())
}
