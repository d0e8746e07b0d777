//! The PF's own queues: its channel count, and its RSS table once the vPorts took theirs.

use std::collections::BTreeSet;

use super::Draft;
use super::abilities::SteeringAbilities;
use super::action::Action;
use crate::model::queues::{QueueFacts, equal_table, weighted_table};
use crate::provision::config::{RssSpread, Uplink};

/// Plans the PF's channel count; returns the channel count after the plan and whether it
/// changes. Channels first (drivers such as igb reset the table when the queue count
/// changes), and when lowering them with a table of ours in place, the table back to the
/// default first (the kernel refuses fewer channels than a user-set table uses, EINVAL).
/// The table itself is planned by [`PfTable::actions`], once the vPorts have their queues.
pub(super) fn pf_channel_actions(
    draft: &mut Draft,
    uplink: &Uplink,
    pf: &str,
    pf_ifindex: Option<u32>,
    facts: Option<&QueueFacts>,
    table_of_ours: bool,
) -> (Option<u32>, bool) {
    let current = facts.and_then(|q| q.combined);
    if uplink.channels.is_none() && uplink.rss.is_none() {
        return (current, false);
    }
    let Some(ifx) = pf_ifindex else {
        draft.plan.blockers.push(format!(
            "uplink {pf}: channels and rss need the PF's netdev, and it has none (is its driver bound?)"
        ));
        return (current, false);
    };
    let mut changed = false;
    if let Some(to) = uplink.channels {
        if let Some(max) = facts.and_then(|q| q.combined_max)
            && to > max
        {
            draft.plan.blockers.push(format!(
                "uplink {pf}: channels = {to} but the PF allows at most {max} combined channels now (ethtool -l; igb allows fewer once VFs exist)"
            ));
            return (current, false);
        }
        if current != Some(to) {
            if table_of_ours && current.is_some_and(|c| to < c) {
                draft.actions.push(Action::SetRssTable {
                    pf: pf.into(),
                    pf_ifindex: ifx,
                    spread: "before lowering channels".into(),
                    table: Vec::new(),
                });
            }
            draft.actions.push(Action::SetChannels {
                pf: pf.into(),
                pf_ifindex: ifx,
                from: current,
                to,
            });
            changed = true;
        }
    }
    (uplink.channels.or(current), changed)
}

/// What the PF's own RSS table is planned from, once the vPorts took their queues.
pub(super) struct PfTable<'a> {
    pub(super) uplink: &'a Uplink,
    pub(super) pf: &'a str,
    pub(super) pf_ifindex: Option<u32>,
    pub(super) facts: Option<&'a QueueFacts>,
    pub(super) steering: Option<&'a SteeringAbilities>,
    /// The channel count after the plan, and whether the plan changes it.
    pub(super) channels: (Option<u32>, bool),
    /// Queues vPorts own (by RSS context or ntuple rule).
    pub(super) owned: &'a BTreeSet<u32>,
    /// The state says vPorts owned queues after the last run.
    pub(super) had_owned: bool,
}

/// The queues the PF keeps for its own traffic, and the table spread over them.
struct Spread<'a> {
    own: Vec<u32>,
    owned: &'a BTreeSet<u32>,
    n: u32,
}

impl Spread<'_> {
    fn narrowed(&self) -> bool {
        self.own.len() < self.n as usize
    }

    /// Every bucket over the PF's own queues in turn, with the words a plan shows for it.
    fn over_own(&self, size: u32) -> (Vec<u32>, String) {
        let theirs: Vec<String> = self.owned.iter().map(u32::to_string).collect();
        (
            (0..size as usize)
                .map(|i| self.own[i % self.own.len()])
                .collect(),
            format!(
                "equal over the PF's {} queues (queues {} are vPorts' own)",
                self.own.len(),
                theirs.join(",")
            ),
        )
    }
}

impl PfTable<'_> {
    /// Plans the PF's own RSS table, after the vPorts took their queues: the PF's own
    /// traffic is spread over the queues that no vPort's RSS context or ntuple rule owns, so
    /// that a vPort's queues carry that vPort's traffic alone (by hand: `ethtool -X DEV equal
    /// N` before `ethtool -X DEV context new`). With `rss` in the config the table is that
    /// spread over the PF's queues (weight on a vPort's queue is refused); without it the
    /// table is the driver's, except that it is narrowed while vPorts own queues and given
    /// back to the driver's default when the last of them goes (`had_owned`).
    pub(super) fn actions(&self, draft: &mut Draft) {
        let Some(ifx) = self.pf_ifindex else {
            return;
        };
        let (channels, changed) = self.channels;
        let n = channels.unwrap_or(1);
        let spread = Spread {
            own: (0..n).filter(|q| !self.owned.contains(q)).collect(),
            owned: self.owned,
            n,
        };
        if spread.own.is_empty() {
            return;
        }
        let current = self.facts.and_then(|q| q.rss_table.as_ref());
        let table = match &self.uplink.rss {
            None => self.without_rss(&spread, current),
            Some(rss) => self.with_rss(rss, &spread, draft),
        };
        let Some((table, words)) = table else {
            return;
        };
        if changed || table.is_empty() || current != Some(&table) {
            draft.actions.push(Action::SetRssTable {
                pf: self.pf.into(),
                pf_ifindex: ifx,
                spread: words,
                table,
            });
        }
    }

    /// The table's size: the device's, else the profile's.
    fn size(&self) -> Option<u32> {
        self.facts
            .and_then(|q| q.rss_table.as_ref())
            .map(|t| t.len() as u32)
            .or(self.steering.and_then(|s| s.pf_rss_table))
    }

    /// No `rss` in the config: narrowed while vPorts own queues, the driver's default
    /// (empty) once none does; None leaves the table alone.
    fn without_rss(
        &self,
        spread: &Spread,
        current: Option<&Vec<u32>>,
    ) -> Option<(Vec<u32>, String)> {
        let size = self.size();
        if spread.narrowed() {
            return size.map(|size| spread.over_own(size));
        }
        if !self.had_owned
            || size.is_none()
            || current.cloned() == size.map(|size| equal_table(size, 0, spread.n))
        {
            return None;
        }
        Some((
            Vec::new(),
            "the driver's default: no vPort owns a queue now".into(),
        ))
    }

    /// `rss` in the config: that spread over the PF's own queues, or a blocker.
    fn with_rss(
        &self,
        rss: &RssSpread,
        spread: &Spread,
        draft: &mut Draft,
    ) -> Option<(Vec<u32>, String)> {
        let (pf, n) = (self.pf, spread.n);
        let mut block = |why: String| {
            draft.plan.blockers.push(format!("uplink {pf}: {why}"));
            None
        };
        let Some(size) = self.size() else {
            return block("rss is set but the PF reports no RSS indirection table".into());
        };
        match rss {
            RssSpread::Equal if spread.narrowed() => Some(spread.over_own(size)),
            RssSpread::Equal => Some((equal_table(size, 0, n), format!("equal over {n} queues"))),
            RssSpread::Weights(w) if w.len() as u32 > n => block(format!(
                "rss_weights has {} entries but the PF has {n} channels",
                w.len()
            )),
            RssSpread::Weights(w) => {
                let on_owned = spread
                    .owned
                    .iter()
                    .find(|q| w.get(**q as usize).is_some_and(|x| *x > 0));
                if let Some(q) = on_owned {
                    let theirs: Vec<String> = spread.owned.iter().map(u32::to_string).collect();
                    return block(format!(
                        "rss_weights gives weight to queue {q}, which a vPort owns (queues {} are vPorts' own, by RSS context or ntuple rule); give those weight 0",
                        theirs.join(",")
                    ));
                }
                Some((
                    weighted_table(size, 0, w).unwrap_or_default(),
                    format!("weights {w:?}"),
                ))
            }
        }
    }
}
