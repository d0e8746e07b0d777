//! Discovery over sysfs/procfs trees and netlink snapshots captured from real
//! kernels (`vportd discover --record DIR`), replayed without root or hardware.

use std::path::PathBuf;

use vportd::facts::inventory;

use vportd::host::fs::KernelFs;
use vportd::host::netlink::NetlinkSnapshot;
use vportd::model::inventory::QueueKind;
use vportd::model::inventory::{Inventory, Role};
use vportd::model::profile::ProfileSet;

fn replay(name: &str) -> Inventory {
    replay_scoped(name, inventory::Scope::Full)
}

fn replay_scoped(name: &str, scope: inventory::Scope) -> Inventory {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let nl: NetlinkSnapshot = serde_json::from_str(
        &std::fs::read_to_string(dir.join("netlink.json")).expect("fixture has netlink.json"),
    )
    .expect("netlink.json parses");
    inventory::discover_scoped(&KernelFs::at(&dir), &nl, ProfileSet::builtin(), scope)
        .expect("discovery over the fixture succeeds")
}

#[test]
fn build_machine_virtio_nic() {
    let inv = replay("build-virtio");
    assert_eq!(inv.schema_version, vportd::model::inventory::SCHEMA_VERSION);
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

/// The SR-IOV rig's guest: two 82576 PFs, 7 VFs on the first, some VFs configured
/// (see tests/fixtures/guest-82576-7vfs.md for the scene).
#[test]
fn guest_82576_with_seven_vfs() {
    let inv = replay("guest-82576-7vfs");
    let bdfs: Vec<&str> = inv.pci_functions.iter().map(|f| f.bdf.as_str()).collect();
    assert_eq!(bdfs.len(), 9, "2 PFs and 7 VFs: {bdfs:?}");
    let pf = &inv.pci_functions[0];
    assert_eq!(pf.bdf, "0000:01:00.0");
    assert_eq!(pf.role, Role::Pf);
    assert_eq!(
        (pf.vendor_id.as_str(), pf.device_id.as_str()),
        ("0x8086", "0x10c9")
    );
    assert_eq!(pf.driver.as_deref(), Some("igb"));
    assert_eq!(
        pf.device_name.as_deref(),
        Some("82576 Gigabit Network Connection")
    );
    let p = pf.profile.as_ref().expect("the 82576 profile matches");
    assert_eq!(
        (p.name.as_str(), p.matched_as.as_str()),
        ("igb-82576", "pf")
    );
    assert_eq!(p.capabilities["sriov"]["max_vfs"], 7, "runtime total_vfs");
    let s = pf.sriov.as_ref().expect("the PF reports SR-IOV");
    assert_eq!(
        (s.total_vfs, s.num_vfs, s.drivers_autoprobe),
        (7, 7, Some(true))
    );
    let vf_bdfs: Vec<&str> = s.vfs.iter().map(|v| v.bdf.as_str()).collect();
    assert_eq!(
        vf_bdfs,
        [
            "0000:01:10.0",
            "0000:01:10.2",
            "0000:01:10.4",
            "0000:01:10.6",
            "0000:01:11.0",
            "0000:01:11.2",
            "0000:01:11.4"
        ]
    );
    assert!(s.vfs.iter().all(|v| v.driver.as_deref() == Some("igbvf")));
    let c1 = s.vfs[1]
        .config
        .as_ref()
        .expect("VF info came with the dump");
    assert_eq!(c1.mac, "02:00:00:00:01:01");
    assert_eq!((c1.vlan, c1.qos), (100, 3));
    assert_eq!((c1.spoofchk, c1.trust), (Some(false), Some(true)));
    assert_eq!(s.vfs[2].config.as_ref().unwrap().max_tx_rate, Some(100));
    assert_eq!(s.vfs[3].config.as_ref().unwrap().vlan, 4094);
    assert_eq!(s.vfs[0].config.as_ref().unwrap().mac, "00:00:00:00:00:00");
    // A VF is listed as a function of its own too, pointing back at its PF.
    let vf1 = inv
        .pci_functions
        .iter()
        .find(|f| f.bdf == "0000:01:10.2")
        .unwrap();
    assert_eq!(vf1.role, Role::Vf);
    assert_eq!(vf1.physfn.as_deref(), Some("0000:01:00.0"));
    assert_eq!(vf1.vf_index, Some(1));
    assert_eq!(vf1.profile.as_ref().unwrap().matched_as, "vf");
    let q: Vec<(u32, String)> = vf1.irqs.iter().map(|i| (i.irq, i.name.clone())).collect();
    assert_eq!(
        q,
        [
            (32, "eth3-tx-0".to_string()),
            (33, "eth3-rx-0".to_string()),
            (34, "eth3".to_string())
        ]
    );
    // The second PF: its queues, each with its own interrupt.
    let pf1 = inv.pci_functions.last().unwrap();
    assert_eq!(pf1.bdf, "0000:02:00.0");
    assert_eq!(pf1.sriov.as_ref().unwrap().num_vfs, 0);
    let eth1 = &pf1.netdevs[0];
    assert_eq!((eth1.rx_queues, eth1.tx_queues), (4, 4));
    assert_eq!(eth1.channels.as_ref().unwrap().combined_max, Some(8));
    let queues: Vec<String> = pf1
        .irqs
        .iter()
        .filter_map(|i| i.queue.map(|q| format!("{:?}-{}", q.kind, q.index)))
        .collect();
    assert_eq!(
        queues,
        [
            "Rx-0", "Rx-1", "Rx-2", "Rx-3", "Tx-0", "Tx-1", "Tx-2", "Tx-3"
        ]
    );
    assert_eq!(inv.cpus.online, vec![0, 1, 2, 3]);
}

/// Provisioning reads less, but what it reads agrees with the full discovery.
#[test]
fn provisioning_scope_agrees_with_full_discovery() {
    for fixture in ["build-virtio", "guest-82576-7vfs"] {
        let full = replay(fixture);
        let lean = replay_scoped(fixture, inventory::Scope::Provisioning);
        assert_eq!(full.pci_functions.len(), lean.pci_functions.len());
        for (f, l) in full.pci_functions.iter().zip(&lean.pci_functions) {
            assert_eq!(
                (&f.bdf, &f.vendor_id, &f.device_id, &f.driver, f.role),
                (&l.bdf, &l.vendor_id, &l.device_id, &l.driver, l.role)
            );
            assert_eq!((&f.physfn, f.vf_index), (&l.physfn, l.vf_index));
            assert_eq!(f.sriov, l.sriov, "{fixture} {}", f.bdf);
            assert_eq!(f.profile, l.profile);
            let key = |d: &vportd::model::inventory::Netdev| {
                (
                    d.ifindex,
                    d.name.clone(),
                    d.mac.clone(),
                    d.operstate.clone(),
                    d.driver.clone(),
                )
            };
            assert_eq!(
                f.netdevs.iter().map(key).collect::<Vec<_>>(),
                l.netdevs.iter().map(key).collect::<Vec<_>>()
            );
            assert!(l.irqs.is_empty(), "no IRQs read for provisioning");
        }
    }
}

fn guest_fixture() -> (PathBuf, NetlinkSnapshot) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guest-82576-7vfs");
    let nl =
        serde_json::from_str(&std::fs::read_to_string(dir.join("netlink.json")).unwrap()).unwrap();
    (dir, nl)
}

fn config(uplinks: &str, vport_mac: &str) -> vportd::provision::config::Config {
    let text = format!(
        "state_dir = \"/nonexistent\"\n{uplinks}\n[[vport]]\nname = \"a\"\nuplink = \"0000:01:00.0\"\nmac = \"{vport_mac}\"\n"
    );
    vportd::provision::config::parse(std::path::Path::new("t.toml"), &text)
        .expect("test config parses")
}

/// A no-op apply reads only the PFs it provisions and their VFs: that narrowed read must
/// say exactly what the full provisioning read says of those functions.
#[test]
fn narrowed_discovery_equals_the_full_read_of_its_pfs() {
    let (dir, nl) = guest_fixture();
    let fs = KernelFs::at(&dir);
    let full = replay_scoped("guest-82576-7vfs", inventory::Scope::Provisioning);
    for pf in ["0000:01:00.0", "0000:02:00.0"] {
        let pfs = [pf.to_string()].into_iter().collect();
        let narrow = inventory::discover_pfs(&fs, &nl, ProfileSet::builtin(), &pfs).unwrap();
        let expected: Vec<_> = full
            .pci_functions
            .iter()
            .filter(|f| f.bdf == pf || f.physfn.as_deref() == Some(pf))
            .cloned()
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(
            serde_json::to_value(&narrow.pci_functions).unwrap(),
            serde_json::to_value(&expected).unwrap(),
            "narrowed read of {pf}"
        );
    }
}

#[test]
fn uplinks_resolve_to_their_pfs_or_ask_for_a_full_read() {
    let (dir, nl) = guest_fixture();
    let fs = KernelFs::at(&dir);
    let set = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    let resolve = |uplinks: &str, state: &[&str]| {
        inventory::uplink_functions(
            &fs,
            &nl,
            config(uplinks, "02:00:00:00:00:01").selectors(),
            state.iter().map(|s| s.to_string()),
        )
        .unwrap()
    };
    let pf0 = "[[uplink]]\npci = \"0000:01:00.0\"\n";
    assert_eq!(resolve(pf0, &[]), set(&["0000:01:00.0"]));
    // The state's PFs are read too: a vPort removed from the config has a VF to reset.
    assert_eq!(
        resolve(pf0, &["0000:02:00.0"]),
        set(&["0000:01:00.0", "0000:02:00.0"])
    );
    let by_mac = "[[uplink]]\nmac = \"52:54:00:12:00:02\"\n";
    assert_eq!(
        resolve(&format!("{pf0}{by_mac}"), &[]),
        set(&["0000:01:00.0", "0000:02:00.0"])
    );
    let by_name = "[[uplink]]\nifname = \"eth1\"\n";
    assert_eq!(
        resolve(&format!("{pf0}{by_name}"), &[]),
        set(&["0000:01:00.0", "0000:02:00.0"])
    );
    // What a full read must explain: an address that is not a network function, a name or
    // MAC that is no PCI netdev or not there at all.
    assert_eq!(
        resolve(&format!("{pf0}[[uplink]]\npci = \"0000:00:1f.2\"\n"), &[]),
        None
    );
    assert_eq!(
        resolve(&format!("{pf0}[[uplink]]\npci = \"0000:07:00.0\"\n"), &[]),
        None
    );
    assert_eq!(
        resolve(&format!("{pf0}[[uplink]]\nifname = \"lo\"\n"), &[]),
        None
    );
    assert_eq!(
        resolve(&format!("{pf0}[[uplink]]\nifname = \"eth9\"\n"), &[]),
        None
    );

    // A vPort MAC held outside the PFs read: the full read decides whether it clashes.
    let pfs = set(&["0000:01:00.0"]).unwrap();
    let narrow = inventory::discover_pfs(&fs, &nl, ProfileSet::builtin(), &pfs).unwrap();
    let macs = |m: &str| [m.to_string()].into_iter().collect();
    assert!(inventory::mac_outside(
        &narrow,
        &nl,
        &macs("52:54:00:12:00:02")
    ));
    assert!(!inventory::mac_outside(
        &narrow,
        &nl,
        &macs("52:54:00:12:00:01")
    ));
    assert!(!inventory::mac_outside(
        &narrow,
        &nl,
        &macs("02:00:00:00:00:09")
    ));
}

/// virtio-net hangs its netdev off a virtio bus device under the PCI function
/// (`0000:00:03.0/virtio2/net/eth0`), so rtnetlink names `virtio2` as its parent: an uplink
/// named by that netdev's name or MAC still resolves to the function, and the narrowed
/// read finds the netdev there, as the full read does.
#[test]
fn a_virtio_uplink_by_name_or_mac_resolves_to_its_pci_function() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/build-virtio");
    let nl: NetlinkSnapshot =
        serde_json::from_str(&std::fs::read_to_string(dir.join("netlink.json")).unwrap()).unwrap();
    let eth0 = nl.links.iter().find(|l| l.name == "eth0").unwrap();
    assert_eq!(
        (eth0.parent_bus.as_deref(), eth0.parent_dev.as_deref()),
        (Some("virtio"), Some("virtio2")),
        "the fixture's netdev is behind a bus device, not the PCI function"
    );
    let fs = KernelFs::at(&dir);
    let full = replay_scoped("build-virtio", inventory::Scope::Provisioning);
    for selector in ["ifname = \"eth0\"", "mac = \"02:fc:00:00:00:01\""] {
        let uplink = selector.split('"').nth(1).unwrap();
        let text = format!(
            "state_dir = \"/nonexistent\"\n[[uplink]]\n{selector}\n[[vport]]\nname = \"a\"\nuplink = \"{uplink}\"\nmac = \"02:00:00:00:00:01\"\n"
        );
        let cfg = vportd::provision::config::parse(std::path::Path::new("t.toml"), &text)
            .expect("test config parses");
        let pfs = inventory::uplink_functions(&fs, &nl, cfg.selectors(), [])
            .unwrap()
            .unwrap_or_else(|| panic!("{selector} names one PCI function"));
        assert_eq!(pfs, ["0000:00:03.0".to_string()].into_iter().collect());
        let narrow = inventory::discover_pfs(&fs, &nl, ProfileSet::builtin(), &pfs).unwrap();
        assert_eq!(
            serde_json::to_value(&narrow.pci_functions).unwrap(),
            serde_json::to_value(&full.pci_functions).unwrap(),
            "narrowed read for {selector}"
        );
        assert_eq!(narrow.pci_functions[0].netdevs[0].name, "eth0");
        for inv in [&narrow, &full] {
            vportd::provision::config::check_against(&cfg, inv)
                .unwrap_or_else(|e| panic!("{selector}: {e}"));
        }
    }
}
