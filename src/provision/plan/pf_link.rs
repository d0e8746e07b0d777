//! The PF's link: an uplink whose netdev is administratively down (as PFs are at boot,
//! before network management runs) is brought up first, since it has no link while down
//! and drivers such as igb refuse VF rates without one. `bring_up = false` leaves the link
//! to whoever manages it, and the plan says what that costs.

use super::Draft;
use super::action::Action;
use super::uplink::UplinkPlan;

/// The step that brings the uplink's PF up, first among its steps; or, with
/// `bring_up = false`, a warning when its vPorts ask for rates the PF cannot take while down.
pub(super) fn bring_up(up: &UplinkPlan<'_>, draft: &mut Draft) {
    let Some(pf_ifindex) = up.pf_ifindex else {
        return;
    };
    let down = up
        .function
        .netdevs
        .iter()
        .any(|d| d.ifindex == pf_ifindex && d.admin_up == Some(false));
    if !down {
        return;
    }
    if up.spec.bring_up {
        draft.actions.push(Action::SetPfLink {
            pf: up.pf.to_string(),
            pf_ifindex,
            up: true,
        });
        return;
    }
    let rated: Vec<&str> = up
        .vports
        .iter()
        .filter(|v| {
            v.max_tx_rate_mbps.is_some_and(|r| r > 0) || v.min_tx_rate_mbps.is_some_and(|r| r > 0)
        })
        .map(|v| v.name.as_str())
        .collect();
    if !rated.is_empty() {
        draft.plan.warnings.push(format!(
            "uplink {} (PF {}) is administratively down and has bring_up = false: it has no link, \
             and drivers such as igb refuse the VF rates of {} without one",
            up.spec.selector,
            up.pf,
            rated.join(", ")
        ));
    }
}
