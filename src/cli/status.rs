//! `vportd status`: each provisioned vPort, its placement and drift (exit 3 on drift).

use std::path::PathBuf;

use super::{Failure, emit, render, to_json};
use crate::facts::inventory;
use crate::host::fs::KernelFs;
use crate::host::netlink;
use crate::host::userfiles::UserFiles;
use crate::model::profile::ProfileSet;
use crate::provision;
use crate::provision::state::{PoolUse, State};

pub(super) fn run(
    config: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    json: bool,
) -> Result<(), Failure> {
    let config = config
        .map(|c| provision::config::load(&UserFiles, &c).map_err(Failure::input))
        .transpose()?;
    let dir = match (&config, state_dir) {
        (Some(c), _) => c.state_dir.clone(),
        (None, Some(d)) => d,
        (None, None) => PathBuf::from(provision::config::DEFAULT_STATE_DIR),
    };
    let cpus = config
        .as_ref()
        .map(provision::vport_cpus)
        .unwrap_or_default();
    let (list, pools) = vport_status(&dir, &cpus)?;
    // The daemon's published switches, each with its kind and members.
    let snap = crate::softpath::Snapshot::load(&dir).ok().flatten();
    if json {
        let switches = snap.map(|s| s.switches).unwrap_or_default();
        emit(&(to_json(&with_switches(&list, &switches)) + "\n"));
    } else {
        emit(&(render::status(&list) + &pools_table(&pools)));
        if let Some(snap) = snap {
            emit(&render::switches(&snap));
        }
    }
    irqbalance_said(json);
    if list.iter().any(|s| !s.drift.is_empty()) {
        return Err(Failure {
            code: 3,
            message:
                "drift: the host no longer matches what was applied (vportd apply restores it)"
                    .into(),
        });
    }
    Ok(())
}

/// irqbalance beside vportd (docs/irqbalance.md): a line of the text report, and, when
/// it runs without vportd's policy script, the warning on stderr (also with `--json`, whose
/// stdout stays the list of vPorts).
fn irqbalance_said(json: bool) {
    use crate::facts::irqbalance;
    let line = match irqbalance::find(&KernelFs::system()) {
        Err(e) => format!("irqbalance: cannot tell whether it runs: {e}"),
        Ok(p) if p.is_empty() => "irqbalance: not running".into(),
        Ok(p) => match irqbalance::warning(&p) {
            Some(w) => {
                log::warn!("{w}");
                "irqbalance: running WITHOUT vportd's policy script (the warning above)".into()
            }
            None => {
                let pids: Vec<String> = p.iter().map(|x| x.pid.to_string()).collect();
                format!(
                    "irqbalance: running (pid {}) with vportd's policy script: vportd's queue IRQs are banned from it",
                    pids.join(", ")
                )
            }
        },
    };
    if !json {
        emit(&format!("\n{line}\n"));
    }
}

/// The JSON of `status --json`: the vPorts as before (an array, which scripts and the guest
/// tests read), each software vPort with `software_switch`, the switch it is a member of as
/// the text's switch table and the metrics show it (name, kind, uplink or host_netdev,
/// members). The daemon runs a switch only for its vPorts, so every running switch appears
/// under at least one of them.
pub(super) fn with_switches(
    list: &[provision::VportStatus],
    switches: &[crate::softpath::SwitchSnapshot],
) -> serde_json::Value {
    let mut out = serde_json::to_value(list).expect("status serializes");
    let Some(items) = out.as_array_mut() else {
        return out;
    };
    for (item, st) in items.iter_mut().zip(list) {
        // The vPort's port counters name its switch.
        let on = st
            .switch
            .as_ref()
            .and_then(|p| switches.iter().find(|s| s.name == p.switch));
        if let (Some(sw), Some(obj)) = (on, item.as_object_mut()) {
            let sw = serde_json::to_value(sw).expect("a switch serializes");
            obj.insert("software_switch".into(), sw);
        }
    }
    out
}

/// The `[[pool]]`s' VFs and who holds them, after the vPorts (nothing without pools).
pub(super) fn pools_table(pools: &[PoolUse]) -> String {
    if pools.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = pools
        .iter()
        .map(|p| {
            let vfs: Vec<String> = p.vfs.iter().map(u32::to_string).collect();
            let held: Vec<String> = p
                .holders
                .iter()
                .map(|(vf, h)| format!("vf {vf}: {h}"))
                .collect();
            vec![
                p.pool.clone(),
                p.uplink.clone(),
                vfs.join(","),
                format!("{}/{}", p.allocated, p.capacity),
                if held.is_empty() {
                    "-".into()
                } else {
                    held.join("; ")
                },
            ]
        })
        .collect();
    "\n".to_string() + &render::table(&["POOL", "UPLINK", "VFS", "ALLOCATED", "HELD BY"], &rows)
}

/// Each vPort of the state in `dir` against the live host, its steering read back and
/// the software switch's counters joined in; and the pools' use.
fn vport_status(
    dir: &std::path::Path,
    cpus: &std::collections::BTreeMap<String, Vec<u32>>,
) -> Result<(Vec<provision::VportStatus>, Vec<PoolUse>), Failure> {
    let state = State::load(&UserFiles, dir).map_err(Failure::runtime)?;
    // Full discovery: the vPorts' queue sets need every function's IRQs.
    let nl = netlink::snapshot_scoped(false).map_err(Failure::runtime)?;
    let inv = inventory::discover(&KernelFs::system(), &nl, ProfileSet::builtin())
        .map_err(Failure::runtime)?;
    let mut list = provision::status_with(&state, &inv, cpus);
    // The steering apply programmed (RSS contexts, rules, macvlans), read back.
    provision::check_steering(&mut crate::host::ethtool::LiveQueues, &state, &mut list);
    // The daemon's published counters for the software vPorts, when it runs.
    let snap = crate::softpath::Snapshot::load(dir).map_err(Failure::runtime)?;
    for s in &mut list {
        s.switch = snap.as_ref().and_then(|x| x.vport(&s.vport)).cloned();
    }
    Ok((list, state.pool_use()))
}
