//! `vportd plan`, `apply` and `status` against the real igb/igbvf drivers: what vportd
//! says it did must be what `ip -d link show` and sysfs show.

use std::time::Duration;

use serde_json::Value;

use crate::rig::{Rig, rig_or_skip};
use crate::{boot, run};

/// The VF entries of `ip -d -j link show eth0`, by VF index.
fn ip_vfs(json: &str) -> Vec<Value> {
    let links: Vec<Value> = serde_json::from_str(json).expect("ip -j prints JSON");
    links[0]["vfinfo_list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn vf(vfs: &[Value], index: u64) -> &Value {
    vfs.iter()
        .find(|v| v["vf"] == index)
        .unwrap_or_else(|| panic!("ip shows no VF {index}: {vfs:?}"))
}

fn vlan_of(v: &Value) -> (u64, u64) {
    // iproute2 prints the port VLAN as vlan_list [{vlan, qos}] (absent when 0).
    match v["vlan_list"].as_array().and_then(|l| l.first()) {
        Some(x) => (
            x["vlan"].as_u64().unwrap_or(0),
            x["qos"].as_u64().unwrap_or(0),
        ),
        None => (0, 0),
    }
}

#[test]
fn provision_vports_onto_igb_vfs() {
    crate::stall_retry(
        "provision_vports_onto_igb_vfs",
        provision_vports_onto_igb_vfs_once,
    );
}

fn provision_vports_onto_igb_vfs_once() {
    let test = "provision_vports_onto_igb_vfs";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(2));
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/provision.sh"),
        Duration::from_secs(300),
    )
    .success();
    let rc = |s: &str| o.text(&format!("{s}.rc")).trim().parse::<i32>().unwrap();
    let out = |s: &str| o.text(&format!("{s}.out")) + &o.text(&format!("{s}.err"));
    let numvfs = |s: &str| o.text(&format!("{s}.numvfs")).trim().to_string();

    // plan: VFs for a and b, the software path for c (igb has no VF link state) and d.
    assert_eq!(rc("plan"), 0, "{}", out("plan"));
    let plan: Value = serde_json::from_str(&o.text("plan.out")).unwrap();
    let place = |name: &str| {
        plan["placements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["vport"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no placement for {name}"))
    };
    assert_eq!(place("vm-a")["path"]["kind"], "vf");
    assert_eq!(place("vm-a")["path"]["index"], 0);
    assert_eq!(place("vm-b")["path"]["index"], 1);
    assert_eq!(place("vm-c")["path"]["kind"], "software");
    assert!(
        place("vm-c")["reason"]
            .as_str()
            .unwrap()
            .contains("igb cannot set a VF link state"),
        "{}",
        place("vm-c")
    );
    assert_eq!(place("vm-d")["path"]["kind"], "software");

    // offload = "required" that igb cannot meet: refused before touching anything.
    assert_eq!(rc("required"), 1, "{}", out("required"));
    assert!(out("required").contains("vm-e"), "{}", out("required"));
    assert_eq!(numvfs("required"), "0", "a refused apply creates no VF");

    // First apply: 2 VFs, configured as asked, as the real driver reports them.
    assert_eq!(rc("apply1"), 0, "{}", out("apply1"));
    assert_eq!(numvfs("apply1"), "2");
    let vfs = ip_vfs(&o.text("apply1.ip.json"));
    let a = vf(&vfs, 0);
    assert_eq!(a["address"], "02:00:00:00:0a:01", "{a}");
    assert_eq!(vlan_of(a), (100, 3), "{a}");
    assert_eq!(a["rate"]["max_tx"], 500, "{a}");
    assert_eq!(a["spoofchk"], true, "{a}");
    let b = vf(&vfs, 1);
    assert_eq!(b["address"], "02:00:00:00:0a:02", "{b}");
    assert_eq!(b["spoofchk"], false, "{b}");
    assert_eq!(b["trust"], true, "{b}");
    for line in o.text("apply1.vfs").lines() {
        assert!(line.ends_with(" igbvf"), "VFs are bound to igbvf: {line}");
    }
    let state: Value = serde_json::from_str(&o.text("state1.json")).unwrap();
    assert_eq!(state["vports"]["vm-c"]["path"]["kind"], "software");
    assert!(state["vports"]["vm-a"]["vf_bdf"].is_string());

    // Second apply: nothing to do, and it says so.
    assert_eq!(rc("apply2"), 0, "{}", out("apply2"));
    assert!(out("apply2").contains("nothing to do"), "{}", out("apply2"));

    // status: in sync, then drift after a manual change, then apply restores it.
    assert_eq!(rc("status1"), 0, "{}", out("status1"));
    assert_eq!(rc("status2"), 3, "{}", out("status2"));
    assert!(out("status2").contains("DRIFT"), "{}", out("status2"));
    assert!(out("status2").contains("vlan is 200"), "{}", out("status2"));
    assert_eq!(rc("apply3"), 0, "{}", out("apply3"));
    assert_eq!(vlan_of(vf(&ip_vfs(&o.text("apply3.ip.json")), 0)), (100, 3));
    assert_eq!(rc("status3"), 0, "{}", out("status3"));

    // Removing vm-a: its VF returns to a clean state; vm-b keeps VF 1.
    assert_eq!(rc("release"), 0, "{}", out("release"));
    let vfs = ip_vfs(&o.text("release.ip.json"));
    let freed = vf(&vfs, 0);
    assert_eq!(freed["address"], "00:00:00:00:00:00", "{freed}");
    assert_eq!(vlan_of(freed), (0, 0), "{freed}");
    assert_eq!(freed["rate"]["max_tx"], 0, "{freed}");
    assert_eq!(freed["spoofchk"], true, "{freed}");
    assert_eq!(freed["trust"], false, "{freed}");
    assert_eq!(vf(&vfs, 1)["address"], "02:00:00:00:0a:02");

    // 2 -> 3 VFs goes through 0: refused without --allow-disruption, naming vm-b.
    assert_eq!(rc("resize-refused"), 1, "{}", out("resize-refused"));
    assert!(
        out("resize-refused").contains("vm-b"),
        "{}",
        out("resize-refused")
    );
    assert!(out("resize-refused").contains("--allow-disruption"));
    assert_eq!(numvfs("resize-refused"), "2");
    assert_eq!(rc("resize"), 0, "{}", out("resize"));
    assert_eq!(numvfs("resize"), "3");
    let vfs = ip_vfs(&o.text("resize.ip.json"));
    assert_eq!(
        vf(&vfs, 1)["address"],
        "02:00:00:00:0a:02",
        "vm-b keeps VF 1"
    );
    assert_eq!(vf(&vfs, 1)["trust"], true);
    assert_eq!(rc("resize2"), 0, "{}", out("resize2"));
    assert!(
        out("resize2").contains("nothing to do"),
        "{}",
        out("resize2")
    );

    pf_left_down(&o);
}

/// Whether `ip -j link show`'s flags of the link say it is administratively up.
fn admin_up(ip_json: &str) -> bool {
    let links: Vec<Value> = serde_json::from_str(ip_json).expect("ip -j prints JSON");
    links[0]["flags"]
        .as_array()
        .expect("ip -j shows flags")
        .iter()
        .any(|f| f == "UP")
}

/// eth1, left down as the guest booted it: VF rates applied from a PF that is down.
fn pf_left_down(o: &crate::rig::Outcome) {
    let rc = |s: &str| o.text(&format!("{s}.rc")).trim().parse::<i32>().unwrap();
    let out = |s: &str| o.text(&format!("{s}.out")) + &o.text(&format!("{s}.err"));
    let numvfs = |s: &str| o.text(&format!("{s}.numvfs")).trim().to_string();
    let up = |s: &str| admin_up(&o.text(&format!("{s}.ip.json")));
    let pf_line = o.text("down.pf");
    let (pf1, ifindex) = pf_line.trim().split_once(' ').expect("pf ifindex");
    assert!(!up("down-before"), "eth1 is down at boot");

    // bring_up = false: the rates fail without link, everything is rolled back.
    assert_eq!(rc("down-optout"), 1, "{}", out("down-optout"));
    assert!(
        out("down-optout").contains("has no link"),
        "{}",
        out("down-optout")
    );
    assert!(!up("down-optout"), "bring_up = false left eth1 down");
    assert_eq!(numvfs("down-optout"), "0");

    // By default the plan brings the PF up, first.
    assert_eq!(rc("down-plan"), 0, "{}", out("down-plan"));
    let step = format!("1. bring the PF {pf1} (link {ifindex}) up");
    assert!(out("down-plan").contains(&step), "{}", out("down-plan"));

    // A failure after it: the rollback puts the PF down again.
    assert_eq!(rc("down-rollback"), 1, "{}", out("down-rollback"));
    assert!(
        out("down-rollback").contains("rolled back"),
        "{}",
        out("down-rollback")
    );
    assert!(!up("down-rollback"), "the rollback put eth1 down again");
    assert_eq!(numvfs("down-rollback"), "0");

    // Then apply succeeds from the PF left down: up, and both VF rates as the driver has them.
    assert_eq!(rc("down-apply"), 0, "{}", out("down-apply"));
    assert!(up("down-apply"), "apply brought eth1 up");
    assert_eq!(numvfs("down-apply"), "2");
    let vfs = ip_vfs(&o.text("down-apply.ip.json"));
    assert_eq!(vf(&vfs, 0)["address"], "02:00:00:00:0b:01");
    assert_eq!(vf(&vfs, 0)["rate"]["max_tx"], 300, "{}", vf(&vfs, 0));
    assert_eq!(vf(&vfs, 1)["address"], "02:00:00:00:0b:02");
    assert_eq!(vf(&vfs, 1)["rate"]["max_tx"], 200, "{}", vf(&vfs, 1));
    assert_eq!(rc("down-apply2"), 0, "{}", out("down-apply2"));
    assert!(
        out("down-apply2").contains("nothing to do"),
        "{}",
        out("down-apply2")
    );
}

/// What `ip -d -j link show` says of one VF, reduced to what vportd sets.
fn ip_vf_summary(v: &Value) -> String {
    let (vlan, qos) = vlan_of(v);
    format!(
        "mac {} vlan {vlan} qos {qos} max_tx {} spoofchk {} trust {}",
        v["address"].as_str().unwrap_or("-"),
        v["rate"]["max_tx"].as_u64().unwrap_or(0),
        v["spoofchk"].as_bool().unwrap_or(false),
        v["trust"].as_bool().unwrap_or(false)
    )
}

/// Every VF of both PFs, as ip shows them, by (netdev, index).
fn host_vfs(o: &crate::rig::Outcome, snap: &str) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    for dev in ["eth0", "eth1"] {
        for v in ip_vfs(&o.text(&format!("{snap}.{dev}.json"))) {
            out.push((
                dev.to_string(),
                v["vf"].as_u64().unwrap(),
                ip_vf_summary(&v),
            ));
        }
    }
    out
}

/// The expected host after applying /tmp/full.toml of provision_full.sh: vPorts in name
/// order per PF, a5 on a VF without its link state (optional), b2 on the software path.
fn full_expected() -> Vec<(String, u64, String)> {
    let on = |dev: &str, vf: u64, s: &str| (dev.to_string(), vf, s.to_string());
    vec![
        on(
            "eth0",
            0,
            "mac 02:00:00:00:00:10 vlan 10 qos 1 max_tx 0 spoofchk true trust false",
        ),
        on(
            "eth0",
            1,
            "mac 02:00:00:00:00:11 vlan 0 qos 0 max_tx 100 spoofchk true trust false",
        ),
        on(
            "eth0",
            2,
            "mac 02:00:00:00:00:12 vlan 0 qos 0 max_tx 0 spoofchk true trust true",
        ),
        on(
            "eth0",
            3,
            "mac 02:00:00:00:00:13 vlan 0 qos 0 max_tx 0 spoofchk false trust false",
        ),
        on(
            "eth0",
            4,
            "mac 02:00:00:00:00:14 vlan 4094 qos 7 max_tx 250 spoofchk true trust false",
        ),
        on(
            "eth0",
            5,
            "mac 02:00:00:00:00:15 vlan 0 qos 0 max_tx 0 spoofchk true trust false",
        ),
        on(
            "eth0",
            6,
            "mac 02:00:00:00:00:16 vlan 0 qos 0 max_tx 0 spoofchk true trust false",
        ),
        on(
            "eth1",
            0,
            "mac 02:00:00:00:01:10 vlan 20 qos 0 max_tx 0 spoofchk true trust false",
        ),
        on(
            "eth1",
            1,
            "mac 02:00:00:00:01:11 vlan 0 qos 0 max_tx 0 spoofchk false trust true",
        ),
    ]
}

#[test]
fn provision_ten_vports_on_two_pfs_with_kills() {
    crate::stall_retry(
        "provision_ten_vports_on_two_pfs_with_kills",
        provision_ten_vports_on_two_pfs_with_kills_once,
    );
}

fn provision_ten_vports_on_two_pfs_with_kills_once() {
    let test = "provision_ten_vports_on_two_pfs_with_kills";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(2));
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/provision_full.sh"),
        Duration::from_secs(900),
    )
    .success();
    let rc = |s: &str| o.text(&format!("{s}.rc")).trim().parse::<i32>().unwrap();
    let out = |s: &str| o.text(&format!("{s}.out")) + &o.text(&format!("{s}.err"));
    let numvfs = |s: &str| o.text(&format!("{s}.numvfs")).trim().to_string();

    // A bad config: exit 2, file:line:col, nothing touched.
    assert_eq!(rc("bad"), 2, "{}", out("bad"));
    assert!(out("bad").contains("bad.toml:8:8"), "{}", out("bad"));
    assert_eq!(numvfs("bad"), "0 0");
    assert_eq!(o.text("bad.eth0.json"), o.text("before.eth0.json"));

    // Apply: 7 + 2 VFs, every attribute as ip reports it; b2 on the software path.
    assert_eq!(rc("apply1"), 0, "{}", out("apply1"));
    assert_eq!(numvfs("apply1"), "7 2");
    assert_eq!(host_vfs(&o, "apply1"), full_expected());
    assert!(
        out("apply1").contains("a5"),
        "the dropped link state is warned about"
    );
    let state: Value = serde_json::from_str(&o.text("apply1.state.json")).unwrap();
    assert_eq!(state["vports"]["b2"]["path"]["kind"], "software");
    assert_eq!(state["vports"].as_object().unwrap().len(), 10);
    for line in o.text("apply1.vfs").lines() {
        assert!(line.ends_with(" igbvf"), "{line}");
    }
    assert_eq!(rc("apply2"), 0);
    assert!(out("apply2").contains("nothing to do"), "{}", out("apply2"));
    assert_eq!(rc("status1"), 0, "{}", out("status1"));

    // a1 and b0 removed (their VFs reset), c0 added on pf1 (takes b0's freed VF 0).
    assert_eq!(rc("changed"), 0, "{}", out("changed"));
    let vfs = host_vfs(&o, "changed");
    let get = |dev: &str, i: u64| {
        vfs.iter()
            .find(|(d, n, _)| d == dev && *n == i)
            .map(|(_, _, s)| s.clone())
            .unwrap()
    };
    assert_eq!(
        get("eth0", 1),
        "mac 00:00:00:00:00:00 vlan 0 qos 0 max_tx 0 spoofchk true trust false"
    );
    assert_eq!(
        get("eth1", 0),
        "mac 02:00:00:00:02:10 vlan 30 qos 0 max_tx 0 spoofchk true trust false"
    );
    assert_eq!(get("eth0", 2), full_expected()[2].2, "a2 keeps its VF");
    assert!(
        out("changed2").contains("nothing to do"),
        "{}",
        out("changed2")
    );

    // pf1 from 2 to 5 VFs: through 0, allowed; b1 and c0 keep their indexes and settings.
    assert_eq!(rc("resize"), 0, "{}", out("resize"));
    assert_eq!(numvfs("resize"), "7 5");
    let vfs = host_vfs(&o, "resize");
    assert!(vfs.contains(&(
        "eth1".into(),
        1,
        "mac 02:00:00:00:01:11 vlan 0 qos 0 max_tx 0 spoofchk false trust true".into()
    )));
    assert!(
        out("resize2").contains("nothing to do"),
        "{}",
        out("resize2")
    );

    // kill -9 during several steps; the rerun rolls back and converges; then a no-op.
    let mut recovered = 0;
    for k in [1, 3, 6, 10] {
        let killed = o.text(&format!("kill{k}.killed.err"));
        assert!(
            killed.contains(&format!("[{k}/")),
            "the apply was killed during step {k}:\n{killed}"
        );
        let rerun = format!("kill{k}.rerun");
        assert_eq!(rc(&rerun), 0, "{}", out(&rerun));
        if out(&rerun).contains("rolled back") {
            recovered += 1;
        }
        assert_eq!(numvfs(&rerun), "7 2", "nothing leaked after kill at {k}");
        assert_eq!(host_vfs(&o, &rerun), full_expected(), "kill at step {k}");
        let state: Value = serde_json::from_str(&o.text(&format!("{rerun}.state.json")))
            .expect("the state file is whole");
        assert_eq!(state["vports"].as_object().unwrap().len(), 10);
        let again = format!("kill{k}.again");
        assert!(out(&again).contains("nothing to do"), "{}", out(&again));
    }
    assert!(
        recovered >= 3,
        "most kills left a journal to roll back ({recovered})"
    );
    assert_eq!(rc("status2"), 0, "{}", out("status2"));
}

/// `vf_driver` binds VFs through driver_override on the real kernel: to pci-stub (no
/// netdev any more, the PF still configures the VF), back to igbvf, and a driver that is
/// not loaded fails the apply, which puts the VFs back on igbvf.
#[test]
fn provision_binds_vfs_to_the_configured_driver() {
    crate::stall_retry(
        "provision_binds_vfs_to_the_configured_driver",
        provision_binds_vfs_to_the_configured_driver_once,
    );
}

fn provision_binds_vfs_to_the_configured_driver_once() {
    let test = "provision_binds_vfs_to_the_configured_driver";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(1).module("pci-stub"));
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/provision_bind.sh"),
        Duration::from_secs(300),
    )
    .success();
    let rc = |s: &str| o.text(&format!("{s}.rc")).trim().parse::<i32>().unwrap();
    let out = |s: &str| o.text(&format!("{s}.out")) + &o.text(&format!("{s}.err"));
    // "index driver netdevs override" per VF.
    let vfs = |s: &str| -> Vec<String> {
        o.text(&format!("{s}.vfs"))
            .lines()
            .map(str::to_string)
            .collect()
    };

    assert_eq!(rc("stub"), 0, "{}", out("stub"));
    assert_eq!(
        vfs("stub"),
        ["0 pci-stub 0 pci-stub", "1 pci-stub 0 pci-stub"]
    );
    let ipv = ip_vfs(&o.text("stub.ip.json"));
    assert_eq!(vf(&ipv, 0)["address"], "02:00:00:00:0b:01");
    assert_eq!(vlan_of(vf(&ipv, 0)), (5, 0));
    assert!(out("stub2").contains("nothing to do"), "{}", out("stub2"));

    assert_eq!(rc("igbvf"), 0, "{}", out("igbvf"));
    assert_eq!(vfs("igbvf"), ["0 igbvf 1 igbvf", "1 igbvf 1 igbvf"]);

    // vfio-pci is not loaded in the guest: the bind is refused, and rolled back.
    assert_eq!(rc("vfio"), 1, "{}", out("vfio"));
    assert!(out("vfio").contains("vfio-pci"), "{}", out("vfio"));
    assert!(out("vfio").contains("rolled back"), "{}", out("vfio"));
    assert_eq!(vfs("vfio"), ["0 igbvf 1 igbvf", "1 igbvf 1 igbvf"]);
    assert_eq!(rc("after-vfio"), 0, "{}", out("after-vfio"));
}
