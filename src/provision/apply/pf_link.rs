//! `SetPfLink`: the PF's netdev brought administratively up (or, undone, down again).

use super::journal::Undo;
use super::{StepError, not_mine};
use crate::provision::ops::SriovOps;
use crate::provision::plan::Action;

pub(super) fn describe(a: &Action) -> String {
    let Action::SetPfLink { pf, pf_ifindex, up } = a else {
        not_mine("pf_link")
    };
    let state = if *up { "up" } else { "down" };
    format!("bring the PF {pf} (link {pf_ifindex}) {state}")
}

pub(super) fn prepare(ops: &mut dyn SriovOps, a: &Action) -> Result<Undo, StepError> {
    let Action::SetPfLink { pf_ifindex, .. } = a else {
        not_mine("pf_link")
    };
    Ok(Undo::PfLink {
        pf_ifindex: *pf_ifindex,
        up: ops.pf_admin_up(*pf_ifindex)?,
    })
}

pub(super) fn execute(ops: &mut dyn SriovOps, a: &Action) -> Result<(), StepError> {
    let Action::SetPfLink { pf, pf_ifindex, up } = a else {
        not_mine("pf_link")
    };
    ops.set_pf_admin_up(*pf_ifindex, *up)?;
    if ops.pf_admin_up(*pf_ifindex)? != *up {
        return Err(StepError::Verify(format!(
            "the PF {pf} (link {pf_ifindex}) reads back {} after setting it {}",
            if *up { "down" } else { "up" },
            if *up { "up" } else { "down" },
        )));
    }
    Ok(())
}

pub(super) fn undo(ops: &mut dyn SriovOps, u: &Undo) -> Result<(), StepError> {
    let Undo::PfLink { pf_ifindex, up } = u else {
        not_mine("pf_link")
    };
    if ops.pf_admin_up(*pf_ifindex)? != *up {
        ops.set_pf_admin_up(*pf_ifindex, *up)?;
    }
    Ok(())
}
