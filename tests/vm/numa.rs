//! NUMA in the guest (issue 20, point 4): two nodes, an igb PF on each node's expander
//! bridge. sysfs gives each PF (and its VFs) its node and local CPUs; `discover` must say the
//! same, and the daemon must bring each PF's queue interrupts home to its node's CPUs when
//! they start on the other node. Runs on the guest of tests/vm/vfio.rs (one boot for both).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::rig::{Guest, numa_pf_bdf};

/// Runs the NUMA scenario on an [`crate::rig::Rig::iommu_numa`] guest with two PFs and checks it.
pub fn node_local_placement(guest: &mut Guest, test: &str) {
    let (pf0, pf1) = (numa_pf_bdf(0), numa_pf_bdf(1));
    let script = format!("set -- {pf0} {pf1}\n{}", include_str!("scenarios/numa.sh"));
    let o = crate::run(guest, test, &script, Duration::from_secs(300)).success();

    // The guest has the two nodes QEMU was given.
    let nodes: BTreeMap<String, String> = o
        .text("nodes.txt")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    // "bdf numa_node local_cpulist netdev" per PF and VF of the node-1 PF.
    let functions: Vec<Vec<String>> = o
        .text("functions.txt")
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(functions.len(), 4, "2 PFs and 2 VFs: {functions:?}");
    assert_eq!(
        (functions[0][1].as_str(), functions[1][1].as_str()),
        ("0", "1")
    );
    let discover: Value = serde_json::from_str(&o.text("discover.json")).unwrap();
    for f in &functions {
        let (bdf, node, cpus) = (&f[0], &f[1], &f[2]);
        assert_eq!(&nodes[node], cpus, "{bdf}: local CPUs are its node's");
        let d = discover["pci_functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["bdf"] == bdf.as_str())
            .unwrap_or_else(|| panic!("{bdf} not in discover"));
        assert_eq!(d["numa_node"].to_string(), *node, "{bdf}");
        assert_eq!(cpulist(&d["local_cpus"]), *cpus, "{bdf}");
    }
    let topo_nodes = discover["cpus"]["nodes"].as_array().unwrap();
    assert_eq!(topo_nodes.len(), 2, "{topo_nodes:?}");

    // Queue IRQs pinned on the other node come home under the daemon.
    let pinned = o.text("pinned.txt");
    assert!(pinned.lines().count() >= 4, "{pinned}");
    let after = o.text("after.txt");
    assert_eq!(
        o.text("home.rc").trim(),
        "0",
        "queue IRQs not home after 90 s:\npinned:\n{pinned}\nafter:\n{after}\ndaemon log:\n{}",
        o.text("daemon.log")
    );
    let local: BTreeMap<&str, Vec<u32>> = functions[..2]
        .iter()
        .map(|f| (f[0].as_str(), expand(&f[2])))
        .collect();
    for line in after.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        for cpu in expand(w[2]) {
            assert!(
                local[w[0]].contains(&cpu),
                "IRQ {} of {} on CPU {cpu}: {after}",
                w[1],
                w[0]
            );
        }
    }
    let metrics = o.text("metrics.txt");
    let numa_moves: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vportd_moves_total{reason=\"numa\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    eprintln!(
        "{test}: {} queue IRQs home in {} ms, {numa_moves} moves by reason numa",
        pinned.lines().count(),
        o.text("home.ms").trim()
    );
    assert!(numa_moves >= 1.0, "{metrics}");
}

/// "[2, 3]" as sysfs writes it, "2-3".
fn cpulist(v: &Value) -> String {
    let cpus: Vec<u32> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap() as u32)
        .collect();
    match (cpus.first(), cpus.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
        (Some(a), _) => a.to_string(),
        _ => String::new(),
    }
}

/// "0-1" or "2" or "0,2" as CPU numbers.
fn expand(list: &str) -> Vec<u32> {
    list.split(',')
        .flat_map(|r| match r.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<u32>>(),
            None => vec![r.parse().unwrap()],
        })
        .collect()
}
