//! Human-readable renderings of inventories and plans: aligned plain-text tables,
//! for people; `--json` is for machines.

use std::fmt::Write;

use crate::facts::parse::format_cpulist;
use crate::model::inventory::QueueKind;
use crate::model::inventory::{Inventory, PciFunction, Role};

/// Lays out rows as left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let _ = write!(s, "{:w$}  ", c, w = widths[i]);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_else(|| "-".into())
}

/// The `discover` report: one section per table, in this order.
pub fn inventory(inv: &Inventory) -> String {
    let mut out = String::new();
    out.push_str("NETWORK PCI FUNCTIONS\n");
    functions_table(inv, &mut out);
    for f in inv.pci_functions.iter().filter(|f| f.sriov.is_some()) {
        sriov_section(f, &mut out);
    }
    out.push_str("\nQUEUES AND INTERRUPTS\n");
    queues_table(inv, &mut out);
    out.push('\n');
    irqs_table(inv, &mut out);
    out.push_str("\nOTHER NETDEVS\n");
    other_netdevs_table(inv, &mut out);
    cpus_section(inv, &mut out);
    out
}

/// One row per network PCI function.
fn functions_table(inv: &Inventory, out: &mut String) {
    let rows: Vec<Vec<String>> = inv
        .pci_functions
        .iter()
        .map(|f| {
            let netdevs = f
                .netdevs
                .iter()
                .map(|d| format!("{}#{}", d.name, d.ifindex))
                .collect::<Vec<_>>()
                .join(",");
            let mac = f
                .netdevs
                .first()
                .and_then(|d| d.mac.clone())
                .unwrap_or_else(|| "-".into());
            let state = f
                .netdevs
                .first()
                .map(|d| d.operstate.clone())
                .unwrap_or_else(|| "-".into());
            let speed = f
                .netdevs
                .first()
                .and_then(|d| d.speed_mbps)
                .map(|s| format!("{s}M"))
                .unwrap_or_else(|| "-".into());
            let role = match (f.role, f.vf_index, &f.physfn) {
                (Role::Vf, Some(i), Some(pf)) => format!("vf{i} of {pf}"),
                (Role::Pf, ..) => "pf".into(),
                (Role::Vf, ..) => "vf".into(),
                (Role::Plain, ..) => "-".into(),
            };
            vec![
                f.bdf.clone(),
                format!(
                    "{}:{}",
                    f.vendor_id.trim_start_matches("0x"),
                    f.device_id.trim_start_matches("0x")
                ),
                opt(&f.driver),
                role,
                if netdevs.is_empty() {
                    "-".into()
                } else {
                    netdevs
                },
                mac,
                state,
                speed,
                opt(&f.numa_node),
                format_cpulist(&f.local_cpus),
                f.profile
                    .as_ref()
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| "-".into()),
                name_of(f),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "PCI",
            "ID",
            "DRIVER",
            "ROLE",
            "NETDEV#IFINDEX",
            "MAC",
            "STATE",
            "SPEED",
            "NUMA",
            "CPUS",
            "PROFILE",
            "NAME",
        ],
        &rows,
    ));
}

/// A PF's SR-IOV line and, when it has VFs, their table.
fn sriov_section(f: &PciFunction, out: &mut String) {
    let s = f.sriov.as_ref().expect("filtered on sriov");
    let _ = writeln!(
        out,
        "\nSR-IOV {}: {} of {} VFs enabled, autoprobe {}, eswitch {}",
        f.bdf,
        s.num_vfs,
        s.total_vfs,
        s.drivers_autoprobe
            .map(|a| if a { "on" } else { "off" })
            .unwrap_or("-"),
        opt(&f.eswitch_mode)
    );
    // Switchdev: each VF's representor, a netdev of the PF's device that is not the PF's.
    for r in &f.representors {
        let _ = writeln!(
            out,
            "  {}#{}: representor of VF {} (port {}, switch {})",
            r.name, r.ifindex, r.vf, r.port_name, r.switch_id
        );
    }
    if s.vfs.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = s
        .vfs
        .iter()
        .map(|v| {
            let c = v.config.as_ref();
            vec![
                v.index.to_string(),
                // A VF with no device of its own (netdevsim's) has no address.
                if v.bdf.is_empty() {
                    "-".into()
                } else {
                    v.bdf.clone()
                },
                opt(&v.driver),
                v.netdevs
                    .iter()
                    .map(|d| format!("{}#{}", d.name, d.ifindex))
                    .collect::<Vec<_>>()
                    .join(","),
                c.map(|c| c.mac.to_string()).unwrap_or_else(|| "-".into()),
                c.map(|c| {
                    if c.vlan == 0 {
                        "-".into()
                    } else {
                        format!(
                            "{} qos {} {}",
                            c.vlan,
                            c.qos,
                            c.vlan_proto.map(|p| p.to_string()).unwrap_or_default()
                        )
                        .trim_end()
                        .to_string()
                    }
                })
                .unwrap_or_else(|| "-".into()),
                c.map(|c| format!("{}/{}", opt(&c.min_tx_rate), opt(&c.max_tx_rate)))
                    .unwrap_or_else(|| "-".into()),
                c.map(|c| onoff(c.spoofchk)).unwrap_or_else(|| "-".into()),
                c.map(|c| onoff(c.trust)).unwrap_or_else(|| "-".into()),
                c.map(|c| opt(&c.link_state)).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "VF",
            "PCI",
            "DRIVER",
            "NETDEV",
            "MAC",
            "VLAN",
            "RATE MIN/MAX",
            "SPOOFCHK",
            "TRUST",
            "LINK",
        ],
        &rows,
    ));
}

/// Each function's netdevs with their queue counts and channels.
fn queues_table(inv: &Inventory, out: &mut String) {
    let mut rows = Vec::new();
    for f in &inv.pci_functions {
        for d in &f.netdevs {
            let ch = d
                .channels
                .as_ref()
                .map(|c| {
                    format!(
                        "combined {}/{} rx {}/{} tx {}/{}",
                        opt(&c.combined),
                        opt(&c.combined_max),
                        opt(&c.rx),
                        opt(&c.rx_max),
                        opt(&c.tx),
                        opt(&c.tx_max)
                    )
                })
                .unwrap_or_else(|| "-".into());
            rows.push(vec![
                f.bdf.clone(),
                d.name.clone(),
                format!("{}/{}", d.rx_queues, d.tx_queues),
                ch,
            ]);
        }
    }
    out.push_str(&table(
        &["PCI", "NETDEV", "RX/TX QUEUES", "CHANNELS (cur/max)"],
        &rows,
    ));
}

/// Each function's interrupts, their queue and affinity.
fn irqs_table(inv: &Inventory, out: &mut String) {
    let mut rows = Vec::new();
    for f in &inv.pci_functions {
        for i in &f.irqs {
            rows.push(vec![
                f.bdf.clone(),
                i.irq.to_string(),
                if i.name.is_empty() {
                    "-".into()
                } else {
                    i.name.clone()
                },
                i.queue
                    .map(|q| {
                        let k = match q.kind {
                            QueueKind::Rx => "rx",
                            QueueKind::Tx => "tx",
                            QueueKind::Combined => "combined",
                        };
                        format!("{k}-{}", q.index)
                    })
                    .unwrap_or_else(|| "-".into()),
                format_cpulist(&i.affinity),
                format_cpulist(&i.effective_affinity),
                i.count.to_string(),
            ]);
        }
    }
    out.push_str(&table(
        &[
            "PCI",
            "IRQ",
            "NAME",
            "QUEUE",
            "AFFINITY",
            "EFFECTIVE",
            "COUNT",
        ],
        &rows,
    ));
}

/// Netdevs not backed by a PCI function.
fn other_netdevs_table(inv: &Inventory, out: &mut String) {
    let rows: Vec<Vec<String>> = inv
        .other_netdevs
        .iter()
        .map(|d| {
            vec![
                d.ifindex.to_string(),
                d.name.clone(),
                opt(&d.kind),
                opt(&d.mac),
                d.operstate.clone(),
            ]
        })
        .collect();
    out.push_str(&table(&["IFINDEX", "NAME", "KIND", "MAC", "STATE"], &rows));
}

/// Online CPUs, NUMA nodes and SMT siblings.
fn cpus_section(inv: &Inventory, out: &mut String) {
    let c = &inv.cpus;
    let _ = writeln!(out, "\nCPUS\nonline {}", format_cpulist(&c.online));
    for n in &c.nodes {
        let _ = writeln!(out, "node{} {}", n.id, format_cpulist(&n.cpus));
    }
    if c.smt_siblings.is_empty() {
        out.push_str("smt siblings: none\n");
    } else {
        let groups: Vec<String> = c.smt_siblings.iter().map(|g| format_cpulist(g)).collect();
        let _ = writeln!(out, "smt siblings: {}", groups.join(" "));
    }
}

fn onoff(v: Option<bool>) -> String {
    match v {
        Some(true) => "on".into(),
        Some(false) => "off".into(),
        None => "-".into(),
    }
}

fn name_of(f: &PciFunction) -> String {
    f.device_name.clone().unwrap_or_else(|| "-".into())
}

/// The `plan` report.
pub fn plan(p: &crate::provision::plan::Plan) -> String {
    let mut out = String::from("PLACEMENTS\n");
    let rows: Vec<Vec<String>> = p
        .placements
        .iter()
        .map(|pl| {
            vec![
                pl.vport.clone(),
                pl.uplink.clone(),
                pl.path.label(),
                pl.reason.clone(),
            ]
        })
        .collect();
    out.push_str(&table(&["VPORT", "UPLINK", "PATH", "REASON"], &rows));
    if p.actions.is_empty() {
        out.push_str("\nACTIONS\nnothing to do: the host already matches the config\n");
    } else {
        out.push_str("\nACTIONS\n");
        for (i, a) in p.actions.iter().enumerate() {
            let _ = writeln!(out, "{:>3}. {}", i + 1, a.describe());
        }
    }
    for d in &p.disruptions {
        let _ = writeln!(
            out,
            "\nDISRUPTIVE: {} goes from {} to {} VFs through 0, tearing down the VFs of {}{}",
            d.pf,
            d.from,
            d.to,
            if d.vports.is_empty() {
                "no vPort".to_string()
            } else {
                d.vports.join(", ")
            },
            if d.unmanaged_vfs_in_use > 0 {
                format!(
                    " and {} VF(s) in use that vportd does not manage",
                    d.unmanaged_vfs_in_use
                )
            } else {
                String::new()
            }
        );
    }
    for w in &p.warnings {
        let _ = writeln!(out, "\nwarning: {w}");
    }
    if !p.blockers.is_empty() {
        out.push_str("\nBLOCKED: apply will refuse this plan and change nothing:\n");
        for b in &p.blockers {
            let _ = writeln!(out, "  - {b}");
        }
    }
    out
}

/// The `status` report.
pub fn status(list: &[crate::provision::VportStatus]) -> String {
    use crate::provision::state::{Health, VportPath};
    if list.is_empty() {
        return "no vPorts provisioned (run vportd apply CONFIG)\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.vport.clone(),
                s.uplink.clone(),
                s.path.label(),
                opt(&s.vf_bdf),
                match s.health {
                    Health::Provisioned => "provisioned",
                    Health::Lost => "lost",
                }
                .into(),
                if s.drift.is_empty() {
                    "in sync".into()
                } else {
                    format!("DRIFT: {}", s.drift.join("; "))
                },
            ]
        })
        .collect();
    let mut out = table(&["VPORT", "UPLINK", "PATH", "VF", "HEALTH", "STATE"], &rows);
    let sets: Vec<_> = list.iter().filter_map(|s| s.queue_set.as_ref()).collect();
    if !sets.is_empty() {
        out.push_str(&queue_sets(&sets));
    }
    let soft: Vec<_> = list
        .iter()
        .filter(|s| s.path == VportPath::Software)
        .collect();
    if !soft.is_empty() {
        out.push_str("\nsoftware switch (counters as the daemon last published them):\n");
        let rows: Vec<Vec<String>> = soft
            .iter()
            .map(|s| match &s.switch {
                None => vec![
                    s.vport.clone(),
                    "-".into(),
                    "not attached (is vportd daemon running with this config?)".into(),
                ],
                Some(p) => {
                    let drops: Vec<String> = p
                        .drops
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(r, n)| format!("{r} {n}"))
                        .collect();
                    vec![
                        s.vport.clone(),
                        format!("{} ({})", p.netdev, p.edge),
                        format!(
                            "rx {} pkts {} B, tx {} pkts {} B, flooded {}, drops: {}",
                            p.rx_packets,
                            p.rx_bytes,
                            p.tx_packets,
                            p.tx_bytes,
                            p.tx_flooded,
                            if drops.is_empty() {
                                "none".into()
                            } else {
                                drops.join(", ")
                            }
                        ),
                    ]
                }
            })
            .collect();
        out.push_str(&table(&["VPORT", "NIC", "COUNTERS"], &rows));
    }
    out
}

/// Each vPort's queue set: its queues by kind, index and IRQ on the function that owns them,
/// and its CPU set with where that came from (`vportd status`, `vportd discover --config`).
pub fn queue_sets(sets: &[&crate::provision::state::VportQueueSet]) -> String {
    let mut out =
        String::from("\nqueue sets (queue index and IRQ, on the function that owns them):\n");
    if sets.is_empty() {
        out.push_str("  no vPort on a VF or hardware queues\n");
        return out;
    }
    let rows: Vec<Vec<String>> = sets
        .iter()
        .map(|q| {
            vec![
                q.vport.clone(),
                q.function.clone(),
                if q.queues.is_empty() {
                    "- (none named by index)".into()
                } else {
                    q.queues
                        .iter()
                        .map(|x| format!("{} {} irq {}", x.kind, x.index, x.irq))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                format!(
                    "{} ({})",
                    crate::facts::parse::format_cpulist(&q.cpus),
                    match q.cpus_from {
                        "vport" => "its cpus",
                        _ => "function's local CPUs",
                    }
                ),
            ]
        })
        .collect();
    out.push_str(&table(&["VPORT", "FUNCTION", "QUEUES", "CPUS"], &rows));
    out
}

/// The running software switches, each with its kind and members, as the daemon last
/// published them; empty when it publishes none.
pub fn switches(snap: &crate::softpath::Snapshot) -> String {
    if snap.switches.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = snap
        .switches
        .iter()
        .map(|s| {
            let via = match (&s.uplink, &s.host_netdev) {
                (Some(u), _) => format!("uplink {u}"),
                (None, Some(h)) => format!("host {h}"),
                (None, None) => "-".into(),
            };
            vec![s.name.clone(), s.kind.clone(), via, s.members.join(", ")]
        })
        .collect();
    let mut out = String::from("\nsoftware switches:\n");
    out.push_str(&table(&["SWITCH", "KIND", "NIC", "MEMBERS"], &rows));
    out
}
