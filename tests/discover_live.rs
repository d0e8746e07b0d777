//! `vportd discover` against this machine's real /sys, /proc and rtnetlink, as root,
//! checked against what the kernel itself says (sysfs read directly, `ip -j`).

mod common;

use std::process::Command;

use serde_json::Value;

fn discover_json(netns: Option<&str>) -> Value {
    let bin = env!("CARGO_BIN_EXE_vportd");
    let out = match netns {
        Some(ns) => Command::new("ip")
            .args(["netns", "exec", ns, bin, "discover", "--json"])
            .output(),
        None => Command::new(bin).args(["discover", "--json"]).output(),
    }
    .expect("vportd runs");
    assert!(
        out.status.success(),
        "discover failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("discover --json prints JSON")
}

fn ip_links(netns: Option<&str>) -> Vec<Value> {
    let mut args = vec![];
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-j", "-d", "link", "show"]);
    serde_json::from_str(&common::run_ok("ip", &args)).expect("ip -j prints JSON")
}

/// Every netdev backed by a PCI function appears under that function, with the
/// function's ids and driver as sysfs has them, and ifindex/MAC as rtnetlink has them.
#[test]
fn pci_netdevs_agree_with_sysfs_and_ip() {
    if !common::require_root("pci_netdevs_agree_with_sysfs_and_ip") {
        return;
    }
    let inv = discover_json(None);
    let links = ip_links(None);
    let functions = inv["pci_functions"].as_array().expect("pci_functions");
    let mut checked = 0;
    for entry in std::fs::read_dir("/sys/class/net").expect("sysfs is mounted") {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let dev = std::fs::canonicalize(format!("/sys/class/net/{name}/device"));
        let Ok(dev) = dev else { continue };
        // Walk up to the PCI function (virtio-net sits one level below it).
        let pci = dev
            .ancestors()
            .find(|p| std::fs::metadata(p.join("vendor")).is_ok() && p.join("class").exists())
            .expect("a netdev with a device has a PCI ancestor here");
        let bdf = pci.file_name().unwrap().to_string_lossy().into_owned();
        let read = |f: &str| {
            std::fs::read_to_string(pci.join(f))
                .unwrap()
                .trim()
                .to_string()
        };
        let f = functions
            .iter()
            .find(|f| f["bdf"] == bdf.as_str())
            .unwrap_or_else(|| panic!("{bdf} (behind {name}) is missing from discover"));
        assert_eq!(f["vendor_id"], read("vendor").as_str());
        assert_eq!(f["device_id"], read("device").as_str());
        let driver = std::fs::read_link(pci.join("driver"))
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .ok();
        assert_eq!(f["driver"].as_str(), driver.as_deref());
        let link = links
            .iter()
            .find(|l| l["ifname"] == name.as_str())
            .expect("ip knows the netdev");
        let nd = f["netdevs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} missing under {bdf}"));
        assert_eq!(nd["ifindex"], link["ifindex"]);
        assert_eq!(nd["mac"], link["address"]);
        // IRQs: exactly the function's msi_irqs.
        let mut msi: Vec<u64> = std::fs::read_dir(pci.join("msi_irqs"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        msi.sort();
        let irqs: Vec<u64> = f["irqs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["irq"].as_u64().unwrap())
            .collect();
        assert_eq!(irqs, msi, "IRQs of {bdf}");
        checked += 1;
    }
    // This build machine has a virtio NIC at eth0: the acceptance check.
    let eth0 = functions
        .iter()
        .find(|f| {
            f["netdevs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["name"] == "eth0")
        })
        .expect("eth0's PCI function is listed");
    assert_eq!(eth0["vendor_id"], "0x1af4");
    assert!(eth0["driver"].is_string(), "eth0's driver is named");
    assert!(checked >= 1);
}

/// An uplink named as a user names it, by ifname or MAC, where the netdev's parent device
/// is not the PCI function itself (virtio-net: `eth0/device` is `virtio2`, whose parent is
/// the function): `vportd plan` resolves it to the function. Read-only: plan, never apply,
/// on this machine's own NIC.
#[test]
fn an_uplink_behind_a_bus_device_plans_by_name_and_mac() {
    if !common::require_root("an_uplink_behind_a_bus_device_plans_by_name_and_mac") {
        return;
    }
    let mut checked = 0;
    for entry in std::fs::read_dir("/sys/class/net").expect("sysfs is mounted") {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Ok(dev) = std::fs::canonicalize(format!("/sys/class/net/{name}/device")) else {
            continue;
        };
        let is_pci = |p: &std::path::Path| p.join("vendor").exists() && p.join("class").exists();
        if is_pci(&dev) {
            continue;
        }
        let Some(pci) = dev.ancestors().find(|p| is_pci(p)) else {
            continue;
        };
        let bdf = pci.file_name().unwrap().to_string_lossy().into_owned();
        let mac = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
            .unwrap()
            .trim()
            .to_string();
        let dir = std::env::temp_dir().join(format!("vportd-busdev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (key, value) in [("ifname", name.as_str()), ("mac", mac.as_str())] {
            let path = dir.join(format!("{key}.toml"));
            std::fs::write(
                &path,
                format!(
                    "state_dir = \"{}\"\n[[uplink]]\n{key} = \"{value}\"\n\n[[vport]]\nname = \"a\"\nuplink = \"{value}\"\nmac = \"02:00:00:00:7e:01\"\n",
                    dir.join("state").display()
                ),
            )
            .unwrap();
            let out = common::vportd(&["plan", path.to_str().unwrap()]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "plan with {key} = {value} ({name} behind {}): {}",
                dev.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with("a ") && l.contains(&bdf)),
                "vPort a placed on {bdf} by {key} = {value}: {stdout}"
            );
        }
        assert!(!dir.join("state").exists(), "plan wrote no state");
        std::fs::remove_dir_all(&dir).unwrap();
        checked += 1;
    }
    // This build machine's eth0 is virtio-net: the case the issue names.
    assert!(
        checked >= 1,
        "no netdev behind a bus device on this machine (virtio eth0 expected)"
    );
}

/// In a private network namespace: veth and bridge netdevs are listed apart from PCI functions, with kinds, ifindexes and MACs as ip has them.
#[test]
fn virtual_netdevs_in_a_namespace() {
    if !common::require_root("virtual_netdevs_in_a_namespace") {
        return;
    }
    let ns = format!("vportd-disc-{}", std::process::id());
    common::run_ok("ip", &["netns", "add", &ns]);
    let cleanup = scopeguard(ns.clone());
    common::run_ok(
        "ip",
        &[
            "-n", &ns, "link", "add", "va", "type", "veth", "peer", "name", "vb",
        ],
    );
    common::run_ok("ip", &["-n", &ns, "link", "add", "br9", "type", "bridge"]);
    common::run_ok("ip", &["-n", &ns, "link", "set", "va", "master", "br9"]);
    common::run_ok("ip", &["-n", &ns, "link", "set", "va", "up"]);
    let inv = discover_json(Some(&ns));
    let links = ip_links(Some(&ns));
    let others = inv["other_netdevs"].as_array().unwrap();
    assert_eq!(
        others.len(),
        links.len(),
        "every link of the namespace, no more"
    );
    for l in &links {
        let d = others
            .iter()
            .find(|d| d["ifindex"] == l["ifindex"])
            .unwrap_or_else(|| panic!("ifindex {} missing", l["ifindex"]));
        assert_eq!(d["name"], l["ifname"]);
        assert_eq!(d["mac"], l["address"]);
        let kind = &l["linkinfo"]["info_kind"];
        assert_eq!(&d["kind"], if kind.is_null() { &Value::Null } else { kind });
    }
    let kinds: Vec<&str> = others.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"veth") && kinds.contains(&"bridge"),
        "{kinds:?}"
    );
    // PCI functions are global; their netdevs stay in the root namespace.
    assert!(
        inv["pci_functions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["netdevs"].as_array().unwrap().is_empty()),
        "no PCI netdev inside a fresh namespace"
    );
    drop(cleanup);
}

struct NsGuard(String);
impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
fn scopeguard(ns: String) -> NsGuard {
    NsGuard(ns)
}
