//! Each vPort's queue set handed to the rebalancer as one group with its CPU set, on the real
//! igbvf driver (issue 9, point 3): two VF vPorts with `cpus` of their own, the daemon run
//! with `--config` and a `--nic-cpus` for the PF's group that disagrees, every VF IRQ pinned
//! outside the vPorts' sets first. Each queue IRQ `vportd status --json` reports for a vPort
//! must have its mask inside that vPort's set (/proc/irq) after 4 ticks and still after
//! traffic on the VFs and 2 more ticks (no move since), its effective CPU inside too once
//! it has fired, and the daemon's /metrics must carry `vport="<name>"` on exactly those
//! queues. The fixture-based twin is
//! tests/queues_groups.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::rig::{Rig, rig_or_skip};
use crate::{boot, run};

/// One VF IRQ in a snapshot: its mask, its effective CPU, its interrupts so far.
#[derive(Debug, Clone)]
struct Snap {
    affinity: Vec<u32>,
    effective: Vec<u32>,
    interrupts: u64,
}

/// "irq affinity effective interrupts" lines, by IRQ.
fn snapshot(text: &str) -> BTreeMap<u32, Snap> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [irq, aff, eff, n] = f.as_slice() else {
                return None;
            };
            Some((
                irq.parse().ok()?,
                Snap {
                    affinity: vportd::facts::parse::cpulist(aff).ok()?,
                    effective: vportd::facts::parse::cpulist(eff).ok()?,
                    interrupts: n.parse().ok()?,
                },
            ))
        })
        .collect()
}

#[test]
fn vport_queue_sets_stay_inside_their_cpus_on_igbvf() {
    crate::stall_retry(
        "vport_queue_sets_stay_inside_their_cpus_on_igbvf",
        vport_queue_sets_stay_inside_their_cpus_on_igbvf_once,
    );
}

fn vport_queue_sets_stay_inside_their_cpus_on_igbvf_once() {
    let test = "vport_queue_sets_stay_inside_their_cpus_on_igbvf";
    let Some(_) = rig_or_skip(test) else { return };
    let mut guest = boot(test, Rig::new().pfs(2).cpus(4));
    let o = run(
        &mut guest,
        test,
        include_str!("scenarios/queue_groups.sh"),
        Duration::from_secs(400),
    );
    let context = format!(
        "--- apply ---\n{}{}\n--- daemon log ---\n{}\n--- before ---\n{}--- moved ---\n{}--- after ---\n{}--- stderr ---\n{}",
        o.text("apply.out"),
        o.text("apply.err"),
        o.text("daemon.log"),
        o.text("before"),
        o.text("moved"),
        o.text("after"),
        o.stderr
    );
    assert_eq!(o.status, 0, "the scenario failed\n{context}");
    assert_eq!(o.text("daemon.state").trim(), "alive", "{context}");

    eprintln!(
        "{test}: VF IRQs (irq affinity effective interrupts) before the daemon:\n{}after 4 ticks:\n{}after traffic, at tick {}:\n{}",
        o.text("before"),
        o.text("moved"),
        o.text("ticks").trim(),
        o.text("after")
    );
    let status: Value = serde_json::from_str(&o.text("status.json")).unwrap();
    let vfs: Vec<String> = o.text("vfs").split_whitespace().map(String::from).collect();
    let before = snapshot(&o.text("before"));
    let moved = snapshot(&o.text("moved"));
    let after = snapshot(&o.text("after"));
    let samples = vportd::daemon::metrics::parse_samples(&o.text("metrics"));
    let vport_label = |family: &str, irq: u32| -> Option<String> {
        samples
            .iter()
            .find(|s| s.name == family && s.labels.get("irq") == Some(&irq.to_string()))
            .map(|s| s.labels["vport"].clone())
    };
    let mut grouped = BTreeSet::new();
    for (name, cpus) in [("va", vec![2, 3]), ("vb", vec![1])] {
        let v = status
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["vport"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status}"));
        let set = &v["queue_set"];
        assert!(
            vfs.contains(&set["function"].as_str().unwrap().to_string()),
            "{name}'s queues are not on one of its VFs {vfs:?}: {set}"
        );
        let want: Vec<u64> = cpus.iter().map(|c| u64::from(*c)).collect();
        let got: Vec<u64> = set["cpus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "{name}: {set}");
        assert_eq!(set["cpus_from"], "vport", "{name}: {set}");
        let queues = set["queues"].as_array().unwrap();
        let kinds: BTreeSet<&str> = queues.iter().map(|q| q["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            BTreeSet::from(["rx", "tx"]),
            "{name}: igbvf has one rx and one tx queue: {set}"
        );
        for q in queues {
            let irq = q["irq"].as_u64().unwrap() as u32;
            grouped.insert(irq);
            // Pinned outside the vPort's set (and inside the NIC's --nic-cpus) at the start.
            assert_eq!(
                before.get(&irq).map(|a| a.affinity.clone()),
                Some(vec![0]),
                "{name} IRQ {irq}\n{context}"
            );
            let get = |snap: &BTreeMap<u32, Snap>, when: &str| {
                snap.get(&irq)
                    .cloned()
                    .unwrap_or_else(|| panic!("{name} IRQ {irq} not read {when}\n{context}"))
            };
            let (m, a) = (get(&moved, "after 4 ticks"), get(&after, "at the end"));
            for (when, x) in [("after 4 ticks", &m), ("at the end", &a)] {
                assert!(
                    !x.affinity.is_empty() && x.affinity.iter().all(|c| cpus.contains(c)),
                    "{name} IRQ {irq} {when}: smp_affinity_list {:?} is not inside {cpus:?}\n{context}",
                    x.affinity
                );
            }
            // Not moved again: the same mask after the traffic and two more ticks.
            assert_eq!(m.affinity, a.affinity, "{name} IRQ {irq}\n{context}");
            // The effective CPU follows the mask at the IRQ's next interrupt: it fired since.
            assert!(
                a.interrupts > m.interrupts,
                "{name} IRQ {irq} did not fire during the traffic\n{context}"
            );
            assert!(
                !a.effective.is_empty() && a.effective.iter().all(|c| cpus.contains(c)),
                "{name} IRQ {irq}: effective {:?} is not inside {cpus:?}\n{context}",
                a.effective
            );
            for family in [
                "vportd_queue_interrupts_total",
                "vportd_queue_interrupt_rate",
                "vportd_queue_load_ratio",
            ] {
                assert_eq!(
                    vport_label(family, irq).as_deref(),
                    Some(name),
                    "{family} IRQ {irq}\n{}",
                    o.text("metrics")
                );
            }
        }
    }
    // Every other queue in the metrics has an empty vport label.
    for s in samples
        .iter()
        .filter(|s| s.name == "vportd_queue_interrupts_total")
    {
        let irq: u32 = s.labels["irq"].parse().unwrap();
        if !grouped.contains(&irq) {
            assert_eq!(s.labels["vport"], "", "IRQ {irq}: {s:?}");
        }
    }
    let cpu_set_moves = |samples: &[vportd::daemon::metrics::SampleLine]| {
        samples
            .iter()
            .find(|s| s.name == "vportd_moves_total" && s.labels["reason"] == "cpu_set")
            .map(|s| s.value)
            .unwrap_or(0.0)
    };
    let early = cpu_set_moves(&vportd::daemon::metrics::parse_samples(
        &o.text("metrics.moved"),
    ));
    assert!(
        early >= grouped.len() as f64,
        "{early} cpu_set moves for {} grouped IRQs\n{}",
        grouped.len(),
        o.text("metrics.moved")
    );
    // No churn: the moves were done in the first ticks, none since.
    assert_eq!(cpu_set_moves(&samples), early, "{}", o.text("metrics"));
}
