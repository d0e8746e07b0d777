//! Carries a [`Plan`] out on the host, step by step, through [`SriovOps`].
//!
//! Every step is journaled in the state directory *before* it runs, with what it
//! takes to undo it. A failure rolls back what this run changed, newest first. A
//! journal left behind by a killed run is rolled back by the next one before it plans
//! anew, so kill -9 at any point followed by a rerun converges. The state file is
//! written atomically once every step has succeeded, and names the run, so that a
//! journal whose run did complete is recognised and simply discarded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::host::userfiles::{self, FilesError};
use crate::model::mac::Mac;
use crate::model::queues::{FlowRule, FlowTarget};
use crate::model::vf::{VfConfig, parse_mac};
use crate::provision::ops::{CONTEXT_SEARCH_LIMIT, EthtoolError, HostError, QueueOps, SriovOps};
use crate::provision::plan::{Action, Plan, vf_matches};
use crate::provision::state::{
    Health, QueueMode, State, StateError, Steering, VportPath, VportState,
};

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
struct JournalStep {
    step: usize,
    what: String,
    undo: Undo,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Journal {
    run_id: String,
    steps: Vec<JournalStep>,
}

/// A run's journal in the state directory; present only while a run is unfinished.
pub const JOURNAL_FILE: &str = "journal.json";

fn journal_path(dir: &Path) -> PathBuf {
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
    /// (allocations: which vPort holds which VF), written with `userfiles::write_atomic` once
    /// at the end of the run. Per-step fsyncs cost 4-5 ms each on the build machine's disk
    /// and made apply 3x slower than the unjournaled ethtool loop (benches/queues_setup.rs);
    /// tests/queues_sim.rs kills a real process with SIGKILL after each step and recovers
    /// from the journal it left.
    fn save(&self, dir: &Path) -> Result<(), FilesError> {
        let text = serde_json::to_string_pretty(self).expect("journal serializes");
        userfiles::write_replace(&journal_path(dir), text.as_bytes())
    }

    fn load(dir: &Path) -> Result<Option<Journal>, ApplyError> {
        match userfiles::read_text(&journal_path(dir)) {
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
        userfiles::remove(&journal_path(&opts.state_dir))?;
        return Ok(0);
    }
    let n = journal.steps.len();
    rollback(ops, &journal, opts).map_err(|e| ApplyError::Recovery(Box::new(e)))?;
    userfiles::remove(&journal_path(&opts.state_dir))?;
    Ok(n)
}

fn rollback(
    ops: &mut dyn SriovOps,
    journal: &Journal,
    opts: &ApplyOptions,
) -> Result<(), StepError> {
    // Newest first; a step that started but did not finish may have half happened,
    // so it is undone too (every undo sets absolute values, so undoing twice is safe).
    let mut remap = BTreeMap::new();
    let mut left = journal.clone();
    while let Some(s) = left.steps.last() {
        with_retries(opts, || undo(ops, &s.undo, &mut remap, opts.link_wait))?;
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
                && let Some(new) = remap.get(&id)
            {
                rule.target = FlowTarget::Context { id: *new };
            }
        }
        remap.clear();
        left.save(&opts.state_dir).map_err(|e| {
            StepError::Changed(format!("cannot journal the rollback's progress: {e}"))
        })?;
    }
    Ok(())
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

fn undo(
    ops: &mut dyn SriovOps,
    u: &Undo,
    remap: &mut BTreeMap<u32, u32>,
    link_wait: Duration,
) -> Result<(), StepError> {
    match u {
        Undo::Feature {
            pf_ifindex,
            name,
            on,
        } => {
            let q = queue_ops(ops)?;
            let now = q.facts(*pf_ifindex)?.features.l2_fwd_offload;
            if name != "l2-fwd-offload" || now.is_none_or(|f| f.active != *on) {
                q.set_feature(*pf_ifindex, name, *on)?;
            }
            Ok(())
        }
        Undo::RssContext {
            pf_ifindex,
            id,
            table,
        } => {
            let q = queue_ops(ops)?;
            if let Some(c) = find_context(q, *pf_ifindex, *id, table)? {
                q.delete_rss_context(*pf_ifindex, c)?;
            }
            Ok(())
        }
        Undo::Rule {
            pf_ifindex,
            location,
            mac,
            vlan,
        } => {
            let q = queue_ops(ops)?;
            if q.rule(*pf_ifindex, *location)?
                .is_some_and(|r| r.dst_mac == *mac && r.vlan == *vlan)
            {
                q.delete_rule(*pf_ifindex, *location)?;
            }
            Ok(())
        }
        Undo::Macvlan { parent, mac } => {
            let q = queue_ops(ops)?;
            if let Some(ifx) = q.find_macvlan(*parent, *mac)? {
                q.delete_link(ifx)?;
            }
            Ok(())
        }
        Undo::ReinsertRule { pf_ifindex, rule } => {
            let q = queue_ops(ops)?;
            let mut rule = *rule;
            if let FlowTarget::Context { id } = rule.target
                && let Some(new) = remap.get(&id)
            {
                rule.target = FlowTarget::Context { id: *new };
            }
            if q.rule(*pf_ifindex, rule.location)?.is_none() {
                q.insert_rule(*pf_ifindex, &rule)?;
            }
            Ok(())
        }
        Undo::RecreateContext {
            pf_ifindex,
            id,
            table,
        } => {
            let q = queue_ops(ops)?;
            let now = match find_context(q, *pf_ifindex, Some(*id), table)? {
                Some(c) => c,
                None => q.create_rss_context(*pf_ifindex, table)?,
            };
            remap.insert(*id, now);
            Ok(())
        }
        Undo::RecreateMacvlan { parent, name, mac } => {
            let q = queue_ops(ops)?;
            if q.find_macvlan(*parent, *mac)?.is_none() {
                q.create_macvlan(*parent, name, *mac)?;
            }
            Ok(())
        }
        Undo::NumVfs {
            pf,
            to,
            pf_ifindex,
            vfs,
        } => {
            let now = ops.num_vfs(pf)?;
            if now != *to {
                let carrier = ops.pf_carrier(pf)?;
                if now != 0 {
                    ops.set_num_vfs(pf, 0)?;
                }
                if *to != 0 {
                    ops.set_num_vfs(pf, *to)?;
                    // As in the step itself: the PF resets, and igb refuses the VF rates
                    // restored below (EINVAL) until its link is back.
                    if carrier {
                        let start = std::time::Instant::now();
                        while !ops.pf_carrier(pf)? && start.elapsed() < link_wait {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            }
            for (index, (driver, config)) in vfs.iter().enumerate() {
                if let Some(bdf) = ops.vf_bdf(pf, index as u32)?
                    && ops.driver(&bdf)? != *driver
                {
                    ops.bind(&bdf, driver.as_deref())?;
                }
                if let (Some(ifx), Some(c)) = (pf_ifindex, config) {
                    // igb answers EINVAL to a rate while the PF resets after VFs are enabled,
                    // even once its carrier reads up (seen in the guest): retried, bounded.
                    let start = std::time::Instant::now();
                    loop {
                        match converge_vf(ops, *ifx, c) {
                            Err(StepError::Host(e))
                                if e.errno() == Some(nix::errno::Errno::EINVAL)
                                    && start.elapsed() < link_wait =>
                            {
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            other => break other?,
                        }
                    }
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
        Action::CreateRssContext {
            pf_ifindex, table, ..
        } => Undo::RssContext {
            pf_ifindex: *pf_ifindex,
            id: None,
            table: table.clone(),
        },
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
            Undo::Macvlan {
                parent: *pf_ifindex,
                mac: m,
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
        Action::DeleteMacvlan {
            pf_ifindex,
            vport,
            mac,
            ..
        } => {
            let m = mac_bytes(mac)?;
            match queue_ops(ops)?.find_macvlan(*pf_ifindex, m)? {
                Some(_) => Undo::RecreateMacvlan {
                    parent: *pf_ifindex,
                    name: crate::provision::plan::macvlan_name(vport),
                    mac: m,
                },
                None => Undo::Nothing,
            }
        }
    })
}

fn mac_bytes(mac: &str) -> Result<[u8; 6], StepError> {
    parse_mac(mac).ok_or_else(|| StepError::Changed(format!("{mac:?} is not a MAC address")))
}

/// What this run programmed for each vPort on queues, for the state file.
type Programmed = BTreeMap<String, Steering>;

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

/// The host's queue controls; a host without them cannot run a queue step.
fn queue_ops(ops: &mut dyn SriovOps) -> Result<&mut dyn QueueOps, StepError> {
    ops.queues().ok_or_else(|| {
        StepError::Changed("this host offers no queue controls (channels, RSS)".into())
    })
}

fn execute(
    ops: &mut dyn SriovOps,
    a: &Action,
    opts: &ApplyOptions,
    state: &State,
    run: &mut Programmed,
) -> Result<(), StepError> {
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
        Action::CreateRssContext {
            pf,
            pf_ifindex,
            vport,
            table,
            ..
        } => {
            let q = queue_ops(ops)?;
            let id = q.create_rss_context(*pf_ifindex, table)?;
            let st = programmed(run, vport, *pf_ifindex, QueueMode::RssContext, "");
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
        Action::InsertRule {
            pf,
            pf_ifindex,
            vport,
            mac,
            vlan,
            location,
            queue,
        } => {
            let target = match queue {
                Some(q) => FlowTarget::Queue {
                    index: u64::from(*q),
                },
                None => {
                    let id = run
                        .get(vport)
                        .and_then(|s| s.context)
                        .or_else(|| state.steering.get(vport).and_then(|s| s.context))
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
            let st = programmed(run, vport, *pf_ifindex, mode, mac);
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
            let st = programmed(run, vport, *pf_ifindex, QueueMode::Vmdq, mac);
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
    }
}

/// Rolls back after `source` failed `step`: the error to return.
fn fail(
    ops: &mut dyn SriovOps,
    journal: &Journal,
    opts: &ApplyOptions,
    step: usize,
    what: String,
    source: StepError,
) -> ApplyError {
    match rollback(ops, journal, opts) {
        Ok(()) => match userfiles::remove(&journal_path(&opts.state_dir)) {
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
    let mut run = Programmed::new();
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
        let mut journaled = None;
        let result = (|| -> Result<(), StepError> {
            let undo = with_retries(opts, || prepare(ops, action))?;
            journaled = Some(undo.clone());
            journal.steps.push(JournalStep {
                step,
                what: what.clone(),
                undo,
            });
            journal.save(&opts.state_dir).map_err(|e| {
                StepError::Changed(format!("cannot journal the step, so it was not run: {e}"))
            })?;
            let result = with_retries(opts, || {
                attempts += 1;
                execute(ops, action, opts, state, &mut run)
            });
            // What the step created is journaled by id as soon as it is known, even when
            // its read-back failed, so that the rollback finds it by id.
            if let (Some(last), Action::CreateRssContext { vport, .. }) =
                (journal.steps.last_mut(), action)
                && let Undo::RssContext { id, .. } = &mut last.undo
            {
                *id = run.get(vport).and_then(|s| s.context);
            }
            result
        })();
        progress(step, total, &what, Some(&result));
        match result {
            Ok(()) => {
                // Saved again only when the step learned something its undo needs (a
                // context's id): a rollback undoes a finished step and an unfinished one
                // alike, so "done" need not be recorded (one write per step, not two).
                if journal.steps.last().map(|l| &l.undo) != journaled.as_ref() {
                    journal.save(&opts.state_dir)?;
                }
                report.steps.push(StepReport {
                    step,
                    what,
                    attempts,
                });
            }
            Err(source) => {
                return match rollback(ops, &journal, opts) {
                    Ok(()) => {
                        userfiles::remove(&journal_path(&opts.state_dir))?;
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
        steering: Default::default(),
    };
    for pl in &plan.placements {
        if let VportPath::Queues { .. } = pl.path
            && let Some(st) = run
                .remove(&pl.vport)
                .or_else(|| state.steering.get(&pl.vport).cloned())
        {
            next.steering.insert(pl.vport.clone(), st);
        }
    }
    // The VFs' PCI addresses go into the state (status compares them): a read that fails
    // fails the run like a step, rather than recording no address.
    let mut bdfs = BTreeMap::new();
    for pl in &plan.placements {
        if let VportPath::Vf { index } = pl.path {
            match with_retries(opts, || Ok(ops.vf_bdf(&pl.uplink, index)?)) {
                Ok(bdf) => {
                    bdfs.insert(pl.vport.clone(), bdf);
                }
                Err(source) => {
                    return Err(fail(
                        ops,
                        &journal,
                        opts,
                        total + 1,
                        "read the VFs' PCI addresses for the state file".into(),
                        source,
                    ));
                }
            }
        }
    }
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
    if !report.noop || next.vports != state.vports || next.steering != state.steering {
        next.save(&opts.state_dir)?;
    }
    if !journal.steps.is_empty() {
        userfiles::remove(&journal_path(&opts.state_dir))?;
    }
    Ok((report, next))
}
