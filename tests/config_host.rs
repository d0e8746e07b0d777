//! The provisioning config against discovered hosts (tests/fixtures): `check_against`, which
//! the config module runs against an inventory. Here, not in the module, because building
//! the inventory reads fixtures through host/, which provision may not name.

use std::path::{Path, PathBuf};

use vportd::facts::inventory;

use vportd::host::fs::KernelFs;
use vportd::host::netlink::NetlinkSnapshot;
use vportd::host::userfiles;
use vportd::model::inventory::{Inventory, Role, Sriov, VfEntry};
use vportd::model::profile::ProfileSet;
use vportd::provision::config::{Config, ConfigError, ResolvedUplink, check_against, parse};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn parse_ok(text: &str) -> Config {
    parse(Path::new("host.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}
/// The build machine: one virtio-net function 0000:00:03.0 (eth0, ifindex 4,
/// 02:fc:00:00:00:01) without SR-IOV, plus lo and two ifb devices.
fn build_machine() -> Inventory {
    let dir = repo("tests/fixtures/build-virtio");
    let nl: NetlinkSnapshot =
        serde_json::from_str(&userfiles::read_text(&dir.join("netlink.json")).unwrap()).unwrap();
    inventory::discover(&KernelFs::at(&dir), &nl, ProfileSet::builtin()).unwrap()
}

/// The build machine plus an SR-IOV PF 0000:01:00.0 (enp1s0, ifindex 10, 7 VFs at most)
/// with one VF 0000:01:10.0 (enp1s0v0, ifindex 11), shaped after an 82576.
fn sriov_host() -> Inventory {
    let mut inv = build_machine();
    let template = inv.pci_functions[0].clone();
    let mut pf = template.clone();
    pf.bdf = "0000:01:00.0".into();
    pf.role = Role::Pf;
    pf.driver = Some("igb".into());
    pf.virtio_device = None;
    pf.netdevs[0].name = "enp1s0".into();
    pf.netdevs[0].ifindex = 10;
    pf.netdevs[0].mac = Some("52:54:00:12:34:56".into());
    pf.sriov = Some(Sriov {
        total_vfs: 7,
        num_vfs: 1,
        drivers_autoprobe: Some(true),
        vfs: vec![VfEntry {
            index: 0,
            bdf: "0000:01:10.0".into(),
            driver: Some("igbvf".into()),
            netdevs: Vec::new(),
            config: None,
            iommu_group: None,
            vfio_holders: Vec::new(),
        }],
    });
    let mut vf = template;
    vf.bdf = "0000:01:10.0".into();
    vf.role = Role::Vf;
    vf.driver = Some("igbvf".into());
    vf.physfn = Some("0000:01:00.0".into());
    vf.vf_index = Some(0);
    vf.virtio_device = None;
    vf.netdevs[0].name = "enp1s0v0".into();
    vf.netdevs[0].ifindex = 11;
    vf.netdevs[0].mac = Some("02:00:00:00:01:01".into());
    inv.pci_functions.push(pf);
    inv.pci_functions.push(vf);
    inv
}

fn check(text: &str, inv: &Inventory) -> Result<Vec<ResolvedUplink>, ConfigError> {
    check_against(&parse_ok(text), inv)
}

fn check_err(text: &str, inv: &Inventory) -> String {
    match check(text, inv) {
        Ok(r) => panic!("accepted {text} as {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn uplink_by_pci_mac_or_ifname_resolves_to_one_bdf_and_ifindex() {
    let inv = build_machine();
    for selector in [
        "pci = \"0000:00:03.0\"",
        "pci = \"00:03.0\"",
        "mac = \"02:FC:00:00:00:01\"",
        "ifname = \"eth0\"",
    ] {
        let text = format!(
            "[[uplink]]\n{selector}\n[[vport]]\nname = \"c1\"\nuplink = {}\nmac = \"02:00:00:00:00:01\"\n",
            selector.split_once(" = ").unwrap().1
        );
        let resolved = check(&text, &inv).unwrap_or_else(|e| panic!("{selector}: {e}"));
        assert_eq!(
            resolved,
            [ResolvedUplink {
                index: 0,
                bdf: "0000:00:03.0".into(),
                ifindex: Some(4)
            }],
            "{selector}"
        );
    }
}

#[test]
fn a_uplink_the_host_lacks_is_an_error_listing_what_it_has() {
    let inv = build_machine();
    let e = check_err(
        "state_dir = \"/x\"\n[[uplink]]\npci = \"0000:09:00.0\"\n",
        &inv,
    );
    assert!(
        e.starts_with("host.toml:2:1: uplink pci 0000:09:00.0: no network PCI function on this host has that pci\n"),
        "{e}"
    );
    assert!(
        e.contains(
            "hint: this host's network PCI functions: 0000:00:03.0 (eth0 02:fc:00:00:00:01)"
        ),
        "{e}"
    );
    let e = check_err("[[uplink]]\nifname = \"eth9\"\n", &inv);
    assert!(
        e.contains("no network PCI function on this host has that ifname"),
        "{e}"
    );
    let e = check_err("[[uplink]]\nifname = \"ifb0\"\n", &inv);
    assert!(
        e.contains("ifb0 is a virtual interface (ifb), not a PCI NIC"),
        "{e}"
    );
}

#[test]
fn a_vf_is_not_an_uplink() {
    let e = check_err("[[uplink]]\npci = \"0000:01:10.0\"\n", &sriov_host());
    assert!(
        e.contains(
            "host.toml:1:1: uplink pci 0000:01:10.0: 0000:01:10.0 is a VF of 0000:01:00.0, not a PF"
        ),
        "{e}"
    );
    assert!(
        e.contains(
            "hint: an uplink is the physical function that owns the VFs: pci = \"0000:01:00.0\""
        ),
        "{e}"
    );
    let e = check_err("[[uplink]]\nifname = \"enp1s0v0\"\n", &sriov_host());
    assert!(e.contains("is a VF of 0000:01:00.0"), "{e}");
}

#[test]
fn num_vfs_above_the_pfs_total_is_an_error_naming_the_total() {
    let inv = sriov_host();
    let ok = check("[[uplink]]\nifname = \"enp1s0\"\nnum_vfs = 7\n", &inv).unwrap();
    assert_eq!(ok[0].bdf, "0000:01:00.0");
    assert_eq!(ok[0].ifindex, Some(10));
    let e = check_err("[[uplink]]\nifname = \"enp1s0\"\nnum_vfs = 8\n", &inv);
    assert!(
        e.contains("num_vfs 8 is above the 7 VFs 0000:01:00.0 supports"),
        "{e}"
    );
    assert!(e.contains("hint: lower num_vfs to at most 7"), "{e}");
    let e = check_err("[[uplink]]\npci = \"0000:00:03.0\"\nnum_vfs = 2\n", &inv);
    assert!(
        e.contains("num_vfs 2, but 0000:00:03.0 has no SR-IOV"),
        "{e}"
    );
}

#[test]
fn a_function_without_sriov_is_a_fine_uplink() {
    let text = "[[uplink]]\npci = \"0000:00:03.0\"\nnum_vfs = 0\n[[vport]]\nname = \"c1\"\nuplink = \"0000:00:03.0\"\nmac = \"02:00:00:00:00:01\"\n";
    assert_eq!(check(text, &build_machine()).unwrap().len(), 1);
}

#[test]
fn one_pf_named_twice_is_an_error() {
    let e = check_err(
        "[[uplink]]\npci = \"0000:01:00.0\"\n[[uplink]]\nmac = \"52:54:00:12:34:56\"\n",
        &sriov_host(),
    );
    assert!(
        e.starts_with("host.toml:3:1: uplink mac 52:54:00:12:34:56: is 0000:01:00.0, the same PF as uplink pci 0000:01:00.0 at host.toml:1:1"),
        "{e}"
    );
}

#[test]
fn a_vport_mac_a_pf_already_has_is_an_error_but_a_vf_holding_it_is_not() {
    let inv = sriov_host();
    let vport = |mac: &str| {
        format!(
            "[[uplink]]\npci = \"0000:01:00.0\"\n[[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"{mac}\"\n"
        )
    };
    let e = check_err(&vport("02:fc:00:00:00:01"), &inv);
    assert!(
        e.starts_with("host.toml:3:1: vport \"vm1\": mac 02:fc:00:00:00:01 is already the MAC of eth0 (0000:00:03.0)"),
        "{e}"
    );
    // enp1s0v0 has this MAC: an earlier apply gave it to vm1; applying again is fine.
    assert!(check(&vport("02:00:00:00:01:01"), &inv).is_ok());
}

#[test]
fn host_problems_are_all_reported_together() {
    let e = check_err(
        concat!(
            "[[uplink]]\npci = \"0000:01:10.0\"\n",
            "[[uplink]]\npci = \"0000:01:00.0\"\nnum_vfs = 9\n",
            "[[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"52:54:00:12:34:56\"\n",
        ),
        &sriov_host(),
    );
    let located: Vec<&str> = e.lines().filter(|l| !l.starts_with("  hint:")).collect();
    assert_eq!(located.len(), 3, "{e}");
    assert!(located[0].starts_with("host.toml:1:1:") && located[0].contains("is a VF"));
    assert!(located[1].starts_with("host.toml:3:1:") && located[1].contains("num_vfs 9"));
    assert!(located[2].starts_with("host.toml:6:1:") && located[2].contains("enp1s0"));
}

/// The SR-IOV rig's guest: PF 0000:01:00.0 (eth0, 52:54:00:12:00:01) with 7 VFs, one
/// holding 02:00:00:00:01:01; PF 0000:02:00.0 (eth1, 52:54:00:12:00:02) without VFs.
fn guest_82576() -> Inventory {
    let dir = repo("tests/fixtures/guest-82576-7vfs");
    let nl: NetlinkSnapshot =
        serde_json::from_str(&userfiles::read_text(&dir.join("netlink.json")).unwrap()).unwrap();
    inventory::discover(&KernelFs::at(&dir), &nl, ProfileSet::builtin()).unwrap()
}

#[test]
fn the_82576_guest_resolves_its_pfs_and_refuses_its_vfs() {
    let inv = guest_82576();
    let resolved = check(
        concat!(
            "[[uplink]]\nifname = \"eth0\"\nnum_vfs = 7\nvf_driver = \"igbvf\"\n",
            "[[uplink]]\nmac = \"52:54:00:12:00:02\"\n",
            "[[vport]]\nname = \"vm1\"\nuplink = \"eth0\"\nmac = \"02:00:00:00:01:01\"\nvlan = 100\nqos = 3\n",
        ),
        &inv,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(usize, &str, Option<u32>)> = resolved
        .iter()
        .map(|r| (r.index, r.bdf.as_str(), r.ifindex))
        .collect();
    assert_eq!(
        got,
        [(0, "0000:01:00.0", Some(2)), (1, "0000:02:00.0", Some(3))]
    );

    let e = check_err("[[uplink]]\npci = \"0000:01:10.2\"\n", &inv);
    assert!(
        e.contains("0000:01:10.2 is a VF of 0000:01:00.0, not a PF"),
        "{e}"
    );
    let e = check_err("[[uplink]]\npci = \"0000:01:00.0\"\nnum_vfs = 8\n", &inv);
    assert!(
        e.contains("num_vfs 8 is above the 7 VFs 0000:01:00.0 supports"),
        "{e}"
    );
    let e = check_err(
        "[[uplink]]\npci = \"0000:01:00.0\"\n[[vport]]\nname = \"vm1\"\nuplink = \"0000:01:00.0\"\nmac = \"52:54:00:12:00:02\"\n",
        &inv,
    );
    assert!(
        e.contains("is already the MAC of eth1 (0000:02:00.0)"),
        "{e}"
    );
}
