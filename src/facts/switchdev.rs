//! What a device's switch says about its netdevs, and devices that are not PCI functions:
//! - in switchdev mode a PF's device also carries one representor netdev per VF; sysfs names
//!   it by `phys_port_name` (`pf0vf1`) and `phys_switch_id` (the PF port's), and it must be
//!   shown as that VF's representor, never as a port of the PF (nor taken for the PF's netdev);
//! - netdevsim, the kernel's simulated NIC, has SR-IOV and devlink but sits on a bus of its
//!   own: `/sys/bus/netdevsim/devices/netdevsimN` with `sriov_numvfs` and no VF devices. It is
//!   read into the inventory as a function addressed by its device name, so that the same
//!   planner and apply drive it (by `ifname` or `mac` in a config) as they drive a PCI PF.

use std::collections::BTreeMap;

use super::inventory::InventoryError;
use crate::host::fs::KernelFs;
use crate::host::netlink::NetlinkSnapshot;
use crate::model::inventory::{Netdev, PciFunction, Representor, Role, Sriov, VfEntry};

pub(super) const NETDEVSIM_DEVICES: &str = "/sys/bus/netdevsim/devices";

/// How many VFs a netdevsim device allows when its debugfs `max_vfs` cannot be read: the
/// driver's default (NSIM_BUS_DEV_MAX_VFS in drivers/net/netdevsim/bus.c, 6.12).
const NETDEVSIM_DEFAULT_MAX_VFS: u32 = 4;

/// The VF a switch port name stands for: `pf0vf1` (and `c1pf0vf1`, a controller's) is VF 1.
pub fn vf_of_port_name(name: &str) -> Option<u32> {
    let rest = match name.strip_prefix('c') {
        Some(r) => r.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => name,
    };
    let rest = rest.strip_prefix("pf")?;
    let (pf, vf) = rest.split_once("vf")?;
    if pf.is_empty() || !pf.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    vf.parse().ok()
}

/// The netdevsim device on a netdev's device path (`../../devices/netdevsim10/net/eni10np1`).
pub(super) fn netdevsim_of(path: &str) -> Option<String> {
    path.split('/')
        .find(|p| {
            p.strip_prefix("netdevsim")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// Splits a device's netdevs into its own ports and its VF representors: a netdev whose
/// `phys_port_name` names a VF and that has a switch id. Drivers without either refuse the
/// read (EOPNOTSUPP), which leaves the netdev a port.
pub(super) fn split_representors(
    fs: &KernelFs,
    netdevs: Vec<Netdev>,
) -> Result<(Vec<Netdev>, Vec<Representor>), InventoryError> {
    let mut ports = Vec::new();
    let mut reps = Vec::new();
    for d in netdevs {
        let base = format!("/sys/class/net/{}", d.name);
        let port_name = fs.read_lenient(&format!("{base}/phys_port_name"));
        let vf = port_name.as_deref().and_then(vf_of_port_name);
        let switch_id = vf
            .and_then(|_| fs.read_lenient(&format!("{base}/phys_switch_id")))
            .filter(|s| !s.is_empty());
        match (vf, port_name, switch_id) {
            (Some(vf), Some(port_name), Some(switch_id)) => reps.push(Representor {
                vf,
                ifindex: d.ifindex,
                name: d.name,
                port_name,
                switch_id,
            }),
            _ => ports.push(d),
        }
    }
    reps.sort_by_key(|r| r.vf);
    Ok((ports, reps))
}

/// Every netdevsim device as a function: its ports, representors, SR-IOV (the VFs are
/// entries of its port's rtnetlink VF list, with no device or driver of their own) and
/// eswitch mode. `by_device` holds the netdevs found under each device; those are taken.
pub(super) fn netdevsim_functions(
    fs: &KernelFs,
    nl: &NetlinkSnapshot,
    by_device: &mut BTreeMap<String, Vec<(Netdev, Option<String>)>>,
) -> Result<Vec<PciFunction>, InventoryError> {
    let mut functions = Vec::new();
    for name in fs.list(NETDEVSIM_DEVICES)? {
        let base = format!("{NETDEVSIM_DEVICES}/{name}");
        let mut devs: Vec<Netdev> = by_device
            .remove(&name)
            .unwrap_or_default()
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        devs.sort_by_key(|d| d.ifindex);
        let (devs, representors) = split_representors(fs, devs)?;
        let sriov = match fs.read_parsed::<u32>(&format!("{base}/sriov_numvfs")) {
            Some(num_vfs) => {
                let max = fs
                    .read_parsed::<u32>(&format!("/sys/kernel/debug/netdevsim/{name}/max_vfs"))
                    .unwrap_or(NETDEVSIM_DEFAULT_MAX_VFS);
                let vfs = devs
                    .iter()
                    .filter_map(|d| nl.link(d.ifindex))
                    .flat_map(|l| l.vfs.iter())
                    .filter(|c| c.vf < num_vfs)
                    .map(|c| VfEntry {
                        index: c.vf,
                        bdf: String::new(),
                        driver: None,
                        netdevs: Vec::new(),
                        config: Some(c.clone()),
                        // Not PCI: no IOMMU group, nothing for vfio to hold.
                        iommu_group: None,
                        vfio_holders: Vec::new(),
                    })
                    .collect();
                Some(Sriov {
                    total_vfs: max.max(num_vfs),
                    num_vfs,
                    drivers_autoprobe: None,
                    vfs,
                })
            }
            None => None,
        };
        functions.push(PciFunction {
            bdf: name.clone(),
            vendor_id: String::new(),
            device_id: String::new(),
            vendor_name: None,
            device_name: Some("netdevsim (the kernel's simulated NIC)".into()),
            subsystem_vendor_id: None,
            subsystem_device_id: None,
            class: String::new(),
            driver: fs.link_name(&format!("{base}/driver"))?,
            role: if sriov.is_some() {
                Role::Pf
            } else {
                Role::Plain
            },
            numa_node: None,
            local_cpus: Vec::new(),
            physfn: None,
            vf_index: None,
            virtio_device: None,
            netdevs: devs,
            sriov,
            irqs: Vec::new(),
            profile: None,
            eswitch_mode: nl.eswitch.get(&format!("netdevsim/{name}")).copied(),
            representors,
            iommu_group: None,
        });
    }
    Ok(functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_say_which_vf() {
        assert_eq!(vf_of_port_name("pf0vf1"), Some(1));
        assert_eq!(vf_of_port_name("pf1vf12"), Some(12));
        assert_eq!(vf_of_port_name("c1pf0vf3"), Some(3));
        // The PF's own port, a split port, a PF representor: not a VF.
        for name in ["p0", "p1s0", "pf0", "pf0sf1", "pfvf1", "pf0vf", "eth0"] {
            assert_eq!(vf_of_port_name(name), None, "{name}");
        }
    }

    #[test]
    fn netdevsim_devices_on_a_path() {
        assert_eq!(
            netdevsim_of("../../devices/netdevsim10/net/eni10np1").as_deref(),
            Some("netdevsim10")
        );
        assert_eq!(
            netdevsim_of("../../devices/pci0000:00/0000:00:03.0/net/eth0"),
            None
        );
        assert_eq!(netdevsim_of("../../devices/virtual/net/netdevsim"), None);
    }
}
