//! The libvirt `<interface>` element that puts a VM on a vPort (pure: the CLI reads the state,
//! the config and the VF's driver, and prints what this returns).
//!
//! - Software path: `type='ethernet'` on the vPort's TAP, which vportd made persistent and
//!   serves (`managed='no'`: libvirt opens it, neither makes nor deletes it), virtio-net.
//! - A VF: `type='hostdev' managed='no'`, the VF by PCI address; the VF must already be bound
//!   to vfio-pci (`vf_driver = "vfio-pci"`; managed='no' keeps libvirt from rebinding it).
//!   libvirt programs a hostdev interface's MAC and VLAN through the PF when the VM starts, so
//!   the element carries the vPort's own, which vportd already set: the same values again.
//!
//! The MAC is always the vPort's: the switch port's spoof check (and the VF's) drops frames
//! from any other source address.

use crate::model::mac::Mac;
use crate::provision::state::{Health, VportPath, VportState};

/// Why a vPort has no libvirt interface to print.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LibvirtError {
    /// The state has no such vPort (never applied, or removed).
    #[error("vPort {vport} is not provisioned: run vportd apply with a config that has it")]
    NotProvisioned { vport: String },
    /// Its uplink is gone.
    #[error(
        "vPort {vport} is lost with its uplink {uplink}; it gets an interface again when the uplink is back"
    )]
    Lost { vport: String, uplink: String },
    /// A VF bound to a network driver: a VM cannot take it.
    #[error(
        "vPort {vport} is VF {bdf}, bound to {driver}, a network driver the host uses; a VM takes a VF through vfio-pci: set vf_driver = \"vfio-pci\" on its [[uplink]] and run vportd apply"
    )]
    VfNotVfio {
        vport: String,
        bdf: String,
        driver: String,
    },
    /// A VF with no driver, or whose address the state lacks.
    #[error(
        "vPort {vport} is VF {bdf} with no driver bound; set vf_driver = \"vfio-pci\" on its [[uplink]] and run vportd apply"
    )]
    VfUnbound { vport: String, bdf: String },
    /// A VF whose PCI address is not recorded or not a PCI address.
    #[error(
        "vPort {vport} is a VF whose PCI address the state does not hold ({bdf:?}); run vportd apply again"
    )]
    VfAddress { vport: String, bdf: String },
    /// Hardware queues steered on the PF: the host's netdev, nothing a VM opens.
    #[error(
        "vPort {vport} is on {label} of its uplink, which serve a host netdev, not a VM; give it placement = \"software\" (a TAP) or a VF with vf_driver = \"vfio-pci\""
    )]
    Queues { vport: String, label: String },
}

/// The element for vPort `vport`, as the state places it. `mac` and `vlan` are the config's;
/// `vf_driver` is the driver bound to the vPort's VF now (None: none), asked only for a VF;
/// `tap` is the vPort's TAP name (softpath::tap_name).
pub fn interface_xml(
    vport: &str,
    state: Option<&VportState>,
    mac: Mac,
    vlan: Option<u16>,
    tap: &str,
    vf_driver: Option<&str>,
) -> Result<String, LibvirtError> {
    let st = state.ok_or_else(|| LibvirtError::NotProvisioned {
        vport: vport.to_string(),
    })?;
    if st.health == Health::Lost {
        return Err(LibvirtError::Lost {
            vport: vport.to_string(),
            uplink: st.uplink.clone(),
        });
    }
    match &st.path {
        VportPath::Software => Ok(format!(
            "<interface type='ethernet'>\n  <mac address='{mac}'/>\n  <target dev='{}' managed='no'/>\n  <model type='virtio'/>\n</interface>\n",
            xml_attr(tap)
        )),
        VportPath::Vf { .. } => {
            let bdf = st.vf_bdf.clone().unwrap_or_default();
            let Some(address) = pci_address(&bdf) else {
                return Err(LibvirtError::VfAddress {
                    vport: vport.to_string(),
                    bdf,
                });
            };
            match vf_driver {
                Some("vfio-pci") => {}
                Some(driver) => {
                    return Err(LibvirtError::VfNotVfio {
                        vport: vport.to_string(),
                        bdf,
                        driver: driver.to_string(),
                    });
                }
                None => {
                    return Err(LibvirtError::VfUnbound {
                        vport: vport.to_string(),
                        bdf,
                    });
                }
            }
            let vlan = vlan
                .map(|v| format!("  <vlan>\n    <tag id='{v}'/>\n  </vlan>\n"))
                .unwrap_or_default();
            Ok(format!(
                "<interface type='hostdev' managed='no'>\n  <mac address='{mac}'/>\n  <source>\n    {address}\n  </source>\n{vlan}</interface>\n"
            ))
        }
        VportPath::Queues { .. } => Err(LibvirtError::Queues {
            vport: vport.to_string(),
            label: st.path.label(),
        }),
    }
}

/// `DDDD:BB:SS.F` as libvirt's `<address type='pci' .../>`; None when it is not one.
fn pci_address(bdf: &str) -> Option<String> {
    let (domain, rest) = bdf.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (slot, function) = rest.split_once('.')?;
    let hex = |s: &str, max: u32| {
        (!s.is_empty() && s.len() <= 4)
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    let (d, b, s, f) = (
        hex(domain, 0xffff)?,
        hex(bus, 0xff)?,
        hex(slot, 0x1f)?,
        hex(function, 7)?,
    );
    Some(format!(
        "<address type='pci' domain='{d:#06x}' bus='{b:#04x}' slot='{s:#04x}' function='{f:#x}'/>"
    ))
}

/// Escapes what an attribute value in single quotes cannot hold as is.
fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(path: VportPath, bdf: Option<&str>) -> VportState {
        VportState {
            uplink: "0000:01:00.0".into(),
            path,
            reason: String::new(),
            vf_bdf: bdf.map(str::to_string),
            applied: None,
            health: Health::Provisioned,
        }
    }

    const MAC: Mac = Mac([0x02, 0x76, 0x70, 0, 0, 1]);

    #[test]
    fn a_software_vport_is_an_ethernet_interface_on_its_tap() {
        let s = st(VportPath::Software, None);
        assert_eq!(
            interface_xml("vm1", Some(&s), MAC, Some(100), "vp-vm1", None).unwrap(),
            "<interface type='ethernet'>\n  <mac address='02:76:70:00:00:01'/>\n  <target dev='vp-vm1' managed='no'/>\n  <model type='virtio'/>\n</interface>\n"
        );
    }

    #[test]
    fn a_vf_on_vfio_pci_is_a_hostdev_interface_by_pci_address() {
        let s = st(VportPath::Vf { index: 1 }, Some("0000:01:10.2"));
        assert_eq!(
            interface_xml("vm1", Some(&s), MAC, Some(100), "vp-vm1", Some("vfio-pci")).unwrap(),
            "<interface type='hostdev' managed='no'>\n  <mac address='02:76:70:00:00:01'/>\n  <source>\n    <address type='pci' domain='0x0000' bus='0x01' slot='0x10' function='0x2'/>\n  </source>\n  <vlan>\n    <tag id='100'/>\n  </vlan>\n</interface>\n"
        );
        let untagged = interface_xml("vm1", Some(&s), MAC, None, "vp-vm1", Some("vfio-pci"));
        assert!(!untagged.unwrap().contains("vlan"));
    }

    #[test]
    fn what_a_vm_cannot_take_is_refused_with_what_to_do() {
        let vf = st(VportPath::Vf { index: 1 }, Some("0000:01:10.2"));
        let e = interface_xml("vm1", Some(&vf), MAC, None, "vp-vm1", Some("igbvf")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vPort vm1 is VF 0000:01:10.2, bound to igbvf, a network driver the host uses; a VM takes a VF through vfio-pci: set vf_driver = \"vfio-pci\" on its [[uplink]] and run vportd apply"
        );
        assert!(matches!(
            interface_xml("vm1", Some(&vf), MAC, None, "vp-vm1", None),
            Err(LibvirtError::VfUnbound { .. })
        ));
        let bad = st(VportPath::Vf { index: 1 }, None);
        assert!(matches!(
            interface_xml("vm1", Some(&bad), MAC, None, "vp-vm1", Some("vfio-pci")),
            Err(LibvirtError::VfAddress { .. })
        ));
        assert!(matches!(
            interface_xml("vm1", None, MAC, None, "vp-vm1", None),
            Err(LibvirtError::NotProvisioned { .. })
        ));
        let mut lost = st(VportPath::Software, None);
        lost.health = Health::Lost;
        assert!(matches!(
            interface_xml("vm1", Some(&lost), MAC, None, "vp-vm1", None),
            Err(LibvirtError::Lost { .. })
        ));
    }

    #[test]
    fn pci_addresses_convert_and_junk_does_not() {
        assert_eq!(
            pci_address("0001:af:1f.7").unwrap(),
            "<address type='pci' domain='0x0001' bus='0xaf' slot='0x1f' function='0x7'/>"
        );
        for junk in [
            "",
            "01:10.2",
            "0000:01:20.0",
            "0000:01:10.8",
            "0000:zz:10.0",
        ] {
            assert_eq!(pci_address(junk), None, "{junk}");
        }
        assert_eq!(xml_attr("a'b<c"), "a&apos;b&lt;c");
    }
}
