//! An uplink whose PF is administratively down (as PFs are at boot, before network
//! management): `apply` brings it up first, so VF rates (which igb refuses without link)
//! succeed; a rollback puts it down again; `bring_up = false` leaves it down, and the plan
//! warns of what that costs. Against the simulated igb host, whose PFs have carrier exactly
//! when up and refuse VF rates without it, as igb does (the guest proof: tests/vm/provision.rs).

use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use vportd::host::userfiles::UserFiles;
use vportd::model::profile::ProfileSet;
use vportd::provision;
use vportd::provision::apply::{ApplyError, ApplyOptions};
use vportd::provision::config;
use vportd::provision::plan::{Action, Plan, PlanOptions};
use vportd::provision::sim_host::{Op, SimHost};

fn text(dir: &Path, uplink_extra: &str) -> String {
    format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"0000:01:00.0\"\n{uplink_extra}\n\
         [[vport]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:01\"\n\
         max_tx_rate_mbps = 500\n",
        dir.display()
    )
}

fn plan_for(host: &SimHost, text: &str) -> Plan {
    let cfg = config::parse(Path::new("host.toml"), text).expect("config parses");
    provision::prepare_config(
        &UserFiles,
        cfg,
        &host.inventory(),
        ProfileSet::builtin(),
        PlanOptions::default(),
    )
    .expect("plans")
    .plan
}

fn apply(host: &mut SimHost, text: &str, run: &str) -> Result<bool, ApplyError> {
    let cfg = config::parse(Path::new("host.toml"), text).expect("config parses");
    let o = ApplyOptions {
        state_dir: cfg.state_dir.clone(),
        store: &UserFiles,
        retries: 1,
        retry_delay: Duration::ZERO,
        run_id: run.into(),
        // The simulated PF has carrier at once when up, and never while down.
        link_wait: Duration::from_millis(200),
    };
    let inv = host.inventory();
    let mut rediscover = |h: &SimHost| h.inventory();
    match provision::apply_config(
        host,
        cfg,
        inv,
        &mut rediscover,
        ProfileSet::builtin(),
        PlanOptions::default(),
        &o,
        &mut |_, _, _, _| {},
    ) {
        Ok((_, r)) => Ok(r.noop),
        Err(provision::ProvisionError::Apply(e)) => Err(*e),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn a_pf_left_down_is_brought_up_first_and_the_rates_then_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    host.pfs[0].admin_up = false;
    let t = text(dir.path(), "");
    let p = plan_for(&host, &t);
    assert_eq!(
        p.actions.first(),
        Some(&Action::SetPfLink {
            pf: "0000:01:00.0".into(),
            pf_ifindex: 10,
            up: true
        }),
        "{:?}",
        p.actions
    );
    assert_eq!(
        p.actions[0].describe(),
        "bring the PF 0000:01:00.0 (link 10) up"
    );
    assert!(!apply(&mut host, &t, "r1").unwrap());
    assert!(host.pfs[0].admin_up);
    assert_eq!(host.pfs[0].vfs[0].config.max_tx_rate, Some(500));
    assert!(
        apply(&mut host, &t, "r2").unwrap(),
        "a second apply does nothing"
    );
}

#[test]
fn a_rollback_puts_the_pf_down_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    host.pfs[0].admin_up = false;
    let t = text(dir.path(), "");
    host.faults = vec![(Op::SetVf, 1, Errno::EIO, 1)];
    match apply(&mut host, &t, "r1") {
        Err(ApplyError::RolledBack { .. }) => {}
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert!(!host.pfs[0].admin_up, "the rollback put the PF down again");
    assert!(host.pfs[0].vfs.is_empty());
    host.faults.clear();
    assert!(!apply(&mut host, &t, "r2").unwrap());
    assert!(host.pfs[0].admin_up);
}

#[test]
fn bring_up_false_leaves_the_pf_down_and_the_plan_says_what_that_costs() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    host.pfs[0].admin_up = false;
    let t = text(dir.path(), "bring_up = false");
    let p = plan_for(&host, &t);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SetPfLink { .. })),
        "{:?}",
        p.actions
    );
    assert!(
        p.warnings.iter().any(|w| w.contains("bring_up = false")
            && w.contains("administratively down")
            && w.contains("VF rates of a")),
        "{:?}",
        p.warnings
    );
    let e = apply(&mut host, &t, "r1").unwrap_err();
    assert!(e.to_string().contains("has no link"), "{e}");
    assert!(!host.pfs[0].admin_up);

    // A PF that is up needs no step, whatever bring_up says.
    host.pfs[0].admin_up = true;
    for extra in ["", "bring_up = false", "bring_up = true"] {
        let p = plan_for(&host, &text(dir.path(), extra));
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::SetPfLink { .. }))
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }
}
