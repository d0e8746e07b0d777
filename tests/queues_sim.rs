//! Issue 9 against the simulated host (src/sim.rs): PF channels and RSS tables through
//! plan + apply (order, read-back, rollback), and the planner's choice of per-vPort
//! queues by hwprofile and runtime features, with the reasons in the plan. The igb paths
//! are proven on the real driver in tests/vm/queues.rs.

use std::path::Path;
use std::time::Duration;

use vportd::host::userfiles::UserFiles;
use vportd::model::profile::ProfileSet;
use vportd::model::queues::{FlowTarget, equal_table, weighted_table};
use vportd::provision;
use vportd::provision::apply::{ApplyError, ApplyOptions};
use vportd::provision::config;
use vportd::provision::plan::{Action, Plan, PlanOptions};
use vportd::provision::sim_host::SimHost;
use vportd::provision::state::{QueueMode, State, VportPath};

fn text(dir: &Path, uplink: &str, vports: &str) -> String {
    format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"0000:01:00.0\"\n{uplink}\n{vports}",
        dir.display()
    )
}

fn vport(name: &str, i: u32, extra: &str) -> String {
    format!(
        "[[vport]]\nname = \"{name}\"\nuplink = \"0000:01:00.0\"\nmac = \"02:00:00:00:01:{i:02x}\"\n{extra}\n"
    )
}

fn plan_for(host: &SimHost, t: &str) -> Plan {
    let cfg = config::parse(Path::new("host.toml"), t).expect("config parses");
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

fn apply(host: &mut SimHost, t: &str, run: &str) -> Result<Plan, ApplyError> {
    let cfg = config::parse(Path::new("host.toml"), t).expect("config parses");
    let o = ApplyOptions {
        state_dir: cfg.state_dir.clone(),
        store: &UserFiles,
        retries: 2,
        retry_delay: Duration::ZERO,
        link_wait: Duration::from_secs(1),
        run_id: run.into(),
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
        Ok((p, _)) => Ok(p.plan),
        Err(provision::ProvisionError::Apply(e)) => Err(*e),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn facts(host: &SimHost) -> vportd::model::queues::QueueFacts {
    host.pfs[0].queue_facts.clone().unwrap()
}

#[test]
fn channels_then_table_and_a_second_apply_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let t = text(
        dir.path(),
        "num_vfs = 0\nchannels = 3\nrss_weights = [1, 2, 3]",
        "",
    );
    let p = apply(&mut host, &t, "r1").unwrap();
    let kinds: Vec<&str> = p
        .actions
        .iter()
        .map(|a| match a {
            Action::SetChannels { .. } => "channels",
            Action::SetRssTable { .. } => "rss",
            _ => "other",
        })
        .collect();
    // Lowering 4 -> 3: our table back to default first (the kernel refuses fewer channels
    // than a user-set table uses), then channels (the driver resets the table when the
    // queue count changes), then the table.
    assert_eq!(kinds, ["rss", "channels", "rss"]);
    assert_eq!(facts(&host).combined, Some(3));
    assert_eq!(facts(&host).rss_table, weighted_table(128, 0, &[1, 2, 3]));
    assert!(
        plan_for(&host, &t).is_noop(),
        "{:?}",
        plan_for(&host, &t).actions
    );
}

#[test]
fn lowering_channels_resets_our_table_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    apply(
        &mut host,
        &text(
            dir.path(),
            "num_vfs = 0\nchannels = 4\nrss_weights = [0, 1, 1, 1]",
            "",
        ),
        "r1",
    )
    .unwrap();
    let p = apply(
        &mut host,
        &text(dir.path(), "num_vfs = 0\nchannels = 2\nrss = \"equal\"", ""),
        "r2",
    )
    .unwrap();
    assert!(matches!(&p.actions[0], Action::SetRssTable { table, .. } if table.is_empty()));
    assert!(matches!(p.actions[1], Action::SetChannels { to: 2, .. }));
    assert_eq!(facts(&host).rss_table, Some(equal_table(128, 0, 2)));
}

#[test]
fn a_refused_table_rolls_back_the_channel_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    host.pfs[0].queue_refuses.push("rss");
    let e = apply(
        &mut host,
        &text(dir.path(), "num_vfs = 0\nchannels = 2\nrss = \"equal\"", ""),
        "r1",
    )
    .unwrap_err();
    assert!(matches!(e, ApplyError::RolledBack { step: 1, .. }), "{e}");
    host.pfs[0].queue_refuses.clear();
    host.pfs[0].queue_refuses.push("channels");
    let e = apply(
        &mut host,
        &text(dir.path(), "num_vfs = 0\nchannels = 2\nrss = \"equal\"", ""),
        "r2",
    )
    .unwrap_err();
    assert!(matches!(e, ApplyError::RolledBack { step: 2, .. }), "{e}");
    assert!(e.to_string().contains("EOPNOTSUPP"), "{e}");
    assert_eq!(facts(&host).combined, Some(4), "channels restored");
}

#[test]
fn channels_above_the_maximum_block_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let host = SimHost::igb(1);
    let p = plan_for(&host, &text(dir.path(), "channels = 16", ""));
    assert!(
        p.blockers
            .iter()
            .any(|b| b.contains("channels = 16 but the PF allows at most 8")),
        "{:?}",
        p.blockers
    );
}

#[test]
fn igb_refuses_every_queue_path_with_its_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let host = SimHost::igb(1);
    let t = text(dir.path(), "num_vfs = 0", &vport("q", 1, "queues = 2"));
    let p = plan_for(&host, &t);
    let pl = &p.placements[0];
    assert_eq!(pl.path, VportPath::Software);
    for why in [
        "no VF: PF 0000:01:00.0 has 0 VFs, all taken",
        "has no RSS contexts",
        "l2-fwd-offload off [fixed]",
        "ntuple-filters off [fixed]",
    ] {
        assert!(pl.reason.contains(why), "{why:?} not in {}", pl.reason);
    }
    // Forced, it blocks the plan instead.
    let t = text(
        dir.path(),
        "",
        &vport("q", 1, "queues = 2\nplacement = \"queues\""),
    );
    let p = plan_for(&host, &t);
    assert!(
        p.blockers.iter().any(|b| b.contains("has no RSS contexts")),
        "{:?}",
        p.blockers
    );
    // A vPort forced to software never asks for a VF.
    let p = plan_for(
        &host,
        &text(dir.path(), "", &vport("s", 1, "placement = \"software\"")),
    );
    assert!(p.placements[0].reason.contains("placement = \"software\""));
}

/// An ixgbe 82599 whose l2-fwd-offload can be turned on: a VMDq pool is chosen; an mlx5
/// ConnectX-6 with ntuple: an RSS context off the top of the channels, then (no room for
/// a second context) one ntuple queue.
#[test]
fn profiles_and_runtime_features_pick_the_queue_path() {
    let dir = tempfile::tempdir().unwrap();
    let ixgbe = SimHost::ixgbe(1);
    let t = text(dir.path(), "num_vfs = 0", &vport("q", 1, "queues = 2"));
    let p = plan_for(&ixgbe, &t);
    let r = &p.placements[0].reason;
    assert!(r.contains("l2-fwd-offload gets a VMDq pool"), "{r}");
    assert!(!r.contains("does not program"), "{r}");
    assert!(
        matches!(
            p.placements[0].path,
            VportPath::Queues {
                mode: QueueMode::Vmdq,
                ..
            }
        ),
        "{:?}",
        p.placements[0].path
    );

    let mlx = SimHost::mlx5(1);
    let t = text(
        dir.path(),
        "num_vfs = 0",
        &(vport("a", 1, "queues = 4") + &vport("b", 2, "queues = 4\nvlan = 7")),
    );
    let p = plan_for(&mlx, &t);
    assert!(
        p.placements[0]
            .reason
            .contains("RSS context over queues 4-7"),
        "{}",
        p.placements[0].reason
    );
    // 8 channels, queue 0 kept for the PF: b's 4 do not fit, so it falls to one ntuple queue.
    assert!(
        p.placements[1]
            .reason
            .contains("has 3 queue(s) left above queue 0, not 4"),
        "{}",
        p.placements[1].reason
    );
    assert!(
        p.placements[1]
            .reason
            .contains("ntuple rule on 02:00:00:00:01:02 into queue 3"),
        "{}",
        p.placements[1].reason
    );
}

fn mlx_config(dir: &Path, vports: &str) -> String {
    text(dir, "num_vfs = 0", vports)
}

/// mlx5: an RSS context + rule for one vPort, a single-queue ntuple rule for another, and
/// the PF's own RSS table narrowed to the queues below theirs; read back on the host; the
/// second apply does nothing; removing a vPort removes its rule and context; the state
/// records context id, table and rule slot; when no vPort owns a queue, the PF's table is
/// the driver's default again.
#[test]
fn rss_context_and_ntuple_steering_apply_and_undo() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::mlx5(1);
    let both = mlx_config(
        dir.path(),
        &(vport("a", 1, "queues = 4") + &vport("b", 2, "queues = 4\nvlan = 7")),
    );
    let p = apply(&mut host, &both, "r1").unwrap();
    let kinds: Vec<&str> = p
        .actions
        .iter()
        .map(|a| match a {
            Action::CreateRssContext { .. } => "context",
            Action::InsertRule { .. } => "rule",
            Action::SetRssTable { .. } => "table",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["context", "rule", "rule", "table"]);
    // a owns queues 4-7, b queue 3: the PF's own traffic spreads over 0-2 only.
    assert_eq!(facts(&host).rss_table, Some(equal_table(128, 0, 3)));
    let steer = &host.pfs[0].steer;
    assert_eq!(steer.contexts.len(), 1);
    let (id, table) = steer.contexts.iter().next().unwrap();
    assert_eq!(table, &equal_table(128, 4, 4));
    let rule_a = steer.rules[&0];
    assert_eq!(rule_a.dst_mac, [2, 0, 0, 0, 1, 1]);
    assert_eq!(rule_a.target, FlowTarget::Context { id: *id });
    let rule_b = steer.rules[&1];
    assert_eq!(rule_b.vlan, Some(7));
    assert_eq!(rule_b.target, FlowTarget::Queue { index: 3 });
    let st = State::load(&UserFiles, dir.path()).unwrap();
    assert_eq!(st.steering["a"].context, Some(*id));
    assert_eq!(st.steering["a"].location, Some(0));
    assert_eq!(st.steering["b"].location, Some(1));
    assert_eq!(st.steering["b"].mode, QueueMode::Ntuple);

    let again = plan_for(&host, &both);
    assert!(again.is_noop(), "{:?}", again.actions);

    // a goes: its rule, then its context; b keeps its rule.
    let p = apply(
        &mut host,
        &mlx_config(dir.path(), &vport("b", 2, "queues = 4\nvlan = 7")),
        "r2",
    )
    .unwrap();
    assert!(matches!(
        p.actions[0],
        Action::DeleteRule { location: 0, .. }
    ));
    assert!(matches!(p.actions[1], Action::DeleteRssContext { .. }));
    // b still owns queue 3; 4-7 are the PF's again.
    assert!(
        matches!(&p.actions[2], Action::SetRssTable { table, .. } if !table.is_empty()),
        "{:?}",
        p.actions
    );
    let pf_queues = [0, 1, 2, 4, 5, 6, 7];
    let want: Vec<u32> = (0..128).map(|i| pf_queues[i % 7]).collect();
    assert_eq!(facts(&host).rss_table, Some(want));
    let steer = &host.pfs[0].steer;
    assert!(steer.contexts.is_empty());
    assert_eq!(steer.rules.keys().copied().collect::<Vec<_>>(), [1]);
    let st = State::load(&UserFiles, dir.path()).unwrap();
    assert!(!st.steering.contains_key("a"));
    assert!(st.steering.contains_key("b"));

    // A forced placement = "queues" works where the NIC can.
    let forced = mlx_config(
        dir.path(),
        &(vport("b", 2, "queues = 4\nvlan = 7")
            + &vport("c", 3, "queues = 2\nplacement = \"queues\"")),
    );
    let p = apply(&mut host, &forced, "r3").unwrap();
    assert!(p.blockers.is_empty());
    let c = p.placements.iter().find(|x| x.vport == "c").unwrap();
    assert!(
        matches!(
            c.path,
            VportPath::Queues {
                mode: QueueMode::RssContext,
                count: 2,
                ..
            }
        ),
        "{c:?}"
    );
    assert_eq!(host.pfs[0].steer.contexts.len(), 1);
    // Everything gone: nothing left on the PF.
    let empty = mlx_config(dir.path(), "");
    apply(&mut host, &empty, "r4").unwrap();
    assert!(host.pfs[0].steer.contexts.is_empty());
    assert!(host.pfs[0].steer.rules.is_empty());
    assert!(
        State::load(&UserFiles, dir.path())
            .unwrap()
            .steering
            .is_empty()
    );
    assert_eq!(facts(&host).rss_table, Some(equal_table(128, 0, 8)));
    assert!(plan_for(&host, &empty).is_noop());
}

/// A table the config asks for keeps off the vPorts' queues too: `rss = "equal"` spreads
/// over the PF's queues only, `rss_weights` with weight on a vPort's queue is refused with
/// the queue named (and nothing changes), and lowering the channels under a table narrowed
/// for vPorts gives the table back to the driver first (the kernel refuses fewer channels
/// than a set table uses).
#[test]
fn the_pf_table_stays_off_the_vports_queues() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::mlx5(1);
    let a = vport("a", 1, "queues = 2");
    let equal = text(dir.path(), "num_vfs = 0\nrss = \"equal\"", &a);
    apply(&mut host, &equal, "r1").unwrap();
    // a owns 6-7 of 8.
    assert_eq!(facts(&host).rss_table, Some(equal_table(128, 0, 6)));
    assert!(plan_for(&host, &equal).is_noop());

    let weighted = text(
        dir.path(),
        "num_vfs = 0\nrss_weights = [1, 1, 1, 1, 1, 1, 0, 1]",
        &a,
    );
    let p = plan_for(&host, &weighted);
    assert!(
        p.blockers
            .iter()
            .any(|b| b.contains("weight to queue 7, which a vPort owns")),
        "{:?}",
        p.blockers
    );
    assert!(apply(&mut host, &weighted, "r2").is_err());
    assert_eq!(facts(&host).rss_table, Some(equal_table(128, 0, 6)));

    // No rss in the config, fewer channels: the vPort moves down with them.
    let four = text(dir.path(), "num_vfs = 0\nchannels = 4", &a);
    let p = apply(&mut host, &four, "r3").unwrap();
    let kinds: Vec<&str> = p
        .actions
        .iter()
        .map(|x| match x {
            Action::SetRssTable { table, .. } if table.is_empty() => "default",
            Action::SetRssTable { .. } => "table",
            Action::SetChannels { .. } => "channels",
            Action::DeleteRule { .. } | Action::DeleteRssContext { .. } => "release",
            Action::CreateRssContext { .. } | Action::InsertRule { .. } => "steer",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "release", "release", "default", "channels", "steer", "steer", "table"
        ],
        "{:?}",
        p.actions
    );
    assert_eq!(facts(&host).combined, Some(4));
    assert_eq!(facts(&host).rss_table, Some(equal_table(128, 0, 2)));
    assert!(plan_for(&host, &four).is_noop());
}

/// ixgbe: l2-fwd-offload on first, then the macvlan station; removal deletes the macvlan
/// and turns the feature back off.
#[test]
fn vmdq_macvlan_steering_apply_and_undo() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::ixgbe(1);
    let t = text(
        dir.path(),
        "num_vfs = 0",
        &vport("m", 1, "placement = \"queues\""),
    );
    let p = apply(&mut host, &t, "r1").unwrap();
    assert!(
        matches!(&p.actions[0], Action::SetFeature { on: true, .. }),
        "{:?}",
        p.actions
    );
    assert!(
        matches!(&p.actions[1], Action::CreateMacvlan { .. }),
        "{:?}",
        p.actions
    );
    let f = facts(&host).features.l2_fwd_offload.unwrap();
    assert!(f.active);
    let mv = host.pfs[0].steer.macvlans.clone();
    assert_eq!(mv.len(), 1);
    assert_eq!(mv[0].2, [2, 0, 0, 0, 1, 1]);
    assert!(mv[0].3, "the macvlan got a VMDq pool");
    let st = State::load(&UserFiles, dir.path()).unwrap();
    assert_eq!(st.steering["m"].macvlan, Some(mv[0].0));
    assert!(st.steering["m"].feature_set);
    assert!(plan_for(&host, &t).is_noop());

    apply(&mut host, &text(dir.path(), "num_vfs = 0", ""), "r2").unwrap();
    assert!(host.pfs[0].steer.macvlans.is_empty());
    assert!(!facts(&host).features.l2_fwd_offload.unwrap().active);
}

/// A refusal half way (the rule after its context; the macvlan after the feature) rolls
/// back what the run did: no context, the feature back off.
#[test]
fn a_refusal_mid_way_rolls_back_the_steering() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::mlx5(1);
    host.pfs[0].queue_refuses.push("ntuple");
    let e = apply(
        &mut host,
        &mlx_config(dir.path(), &vport("a", 1, "queues = 4")),
        "r1",
    )
    .unwrap_err();
    assert!(matches!(e, ApplyError::RolledBack { step: 2, .. }), "{e}");
    assert!(host.pfs[0].steer.contexts.is_empty(), "context rolled back");

    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::ixgbe(1);
    host.pfs[0].queue_refuses.push("macvlan");
    let e = apply(
        &mut host,
        &text(dir.path(), "num_vfs = 0", &vport("m", 1, "queues = 1")),
        "r1",
    )
    .unwrap_err();
    assert!(matches!(e, ApplyError::RolledBack { step: 2, .. }), "{e}");
    assert!(!facts(&host).features.l2_fwd_offload.unwrap().active);

    // A refused removal (the macvlan cannot be deleted) leaves the station in place and
    // the state as it was.
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::ixgbe(1);
    let t = text(dir.path(), "num_vfs = 0", &vport("m", 1, "queues = 1"));
    apply(&mut host, &t, "r1").unwrap();
    host.pfs[0].queue_refuses.push("macvlan-delete");
    let e = apply(&mut host, &text(dir.path(), "num_vfs = 0", ""), "r2").unwrap_err();
    assert!(matches!(e, ApplyError::RolledBack { .. }), "{e}");
    assert_eq!(host.pfs[0].steer.macvlans.len(), 1);
    assert!(
        State::load(&UserFiles, dir.path())
            .unwrap()
            .steering
            .contains_key("m")
    );
    host.pfs[0].queue_refuses.clear();
    apply(&mut host, &text(dir.path(), "num_vfs = 0", ""), "r3").unwrap();
    assert!(host.pfs[0].steer.macvlans.is_empty());
}

/// A run killed after any step (the journal left as kill -9 leaves it: the last step not
/// marked done, a new context's id not yet journaled) is rolled back by the next run,
/// which then converges; a third run does nothing.
#[test]
fn a_killed_steering_run_is_rolled_back_by_the_next() {
    for (name, host0, vports) in [
        (
            "mlx5",
            SimHost::mlx5(1),
            vport("a", 1, "queues = 4") + &vport("b", 2, "queues = 2\nvlan = 9"),
        ),
        ("ixgbe", SimHost::ixgbe(1), vport("m", 1, "queues = 1")),
    ] {
        let probe_dir = tempfile::tempdir().unwrap();
        let full = plan_for(&host0, &mlx_config(probe_dir.path(), &vports));
        for cut in 1..=full.actions.len() {
            let dir = tempfile::tempdir().unwrap();
            let t = mlx_config(dir.path(), &vports);
            let mut h = host0.clone();
            let mut prefix = plan_for(&h, &t);
            prefix.actions.truncate(cut);
            let o = ApplyOptions {
                state_dir: dir.path().to_path_buf(),
                store: &UserFiles,
                retries: 1,
                retry_delay: Duration::ZERO,
                link_wait: Duration::ZERO,
                run_id: "killed".into(),
            };
            let journal = std::sync::Mutex::new(None);
            vportd::provision::apply::apply(
                &mut h,
                &prefix,
                &State::default(),
                &o,
                &mut |step, _, _, done| {
                    if step == cut && done.is_some() {
                        *journal.lock().unwrap() =
                            std::fs::read(dir.path().join("journal.json")).ok();
                    }
                },
            )
            .unwrap();
            let journal = journal.into_inner().unwrap().unwrap();
            std::fs::write(dir.path().join("journal.json"), &journal).unwrap();
            std::fs::remove_file(State::path(dir.path())).ok();
            // Recovery leaves the PF as it was before the killed run.
            let mut r = h.clone();
            let undone = vportd::provision::apply::recover(&mut r, &State::default(), &o).unwrap();
            assert_eq!(undone, cut, "{name} cut {cut}");
            std::fs::write(dir.path().join("journal.json"), &journal).unwrap();
            assert!(r.pfs[0].steer.contexts.is_empty(), "{name} cut {cut}");
            assert!(r.pfs[0].steer.rules.is_empty(), "{name} cut {cut}");
            assert!(r.pfs[0].steer.macvlans.is_empty(), "{name} cut {cut}");
            assert_eq!(
                facts(&r).rss_table,
                facts(&host0).rss_table,
                "{name} cut {cut}: the PF's own table as it was"
            );
            assert_eq!(
                r.pfs[0].queue_facts.as_ref().unwrap().features,
                host0.pfs[0].queue_facts.as_ref().unwrap().features,
                "{name} cut {cut}"
            );
            // And a rerun converges, then does nothing.
            apply(&mut h, &t, "next").unwrap_or_else(|e| panic!("{name} cut {cut}: {e}"));
            let steer = &h.pfs[0].steer;
            assert_eq!(
                steer.contexts.len() + steer.rules.len() + steer.macvlans.len(),
                full.actions
                    .iter()
                    .filter(|a| !matches!(
                        a,
                        Action::SetFeature { .. } | Action::SetRssTable { .. }
                    ))
                    .count(),
                "{name} cut {cut}: {steer:?}"
            );
            assert!(plan_for(&h, &t).is_noop(), "{name} cut {cut}");
        }
    }
}

/// Two PFs, one vPort with steering on each; the config then drops the second uplink (and
/// its vPort).
fn two_uplinks(dir: &Path, second: bool, extra: &str) -> String {
    let mut t = format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"0000:01:00.0\"\nnum_vfs = 0\n{}",
        dir.display(),
        vport("a", 1, extra)
    );
    if second {
        t += &format!(
            "[[uplink]]\npci = \"0000:02:00.0\"\nnum_vfs = 0\n[[vport]]\nname = \"b\"\nuplink = \"0000:02:00.0\"\nmac = \"02:00:00:00:02:01\"\n{extra}\n"
        );
    }
    t
}

/// An uplink removed from the config: the next apply releases the steering its vPorts had
/// on that PF (rule before context; macvlan, then l2-fwd-offload back off), and a run killed
/// after any of those steps is rolled back by the next, which converges and then does
/// nothing. The first PF's steering is untouched throughout.
#[test]
fn steering_on_an_uplink_removed_from_the_config_is_released() {
    for (name, host0, extra) in [
        ("mlx5", SimHost::mlx5(2), "queues = 4"),
        ("ixgbe", SimHost::ixgbe(2), "placement = \"queues\""),
    ] {
        let probe = tempfile::tempdir().unwrap();
        let mut h = host0.clone();
        apply(&mut h, &two_uplinks(probe.path(), true, extra), "r1").unwrap();
        assert!(
            !h.pfs[1].steer.rules.is_empty() || !h.pfs[1].steer.macvlans.is_empty(),
            "{name}: {:?}",
            h.pfs[1].steer
        );
        let release = plan_for(&h, &two_uplinks(probe.path(), false, extra));
        let kinds: Vec<&str> = release
            .actions
            .iter()
            .map(|a| match a {
                Action::DeleteRule { pf, .. } if pf == "0000:02:00.0" => "rule",
                Action::DeleteRssContext { pf, .. } if pf == "0000:02:00.0" => "context",
                Action::DeleteMacvlan { pf, .. } if pf == "0000:02:00.0" => "macvlan",
                Action::SetFeature { pf, on: false, .. } if pf == "0000:02:00.0" => "feature",
                Action::SetRssTable { pf, table, .. }
                    if pf == "0000:02:00.0" && table.is_empty() =>
                {
                    "table"
                }
                Action::Record { .. } => "record",
                _ => "other",
            })
            .collect();
        let want: &[&str] = match name {
            "mlx5" => &["rule", "context", "table", "record"],
            _ => &["macvlan", "feature", "record"],
        };
        assert_eq!(kinds, want, "{name}: {:?}", release.actions);
        let steps = release
            .actions
            .iter()
            .filter(|a| !matches!(a, Action::Record { .. }))
            .count();
        for cut in 0..=steps {
            let dir = tempfile::tempdir().unwrap();
            let mut h = host0.clone();
            apply(&mut h, &two_uplinks(dir.path(), true, extra), "r1").unwrap();
            let a_before = format!("{:?}", h.pfs[0].steer);
            let one = two_uplinks(dir.path(), false, extra);
            if cut > 0 {
                // Killed after step `cut`: the journal as it was then, the state not yet
                // written.
                let before = State::load(&UserFiles, dir.path()).unwrap();
                let state_file = std::fs::read(State::path(dir.path())).unwrap();
                let mut prefix = plan_for(&h, &one);
                prefix.actions.truncate(cut);
                let o = ApplyOptions {
                    state_dir: dir.path().to_path_buf(),
                    store: &UserFiles,
                    retries: 1,
                    retry_delay: Duration::ZERO,
                    link_wait: Duration::ZERO,
                    run_id: "killed".into(),
                };
                let journal = std::sync::Mutex::new(None);
                vportd::provision::apply::apply(
                    &mut h,
                    &prefix,
                    &before,
                    &o,
                    &mut |step, _, _, done| {
                        if step == cut && done.is_some() {
                            *journal.lock().unwrap() =
                                std::fs::read(dir.path().join("journal.json")).ok();
                        }
                    },
                )
                .unwrap();
                let journal = journal.into_inner().unwrap().unwrap();
                std::fs::write(dir.path().join("journal.json"), &journal).unwrap();
                std::fs::write(State::path(dir.path()), &state_file).unwrap();
            }
            apply(&mut h, &one, "next").unwrap_or_else(|e| panic!("{name} cut {cut}: {e}"));
            let steer = &h.pfs[1].steer;
            assert!(
                steer.contexts.is_empty() && steer.rules.is_empty() && steer.macvlans.is_empty(),
                "{name} cut {cut}: {steer:?}"
            );
            assert_eq!(
                h.pfs[1].queue_facts.as_ref().unwrap().features,
                host0.pfs[1].queue_facts.as_ref().unwrap().features,
                "{name} cut {cut}: l2-fwd-offload as it was"
            );
            assert_eq!(
                format!("{:?}", h.pfs[0].steer),
                a_before,
                "{name} cut {cut}"
            );
            let st = State::load(&UserFiles, dir.path()).unwrap();
            assert!(!st.steering.contains_key("b"), "{name} cut {cut}");
            assert!(st.steering.contains_key("a"), "{name} cut {cut}");
            assert!(plan_for(&h, &one).is_noop(), "{name} cut {cut}");
        }
    }
}

/// An uplink removed from the config whose PF has left the host too: nothing to delete (its
/// rules and contexts went with it); the state's entry is dropped with a note in the plan.
#[test]
fn steering_of_a_pf_gone_from_the_host_is_dropped_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = SimHost::mlx5(2);
    apply(&mut h, &two_uplinks(dir.path(), true, "queues = 4"), "r1").unwrap();
    h.pfs.remove(1);
    let one = two_uplinks(dir.path(), false, "queues = 4");
    let p = apply(&mut h, &one, "r2").unwrap();
    let notes: Vec<&str> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Record { vport, what } if vport == "b" => Some(what.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        notes.iter().any(|n| n.contains(
            "steering on 0000:02:00.0 dropped from the state: its uplink left the config and the PF (ifindex 11) is no longer on this host"
        )),
        "{:?}",
        p.actions
    );
    assert!(
        !p.actions.iter().any(|a| matches!(
            a,
            Action::DeleteRule { .. } | Action::DeleteRssContext { .. }
        )),
        "{:?}",
        p.actions
    );
    let st = State::load(&UserFiles, dir.path()).unwrap();
    assert_eq!(st.steering.keys().collect::<Vec<_>>(), ["a"]);
    assert!(plan_for(&h, &one).is_noop());
}

/// The drift `vportd status` reports for each vPort (its VF checks plus the steering read
/// back from the host).
fn drift(host: &mut SimHost, dir: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let state = State::load(&UserFiles, dir).unwrap();
    let mut list = provision::status(&state, &host.inventory());
    provision::check_steering(host, &state, &mut list);
    list.into_iter().map(|s| (s.vport, s.drift)).collect()
}

/// `status` reads the programmed steering back: a rule, an RSS context or a macvlan deleted
/// behind vportd's back is drift of its vPort (the others stay in sync), and the next apply
/// programs it again, after which status is clean and a further plan does nothing.
#[test]
fn steering_deleted_behind_vportds_back_is_drift_and_apply_restores_it() {
    use vportd::provision::ops::QueueOps;
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::mlx5(1);
    let ifx = host.pfs[0].ifindex;
    let both = mlx_config(
        dir.path(),
        &(vport("a", 1, "queues = 4") + &vport("b", 2, "queues = 4\nvlan = 7")),
    );
    apply(&mut host, &both, "r1").unwrap();
    let clean = |d: &std::collections::BTreeMap<String, Vec<String>>| d.values().all(Vec::is_empty);
    assert!(clean(&drift(&mut host, dir.path())));

    // a's rule goes.
    host.delete_rule(ifx, 0).unwrap();
    let d = drift(&mut host, dir.path());
    assert_eq!(
        d["a"],
        ["ntuple rule 0 on 0000:01:00.0 (dst 02:00:00:00:01:01) is gone"],
        "{d:?}"
    );
    assert!(d["b"].is_empty(), "{d:?}");
    // `plan` and `apply --dry-run` read it back too, and show the rule programmed again.
    let cfg = config::parse(Path::new("host.toml"), &both).unwrap();
    let inv = host.inventory();
    let live = provision::prepare_config_read_back(
        &UserFiles,
        cfg,
        &inv,
        ProfileSet::builtin(),
        PlanOptions::default(),
        &mut host,
    )
    .unwrap();
    assert!(
        live.plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::InsertRule { vport, .. } if vport == "a")),
        "{:?}",
        live.plan.actions
    );
    apply(&mut host, &both, "r2").unwrap();
    assert!(
        clean(&drift(&mut host, dir.path())),
        "{:?}",
        host.pfs[0].steer
    );
    assert_eq!(host.pfs[0].steer.contexts.len(), 1, "no context leaked");
    assert!(plan_for(&host, &both).is_noop());

    // a's context goes (a driver reset drops it with the rule that used it).
    let id = State::load(&UserFiles, dir.path()).unwrap().steering["a"]
        .context
        .unwrap();
    host.pfs[0].steer.contexts.remove(&id);
    host.pfs[0].steer.rules.remove(&0);
    let d = drift(&mut host, dir.path());
    assert!(
        d["a"].contains(&format!("RSS context {id} on 0000:01:00.0 is gone")),
        "{d:?}"
    );
    assert!(d["b"].is_empty(), "{d:?}");
    apply(&mut host, &both, "r3").unwrap();
    assert!(
        clean(&drift(&mut host, dir.path())),
        "{:?}",
        host.pfs[0].steer
    );
    assert!(plan_for(&host, &both).is_noop());

    // b's slot now holds someone else's rule: drift, and apply neither deletes theirs nor
    // overwrites it: it stops with a clear error and changes nothing.
    let mut other = host.pfs[0].steer.rules[&1];
    other.dst_mac = [2, 0, 0, 0, 9, 9];
    host.pfs[0].steer.rules.insert(1, other);
    let d = drift(&mut host, dir.path());
    assert!(
        d["b"][0].starts_with("ntuple rule 1 on 0000:01:00.0 is not the one applied (dst 02:00:00:00:09:09 vlan 7 -> queue"),
        "{d:?}"
    );
    let before = format!("{:?}", host.pfs[0].steer);
    let e = apply(&mut host, &both, "r4").unwrap_err();
    assert!(
        e.to_string()
            .contains("ntuple slot 1 of 0000:01:00.0 holds a rule vportd did not record (dst 02:00:00:00:09:09); delete it or free the slot"),
        "{e}"
    );
    assert_eq!(format!("{:?}", host.pfs[0].steer), before);
    // Freed by its owner: the next apply puts b's rule back.
    host.delete_rule(ifx, 1).unwrap();
    apply(&mut host, &both, "r5").unwrap();
    assert!(
        clean(&drift(&mut host, dir.path())),
        "{:?}",
        host.pfs[0].steer
    );

    // ixgbe: the macvlan station goes.
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::ixgbe(1);
    let t = text(dir.path(), "num_vfs = 0", &vport("m", 1, "queues = 1"));
    apply(&mut host, &t, "r1").unwrap();
    assert!(clean(&drift(&mut host, dir.path())));
    let mv = host.pfs[0].steer.macvlans[0].0;
    host.delete_link(mv).unwrap();
    let d = drift(&mut host, dir.path());
    assert_eq!(
        d["m"],
        ["the macvlan station with MAC 02:00:00:00:01:01 on 0000:01:00.0 is gone"],
        "{d:?}"
    );
    apply(&mut host, &t, "r2").unwrap();
    assert_eq!(host.pfs[0].steer.macvlans.len(), 1);
    assert!(clean(&drift(&mut host, dir.path())));
    assert!(plan_for(&host, &t).is_noop());
}

/// The journal is written without fsync (src/apply.rs, `Journal::save`): a real process
/// killed with SIGKILL right after a step's host change leaves it intact for the next
/// process (the page cache outlives the process), whose apply rolls the run back and
/// converges. The host is the simulator, which dies with the child, so the parent replays
/// the child's (deterministic) steps on its own copy to hold the host the child left.
#[test]
fn a_journal_written_without_fsync_survives_sigkill() {
    const CHILD: &str = "VPORTD_QUEUES_SIGKILL_CHILD";
    let vports = vport("a", 1, "queues = 4") + &vport("b", 2, "queues = 2\nvlan = 9");
    if let Ok(spec) = std::env::var(CHILD) {
        // The child: apply from a clean host, SIGKILL itself after step `cut` changed it.
        let (dir, cut) = spec.split_once('|').unwrap();
        let cut: usize = cut.parse().unwrap();
        let t = mlx_config(Path::new(dir), &vports);
        let mut h = SimHost::mlx5(1);
        let p = plan_for(&h, &t);
        let o = ApplyOptions {
            state_dir: dir.into(),
            store: &UserFiles,
            retries: 1,
            retry_delay: Duration::ZERO,
            link_wait: Duration::ZERO,
            run_id: "killed".into(),
        };
        let _ = vportd::provision::apply::apply(
            &mut h,
            &p,
            &State::default(),
            &o,
            &mut |step, _, _, done| {
                if step == cut && done.is_some() {
                    // SAFETY: kill(2) on our own pid with a constant signal; no memory is
                    // shared with the kernel.
                    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                }
            },
        );
        unreachable!("the child was not killed at step {cut}");
    }
    let probe = tempfile::tempdir().unwrap();
    let steps = plan_for(&SimHost::mlx5(1), &mlx_config(probe.path(), &vports))
        .actions
        .len();
    assert_eq!(
        steps, 5,
        "a context and a rule for each vPort, then the PF's own table narrowed"
    );
    for cut in 1..=steps {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_journal_written_without_fsync_survives_sigkill",
                "--nocapture",
            ])
            .env(CHILD, format!("{}|{cut}", dir.path().display()))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "cut {cut}: {status:?}"
        );
        assert!(
            dir.path().join("journal.json").exists(),
            "cut {cut}: no journal left by the killed process"
        );
        assert!(
            !State::path(dir.path()).exists(),
            "cut {cut}: killed before the state"
        );
        // The host as the child left it: the same steps, replayed here.
        let t = mlx_config(dir.path(), &vports);
        let mut h = SimHost::mlx5(1);
        let mut prefix = plan_for(&h, &t);
        prefix.actions.truncate(cut);
        let scratch = tempfile::tempdir().unwrap();
        let o = ApplyOptions {
            state_dir: scratch.path().into(),
            store: &UserFiles,
            retries: 1,
            retry_delay: Duration::ZERO,
            link_wait: Duration::ZERO,
            run_id: "replay".into(),
        };
        vportd::provision::apply::apply(
            &mut h,
            &prefix,
            &State::default(),
            &o,
            &mut |_, _, _, _| {},
        )
        .unwrap();
        // The next run reads the killed one's journal, undoes its `cut` steps, converges.
        let cfg = config::parse(Path::new("host.toml"), &t).unwrap();
        let o = ApplyOptions {
            state_dir: cfg.state_dir.clone(),
            store: &UserFiles,
            run_id: "next".into(),
            ..o
        };
        let inv = h.inventory();
        let (_, report) = provision::apply_config(
            &mut h,
            cfg,
            inv,
            &mut |x: &SimHost| x.inventory(),
            ProfileSet::builtin(),
            PlanOptions::default(),
            &o,
            &mut |_, _, _, _| {},
        )
        .unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(report.recovered_steps, cut, "cut {cut}");
        let steer = &h.pfs[0].steer;
        assert_eq!(
            (steer.contexts.len(), steer.rules.len()),
            (2, 2),
            "cut {cut}: {steer:?}"
        );
        assert!(plan_for(&h, &t).is_noop(), "cut {cut}");
    }
}
