//! The journal: each step's undo record, written before the step runs; the rollback that
//! undoes a journal newest first; and the recovery of a journal a killed run left.
//!
//! Its files are ordinary files in the state directory, written through the run's
//! [`Store`] (`ApplyOptions::store`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ApplyError, ApplyOptions, StepError, UndoContext, undo, with_retries};
pub(super) use crate::model::file_errors::FilesError;
use crate::model::queues::{FlowRule, FlowTarget};
use crate::model::vf::VfConfig;
use crate::provision::ops::SriovOps;
use crate::provision::state::State;
pub(super) use crate::provision::store::Store;

/// How to undo one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "kebab-case")]
pub(super) enum Undo {
    /// Back to `to` VFs; then the VFs that existed before get their drivers and
    /// settings back (a count change through 0 destroyed them).
    NumVfs {
        pf: String,
        to: u32,
        pf_ifindex: Option<u32>,
        #[serde(default)]
        vfs: Vec<(Option<String>, Option<VfConfig>)>,
    },
    Bind {
        bdf: String,
        driver: Option<String>,
    },
    /// The PF's netdev back to administratively `up` (or down) as it was.
    PfLink {
        pf_ifindex: u32,
        up: bool,
    },
    Vf {
        pf_ifindex: u32,
        config: VfConfig,
    },
    /// Back to this channel count (IRQs are re-created once more).
    Channels {
        pf_ifindex: u32,
        to: u32,
    },
    /// Back to this RSS table.
    Rss {
        pf_ifindex: u32,
        table: Vec<u32>,
    },
    /// The feature back on or off.
    Feature {
        pf_ifindex: u32,
        name: String,
        on: bool,
    },
    /// Delete the RSS context this step creates: by id once journaled, else (killed
    /// between creating and journaling) the context whose table is `table`.
    RssContext {
        pf_ifindex: u32,
        id: Option<u32>,
        table: Vec<u32>,
    },
    /// Delete the rule this step inserts, if the slot holds it.
    Rule {
        pf_ifindex: u32,
        location: u32,
        mac: [u8; 6],
        vlan: Option<u16>,
    },
    /// Delete the macvlan this step creates (found on the parent by its MAC).
    Macvlan {
        parent: u32,
        mac: [u8; 6],
    },
    /// Put back a rule this step deletes (into the context `RecreateContext` gave back,
    /// when that one was deleted too).
    ReinsertRule {
        pf_ifindex: u32,
        rule: FlowRule,
    },
    /// Put back an RSS context this step deletes; the driver may give it a new id.
    RecreateContext {
        pf_ifindex: u32,
        id: u32,
        table: Vec<u32>,
    },
    /// Put back a macvlan this step deletes.
    RecreateMacvlan {
        parent: u32,
        name: String,
        mac: [u8; 6],
    },
    Nothing,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct JournalStep {
    pub(super) step: usize,
    pub(super) what: String,
    pub(super) undo: Undo,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Journal {
    pub(super) run_id: String,
    pub(super) steps: Vec<JournalStep>,
}

/// A run's journal in the state directory; present only while a run is unfinished.
pub const JOURNAL_FILE: &str = "journal.json";

pub(super) fn journal_path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_FILE)
}

impl Journal {
    /// Written before each step (and after a step that learned an id), by a rename that
    /// process death cannot tear, but without fsync: what the journal guards against is
    /// the process dying between its steps (kill -9, OOM, a panic), and the page cache
    /// outlives the process, so the next run reads what this one wrote. An fsync would only
    /// matter for a power loss or a kernel crash, and those reset the kernel state the
    /// journal describes as well (VFs, driver bindings, VF settings, channels, RSS tables
    /// and contexts, ntuple rules, macvlans): after a reboot the journal is absent, older,
    /// or (on a filesystem that does not order a rename after its data) unreadable, which
    /// recovery reports ("move it aside") rather than guesses at; undoing it would undo
    /// nothing that still exists. One fsync stays where a reboot needs it: the state file
    /// (allocations: which vPort holds which VF), written with `Store::write_atomic` once
    /// at the end of the run. Per-step fsyncs cost 4-5 ms each on the build machine's disk
    /// and made apply 3x slower than the unjournaled ethtool loop (benches/queues_setup.rs);
    /// tests/queues_sim.rs kills a real process with SIGKILL after each step and recovers
    /// from the journal it left.
    pub(super) fn save(&self, store: &dyn Store, dir: &Path) -> Result<(), FilesError> {
        let text = serde_json::to_string_pretty(self).expect("journal serializes");
        store.write_replace(&journal_path(dir), text.as_bytes())
    }

    /// Removes the journal: the run it describes is over (done, or rolled back).
    pub(super) fn remove(store: &dyn Store, dir: &Path) -> Result<(), FilesError> {
        store.remove(&journal_path(dir))
    }

    fn load(store: &dyn Store, dir: &Path) -> Result<Option<Journal>, ApplyError> {
        match store.read_text(&journal_path(dir)) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(j) => Ok(Some(j)),
                // A torn journal cannot exist (atomic writes); an unreadable one is
                // not ours to guess at.
                Err(e) => Err(ApplyError::Recovery(Box::new(StepError::Changed(format!(
                    "{} is not a journal vportd wrote ({e}); move it aside",
                    journal_path(dir).display()
                ))))),
            },
            Err(FilesError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Rolls back a journal left by an interrupted run, unless that run completed.
/// Returns how many steps were undone.
pub fn recover(
    ops: &mut dyn SriovOps,
    state: &State,
    opts: &ApplyOptions,
) -> Result<usize, ApplyError> {
    let Some(journal) = Journal::load(opts.store, &opts.state_dir)? else {
        return Ok(0);
    };
    if state.last_run.as_deref() == Some(journal.run_id.as_str()) {
        Journal::remove(opts.store, &opts.state_dir)?;
        return Ok(0);
    }
    let n = journal.steps.len();
    rollback(ops, &journal, opts).map_err(|e| ApplyError::Recovery(Box::new(e)))?;
    Journal::remove(opts.store, &opts.state_dir)?;
    Ok(n)
}

fn rollback(
    ops: &mut dyn SriovOps,
    journal: &Journal,
    opts: &ApplyOptions,
) -> Result<(), StepError> {
    // Newest first; a step that started but did not finish may have half happened,
    // so it is undone too (every undo sets absolute values, so undoing twice is safe).
    let mut cx = UndoContext {
        remap: BTreeMap::new(),
        link_wait: opts.link_wait,
    };
    let mut left = journal.clone();
    while let Some(s) = left.steps.last() {
        with_retries(opts, || undo(ops, &s.undo, &mut cx))?;
        left.steps.pop();
        if left.steps.is_empty() {
            break;
        }
        // The progress is journaled, so that a rollback interrupted here (killed, or
        // failing) resumes after this undo rather than repeating it after older ones: an
        // older step's undo may destroy the devices this one acted on (VFs gone), and
        // undoing it again then fails forever. Contexts recreated under a new id are
        // written into the rules still to be put back.
        for r in &mut left.steps {
            if let Undo::ReinsertRule { rule, .. } = &mut r.undo
                && let FlowTarget::Context { id } = rule.target
                && let Some(new) = cx.remap.get(&id)
            {
                rule.target = FlowTarget::Context { id: *new };
            }
        }
        cx.remap.clear();
        left.save(opts.store, &opts.state_dir).map_err(|e| {
            StepError::Changed(format!("cannot journal the rollback's progress: {e}"))
        })?;
    }
    Ok(())
}

/// Rolls back after `source` failed `step`: the error to return.
pub(super) fn fail(
    ops: &mut dyn SriovOps,
    journal: &Journal,
    opts: &ApplyOptions,
    step: usize,
    what: String,
    source: StepError,
) -> ApplyError {
    match rollback(ops, journal, opts) {
        Ok(()) => match Journal::remove(opts.store, &opts.state_dir) {
            Ok(()) => ApplyError::RolledBack {
                step,
                what,
                source: Box::new(source),
            },
            Err(e) => e.into(),
        },
        Err(rollback) => ApplyError::RollbackFailed {
            step,
            what,
            source: Box::new(source),
            rollback: Box::new(rollback),
            journal: journal_path(&opts.state_dir),
        },
    }
}
