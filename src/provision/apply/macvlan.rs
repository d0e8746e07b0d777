//! `CreateMacvlan`, `DeleteMacvlan`: a macvlan station on the PF, which a driver with
//! l2-fwd-offload gives a VMDq pool. Found again by MAC on its parent, never by name.

use super::journal::Undo;
use super::{StepContext, StepError, mac_bytes, not_mine, programmed, queue_ops};
use crate::provision::ops::SriovOps;
use crate::provision::plan::{Action, macvlan_name};
use crate::provision::state::QueueMode;

pub(super) fn describe(a: &Action) -> String {
    match a {
        Action::CreateMacvlan {
            pf, vport, name, ..
        } => format!("create macvlan {name} on {pf} for {vport} (a VMDq pool)"),
        Action::DeleteMacvlan { pf, vport, mac, .. } => {
            format!("delete the macvlan with MAC {mac} on {pf} (was {vport}'s)")
        }
        _ => not_mine("macvlan"),
    }
}

pub(super) fn prepare(ops: &mut dyn SriovOps, a: &Action) -> Result<Undo, StepError> {
    match a {
        Action::CreateMacvlan {
            pf,
            pf_ifindex,
            mac,
            ..
        } => {
            let m = mac_bytes(mac)?;
            if let Some(ifx) = queue_ops(ops)?.find_macvlan(*pf_ifindex, m)? {
                return Err(StepError::Changed(format!(
                    "{pf} already has a device with MAC {mac} on it (ifindex {ifx}) that vportd did not record"
                )));
            }
            Ok(Undo::Macvlan {
                parent: *pf_ifindex,
                mac: m,
            })
        }
        Action::DeleteMacvlan {
            pf_ifindex,
            vport,
            mac,
            ..
        } => {
            let m = mac_bytes(mac)?;
            Ok(match queue_ops(ops)?.find_macvlan(*pf_ifindex, m)? {
                Some(_) => Undo::RecreateMacvlan {
                    parent: *pf_ifindex,
                    name: macvlan_name(vport),
                    mac: m,
                },
                None => Undo::Nothing,
            })
        }
        _ => not_mine("macvlan"),
    }
}

pub(super) fn execute(
    ops: &mut dyn SriovOps,
    a: &Action,
    cx: &mut StepContext,
) -> Result<(), StepError> {
    match a {
        Action::CreateMacvlan {
            pf,
            pf_ifindex,
            vport,
            name,
            mac,
            feature_set,
        } => {
            let m = mac_bytes(mac)?;
            let q = queue_ops(ops)?;
            let ifx = q.create_macvlan(*pf_ifindex, name, m)?;
            let st = programmed(cx.run, vport, *pf_ifindex, QueueMode::Vmdq, mac);
            st.macvlan = Some(ifx);
            st.feature_set = *feature_set;
            let got = q.find_macvlan(*pf_ifindex, m)?;
            if got != Some(ifx) {
                return Err(StepError::Verify(format!(
                    "the macvlan for {vport} on {pf} is {got:?}, not ifindex {ifx}, after creating it"
                )));
            }
            Ok(())
        }
        Action::DeleteMacvlan {
            pf,
            pf_ifindex,
            mac,
            ..
        } => {
            let m = mac_bytes(mac)?;
            let q = queue_ops(ops)?;
            if let Some(ifx) = q.find_macvlan(*pf_ifindex, m)? {
                q.delete_link(ifx)?;
            }
            if let Some(ifx) = q.find_macvlan(*pf_ifindex, m)? {
                return Err(StepError::Verify(format!(
                    "the macvlan with MAC {mac} on {pf} (ifindex {ifx}) is still there after deleting it"
                )));
            }
            Ok(())
        }
        _ => not_mine("macvlan"),
    }
}

pub(super) fn undo(ops: &mut dyn SriovOps, u: &Undo) -> Result<(), StepError> {
    let q = queue_ops(ops)?;
    match u {
        Undo::Macvlan { parent, mac } => {
            if let Some(ifx) = q.find_macvlan(*parent, *mac)? {
                q.delete_link(ifx)?;
            }
        }
        Undo::RecreateMacvlan { parent, name, mac } => {
            if q.find_macvlan(*parent, *mac)?.is_none() {
                q.create_macvlan(*parent, name, *mac)?;
            }
        }
        _ => not_mine("macvlan"),
    }
    Ok(())
}
