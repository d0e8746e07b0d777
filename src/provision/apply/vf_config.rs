//! `ConfigureVf` and `ResetVf`: a VF's settings over rtnetlink (MAC, VLAN, rates, spoof
//! checking, trust, link state), sending only what differs from what the VF has.

use super::journal::Undo;
use super::{ApplyOptions, StepError, not_mine, wait_for_carrier};
use crate::model::vf::{VfConfig, VlanProto};
use crate::provision::ops::SriovOps;
use crate::provision::plan::{Action, vf_matches};

pub(super) fn describe(a: &Action) -> String {
    match a {
        Action::ConfigureVf {
            pf, vport, config, ..
        } => format!(
            "configure VF {} of {pf} for {vport}: {}",
            config.vf,
            summary(config)
        ),
        Action::ResetVf {
            pf,
            released_from,
            config,
            ..
        } => format!(
            "reset VF {} of {pf} (released by {released_from}) to a clean state",
            config.vf
        ),
        _ => not_mine("vf_config"),
    }
}

fn summary(c: &VfConfig) -> String {
    let mut parts = vec![format!("mac {}", c.mac)];
    if c.vlan != 0 {
        parts.push(format!(
            "vlan {} qos {}{}",
            c.vlan,
            c.qos,
            match c.vlan_proto {
                Some(VlanProto::Dot1Ad) => " proto 802.1ad",
                _ => "",
            }
        ));
    }
    if let Some(r) = c.max_tx_rate.filter(|r| *r > 0) {
        parts.push(format!("max_tx_rate {r}"));
    }
    if let Some(r) = c.min_tx_rate.filter(|r| *r > 0) {
        parts.push(format!("min_tx_rate {r}"));
    }
    if let Some(s) = c.spoofchk {
        parts.push(format!("spoofchk {}", if s { "on" } else { "off" }));
    }
    if let Some(t) = c.trust {
        parts.push(format!("trust {}", if t { "on" } else { "off" }));
    }
    if let Some(l) = &c.link_state {
        parts.push(format!("state {l}"));
    }
    parts.join(", ")
}

/// The step's PF, its ifindex and the settings it asks for.
fn fields(a: &Action) -> (&str, u32, &VfConfig) {
    match a {
        Action::ConfigureVf {
            pf,
            pf_ifindex,
            config,
            ..
        }
        | Action::ResetVf {
            pf,
            pf_ifindex,
            config,
            ..
        } => (pf, *pf_ifindex, config),
        _ => not_mine("vf_config"),
    }
}

pub(super) fn prepare(ops: &mut dyn SriovOps, a: &Action) -> Result<Undo, StepError> {
    let (pf, pf_ifindex, config) = fields(a);
    let before = ops.vf_config(pf_ifindex, config.vf)?.ok_or_else(|| {
        StepError::Changed(format!(
            "VF {} of {pf} is not reported by its PF (ifindex {pf_ifindex})",
            config.vf
        ))
    })?;
    // Restore exactly the attributes this step sets, as they were.
    Ok(Undo::Vf {
        pf_ifindex,
        config: VfConfig {
            vf: config.vf,
            mac: before.mac,
            vlan: before.vlan,
            qos: before.qos,
            vlan_proto: before.vlan_proto,
            min_tx_rate: config.min_tx_rate.and(before.min_tx_rate.or(Some(0))),
            max_tx_rate: config.max_tx_rate.and(before.max_tx_rate.or(Some(0))),
            spoofchk: config.spoofchk.and(before.spoofchk),
            trust: config.trust.and(before.trust),
            link_state: config.link_state.as_ref().and(before.link_state),
        },
    })
}

pub(super) fn execute(
    ops: &mut dyn SriovOps,
    a: &Action,
    opts: &ApplyOptions,
) -> Result<(), StepError> {
    let (pf, pf_ifindex, config) = fields(a);
    // igb checks a VF rate against the PF's link speed and refuses it (EINVAL)
    // while the link is down, as it is for a moment after any PF reset.
    let rate =
        config.max_tx_rate.is_some_and(|r| r > 0) || config.min_tx_rate.is_some_and(|r| r > 0);
    if rate {
        wait_for_carrier(ops, pf, opts.link_wait)?;
    }
    if let Err(e) = converge_vf(ops, pf_ifindex, config) {
        if rate && !ops.pf_carrier(pf)? {
            return Err(StepError::Changed(format!(
                "{e}; PF {pf} has no link, and drivers such as igb refuse VF rates without one"
            )));
        }
        return Err(e);
    }
    let got = ops.vf_config(pf_ifindex, config.vf)?;
    match got {
        Some(c) if vf_matches(config, &c) => Ok(()),
        Some(c) => Err(StepError::Verify(format!(
            "VF {} of {pf} reads back as {c:?} after setting {config:?}",
            config.vf
        ))),
        None => Err(StepError::Verify(format!(
            "VF {} of {pf} vanished while being configured",
            config.vf
        ))),
    }
}

pub(super) fn undo(ops: &mut dyn SriovOps, u: &Undo) -> Result<(), StepError> {
    let Undo::Vf { pf_ifindex, config } = u else {
        not_mine("vf_config")
    };
    converge_vf(ops, *pf_ifindex, config)
}

/// True when `want` sets a value and it is not the current one.
fn differs<T: PartialEq>(want: &Option<T>, now: &Option<T>) -> bool {
    want.is_some() && want != now
}

/// Brings a VF to `want` (a new setting, or the old one on undo), sending only the
/// optional attributes that differ from what it has now: a driver that lacks an attribute (igb and the VF link state)
/// refuses it even when set to its default. A VF that is gone (an earlier undo
/// removed it) needs nothing.
pub(super) fn converge_vf(
    ops: &mut dyn SriovOps,
    pf_ifindex: u32,
    want: &VfConfig,
) -> Result<(), StepError> {
    let Some(now) = ops.vf_config(pf_ifindex, want.vf)? else {
        return Ok(());
    };
    let delta = VfConfig {
        vf: want.vf,
        mac: want.mac,
        vlan: want.vlan,
        qos: want.qos,
        vlan_proto: want.vlan_proto,
        min_tx_rate: if differs(&want.min_tx_rate, &now.min_tx_rate)
            || differs(&want.max_tx_rate, &now.max_tx_rate)
        {
            want.min_tx_rate.or(Some(0))
        } else {
            None
        },
        max_tx_rate: if differs(&want.min_tx_rate, &now.min_tx_rate)
            || differs(&want.max_tx_rate, &now.max_tx_rate)
        {
            want.max_tx_rate.or(Some(0))
        } else {
            None
        },
        spoofchk: want
            .spoofchk
            .filter(|_| differs(&want.spoofchk, &now.spoofchk)),
        trust: want.trust.filter(|_| differs(&want.trust, &now.trust)),
        link_state: want
            .link_state
            .filter(|_| differs(&want.link_state, &now.link_state)),
    };
    if vf_matches(&delta, &now) {
        return Ok(());
    }
    ops.set_vf(pf_ifindex, &delta)?;
    Ok(())
}
