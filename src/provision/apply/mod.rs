//! Carries a [`Plan`](crate::provision::plan::Plan) out on the host, step by step, through [`SriovOps`].
//!
//! Every step is journaled in the state directory *before* it runs, with what it
//! takes to undo it. A failure rolls back what this run changed, newest first. A
//! journal left behind by a killed run is rolled back by the next one before it plans
//! anew, so kill -9 at any point followed by a rerun converges. The state file is
//! written atomically once every step has succeeded, and names the run, so that a
//! journal whose run did complete is recognised and simply discarded.
//!
//! Each kind of step keeps its four parts together, in its own file: how a plan reads it
//! (`describe`), what to journal before it runs (`prepare`, the undo record read from the
//! host), running it with its read-back (`execute`), and putting the host back (`undo`):
//! - [`vf_count`], `SetNumVfs`;
//! - [`pf_link`], `SetPfLink`;
//! - [`vf_driver`], `BindVf`;
//! - [`vf_config`], `ConfigureVf`, `ResetVf`;
//! - [`pf_queues`], `SetChannels`, `SetRssTable`, `SetFeature`;
//! - [`rss_context`], `CreateRssContext`, `DeleteRssContext`;
//! - [`rule`], `InsertRule`, `DeleteRule`;
//! - [`macvlan`], `CreateMacvlan`, `DeleteMacvlan`;
//! - `Record` changes only the state file, and is here.
//!
//! This file dispatches on the step's kind; [`journal`] is the journal, recovery and
//! rollback; [`run`] is [`apply`] itself, the loop over the steps and the state it leaves.

mod journal;
mod macvlan;
mod pf_link;
mod pf_queues;
mod rss_context;
mod rule;
mod run;
mod vf_config;
mod vf_count;
mod vf_driver;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::provision::ops::{EthtoolError, HostError, QueueOps, SriovOps};
use crate::provision::plan::Action;
use crate::provision::state::{QueueMode, State, StateError, Steering};

pub use journal::{JOURNAL_FILE, recover};
pub use run::apply;

use journal::{FilesError, Store, Undo};

/// Errors from apply.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The plan has blockers; nothing was touched.
    #[error("the plan cannot be applied; nothing was changed:\n  - {}", .0.join("\n  - "))]
    Blocked(Vec<String>),
    /// A step failed and everything this run changed was rolled back.
    #[error("step {step} ({what}) failed: {source}; every change of this run was rolled back")]
    RolledBack {
        step: usize,
        what: String,
        source: Box<StepError>,
    },
    /// A step failed and so did the rollback: the journal is kept for the next run.
    #[error("step {step} ({what}) failed: {source}; rolling back also failed: {rollback}. The journal in {} is kept: rerun apply to finish the rollback and converge", journal.display())]
    RollbackFailed {
        step: usize,
        what: String,
        source: Box<StepError>,
        rollback: Box<StepError>,
        journal: PathBuf,
    },
    /// Rolling back an interrupted earlier run failed.
    #[error("an earlier apply was interrupted and rolling it back failed: {0}; rerun apply")]
    Recovery(Box<StepError>),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot write the journal: {0}")]
    Journal(#[from] FilesError),
}

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Host(#[from] HostError),
    /// The host is not as the plan saw it.
    #[error("{0}")]
    Changed(String),
    /// The kernel accepted a write but reads back something else.
    #[error("{0}")]
    Verify(String),
    /// A queue control (channels, RSS) failed.
    #[error(transparent)]
    Queues(#[from] EthtoolError),
}

/// How apply behaves.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub state_dir: PathBuf,
    /// Where the journal and the state file in `state_dir` are kept: the user's files
    /// (`host::userfiles::UserFiles`), or memory in tests. `'static` because a store is the
    /// process's one view of its files, and options without a lifetime pass around freely.
    pub store: &'static dyn Store,
    /// Attempts for a step that fails with EBUSY/EAGAIN (drivers return them while a
    /// VF resets), then the step fails.
    pub retries: u32,
    pub retry_delay: Duration,
    /// Identifies this run in the journal and the state file.
    pub run_id: String,
    /// How long to wait for a PF's link to return after enabling VFs.
    pub link_wait: Duration,
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: usize,
    pub what: String,
    pub attempts: u32,
}

/// What apply did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub steps: Vec<StepReport>,
    /// Steps of an interrupted earlier run that were rolled back first.
    pub recovered_steps: usize,
    pub noop: bool,
}

/// Hears about each step: (step, of total, description, None when it starts or
/// its result when it ends).
pub type Progress<'a> = dyn FnMut(usize, usize, &str, Option<&Result<(), StepError>>) + 'a;

impl Action {
    /// A one-line description for people.
    pub fn describe(&self) -> String {
        match self {
            Action::SetNumVfs { .. } => vf_count::describe(self),
            Action::BindVf { .. } => vf_driver::describe(self),
            Action::SetPfLink { .. } => pf_link::describe(self),
            Action::ConfigureVf { .. } | Action::ResetVf { .. } => vf_config::describe(self),
            Action::Record { vport, what } => format!("record {vport}: {what}"),
            Action::SetChannels { .. } | Action::SetRssTable { .. } | Action::SetFeature { .. } => {
                pf_queues::describe(self)
            }
            Action::CreateRssContext { .. } | Action::DeleteRssContext { .. } => {
                rss_context::describe(self)
            }
            Action::InsertRule { .. } | Action::DeleteRule { .. } => rule::describe(self),
            Action::CreateMacvlan { .. } | Action::DeleteMacvlan { .. } => macvlan::describe(self),
        }
    }
}

/// The undo record for an action, read from the host before it runs.
fn prepare(ops: &mut dyn SriovOps, a: &Action) -> Result<Undo, StepError> {
    match a {
        Action::SetNumVfs { .. } => vf_count::prepare(ops, a),
        Action::BindVf { .. } => vf_driver::prepare(ops, a),
        Action::SetPfLink { .. } => pf_link::prepare(ops, a),
        Action::ConfigureVf { .. } | Action::ResetVf { .. } => vf_config::prepare(ops, a),
        Action::Record { .. } => Ok(Undo::Nothing),
        Action::SetChannels { .. } | Action::SetRssTable { .. } | Action::SetFeature { .. } => {
            pf_queues::prepare(ops, a)
        }
        Action::CreateRssContext { .. } | Action::DeleteRssContext { .. } => {
            rss_context::prepare(ops, a)
        }
        Action::InsertRule { .. } | Action::DeleteRule { .. } => rule::prepare(ops, a),
        Action::CreateMacvlan { .. } | Action::DeleteMacvlan { .. } => macvlan::prepare(ops, a),
    }
}

/// What a step's execution reads besides the host, and what it records for the state file.
struct StepContext<'a> {
    opts: &'a ApplyOptions,
    state: &'a State,
    run: &'a mut Programmed,
}

/// Runs one step and reads back what it wrote.
fn execute(ops: &mut dyn SriovOps, a: &Action, cx: &mut StepContext) -> Result<(), StepError> {
    match a {
        Action::SetNumVfs { .. } => vf_count::execute(ops, a, cx.opts),
        Action::BindVf { .. } => vf_driver::execute(ops, a),
        Action::SetPfLink { .. } => pf_link::execute(ops, a),
        Action::ConfigureVf { .. } | Action::ResetVf { .. } => vf_config::execute(ops, a, cx.opts),
        Action::Record { .. } => Ok(()),
        Action::SetChannels { .. } | Action::SetRssTable { .. } | Action::SetFeature { .. } => {
            pf_queues::execute(ops, a)
        }
        Action::CreateRssContext { .. } | Action::DeleteRssContext { .. } => {
            rss_context::execute(ops, a, cx)
        }
        Action::InsertRule { .. } | Action::DeleteRule { .. } => rule::execute(ops, a, cx),
        Action::CreateMacvlan { .. } | Action::DeleteMacvlan { .. } => macvlan::execute(ops, a, cx),
    }
}

/// What undoing reads besides the host: contexts recreated under a new id (old id -> new),
/// for the rules still to be put back, and how long to wait for a PF's link.
struct UndoContext {
    remap: BTreeMap<u32, u32>,
    link_wait: Duration,
}

/// Puts back what one step changed. Every undo sets absolute values, so undoing twice is safe.
fn undo(ops: &mut dyn SriovOps, u: &Undo, cx: &mut UndoContext) -> Result<(), StepError> {
    match u {
        Undo::NumVfs { .. } => vf_count::undo(ops, u, cx.link_wait),
        Undo::Bind { .. } => vf_driver::undo(ops, u),
        Undo::PfLink { .. } => pf_link::undo(ops, u),
        Undo::Vf { .. } => vf_config::undo(ops, u),
        Undo::Channels { .. } | Undo::Rss { .. } | Undo::Feature { .. } => pf_queues::undo(ops, u),
        Undo::RssContext { .. } | Undo::RecreateContext { .. } => rss_context::undo(ops, u, cx),
        Undo::Rule { .. } | Undo::ReinsertRule { .. } => rule::undo(ops, u, cx),
        Undo::Macvlan { .. } | Undo::RecreateMacvlan { .. } => macvlan::undo(ops, u),
        Undo::Nothing => Ok(()),
    }
}

/// The step-kind functions are handed only their own kinds by the dispatchers above.
fn not_mine(kind: &str) -> ! {
    unreachable!("apply/mod.rs dispatched another kind of step to {kind}")
}

/// Runs `f` again, after a growing delay, while it fails with an error a driver returns
/// while a VF resets (EBUSY, EAGAIN), up to `opts.retries` attempts.
fn with_retries<T>(
    opts: &ApplyOptions,
    mut f: impl FnMut() -> Result<T, StepError>,
) -> Result<T, StepError> {
    let mut attempt = 1;
    loop {
        match f() {
            Err(StepError::Host(e)) if e.is_transient() && attempt < opts.retries.max(1) => {
                std::thread::sleep(opts.retry_delay * attempt);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Waits, at most `link_wait`, for the PF's link to come back after a reset. A PF whose
/// link does not come back is not an error here: the steps that need it say so.
fn wait_for_carrier(
    ops: &mut dyn SriovOps,
    pf: &str,
    link_wait: Duration,
) -> Result<(), StepError> {
    let start = Instant::now();
    while !ops.pf_carrier(pf)? && start.elapsed() < link_wait {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The host's queue controls; a host without them cannot run a queue step.
fn queue_ops(ops: &mut dyn SriovOps) -> Result<&mut dyn QueueOps, StepError> {
    ops.queues().ok_or_else(|| {
        StepError::Changed("this host offers no queue controls (channels, RSS)".into())
    })
}

fn mac_bytes(mac: &str) -> Result<[u8; 6], StepError> {
    crate::model::mac::Mac::parse_lenient(mac)
        .map(|m| m.0)
        .ok_or_else(|| StepError::Changed(format!("{mac:?} is not a MAC address")))
}

/// What this run programmed for each vPort on queues, for the state file.
type Programmed = BTreeMap<String, Steering>;

/// The vPort's entry in what this run programmed, made on first use.
fn programmed<'a>(
    run: &'a mut Programmed,
    vport: &str,
    pf_ifindex: u32,
    mode: QueueMode,
    mac: &str,
) -> &'a mut Steering {
    run.entry(vport.to_string()).or_insert_with(|| Steering {
        pf_ifindex,
        mode,
        mac: mac.to_string(),
        vlan: None,
        context: None,
        table: Vec::new(),
        location: None,
        macvlan: None,
        feature_set: false,
        drifted: false,
    })
}
