//! What discovery finds on a host: every network PCI function with its netdevs, SR-IOV
//! state, VFs, queues and interrupts; the other netdevs; the CPU topology. Plain data, so
//! that the planner and the checks of a config read it without naming the discovery that
//! fills it (`facts::inventory`). The JSON form of [`Inventory`] is a stable schema
//! (docs/discover-schema.md); bump [`SCHEMA_VERSION`] on any incompatible change.

use serde::{Deserialize, Serialize};

use crate::model::queues::QueueFacts;
use crate::model::vf::VfConfig;

/// Version of the `discover --json` schema.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything discovery found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub schema_version: u32,
    /// Network PCI functions (class 0x02), PFs and VFs alike, sorted by address.
    pub pci_functions: Vec<PciFunction>,
    /// Netdevs not backed by a PCI function: lo, veth, bridge, ifb, tap, ...
    pub other_netdevs: Vec<Netdev>,
    pub cpus: CpuTopology,
}

/// What a PCI function is to SR-IOV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A physical function that can create VFs.
    Pf,
    /// A virtual function of some PF.
    Vf,
    /// A function without SR-IOV (virtio-net, a NIC whose driver lacks it).
    Plain,
}

/// One network PCI function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PciFunction {
    /// Domain:bus:device.function, e.g. `0000:01:00.0`.
    pub bdf: String,
    /// `0x8086`-style hex strings, as lspci prints them.
    pub vendor_id: String,
    pub device_id: String,
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
    pub subsystem_vendor_id: Option<String>,
    pub subsystem_device_id: Option<String>,
    pub class: String,
    pub driver: Option<String>,
    pub role: Role,
    /// NUMA node; None where the firmware reports -1.
    pub numa_node: Option<u32>,
    pub local_cpus: Vec<u32>,
    /// For a VF: its PF and index.
    pub physfn: Option<String>,
    pub vf_index: Option<u32>,
    /// Intermediate bus device between the PCI function and its netdev (`virtio2`).
    pub virtio_device: Option<String>,
    pub netdevs: Vec<Netdev>,
    pub sriov: Option<Sriov>,
    /// MSI/MSI-X (or legacy) interrupts of this function.
    pub irqs: Vec<Irq>,
    /// The hardware profile this function matched, and its capabilities.
    pub profile: Option<ProfileMatch>,
    /// The eswitch mode devlink reports for the device; None when it reports none (no
    /// devlink, or a driver without an eswitch, such as igb).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eswitch_mode: Option<EswitchMode>,
    /// VF representors among the device's netdevs (switchdev), kept out of `netdevs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub representors: Vec<Representor>,
    /// The IOMMU group (`iommu_group` link); None without an IOMMU. vfio-pci hands a
    /// whole group to one user, as `/dev/vfio/<group>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu_group: Option<u32>,
}

/// A devlink device's eswitch mode (`devlink dev eswitch show`): in `switchdev` the VFs'
/// traffic goes through representor netdevs, and the legacy per-VF controls (rates, VLAN,
/// link state over the PF's netdev) are the driver's to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EswitchMode {
    Legacy,
    Switchdev,
}

impl std::fmt::Display for EswitchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EswitchMode::Legacy => "legacy",
            EswitchMode::Switchdev => "switchdev",
        })
    }
}

/// A netdev that stands for one VF on the PF's switch (switchdev): its port name says which
/// VF (`pf0vf1`), and it shares the PF's switch id. Not a port of the PF, nor the VF itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Representor {
    pub vf: u32,
    pub ifindex: u32,
    pub name: String,
    /// sysfs `phys_port_name`, e.g. `pf0vf1`.
    pub port_name: String,
    /// sysfs `phys_switch_id`, shared with the PF's own port.
    pub switch_id: String,
}

/// SR-IOV state of a PF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sriov {
    pub total_vfs: u32,
    pub num_vfs: u32,
    pub drivers_autoprobe: Option<bool>,
    pub vfs: Vec<VfEntry>,
}

/// One VF as seen from its PF: where it lives and its rtnetlink configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfEntry {
    pub index: u32,
    pub bdf: String,
    pub driver: Option<String>,
    pub netdevs: Vec<NetdevRef>,
    /// None when the PF has no netdev or the kernel omitted the VF info.
    pub config: Option<VfConfig>,
    /// The VF's IOMMU group; None without an IOMMU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu_group: Option<u32>,
    /// Processes holding the VF's vfio group open (a VM using it): removing the VF, as a
    /// VF count change does, blocks in the kernel until they let go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vfio_holders: Vec<VfioHolder>,
}

/// A process holding `/dev/vfio/<group>` open, from its `/proc/<pid>/fd` links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfioHolder {
    pub pid: u32,
    /// `/proc/<pid>/comm`.
    pub command: String,
}

/// A netdev by both of its identities (a name alone can change under us).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetdevRef {
    pub ifindex: u32,
    pub name: String,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Netdev {
    pub ifindex: u32,
    pub name: String,
    pub mac: Option<String>,
    pub operstate: String,
    pub mtu: Option<u32>,
    /// Link speed; None when the link is down or the driver does not say.
    pub speed_mbps: Option<u32>,
    /// The driver of the netdev's parent device (`virtio_net` under a `virtio-pci`
    /// function, `igb` for an igb PF); None for virtual netdevs.
    pub driver: Option<String>,
    /// rtnetlink `IFLA_INFO_KIND` (veth, bridge, tun, ...), None for hardware.
    pub kind: Option<String>,
    pub rx_queues: u32,
    pub tx_queues: u32,
    pub channels: Option<Channels>,
    /// Administratively up (IFF_UP), when read: a PF left down at boot has no link, and
    /// drivers such as igb refuse VF rates without one, so apply brings an uplink up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_up: Option<bool>,
    /// Queue steering facts read at runtime (RSS table, ntuple, l2-fwd-offload), for the
    /// planner; filled by provisioning for uplink netdevs (`host::ethtool::queue_facts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<QueueFacts>,
}

/// One interrupt and the queue it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Irq {
    pub irq: u32,
    pub name: String,
    pub queue: Option<QueueRef>,
    /// `smp_affinity_list`: the CPUs asked for.
    pub affinity: Vec<u32>,
    /// `effective_affinity_list`: where the interrupt really goes.
    pub effective_affinity: Vec<u32>,
    pub count: u64,
}

/// A hardware profile match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileMatch {
    /// The profile's name, or `a or b` for a VF id several families share.
    pub name: String,
    /// "pf" or "vf": which id list of the profile matched.
    pub matched_as: String,
    /// The profile's capabilities, with runtime facts (total VFs) overriding them;
    /// null when a shared VF id leaves the family open (see `name`).
    pub capabilities: serde_json::Value,
}

/// CPU topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTopology {
    pub online: Vec<u32>,
    pub nodes: Vec<NumaNode>,
    /// Groups of hardware threads that share a core; singletons omitted.
    pub smt_siblings: Vec<Vec<u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaNode {
    pub id: u32,
    pub cpus: Vec<u32>,
}

/// ethtool channel counts (`ethtool -l`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channels {
    pub rx: Option<u32>,
    pub tx: Option<u32>,
    pub other: Option<u32>,
    pub combined: Option<u32>,
    pub rx_max: Option<u32>,
    pub tx_max: Option<u32>,
    pub other_max: Option<u32>,
    pub combined_max: Option<u32>,
}

/// What kind of queue an interrupt serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    Rx,
    Tx,
    /// A combined channel (one vector for an rx and a tx queue).
    Combined,
}

/// The queue an interrupt serves, read from its action name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRef {
    pub kind: QueueKind,
    pub index: u32,
}
