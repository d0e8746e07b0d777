//! PCI names come from the pci.ids below the root discovery reads (the system's at run time,
//! Debian's package pci.ids): with it `discover` names vendors and devices, without it the
//! ids stand alone and stderr says why, and the JSON keeps its shape either way.

mod common;

use std::path::{Path, PathBuf};

use vportd::facts::pciids::{self, PciIds};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The installed database parses whole and knows the rig's NIC. scripts/setup-host installs
/// it; a machine without it fails here rather than testing nothing.
#[test]
fn the_system_database_parses_and_names_the_82576() {
    let path = pciids::SYSTEM_PATHS
        .iter()
        .map(|p| Path::new("/").join(p))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("no pci.ids at /usr/share/misc or /usr/share/hwdata: run scripts/setup-host (Debian package pci.ids)")
        });
    let text = std::fs::read_to_string(&path).expect("pci.ids is readable");
    let ids = PciIds::parse(&text, &path.display().to_string()).expect("the system pci.ids parses");
    let (vendors, devices, subsystems) = ids.counts();
    assert!(
        vendors > 1000 && devices > 10_000 && subsystems > 1000,
        "{vendors} vendors, {devices} devices, {subsystems} subsystems"
    );
    assert_eq!(ids.vendor(0x8086), Some("Intel Corporation"));
    let dev = ids.device(0x8086, 0x10c9).expect("8086:10c9 is named");
    assert!(dev.contains("82576"), "{dev}");
}

fn discover_json(root: &Path) -> (serde_json::Value, String) {
    let out = common::vportd(&[
        "discover",
        "--json",
        "--fixture",
        root.to_str().expect("UTF-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = serde_json::from_slice(&out.stdout).expect("discover prints JSON");
    (json, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn discover_names_devices_from_the_roots_database() {
    let (json, stderr) = discover_json(&fixture("build-virtio"));
    let f = &json["pci_functions"][0];
    assert_eq!(f["vendor_name"], "Red Hat, Inc.");
    assert_eq!(f["device_name"], "Virtio 1.0 network device");
    assert!(!stderr.contains("note"), "{stderr}");
}

#[test]
fn without_a_database_discover_shows_ids_and_a_note() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("build-virtio");
    common::run_ok(
        "cp",
        &[
            "-a",
            fixture("build-virtio").to_str().unwrap(),
            copy.to_str().unwrap(),
        ],
    );
    std::fs::remove_dir_all(copy.join("usr")).expect("remove the fixture's pci.ids");
    let (json, stderr) = discover_json(&copy);
    let (named, _) = discover_json(&fixture("build-virtio"));
    let f = &json["pci_functions"][0];
    assert_eq!(
        (&f["vendor_id"], &f["device_id"]),
        (
            &named["pci_functions"][0]["vendor_id"],
            &named["pci_functions"][0]["device_id"]
        )
    );
    assert!(
        f["vendor_name"].is_null() && f["device_name"].is_null(),
        "{f}"
    );
    // The same keys with or without names: docs/discover-schema.md does not change.
    let keys = |v: &serde_json::Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(f), keys(&named["pci_functions"][0]));
    assert!(
        stderr.contains("note: PCI names left out: no pci.ids at")
            && stderr.contains("usr/share/misc/pci.ids"),
        "{stderr}"
    );
}

/// A recording carries the names it showed (the database's entries it used, not the whole
/// file), so its replay is the same inventory.
#[test]
fn a_recording_replays_its_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec");
    let src = fixture("guest-82576-7vfs");
    let out = common::vportd(&[
        "discover",
        "--json",
        "--fixture",
        src.to_str().expect("UTF-8"),
        "--record",
        rec.to_str().expect("UTF-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        shown["pci_functions"][0]["device_name"],
        "82576 Gigabit Network Connection"
    );
    let ids = std::fs::read_to_string(rec.join("usr/share/misc/pci.ids")).expect("recorded");
    assert!(!ids.contains("1041"), "only the entries used:\n{ids}");
    let (replayed, stderr) = discover_json(&rec);
    assert_eq!(replayed, shown, "{stderr}");
}
