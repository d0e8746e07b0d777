//! A PF in devlink switchdev mode, on the simulated host: the plan blocks the legacy VF
//! steps its driver would refuse, naming the PF, the mode and each VF's representor, and
//! apply then refuses before writing anything (instead of failing half way and rolling
//! back). The same PF in legacy mode plans and applies as before. The guest test
//! `netdevsim_vf_controls_drift_and_switchdev` (tests/vm/netdevsim.rs) proves it on a
//! kernel's netdevsim.

use std::path::Path;
use std::time::Duration;

use vportd::host::userfiles::UserFiles;
use vportd::model::inventory::{EswitchMode, Inventory, Representor, Role};
use vportd::model::profile::ProfileSet;
use vportd::provision;
use vportd::provision::apply::{ApplyError, ApplyOptions};
use vportd::provision::config;
use vportd::provision::plan::PlanOptions;
use vportd::provision::sim_host::SimHost;

fn text(dir: &Path) -> String {
    format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"0000:01:00.0\"\n\
         [[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:01\"\n\
         max_tx_rate_mbps = 100\n\
         [[vport]]\nname = \"sw\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:02\"\n\
         offload = \"never\"\n",
        dir.display()
    )
}

/// The simulated host's inventory with its PF switched to `mode` (and, in switchdev, a
/// representor per VF, as the driver makes them).
fn with_mode(host: &SimHost, mode: EswitchMode) -> Inventory {
    let mut inv = host.inventory();
    for f in inv.pci_functions.iter_mut().filter(|f| f.role == Role::Pf) {
        f.eswitch_mode = Some(mode);
        if mode == EswitchMode::Switchdev {
            f.representors = (0..2)
                .map(|vf| Representor {
                    vf,
                    ifindex: 100 + vf,
                    name: format!("eth0pf0vf{vf}"),
                    port_name: format!("pf0vf{vf}"),
                    switch_id: "0123456789abcdef".into(),
                })
                .collect();
        }
    }
    inv
}

fn apply(
    host: &mut SimHost,
    dir: &Path,
    mode: EswitchMode,
) -> Result<provision::Prepared, provision::ProvisionError> {
    let cfg = config::parse(Path::new("host.toml"), &text(dir)).expect("config parses");
    let o = ApplyOptions {
        state_dir: dir.to_path_buf(),
        store: &UserFiles,
        retries: 3,
        retry_delay: Duration::ZERO,
        link_wait: Duration::from_secs(1),
        run_id: "run".into(),
    };
    let inv = with_mode(host, mode);
    let mut rediscover = |h: &SimHost| with_mode(h, mode);
    provision::apply_config(
        host,
        cfg,
        inv,
        &mut rediscover,
        ProfileSet::builtin(),
        PlanOptions::default(),
        &o,
        &mut |_, _, _, _| {},
    )
    .map(|(p, _)| p)
}

#[test]
fn switchdev_pf_blocks_legacy_vf_steps_and_apply_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let cfg = config::parse(Path::new("host.toml"), &text(dir.path())).unwrap();
    let prepared = provision::prepare_config(
        &UserFiles,
        cfg,
        &with_mode(&host, EswitchMode::Switchdev),
        ProfileSet::builtin(),
        PlanOptions::default(),
    )
    .expect("plans");
    let blockers = &prepared.plan.blockers;
    assert_eq!(blockers.len(), 1, "{blockers:#?}");
    let b = &blockers[0];
    for part in [
        "uplink 0000:01:00.0",
        "devlink eswitch mode switchdev",
        "vPort vm1",
        "VF 0",
        "eth0pf0vf0 (pf0vf0)",
        "devlink dev eswitch set pci/0000:01:00.0 mode legacy",
        "offload = \"never\"",
    ] {
        assert!(b.contains(part), "{part:?} missing from: {b}");
    }
    // The software vPort is not blocked: it never touches a VF.
    assert!(!b.contains("vPort sw "), "{b}");

    let log_len = host.log.len();
    match apply(&mut host, dir.path(), EswitchMode::Switchdev) {
        Err(provision::ProvisionError::Apply(e)) => match *e {
            ApplyError::Blocked(ref why) => assert_eq!(why, blockers),
            other => panic!("expected a refusal, got {other}"),
        },
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("apply went ahead on a switchdev PF"),
    }
    assert_eq!(host.log.len(), log_len, "nothing written");
    assert!(host.pfs[0].vfs.is_empty());

    // In legacy mode the same config applies.
    apply(&mut host, dir.path(), EswitchMode::Legacy).expect("legacy applies");
    assert_eq!(host.pfs[0].vfs[0].config.max_tx_rate, Some(100));
}
