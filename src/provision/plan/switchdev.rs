//! A PF whose devlink eswitch is in `switchdev` mode: its driver carries VF traffic through
//! one representor netdev per VF and refuses the legacy per-VF controls that `ConfigureVf`
//! and `ResetVf` send over the PF's netdev (netdevsim: EOPNOTSUPP, "Please use devlink
//! API"; mlx5 and ice likewise). Rather than let apply fail half way through those calls
//! and roll back, the plan says what a vPort on such a PF would be (its VF, with the VF's
//! representor as the vPort's port on the software path, the way OVS offload setups attach
//! them) and blocks the legacy steps, naming the PF, its mode and the representor. vportd
//! does not attach representors yet: a switchdev PF takes vPorts on the software path only.

use super::Draft;
use super::action::Action;
use super::uplink::UplinkPlan;
use crate::model::inventory::EswitchMode;

/// Blocks every legacy VF step this uplink's plan holds when its eswitch is in switchdev.
pub(super) fn legacy_vf_steps(up: &UplinkPlan, draft: &mut Draft) {
    if up.function.eswitch_mode != Some(EswitchMode::Switchdev) {
        return;
    }
    let pf = up.pf;
    let pf_netdev = up
        .function
        .netdevs
        .first()
        .map(|d| format!(" ({})", d.name))
        .unwrap_or_default();
    let devlink = devlink_handle(up);
    for a in draft.resets.iter().chain(draft.actions.iter()) {
        let (vf, whom) = match a {
            Action::ConfigureVf {
                pf: p,
                vport,
                config,
                ..
            } if p == pf => (config.vf, format!("vPort {vport}")),
            Action::ResetVf {
                pf: p,
                released_from,
                config,
                ..
            } if p == pf => (
                config.vf,
                format!("the reset of the VF {released_from} held"),
            ),
            _ => continue,
        };
        let representor = up
            .function
            .representors
            .iter()
            .find(|r| r.vf == vf)
            .map(|r| format!("its representor {} ({})", r.name, r.port_name))
            .unwrap_or_else(|| "its representor (none found yet)".into());
        draft.plan.blockers.push(format!(
            "uplink {pf}{pf_netdev} is in devlink eswitch mode switchdev: its driver takes no \
             legacy VF settings (MAC, VLAN, rates, spoof checking, trust, link state), so {whom} \
             cannot be set on VF {vf}; on such a PF a vPort is VF {vf} with {representor} as \
             its switch port on the software path, which vportd does not attach yet. Put the \
             PF back in legacy mode (devlink dev eswitch set {devlink} mode legacy), or give \
             the vPort offload = \"never\""
        ));
    }
}

/// The PF's devlink handle as `devlink` takes it: `pci/BDF`, or `netdevsim/netdevsimN`.
fn devlink_handle(up: &UplinkPlan) -> String {
    let bus = if up.pf.starts_with("netdevsim") {
        "netdevsim"
    } else {
        "pci"
    };
    format!("{bus}/{}", up.pf)
}
