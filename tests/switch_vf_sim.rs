//! `[[uplink]] switch_vf`: the VF the software switch trunks through, on the simulated igb
//! host. The planner gives it to no vPort (a vPort holding it moves), creates it when the
//! count must grow, trusts it and turns its spoof checking off, and a second apply changes
//! nothing. Bad values are refused with where and what, before anything is written. The same
//! VF carries real traffic in the SR-IOV guest (tests/vm/switch_vf.rs).

use std::path::Path;
use std::time::Duration;

use vportd::host::userfiles::UserFiles;
use vportd::model::profile::ProfileSet;
use vportd::provision;
use vportd::provision::apply::ApplyOptions;
use vportd::provision::config;
use vportd::provision::plan::{Action, PlanOptions, SWITCH_VF_HOLDER};
use vportd::provision::sim_host::SimHost;
use vportd::provision::state::{State, VportPath};

fn text(state_dir: &Path, uplink_extra: &str, vports: &[(&str, &str)]) -> String {
    let mut t = format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"0000:01:00.0\"\n{uplink_extra}\n",
        state_dir.display()
    );
    for (i, (name, body)) in vports.iter().enumerate() {
        t += &format!(
            "[[vport]]\nname = \"{name}\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:{:02x}\"\n{body}\n",
            i + 1
        );
    }
    t
}

fn apply(
    host: &mut SimHost,
    text: &str,
    run: &str,
) -> Result<vportd::provision::plan::Plan, String> {
    let cfg = config::parse(Path::new("host.toml"), text).map_err(|e| e.to_string())?;
    let opts = ApplyOptions {
        state_dir: cfg.state_dir.clone(),
        store: &UserFiles,
        retries: 3,
        retry_delay: Duration::ZERO,
        link_wait: Duration::from_secs(1),
        run_id: run.into(),
    };
    let inv = host.inventory();
    let mut rediscover = |h: &SimHost| h.inventory();
    provision::apply_config(
        host,
        cfg,
        inv,
        &mut rediscover,
        ProfileSet::builtin(),
        PlanOptions::default(),
        &opts,
        &mut |_, _, _, _| {},
    )
    .map(|(p, _)| p.plan)
    .map_err(|e| e.to_string())
}

#[test]
fn the_switch_vf_is_reserved_trusted_and_unchecked_and_a_rerun_is_a_noop() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let t = text(
        dir.path(),
        "switch_vf = 0",
        &[("a", ""), ("b", ""), ("soft", "offload = \"never\"")],
    );
    let p = apply(&mut host, &t, "r1").unwrap();
    // a and b take VFs 1 and 2 (VF 0 is the switch's); the count covers all three.
    let place = |name: &str| {
        p.placements
            .iter()
            .find(|pl| pl.vport == name)
            .unwrap()
            .path
            .clone()
    };
    assert_eq!(place("a"), VportPath::Vf { index: 1 });
    assert_eq!(place("b"), VportPath::Vf { index: 2 });
    assert_eq!(place("soft"), VportPath::Software);
    assert_eq!(host.pfs[0].vfs.len(), 3);
    let configured: Vec<&Action> = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::ConfigureVf { vport, .. } if vport == SWITCH_VF_HOLDER))
        .collect();
    assert_eq!(configured.len(), 1, "{:?}", p.actions);
    assert!(
        configured[0]
            .describe()
            .starts_with("configure VF 0 of 0000:01:00.0 for the software switch"),
        "{}",
        configured[0].describe()
    );
    let vf0 = &host.pfs[0].vfs[0].config;
    assert_eq!(
        (vf0.trust, vf0.spoofchk, vf0.vlan),
        (Some(true), Some(false), 0)
    );
    assert_eq!(
        vf0.mac, "00:00:00:00:00:00",
        "no admin MAC: the VF keeps its own"
    );
    // Nothing recorded for the switch's VF in the state: no vPort holds it.
    let state = State::load(&UserFiles, dir.path()).unwrap();
    assert!(
        state
            .vports
            .values()
            .all(|v| v.path != VportPath::Vf { index: 0 })
    );

    let log = host.log.len();
    let again = apply(&mut host, &t, "r2").unwrap();
    assert!(again.is_noop(), "{:?}", again.actions);
    assert_eq!(host.log.len(), log, "nothing written the second time");

    // Someone turns spoof checking back on: the next apply turns it off again, and only that.
    host.pfs[0].vfs[0].config.spoofchk = Some(true);
    let fix = apply(&mut host, &t, "r3").unwrap();
    assert_eq!(fix.actions.len(), 1, "{:?}", fix.actions);
    assert_eq!(host.pfs[0].vfs[0].config.spoofchk, Some(false));
}

#[test]
fn a_vport_holding_the_vf_the_switch_now_takes_moves_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let vports = [("a", ""), ("b", "")];
    apply(&mut host, &text(dir.path(), "num_vfs = 4", &vports), "r1").unwrap();
    assert_eq!(
        State::load(&UserFiles, dir.path()).unwrap().vports["a"].path,
        VportPath::Vf { index: 0 }
    );
    let t = text(dir.path(), "num_vfs = 4\nswitch_vf = 0", &vports);
    let p = apply(&mut host, &t, "r2").unwrap();
    let state = State::load(&UserFiles, dir.path()).unwrap();
    assert_eq!(state.vports["a"].path, VportPath::Vf { index: 2 });
    assert_eq!(state.vports["b"].path, VportPath::Vf { index: 1 });
    // a's MAC went with it; VF 0 is the switch's, trusted, without its old admin MAC.
    assert_eq!(host.pfs[0].vfs[2].config.mac, "02:00:00:00:01:01");
    let vf0 = &host.pfs[0].vfs[0].config;
    assert_eq!(
        (vf0.trust, vf0.spoofchk),
        (Some(true), Some(false)),
        "{p:?}"
    );
    assert_eq!(vf0.mac, "00:00:00:00:00:00");
    assert!(apply(&mut host, &t, "r3").unwrap().is_noop());
}

#[test]
fn a_switch_vf_outside_the_pf_is_refused_with_where_and_what() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    // Outside num_vfs: the config alone says so, at the value.
    let e = apply(
        &mut host,
        &text(dir.path(), "num_vfs = 2\nswitch_vf = 2", &[("a", "")]),
        "r1",
    )
    .unwrap_err();
    assert!(
        e.contains("host.toml:5:13")
            && e.contains(
                "uplink \"0000:01:00.0\": switch_vf 2 is not one of its 2 VFs (num_vfs = 2)"
            ),
        "{e}"
    );
    // Outside what the PF has (an 82576 has 7): checked against the host.
    let e = apply(
        &mut host,
        &text(dir.path(), "switch_vf = 7", &[("a", "")]),
        "r1",
    )
    .unwrap_err();
    assert!(
        e.contains("host.toml:2:1")
            && e.contains(
                "uplink pci 0000:01:00.0: switch_vf 7, but 0000:01:00.0 has VFs 0 to 6 at most (sriov_totalvfs 7)"
            ),
        "{e}"
    );
    // Not a number of the right kind.
    let e = apply(
        &mut host,
        &text(dir.path(), "switch_vf = -1", &[("a", "")]),
        "r1",
    )
    .unwrap_err();
    assert!(e.contains("switch_vf -1 is outside 0..65534"), "{e}");
    // Nothing was written.
    assert!(host.pfs[0].vfs.is_empty());
    assert!(host.log.is_empty(), "{:?}", host.log);
}

#[test]
fn more_software_vports_than_the_vf_driver_filters_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let soft = "offload = \"never\"";
    let three = [("s1", soft), ("s2", soft), ("s3", soft)];
    let p = apply(&mut host, &text(dir.path(), "switch_vf = 0", &three), "r1").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let four = [("s1", soft), ("s2", soft), ("s3", soft), ("s4", soft)];
    let p = apply(&mut host, &text(dir.path(), "switch_vf = 0", &four), "r2").unwrap();
    assert_eq!(
        p.warnings,
        vec![
            "uplink 0000:01:00.0: 4 software vPorts trunk through VF 0, but igbvf (Intel 82576 hwprofile) has its PF filter at most 3 unicast addresses per VF: the vPorts past that are not reachable from the wire"
        ]
    );
    // Without switch_vf the trunk is the PF: no such limit.
    let p = apply(&mut host, &text(dir.path(), "", &four), "r3").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}
