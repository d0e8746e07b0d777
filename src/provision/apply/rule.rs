//! `InsertRule`, `DeleteRule`: an ntuple rule on a vPort's destination MAC (and VLAN),
//! into its RSS context or one queue. A slot holding a rule vportd did not record is
//! someone else's, and is left alone.

use super::journal::Undo;
use super::{StepContext, StepError, UndoContext, mac_bytes, not_mine, programmed, queue_ops};
use crate::model::mac::Mac;
use crate::model::queues::{FlowRule, FlowTarget};
use crate::provision::ops::SriovOps;
use crate::provision::plan::Action;
use crate::provision::state::QueueMode;

pub(super) fn describe(a: &Action) -> String {
    match a {
        Action::InsertRule {
            pf,
            vport,
            mac,
            vlan,
            location,
            queue,
            ..
        } => format!(
            "insert ntuple rule {location} on {pf}: dst {mac}{} -> {} ({vport})",
            vlan.map(|v| format!(" vlan {v}")).unwrap_or_default(),
            match queue {
                Some(q) => format!("queue {q}"),
                None => "its RSS context".into(),
            }
        ),
        Action::DeleteRule {
            pf,
            vport,
            location,
            ..
        } => format!("delete ntuple rule {location} on {pf} (was {vport}'s)"),
        _ => not_mine("rule"),
    }
}

pub(super) fn prepare(ops: &mut dyn SriovOps, a: &Action) -> Result<Undo, StepError> {
    Ok(match a {
        Action::InsertRule {
            pf,
            pf_ifindex,
            mac,
            vlan,
            location,
            ..
        } => {
            if let Some(r) = queue_ops(ops)?.rule(*pf_ifindex, *location)? {
                return Err(StepError::Changed(format!(
                    "ntuple slot {location} of {pf} holds a rule vportd did not record (dst {}); delete it or free the slot",
                    Mac(r.dst_mac)
                )));
            }
            Undo::Rule {
                pf_ifindex: *pf_ifindex,
                location: *location,
                mac: mac_bytes(mac)?,
                vlan: *vlan,
            }
        }
        Action::DeleteRule {
            pf_ifindex,
            location,
            ..
        } => match queue_ops(ops)?.rule(*pf_ifindex, *location)? {
            Some(rule) => Undo::ReinsertRule {
                pf_ifindex: *pf_ifindex,
                rule,
            },
            None => Undo::Nothing,
        },
        _ => not_mine("rule"),
    })
}

pub(super) fn execute(
    ops: &mut dyn SriovOps,
    a: &Action,
    cx: &mut StepContext,
) -> Result<(), StepError> {
    match a {
        Action::InsertRule { .. } => insert(ops, a, cx),
        Action::DeleteRule {
            pf,
            pf_ifindex,
            location,
            ..
        } => {
            let q = queue_ops(ops)?;
            if q.rule(*pf_ifindex, *location)?.is_some() {
                q.delete_rule(*pf_ifindex, *location)?;
            }
            if let Some(r) = q.rule(*pf_ifindex, *location)? {
                return Err(StepError::Verify(format!(
                    "ntuple slot {location} of {pf} still holds {r:?} after deleting it"
                )));
            }
            Ok(())
        }
        _ => not_mine("rule"),
    }
}

/// Inserts the rule, into the vPort's RSS context (made earlier in this run, or kept
/// from the last) or one queue, and records it for the state file.
fn insert(ops: &mut dyn SriovOps, a: &Action, cx: &mut StepContext) -> Result<(), StepError> {
    let Action::InsertRule {
        pf,
        pf_ifindex,
        vport,
        mac,
        vlan,
        location,
        queue,
    } = a
    else {
        not_mine("rule")
    };
    let target = match queue {
        Some(q) => FlowTarget::Queue {
            index: u64::from(*q),
        },
        None => {
            let id = cx
                .run
                .get(vport)
                .and_then(|s| s.context)
                .or_else(|| cx.state.steering.get(vport).and_then(|s| s.context))
                .ok_or_else(|| {
                    StepError::Changed(format!(
                        "{vport} has no RSS context on {pf} for its rule to steer into"
                    ))
                })?;
            FlowTarget::Context { id }
        }
    };
    let rule = FlowRule {
        dst_mac: mac_bytes(mac)?,
        vlan: *vlan,
        location: *location,
        target,
    };
    let mode = if queue.is_some() {
        QueueMode::Ntuple
    } else {
        QueueMode::RssContext
    };
    let st = programmed(cx.run, vport, *pf_ifindex, mode, mac);
    st.mac = mac.clone();
    st.vlan = *vlan;
    st.location = Some(*location);
    let q = queue_ops(ops)?;
    q.insert_rule(*pf_ifindex, &rule)?;
    let got = q.rule(*pf_ifindex, *location)?;
    if got != Some(rule) {
        return Err(StepError::Verify(format!(
            "ntuple rule {location} of {pf} reads back as {got:?} after inserting {rule:?}"
        )));
    }
    Ok(())
}

pub(super) fn undo(
    ops: &mut dyn SriovOps,
    u: &Undo,
    cx: &mut UndoContext,
) -> Result<(), StepError> {
    let q = queue_ops(ops)?;
    match u {
        Undo::Rule {
            pf_ifindex,
            location,
            mac,
            vlan,
        } => {
            if q.rule(*pf_ifindex, *location)?
                .is_some_and(|r| r.dst_mac == *mac && r.vlan == *vlan)
            {
                q.delete_rule(*pf_ifindex, *location)?;
            }
        }
        Undo::ReinsertRule { pf_ifindex, rule } => {
            let mut rule = *rule;
            if let FlowTarget::Context { id } = rule.target
                && let Some(new) = cx.remap.get(&id)
            {
                rule.target = FlowTarget::Context { id: *new };
            }
            if q.rule(*pf_ifindex, rule.location)?.is_none() {
                q.insert_rule(*pf_ifindex, &rule)?;
            }
        }
        _ => not_mine("rule"),
    }
    Ok(())
}
