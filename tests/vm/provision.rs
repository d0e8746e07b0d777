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
}
