//! `vportd libvirt-xml VPORT`: the libvirt `<interface>` element that puts a VM on a vPort,
//! for a domain's `<devices>` (softpath::libvirt renders it).

use std::path::PathBuf;

use crate::host::fs::KernelFs;
use crate::provision::config;
use crate::provision::state::State;
use crate::softpath::libvirt::interface_xml;
use crate::softpath::tap_name;

/// Print the libvirt `<interface>` element of a vPort: type='ethernet' on its TAP for the
/// software path, type='hostdev' managed='no' for a VF bound to vfio-pci.
#[derive(Debug, Clone, clap::Args)]
pub struct LibvirtXmlArgs {
    /// The vPort's name, as its [[vport]] gives it.
    pub vport: String,
    /// The provisioning config: the vPort's MAC and VLAN, and the state directory.
    #[arg(long, value_name = "CONFIG", default_value = super::ctl::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Read sysfs below DIR instead of / (for the VF's driver).
    #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
    pub root: PathBuf,
}

/// The element, or an exit code (2: the config or the vPort's placement does not allow it;
/// 1: the state could not be read) and the message.
pub fn libvirt_xml_main(a: LibvirtXmlArgs) -> Result<String, (u8, String)> {
    let cfg = config::load(&a.config).map_err(|e| (2, e.to_string()))?;
    let spec = cfg
        .vports
        .iter()
        .find(|v| v.name == a.vport)
        .ok_or_else(|| {
            (
                2,
                format!(
                    "{}: no [[vport]] is named {:?}",
                    a.config.display(),
                    a.vport
                ),
            )
        })?;
    let state = State::load(&cfg.state_dir).map_err(|e| (1, e.to_string()))?;
    let st = state.vports.get(&a.vport);
    let driver = st.and_then(|s| s.vf_bdf.as_deref()).and_then(|bdf| {
        KernelFs::at(&a.root)
            .link_name(&format!("/sys/bus/pci/devices/{bdf}/driver"))
            .ok()
            .flatten()
    });
    interface_xml(
        &a.vport,
        st,
        spec.mac,
        spec.vlan,
        &tap_name(&a.vport),
        driver.as_deref(),
    )
    .map_err(|e| (2, e.to_string()))
}
