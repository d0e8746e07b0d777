//! Issue 9 against the simulated host (src/sim.rs): PF channels and RSS tables through
//! plan + apply (order, read-back, rollback), and the planner's choice of per-vPort
//! queues by hwprofile and runtime features, with the reasons in the plan. The igb paths
//! are proven on the real driver in tests/vm/queues.rs.

use std::path::Path;
use std::time::Duration;

use vportd::apply::{ApplyError, ApplyOptions};
use vportd::config;
use vportd::host::ethtool::{Feature, equal_table, weighted_table};
use vportd::plan::{Action, Plan, PlanOptions};
use vportd::profile::ProfileSet;
use vportd::provision;
use vportd::sim::SimHost;
use vportd::state::VportPath;

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

fn facts(host: &SimHost) -> vportd::host::ethtool::QueueFacts {
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
/// ConnectX-6 with ntuple: an RSS context off the top of the channels. Apply does not
/// program either yet, and the reason says so.
#[test]
fn profiles_and_runtime_features_pick_the_queue_path() {
    let dir = tempfile::tempdir().unwrap();
    let on = Some(Feature {
        active: false,
        changeable: true,
    });
    let mut ixgbe = SimHost::igb(1);
    ixgbe.pfs[0].device = 0x10fb;
    ixgbe.pfs[0].driver = "ixgbe".into();
    ixgbe.pfs[0].vf_driver = "ixgbevf".into();
    ixgbe.pfs[0]
        .queue_facts
        .as_mut()
        .unwrap()
        .features
        .l2_fwd_offload = on;
    let t = text(dir.path(), "num_vfs = 0", &vport("q", 1, "queues = 2"));
    let r = &plan_for(&ixgbe, &t).placements[0].reason;
    assert!(r.contains("l2-fwd-offload would get a VMDq pool"), "{r}");

    let mut mlx = SimHost::igb(1);
    mlx.pfs[0].vendor = 0x15b3;
    mlx.pfs[0].device = 0x101d;
    mlx.pfs[0].driver = "mlx5_core".into();
    mlx.pfs[0].vf_driver = "mlx5_core".into();
    {
        let f = mlx.pfs[0].queue_facts.as_mut().unwrap();
        f.combined = Some(8);
        f.combined_max = Some(8);
        f.features.ntuple = on;
    }
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
