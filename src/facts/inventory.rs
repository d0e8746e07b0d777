//! The host's inventory: every network PCI function with its netdevs, SR-IOV state,
//! VFs, queues and interrupts; the other netdevs; the CPU topology.
//!
//! Discovery reads sysfs/procfs through [`KernelFs`] and netlink through a
//! [`NetlinkSnapshot`] taken by `host/`, so the same code runs on the live system
//! and on fixtures captured from real kernels. The JSON form of [`Inventory`] is a
//! stable schema (docs/discover-schema.md); bump [`SCHEMA_VERSION`] on any
//! incompatible change.

use std::collections::{BTreeMap, BTreeSet};

use crate::facts::parse::{self, InterruptLine};
use crate::facts::pciids;
use crate::facts::switchdev;
use crate::host::fs::KernelFs;
use crate::host::netlink::NetlinkSnapshot;
use crate::model::profile::ProfileSet;
use crate::model::uplink::UplinkSelector;

use crate::model::file_errors::FsError;
use crate::model::inventory::{
    CpuTopology, Inventory, Irq, Netdev, NetdevRef, NumaNode, PciFunction, ProfileMatch, Role,
    SCHEMA_VERSION, Sriov, VfEntry,
};
use crate::model::vf::VfConfig;

/// Errors from discovery.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A kernel file could not be read.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// /proc/interrupts could not be parsed.
    #[error(transparent)]
    Parse(#[from] parse::ParseError),
}

const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// How much of the host to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything: what `discover` shows.
    Full,
    /// What provisioning needs: functions, drivers, SR-IOV and VF configs, netdevs as
    /// rtnetlink reports them (queue counts are the allocated ones). No IRQs, CPU
    /// topology, NUMA placement, subsystem ids or PCI names: hundreds of reads on a big host, and
    /// apply's no-op check must stay fast.
    Provisioning,
}

/// Reads the inventory from the kernel views given.
pub fn discover(
    fs: &KernelFs,
    nl: &NetlinkSnapshot,
    profiles: &ProfileSet,
) -> Result<Inventory, InventoryError> {
    discover_scoped(fs, nl, profiles, Scope::Full)
}

/// [`discover`], reading only what `scope` needs; what it skips is left empty.
pub fn discover_scoped(
    fs: &KernelFs,
    nl: &NetlinkSnapshot,
    profiles: &ProfileSet,
    scope: Scope,
) -> Result<Inventory, InventoryError> {
    let full = scope == Scope::Full;
    let interrupts = match full
        .then(|| fs.read("/proc/interrupts"))
        .transpose()?
        .flatten()
    {
        Some(text) => parse::interrupts(&text)?,
        None => BTreeMap::new(),
    };

    // Every netdev, keyed by the PCI function its device path runs through.
    let mut by_function: BTreeMap<String, Vec<(Netdev, Option<String>)>> = BTreeMap::new();
    let mut others = Vec::new();
    let mut seen_ifindex = BTreeSet::new();
    for name in fs.list("/sys/class/net")? {
        let Some(dev) = read_netdev(fs, nl, &name, scope)? else {
            continue;
        };
        seen_ifindex.insert(dev.ifindex);
        // The class link's target is the device path itself
        // (`../../devices/pci0000:00/0000:00:03.0/virtio2/net/eth0`): one readlink
        // says which PCI function, if any, the netdev hangs off.
        let class_link = format!("/sys/class/net/{name}");
        let path = match fs.read_link(&class_link)? {
            Some(target) => target,
            None => fs.resolve(&class_link)?,
        };
        match pci_function_of(&path).or_else(|| switchdev::netdevsim_of(&path).map(|d| (d, None))) {
            Some((bdf, via)) => by_function.entry(bdf).or_default().push((dev, via)),
            None => others.push(dev),
        }
    }
    // Links netlink knows but sysfs does not show (another sysfs mount, a race).
    for l in &nl.links {
        if !seen_ifindex.contains(&l.ifindex) {
            others.push(netdev_from_netlink(nl, l.ifindex).expect("link is in the snapshot"));
        }
    }
    others.sort_by_key(|d| d.ifindex);

    let mut functions = Vec::new();
    for bdf in fs.list(PCI_DEVICES)? {
        let base = format!("{PCI_DEVICES}/{bdf}");
        let class = fs.read(&format!("{base}/class"))?.unwrap_or_default();
        let is_network = class_code(&class).is_some_and(|c| c >> 16 == 0x02);
        if !is_network && !by_function.contains_key(&bdf) {
            continue;
        }
        let netdevs = by_function.remove(&bdf).unwrap_or_default();
        functions.push(read_function(
            fs,
            nl,
            profiles,
            full.then_some(&interrupts),
            &bdf,
            class,
            netdevs,
        )?);
    }
    functions.extend(switchdev::netdevsim_functions(fs, nl, &mut by_function)?);
    Ok(assemble(
        functions,
        others,
        if full { read_cpus(fs)? } else { no_cpus() },
    ))
}

/// [`Scope::Provisioning`], narrowed to the PFs `pfs` (PCI addresses) and their VFs: what a
/// no-op `apply` needs when the config and state name every PF it touches. It skips the
/// other PCI devices and netdevs (on a big host, most of them), so the caller must know
/// that nothing outside matters: see [`uplink_functions`]. A PF that does not exist is left
/// out, as a full discovery would show it missing.
pub fn discover_pfs(
    fs: &KernelFs,
    nl: &NetlinkSnapshot,
    profiles: &ProfileSet,
    pfs: &BTreeSet<String>,
) -> Result<Inventory, InventoryError> {
    let mut functions = Vec::new();
    for pf in pfs {
        let base = format!("{PCI_DEVICES}/{pf}");
        let Some(class) = fs.read(&format!("{base}/class"))? else {
            continue;
        };
        let (netdevs, from_netlink) = pf_netdevs(fs, nl, pf)?;
        let mut f = read_function(fs, nl, profiles, None, pf, class, netdevs)?;
        if from_netlink {
            // A netdev whose parent is the function has the function's driver; one behind a
            // bus device (virtio) was given its own driver by pf_netdevs.
            for d in f.netdevs.iter_mut().filter(|d| d.driver.is_none()) {
                d.driver = f.driver.clone();
            }
        }
        if let Some(sriov) = &f.sriov {
            // The kernel gives a VF its PF's vendor and class and the PF's VF device id
            // (pci_iov_add_virtfn), and the PF's read already found each VF's address,
            // driver and netdevs: so the VFs cost no more reads.
            // (A recorded fixture holds the attribute as an empty file when it was not read.)
            let vf_device = match hex4(fs, &format!("{base}/sriov_vf_device"))?
                .filter(|id| parse_hex_id(id).is_some_and(|d| d != 0))
            {
                Some(id) => Some(id),
                None => match sriov.vfs.first() {
                    Some(vf) => hex4(fs, &format!("{PCI_DEVICES}/{}/device", vf.bdf))?,
                    None => None,
                },
            };
            for vf in &sriov.vfs {
                functions.push(vf_function(fs, nl, profiles, &f, vf, vf_device.clone())?);
            }
        }
        functions.push(f);
    }
    Ok(assemble(functions, Vec::new(), no_cpus()))
}

/// A function's netdev and the bus device between them, if any.
type NetdevVia = (Netdev, Option<String>);

/// The netdevs of the PCI function `pf`, each with the bus device between them (`virtio2`),
/// and whether rtnetlink named them. rtnetlink names a netdev's parent device
/// (IFLA_PARENT_DEV_NAME, since 5.13): the function itself for most NICs, but a bus device
/// under it for virtio-net (`0000:00:03.0/virtio2/net/eth0`), so a netdev whose parent is on
/// another bus is followed up its sysfs device path to the first PCI function, as the full
/// read does. A kernel that names no parents is read the full way, one readlink per netdev, and so is a function
/// rtnetlink gave none (its netdevs may have moved since the snapshot, or it has none).
fn pf_netdevs(
    fs: &KernelFs,
    nl: &NetlinkSnapshot,
    pf: &str,
) -> Result<(Vec<NetdevVia>, bool), InventoryError> {
    let mut found = Vec::new();
    for l in nl.links.iter().filter(|l| l.parent_bus.is_some()) {
        if l.parent_bus.as_deref() == Some("pci") {
            if l.parent_dev.as_deref() == Some(pf) {
                found.extend(netdev_from_netlink(nl, l.ifindex).map(|d| (d, None)));
            }
            continue;
        }
        let class_link = format!("/sys/class/net/{}", l.name);
        let Some(path) = fs.read_link(&class_link)? else {
            continue;
        };
        if let Some((_, via)) = pci_function_of(&path).filter(|(bdf, _)| bdf == pf)
            && let Some(mut d) = netdev_from_netlink(nl, l.ifindex)
        {
            d.driver = fs.link_name(&format!("{class_link}/device/driver"))?;
            found.push((d, via));
        }
    }
    if !found.is_empty() {
        return Ok((found, true));
    }
    for name in fs.list("/sys/class/net")? {
        let class_link = format!("/sys/class/net/{name}");
        let Some(path) = fs.read_link(&class_link)? else {
            continue;
        };
        if let Some((_, via)) = pci_function_of(&path).filter(|(bdf, _)| bdf == pf)
            && let Some(dev) = read_netdev(fs, nl, &name, Scope::Provisioning)?
        {
            found.push((dev, via));
        }
    }
    Ok((found, false))
}

/// A VF's function as the provisioning scope reads it, from its PF's read.
fn vf_function(
    fs: &KernelFs,
    nl: &NetlinkSnapshot,
    profiles: &ProfileSet,
    pf: &PciFunction,
    vf: &VfEntry,
    device_id: Option<String>,
) -> Result<PciFunction, InventoryError> {
    let device_id = device_id.unwrap_or_default();
    let (vid, did) = (parse_hex_id(&pf.vendor_id), parse_hex_id(&device_id));
    let mut netdevs = Vec::new();
    for r in &vf.netdevs {
        match netdev_from_netlink(nl, r.ifindex) {
            Some(mut dev) => {
                dev.driver = vf.driver.clone();
                netdevs.push(dev);
            }
            // Newer than the netlink dump: sysfs says the rest.
            None => netdevs.extend(read_netdev(fs, nl, &r.name, Scope::Provisioning)?),
        }
    }
    netdevs.sort_by_key(|d| d.ifindex);
    let profile = match (vid, did) {
        (Some(v), Some(d)) => profiles
            .match_function(v, d, vf.driver.as_deref())
            .map(|m| profile_match(&m, None)),
        _ => None,
    };
    Ok(PciFunction {
        bdf: vf.bdf.clone(),
        vendor_id: pf.vendor_id.clone(),
        vendor_name: pf.vendor_name.clone(),
        // A provisioning read names nothing (see Scope::Provisioning).
        device_name: None,
        device_id,
        subsystem_vendor_id: None,
        subsystem_device_id: None,
        class: pf.class.clone(),
        driver: vf.driver.clone(),
        role: Role::Vf,
        numa_node: None,
        local_cpus: Vec::new(),
        physfn: Some(pf.bdf.clone()),
        vf_index: None,
        virtio_device: None,
        netdevs,
        sriov: None,
        irqs: Vec::new(),
        profile,
        eswitch_mode: None,
        representors: Vec::new(),
        iommu_group: vf.iommu_group,
    })
}

/// The PFs a provisioning run must read, when the config's uplinks and the state's vPorts
/// name them all unambiguously; None when a full read is needed to say what is wrong (an
/// uplink that matches nothing or several netdevs, or a netdev that is not a PCI function's).
/// The caller still checks [`mac_outside`] on the result. `state_uplinks` are the PCI addresses the state
/// file records: a vPort removed from the config still has a VF to reset there.
pub fn uplink_functions<'s>(
    fs: &KernelFs,
    nl: &NetlinkSnapshot,
    uplinks: impl IntoIterator<Item = &'s UplinkSelector>,
    state_uplinks: impl IntoIterator<Item = String>,
) -> Result<Option<BTreeSet<String>>, InventoryError> {
    let mut pfs: BTreeSet<String> = state_uplinks.into_iter().collect();
    for selector in uplinks {
        let links: Vec<&crate::host::netlink::LinkSnapshot> = match selector {
            UplinkSelector::Pci(bdf) => {
                // Only a network function is one a full read would find by this address.
                let class = fs.read(&format!("{PCI_DEVICES}/{bdf}/class"))?;
                if class
                    .as_deref()
                    .and_then(class_code)
                    .is_none_or(|c| c >> 16 != 0x02)
                {
                    return Ok(None);
                }
                pfs.insert(bdf.clone());
                continue;
            }
            UplinkSelector::Mac(mac) => nl
                .links
                .iter()
                .filter(|l| {
                    l.mac
                        .as_deref()
                        .is_some_and(|m| m.eq_ignore_ascii_case(mac))
                })
                .collect(),
            UplinkSelector::Ifname(name) => nl.links.iter().filter(|l| l.name == *name).collect(),
        };
        let [link] = links.as_slice() else {
            return Ok(None);
        };
        let class_link = format!("/sys/class/net/{}", link.name);
        let Some(path) = fs.read_link(&class_link)? else {
            return Ok(None);
        };
        match pci_function_of(&path) {
            Some((bdf, _)) => pfs.insert(bdf),
            None => return Ok(None),
        };
    }
    Ok(Some(pfs))
}

/// Whether a netdev outside a [`discover_pfs`] inventory holds one of `macs`: then only a
/// full read can say whether that is a clash (another PF's port) or not (a VF elsewhere).
pub fn mac_outside(inv: &Inventory, nl: &NetlinkSnapshot, macs: &BTreeSet<String>) -> bool {
    let covered: BTreeSet<u32> = inv
        .pci_functions
        .iter()
        .flat_map(|f| f.netdevs.iter().map(|d| d.ifindex))
        .collect();
    nl.links.iter().any(|l| {
        !covered.contains(&l.ifindex)
            && l.mac
                .as_deref()
                .is_some_and(|m| macs.contains(&m.to_ascii_lowercase()))
    })
}

fn no_cpus() -> CpuTopology {
    CpuTopology {
        online: Vec::new(),
        nodes: Vec::new(),
        smt_siblings: Vec::new(),
    }
}

/// Sorts the functions, gives each VF its index from its PF's virtfn links, and wraps up.
fn assemble(mut functions: Vec<PciFunction>, others: Vec<Netdev>, cpus: CpuTopology) -> Inventory {
    functions.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    let vf_indexes: BTreeMap<String, u32> = functions
        .iter()
        .filter_map(|f| f.sriov.as_ref())
        .flat_map(|s| s.vfs.iter().map(|v| (v.bdf.clone(), v.index)))
        .collect();
    for f in functions.iter_mut().filter(|f| f.physfn.is_some()) {
        f.vf_index = vf_indexes.get(&f.bdf).copied();
    }

    Inventory {
        schema_version: SCHEMA_VERSION,
        pci_functions: functions,
        other_netdevs: others,
        cpus,
    }
}

fn class_code(class: &str) -> Option<u32> {
    u32::from_str_radix(class.trim_start_matches("0x"), 16).ok()
}

fn is_bdf(s: &str) -> bool {
    // dddd:bb:dd.f
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// The innermost PCI function on a netdev's device path, and the bus device
/// between them if any (`virtio2` for virtio-net).
fn pci_function_of(path: &str) -> Option<(String, Option<String>)> {
    let parts: Vec<&str> = path.split('/').collect();
    let pos = parts.iter().rposition(|p| is_bdf(p))?;
    let via = parts
        .get(pos + 1)
        .filter(|p| **p != "net")
        .map(|p| p.to_string());
    Some((parts[pos].to_string(), via))
}

fn read_netdev(
    fs: &KernelFs,
    nl: &NetlinkSnapshot,
    name: &str,
    scope: Scope,
) -> Result<Option<Netdev>, InventoryError> {
    let base = format!("/sys/class/net/{name}");
    let Some(ifindex) = fs.read_parsed::<u32>(&format!("{base}/ifindex")) else {
        return Ok(None);
    };
    let link = nl.link(ifindex);
    if scope == Scope::Provisioning
        && let Some(mut dev) = netdev_from_netlink(nl, ifindex)
    {
        // rtnetlink already said the rest; only the driver is sysfs's alone.
        dev.driver = fs.link_name(&format!("{base}/device/driver"))?;
        return Ok(Some(dev));
    }
    let queues = fs.list(&format!("{base}/queues"))?;
    let count = |prefix: &str| queues.iter().filter(|q| q.starts_with(prefix)).count() as u32;
    let speed = fs
        .read_parsed::<i64>(&format!("{base}/speed"))
        .filter(|s| *s > 0)
        .map(|s| s as u32);
    Ok(Some(Netdev {
        ifindex,
        name: name.to_string(),
        mac: fs
            .read(&format!("{base}/address"))?
            .filter(|m| !m.is_empty()),
        operstate: fs
            .read(&format!("{base}/operstate"))?
            .unwrap_or_else(|| "unknown".into()),
        mtu: fs.read_parsed(&format!("{base}/mtu")),
        speed_mbps: speed,
        driver: fs.link_name(&format!("{base}/device/driver"))?,
        kind: link.and_then(|l| l.kind.clone()),
        rx_queues: count("rx-"),
        tx_queues: count("tx-"),
        channels: nl.channels.get(&ifindex).cloned(),
        admin_up: link.and_then(|l| l.admin_up),
        queues: None,
    }))
}

fn netdev_from_netlink(nl: &NetlinkSnapshot, ifindex: u32) -> Option<Netdev> {
    let l = nl.link(ifindex)?;
    Some(Netdev {
        ifindex,
        name: l.name.clone(),
        mac: l.mac.clone(),
        operstate: l.operstate.clone(),
        mtu: l.mtu,
        speed_mbps: None,
        driver: None,
        kind: l.kind.clone(),
        rx_queues: l.num_rx_queues.unwrap_or(0),
        tx_queues: l.num_tx_queues.unwrap_or(0),
        channels: nl.channels.get(&ifindex).cloned(),
        admin_up: l.admin_up,
        queues: None,
    })
}

fn hex4(fs: &KernelFs, path: &str) -> Result<Option<String>, InventoryError> {
    Ok(fs
        .read(path)?
        .map(|v| format!("0x{:0>4}", v.trim_start_matches("0x").to_ascii_lowercase())))
}

fn parse_hex_id(id: &str) -> Option<u16> {
    u16::from_str_radix(id.trim_start_matches("0x"), 16).ok()
}

/// A function's NUMA node and local CPUs, read only for a full scope: placement matters to
/// the rebalancer, not to provisioning.
fn placement(
    fs: &KernelFs,
    base: &str,
    full: bool,
) -> Result<(Option<u32>, Vec<u32>), InventoryError> {
    let numa_node = full
        .then(|| fs.read_parsed::<i64>(&format!("{base}/numa_node")))
        .flatten()
        .filter(|n| *n >= 0)
        .map(|n| n as u32);
    let local_cpus = match full
        .then(|| fs.read(&format!("{base}/local_cpulist")))
        .transpose()?
        .flatten()
    {
        Some(t) => parse::cpulist(&t)?,
        None => Vec::new(),
    };
    Ok((numa_node, local_cpus))
}

fn read_function(
    fs: &KernelFs,
    nl: &NetlinkSnapshot,
    profiles: &ProfileSet,
    interrupts: Option<&BTreeMap<u32, InterruptLine>>,
    bdf: &str,
    class: String,
    netdevs: Vec<(Netdev, Option<String>)>,
) -> Result<PciFunction, InventoryError> {
    // Interrupts are read exactly when the scope is full.
    let full = interrupts.is_some();
    let base = format!("{PCI_DEVICES}/{bdf}");
    let vendor_id = hex4(fs, &format!("{base}/vendor"))?.unwrap_or_default();
    let device_id = hex4(fs, &format!("{base}/device"))?.unwrap_or_default();
    let (vid, did) = (parse_hex_id(&vendor_id), parse_hex_id(&device_id));
    // Names are for people (`discover`): a provisioning read skips them, so that a short
    // `apply` or `hotplug` never parses the 1.3 MB database (~9 ms of CPU).
    let (vendor_name, device_name) = match full {
        true => pciids::vendor_device(fs.root(), vid, did),
        false => (None, None),
    };
    let driver = fs.link_name(&format!("{base}/driver"))?;
    let (numa_node, local_cpus) = placement(fs, &base, full)?;
    let physfn = fs.link_name(&format!("{base}/physfn"))?;
    // Filled in from the PF's virtfn links once every function is read.
    let vf_index = None;

    let virtio_device = netdevs.iter().find_map(|(_, via)| via.clone());
    let mut devs: Vec<Netdev> = netdevs.into_iter().map(|(d, _)| d).collect();
    devs.sort_by_key(|d| d.ifindex);
    let (devs, representors) = switchdev::split_representors(fs, devs)?;

    let sriov = match fs.read_parsed::<u32>(&format!("{base}/sriov_totalvfs")) {
        Some(total) => Some(read_sriov(fs, nl, bdf, total, &devs)?),
        None => None,
    };
    let role = match (&physfn, &sriov) {
        (Some(_), _) => Role::Vf,
        (None, Some(_)) => Role::Pf,
        (None, None) => Role::Plain,
    };

    let profile = match (vid, did) {
        (Some(v), Some(d)) => profiles
            .match_function(v, d, driver.as_deref())
            .map(|m| profile_match(&m, sriov.as_ref())),
        _ => None,
    };

    Ok(PciFunction {
        bdf: bdf.to_string(),
        vendor_id,
        device_id,
        vendor_name,
        device_name,
        subsystem_vendor_id: if full {
            hex4(fs, &format!("{base}/subsystem_vendor"))?
        } else {
            None
        },
        subsystem_device_id: if full {
            hex4(fs, &format!("{base}/subsystem_device"))?
        } else {
            None
        },
        class,
        driver,
        role,
        numa_node,
        local_cpus,
        physfn,
        vf_index,
        virtio_device,
        netdevs: devs,
        sriov,
        irqs: match interrupts {
            Some(i) => read_irqs(fs, i, &base)?,
            None => Vec::new(),
        },
        profile,
        eswitch_mode: nl.eswitch.get(&format!("pci/{bdf}")).copied(),
        representors,
        iommu_group: crate::host::vfio::iommu_group(fs, bdf),
    })
}

/// Describes a profile match. Runtime facts win over the profile: the kernel's
/// `sriov_totalvfs` is what this PF can really do (firmware may have lowered it).
fn profile_match(m: &crate::model::profile::Match<'_>, sriov: Option<&Sriov>) -> ProfileMatch {
    let name = std::iter::once(m.profile)
        .chain(m.shared_with.iter().copied())
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(" or ");
    // A VF id several families share leaves the family open: the PF's entry says.
    let mut capabilities = if m.shared_with.is_empty() {
        m.capabilities_json()
    } else {
        serde_json::Value::Null
    };
    if let (Some(s), Some(sr)) = (sriov, capabilities.get_mut("sriov"))
        && let Some(obj) = sr.as_object_mut()
    {
        obj.insert("max_vfs".into(), serde_json::Value::from(s.total_vfs));
    }
    ProfileMatch {
        name,
        matched_as: m.role_name().to_string(),
        capabilities,
    }
}

fn read_sriov(
    fs: &KernelFs,
    nl: &NetlinkSnapshot,
    bdf: &str,
    total_vfs: u32,
    pf_netdevs: &[Netdev],
) -> Result<Sriov, InventoryError> {
    let base = format!("{PCI_DEVICES}/{bdf}");
    // The PF's rtnetlink view carries the VF configuration.
    let vf_configs: Vec<VfConfig> = pf_netdevs
        .iter()
        .filter_map(|d| nl.link(d.ifindex))
        .flat_map(|l| l.vfs.clone())
        .collect();
    let mut vfs = Vec::new();
    for entry in fs.list(&base)? {
        let Some(index) = entry
            .strip_prefix("virtfn")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(vf_bdf) = fs.link_name(&format!("{base}/{entry}"))? else {
            continue;
        };
        let vf_base = format!("{PCI_DEVICES}/{vf_bdf}");
        // rtnetlink names each netdev's parent device (IFLA_PARENT_DEV_NAME, since 5.13):
        // with it the VF's netdevs cost no reads; sysfs says it for older kernels and for
        // a netdev newer than the snapshot.
        let mut netdevs: Vec<NetdevRef> = nl
            .links
            .iter()
            .filter(|l| {
                l.parent_bus.as_deref() == Some("pci") && l.parent_dev.as_deref() == Some(&vf_bdf)
            })
            .map(|l| NetdevRef {
                ifindex: l.ifindex,
                name: l.name.clone(),
            })
            .collect();
        if netdevs.is_empty() {
            for name in fs.list(&format!("{vf_base}/net"))? {
                if let Some(ifindex) = fs.read_parsed(&format!("{vf_base}/net/{name}/ifindex")) {
                    netdevs.push(NetdevRef { ifindex, name });
                }
            }
        }
        netdevs.sort_by_key(|n| n.ifindex);
        vfs.push(VfEntry {
            index,
            driver: fs.link_name(&format!("{vf_base}/driver"))?,
            netdevs,
            config: vf_configs.iter().find(|c| c.vf == index).cloned(),
            iommu_group: crate::host::vfio::iommu_group(fs, &vf_bdf),
            vfio_holders: Vec::new(),
            bdf: vf_bdf,
        });
    }
    vfs.sort_by_key(|v| v.index);
    // Only VFs bound to vfio-pci can be held through vfio: /proc is read when there are some.
    let groups: Vec<u32> = vfs
        .iter()
        .filter(|v| v.driver.as_deref() == Some("vfio-pci"))
        .filter_map(|v| v.iommu_group)
        .collect();
    let mut held = crate::host::vfio::holders(fs, &groups);
    for vf in &mut vfs {
        if let Some(h) = vf.iommu_group.and_then(|g| held.remove(&g)) {
            vf.vfio_holders = h;
        }
    }
    Ok(Sriov {
        total_vfs,
        num_vfs: fs.read_parsed(&format!("{base}/sriov_numvfs")).unwrap_or(0),
        drivers_autoprobe: fs
            .read_parsed::<u8>(&format!("{base}/sriov_drivers_autoprobe"))
            .map(|v| v != 0),
        vfs,
    })
}

fn read_irqs(
    fs: &KernelFs,
    interrupts: &BTreeMap<u32, InterruptLine>,
    base: &str,
) -> Result<Vec<Irq>, InventoryError> {
    let mut numbers: Vec<u32> = fs
        .list(&format!("{base}/msi_irqs"))?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    if numbers.is_empty() {
        // No MSI: the legacy line, if the function has one and it is in use.
        if let Some(n) = fs.read_parsed::<u32>(&format!("{base}/irq"))
            && n != 0
            && interrupts.contains_key(&n)
        {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    let mut irqs = Vec::new();
    for irq in numbers {
        let line = interrupts.get(&irq);
        let name = line.map(|l| l.name.clone()).unwrap_or_default();
        let cpus = |file: &str| -> Result<Vec<u32>, InventoryError> {
            match fs.read(&format!("/proc/irq/{irq}/{file}"))? {
                Some(t) => Ok(parse::cpulist(&t)?),
                None => Ok(Vec::new()),
            }
        };
        irqs.push(Irq {
            irq,
            queue: parse::queue_of_irq_name(&name),
            name,
            affinity: cpus("smp_affinity_list")?,
            effective_affinity: cpus("effective_affinity_list")?,
            count: line.map(InterruptLine::total).unwrap_or(0),
        });
    }
    Ok(irqs)
}

fn read_cpus(fs: &KernelFs) -> Result<CpuTopology, InventoryError> {
    let online = match fs.read("/sys/devices/system/cpu/online")? {
        Some(t) => parse::cpulist(&t)?,
        None => Vec::new(),
    };
    let mut nodes = Vec::new();
    for entry in fs.list("/sys/devices/system/node")? {
        let Some(id) = entry.strip_prefix("node").and_then(|n| n.parse().ok()) else {
            continue;
        };
        let cpus = match fs.read(&format!("/sys/devices/system/node/{entry}/cpulist"))? {
            Some(t) => parse::cpulist(&t)?,
            None => Vec::new(),
        };
        nodes.push(NumaNode { id, cpus });
    }
    nodes.sort_by_key(|n| n.id);
    let mut groups = BTreeSet::new();
    for cpu in &online {
        let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
        if let Some(t) = fs.read(&path)? {
            let g = parse::cpulist(&t)?;
            if g.len() > 1 {
                groups.insert(g);
            }
        }
    }
    Ok(CpuTopology {
        online,
        nodes,
        smt_siblings: groups.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_shapes() {
        assert!(is_bdf("0000:00:03.0"));
        assert!(is_bdf("0000:01:10.2"));
        assert!(!is_bdf("pci0000:00"));
        assert!(!is_bdf("virtio2"));
    }

    #[test]
    fn netdev_path_to_function() {
        assert_eq!(
            pci_function_of("/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0"),
            Some(("0000:00:03.0".into(), Some("virtio2".into())))
        );
        assert_eq!(
            pci_function_of("/sys/devices/pci0000:00/0000:00:02.0/0000:01:00.0/net/eth0"),
            Some(("0000:01:00.0".into(), None))
        );
        assert_eq!(pci_function_of("/sys/devices/virtual/net/lo"), None);
    }
}
