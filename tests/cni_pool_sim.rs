//! `[[pool]]` on the simulated igb host: the planner reserves each pool's VFs once (the lowest
//! no vPort and no switch VF holds), keeps them across runs and config reorderings, counts
//! them in the VF count, binds them to the pool's driver and leaves them clean, gives them to
//! no vPort, and refuses to take one an attachment holds (a pool shrunk or removed, a VF count
//! change). The same reservation on real igb/igbvf: tests/vm/cni_pool.rs.

use std::path::Path;
use std::time::Duration;

use vportd::host::userfiles::UserFiles;
use vportd::model::profile::ProfileSet;
use vportd::model::vf::VfConfig;
use vportd::provision;
use vportd::provision::apply::ApplyOptions;
use vportd::provision::config;
use vportd::provision::plan::{Plan, PlanOptions};
use vportd::provision::sim_host::SimHost;
use vportd::provision::state::{ATTACHMENTS_FILE, State, VportPath};

const PF: &str = "0000:01:00.0";

fn text(state_dir: &Path, uplink_extra: &str, vports: &[&str], pools: &str) -> String {
    let mut t = format!(
        "state_dir = \"{}\"\n[[uplink]]\npci = \"{PF}\"\n{uplink_extra}\n",
        state_dir.display()
    );
    for (i, name) in vports.iter().enumerate() {
        t += &format!(
            "[[vport]]\nname = \"{name}\"\nuplink = \"{PF}\"\nmac = \"02:00:00:00:01:{:02x}\"\n",
            i + 1
        );
    }
    t + pools
}

fn pool(name: &str, count: u32, extra: &str) -> String {
    format!("[[pool]]\nname = \"{name}\"\nuplink = \"{PF}\"\ncount = {count}\n{extra}\n")
}

fn plan_or_apply(host: &mut SimHost, text: &str, run: &str, apply: bool) -> Result<Plan, String> {
    let cfg = config::parse(Path::new("host.toml"), text).map_err(|e| e.to_string())?;
    let opts = ApplyOptions {
        state_dir: cfg.state_dir.clone(),
        retries: 3,
        retry_delay: Duration::ZERO,
        link_wait: Duration::from_secs(1),
        run_id: run.into(),
        store: &UserFiles,
    };
    let inv = host.inventory();
    if !apply {
        let prepared = provision::prepare_config(
            &UserFiles,
            cfg,
            &inv,
            ProfileSet::builtin(),
            PlanOptions::default(),
        )
        .map_err(|e| e.to_string())?;
        return Ok(prepared.plan);
    }
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

fn apply(host: &mut SimHost, text: &str, run: &str) -> Result<Plan, String> {
    plan_or_apply(host, text, run, true)
}

fn vf_of(plan: &Plan, vport: &str) -> VportPath {
    plan.placements
        .iter()
        .find(|p| p.vport == vport)
        .unwrap()
        .path
        .clone()
}

fn pool_vfs(dir: &Path, name: &str) -> Vec<u32> {
    State::load(&UserFiles, dir)
        .unwrap()
        .pools
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pool {name} in the state"))
        .vfs
        .clone()
}

/// An attachment book holding VF `vf` of the PF for container `id`.
fn hold(dir: &Path, holders: &[(&str, u32)]) {
    let entries: Vec<String> = holders
        .iter()
        .map(|(id, vf)| {
            format!(
                r#"{{"container_id":"{id}","ifname":"eth0","network":"n","netns":"/proc/1/ns/net","target":{{"pool":"p"}},"alloc":{{"kind":"vf","pool":"p","pf":"{PF}","vf":{vf}}},"mac":"02:00:00:00:09:01","asked":{{}},"attrs":{{}},"phase":"attached"}}"#
            )
        })
        .collect();
    std::fs::write(
        dir.join(ATTACHMENTS_FILE),
        format!("{{\"version\":1,\"attachments\":[{}]}}", entries.join(",")),
    )
    .unwrap();
}

#[test]
fn pools_take_the_lowest_free_vfs_clean_and_bound_and_keep_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    // A VF left dirty by someone: the pool makes it clean when it takes it.
    let pools = pool("ctr", 2, "driver = \"igbvf\"\nvlan = 100") + &pool("db", 1, "");
    let t = text(dir.path(), "num_vfs = 7\nswitch_vf = 0", &["a"], &pools);
    let p = apply(&mut host, &t, "r1").unwrap();
    // The switch's VF is 0, the pools take 1, 2 and 3 (config order), vPort a the next.
    assert_eq!(pool_vfs(dir.path(), "ctr"), [1, 2]);
    assert_eq!(pool_vfs(dir.path(), "db"), [3]);
    assert_eq!(vf_of(&p, "a"), VportPath::Vf { index: 4 });
    assert_eq!(host.pfs[0].vfs.len(), 7);
    for i in 1..=3 {
        let vf = &host.pfs[0].vfs[i];
        assert_eq!(vf.driver.as_deref(), Some("igbvf"), "VF {i} bound");
        assert_eq!(
            vf.config.vlan, 0,
            "VF {i} clean: the pool's vlan is a default for attachments, not set by apply"
        );
        assert_eq!(vf.config.mac, VfConfig::clean(i as u32).mac);
    }
    let state = State::load(&UserFiles, dir.path()).unwrap();
    assert_eq!(state.pools[0].defaults.vlan, Some(100));
    assert!(
        state
            .vports
            .values()
            .all(|v| matches!(v.path, VportPath::Vf { index: 4 }))
    );

    // Again: nothing to do. A new vPort and the pools in the other order: the pools keep
    // their VFs and the new vPort takes the lowest free one.
    let log = host.log.len();
    assert!(apply(&mut host, &t, "r2").unwrap().is_noop());
    assert_eq!(host.log.len(), log);
    let pools = pool("db", 1, "") + &pool("ctr", 2, "driver = \"igbvf\"\nvlan = 100");
    let t = text(
        dir.path(),
        "num_vfs = 7\nswitch_vf = 0",
        &["a", "b"],
        &pools,
    );
    let p = apply(&mut host, &t, "r4").unwrap();
    assert_eq!(pool_vfs(dir.path(), "ctr"), [1, 2]);
    assert_eq!(pool_vfs(dir.path(), "db"), [3]);
    assert_eq!(vf_of(&p, "a"), VportPath::Vf { index: 4 });
    assert_eq!(vf_of(&p, "b"), VportPath::Vf { index: 5 });
}

#[test]
fn a_vport_kept_in_the_state_keeps_its_vf_and_the_new_pool_goes_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let uplink = "num_vfs = 3";
    apply(&mut host, &text(dir.path(), uplink, &["a", "b"], ""), "r1").unwrap();
    // a has VF 0, b VF 1; b leaves, a pool of 2 arrives: VF 1 (b's, now released) and VF 2.
    let t = text(dir.path(), uplink, &["a"], &pool("ctr", 2, ""));
    let p = plan_or_apply(&mut host, &t, "r2", false).unwrap();
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    assert_eq!(p.pools[0].vfs, [1, 2]);
    apply(&mut host, &t, "r2").unwrap();
    assert_eq!(pool_vfs(dir.path(), "ctr"), [1, 2]);
    assert_eq!(
        host.pfs[0].vfs[1].config.mac,
        VfConfig::clean(1).mac,
        "b's MAC is gone"
    );
}

#[test]
fn a_pool_that_does_not_fit_is_a_blocker_and_a_held_vf_is_never_taken() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let total = host.pfs[0].total_vfs;
    let p = plan_or_apply(
        &mut host,
        &text(dir.path(), "", &["a"], &pool("big", total + 1, "")),
        "r0",
        false,
    )
    .unwrap();
    assert!(
        p.blockers.iter().any(|b| b.contains("pool \"big\" wants")),
        "{:?}",
        p.blockers
    );

    let t = text(dir.path(), "", &[], &pool("ctr", 3, ""));
    apply(&mut host, &t, "r1").unwrap();
    assert_eq!(pool_vfs(dir.path(), "ctr"), [0, 1, 2]);
    hold(dir.path(), &[("c2", 2)]);
    // Shrinking below the held VF 2, removing the pool, changing the VF count: refused,
    // naming the container; shrinking off a free VF is fine.
    let shrunk = text(dir.path(), "", &[], &pool("ctr", 2, ""));
    let err = apply(&mut host, &shrunk, "r2").unwrap_err();
    assert!(err.contains("container c2's eth0 holds it"), "{err}");
    let err = apply(&mut host, &text(dir.path(), "", &[], ""), "r3").unwrap_err();
    assert!(err.contains("container c2's eth0 holds it"), "{err}");
    let resized = text(dir.path(), "num_vfs = 5", &[], &pool("ctr", 3, ""));
    let err = apply(&mut host, &resized, "r4").unwrap_err();
    assert!(
        err.contains("destroys VF 2, which container c2's eth0 holds"),
        "{err}"
    );
    assert_eq!(pool_vfs(dir.path(), "ctr"), [0, 1, 2], "nothing changed");
    hold(dir.path(), &[("c0", 0)]);
    apply(&mut host, &shrunk, "r5").unwrap();
    assert_eq!(pool_vfs(dir.path(), "ctr"), [0, 1]);
}

#[test]
fn the_pools_come_first_and_the_count_covers_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let t = text(dir.path(), "", &["a"], &pool("ctr", 2, ""));
    let p = apply(&mut host, &t, "r1").unwrap();
    assert_eq!(pool_vfs(dir.path(), "ctr"), [0, 1]);
    assert_eq!(vf_of(&p, "a"), VportPath::Vf { index: 2 });
    assert_eq!(host.pfs[0].vfs.len(), 3, "the pools count in num_vfs");
    // A pool as big as the PF leaves a preferred vPort the software path.
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let total = host.pfs[0].total_vfs;
    let t = text(dir.path(), "", &["a"], &pool("all", total, ""));
    let p = apply(&mut host, &t, "r1").unwrap();
    assert_eq!(vf_of(&p, "a"), VportPath::Software);
}

#[test]
fn pools_are_shown_in_the_plan_json_only_when_there_are_some() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    let p = plan_or_apply(&mut host, &text(dir.path(), "", &["a"], ""), "r", false).unwrap();
    assert!(!serde_json::to_string(&p).unwrap().contains("pools"));
    let t = text(dir.path(), "", &["a"], &pool("ctr", 1, ""));
    let p = plan_or_apply(&mut host, &t, "r", false).unwrap();
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["pools"][0]["name"], "ctr");
    assert_eq!(json["pools"][0]["vfs"], serde_json::json!([0]));
}

/// `vportd discover --state-dir DIR` and `vportd status`: each pool, its VFs and who holds
/// them (from the attachment book), as a table and (discover) as JSON `pools`.
#[test]
fn discover_and_status_show_the_pools_and_their_holders() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::igb(1);
    apply(
        &mut host,
        &text(dir.path(), "", &[], &pool("ctr", 3, "")),
        "r1",
    )
    .unwrap();
    hold(dir.path(), &[("c1", 1)]);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vportd"))
            .args(args)
            .args(["--state-dir", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/guest-82576-7vfs"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&["discover", "--fixture", fixture, "--json"])).unwrap();
    assert_eq!(
        json["pools"],
        serde_json::json!([{
            "pool": "ctr", "uplink": PF, "vfs": [0, 1, 2], "capacity": 3, "allocated": 1,
            "holders": {"1": "container c1's eth0"}
        }])
    );
    let table = run(&["discover", "--fixture", fixture]);
    assert!(table.contains("POOL"), "{table}");
    assert!(table.contains("vf 1: container c1's eth0"), "{table}");
    let status = run(&["status"]);
    let row = status
        .lines()
        .find(|l| l.starts_with("ctr"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(row.contains("0,1,2") && row.contains("1/3"), "{row}");
}
