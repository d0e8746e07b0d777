//! The steps a plan asks for, and how each reads in a plan and a journal.

use serde::Serialize;

use crate::model::vf::VfConfig;

/// One step on the host.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Write `sriov_numvfs`; `to` differs from `from`, and one of them is 0.
    /// `pf_ifindex` lets a rollback restore the settings of VFs this step destroys.
    SetNumVfs {
        pf: String,
        pf_ifindex: Option<u32>,
        from: u32,
        to: u32,
    },
    /// Bind VF `vf` of `pf` to `driver` (through driver_override).
    BindVf { pf: String, vf: u32, driver: String },
    /// Set a VF's attributes in one rtnetlink request on its PF.
    ConfigureVf {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        config: VfConfig,
    },
    /// Return a released VF to a clean state (no admin MAC, VLAN 0, no rate limit,
    /// spoofchk on, trust off).
    ResetVf {
        pf: String,
        pf_ifindex: u32,
        released_from: String,
        config: VfConfig,
    },
    /// No host change: the state records this placement (software path, release).
    Record { vport: String, what: String },
    /// Set the PF's combined channel count (`ethtool -L`). Drivers re-create the queue
    /// interrupts: a topology change the rebalancer re-learns (new IRQ numbers).
    SetChannels {
        pf: String,
        pf_ifindex: u32,
        from: Option<u32>,
        to: u32,
    },
    /// Set the PF's RSS indirection table (`ethtool -X`); empty: the driver's default
    /// (needed before lowering channels below what a table set earlier uses).
    SetRssTable {
        pf: String,
        pf_ifindex: u32,
        spread: String,
        table: Vec<u32>,
    },
    /// Turn a PF feature on or off (`ethtool -K`): l2-fwd-offload before a VMDq macvlan,
    /// off again when the last one goes.
    SetFeature {
        pf: String,
        pf_ifindex: u32,
        feature: String,
        on: bool,
    },
    /// Create an RSS context spreading over the vPort's queues `first..first+count`
    /// (`ethtool -X DEV context new start FIRST equal COUNT`); the driver picks its id.
    CreateRssContext {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        first: u32,
        count: u32,
        table: Vec<u32>,
    },
    /// Insert an ntuple rule on the vPort's destination MAC (and VLAN id) at `location`:
    /// into `queue`, or with None into the RSS context the step before created for it.
    InsertRule {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        mac: String,
        vlan: Option<u16>,
        location: u32,
        queue: Option<u32>,
    },
    /// Create the vPort's macvlan station on the PF (a VMDq pool with l2-fwd-offload).
    CreateMacvlan {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        name: String,
        mac: String,
        /// True when this plan turned l2-fwd-offload on for it.
        feature_set: bool,
    },
    /// Delete a vPort's ntuple rule (released, or steered anew).
    DeleteRule {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        location: u32,
    },
    /// Delete a vPort's RSS context, found by id and checked by its table.
    DeleteRssContext {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        context: Option<u32>,
        table: Vec<u32>,
    },
    /// Delete a vPort's macvlan station, found on the PF by its MAC.
    DeleteMacvlan {
        pf: String,
        pf_ifindex: u32,
        vport: String,
        mac: String,
    },
}

impl Action {
    /// A one-line description for people.
    pub fn describe(&self) -> String {
        match self {
            Action::SetNumVfs { pf, from, to, .. } => {
                format!("set {pf} sriov_numvfs {from} -> {to}")
            }
            Action::BindVf { pf, vf, driver } => format!("bind VF {vf} of {pf} to {driver}"),
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
            Action::Record { vport, what } => format!("record {vport}: {what}"),
            Action::SetChannels { pf, from, to, .. } => match from {
                Some(f) => {
                    format!("set {pf} combined channels {f} -> {to} (queue IRQs re-created)")
                }
                None => format!("set {pf} combined channels to {to} (queue IRQs re-created)"),
            },
            Action::SetRssTable {
                pf, spread, table, ..
            } if table.is_empty() => {
                format!("reset the RSS table of {pf} to the driver's default ({spread})")
            }
            Action::SetRssTable {
                pf, spread, table, ..
            } => {
                format!(
                    "set the RSS table of {pf} ({} entries): {spread}",
                    table.len()
                )
            }
            Action::SetFeature {
                pf, feature, on, ..
            } => format!("turn {feature} {} on {pf}", if *on { "on" } else { "off" }),
            Action::CreateRssContext {
                pf,
                vport,
                first,
                count,
                ..
            } => format!(
                "create an RSS context on {pf} over queues {first}-{} for {vport}",
                first + count - 1
            ),
            Action::InsertRule {
                pf,
                vport,
                mac,
                vlan,
                location,
                queue,
                ..
            } => format!(
                "insert ntuple rule {location} on {pf}: dst {mac}{} -> {} ({vport})",
                vlan.map(|v| format!(" vlan {v}")).unwrap_or_default(),
                match queue {
                    Some(q) => format!("queue {q}"),
                    None => "its RSS context".into(),
                }
            ),
            Action::CreateMacvlan {
                pf, vport, name, ..
            } => format!("create macvlan {name} on {pf} for {vport} (a VMDq pool)"),
            Action::DeleteRule {
                pf,
                vport,
                location,
                ..
            } => format!("delete ntuple rule {location} on {pf} (was {vport}'s)"),
            Action::DeleteRssContext {
                pf, vport, context, ..
            } => format!(
                "delete RSS context {} on {pf} (was {vport}'s)",
                context.map(|c| c.to_string()).unwrap_or_else(|| "?".into())
            ),
            Action::DeleteMacvlan { pf, vport, mac, .. } => {
                format!("delete the macvlan with MAC {mac} on {pf} (was {vport}'s)")
            }
        }
    }
}

fn summary(c: &VfConfig) -> String {
    let mut parts = vec![format!("mac {}", c.mac)];
    if c.vlan != 0 {
        parts.push(format!(
            "vlan {} qos {}{}",
            c.vlan,
            c.qos,
            match c.vlan_proto.as_deref() {
                Some("802.1ad") => " proto 802.1ad",
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
