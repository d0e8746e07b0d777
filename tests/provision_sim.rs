//! plan + apply + status against the simulated SR-IOV host (src/sim.rs), which
//! follows the kernel's rules for sriov_numvfs and VF attributes. The same paths are
//! proven against the real igb driver in the QEMU guest (tests/vm).

use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use vportd::host::userfiles::UserFiles;
use vportd::model::file_errors::FilesError;
use vportd::model::profile::ProfileSet;
use vportd::provision;
use vportd::provision::apply::{self, ApplyError, ApplyOptions};
use vportd::provision::config;
use vportd::provision::plan::{self, Action, Plan, PlanOptions};
use vportd::provision::sim_host::{Op, SimHost};
use vportd::provision::state::{State, VportPath};
use vportd::provision::store::{Held, Store};

fn cfg_text(state_dir: &Path, vports: &[(&str, &str)], extra_uplink: &str) -> String {
    let mut t = format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"0000:01:00.0\"\n{extra_uplink}\n",
        state_dir.display()
    );
    for (name, body) in vports {
        t += &format!("[[vport]]\nname = \"{name}\"\nuplink = \"0000:01:00.0\"\n{body}\n");
    }
    t
}

fn mac(i: u32) -> String {
    format!("mac = \"02:00:00:00:01:{i:02x}\"")
}

fn opts(dir: &Path, run: &str) -> ApplyOptions {
    ApplyOptions {
        state_dir: dir.to_path_buf(),
        store: &UserFiles,
        retries: 3,
        retry_delay: Duration::ZERO,
        link_wait: std::time::Duration::from_secs(15),
        run_id: run.into(),
    }
}

fn plan_for(host: &SimHost, text: &str, allow: bool) -> Plan {
    let cfg = config::parse(Path::new("host.toml"), text).expect("config parses");
    let inv = host.inventory();
    provision::prepare_config(
        &UserFiles,
        cfg,
        &inv,
        ProfileSet::builtin(),
        PlanOptions {
            allow_disruption: allow,
        },
    )
    .expect("plans")
    .plan
}

fn apply_text(
    host: &mut SimHost,
    text: &str,
    run: &str,
    allow: bool,
) -> Result<(Plan, apply::ApplyReport), ApplyError> {
    let cfg = config::parse(Path::new("host.toml"), text).expect("config parses");
    let o = opts(&cfg.state_dir.clone(), run);
    let inv = host.inventory();
    let mut rediscover = |h: &SimHost| h.inventory();
    match provision::apply_config(
        host,
        cfg,
        inv,
        &mut rediscover,
        ProfileSet::builtin(),
        PlanOptions {
            allow_disruption: allow,
        },
        &o,
        &mut |_, _, _, _| {},
    ) {
        Ok((p, r)) => Ok((p.plan, r)),
        Err(provision::ProvisionError::Apply(e)) => Err(*e),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn first_apply_creates_vfs_configures_them_and_second_apply_is_a_noop() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let text = cfg_text(
        dir.path(),
        &[
            (
                "b",
                &format!("{}\nvlan = 100\nqos = 3\nmax_tx_rate_mbps = 500", mac(2)),
            ),
            ("a", &mac(1)),
        ],
        "",
    );
    let (p, r) = apply_text(&mut host, &text, "run1", false).unwrap();
    assert!(!r.noop);
    // Names sorted: a gets VF 0, b VF 1; the count is what they need.
    assert_eq!(host.pfs[0].vfs.len(), 2);
    assert_eq!(host.pfs[0].vfs[0].config.mac, "02:00:00:00:01:01");
    assert_eq!(host.pfs[0].vfs[1].config.vlan, 100);
    assert_eq!(host.pfs[0].vfs[1].config.qos, 3);
    assert_eq!(host.pfs[0].vfs[1].config.max_tx_rate, Some(500));
    assert!(matches!(
        p.actions[0],
        Action::SetNumVfs { from: 0, to: 2, .. }
    ));
    let state = State::load(&UserFiles, dir.path()).unwrap();
    assert_eq!(state.vports["a"].path, VportPath::Vf { index: 0 });
    assert_eq!(state.vports["b"].path, VportPath::Vf { index: 1 });
    assert!(!dir.path().join("journal.json").exists());

    let log_len = host.log.len();
    let (p2, r2) = apply_text(&mut host, &text, "run2", false).unwrap();
    assert!(r2.noop, "second apply: {:?}", p2.actions);
    assert!(p2.actions.is_empty());
    assert_eq!(host.log.len(), log_len, "nothing written the second time");
}

#[test]
fn assignments_survive_reordering_and_removal_resets_the_vf() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let three = cfg_text(
        dir.path(),
        &[("a", &mac(1)), ("b", &mac(2)), ("c", &mac(3))],
        "num_vfs = 4",
    );
    apply_text(&mut host, &three, "r1", false).unwrap();
    // Reordered and without a: b and c keep their VFs; a's VF 0 is reset clean.
    let two = cfg_text(dir.path(), &[("c", &mac(3)), ("b", &mac(2))], "num_vfs = 4");
    host.pfs[0].vfs[0].config.trust = Some(true);
    let (p, _) = apply_text(&mut host, &two, "r2", false).unwrap();
    let place: Vec<(String, VportPath)> = p
        .placements
        .iter()
        .map(|pl| (pl.vport.clone(), pl.path.clone()))
        .collect();
    assert_eq!(
        place,
        vec![
            ("b".into(), VportPath::Vf { index: 1 }),
            ("c".into(), VportPath::Vf { index: 2 })
        ]
    );
    let vf0 = &host.pfs[0].vfs[0].config;
    assert_eq!(vf0.mac, "00:00:00:00:00:00");
    assert_eq!(
        (vf0.vlan, vf0.spoofchk, vf0.trust),
        (0, Some(true), Some(false))
    );
    assert!(
        !State::load(&UserFiles, dir.path())
            .unwrap()
            .vports
            .contains_key("a")
    );
    // A newcomer takes the freed lowest index.
    let again = cfg_text(
        dir.path(),
        &[("c", &mac(3)), ("b", &mac(2)), ("z", &mac(9))],
        "num_vfs = 4",
    );
    let p = plan_for(&host, &again, false);
    let z = p.placements.iter().find(|pl| pl.vport == "z").unwrap();
    assert_eq!(z.path, VportPath::Vf { index: 0 });
}

#[test]
fn resize_through_zero_is_disruptive_and_refused_without_permission() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let two = cfg_text(dir.path(), &[("a", &mac(1)), ("b", &mac(2))], "num_vfs = 2");
    apply_text(&mut host, &two, "r1", false).unwrap();
    let four = cfg_text(dir.path(), &[("a", &mac(1)), ("b", &mac(2))], "num_vfs = 4");
    let p = plan_for(&host, &four, false);
    assert_eq!(p.disruptions.len(), 1);
    assert_eq!(p.disruptions[0].vports, vec!["a", "b"]);
    assert!(
        p.blockers[0].contains("--allow-disruption"),
        "{:?}",
        p.blockers
    );
    let before = host.log.len();
    let e = apply_text(&mut host, &four, "r2", false).unwrap_err();
    assert!(matches!(e, ApplyError::Blocked(_)));
    assert_eq!(host.log.len(), before, "a blocked plan touches nothing");
    // Allowed: through 0, then both reconfigured on the new VFs.
    apply_text(&mut host, &four, "r3", true).unwrap();
    assert_eq!(host.pfs[0].vfs.len(), 4);
    assert_eq!(host.pfs[0].vfs[1].config.mac, "02:00:00:00:01:02");
    assert!(host.log.iter().any(|l| l == "numvfs 0000:01:00.0 0"));
}

#[test]
fn a_resize_refuses_while_a_vf_is_held_through_vfio_even_when_disruption_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let two = cfg_text(dir.path(), &[("a", &mac(1))], "num_vfs = 2");
    apply_text(&mut host, &two, "r1", false).unwrap();
    let four = cfg_text(dir.path(), &[("a", &mac(1))], "num_vfs = 4");
    let cfg = config::parse(Path::new("host.toml"), &four).expect("config parses");
    let mut inv = host.inventory();
    let vfs = &mut inv.pci_functions[0].sriov.as_mut().unwrap().vfs;
    vfs[1].driver = Some("vfio-pci".into());
    vfs[1].iommu_group = Some(12);
    vfs[1].vfio_holders = vec![vportd::model::inventory::VfioHolder {
        pid: 4242,
        command: "qemu-system-x86".into(),
    }];
    let vf_bdf = vfs[1].bdf.clone();
    let plan = |inv: &vportd::model::inventory::Inventory| {
        provision::prepare_config(
            &UserFiles,
            cfg.clone(),
            inv,
            ProfileSet::builtin(),
            PlanOptions {
                allow_disruption: true,
            },
        )
        .expect("plans")
        .plan
    };
    let p = plan(&inv);
    let held: Vec<&String> = p.blockers.iter().filter(|b| b.contains("vfio")).collect();
    assert_eq!(held.len(), 1, "{:?}", p.blockers);
    for needle in [
        "pid 4242 (qemu-system-x86)",
        &vf_bdf,
        "/dev/vfio/12",
        "VF count of",
    ] {
        assert!(held[0].contains(needle), "{needle:?} not in {:?}", held[0]);
    }
    // Without a holder the same resize is allowed.
    inv.pci_functions[0].sriov.as_mut().unwrap().vfs[1]
        .vfio_holders
        .clear();
    assert!(plan(&inv).blockers.is_empty(), "{:?}", plan(&inv).blockers);
}

#[test]
fn missing_hardware_abilities_pick_the_software_path_or_block() {
    let dir = tempfile::tempdir().unwrap();
    let host = SimHost::igb(1);
    let text = cfg_text(
        dir.path(),
        &[
            ("ls", &format!("{}\nlink_state = \"enable\"", mac(1))),
            (
                "qinq",
                &format!("{}\nvlan = 10\nproto = \"802.1ad\"", mac(2)),
            ),
            ("soft", &format!("{}\noffload = \"never\"", mac(3))),
            ("ok", &mac(4)),
            (
                "opt",
                &format!(
                    "{}\nlink_state = \"enable\"\noptional = [\"link_state\"]",
                    mac(5)
                ),
            ),
        ],
        "",
    );
    let p = plan_for(&host, &text, false);
    let find = |n: &str| p.placements.iter().find(|pl| pl.vport == n).unwrap();
    assert_eq!(find("ls").path, VportPath::Software);
    assert!(find("ls").reason.contains("igb cannot set a VF link state"));
    assert!(find("qinq").reason.contains("802.1ad"));
    assert!(find("soft").reason.contains("never"));
    assert_eq!(find("ok").path, VportPath::Vf { index: 0 });
    // Where the config allows it, the attribute is dropped with a warning instead.
    assert_eq!(find("opt").path, VportPath::Vf { index: 1 });
    assert_eq!(find("opt").vf_config.as_ref().unwrap().link_state, None);
    assert!(
        p.warnings
            .iter()
            .any(|w| w
                .contains("\"opt\": link_state dropped because igb cannot set a VF link state")),
        "{:?}",
        p.warnings
    );
    assert!(p.blockers.is_empty());

    let required = cfg_text(
        dir.path(),
        &[(
            "ls",
            &format!(
                "{}\nlink_state = \"enable\"\noffload = \"required\"",
                mac(1)
            ),
        )],
        "",
    );
    let p = plan_for(&host, &required, false);
    assert_eq!(p.blockers.len(), 1);
    assert!(p.blockers[0].contains("igb cannot set a VF link state"));
}

#[test]
fn more_vports_than_vfs_spill_to_software_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let host = SimHost::igb(1);
    let v: Vec<(String, String)> = (0..9).map(|i| (format!("v{i}"), mac(i + 1))).collect();
    let refs: Vec<(&str, &str)> = v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let p = plan_for(&host, &cfg_text(dir.path(), &refs, ""), false);
    let soft: Vec<&str> = p
        .placements
        .iter()
        .filter(|pl| pl.path == VportPath::Software)
        .map(|pl| pl.reason.as_str())
        .collect();
    assert_eq!(soft.len(), 2);
    assert!(
        soft[0].contains("PF 0000:01:00.0 has 7 VFs, all taken"),
        "{soft:?}"
    );
}

/// Faults at every step of a run with the errnos the kernel really returns: the host
/// goes back to where it was, the state is untouched, and a clean rerun converges.
#[test]
fn a_fault_at_any_step_rolls_back_and_a_rerun_converges() {
    let faults = [
        (Op::SetNumVfs, Errno::ENOMEM),
        (Op::Bind, Errno::ENODEV),
        (Op::SetVf, Errno::EOPNOTSUPP),
        (Op::SetVf, Errno::EINVAL),
        (Op::VfConfig, Errno::EIO),
    ];
    let mut rolled_back = 0;
    for (op, errno) in faults {
        for nth in 1..=6 {
            let dir = tempfile::tempdir().unwrap();
            let mut host = SimHost::igb(1);
            // Start from a provisioned host, then change it, so rollback has work to undo.
            let t1 = cfg_text(dir.path(), &[("a", &mac(1))], "vf_driver = \"igbvf\"");
            apply_text(&mut host, &t1, "r1", false).unwrap();
            let before_vfs: Vec<_> = host.pfs[0].vfs.iter().map(|v| v.config.clone()).collect();
            let before_state = State::load(&UserFiles, dir.path()).unwrap();
            let t2 = cfg_text(
                dir.path(),
                &[
                    ("a", &format!("{}\nvlan = 7", mac(1))),
                    ("b", &mac(2)),
                    ("c", &mac(3)),
                ],
                "num_vfs = 3\nvf_driver = \"vfio-pci\"",
            );
            host.calls.clear();
            host.faults = vec![(op, nth, errno, 1)];
            match apply_text(&mut host, &t2, "r2", true) {
                Ok(_) => continue, // this op did not run n times
                Err(ApplyError::RolledBack { .. }) => rolled_back += 1,
                Err(e) => panic!("{op:?}#{nth} {errno}: {e}"),
            }
            let after: Vec<_> = host.pfs[0].vfs.iter().map(|v| v.config.clone()).collect();
            assert_eq!(after, before_vfs, "{op:?}#{nth} {errno}: host restored");
            assert!(
                host.pfs[0]
                    .vfs
                    .iter()
                    .all(|v| v.driver.as_deref() == Some("igbvf"))
            );
            assert_eq!(State::load(&UserFiles, dir.path()).unwrap(), before_state);
            assert!(!dir.path().join("journal.json").exists());
            host.faults.clear();
            apply_text(&mut host, &t2, "r3", true).unwrap();
            let (_, r) = apply_text(&mut host, &t2, "r4", true).unwrap();
            assert!(r.noop, "{op:?}#{nth} {errno}: converged");
        }
    }
    // Every kind of operation failed at several points of the run.
    assert!(rolled_back >= 15, "only {rolled_back} faults hit a step");
}

/// Transient EBUSY/EAGAIN (a VF resetting) is retried with a bound, then verified.
#[test]
fn transient_errors_are_retried_with_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    host.faults = vec![(Op::SetVf, 1, Errno::EAGAIN, 2)];
    let t = cfg_text(dir.path(), &[("a", &mac(1))], "");
    apply_text(&mut host, &t, "r1", false).unwrap();
    assert_eq!(host.pfs[0].vfs[0].config.mac, "02:00:00:00:01:01");
    // Beyond the bound it fails, and rolls back.
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    host.faults = vec![(Op::SetVf, 1, Errno::EBUSY, 10)];
    let t = cfg_text(dir.path(), &[("a", &mac(1))], "");
    assert!(matches!(
        apply_text(&mut host, &t, "r1", false),
        Err(ApplyError::RolledBack { .. })
    ));
    assert!(
        host.pfs[0].vfs.is_empty(),
        "the VFs this run created are gone again"
    );
}

/// The user's files, except that the journal cannot be written (a full disk).
#[derive(Debug)]
struct NoRoomForTheJournal;

impl Store for NoRoomForTheJournal {
    fn read_text(&self, path: &Path) -> Result<String, FilesError> {
        UserFiles.read_text(path)
    }
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
        UserFiles.write_atomic(path, bytes)
    }
    fn write_replace(&self, path: &Path, _: &[u8]) -> Result<(), FilesError> {
        Err(FilesError::Write {
            path: path.to_path_buf(),
            source: Errno::ENOSPC.into(),
        })
    }
    fn remove(&self, path: &Path) -> Result<(), FilesError> {
        UserFiles.remove(path)
    }
    fn lock_exclusive(&self, path: &Path) -> Result<Held<'_>, FilesError> {
        UserFiles.lock_exclusive(path)
    }
}

/// A step whose undo cannot be journaled is not run: the journal comes first.
#[test]
fn a_step_that_cannot_be_journaled_is_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let t = cfg_text(dir.path(), &[("a", &mac(1))], "");
    let plan = plan_for(&host, &t, false);
    let o = ApplyOptions {
        store: &NoRoomForTheJournal,
        ..opts(dir.path(), "r1")
    };
    match apply::apply(
        &mut host,
        &plan,
        &State::default(),
        &o,
        &mut |_, _, _, _| {},
    ) {
        Err(ApplyError::RolledBack {
            step: 1, source, ..
        }) => assert!(
            source
                .to_string()
                .starts_with("cannot journal the step, so it was not run: cannot write "),
            "{source}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(host.pfs[0].vfs.is_empty(), "no VF was created");
    assert!(!dir.path().join("state.json").exists());
}

/// A run killed after any journaled step leaves a journal; the next run rolls it back
/// and converges. Simulated by applying a prefix of the plan's steps by hand.
#[test]
fn a_killed_run_is_rolled_back_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let t = cfg_text(
        dir.path(),
        &[("a", &mac(1)), ("b", &mac(2))],
        "vf_driver = \"vfio-pci\"",
    );
    let full = plan_for(&host, &t, false);
    for cut in 1..=full.actions.len() {
        let dir2 = tempfile::tempdir().unwrap();
        let t = cfg_text(
            dir2.path(),
            &[("a", &mac(1)), ("b", &mac(2))],
            "vf_driver = \"vfio-pci\"",
        );
        let mut h = SimHost::igb(1);
        let mut prefix = plan_for(&h, &t, false);
        prefix.actions.truncate(cut);
        // "Kill" = apply the prefix, then put the journal back as a killed run leaves it.
        let o = opts(dir2.path(), "killed");
        let journal = std::sync::Mutex::new(None);
        apply::apply(
            &mut h,
            &prefix,
            &State::default(),
            &o,
            &mut |step, _, _, done| {
                if step == cut && done.is_some() {
                    *journal.lock().unwrap() = std::fs::read(dir2.path().join("journal.json")).ok();
                }
            },
        )
        .unwrap();
        std::fs::write(
            dir2.path().join("journal.json"),
            journal.into_inner().unwrap().unwrap(),
        )
        .unwrap();
        std::fs::remove_file(State::path(dir2.path())).ok();
        let (_, r) = apply_text(&mut h, &t, "next", false).unwrap();
        assert_eq!(r.recovered_steps, cut);
        assert_eq!(h.pfs[0].vfs.len(), 2);
        assert!(
            h.pfs[0]
                .vfs
                .iter()
                .all(|v| v.driver.as_deref() == Some("vfio-pci"))
        );
        let (_, r) = apply_text(&mut h, &t, "again", false).unwrap();
        assert!(r.noop);
    }
    let _ = (&mut host, plan::PlanOptions::default());
}
