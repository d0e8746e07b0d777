//! `SetChannels`, `SetRssTable`, `SetFeature`: the PF's own queues (combined channels, the
//! main RSS indirection table) and the l2-fwd-offload feature VMDq pools need.

use super::journal::Undo;
use super::{StepError, not_mine, queue_ops};
use crate::provision::ops::SriovOps;
use crate::provision::plan::Action;

pub(super) fn describe(a: &Action) -> String {
    match a {
        Action::SetChannels { pf, from, to, .. } => match from {
            Some(f) => format!("set {pf} combined channels {f} -> {to} (queue IRQs re-created)"),
            None => format!("set {pf} combined channels to {to} (queue IRQs re-created)"),
        },
        Action::SetRssTable {
            pf, spread, table, ..
        } if table.is_empty() => {
            format!("reset the RSS table of {pf} to the driver's default ({spread})")
        }
        Action::SetRssTable {
            pf, spread, table, ..
        } => {
            format!(
                "set the RSS table of {pf} ({} entries): {spread}",
                table.len()
            )
        }
        Action::SetFeature {
            pf, feature, on, ..
        } => format!("turn {feature} {} on {pf}", if *on { "on" } else { "off" }),
        _ => not_mine("pf_queues"),
    }
}

pub(super) fn prepare(ops: &mut dyn SriovOps, a: &Action) -> Result<Undo, StepError> {
    Ok(match a {
        Action::SetChannels {
            pf,
            pf_ifindex,
            from,
            ..
        } => {
            let now = queue_ops(ops)?.facts(*pf_ifindex)?.combined;
            if now != *from {
                return Err(StepError::Changed(format!(
                    "{pf} has {} combined channels, not the {} the plan saw; rerun plan",
                    now.map_or("no".into(), |n| n.to_string()),
                    from.map_or("none".into(), |n| n.to_string())
                )));
            }
            match now {
                Some(to) => Undo::Channels {
                    pf_ifindex: *pf_ifindex,
                    to,
                },
                None => Undo::Nothing,
            }
        }
        Action::SetRssTable { pf_ifindex, .. } => {
            match queue_ops(ops)?.facts(*pf_ifindex)?.rss_table {
                Some(table) => Undo::Rss {
                    pf_ifindex: *pf_ifindex,
                    table,
                },
                None => Undo::Nothing,
            }
        }
        Action::SetFeature {
            pf,
            pf_ifindex,
            feature,
            ..
        } => {
            let now = queue_ops(ops)?.facts(*pf_ifindex)?.features.l2_fwd_offload;
            match now {
                Some(f) if feature == "l2-fwd-offload" => Undo::Feature {
                    pf_ifindex: *pf_ifindex,
                    name: feature.clone(),
                    on: f.active,
                },
                _ => {
                    return Err(StepError::Changed(format!(
                        "{pf} does not report {feature}, so vportd cannot restore it; not touching it"
                    )));
                }
            }
        }
        _ => not_mine("pf_queues"),
    })
}

pub(super) fn execute(ops: &mut dyn SriovOps, a: &Action) -> Result<(), StepError> {
    match a {
        Action::SetChannels {
            pf, pf_ifindex, to, ..
        } => {
            let q = queue_ops(ops)?;
            q.set_channels(*pf_ifindex, *to)?;
            let got = q.facts(*pf_ifindex)?.combined;
            if got != Some(*to) {
                return Err(StepError::Verify(format!(
                    "{pf} reports {got:?} combined channels after setting {to}"
                )));
            }
            Ok(())
        }
        Action::SetRssTable {
            pf,
            pf_ifindex,
            table,
            ..
        } => {
            let q = queue_ops(ops)?;
            q.set_rss_table(*pf_ifindex, table)?;
            let got = q.facts(*pf_ifindex)?.rss_table;
            if !table.is_empty() && got.as_ref() != Some(table) {
                return Err(StepError::Verify(format!(
                    "the RSS table of {pf} reads back as {got:?} after setting {table:?}"
                )));
            }
            Ok(())
        }
        Action::SetFeature {
            pf,
            pf_ifindex,
            feature,
            on,
        } => {
            let q = queue_ops(ops)?;
            q.set_feature(*pf_ifindex, feature, *on)?;
            let got = q.facts(*pf_ifindex)?.features.l2_fwd_offload;
            if feature == "l2-fwd-offload" && got.is_none_or(|f| f.active != *on) {
                return Err(StepError::Verify(format!(
                    "{feature} of {pf} reads back as {got:?} after turning it {}",
                    if *on { "on" } else { "off" }
                )));
            }
            Ok(())
        }
        _ => not_mine("pf_queues"),
    }
}

pub(super) fn undo(ops: &mut dyn SriovOps, u: &Undo) -> Result<(), StepError> {
    let q = queue_ops(ops)?;
    match u {
        Undo::Channels { pf_ifindex, to } => {
            if q.facts(*pf_ifindex)?.combined != Some(*to) {
                q.set_channels(*pf_ifindex, *to)?;
            }
        }
        Undo::Rss { pf_ifindex, table } => {
            if q.facts(*pf_ifindex)?.rss_table.as_ref() != Some(table) {
                q.set_rss_table(*pf_ifindex, table)?;
            }
        }
        Undo::Feature {
            pf_ifindex,
            name,
            on,
        } => {
            let now = q.facts(*pf_ifindex)?.features.l2_fwd_offload;
            if name != "l2-fwd-offload" || now.is_none_or(|f| f.active != *on) {
                q.set_feature(*pf_ifindex, name, *on)?;
            }
        }
        _ => not_mine("pf_queues"),
    }
    Ok(())
}
