//! vPorts on a `[[switch]]` (private or internal): the software path, always, without
//! touching a NIC. Their placement records the switch as `switch:NAME` where others record
//! their PF, so that no stage over uplinks ever counts them.

use super::{Draft, Inputs, Placement};
use crate::provision::state::{SWITCH_MEMBER_PREFIX, VportPath};

/// Places every vPort that names a switch.
pub(super) fn place_switch_members(inputs: &Inputs, draft: &mut Draft) {
    for v in &inputs.cfg.vports {
        let Some(sw) = inputs.cfg.switch_of(v) else {
            continue;
        };
        let kind = match sw.host_netdev {
            Some(_) => "internal",
            None => "private",
        };
        draft.plan.placements.push(Placement {
            vport: v.name.clone(),
            uplink: format!("{SWITCH_MEMBER_PREFIX}{}", sw.name),
            path: VportPath::Software,
            reason: format!(
                "on {kind} switch {}, which has no NIC: the software switch carries it",
                sw.name
            ),
            vf_config: None,
        });
    }
}
