//! The vportd CNI plugin and daemon on real igb/igbvf VFs from a `[[pool]]`, in one boot
//! (CI time matters): the plugin invoked as the spec says (ADD, CHECK, a DEL twice, STATUS),
//! podman 4.3 with `network_backend = "cni"` running a busybox container on a vportd
//! network, 50 rounds of three concurrent ADDs and DELs, ADD+DEL latency, and kill -9 of the
//! plugin and of the daemon in the middle of an ADD followed by DEL or GC. After each part
//! every pool VF is back in the host namespace under its old name and MAC, clean on its PF
//! (no admin MAC, VLAN or rate): `ip -d link show` is the oracle.

use std::time::Duration;

use serde_json::Value;

use crate::rig::{Outcome, Rig, rig_or_skip};
use crate::{boot, run};

fn vfs_of(ip_json: &str) -> Vec<Value> {
    let links: Vec<Value> = serde_json::from_str(ip_json).expect("ip -j prints JSON");
    links[0]["vfinfo_list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The pool VFs are home (in the host namespace, with the name and MAC they had before the
/// first ADD) and clean on the PF: no VLAN, no rate, and no attachment's MAC (the PF shows
/// none, or the VF's own, which its driver registers when the way back restores it).
fn assert_home(o: &Outcome, report: &str) {
    let before = o.text("home0");
    let now = o.text(report);
    let lines = |t: &str| t.lines().take(3).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        lines(&now),
        lines(&before),
        "{report}: the VFs' names and MACs in the host"
    );
    let own: Vec<String> = lines(&before)
        .iter()
        .map(|l| l.split(' ').nth(2).unwrap_or("").to_string())
        .collect();
    let ip: String = now.lines().skip(3).collect();
    for (i, vf) in vfs_of(&ip).iter().take(3).enumerate() {
        let mac = vf["address"].as_str().unwrap_or("");
        assert!(
            mac == "00:00:00:00:00:00" || mac == own[i],
            "{report}: VF {i} has no attachment's MAC: {vf}"
        );
        assert_eq!(
            vf["vlan_list"][0]["vlan"].as_u64().unwrap_or(0),
            0,
            "{report}: no VLAN: {vf}"
        );
        assert_eq!(vf["rate"]["max_tx"], 0, "{report}: no rate: {vf}");
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[test]
fn cni_vf_pool_podman_stress_and_kills() {
    crate::stall_retry(
        "cni_vf_pool_podman_stress_and_kills",
        cni_vf_pool_podman_stress_and_kills_once,
    );
}

fn cni_vf_pool_podman_stress_and_kills_once() {
    let test = "cni_vf_pool_podman_stress_and_kills";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(1).podman());
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/cni_vf.sh"),
        Duration::from_secs(1500),
    )
    .success();
    let text = |name: &str| o.text(name).trim().to_string();
    let log = || o.text("daemon.log");
    assert_eq!(text("apply.rc"), "0", "{}", text("apply.out"));

    // 1. ADD (1.1.0, no IPAM: Debian's host-local speaks 1.0.0): the VF inside as eth0, up,
    // with the result's MAC; its PF shows the pool's VLAN and rate on it.
    assert_eq!(
        text("add1.rc"),
        "0",
        "{}\n{}\n{}",
        text("add1.json"),
        text("add1.err"),
        log()
    );
    let result: Value = serde_json::from_str(&text("add1.json")).unwrap();
    let iface = &result["interfaces"][0];
    assert_eq!(iface["name"], "eth0");
    assert_eq!(iface["sandbox"], "/var/run/netns/c1");
    let mac = iface["mac"].as_str().unwrap().to_string();
    let pci = iface["pciID"]
        .as_str()
        .unwrap_or_else(|| panic!("{result}"));
    assert!(pci.starts_with("0000:01:10."), "{pci}");
    let inside = text("inside1");
    assert!(inside.starts_with(&mac), "{inside}");
    assert!(
        inside.contains("eth0: <") && inside.contains(",UP"),
        "{inside}"
    );
    let on_pf = vfs_of(&o.text("pf1.json"));
    let vf = on_pf
        .iter()
        .find(|v| v["address"] == mac.as_str())
        .unwrap_or_else(|| panic!("no VF with {mac}: {on_pf:?}"));
    assert_eq!(vf["vlan_list"][0]["vlan"], 100, "{vf}");
    assert_eq!(vf["rate"]["max_tx"], 100, "{vf}");
    assert_eq!(text("check1.rc"), "0", "CHECK: {}", text("check1.out"));
    assert_eq!(text("del1.rc"), "0", "{}", text("del1.out"));
    assert_eq!(text("del1b.rc"), "0", "a second DEL: {}", text("del1b.out"));
    assert_eq!(text("status1.rc"), "0", "{}", text("status1.out"));
    assert_home(&o, "home1");

    // 2. podman.
    assert_eq!(
        text("podman.rc"),
        "0",
        "podman: {}\n{}\n{}",
        text("podman.out"),
        text("podman.err"),
        log()
    );
    assert!(
        text("podman.out").contains("inet 10.77.0."),
        "{}",
        text("podman.out")
    );
    assert!(
        text("podman.out").contains("PCI_SLOT_NAME=0000:01:10."),
        "{}",
        text("podman.out")
    );
    assert_home(&o, "home2");

    // 3. Stress: every ADD and DEL succeeded, three distinct MACs each round, nothing left.
    assert_eq!(text("stress.fail"), "", "{}", log());
    let rounds: Vec<String> = o.text("stress.macs").lines().map(str::to_string).collect();
    assert_eq!(rounds.len(), 50);
    for r in &rounds {
        let macs: Vec<&str> = r.split(' ').skip(1).collect();
        let distinct: std::collections::BTreeSet<&&str> = macs.iter().collect();
        assert!(
            macs.len() == 3 && distinct.len() == 3 && !macs.contains(&"none"),
            "round {r}"
        );
    }
    assert_home(&o, "home3");

    // 4. Latency.
    let mut ms: Vec<u64> = o
        .text("latency_ms")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    ms.sort_unstable();
    eprintln!(
        "{test}: VF ADD+DEL (plugin + daemon + host-local, TCG guest) over {} runs: p50 {} ms, p99 {} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99)
    );

    // 5. kill -9 of the plugin, then DEL; of the daemon, then the namespace gone and GC.
    assert_eq!(
        text("kill_plugin_del.rc"),
        "0",
        "{}",
        text("kill_plugin_del.out")
    );
    assert_home(&o, "home5a");
    for i in 1..=3 {
        assert_eq!(
            text(&format!("gc_{i}.rc")),
            "0",
            "{}\n{}",
            text(&format!("gc_{i}.out")),
            log()
        );
        assert_home(&o, &format!("home5b_{i}"));
        let book: Value = serde_json::from_str(&o.text(&format!("book_kill_{i}.json"))).unwrap();
        let phase = book["attachments"][0]["phase"]
            .as_str()
            .unwrap_or("no entry yet");
        let host = if book["attachments"][0]["host"].is_null() {
            "not noted"
        } else {
            "noted"
        };
        eprintln!(
            "{test}: daemon killed mid-ADD (try {i}): the book held {phase}, host link {host}; GC left the VFs home and clean"
        );
    }
    let book: Value = serde_json::from_str(&o.text("book_final.json")).unwrap();
    assert_eq!(book["attachments"], serde_json::json!([]), "{book}");
    for line in log().lines().filter(|l| l.contains("is gone")) {
        eprintln!("{test}: the restarted daemon said: {line}");
    }
}
