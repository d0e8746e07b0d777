//! `BindVf`: the driver a VF is bound to (netdev for containers, vfio-pci for VMs).

use super::journal::Undo;
use super::{StepError, not_mine};
use crate::provision::ops::SriovOps;
use crate::provision::plan::Action;

pub(super) fn describe(a: &Action) -> String {
    let Action::BindVf { pf, vf, driver } = a else {
        not_mine("vf_driver")
    };
    format!("bind VF {vf} of {pf} to {driver}")
}

/// The VF's PCI address; a VF that is gone is not as the plan saw it.
fn vf_bdf(ops: &mut dyn SriovOps, pf: &str, vf: u32) -> Result<String, StepError> {
    ops.vf_bdf(pf, vf)?
        .ok_or_else(|| StepError::Changed(format!("VF {vf} of {pf} does not exist")))
}

pub(super) fn prepare(ops: &mut dyn SriovOps, a: &Action) -> Result<Undo, StepError> {
    let Action::BindVf { pf, vf, .. } = a else {
        not_mine("vf_driver")
    };
    let bdf = vf_bdf(ops, pf, *vf)?;
    Ok(Undo::Bind {
        driver: ops.driver(&bdf)?,
        bdf,
    })
}

pub(super) fn execute(ops: &mut dyn SriovOps, a: &Action) -> Result<(), StepError> {
    let Action::BindVf { pf, vf, driver } = a else {
        not_mine("vf_driver")
    };
    let bdf = vf_bdf(ops, pf, *vf)?;
    ops.bind(&bdf, Some(driver))?;
    let got = ops.driver(&bdf)?;
    if got.as_deref() != Some(driver.as_str()) {
        return Err(StepError::Verify(format!(
            "{bdf} is bound to {} after binding it to {driver}",
            got.as_deref().unwrap_or("no driver")
        )));
    }
    Ok(())
}

pub(super) fn undo(ops: &mut dyn SriovOps, u: &Undo) -> Result<(), StepError> {
    let Undo::Bind { bdf, driver } = u else {
        not_mine("vf_driver")
    };
    if ops.driver(bdf)? != *driver {
        ops.bind(bdf, driver.as_deref())?;
    }
    Ok(())
}
