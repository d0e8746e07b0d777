//! `vportd apply` and the daemon's reconciles (hotplug, `ctl apply`) plan from the same facts:
//! both read through `daemon::plan_inputs::plan_inventory`, whose reads `facts::scope`
//! decides. Over the captured igb guest (tests/fixtures/guest-82576-7vfs): the inventory
//! that read gives, for one config and state, is the one both paths plan from, whether it
//! is narrowed to the config's PFs or read in full (a killed run's journal), and their plan
//! is the plan the daemon made before from a full discovery.

use std::path::{Path, PathBuf};

use vportd::daemon::plan_inputs::plan_inventory;
use vportd::facts::inventory;
use vportd::facts::scope::Source;
use vportd::host::fs::KernelFs;
use vportd::host::netlink::NetlinkSnapshot;
use vportd::host::userfiles::UserFiles;
use vportd::model::inventory::Inventory;
use vportd::model::profile::ProfileSet;
use vportd::provision::config::Config;
use vportd::provision::plan::{Plan, PlanOptions};

fn fixture() -> (PathBuf, NetlinkSnapshot) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guest-82576-7vfs");
    let nl =
        serde_json::from_str(&std::fs::read_to_string(dir.join("netlink.json")).unwrap()).unwrap();
    (dir, nl)
}

fn config(state_dir: &Path) -> Config {
    let text = format!(
        "state_dir = \"{}\"\n\
         [[uplink]]\npci = \"0000:01:00.0\"\nnum_vfs = 7\n\
         [[vport]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:01\"\nvlan = 100\n\
         [[vport]]\nname = \"b\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:02:01\"\n",
        state_dir.display()
    );
    vportd::provision::config::parse(Path::new("t.toml"), &text).expect("test config parses")
}

fn plan(cfg: &Config, inv: &Inventory) -> Plan {
    vportd::provision::prepare_config(
        &UserFiles,
        cfg.clone(),
        inv,
        ProfileSet::builtin(),
        PlanOptions::default(),
    )
    .expect("the config plans on the fixture")
    .plan
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

/// What a command-line apply and a hotplug reconcile read for the same config and state.
fn read(src: &Source, cfg: &Config) -> Inventory {
    plan_inventory(src, cfg, PlanOptions::default(), &mut |_, _| {})
        .expect("the facts read over the fixture")
}

#[test]
fn apply_and_reconcile_plan_from_the_same_facts() {
    let (dir, nl) = fixture();
    let state = tempfile::tempdir().unwrap();
    let cfg = config(state.path());
    let src = Source::fixture(&dir, nl.clone());

    // The narrowed read: the config names its one PF.
    let narrowed = read(&src, &cfg);
    assert!(
        narrowed
            .pci_functions
            .iter()
            .all(|f| f.bdf == "0000:01:00.0" || f.physfn.as_deref() == Some("0000:01:00.0")),
        "only the config's PF and its VFs are read"
    );
    assert!(!narrowed.pci_functions.is_empty());
    // Read again (apply's re-discovery after a step, or a second event): the same facts.
    assert_eq!(json(&narrowed), json(&read(&src, &cfg)));

    // The daemon's reconcile used to plan from a full discovery; the plan is the same.
    let full = inventory::discover(&KernelFs::at(&dir), &nl, ProfileSet::builtin()).unwrap();
    let expected = json(&plan(&cfg, &full));
    assert_eq!(json(&plan(&cfg, &narrowed)), expected);

    // A killed run's journal asks for the full provisioning read; still the same plan.
    std::fs::write(
        state.path().join(vportd::provision::apply::JOURNAL_FILE),
        "{}",
    )
    .unwrap();
    let whole = read(&src, &cfg);
    assert!(whole.pci_functions.len() > narrowed.pci_functions.len());
    assert_eq!(json(&plan(&cfg, &whole)), expected);
}

/// Below another root (the daemon's `--root`, a replay) the PFs' queue facts are never
/// asked of the live kernel by name: they would describe this host's devices.
#[test]
fn queue_facts_come_only_from_the_live_root() {
    let (dir, nl) = fixture();
    assert!(Source::live().live_queues);
    assert!(Source::at_root(Path::new("/")).live_queues);
    assert!(!Source::at_root(&dir).live_queues);
    let state = tempfile::tempdir().unwrap();
    let mut cfg = config(state.path());
    cfg.vports[0].queues = Some(2);
    let inv = read(&Source::fixture(&dir, nl), &cfg);
    assert!(
        inv.pci_functions
            .iter()
            .flat_map(|f| &f.netdevs)
            .all(|n| n.queues.is_none())
    );
}
