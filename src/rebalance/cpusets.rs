//! Per-NIC CPU sets: which CPUs each NIC's queue interrupts belong on (pure).
//!
//! Hyper-V gives each NIC its own processor set, so that two busy NICs never fight over a
//! core. Here a PF and its VFs form one group (a VF's interrupts serve the same wire and
//! the same NUMA node as its PF), and the group's set is:
//! - the one configured for the PF (`--nic-cpus BDF=LIST`; a VF may have its own), which is
//!   a hard limit: the policy never places the group's interrupts elsewhere;
//! - else, by default, the PF's NUMA-local CPUs (sysfs `local_cpulist`, else its node's
//!   CPUs), which is a home: the policy fills it first and spills beyond it only with the
//!   excess, as it does across NUMA nodes (S5b in docs/rebalance.md).
//!
//! Avoided and offline CPUs are never part of a set. A default home that covers every usable
//! CPU says nothing and is dropped.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Topology;

/// What the policy needs to know of one PCI function with queue interrupts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicFacts {
    pub bdf: String,
    /// The PF of a VF.
    pub physfn: Option<String>,
    /// sysfs `local_cpulist` (empty when unknown).
    pub local_cpus: Vec<u32>,
    pub node: Option<u32>,
}

/// Where a NIC's set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SetSource {
    /// `--nic-cpus` for this function or its PF: a hard limit.
    Configured,
    /// The PF's NUMA-local CPUs: a preference.
    Local,
}

/// One NIC's CPU set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NicCpuSet {
    /// The PF whose group the NIC is in (itself for a PF).
    pub group: String,
    pub cpus: Vec<u32>,
    pub source: SetSource,
}

/// The sets of every NIC, by PCI address, and problems worth a log line (a configured set
/// with no usable CPU, which then limits nothing).
pub fn nic_cpu_sets(
    nics: &[NicFacts],
    configured: &BTreeMap<String, Vec<u32>>,
    topo: &Topology,
) -> (BTreeMap<String, NicCpuSet>, Vec<String>) {
    let usable: Vec<u32> = topo
        .cpus
        .iter()
        .map(|c| c.id)
        .filter(|c| !topo.avoid.contains(c))
        .collect();
    let keep = |cpus: &[u32]| -> Vec<u32> {
        let mut v: Vec<u32> = cpus
            .iter()
            .copied()
            .filter(|c| usable.contains(c))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let by_bdf: BTreeMap<&str, &NicFacts> = nics.iter().map(|n| (n.bdf.as_str(), n)).collect();
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for n in nics {
        let group = n.physfn.clone().unwrap_or_else(|| n.bdf.clone());
        let own = configured.get(&n.bdf).map(|c| (c, &n.bdf));
        let pf = configured.get(&group).map(|c| (c, &group));
        if let Some((cpus, whose)) = own.or(pf) {
            let cpus_kept = keep(cpus);
            if cpus_kept.is_empty() {
                problems.push(format!(
                    "--nic-cpus {whose}: none of CPUs {} is online and allowed, so {} is not limited",
                    crate::facts::parse::format_cpulist(cpus),
                    n.bdf
                ));
                continue;
            }
            out.insert(
                n.bdf.clone(),
                NicCpuSet {
                    group,
                    cpus: cpus_kept,
                    source: SetSource::Configured,
                },
            );
            continue;
        }
        // The PF's facts when it is known (a VF's own numa_node may be -1 where its PF's
        // is not), else the function's own.
        let f = by_bdf.get(group.as_str()).copied().unwrap_or(n);
        let local = if !f.local_cpus.is_empty() {
            keep(&f.local_cpus)
        } else {
            match f.node.or(n.node) {
                Some(node) => keep(
                    &topo
                        .cpus
                        .iter()
                        .filter(|c| c.node == node)
                        .map(|c| c.id)
                        .collect::<Vec<_>>(),
                ),
                None => Vec::new(),
            }
        };
        if local.is_empty() || local.len() == usable.len() {
            continue;
        }
        out.insert(
            n.bdf.clone(),
            NicCpuSet {
                group,
                cpus: local,
                source: SetSource::Local,
            },
        );
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(bdf: &str, physfn: Option<&str>, local: &[u32], node: Option<u32>) -> NicFacts {
        NicFacts {
            bdf: bdf.into(),
            physfn: physfn.map(Into::into),
            local_cpus: local.to_vec(),
            node,
        }
    }

    /// 2 nodes x 4 cores, no SMT: node 0 = CPUs 0-3, node 1 = 4-7.
    fn topo() -> Topology {
        Topology::synthetic(2, 4, 1)
    }

    #[test]
    fn vfs_join_their_pf_on_its_local_cpus() {
        let nics = [
            nic("0000:01:00.0", None, &[4, 5, 6, 7], Some(1)),
            // The VF's firmware hides its node and local CPUs: it takes its PF's.
            nic("0000:01:10.0", Some("0000:01:00.0"), &[], None),
            nic("0000:02:00.0", None, &[0, 1, 2, 3], Some(0)),
        ];
        let (sets, problems) = nic_cpu_sets(&nics, &BTreeMap::new(), &topo());
        assert!(problems.is_empty());
        assert_eq!(sets["0000:01:00.0"].cpus, [4, 5, 6, 7]);
        assert_eq!(sets["0000:01:10.0"].group, "0000:01:00.0");
        assert_eq!(sets["0000:01:10.0"].cpus, [4, 5, 6, 7]);
        assert_eq!(sets["0000:01:10.0"].source, SetSource::Local);
        assert_eq!(sets["0000:02:00.0"].cpus, [0, 1, 2, 3]);
    }

    #[test]
    fn configured_sets_bind_the_group_and_a_vf_may_have_its_own() {
        let nics = [
            nic("0000:01:00.0", None, &[4, 5, 6, 7], Some(1)),
            nic("0000:01:10.0", Some("0000:01:00.0"), &[4, 5, 6, 7], Some(1)),
            nic("0000:01:10.2", Some("0000:01:00.0"), &[4, 5, 6, 7], Some(1)),
        ];
        let conf = BTreeMap::from([
            ("0000:01:00.0".to_string(), vec![6, 7]),
            ("0000:01:10.2".to_string(), vec![5]),
        ]);
        let (sets, _) = nic_cpu_sets(&nics, &conf, &topo());
        assert_eq!(sets["0000:01:00.0"].cpus, [6, 7]);
        assert_eq!(sets["0000:01:00.0"].source, SetSource::Configured);
        assert_eq!(sets["0000:01:10.0"].cpus, [6, 7]);
        assert_eq!(sets["0000:01:10.2"].cpus, [5]);
    }

    #[test]
    fn avoided_offline_and_useless_sets() {
        let mut t = topo();
        t.avoid = vec![4];
        t.cpus.retain(|c| c.id != 5);
        let nics = [
            nic("0000:01:00.0", None, &[4, 5, 6, 7], Some(1)),
            // numa_node -1 and no local_cpulist: no preference at all.
            nic("0000:03:00.0", None, &[], None),
            // Local to every CPU (a one-node machine): says nothing.
            nic("0000:04:00.0", None, &[0, 1, 2, 3, 4, 5, 6, 7], Some(0)),
            // Only its node is known.
            nic("0000:05:00.0", None, &[], Some(0)),
            nic("0000:06:00.0", None, &[0, 1], Some(0)),
        ];
        let conf = BTreeMap::from([("0000:06:00.0".to_string(), vec![4, 5])]);
        let (sets, problems) = nic_cpu_sets(&nics, &conf, &t);
        assert_eq!(sets["0000:01:00.0"].cpus, [6, 7]);
        assert!(!sets.contains_key("0000:03:00.0"));
        assert!(!sets.contains_key("0000:04:00.0"));
        assert_eq!(sets["0000:05:00.0"].cpus, [0, 1, 2, 3]);
        assert!(!sets.contains_key("0000:06:00.0"));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("--nic-cpus 0000:06:00.0"),
            "{problems:?}"
        );
        assert!(problems[0].contains("4-5"), "{problems:?}");
    }
}
