//! Hotplug with the real systemd-udevd, the project's udev rules and the daemon, against the
//! real igb/igbvf drivers: a NIC hot-added through QEMU's monitor gets its vPorts' VFs, a
//! removed one leaves them lost (and the daemon alive), re-adding restores them, and a VF's
//! netdev renamed behind vportd's back changes nothing.

use std::time::Duration;

use serde_json::Value;

use crate::rig::{Rig, rig_or_skip};
use crate::{boot, run};

const CONFIG: &str = r#"state_dir = "/run/vportd-state"

[[uplink]]
pci = "0000:01:00.0"

[[uplink]]
pci = "0000:02:00.0"

[[vport]]
name = "vm-a"
uplink = "0000:01:00.0"
mac = "02:00:00:00:01:01"

[[vport]]
name = "vm-b"
uplink = "0000:02:00.0"
mac = "02:00:00:00:02:01"
vlan = 100

[[vport]]
name = "vm-c"
uplink = "0000:02:00.0"
mac = "02:00:00:00:02:02"
"#;

const STEPS: &str = include_str!("scenarios/hotplug.sh");

/// Each vPort's health and VF index in a state file.
fn health(state: &str) -> Vec<(String, String, Option<u64>)> {
    let v: Value = serde_json::from_str(state).expect("the state file is JSON");
    v["vports"]
        .as_object()
        .expect("vports")
        .iter()
        .map(|(name, s)| {
            (
                name.clone(),
                s["health"].as_str().unwrap_or("?").to_string(),
                s["path"]["index"].as_u64(),
            )
        })
        .collect()
}

fn metric_lines(metrics: &str) -> Vec<&str> {
    metrics
        .lines()
        .filter(|l| l.starts_with("vportd_vport_info{"))
        .collect()
}

#[test]
fn hotplug_add_remove_readd_with_udev_and_daemon() {
    crate::stall_retry(
        "hotplug_add_remove_readd_with_udev_and_daemon",
        hotplug_add_remove_readd_with_udev_and_daemon_once,
    );
}

fn hotplug_add_remove_readd_with_udev_and_daemon_once() {
    let test = "hotplug_add_remove_readd_with_udev_and_daemon";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(
        test,
        Rig::new()
            .pfs(1)
            .spare_ports(1)
            .udev()
            .file("/etc/vportd/host.toml", CONFIG, 0o644),
    );
    let step = |guest: &mut crate::rig::Guest, name: &str| {
        run(
            guest,
            name,
            &format!("{STEPS}\nstep_{name}\n"),
            Duration::from_secs(180),
        )
    };

    // Boot: the daemon provisions vm-a; vm-b and vm-c wait for their uplink.
    let o = step(&mut guest, "boot");
    let log = o.text("daemon.log") + &o.text("ps") + &o.text("dmesg") + &o.text("statedir");
    let o = o.success();
    assert_eq!(o.text("socket").trim(), "660 root root", "{log}");
    assert_eq!(
        health(&o.text("boot.state.json")),
        [("vm-a".into(), "provisioned".into(), Some(0))],
        "{log}"
    );

    // Hot-add through QMP: the hot NIC's vPorts get their VFs, configured.
    let bdf = guest
        .hotplug_igb("hot0")
        .expect("QEMU hot-plugs an igb NIC");
    assert_eq!(bdf, "0000:02:00.0");
    let o = step(&mut guest, "hotadd");
    let log = o.text("daemon.log");
    let o = o.success();
    let ms: u64 = o.text("hotadd_ms").trim().parse().unwrap();
    eprintln!("{test}: hot-add -> VFs configured in {ms} ms of guest time");
    assert!(ms <= 5000, "VFs took {ms} ms after the hot-add:\n{log}");
    assert_eq!(
        health(&o.text("hotadd.state.json")),
        [
            ("vm-a".into(), "provisioned".into(), Some(0)),
            ("vm-b".into(), "provisioned".into(), Some(0)),
            ("vm-c".into(), "provisioned".into(), Some(1)),
        ],
        "{log}"
    );
    let ip: Value = serde_json::from_str(&o.text("hotadd.ip.json")).unwrap();
    let vfs = ip[0]["vfinfo_list"]
        .as_array()
        .expect("the PF lists its VFs");
    assert_eq!(vfs[0]["address"], "02:00:00:00:02:01", "{vfs:?}");
    assert_eq!(vfs[0]["vlan_list"][0]["vlan"], 100, "{vfs:?}");
    assert_eq!(vfs[1]["address"], "02:00:00:00:02:02", "{vfs:?}");
    assert_eq!(o.text("hotadd.status.rc").trim(), "0", "no drift");
    // The real udevd ran the rules' IMPORT for each new VF netdev: the VFs of an uplink
    // vportd manages are NM_UNMANAGED (matched by the PF's PCI address).
    let udev = o.text("hotadd.udev");
    let sections: Vec<&str> = udev.split("== ").filter(|s| !s.trim().is_empty()).collect();
    assert!(sections.len() >= 2, "VF netdevs seen by udev:\n{udev}");
    for sec in &sections {
        assert!(
            sec.lines().any(|l| l == "NM_UNMANAGED=1"),
            "a VF netdev of the managed PF lacks NM_UNMANAGED=1:\n{sec}"
        );
    }
    eprintln!(
        "{test}: {} VF netdev(s) of the hot NIC carry NM_UNMANAGED=1 from udev",
        sections.len()
    );

    // A VF's netdev renamed (a `move` event through udev and the kernel): no drift, no harm.
    let o = step(&mut guest, "rename").success();
    assert_eq!(o.text("vf_after").trim(), "vfren0");
    assert_eq!(
        o.text("rename.status.rc").trim(),
        "0",
        "{}{}",
        o.text("rename.status.json"),
        o.text("rename.status.err")
    );
    assert_eq!(o.text("rename.daemon").trim(), "alive");
    let log = o.text("daemon.log");
    assert!(log.contains("reconcile after move net"), "{log}");

    // Hot-remove: vm-b and vm-c are lost, keep their VF indexes; the daemon lives; metrics say so.
    guest
        .unplug("hot0", Duration::from_secs(60))
        .expect("the guest releases the unplugged NIC");
    let o = step(&mut guest, "remove");
    let log = o.text("daemon.log");
    let o = o.success();
    eprintln!(
        "{test}: hot-remove -> vPorts lost in {} ms of guest time",
        o.text("remove_ms").trim()
    );
    assert_eq!(
        health(&o.text("remove.state.json")),
        [
            ("vm-a".into(), "provisioned".into(), Some(0)),
            ("vm-b".into(), "lost".into(), Some(0)),
            ("vm-c".into(), "lost".into(), Some(1)),
        ],
        "{log}"
    );
    assert_eq!(o.text("remove.daemon").trim(), "alive", "{log}");
    let metrics = o.text("remove.metrics");
    let lines = metric_lines(&metrics);
    for (vport, health) in [("vm-a", "provisioned"), ("vm-b", "lost"), ("vm-c", "lost")] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("vport=\"{vport}\""))
                    && l.contains(&format!("health=\"{health}\""))),
            "metrics must say {vport} is {health}: {lines:?}\n{}",
            o.text("remove.metrics.err")
        );
    }
    let status: Value = serde_json::from_str(&o.text("remove.status.json")).unwrap();
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["vport"] == "vm-b" && s["health"] == "lost"),
        "{status}"
    );

    // Re-add: restored onto the same VF indexes, configured again.
    guest
        .hotplug_igb("hot0")
        .expect("QEMU hot-plugs the NIC again");
    let o = step(&mut guest, "readd");
    let log = o.text("daemon.log");
    let o = o.success();
    eprintln!(
        "{test}: re-add -> vPorts restored in {} ms of guest time",
        o.text("readd_ms").trim()
    );
    assert_eq!(
        health(&o.text("readd.state.json")),
        [
            ("vm-a".into(), "provisioned".into(), Some(0)),
            ("vm-b".into(), "provisioned".into(), Some(0)),
            ("vm-c".into(), "provisioned".into(), Some(1)),
        ],
        "{log}"
    );
    assert!(log.contains("restored: vm-b, vm-c"), "{log}");
    assert_eq!(o.text("readd.daemon").trim(), "alive");
    eprintln!("{test}: the daemon's log:\n{log}");
    guest.shutdown().expect("the guest powers off");
}
