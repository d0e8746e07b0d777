//! Discovery over sysfs/procfs trees and netlink snapshots captured from real
//! kernels (`vportd discover --record DIR`), replayed without root or hardware.

use std::path::PathBuf;

use vportd::host::fs::KernelFs;
use vportd::host::netlink::NetlinkSnapshot;
use vportd::inventory::{self, Inventory, Role};
use vportd::parse::QueueKind;
use vportd::profile::ProfileSet;

fn replay(name: &str) -> Inventory {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let nl: NetlinkSnapshot = serde_json::from_str(
        &std::fs::read_to_string(dir.join("netlink.json")).expect("fixture has netlink.json"),
    )
    .expect("netlink.json parses");
    inventory::discover(&KernelFs::at(&dir), &nl, ProfileSet::builtin())
        .expect("discovery over the fixture succeeds")
}

#[test]
fn build_machine_virtio_nic() {
    let inv = replay("build-virtio");
    assert_eq!(inv.schema_version, inventory::SCHEMA_VERSION);
    assert_eq!(inv.pci_functions.len(), 1, "one network PCI function");
    let f = &inv.pci_functions[0];
    assert_eq!(f.bdf, "0000:00:03.0");
    assert_eq!(
        (f.vendor_id.as_str(), f.device_id.as_str()),
        ("0x1af4", "0x1041")
    );
    assert_eq!(f.vendor_name.as_deref(), Some("Red Hat, Inc."));
    assert_eq!(f.driver.as_deref(), Some("virtio-pci"));
    assert_eq!(f.role, Role::Plain);
    assert!(f.sriov.is_none());
    assert_eq!(f.numa_node, None, "numa_node -1 reads as unknown");
    assert_eq!(f.local_cpus, vec![0, 1]);
    assert_eq!(f.virtio_device.as_deref(), Some("virtio2"));
    assert_eq!(f.netdevs.len(), 1);
    let eth0 = &f.netdevs[0];
    assert_eq!((eth0.name.as_str(), eth0.ifindex), ("eth0", 4));
    assert_eq!(eth0.driver.as_deref(), Some("virtio_net"));
    assert_eq!(eth0.mac.as_deref(), Some("02:fc:00:00:00:01"));
    assert_eq!((eth0.rx_queues, eth0.tx_queues), (1, 1));
    let ch = eth0.channels.as_ref().expect("virtio answers ethtool -l");
    assert_eq!((ch.combined, ch.combined_max), (Some(1), Some(1)));
    let irqs: Vec<(u32, Option<(QueueKind, u32)>)> = f
        .irqs
        .iter()
        .map(|i| (i.irq, i.queue.map(|q| (q.kind, q.index))))
        .collect();
    assert_eq!(
        irqs,
        vec![
            (37, None),
            (38, Some((QueueKind::Rx, 0))),
            (39, Some((QueueKind::Tx, 0)))
        ]
    );
    assert!(f.irqs.iter().all(|i| i.effective_affinity.len() == 1));
    assert_eq!(
        f.profile.as_ref().map(|p| p.name.as_str()),
        Some("virtio-net"),
        "virtio-net matches its profile"
    );
    let others: Vec<(&str, Option<&str>)> = inv
        .other_netdevs
        .iter()
        .map(|d| (d.name.as_str(), d.kind.as_deref()))
        .collect();
    assert_eq!(
        others,
        vec![("lo", None), ("ifb0", Some("ifb")), ("ifb1", Some("ifb"))]
    );
    assert_eq!(inv.cpus.online, vec![0, 1]);
    assert_eq!(inv.cpus.nodes.len(), 1);
    assert!(inv.cpus.smt_siblings.is_empty());
}
