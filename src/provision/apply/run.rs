//! [`apply`] itself: each step prepared, journaled, executed with bounded retries and
//! rolled back on failure, then the state the run leaves.

use std::collections::BTreeMap;

use super::journal::{Journal, JournalStep, Undo, fail};
use super::{
    ApplyError, ApplyOptions, ApplyReport, Programmed, Progress, StepContext, StepError,
    StepReport, execute, prepare, with_retries,
};
use crate::provision::ops::SriovOps;
use crate::provision::plan::{Action, Plan};
use crate::provision::state::{Health, State, VportPath, VportState};

/// Applies `plan`. `progress` hears about each step as it starts and ends.
pub fn apply(
    ops: &mut dyn SriovOps,
    plan: &Plan,
    state: &State,
    opts: &ApplyOptions,
    progress: &mut Progress<'_>,
) -> Result<(ApplyReport, State), ApplyError> {
    if !plan.blockers.is_empty() {
        return Err(ApplyError::Blocked(plan.blockers.clone()));
    }
    let mut run = Run {
        ops,
        opts,
        state,
        journal: Journal {
            run_id: opts.run_id.clone(),
            steps: Vec::new(),
        },
        programmed: Programmed::new(),
        total: plan.actions.len(),
    };
    let mut report = ApplyReport {
        steps: Vec::new(),
        recovered_steps: 0,
        noop: plan.is_noop(),
    };
    for (i, action) in plan.actions.iter().enumerate() {
        report.steps.push(run.step(i + 1, action, progress)?);
    }
    let next = run.next_state(plan)?;
    if !report.noop
        || next.vports != state.vports
        || next.steering != state.steering
        || next.pools != state.pools
    {
        next.save(opts.store, &opts.state_dir)?;
    }
    if !run.journal.steps.is_empty() {
        Journal::remove(opts.store, &opts.state_dir)?;
    }
    Ok((report, next))
}

/// One run of apply: the host, the journal so far, and what it programmed.
struct Run<'a> {
    ops: &'a mut dyn SriovOps,
    opts: &'a ApplyOptions,
    state: &'a State,
    journal: Journal,
    programmed: Programmed,
    total: usize,
}

impl Run<'_> {
    /// Runs step `step`; on failure rolls back the whole run and returns why.
    fn step(
        &mut self,
        step: usize,
        action: &Action,
        progress: &mut Progress<'_>,
    ) -> Result<StepReport, ApplyError> {
        let what = action.describe();
        progress(step, self.total, &what, None);
        let mut attempts = 0;
        let mut journaled = None;
        let result = self.journal_and_execute(step, &what, action, &mut attempts, &mut journaled);
        progress(step, self.total, &what, Some(&result));
        match result {
            Ok(()) => {
                // Saved again only when the step learned something its undo needs (a
                // context's id): a rollback undoes a finished step and an unfinished one
                // alike, so "done" need not be recorded (one write per step, not two).
                if self.journal.steps.last().map(|l| &l.undo) != journaled.as_ref() {
                    self.journal.save(self.opts.store, &self.opts.state_dir)?;
                }
                Ok(StepReport {
                    step,
                    what,
                    attempts,
                })
            }
            Err(source) => Err(self.roll_back(step, what, source)),
        }
    }

    /// Prepares the step's undo, journals it, then executes the step with retries.
    fn journal_and_execute(
        &mut self,
        step: usize,
        what: &str,
        action: &Action,
        attempts: &mut u32,
        journaled: &mut Option<Undo>,
    ) -> Result<(), StepError> {
        let (opts, ops) = (self.opts, &mut *self.ops);
        let undo = with_retries(opts, || prepare(ops, action))?;
        *journaled = Some(undo.clone());
        self.journal.steps.push(JournalStep {
            step,
            what: what.to_string(),
            undo,
        });
        self.journal
            .save(opts.store, &opts.state_dir)
            .map_err(|e| {
                StepError::Changed(format!("cannot journal the step, so it was not run: {e}"))
            })?;
        let mut cx = StepContext {
            opts,
            state: self.state,
            run: &mut self.programmed,
        };
        let result = with_retries(opts, || {
            *attempts += 1;
            execute(ops, action, &mut cx)
        });
        // What the step created is journaled by id as soon as it is known, even when
        // its read-back failed, so that the rollback finds it by id.
        if let (Some(last), Action::CreateRssContext { vport, .. }) =
            (self.journal.steps.last_mut(), action)
            && let Undo::RssContext { id, .. } = &mut last.undo
        {
            *id = self.programmed.get(vport).and_then(|s| s.context);
        }
        result
    }

    /// Rolls back after `source` failed `step`: the error apply returns.
    fn roll_back(&mut self, step: usize, what: String, source: StepError) -> ApplyError {
        fail(self.ops, &self.journal, self.opts, step, what, source)
    }

    /// The state this run leaves: each placement, the steering programmed (by this run,
    /// or kept from the last), and the VFs' PCI addresses.
    fn next_state(&mut self, plan: &Plan) -> Result<State, ApplyError> {
        let mut next = State {
            version: self.state.version,
            vports: Default::default(),
            last_run: Some(self.opts.run_id.clone()),
            steering: Default::default(),
            pools: plan.pools.clone(),
            pool_holders: Default::default(),
        };
        for pl in &plan.placements {
            if let VportPath::Queues { .. } = pl.path
                && let Some(st) = self
                    .programmed
                    .remove(&pl.vport)
                    .or_else(|| self.state.steering.get(&pl.vport).cloned())
            {
                next.steering.insert(pl.vport.clone(), st);
            }
        }
        let mut bdfs = self.vf_bdfs(plan)?;
        for pl in &plan.placements {
            let vf_bdf = bdfs.remove(&pl.vport).flatten();
            next.vports.insert(
                pl.vport.clone(),
                VportState {
                    uplink: pl.uplink.clone(),
                    path: pl.path.clone(),
                    reason: pl.reason.clone(),
                    vf_bdf,
                    applied: pl.vf_config.clone(),
                    health: Health::Provisioned,
                },
            );
        }
        Ok(next)
    }

    /// The VFs' PCI addresses go into the state (status compares them): a read that fails
    /// fails the run like a step, rather than recording no address.
    fn vf_bdfs(&mut self, plan: &Plan) -> Result<BTreeMap<String, Option<String>>, ApplyError> {
        let mut bdfs = BTreeMap::new();
        for pl in &plan.placements {
            if let VportPath::Vf { index } = pl.path {
                let ops = &mut *self.ops;
                match with_retries(self.opts, || Ok(ops.vf_bdf(&pl.uplink, index)?)) {
                    Ok(bdf) => {
                        bdfs.insert(pl.vport.clone(), bdf);
                    }
                    Err(source) => {
                        return Err(fail(
                            self.ops,
                            &self.journal,
                            self.opts,
                            self.total + 1,
                            "read the VFs' PCI addresses for the state file".into(),
                            source,
                        ));
                    }
                }
            }
        }
        Ok(bdfs)
    }
}
