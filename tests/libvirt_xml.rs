//! `vportd libvirt-xml VPORT`: the printed `<interface>` for a software vPort and for a VF
//! bound to vfio-pci, each inside a domain that libvirt's own schema check
//! (`virt-xml-validate`, Debian's libvirt-clients; scripts/setup-host installs it) accepts and
//! `virsh define` takes (libvirt's test driver, in process: no libvirtd here);
//! and the refusal of a VF a network driver holds. No root: the VF's driver is read from a
//! sysfs tree made here (`--root`).

mod common;

use std::path::Path;
use std::process::Command;

use vportd::provision::state::{Health, STATE_VERSION, State, VportPath, VportState};

const PF: &str = "0000:01:00.0";
const VF: &str = "0000:01:10.2";

fn setup(dir: &Path, vf_driver: &str) -> std::path::PathBuf {
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let config = dir.join("host.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[[uplink]]\npci = \"{PF}\"\nnum_vfs = 2\nvf_driver = \"vfio-pci\"\n\
             [[vport]]\nname = \"vm1\"\nuplink = \"{PF}\"\nmac = \"02:76:70:00:00:01\"\nvlan = 100\noffload = \"never\"\n\
             [[vport]]\nname = \"vm2\"\nuplink = \"{PF}\"\nmac = \"02:76:70:00:00:02\"\nvlan = 200\n",
            state_dir.display()
        ),
    )
    .unwrap();
    let mut state = State {
        version: STATE_VERSION,
        ..Default::default()
    };
    let entry = |path, vf_bdf: Option<&str>| VportState {
        uplink: PF.into(),
        path,
        reason: String::new(),
        vf_bdf: vf_bdf.map(str::to_string),
        applied: None,
        health: Health::Provisioned,
    };
    state
        .vports
        .insert("vm1".into(), entry(VportPath::Software, None));
    state
        .vports
        .insert("vm2".into(), entry(VportPath::Vf { index: 1 }, Some(VF)));
    std::fs::write(
        state_dir.join("state.json"),
        serde_json::to_string(&state).unwrap(),
    )
    .unwrap();
    // The VF's driver link, as sysfs has it.
    let root = dir.join("root");
    let dev = root.join(format!("sys/bus/pci/devices/{VF}"));
    std::fs::create_dir_all(&dev).unwrap();
    let drv = root.join(format!("sys/bus/pci/drivers/{vf_driver}"));
    std::fs::create_dir_all(&drv).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../bus/pci/drivers/{vf_driver}"),
        dev.join("driver"),
    )
    .unwrap();
    config
}

fn xml(config: &Path, root: &Path, vport: &str) -> std::process::Output {
    common::vportd(&[
        "libvirt-xml",
        vport,
        "--config",
        config.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ])
}

/// `virt-xml-validate` on a minimal domain holding `interface`; None when the tool is
/// missing outside CI.
fn validate(dir: &Path, interface: &str) -> Option<(bool, String)> {
    let have = Command::new("sh")
        .args([
            "-c",
            "command -v virt-xml-validate && command -v xmllint && command -v virsh",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "virt-xml-validate (libvirt-clients) and xmllint (libxml2-utils) are missing: run scripts/setup-host"
        );
        eprintln!("SKIPPED the libvirt schema check: no virt-xml-validate (scripts/setup-host)");
        return None;
    }
    let domain = format!(
        "<domain type='qemu'>\n<name>vportd-check</name>\n<memory unit='MiB'>256</memory>\n<os><type arch='x86_64'>hvm</type></os>\n<devices>\n{interface}</devices>\n</domain>\n"
    );
    let file = dir.join("domain.xml");
    std::fs::write(&file, domain).unwrap();
    let out = Command::new("virt-xml-validate")
        .arg(&file)
        .arg("domain")
        .output()
        .unwrap();
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn the_printed_interfaces_are_valid_libvirt() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "vfio-pci");
    let root = dir.path().join("root");

    let out = xml(&config, &root, "vm1");
    assert!(out.status.success(), "{out:?}");
    let soft = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        soft,
        "<interface type='ethernet'>\n  <mac address='02:76:70:00:00:01'/>\n  <target dev='vp-vm1' managed='no'/>\n  <model type='virtio'/>\n</interface>\n"
    );
    let out = xml(&config, &root, "vm2");
    assert!(out.status.success(), "{out:?}");
    let vf = String::from_utf8(out.stdout).unwrap();
    assert!(
        vf.starts_with("<interface type='hostdev' managed='no'>")
            && vf.contains(
                "<address type='pci' domain='0x0000' bus='0x01' slot='0x10' function='0x2'/>"
            )
            && vf.contains("<tag id='200'/>"),
        "{vf}"
    );
    for x in [&soft, &vf] {
        if let Some((ok, text)) = validate(dir.path(), x) {
            assert!(ok, "libvirt's schema refuses:\n{x}\n{text}");
            // And libvirt's own parser takes it: `virsh define` on the test driver (in
            // process, no daemon), whose dumpxml keeps what matters.
            let out = Command::new("virsh")
                .args(["-c", "test:///default"])
                .arg(format!(
                    "define {}; dumpxml vportd-check",
                    dir.path().join("domain.xml").display()
                ))
                .output()
                .expect("virsh (libvirt-clients) runs");
            let dumped = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "virsh define refuses:\n{x}\n{out:?}");
            for line in x
                .lines()
                .filter(|l| l.contains("<target") || l.contains("<address"))
            {
                assert!(
                    dumped.contains(line.trim()),
                    "libvirt lost {line}:\n{dumped}"
                );
            }
        }
    }
    // The check is a real one: a broken element is refused.
    if let Some((ok, _)) = validate(
        dir.path(),
        &soft.replace("managed='no'", "managed='perhaps'"),
    ) {
        assert!(!ok, "virt-xml-validate accepted a bad managed value");
    }
}

#[test]
fn a_vf_on_a_network_driver_and_an_unknown_vport_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "igbvf");
    let root = dir.path().join("root");
    let out = xml(&config, &root, "vm2");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "vportd: vPort vm2 is VF 0000:01:10.2, bound to igbvf, a network driver the host uses; a VM takes a VF through vfio-pci: set vf_driver = \"vfio-pci\" on its [[uplink]] and run vportd apply\n"
    );
    let out = xml(&config, &root, "vm9");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no [[vport]] is named \"vm9\""),
        "{out:?}"
    );
}
