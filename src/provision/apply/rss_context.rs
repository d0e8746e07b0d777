//! `CreateRssContext`, `DeleteRssContext`: a vPort's own RSS context, spreading its
//! traffic over its queues. The driver picks the id, so a context is found again by its
//! table when its id was never journaled.

use super::journal::Undo;
use super::{StepContext, StepError, UndoContext, not_mine, programmed, queue_ops};
use crate::provision::ops::{CONTEXT_SEARCH_LIMIT, QueueOps, SriovOps};
use crate::provision::plan::Action;
use crate::provision::state::QueueMode;

pub(super) fn describe(a: &Action) -> String {
    match a {
        Action::CreateRssContext {
            pf,
            vport,
            first,
            count,
            ..
        } => format!(
            "create an RSS context on {pf} over queues {first}-{} for {vport}",
            first + count - 1
        ),
        Action::DeleteRssContext {
            pf, vport, context, ..
        } => format!(
            "delete RSS context {} on {pf} (was {vport}'s)",
            context.map(|c| c.to_string()).unwrap_or_else(|| "?".into())
        ),
        _ => not_mine("rss_context"),
    }
}

/// The id of the RSS context on `ifx` whose table is `table`: `id` when it still has
/// that table, else the first such context (ids are small; see CONTEXT_SEARCH_LIMIT).
fn find_context(
    q: &mut dyn QueueOps,
    ifx: u32,
    id: Option<u32>,
    table: &[u32],
) -> Result<Option<u32>, StepError> {
    if let Some(id) = id
        && q.rss_context(ifx, id)?.as_deref() == Some(table)
    {
        return Ok(Some(id));
    }
    for c in 1..=CONTEXT_SEARCH_LIMIT {
        if q.rss_context(ifx, c)?.as_deref() == Some(table) {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

pub(super) fn prepare(ops: &mut dyn SriovOps, a: &Action) -> Result<Undo, StepError> {
    Ok(match a {
        Action::CreateRssContext {
            pf_ifindex, table, ..
        } => Undo::RssContext {
            pf_ifindex: *pf_ifindex,
            id: None,
            table: table.clone(),
        },
        Action::DeleteRssContext {
            pf_ifindex,
            context,
            table,
            ..
        } => match find_context(queue_ops(ops)?, *pf_ifindex, *context, table)? {
            Some(id) => Undo::RecreateContext {
                pf_ifindex: *pf_ifindex,
                id,
                table: table.clone(),
            },
            None => Undo::Nothing,
        },
        _ => not_mine("rss_context"),
    })
}

pub(super) fn execute(
    ops: &mut dyn SriovOps,
    a: &Action,
    cx: &mut StepContext,
) -> Result<(), StepError> {
    match a {
        Action::CreateRssContext {
            pf,
            pf_ifindex,
            vport,
            table,
            ..
        } => {
            let q = queue_ops(ops)?;
            let id = q.create_rss_context(*pf_ifindex, table)?;
            let st = programmed(cx.run, vport, *pf_ifindex, QueueMode::RssContext, "");
            st.context = Some(id);
            st.table = table.clone();
            let got = q.rss_context(*pf_ifindex, id)?;
            if got.as_ref() != Some(table) {
                return Err(StepError::Verify(format!(
                    "RSS context {id} of {pf} reads back as {got:?} after creating it over {table:?}"
                )));
            }
            Ok(())
        }
        Action::DeleteRssContext {
            pf,
            pf_ifindex,
            context,
            table,
            ..
        } => {
            let q = queue_ops(ops)?;
            if let Some(id) = find_context(q, *pf_ifindex, *context, table)? {
                q.delete_rss_context(*pf_ifindex, id)?;
                if q.rss_context(*pf_ifindex, id)?.is_some() {
                    return Err(StepError::Verify(format!(
                        "RSS context {id} of {pf} still exists after deleting it"
                    )));
                }
            }
            Ok(())
        }
        _ => not_mine("rss_context"),
    }
}

pub(super) fn undo(
    ops: &mut dyn SriovOps,
    u: &Undo,
    cx: &mut UndoContext,
) -> Result<(), StepError> {
    let q = queue_ops(ops)?;
    match u {
        Undo::RssContext {
            pf_ifindex,
            id,
            table,
        } => {
            if let Some(c) = find_context(q, *pf_ifindex, *id, table)? {
                q.delete_rss_context(*pf_ifindex, c)?;
            }
        }
        Undo::RecreateContext {
            pf_ifindex,
            id,
            table,
        } => {
            let now = match find_context(q, *pf_ifindex, Some(*id), table)? {
                Some(c) => c,
                None => q.create_rss_context(*pf_ifindex, table)?,
            };
            cx.remap.insert(*id, now);
        }
        _ => not_mine("rss_context"),
    }
    Ok(())
}
