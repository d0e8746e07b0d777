//! Vendor, device and subsystem names from the system's PCI id database (`pci.ids`, Debian's
//! package `pci.ids`), read at run time rather than compiled in: the names follow the host's
//! updates, the binary stays small and position-independent (an embedded table was ~51,000
//! pointers to relocate at every start), and the build downloads nothing.
//!
//! Names are for people only: nothing decides on them. A host without the file gets ids
//! without names and a note ([`Names::note`]), never an error. The file is read once per
//! root, on the first name asked for, so a run that prints no name never reads it.
//!
//! The format (the header of pci.ids itself documents it): `#` comments and blank lines;
//! `vvvv  vendor name`; `\tdddd  device name` under its vendor; `\t\tssss ssss  subsystem
//! name` under its device; and from the first `C cc  class name` line on, the class list,
//! which vportd does not use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Where distributions put pci.ids, below a root: Debian and its derivatives, then the
/// hwdata layout of Fedora, Arch and SUSE.
pub const SYSTEM_PATHS: &[&str] = &["usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids"];

/// A line pci.ids cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {what} (the line reads {text:?})")]
pub struct PciIdsError {
    /// The file, or what the text came from.
    pub source_name: String,
    /// 1-based.
    pub line: usize,
    pub what: &'static str,
    /// The line, cut to 80 characters.
    pub text: String,
}

#[derive(Debug, Clone, Default)]
struct Device {
    name: String,
    /// By (subsystem vendor, subsystem device).
    subsystems: BTreeMap<(u16, u16), String>,
}

#[derive(Debug, Clone, Default)]
struct Vendor {
    name: String,
    devices: BTreeMap<u16, Device>,
}

/// A parsed pci.ids: its vendors, their devices and the devices' subsystems.
#[derive(Debug, Clone, Default)]
pub struct PciIds {
    vendors: BTreeMap<u16, Vendor>,
}

/// Which section the parser is in: a vendor's entries, or the class list (ignored).
enum Section {
    None,
    Vendor(u16),
    Classes,
}

impl PciIds {
    /// Parses pci.ids text; `source_name` says where it came from in errors. The first entry
    /// wins when an id repeats. A malformed line is an error naming it: a damaged file gives
    /// no names rather than wrong ones.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, PciIdsError> {
        let mut ids = PciIds::default();
        let mut section = Section::None;
        let mut device: Option<u16> = None;
        for (i, line) in text.lines().enumerate() {
            let err = |what| PciIdsError {
                source_name: source_name.to_string(),
                line: i + 1,
                what,
                text: line.chars().take(80).collect(),
            };
            let line = line.trim_end();
            if line.trim_start().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("\t\t") {
                match section {
                    Section::Classes => {}
                    Section::None => return Err(err("a subsystem line before any vendor")),
                    Section::Vendor(v) => {
                        let Some(d) = device else {
                            return Err(err("a subsystem line before any device of its vendor"));
                        };
                        let (sv, rest) =
                            hex_id(rest, ' ').ok_or_else(|| err("not a subsystem line (two tabs, two ids of four hex digits, a name)"))?;
                        let (sd, name) =
                            hex_id(rest, ' ').ok_or_else(|| err("not a subsystem line (two tabs, two ids of four hex digits, a name)"))?;
                        let name =
                            entry_name(name).ok_or_else(|| err("a subsystem without a name"))?;
                        let dev = ids.vendors.get_mut(&v).and_then(|x| x.devices.get_mut(&d));
                        let dev = dev.expect("the device line was stored");
                        dev.subsystems
                            .entry((sv, sd))
                            .or_insert_with(|| name.to_string());
                    }
                }
            } else if let Some(rest) = line.strip_prefix('\t') {
                match section {
                    Section::Classes => {}
                    Section::None => return Err(err("a device line before any vendor")),
                    Section::Vendor(v) => {
                        let (d, name) = hex_id(rest, ' ').ok_or_else(|| {
                            err("not a device line (a tab, four hex digits, spaces, a name)")
                        })?;
                        let name =
                            entry_name(name).ok_or_else(|| err("a device without a name"))?;
                        let vendor = ids.vendors.get_mut(&v).expect("the vendor line was stored");
                        vendor.devices.entry(d).or_insert_with(|| Device {
                            name: name.to_string(),
                            subsystems: BTreeMap::new(),
                        });
                        device = Some(d);
                    }
                }
            } else if line.starts_with("C ") {
                section = Section::Classes;
            } else if matches!(section, Section::Classes) {
                // Another top-level list after the classes: not ours either.
                continue;
            } else {
                let (v, name) = hex_id(line, ' ')
                    .ok_or_else(|| err("not a vendor line (four hex digits, spaces, a name)"))?;
                let name = entry_name(name).ok_or_else(|| err("a vendor without a name"))?;
                ids.vendors.entry(v).or_insert_with(|| Vendor {
                    name: name.to_string(),
                    devices: BTreeMap::new(),
                });
                section = Section::Vendor(v);
                device = None;
            }
        }
        Ok(ids)
    }

    /// The vendor's name.
    pub fn vendor(&self, vendor: u16) -> Option<&str> {
        self.vendors.get(&vendor).map(|v| v.name.as_str())
    }

    /// The device's name.
    pub fn device(&self, vendor: u16, device: u16) -> Option<&str> {
        self.device_entry(vendor, device).map(|d| d.name.as_str())
    }

    /// The subsystem's name (a board or card built on the device).
    pub fn subsystem(&self, vendor: u16, device: u16, sub: (u16, u16)) -> Option<&str> {
        self.device_entry(vendor, device)
            .and_then(|d| d.subsystems.get(&sub))
            .map(String::as_str)
    }

    /// How many vendors, devices and subsystems the database holds.
    pub fn counts(&self) -> (usize, usize, usize) {
        let devices = self.vendors.values().map(|v| v.devices.len()).sum();
        let subs = self
            .vendors
            .values()
            .flat_map(|v| v.devices.values())
            .map(|d| d.subsystems.len())
            .sum();
        (self.vendors.len(), devices, subs)
    }

    /// The database cut down to `wanted` (vendor, device) pairs, as pci.ids text: what a
    /// recorded fixture (`discover --record`) needs to replay the names it showed. A vendor's
    /// line comes once, before its devices; ids the database lacks are left out.
    pub fn subset_text(&self, wanted: &[(u16, u16)]) -> String {
        let mut picked: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
        for (v, d) in wanted {
            if self.vendors.contains_key(v) {
                let devices = picked.entry(*v).or_default();
                if self.device(*v, *d).is_some() && !devices.contains(d) {
                    devices.push(*d);
                }
            }
        }
        let mut out = String::from(
            "# The entries of the recording host's pci.ids that its inventory names.\n",
        );
        for (v, mut devices) in picked {
            out += &format!("{v:04x}  {}\n", self.vendors[&v].name);
            devices.sort_unstable();
            for d in devices {
                out += &format!("\t{d:04x}  {}\n", self.vendors[&v].devices[&d].name);
            }
        }
        out
    }

    fn device_entry(&self, vendor: u16, device: u16) -> Option<&Device> {
        self.vendors.get(&vendor)?.devices.get(&device)
    }
}

/// Four hex digits then `sep`: the id and what follows the separator.
fn hex_id(s: &str, sep: char) -> Option<(u16, &str)> {
    let id = s.get(..4)?;
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let rest = s[4..].strip_prefix(sep)?;
    Some((u16::from_str_radix(id, 16).ok()?, rest))
}

/// The name after an id's separating spaces; None when there is none.
fn entry_name(s: &str) -> Option<&str> {
    let name = s.trim();
    (!name.is_empty()).then_some(name)
}

/// The names a root offers: the database, or why there is none.
#[derive(Debug)]
pub struct Names {
    ids: Option<PciIds>,
    note: Option<String>,
}

impl Names {
    /// Reads the first of [`SYSTEM_PATHS`] below `root` that exists. No file, or one that
    /// cannot be read or parsed, gives no names and a note saying so.
    pub fn load(root: &Path) -> Self {
        for rel in SYSTEM_PATHS {
            let path = root.join(rel);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    return match PciIds::parse(&text, &path.display().to_string()) {
                        Ok(ids) => Names {
                            ids: Some(ids),
                            note: None,
                        },
                        Err(e) => Names {
                            ids: None,
                            note: Some(format!("PCI names left out: {e}")),
                        },
                    };
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Names {
                        ids: None,
                        note: Some(format!(
                            "PCI names left out: cannot read {}: {e}",
                            path.display()
                        )),
                    };
                }
            }
        }
        let tried: Vec<String> = SYSTEM_PATHS
            .iter()
            .map(|p| root.join(p).display().to_string())
            .collect();
        Names {
            ids: None,
            note: Some(format!(
                "PCI names left out: no pci.ids at {} (install the package pci.ids); ids are shown",
                tried.join(" or ")
            )),
        }
    }

    /// The database, when there is one.
    pub fn ids(&self) -> Option<&PciIds> {
        self.ids.as_ref()
    }

    /// Why there are no names, for the operator; None when there are.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }
}

/// The names below `root`, read on the first call for that root and kept for the process.
pub fn names_for(root: &Path) -> Arc<Names> {
    type Cache = Mutex<BTreeMap<PathBuf, Arc<OnceLock<Arc<Names>>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let slot = {
        let mut cache = CACHE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.entry(root.to_path_buf()).or_default().clone()
    };
    // Read outside the lock: another root's first read does not wait for this one.
    slot.get_or_init(|| Arc::new(Names::load(root))).clone()
}

/// The vendor's and the device's names from the pci.ids below `root` (`/` for the live
/// system), when it has them.
pub fn vendor_device(
    root: &Path,
    vendor: Option<u16>,
    device: Option<u16>,
) -> (Option<String>, Option<String>) {
    let Some(vendor) = vendor else {
        return (None, None);
    };
    let names = names_for(root);
    let Some(ids) = names.ids() else {
        return (None, None);
    };
    (
        ids.vendor(vendor).map(str::to_string),
        device.and_then(|d| ids.device(vendor, d).map(str::to_string)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# comment
#\tvendor  vendor_name
1af4  Red Hat, Inc.
\t1041  Virtio 1.0 network device
\t\t1af4 1100  QEMU Virtual Machine
8086  Intel Corporation
\t10c9  82576 Gigabit Network Connection
\t\t103c 31e8  NC364T PCI Express Quad Port Gigabit Server Adapter
\t\t8086 a03c  Gigabit ET Dual Port Server Adapter
\t10ca  82576 Virtual Function

\t10c9  a repeated device is ignored
8086  a repeated vendor is ignored
\t1234  but its devices join the first
C 02  Network controller
\t00  Ethernet controller
\t\t00  not a subsystem
";

    fn sample() -> PciIds {
        PciIds::parse(SAMPLE, "sample").expect("the sample parses")
    }

    #[test]
    fn vendors_devices_and_subsystems_are_found() {
        let ids = sample();
        assert_eq!(ids.vendor(0x8086), Some("Intel Corporation"));
        assert_eq!(ids.vendor(0x1af4), Some("Red Hat, Inc."));
        assert_eq!(
            ids.device(0x8086, 0x10c9),
            Some("82576 Gigabit Network Connection")
        );
        assert_eq!(ids.device(0x8086, 0x10ca), Some("82576 Virtual Function"));
        assert_eq!(
            ids.subsystem(0x8086, 0x10c9, (0x8086, 0xa03c)),
            Some("Gigabit ET Dual Port Server Adapter")
        );
        assert_eq!(
            ids.subsystem(0x1af4, 0x1041, (0x1af4, 0x1100)),
            Some("QEMU Virtual Machine")
        );
    }

    #[test]
    fn unknown_ids_have_no_name() {
        let ids = sample();
        assert_eq!(ids.vendor(0x10de), None);
        assert_eq!(ids.device(0x8086, 0x1521), None);
        assert_eq!(
            ids.device(0x1af4, 0x10c9),
            None,
            "devices belong to a vendor"
        );
        assert_eq!(ids.subsystem(0x8086, 0x10ca, (0x8086, 0xa03c)), None);
    }

    #[test]
    fn the_first_entry_wins_and_classes_are_not_devices() {
        let ids = sample();
        assert_eq!(
            ids.device(0x8086, 0x10c9),
            Some("82576 Gigabit Network Connection")
        );
        assert_eq!(ids.vendor(0x8086), Some("Intel Corporation"));
        assert_eq!(
            ids.device(0x8086, 0x1234),
            Some("but its devices join the first")
        );
        // 3 vendors lines, 2 distinct; the class section's "\t00" is no device 0x0000.
        assert_eq!(ids.counts(), (2, 4, 3));
    }

    #[test]
    fn a_subset_keeps_the_names_asked_for() {
        let ids = sample();
        let text = ids.subset_text(&[
            (0x8086, 0x10ca),
            (0x8086, 0x10ca),
            (0x10de, 1),
            (0x1af4, 0x9999),
        ]);
        let sub = PciIds::parse(&text, "subset").expect("the subset parses");
        assert_eq!(sub.device(0x8086, 0x10ca), Some("82576 Virtual Function"));
        assert_eq!(sub.vendor(0x1af4), Some("Red Hat, Inc."));
        assert_eq!(sub.counts(), (2, 1, 0), "{text}");
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        for (text, line, what) in [
            (
                "\t10c9  device first\n",
                1,
                "a device line before any vendor",
            ),
            (
                "8086  Intel\n\t\t8086 0001  sub first\n",
                2,
                "a subsystem line before any device of its vendor",
            ),
            (
                "8086  Intel\nxyz1  bad\n",
                2,
                "not a vendor line (four hex digits, spaces, a name)",
            ),
            (
                "8086  Intel\n\t10c  short\n",
                2,
                "not a device line (a tab, four hex digits, spaces, a name)",
            ),
            (
                "8086  Intel\n\t10c9  ok\n\t\t8086\n",
                3,
                "not a subsystem line (two tabs, two ids of four hex digits, a name)",
            ),
            (
                "8086\n",
                1,
                "not a vendor line (four hex digits, spaces, a name)",
            ),
            (
                "8086 \r\n",
                1,
                "not a vendor line (four hex digits, spaces, a name)",
            ),
        ] {
            let e = PciIds::parse(text, "t.ids").expect_err(text);
            assert_eq!((e.line, e.what), (line, what), "{text:?}");
            assert!(e.to_string().starts_with(&format!("t.ids:{line}: ")), "{e}");
        }
    }

    #[test]
    fn a_root_without_the_file_has_no_names_and_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = Names::load(dir.path());
        assert!(names.ids().is_none());
        let note = names.note().expect("a note");
        assert!(
            note.contains("usr/share/misc/pci.ids") && note.contains("pci.ids"),
            "{note}"
        );
        assert_eq!(
            vendor_device(dir.path(), Some(0x8086), Some(0x10c9)),
            (None, None)
        );
    }

    #[test]
    fn the_hwdata_path_is_read_when_debians_is_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hwdata = dir.path().join("usr/share/hwdata");
        std::fs::create_dir_all(&hwdata).expect("mkdir");
        std::fs::write(hwdata.join("pci.ids"), SAMPLE).expect("write");
        let (vendor, device) = vendor_device(dir.path(), Some(0x8086), Some(0x10ca));
        assert_eq!(vendor.as_deref(), Some("Intel Corporation"));
        assert_eq!(device.as_deref(), Some("82576 Virtual Function"));
        assert_eq!(vendor_device(dir.path(), None, Some(0x10ca)), (None, None));
        let (vendor, device) = vendor_device(dir.path(), Some(0x8086), Some(0x1521));
        assert_eq!(
            (vendor.as_deref(), device),
            (Some("Intel Corporation"), None)
        );
    }

    #[test]
    fn a_damaged_file_gives_no_names_and_names_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let misc = dir.path().join("usr/share/misc");
        std::fs::create_dir_all(&misc).expect("mkdir");
        std::fs::write(misc.join("pci.ids"), "8086  Intel\n\tzz  bad\n").expect("write");
        let names = Names::load(dir.path());
        assert!(names.ids().is_none());
        assert!(
            names
                .note()
                .expect("a note")
                .contains("pci.ids:2: not a device line")
        );
    }
}
