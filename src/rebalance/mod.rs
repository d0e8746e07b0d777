//! Dynamic VMQ: keeps NIC queue interrupts on the right CPUs as load moves.
//!
//! The loop is split so that everything that decides is pure and replayable:
//! [`sample`] turns counters (read by `host/`) into loads, [`policy`] turns loads into
//! moves with reasons (time is an input), [`actuate`] writes the moves through
//! [`crate::host::fs::KernelFs`] and classifies the kernel's answers, and [`engine`] runs
//! the three once per period for the daemon, keeping what one tick leaves the next.
//! [`cpusets`] says which CPUs each NIC's interrupts belong on, and [`scenario_sim`] runs
//! the same sampling and policy code against a model of the kernel for the S1-S8 scenarios
//! in docs/rebalance.md.
//!
//! This file holds what they share: the CPUs as the policy sees them ([`Topology`]), the
//! queues it may move ([`QueueSpec`]), and [`group_by_vport`], which gives each vPort's
//! queues its own CPU set.

pub mod actuate;
pub mod cpusets;
pub mod engine;
pub mod policy;
pub mod sample;
pub mod scenario_sim;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::inventory::CpuTopology;

/// One online CPU as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub id: u32,
    pub node: u32,
    /// The physical core: the lowest CPU number among its SMT siblings.
    pub core: u32,
    /// The first hardware thread of its core. Work goes to primary threads before
    /// their siblings, because a busy sibling slows the whole core.
    pub primary: bool,
}

/// The CPUs that interrupts may be placed on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// Online CPUs, sorted by id.
    pub cpus: Vec<Cpu>,
    /// CPUs the kernel or the operator keeps free of housekeeping (`isolcpus`,
    /// nohz_full, or the daemon's `--avoid-cpus`): never a destination.
    pub avoid: Vec<u32>,
}

impl Topology {
    /// From discovery's view of the CPUs. A CPU without a NUMA node (no
    /// /sys/devices/system/node) is on node 0.
    pub fn from_inventory(t: &CpuTopology, avoid: &[u32]) -> Self {
        let node_of: BTreeMap<u32, u32> = t
            .nodes
            .iter()
            .flat_map(|n| n.cpus.iter().map(move |c| (*c, n.id)))
            .collect();
        let core_of: BTreeMap<u32, u32> = t
            .smt_siblings
            .iter()
            .flat_map(|g| {
                let first = g.iter().copied().min().unwrap_or(0);
                g.iter().map(move |c| (*c, first))
            })
            .collect();
        let cpus = t
            .online
            .iter()
            .map(|&id| {
                let core = core_of.get(&id).copied().unwrap_or(id);
                Cpu {
                    id,
                    node: node_of.get(&id).copied().unwrap_or(0),
                    core,
                    primary: core == id,
                }
            })
            .collect();
        Self {
            cpus,
            avoid: avoid.to_vec(),
        }
    }

    /// A machine numbered the way Linux numbers x86 servers: the first thread of
    /// every core, node by node, then the second threads in the same order.
    pub fn synthetic(nodes: u32, cores_per_node: u32, threads: u32) -> Self {
        let per_round = nodes * cores_per_node;
        let mut cpus = Vec::new();
        for t in 0..threads {
            for n in 0..nodes {
                for c in 0..cores_per_node {
                    let core = n * cores_per_node + c;
                    cpus.push(Cpu {
                        id: t * per_round + core,
                        node: n,
                        core,
                        primary: t == 0,
                    });
                }
            }
        }
        cpus.sort_by_key(|c| c.id);
        Self {
            cpus,
            avoid: Vec::new(),
        }
    }

    pub fn get(&self, id: u32) -> Option<&Cpu> {
        self.cpus
            .binary_search_by_key(&id, |c| c.id)
            .ok()
            .map(|i| &self.cpus[i])
    }

    pub fn is_online(&self, id: u32) -> bool {
        self.get(id).is_some()
    }

    /// One more than the largest CPU id: the size of per-CPU tables.
    pub fn slots(&self) -> usize {
        self.cpus.last().map(|c| c.id as usize + 1).unwrap_or(0)
    }

    pub fn nodes(&self) -> Vec<u32> {
        let mut n: Vec<u32> = self.cpus.iter().map(|c| c.node).collect();
        n.sort_unstable();
        n.dedup();
        n
    }

    /// The kernel's `cpumask_local_spread(i, node)`: the i-th CPU counting the
    /// node's CPUs first (in id order), then the rest; all CPUs when the node is
    /// unknown. This is where drivers hint queue i's interrupt, so it is both the
    /// static contender and the starting point of every scenario.
    pub fn local_spread(&self, i: usize, node: Option<u32>) -> u32 {
        let mut order: Vec<u32> = Vec::with_capacity(self.cpus.len());
        if let Some(n) = node {
            order.extend(self.cpus.iter().filter(|c| c.node == n).map(|c| c.id));
            order.extend(self.cpus.iter().filter(|c| c.node != n).map(|c| c.id));
        } else {
            order.extend(self.cpus.iter().map(|c| c.id));
        }
        order[i % order.len()]
    }
}

/// A queue interrupt the policy may move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueSpec {
    pub irq: u32,
    /// The action name from /proc/interrupts, for messages.
    pub name: String,
    /// The NIC (PCI address of the function) the queue belongs to. Queues of one
    /// NIC share its CPU set and home CPU.
    pub nic: String,
    /// The NIC's NUMA node as the kernel reports it; None for -1.
    pub node: Option<u32>,
    /// The CPUs this NIC may use (per-NIC CPU sets); empty means every online CPU.
    pub cpus: Vec<u32>,
}

/// Hands each vPort's queues to the policy as one group: every queue in a vPort's set
/// (found by IRQ) is labelled with the vPort, and when the vPort has a CPU set of its own
/// (`cpus = "..."` on its `[[vport]]`), that set becomes the queues' hard limit, over the
/// NIC's (`--nic-cpus`, or the default home of [`cpusets`]): the vPort is what the
/// operator placed, the NIC only its carrier. A vPort without `cpus` keeps its NIC's set.
/// CPUs that are offline or avoided are dropped from a vPort's set; a set left empty
/// limits nothing and is reported. Returns the vPort of each grouped IRQ, for the
/// metrics' `vport` label, and the problems worth a log line.
pub fn group_by_vport(
    queues: &mut [QueueSpec],
    sets: &[crate::provision::state::VportQueueSet],
    topo: &Topology,
) -> (BTreeMap<u32, String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut owner = BTreeMap::new();
    for set in sets {
        let hard = match set.cpus_from {
            "vport" => {
                let usable: Vec<u32> = set
                    .cpus
                    .iter()
                    .copied()
                    .filter(|c| topo.is_online(*c) && !topo.avoid.contains(c))
                    .collect();
                if usable.is_empty() && !set.cpus.is_empty() {
                    problems.push(format!(
                        "vPort {}: none of its cpus {} is online and allowed, so its queues keep their NIC's CPU set",
                        set.vport,
                        crate::facts::parse::format_cpulist(&set.cpus)
                    ));
                }
                usable
            }
            _ => Vec::new(),
        };
        for q in &set.queues {
            owner.insert(q.irq, (set.vport.clone(), hard.clone()));
        }
    }
    let mut out = BTreeMap::new();
    for spec in queues.iter_mut() {
        if let Some((vport, cpus)) = owner.get(&spec.irq) {
            if !cpus.is_empty() {
                spec.cpus = cpus.clone();
            }
            out.insert(spec.irq, vport.clone());
        }
    }
    (out, problems)
}

#[cfg(test)]
mod group_tests {
    use super::*;
    use crate::provision::state::{QueueIrq, VportQueueSet};

    #[test]
    fn a_vports_queues_share_its_cpu_set_and_others_are_untouched() {
        let spec = |irq: u32, nic: &str| QueueSpec {
            irq,
            name: format!("q{irq}"),
            nic: nic.into(),
            node: Some(0),
            cpus: vec![],
        };
        let mut qs = vec![
            spec(40, "vf"),
            spec(41, "vf"),
            spec(42, "vf2"),
            spec(50, "pf"),
        ];
        // The PF's configured set (--nic-cpus) is on the PF's queue and the second VF.
        qs[2].cpus = vec![0];
        qs[3].cpus = vec![0];
        let q = |irq| QueueIrq {
            kind: "rx".into(),
            index: irq - 40,
            irq,
            name: String::new(),
        };
        let mut topo = Topology::synthetic(1, 4, 1);
        topo.avoid = vec![3];
        let sets = vec![
            VportQueueSet {
                vport: "vm1".into(),
                function: "0000:01:10.0".into(),
                queues: vec![q(40), q(41)],
                cpus: vec![2, 3],
                cpus_from: "vport",
            },
            // No cpus of its own: shown with its function's local CPUs, but the NIC's
            // configured set stays in force.
            VportQueueSet {
                vport: "vm2".into(),
                function: "0000:01:10.2".into(),
                queues: vec![q(42)],
                cpus: vec![0, 1, 2, 3],
                cpus_from: "function",
            },
        ];
        let (owner, problems) = group_by_vport(&mut qs, &sets, &topo);
        assert!(problems.is_empty(), "{problems:?}");
        // The vPort's own set wins, without the avoided CPU 3.
        assert_eq!(qs[0].cpus, [2]);
        assert_eq!(qs[1].cpus, [2]);
        assert_eq!(qs[2].cpus, [0]);
        assert_eq!(qs[3].cpus, [0]);
        assert_eq!(owner.get(&41).map(String::as_str), Some("vm1"));
        assert_eq!(owner.get(&42).map(String::as_str), Some("vm2"));
        assert!(!owner.contains_key(&50));
        // A vPort set with no usable CPU limits nothing, and says so.
        let mut qs = vec![spec(40, "vf")];
        let sets = vec![VportQueueSet {
            vport: "vm1".into(),
            function: "0000:01:10.0".into(),
            queues: vec![q(40)],
            cpus: vec![3, 9],
            cpus_from: "vport",
        }];
        let (_, problems) = group_by_vport(&mut qs, &sets, &topo);
        assert!(qs[0].cpus.is_empty());
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("vPort vm1") && problems[0].contains("3,9"),
            "{problems:?}"
        );
    }
}
