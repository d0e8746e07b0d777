//! The config against the discovered host: the checks only the inventory can answer.

use std::str::FromStr;

use super::{Config, ConfigError, Mac, Problem, ResolvedUplink, Uplink, UplinkSelector, sorted};
use crate::model::inventory::{Inventory, Netdev, PciFunction, Role};
use crate::model::location::Location;

/// Problems found against the host, each at the table it is about.
#[derive(Default)]
struct Report(Vec<Problem>);

impl Report {
    fn add(&mut self, at: &Location, message: String, hint: String) {
        self.0.push(Problem {
            at: at.clone(),
            message,
            hint,
        });
    }
}

/// Checks a parsed config against the discovered host: each uplink must name exactly one PCI
/// function, not a VF, with enough VFs, and no two uplinks the same one; no vPort may take a
/// MAC a PF netdev already has. Returns each uplink's PCI address and netdev ifindex, so that
/// nothing downstream resolves a MAC or interface name again.
///
/// A MAC selector matches a netdev's current MAC. The permanent MAC would survive bonding
/// (which gives every port the bond's MAC), but the inventory does not carry it yet; such
/// MACs match several functions and are refused with a hint to select by pci.
///
/// A function without SR-IOV is a fine uplink: its vPorts take queues or the software switch.
/// VF netdevs are not checked for MAC clashes: a VF holding a vPort's MAC is most likely that
/// vPort, configured by an earlier apply.
pub fn check_against(cfg: &Config, inv: &Inventory) -> Result<Vec<ResolvedUplink>, ConfigError> {
    let mut report = Report::default();
    let mut resolved: Vec<ResolvedUplink> = Vec::new();
    for (index, up) in cfg.uplinks.iter().enumerate() {
        let what = format!("uplink {}", up.selector);
        let Some((f, ifindex)) = the_function(&mut report, &what, up, inv) else {
            continue;
        };
        if f.role == Role::Vf {
            let pf = f.physfn.as_deref().unwrap_or("its PF");
            report.add(
                &up.at,
                format!("{what}: {} is a VF of {pf}, not a PF", f.bdf),
                format!("an uplink is the physical function that owns the VFs: pci = \"{pf}\""),
            );
            continue;
        }
        check_num_vfs(&mut report, &what, up, f);
        check_switch_vf(&mut report, &what, up, f);
        if let Some(first) = resolved.iter().find(|r| r.bdf == f.bdf) {
            let other = &cfg.uplinks[first.index];
            report.add(
                &up.at,
                format!(
                    "{what}: is {}, the same PF as uplink {} at {}",
                    f.bdf, other.selector, other.at
                ),
                "declare each PF once, with all its settings in one [[uplink]]".to_string(),
            );
            continue;
        }
        resolved.push(ResolvedUplink {
            index,
            bdf: f.bdf.clone(),
            ifindex,
        });
    }
    check_vport_macs(&mut report, cfg, inv);
    if report.0.is_empty() {
        Ok(resolved)
    } else {
        Err(ConfigError::Invalid(sorted(report.0)))
    }
}

/// The one PCI function an uplink's selector names, and its netdev's ifindex; None after
/// reporting that it names none or several.
fn the_function<'i>(
    report: &mut Report,
    what: &str,
    up: &Uplink,
    inv: &'i Inventory,
) -> Option<(&'i PciFunction, Option<u32>)> {
    let hits: Vec<(&PciFunction, Option<u32>)> = match &up.selector {
        UplinkSelector::Pci(bdf) => inv
            .pci_functions
            .iter()
            .filter(|f| f.bdf.eq_ignore_ascii_case(bdf))
            .map(|f| (f, f.netdevs.first().map(|d| d.ifindex)))
            .collect(),
        UplinkSelector::Mac(mac) => functions_with_netdev(inv, |d| {
            d.mac
                .as_deref()
                .and_then(|m| Mac::from_str(m).ok())
                .map(|m| m.to_string())
                == Some(mac.clone())
        }),
        UplinkSelector::Ifname(name) => functions_with_netdev(inv, |d| d.name == *name),
    };
    match hits.as_slice() {
        [hit] => Some(*hit),
        [] => {
            report.add(&up.at, not_found(what, up, inv), host_functions_hint(inv));
            None
        }
        many => {
            let bdfs: Vec<&str> = many.iter().map(|(f, _)| f.bdf.as_str()).collect();
            report.add(
                &up.at,
                format!(
                    "{what}: matches several PCI functions ({})",
                    bdfs.join(", ")
                ),
                "bonds and teams give their ports one MAC: select the PF by pci instead"
                    .to_string(),
            );
            None
        }
    }
}

/// Why no PCI function matched: the name may be a virtual interface's.
fn not_found(what: &str, up: &Uplink, inv: &Inventory) -> String {
    let other = inv.other_netdevs.iter().find(|d| match &up.selector {
        UplinkSelector::Ifname(n) => d.name == *n,
        UplinkSelector::Mac(m) => d.mac.as_deref() == Some(m.as_str()),
        UplinkSelector::Pci(_) => false,
    });
    match other {
        Some(d) => match d.kind.as_deref() {
            Some(kind) => format!(
                "{what}: {} is a virtual interface ({kind}), not a PCI NIC",
                d.name
            ),
            None => format!("{what}: {} is not a PCI NIC", d.name),
        },
        None => format!(
            "{what}: no network PCI function on this host has that {}",
            up.selector.key()
        ),
    }
}

/// num_vfs within what the PF supports.
fn check_num_vfs(report: &mut Report, what: &str, up: &Uplink, f: &PciFunction) {
    let total = f.sriov.as_ref().map_or(0, |s| s.total_vfs);
    let Some(n) = up.num_vfs.filter(|n| *n > total) else {
        return;
    };
    let (message, hint) = if f.sriov.is_some() {
        (
            format!(
                "{what}: num_vfs {n} is above the {total} VFs {} supports (sriov_totalvfs)",
                f.bdf
            ),
            format!(
                "lower num_vfs to at most {total}, or omit it; the firmware may set a lower limit than the NIC"
            ),
        )
    } else {
        (
            format!("{what}: num_vfs {n}, but {} has no SR-IOV", f.bdf),
            "remove num_vfs: this uplink's vPorts will use queues or the software switch"
                .to_string(),
        )
    };
    report.add(&up.at, message, hint);
}

/// switch_vf one of the VFs the PF can have.
fn check_switch_vf(report: &mut Report, what: &str, up: &Uplink, f: &PciFunction) {
    let total = f.sriov.as_ref().map_or(0, |s| s.total_vfs);
    let Some(vf) = up.switch_vf.filter(|vf| *vf >= total) else {
        return;
    };
    let (message, hint) = if f.sriov.is_some() && total > 0 {
        (
            format!(
                "{what}: switch_vf {vf}, but {} has VFs 0 to {} at most (sriov_totalvfs {total})",
                f.bdf,
                total.saturating_sub(1)
            ),
            "pick a VF index below sriov_totalvfs (vportd discover shows it)".to_string(),
        )
    } else {
        (
            format!("{what}: switch_vf {vf}, but {} has no SR-IOV", f.bdf),
            "remove switch_vf: the software switch then trunks through the PF itself".to_string(),
        )
    };
    report.add(&up.at, message, hint);
}

/// No vPort may take a MAC a PF's netdev already has.
fn check_vport_macs(report: &mut Report, cfg: &Config, inv: &Inventory) {
    for v in &cfg.vports {
        let owner = inv
            .pci_functions
            .iter()
            .filter(|f| f.role != Role::Vf)
            .flat_map(|f| f.netdevs.iter().map(move |d| (f, d)))
            .find(|(_, d)| d.mac.as_deref().and_then(|m| Mac::from_str(m).ok()) == Some(v.mac));
        if let Some((f, d)) = owner {
            report.add(
                &v.at,
                format!(
                    "vport {:?}: mac {} is already the MAC of {} ({})",
                    v.name, v.mac, d.name, f.bdf
                ),
                "two ports with one MAC on the same wire break forwarding: give the vPort another"
                    .to_string(),
            );
        }
    }
}

/// Non-VF functions with a netdev that `pred` picks, and that netdev's ifindex. A VF is
/// included too, so that naming one is reported as such rather than as "not found".
fn functions_with_netdev(
    inv: &Inventory,
    pred: impl Fn(&Netdev) -> bool,
) -> Vec<(&PciFunction, Option<u32>)> {
    inv.pci_functions
        .iter()
        .filter_map(|f| {
            f.netdevs
                .iter()
                .find(|d| pred(d))
                .map(|d| (f, Some(d.ifindex)))
        })
        .collect()
}

/// What the host has, so a wrong selector can be corrected without another command.
fn host_functions_hint(inv: &Inventory) -> String {
    let listed: Vec<String> = inv
        .pci_functions
        .iter()
        .filter(|f| f.role != Role::Vf)
        .map(|f| {
            let mut s = f.bdf.clone();
            if let Some(d) = f.netdevs.first() {
                s += &format!(" ({}", d.name);
                if let Some(m) = &d.mac {
                    s += &format!(" {m}");
                }
                s += ")";
            }
            s
        })
        .collect();
    if listed.is_empty() {
        "this host has no network PCI functions; vportd discover shows what it sees".to_string()
    } else {
        format!(
            "this host's network PCI functions: {}; vportd discover shows more",
            listed.join(", ")
        )
    }
}
