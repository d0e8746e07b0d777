//! What discovery would report for a simulated host.

use super::SimHost;
use crate::model::inventory::{
    CpuTopology, Inventory, Netdev, PciFunction, Role, SCHEMA_VERSION, Sriov, VfEntry,
};

impl SimHost {
    /// The inventory discovery would report for this host.
    pub fn inventory(&self) -> Inventory {
        let mut functions = Vec::new();
        for pf in &self.pfs {
            functions.push(PciFunction {
                bdf: pf.bdf.clone(),
                vendor_id: format!("0x{:04x}", pf.vendor),
                device_id: format!("0x{:04x}", pf.device),
                vendor_name: None,
                device_name: None,
                subsystem_vendor_id: None,
                subsystem_device_id: None,
                class: "0x020000".into(),
                driver: Some(pf.driver.clone()),
                role: Role::Pf,
                numa_node: Some(0),
                local_cpus: vec![0, 1],
                physfn: None,
                vf_index: None,
                virtio_device: None,
                netdevs: vec![Netdev {
                    ifindex: pf.ifindex,
                    name: format!("eth{}", pf.ifindex - 10),
                    mac: Some(format!("52:54:00:00:00:{:02x}", pf.ifindex)),
                    operstate: "up".into(),
                    mtu: Some(1500),
                    speed_mbps: Some(1000),
                    driver: Some(pf.driver.clone()),
                    kind: None,
                    rx_queues: 8,
                    tx_queues: 8,
                    channels: None,
                    admin_up: Some(pf.admin_up),
                    queues: pf.queue_facts.clone(),
                }],
                sriov: Some(Sriov {
                    total_vfs: pf.total_vfs,
                    num_vfs: pf.vfs.len() as u32,
                    drivers_autoprobe: Some(true),
                    vfs: pf
                        .vfs
                        .iter()
                        .enumerate()
                        .map(|(i, v)| VfEntry {
                            index: i as u32,
                            bdf: v.bdf.clone(),
                            driver: v.driver.clone(),
                            netdevs: Vec::new(),
                            config: Some(v.config.clone()),
                            iommu_group: None,
                            vfio_holders: Vec::new(),
                        })
                        .collect(),
                }),
                irqs: Vec::new(),
                profile: None,
                eswitch_mode: None,
                representors: Vec::new(),
                iommu_group: None,
            });
        }
        Inventory {
            schema_version: SCHEMA_VERSION,
            pci_functions: functions,
            other_netdevs: Vec::new(),
            cpus: CpuTopology {
                online: vec![0, 1],
                nodes: Vec::new(),
                smt_siblings: Vec::new(),
            },
        }
    }
}
