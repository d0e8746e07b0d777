//! netdevsim, the kernel's simulated NIC, built by tests/vm/setup for the guest kernel: the
//! VF controls igb refuses (min rate, link state, VLAN protocol 802.1ad) through `vportd
//! apply`, read back by iproute2 and their drift found by `vportd status`; then the device in
//! devlink switchdev mode, where `discover` must name its eswitch mode and its VF
//! representors, and `plan`/`apply` must refuse the legacy VF steps before writing anything.
//! One boot for all of it (guests cost minutes under TCG).

use std::time::Duration;

use serde_json::Value;

use crate::rig::{Rig, rig_or_skip};
use crate::{boot, run};

/// The VF lines of `ip -d link show`, by VF index ("    vf 0     link/ether ...").
fn vf_line(ip: &str, vf: u32) -> String {
    let prefix = format!("vf {vf} ");
    ip.lines()
        .map(str::trim)
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no VF {vf} in:\n{ip}"))
        .to_string()
}

#[test]
fn netdevsim_vf_controls_drift_and_switchdev() {
    crate::stall_retry(
        "netdevsim_vf_controls_drift_and_switchdev",
        netdevsim_vf_controls_drift_and_switchdev_once,
    );
}

fn netdevsim_vf_controls_drift_and_switchdev_once() {
    let test = "netdevsim_vf_controls_drift_and_switchdev";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(0).netdevsim());
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/netdevsim.sh"),
        Duration::from_secs(600),
    )
    .success();
    let rc = |s: &str| {
        o.text(&format!("{s}.rc"))
            .trim()
            .parse::<i32>()
            .unwrap_or_else(|_| panic!("no {s}.rc"))
    };
    let out = |s: &str| o.text(&format!("{s}.out")) + &o.text(&format!("{s}.err"));
    let ms = |s: &str| o.text(&format!("{s}.ms")).trim().to_string();
    let json = |s: &str| -> Value {
        serde_json::from_str(&o.text(&format!("{s}.out")))
            .unwrap_or_else(|e| panic!("{s}: {e}:\n{}", out(s)))
    };

    // apply sets what igb refuses, and iproute2 reads it back.
    assert_eq!(rc("apply1"), 0, "{}", out("apply1"));
    eprintln!(
        "{test}: first apply {} ms, no-op apply {} ms",
        ms("apply1"),
        ms("apply-noop")
    );
    let ip = o.text("apply1.ip");
    let vf0 = vf_line(&ip, 0);
    for want in [
        "link/ether 02:00:00:00:01:01",
        "vlan 100, qos 2, vlan protocol 802.1ad",
        "max_tx_rate 1000Mbps, min_tx_rate 100Mbps",
        "link-state enable",
    ] {
        assert!(vf0.contains(want), "VF 0 lacks {want:?}: {vf0}");
    }
    let vf1 = vf_line(&ip, 1);
    for want in [
        "link/ether 02:00:00:00:01:02",
        "vlan 7",
        "max_tx_rate 500Mbps",
        "link-state disable",
    ] {
        assert!(vf1.contains(want), "VF 1 lacks {want:?}: {vf1}");
    }
    assert!(!vf1.contains("802.1ad"), "{vf1}");
    assert_eq!(rc("status0"), 0, "{}", out("status0"));
    assert_eq!(rc("apply-noop"), 0, "{}", out("apply-noop"));
    assert!(
        out("apply-noop").to_lowercase().contains("nothing to do"),
        "{}",
        out("apply-noop")
    );

    // Drift on each control: status exits 3 and names it; apply restores it.
    for (step, vport, field, restore) in [
        ("drift-rate", "vm1", "min_tx_rate", "restore-rate"),
        ("drift-state", "vm2", "link_state", "restore-state"),
        ("drift-proto", "vm1", "vlan_proto", "restore-proto"),
    ] {
        assert_eq!(rc(step), 3, "{step}: {}", out(step));
        let list = json(step);
        let s = list
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["vport"] == vport)
            .unwrap_or_else(|| panic!("{step}: no {vport} in {list}"));
        let drift = s["drift"].to_string();
        assert!(drift.contains(field), "{step}: {vport} drift {drift}");
        let others: Vec<&Value> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["vport"] != vport)
            .filter(|s| !s["drift"].as_array().unwrap().is_empty())
            .collect();
        assert!(others.is_empty(), "{step}: others drift too: {others:?}");
        assert_eq!(rc(restore), 0, "{}", out(restore));
    }
    assert_eq!(rc("status-final"), 0, "{}", out("status-final"));
    assert_eq!(o.text("restore-proto.ip"), o.text("apply1.ip"));

    // Legacy mode: discover shows the device as a PF with its eswitch mode, as devlink does.
    assert!(
        o.text("devlink-legacy").contains("mode legacy"),
        "{}",
        o.text("devlink-legacy")
    );
    let port = o.text("port").trim().to_string();
    let inv = json("discover-legacy");
    let nsim = inv["pci_functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["bdf"] == "netdevsim10")
        .unwrap_or_else(|| panic!("no netdevsim10 in {inv}"))
        .clone();
    assert_eq!(nsim["role"], "pf");
    assert_eq!(nsim["eswitch_mode"], "legacy");
    assert_eq!(nsim["sriov"]["num_vfs"], 2);
    assert_eq!(nsim["netdevs"][0]["name"], port.as_str());

    // Switchdev: devlink says so; discover agrees and names each representor by its VF, with
    // the PF port's switch id, never as a port of the PF.
    assert_eq!(rc("devlink-set"), 0, "{}", o.text("devlink-set"));
    assert!(
        o.text("devlink-switchdev").contains("mode switchdev"),
        "{}",
        o.text("devlink-switchdev")
    );
    let ports = o.text("ports-switchdev");
    let sysfs: Vec<Vec<&str>> = ports.lines().map(|l| l.split(' ').collect()).collect();
    let pf_switch = sysfs
        .iter()
        .find(|p| p[0] == port)
        .unwrap_or_else(|| panic!("no {port} in {ports}"))[3];
    let inv = json("discover-switchdev");
    let nsim = inv["pci_functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["bdf"] == "netdevsim10")
        .unwrap()
        .clone();
    assert_eq!(nsim["eswitch_mode"], "switchdev");
    let netdevs: Vec<&str> = nsim["netdevs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        netdevs,
        vec![port.as_str()],
        "only the PF's own port: {ports}"
    );
    let reps = nsim["representors"].as_array().unwrap();
    assert_eq!(reps.len(), 2, "{nsim}");
    for (vf, r) in reps.iter().enumerate() {
        let name = r["name"].as_str().unwrap();
        let row = sysfs
            .iter()
            .find(|p| p[0] == name)
            .unwrap_or_else(|| panic!("{name} not in sysfs: {ports}"));
        assert_eq!(r["vf"], vf as u64);
        assert_eq!(r["port_name"], format!("pf0vf{vf}"));
        assert_eq!(row[2], format!("pf0vf{vf}"));
        assert_eq!(r["switch_id"], pf_switch);
        assert_eq!(r["ifindex"], row[1].parse::<u64>().unwrap());
    }
    let text = out("discover-text");
    assert!(text.contains("switchdev"), "{text}");
    assert!(text.contains("representor of VF 1"), "{text}");

    // A legacy VF step on the switchdev PF: plan says why it cannot be done (a blocker), and
    // apply refuses it before writing anything (the VFs read back unchanged).
    let plan = out("plan-switchdev");
    assert_eq!(rc("plan-switchdev"), 0, "{plan}");
    assert!(plan.contains("BLOCKED: apply will refuse"), "{plan}");
    for want in [
        "netdevsim10",
        "eswitch mode switchdev",
        "vPort vm1",
        "pf0vf0",
        "devlink dev eswitch set netdevsim/netdevsim10 mode legacy",
    ] {
        assert!(plan.contains(want), "plan lacks {want:?}:\n{plan}");
    }
    let apply = out("apply-switchdev");
    assert_ne!(rc("apply-switchdev"), 0, "{apply}");
    assert!(apply.contains("eswitch mode switchdev"), "{apply}");
    assert_eq!(
        vf_line(&o.text("apply-switchdev.ip"), 0),
        vf_line(&o.text("restore-proto.ip"), 0)
    );
    guest.shutdown().expect("the guest powers off");
}
