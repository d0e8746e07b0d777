//! `vportd discover`: the host's network hardware, as tables or JSON; optionally from a
//! fixture, recorded into one, or with the provisioned vPorts' queue sets.

use std::path::{Path, PathBuf};

use super::{Failure, emit, load_profiles, render, to_json};
use crate::facts::{inventory, pciids};
use crate::host::fs::KernelFs;
use crate::host::netlink;
use crate::host::userfiles::{self, UserFiles};
use crate::model::inventory::Inventory;
use crate::provision;
use crate::provision::state::{PoolUse, State, VportQueueSet};

/// The flags of `vportd discover` (args::Command::Discover).
pub(super) struct Flags {
    pub json: bool,
    pub root: Option<PathBuf>,
    pub fixture: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub profiles: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

/// The state whose queue sets to show, and the vPorts' `cpus` from the config.
type Held = (State, std::collections::BTreeMap<String, Vec<u32>>);

pub(super) fn run(f: Flags) -> Result<(), Failure> {
    let profiles = load_profiles(f.profiles.as_deref())?;
    // Bad input first: a config or state that cannot be read changes nothing.
    let held = held_vports(f.config.as_deref(), f.state_dir.as_deref())?;
    let (mut fs, nl) = kernel_views(f.fixture.as_deref(), f.root)?;
    if let Some(dir) = &f.record {
        fs = fs.recording_into(dir);
        userfiles::write_atomic(&dir.join("netlink.json"), to_json(&nl).as_bytes())
            .map_err(Failure::runtime)?;
    }
    let inv = inventory::discover(&fs, &nl, &profiles).map_err(Failure::runtime)?;
    // Names are for people: without the database the ids stand alone, and stderr says why.
    let names = pciids::names_for(fs.root());
    if let Some(note) = names.note() {
        eprintln!("vportd discover: note: {note}");
    }
    if let (Some(dir), Some(ids)) = (&f.record, names.ids()) {
        record_names(dir, ids, &inv)?;
    }
    let pools = held
        .as_ref()
        .map(|(state, _)| state.pool_use())
        .unwrap_or_default();
    let sets = held.map(|(state, cpus)| provision::state::queue_sets(&state, &inv, &cpus));
    emit(&report(&inv, sets, &pools, f.json));
    Ok(())
}

/// Writes the pci.ids entries the inventory names below the recording, so that replaying it
/// shows the same names.
fn record_names(dir: &Path, ids: &pciids::PciIds, inv: &Inventory) -> Result<(), Failure> {
    let hex = |s: &str| u16::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let wanted: Vec<(u16, u16)> = inv
        .pci_functions
        .iter()
        .filter_map(|f| Some((hex(&f.vendor_id)?, hex(&f.device_id)?)))
        .collect();
    let path = dir.join(pciids::SYSTEM_PATHS[0]);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            Failure::runtime(format!(
                "cannot create the directory {}: {e}",
                parent.display()
            ))
        })?;
    }
    userfiles::write_atomic(&path, ids.subset_text(&wanted).as_bytes()).map_err(Failure::runtime)
}

/// The state named by `--config` (with its vPorts' `cpus`) or `--state-dir`, if any.
fn held_vports(config: Option<&Path>, state_dir: Option<&Path>) -> Result<Option<Held>, Failure> {
    let config = config
        .map(|c| provision::config::load(&UserFiles, c).map_err(Failure::input))
        .transpose()?;
    Ok(match (&config, state_dir) {
        (Some(c), _) => Some((
            State::load(&UserFiles, &c.state_dir).map_err(Failure::input)?,
            provision::vport_cpus(c),
        )),
        (None, Some(d)) => Some((
            State::load(&UserFiles, d).map_err(Failure::input)?,
            Default::default(),
        )),
        (None, None) => None,
    })
}

/// The files and the netlink snapshot to read: a fixture's, or the live kernel's (files
/// below `root` when given).
fn kernel_views(
    fixture: Option<&Path>,
    root: Option<PathBuf>,
) -> Result<(KernelFs, netlink::NetlinkSnapshot), Failure> {
    Ok(match fixture {
        Some(dir) => {
            let text = userfiles::read_text(&dir.join("netlink.json")).map_err(Failure::input)?;
            let nl: netlink::NetlinkSnapshot = serde_json::from_str(&text).map_err(|e| {
                Failure::input(format!(
                    "{}: not a netlink snapshot: {e}",
                    dir.join("netlink.json").display()
                ))
            })?;
            (KernelFs::at(dir), nl)
        }
        None => (
            root.map(KernelFs::at).unwrap_or_else(KernelFs::system),
            netlink::snapshot().map_err(Failure::runtime)?,
        ),
    })
}

/// The inventory as JSON or tables, with the queue sets when asked for (and the pools, when
/// the state has any).
fn report(
    inv: &Inventory,
    sets: Option<Vec<VportQueueSet>>,
    pools: &[PoolUse],
    json: bool,
) -> String {
    match (json, sets) {
        (true, None) => to_json(inv) + "\n",
        (true, Some(sets)) => {
            let mut v = serde_json::to_value(inv).expect("inventories serialize");
            v["vport_queue_sets"] = serde_json::to_value(&sets).expect("queue sets serialize");
            if !pools.is_empty() {
                v["pools"] = serde_json::to_value(pools).expect("pools serialize");
            }
            to_json(&v) + "\n"
        }
        (false, sets) => {
            let mut text = render::inventory(inv);
            if let Some(sets) = sets {
                text += &render::queue_sets(&sets.iter().collect::<Vec<_>>());
            }
            text + &super::status::pools_table(pools)
        }
    }
}
