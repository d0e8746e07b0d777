//! Carries a [`Plan`] out on the host, step by step, through [`SriovOps`].
//!
//! Every step is journaled in the state directory *before* it runs, with what it
//! takes to undo it. A failure rolls back what this run changed, newest first. A
//! journal left behind by a killed run is rolled back by the next one before it plans
//! anew, so kill -9 at any point followed by a rerun converges. The state file is
//! written atomically once every step has succeeded, and names the run, so that a
//! journal whose run did complete is recognised and simply discarded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::host::files::{self, FilesError};
use crate::host::netlink::VfConfig;
use crate::host::sriov::{HostError, SriovOps};
use crate::plan::{Action, Plan, vf_matches};
use crate::state::{Health, State, StateError, VportPath, VportState};

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
    Queues(#[from] crate::host::ethtool::EthtoolError),
}

/// How apply behaves.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub state_dir: PathBuf,
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

/// How to undo one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "kebab-case")]
enum Undo {
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
    Nothing,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalStep {
    step: usize,
    what: String,
    undo: Undo,
    done: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Journal {
    run_id: String,
    steps: Vec<JournalStep>,
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.join("journal.json")
}

impl Journal {
    fn save(&self, dir: &Path) -> Result<(), FilesError> {
        let text = serde_json::to_string_pretty(self).expect("journal serializes");
        files::write_atomic(&journal_path(dir), text.as_bytes())
    }

    fn load(dir: &Path) -> Result<Option<Journal>, ApplyError> {
        match files::read_text(&journal_path(dir)) {
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
    let Some(journal) = Journal::load(&opts.state_dir)? else {
        return Ok(0);
    };
    if state.last_run.as_deref() == Some(journal.run_id.as_str()) {
        files::remove(&journal_path(&opts.state_dir))?;
        return Ok(0);
    }
    let n = journal.steps.len();
    rollback(ops, &journal, opts).map_err(|e| ApplyError::Recovery(Box::new(e)))?;
    files::remove(&journal_path(&opts.state_dir))?;
    Ok(n)
}

fn rollback(
    ops: &mut dyn SriovOps,
    journal: &Journal,
    opts: &ApplyOptions,
) -> Result<(), StepError> {
    // Newest first; a step that started but did not finish may have half happened,
    // so it is undone too (every undo sets absolute values, so undoing twice is safe).
    for s in journal.steps.iter().rev() {
        with_retries(opts, || undo(ops, &s.undo))?;
    }
    Ok(())
}

fn undo(ops: &mut dyn SriovOps, u: &Undo) -> Result<(), StepError> {
    match u {
        Undo::NumVfs {
            pf,
            to,
            pf_ifindex,
            vfs,
        } => {
            let now = ops.num_vfs(pf)?;
            if now != *to {
                if now != 0 {
                    ops.set_num_vfs(pf, 0)?;
                }
                if *to != 0 {
                    ops.set_num_vfs(pf, *to)?;
                }
            }
            for (index, (driver, config)) in vfs.iter().enumerate() {
                if let Some(bdf) = ops.vf_bdf(pf, index as u32)?
                    && ops.driver(&bdf)? != *driver
                {
                    ops.bind(&bdf, driver.as_deref())?;
                }
                if let (Some(ifx), Some(c)) = (pf_ifindex, config) {
                    converge_vf(ops, *ifx, c)?;
                }
            }
            Ok(())
        }
        Undo::Bind { bdf, driver } => {
            if ops.driver(bdf)? != *driver {
                ops.bind(bdf, driver.as_deref())?;
            }
            Ok(())
        }
        Undo::Vf { pf_ifindex, config } => converge_vf(ops, *pf_ifindex, config),
        Undo::Channels { pf_ifindex, to } => {
            let q = queue_ops(ops)?;
            if q.facts(*pf_ifindex)?.combined != Some(*to) {
                q.set_channels(*pf_ifindex, *to)?;
            }
            Ok(())
        }
        Undo::Rss { pf_ifindex, table } => {
            let q = queue_ops(ops)?;
            if q.facts(*pf_ifindex)?.rss_table.as_ref() != Some(table) {
                q.set_rss_table(*pf_ifindex, table)?;
            }
            Ok(())
        }
        Undo::Nothing => Ok(()),
    }
}

/// True when `want` sets a value and it is not the current one.
fn differs<T: PartialEq>(want: &Option<T>, now: &Option<T>) -> bool {
    want.is_some() && want != now
}

/// Brings a VF to `want` (a new setting, or the old one on undo), sending only the
/// optional attributes that differ from what it has now: a driver that lacks an attribute (igb and the VF link state)
/// refuses it even when set to its default. A VF that is gone (an earlier undo
/// removed it) needs nothing.
fn converge_vf(ops: &mut dyn SriovOps, pf_ifindex: u32, want: &VfConfig) -> Result<(), StepError> {
    let Some(now) = ops.vf_config(pf_ifindex, want.vf)? else {
        return Ok(());
    };
    let delta = VfConfig {
        vf: want.vf,
        mac: want.mac.clone(),
        vlan: want.vlan,
        qos: want.qos,
        vlan_proto: want.vlan_proto.clone(),
        min_tx_rate: if differs(&want.min_tx_rate, &now.min_tx_rate)
            || differs(&want.max_tx_rate, &now.max_tx_rate)
        {
            want.min_tx_rate.or(Some(0))
        } else {
            None
        },
        max_tx_rate: if differs(&want.min_tx_rate, &now.min_tx_rate)
            || differs(&want.max_tx_rate, &now.max_tx_rate)
        {
            want.max_tx_rate.or(Some(0))
        } else {
            None
        },
        spoofchk: want
            .spoofchk
            .filter(|_| differs(&want.spoofchk, &now.spoofchk)),
        trust: want.trust.filter(|_| differs(&want.trust, &now.trust)),
        link_state: want
            .link_state
            .clone()
            .filter(|_| differs(&want.link_state, &now.link_state)),
    };
    if vf_matches(&delta, &now) {
        return Ok(());
    }
    ops.set_vf(pf_ifindex, &delta)?;
    Ok(())
}

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

/// The undo record for an action, read from the host before it runs.
fn prepare(ops: &mut dyn SriovOps, a: &Action) -> Result<Undo, StepError> {
    Ok(match a {
        Action::SetNumVfs {
            pf,
            pf_ifindex,
            from,
            ..
        } => {
            let now = ops.num_vfs(pf)?;
            if now != *from {
                return Err(StepError::Changed(format!(
                    "{pf} has {now} VFs, not the {from} the plan saw; rerun plan"
                )));
            }
            // Tearing VFs down loses their drivers and settings: remember them.
            let mut vfs = Vec::new();
            for index in 0..now {
                let driver = match ops.vf_bdf(pf, index)? {
                    Some(bdf) => ops.driver(&bdf)?,
                    None => None,
                };
                let config = match pf_ifindex {
                    Some(ifx) => ops.vf_config(*ifx, index)?,
                    None => None,
                };
                vfs.push((driver, config));
            }
            Undo::NumVfs {
                pf: pf.clone(),
                to: *from,
                pf_ifindex: *pf_ifindex,
                vfs,
            }
        }
        Action::BindVf { pf, vf, .. } => {
            let bdf = ops
                .vf_bdf(pf, *vf)?
                .ok_or_else(|| StepError::Changed(format!("VF {vf} of {pf} does not exist")))?;
            Undo::Bind {
                driver: ops.driver(&bdf)?,
                bdf,
            }
        }
        Action::ConfigureVf {
            pf,
            pf_ifindex,
            config,
            ..
        }
        | Action::ResetVf {
            pf,
            pf_ifindex,
            config,
            ..
        } => {
            let before = ops.vf_config(*pf_ifindex, config.vf)?.ok_or_else(|| {
                StepError::Changed(format!(
                    "VF {} of {pf} is not reported by its PF (ifindex {pf_ifindex})",
                    config.vf
                ))
            })?;
            // Restore exactly the attributes this step sets, as they were.
            Undo::Vf {
                pf_ifindex: *pf_ifindex,
                config: VfConfig {
                    vf: config.vf,
                    mac: before.mac,
                    vlan: before.vlan,
                    qos: before.qos,
                    vlan_proto: before.vlan_proto,
                    min_tx_rate: config.min_tx_rate.and(before.min_tx_rate.or(Some(0))),
                    max_tx_rate: config.max_tx_rate.and(before.max_tx_rate.or(Some(0))),
                    spoofchk: config.spoofchk.and(before.spoofchk),
                    trust: config.trust.and(before.trust),
                    link_state: config.link_state.as_ref().and(before.link_state),
                },
            }
        }
        Action::Record { .. } => Undo::Nothing,
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
    })
}

/// The host's queue controls; a host without them cannot run a queue step.
fn queue_ops(ops: &mut dyn SriovOps) -> Result<&mut dyn crate::host::ethtool::QueueOps, StepError> {
    ops.queues().ok_or_else(|| {
        StepError::Changed("this host offers no queue controls (channels, RSS)".into())
    })
}

fn execute(ops: &mut dyn SriovOps, a: &Action, opts: &ApplyOptions) -> Result<(), StepError> {
    match a {
        Action::SetNumVfs { pf, to, .. } => {
            let carrier = ops.pf_carrier(pf)?;
            let got = ops.set_num_vfs(pf, *to)?;
            if got != *to {
                return Err(StepError::Verify(format!(
                    "{pf} enabled {got} VFs when asked for {to}"
                )));
            }
            // Enabling VFs resets the PF on many drivers; VF settings made before its
            // link returns can be refused (igb: rates, EINVAL). Bounded: a PF whose
            // link does not come back is not an error here.
            if carrier && *to > 0 {
                let start = std::time::Instant::now();
                while !ops.pf_carrier(pf)? && start.elapsed() < opts.link_wait {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Ok(())
        }
        Action::BindVf { pf, vf, driver } => {
            let bdf = ops
                .vf_bdf(pf, *vf)?
                .ok_or_else(|| StepError::Changed(format!("VF {vf} of {pf} does not exist")))?;
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
        Action::ConfigureVf {
            pf,
            pf_ifindex,
            config,
            ..
        }
        | Action::ResetVf {
            pf,
            pf_ifindex,
            config,
            ..
        } => {
            // igb checks a VF rate against the PF's link speed and refuses it (EINVAL)
            // while the link is down, as it is for a moment after any PF reset.
            let rate = config.max_tx_rate.is_some_and(|r| r > 0)
                || config.min_tx_rate.is_some_and(|r| r > 0);
            if rate {
                let start = std::time::Instant::now();
                while !ops.pf_carrier(pf)? && start.elapsed() < opts.link_wait {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if let Err(e) = converge_vf(ops, *pf_ifindex, config) {
                if rate && !ops.pf_carrier(pf)? {
                    return Err(StepError::Changed(format!(
                        "{e}; PF {pf} has no link, and drivers such as igb refuse VF rates without one"
                    )));
                }
                return Err(e);
            }
            let got = ops.vf_config(*pf_ifindex, config.vf)?;
            match got {
                Some(c) if vf_matches(config, &c) => Ok(()),
                Some(c) => Err(StepError::Verify(format!(
                    "VF {} of {pf} reads back as {c:?} after setting {config:?}",
                    config.vf
                ))),
                None => Err(StepError::Verify(format!(
                    "VF {} of {pf} vanished while being configured",
                    config.vf
                ))),
            }
        }
        Action::Record { .. } => Ok(()),
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
    }
}

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
    let mut journal = Journal {
        run_id: opts.run_id.clone(),
        steps: Vec::new(),
    };
    let total = plan.actions.len();
    let mut report = ApplyReport {
        steps: Vec::new(),
        recovered_steps: 0,
        noop: plan.is_noop(),
    };
    for (i, action) in plan.actions.iter().enumerate() {
        let step = i + 1;
        let what = action.describe();
        progress(step, total, &what, None);
        let mut attempts = 0;
        let result = (|| -> Result<(), StepError> {
            let undo = with_retries(opts, || prepare(ops, action))?;
            journal.steps.push(JournalStep {
                step,
                what: what.clone(),
                undo,
                done: false,
            });
            journal.save(&opts.state_dir).map_err(|e| {
                StepError::Changed(format!("cannot journal the step, so it was not run: {e}"))
            })?;
            with_retries(opts, || {
                attempts += 1;
                execute(ops, action, opts)
            })?;
            Ok(())
        })();
        progress(step, total, &what, Some(&result));
        match result {
            Ok(()) => {
                if let Some(last) = journal.steps.last_mut() {
                    last.done = true;
                }
                journal.save(&opts.state_dir)?;
                report.steps.push(StepReport {
                    step,
                    what,
                    attempts,
                });
            }
            Err(source) => {
                return match rollback(ops, &journal, opts) {
                    Ok(()) => {
                        files::remove(&journal_path(&opts.state_dir))?;
                        Err(ApplyError::RolledBack {
                            step,
                            what,
                            source: Box::new(source),
                        })
                    }
                    Err(rollback) => Err(ApplyError::RollbackFailed {
                        step,
                        what,
                        source: Box::new(source),
                        rollback: Box::new(rollback),
                        journal: journal_path(&opts.state_dir),
                    }),
                };
            }
        }
    }

    let mut next = State {
        version: state.version,
        vports: Default::default(),
        last_run: Some(opts.run_id.clone()),
    };
    for pl in &plan.placements {
        let vf_bdf = match pl.path {
            VportPath::Vf { index } => ops.vf_bdf(&pl.uplink, index).ok().flatten(),
            VportPath::Software | VportPath::Queues { .. } => None,
        };
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
    if !report.noop || next.vports != state.vports {
        next.save(&opts.state_dir)?;
    }
    if !journal.steps.is_empty() {
        files::remove(&journal_path(&opts.state_dir))?;
    }
    Ok((report, next))
}
