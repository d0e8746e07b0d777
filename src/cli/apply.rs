//! `vportd apply CONFIG`: make the host match the config, step by step, journaled and
//! verified; with `--allow-absent`, over the uplinks that are here (the boot-time unit).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Failure, emit, provision_failure, render, timing, to_json};
use crate::facts::scope::Source;
use crate::host::fs::KernelFs;
use crate::host::sriov::LiveSriov;
use crate::host::uplink_wait;
use crate::host::userfiles::UserFiles;
use crate::model::inventory::Inventory;
use crate::model::profile::ProfileSet;
use crate::provision;
use crate::provision::apply::{ApplyOptions, ApplyReport, StepError};
use crate::provision::ops::SriovOps;
use crate::provision::plan::{Plan, PlanOptions};

/// `vportd apply --allow-absent`: the daemon's reconcile, run once in this process.
pub(super) fn run_allow_absent(
    config: &Path,
    allow_disruption: bool,
    json: bool,
    wait_uplinks: Duration,
) -> Result<(), Failure> {
    // Bad input is still refused before anything is touched.
    let cfg = provision::config::load(&UserFiles, config).map_err(Failure::input)?;
    let selectors: Vec<_> = cfg.uplinks.iter().map(|u| u.selector.clone()).collect();
    let fs = KernelFs::system();
    if !wait_uplinks.is_zero() {
        say_waited(&uplink_wait::wait(&fs, &selectors, wait_uplinks));
    }
    // Said before the apply, so that a failing apply does not hide it.
    for u in selectors.iter().filter(|u| !uplink_wait::present(&fs, u)) {
        log::warn!(
            "warning: uplink {u} is not here (or has no driver yet); its vPorts \
             follow when it appears (the daemon hears its hotplug event)"
        );
    }
    let o = crate::daemon::handlers::run_live(config, allow_disruption, "apply", Path::new("/"))
        .map_err(Failure::runtime)?;
    if json {
        emit(&(to_json(&o) + "\n"));
    } else {
        emit(&format!("{}\n", o.summary()));
    }
    Ok(())
}

/// Says in the log what `--wait-uplinks` waited for, and how it ended.
fn say_waited(r: &uplink_wait::Report) {
    for w in &r.waited {
        let secs = w.after.as_secs_f64();
        if w.ready {
            log::info!(
                "waited {secs:.1} s for uplink {} ({} when the apply began): it is ready",
                w.uplink,
                w.lacked
            );
        } else {
            let why = match r.gave_up {
                Some(uplink_wait::GaveUp::UdevIdle) => "udev's queue is empty, nothing is coming",
                _ => "the --wait-uplinks limit passed",
            };
            log::warn!(
                "warning: stopped waiting for uplink {} ({}) after {:.1} s: {why}",
                w.uplink,
                w.lacked,
                r.elapsed.as_secs_f64()
            );
        }
    }
}

/// `vportd apply`: plan, then apply unless `dry_run`, with a progress line per step.
pub(super) fn run(
    config: &Path,
    dry_run: bool,
    allow_disruption: bool,
    json: bool,
) -> Result<(), Failure> {
    let began = Instant::now();
    let cfg = provision::config::load(&UserFiles, config).map_err(Failure::input)?;
    timing("config", began);
    let plan_opts = PlanOptions { allow_disruption };
    let inv = planning_inventory(&cfg, plan_opts)?;
    let t = Instant::now();
    if dry_run {
        let p = provision::prepare_config_read_back(
            &UserFiles,
            cfg,
            &inv,
            ProfileSet::builtin(),
            plan_opts,
            &mut crate::host::ethtool::LiveQueues,
        )
        .map_err(provision_failure)?;
        emit(&render::plan(&p.plan));
        return Ok(());
    }
    let apply_opts = options(&cfg.state_dir);
    let mut ops = live_ops()?;
    let for_rediscovery = cfg.clone();
    let mut rediscover =
        |_: &_| planning_inventory(&for_rediscovery, plan_opts).unwrap_or_else(|_| inv.clone());
    let mut progress = progress_printer(json);
    let (prepared, report) = provision::apply_config(
        &mut ops,
        cfg,
        inv.clone(),
        &mut rediscover,
        ProfileSet::builtin(),
        plan_opts,
        &apply_opts,
        &mut progress,
    )
    .map_err(provision_failure)?;
    timing("plan and apply", t);
    if json {
        emit(&result_json(&prepared.plan, &report, began));
    } else {
        say_result(&prepared.plan, &report);
    }
    Ok(())
}

/// The retry and wait bounds of a command-line apply, and its run id.
fn options(state_dir: &Path) -> ApplyOptions {
    ApplyOptions {
        state_dir: state_dir.to_path_buf(),
        store: &UserFiles,
        retries: 5,
        retry_delay: Duration::from_millis(200),
        link_wait: Duration::from_secs(15),
        run_id: format!(
            "{}-{}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            std::process::id()
        ),
    }
}

/// The live host's operations; in test builds, VPORTD_FAULTS may make chosen ones fail
/// (tests/vm/README.md).
fn live_ops() -> Result<Box<dyn SriovOps>, Failure> {
    #[cfg_attr(not(feature = "fault-injection"), allow(unused_mut))]
    let mut ops: Box<dyn SriovOps> = Box::new(LiveSriov::new(KernelFs::system()));
    #[cfg(feature = "fault-injection")]
    {
        ops = match crate::host::faults::from_env(ops).map_err(Failure::input)? {
            Ok(faulty) => Box::new(faulty),
            Err(live) => live,
        };
    }
    Ok(ops)
}

/// Says on stderr when each step starts and how long it took (VF creation takes seconds
/// to over a minute on big NICs); silent with `--json`. With `VPORTD_TIMING`, each step's
/// wall time in ms (its undo record, journal write, execution and read-back) either way.
fn progress_printer(json: bool) -> impl FnMut(usize, usize, &str, Option<&Result<(), StepError>>) {
    let mut started = Instant::now();
    move |step, total, what, done| {
        if done.is_none() {
            started = Instant::now();
        }
        let took = |started: Instant| format!("{:.1} s", started.elapsed().as_secs_f64());
        match done {
            None if !json => eprint!("[{step}/{total}] {what} ... "),
            Some(Ok(())) if !json => eprintln!("ok ({})", took(started)),
            Some(Err(e)) if !json => eprintln!("FAILED after {}: {e}", took(started)),
            _ => {}
        }
        // After the progress line ends, so that each timing has a line of its own.
        if done.is_some() {
            timing(&format!("step {step}/{total} ({what})"), started);
        }
    }
}

/// `--json`: the plan, the report, and the time from reading the config to the end.
fn result_json(plan: &Plan, report: &ApplyReport, began: Instant) -> String {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        plan: &'a Plan,
        report: &'a ApplyReport,
        /// From reading the config to the end: the work, without process start.
        elapsed_ms: f64,
    }
    to_json(&Out {
        plan,
        report,
        elapsed_ms: began.elapsed().as_secs_f64() * 1e3,
    }) + "\n"
}

/// The human summary: a recovered earlier run, the plan's warnings, what was done.
fn say_result(plan: &Plan, report: &ApplyReport) {
    if report.recovered_steps > 0 {
        eprintln!(
            "rolled back {} step(s) of an interrupted earlier apply first",
            report.recovered_steps
        );
    }
    for w in &plan.warnings {
        log::warn!(target: crate::host::journal::BARE, "warning: {w}");
    }
    if report.noop {
        emit("nothing to do: the host already matches the config\n");
    } else {
        emit(&format!("applied {} step(s)\n", report.steps.len()));
    }
}

/// The live host's facts for planning `cfg`, read as the daemon's reconciles read them
/// (facts::scope decides what).
pub(super) fn planning_inventory(
    cfg: &provision::config::Config,
    opts: PlanOptions,
) -> Result<Inventory, Failure> {
    crate::daemon::plan_inputs::plan_inventory(&Source::live(), cfg, opts, &mut timing)
        .map_err(Failure::runtime)
}
