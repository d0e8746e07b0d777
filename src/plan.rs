//! The planner: a pure function from (inventory, profiles, config, state) to a
//! placement for every vPort, with its reason, and the ordered actions that get the
//! host there. No I/O and no clock, so every case is tested without root.
//!
//! Rules that come from users' complaints (../shared/facts/USERS.md):
//! - a vPort keeps its VF across runs and config reorderings (state decides first,
//!   then new vPorts take the lowest free index in name order);
//! - a VF count change that must go through 0 is disruptive: the plan names every
//!   vPort it disrupts, and it is a blocker unless disruption is allowed;
//! - an attribute the NIC lacks is known before anything is written: `required`
//!   blocks the plan, `preferred` sends the vPort to the software path.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::{Config, LinkState, Offload, ResolvedUplink, VlanProto, VportSpec};
use crate::host::netlink::VfConfig;
use crate::inventory::{Inventory, PciFunction, Role};
use crate::profile::{self, ProfileSet};
use crate::state::{State, VportPath};

/// Planner options from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Allow VF count changes that tear down existing VFs.
    pub allow_disruption: bool,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub placements: Vec<Placement>,
    /// In execution order.
    pub actions: Vec<Action>,
    pub disruptions: Vec<Disruption>,
    pub warnings: Vec<String>,
    /// Why this plan must not be applied (unmet `offload = "required"`, disruption
    /// not allowed). Apply refuses a plan with blockers before touching anything.
    pub blockers: Vec<String>,
}

impl Plan {
    /// True when applying would change nothing on the host.
    pub fn is_noop(&self) -> bool {
        self.actions
            .iter()
            .all(|a| matches!(a, Action::Record { .. }))
    }
}

/// Where one vPort goes, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    pub vport: String,
    /// The uplink PF's PCI address.
    pub uplink: String,
    pub path: VportPath,
    pub reason: String,
    /// The VF settings this vPort wants (VF placements only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vf_config: Option<VfConfig>,
}

/// A VF count change that destroys existing VFs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disruption {
    pub pf: String,
    pub from: u32,
    pub to: u32,
    /// vPorts whose VFs are torn down and recreated.
    pub vports: Vec<String>,
    /// VFs bound to a driver that vportd did not allocate (someone else's).
    pub unmanaged_vfs_in_use: u32,
}

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

/// What the PF's driver can do for its VFs, from its profile; with no profile,
/// everything is assumed possible and the kernel has the last word.
#[derive(Debug, Clone)]
struct VfAbilities {
    known: bool,
    min_rate: bool,
    max_rate: bool,
    trust: bool,
    spoofchk: bool,
    link_state: bool,
    dot1ad: bool,
    vf_driver: Option<String>,
}

fn abilities(profiles: &ProfileSet, f: &PciFunction) -> VfAbilities {
    let id = |s: &str| u16::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let m = id(&f.vendor_id)
        .zip(id(&f.device_id))
        .and_then(|(v, d)| profiles.match_function(v, d, f.driver.as_deref()));
    match m
        .as_ref()
        .and_then(|m| m.profile.capabilities.vf.as_ref().map(|vf| (m, vf)))
    {
        Some((m, vf)) => VfAbilities {
            known: true,
            min_rate: vf.min_rate,
            max_rate: vf.max_rate,
            trust: vf.trust,
            spoofchk: vf.spoofchk,
            link_state: vf.link_state,
            dot1ad: vf.vlan_protocols.contains(&profile::VlanProtocol::Dot1Ad),
            vf_driver: m.profile.ids.vf_driver.clone(),
        },
        None => VfAbilities {
            known: false,
            min_rate: true,
            max_rate: true,
            trust: true,
            spoofchk: true,
            link_state: true,
            dot1ad: true,
            vf_driver: None,
        },
    }
}

/// The attributes a vPort asks for that the NIC cannot set: (config key, reason).
fn missing_abilities(v: &VportSpec, a: &VfAbilities, driver: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if v.link_state != LinkState::Auto && !a.link_state {
        out.push(("link_state", format!("{driver} cannot set a VF link state")));
    }
    if v.vlan.is_some() && v.vlan_proto == VlanProto::Dot1Ad && !a.dot1ad {
        out.push(("proto", format!("{driver} cannot tag a VF with 802.1ad")));
    }
    if v.min_tx_rate_mbps.is_some_and(|r| r > 0) && !a.min_rate {
        out.push((
            "min_tx_rate_mbps",
            format!("{driver} cannot guarantee a VF minimum rate"),
        ));
    }
    if v.max_tx_rate_mbps.is_some_and(|r| r > 0) && !a.max_rate {
        out.push((
            "max_tx_rate_mbps",
            format!("{driver} cannot limit a VF's rate"),
        ));
    }
    if v.trust && !a.trust {
        out.push(("trust", format!("{driver} cannot trust a VF")));
    }
    if !v.spoofchk && !a.spoofchk {
        out.push((
            "spoofchk",
            format!("{driver} cannot turn off a VF's spoof checking"),
        ));
    }
    out
}

/// The vPort as it will be configured once the attributes in `dropped` are left out.
fn without(v: &VportSpec, dropped: &[&str]) -> VportSpec {
    let mut v = v.clone();
    for d in dropped {
        match *d {
            "link_state" => v.link_state = LinkState::Auto,
            "proto" => v.vlan_proto = VlanProto::Dot1Q,
            "min_tx_rate_mbps" => v.min_tx_rate_mbps = None,
            "max_tx_rate_mbps" => v.max_tx_rate_mbps = None,
            "trust" => v.trust = false,
            "spoofchk" => v.spoofchk = true,
            _ => {}
        }
    }
    v
}

/// The VF settings a vPort wants, sending only what the NIC understands: an
/// attribute the driver lacks is left out when its value is the default (igb
/// refuses even `link_state auto` with EOPNOTSUPP).
fn desired_vf_config(v: &VportSpec, vf: u32, a: &VfAbilities) -> VfConfig {
    VfConfig {
        vf,
        mac: v.mac.to_string(),
        vlan: v.vlan.map(u32::from).unwrap_or(0),
        qos: if v.vlan.is_some() {
            u32::from(v.qos)
        } else {
            0
        },
        vlan_proto: Some(
            match (v.vlan.is_some(), v.vlan_proto) {
                (true, VlanProto::Dot1Ad) => "802.1ad",
                _ => "802.1Q",
            }
            .into(),
        ),
        min_tx_rate: (a.min_rate || v.min_tx_rate_mbps.unwrap_or(0) > 0)
            .then(|| v.min_tx_rate_mbps.unwrap_or(0))
            .filter(|_| a.min_rate || a.max_rate),
        max_tx_rate: (a.max_rate || v.max_tx_rate_mbps.unwrap_or(0) > 0)
            .then(|| v.max_tx_rate_mbps.unwrap_or(0)),
        spoofchk: (a.spoofchk || !v.spoofchk).then_some(v.spoofchk),
        trust: (a.trust || v.trust).then_some(v.trust),
        link_state: (a.link_state || v.link_state != LinkState::Auto).then(|| {
            match v.link_state {
                LinkState::Auto => "auto",
                LinkState::Enable => "enable",
                LinkState::Disable => "disable",
            }
            .into()
        }),
    }
}

/// The clean state a released VF returns to, leaving out what the driver cannot
/// set (it refuses even the default).
fn clean_vf_config(vf: u32, a: &VfAbilities) -> VfConfig {
    let c = VfConfig::clean(vf);
    VfConfig {
        min_tx_rate: c.min_tx_rate.filter(|_| a.min_rate),
        max_tx_rate: c.max_tx_rate.filter(|_| a.max_rate),
        spoofchk: c.spoofchk.filter(|_| a.spoofchk),
        trust: c.trust.filter(|_| a.trust),
        link_state: c.link_state.filter(|_| a.link_state),
        ..c
    }
}

/// True when `current` already has every attribute `want` sets.
pub fn vf_matches(want: &VfConfig, current: &VfConfig) -> bool {
    let proto = |c: &VfConfig| c.vlan_proto.clone().unwrap_or_else(|| "802.1Q".into());
    want.mac.eq_ignore_ascii_case(&current.mac)
        && want.vlan == current.vlan
        && want.qos == current.qos
        && (want.vlan == 0 || proto(want) == proto(current))
        && want
            .min_tx_rate
            .is_none_or(|r| Some(r) == current.min_tx_rate.or(Some(0)))
        && want
            .max_tx_rate
            .is_none_or(|r| Some(r) == current.max_tx_rate.or(Some(0)))
        && want.spoofchk.is_none_or(|s| Some(s) == current.spoofchk)
        && want.trust.is_none_or(|t| Some(t) == current.trust)
        && want
            .link_state
            .as_ref()
            .is_none_or(|l| Some(l) == current.link_state.as_ref())
}

/// Errors that make planning impossible (as opposed to blockers, which a plan shows).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A resolved uplink is no longer in the inventory.
    #[error("uplink {bdf} is not on this host any more; rerun discover")]
    UplinkGone { bdf: String },
}

/// Plans the host for `cfg`.
pub fn plan(
    inv: &Inventory,
    profiles: &ProfileSet,
    cfg: &Config,
    uplinks: &[ResolvedUplink],
    state: &State,
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
    let mut p = Plan {
        placements: Vec::new(),
        actions: Vec::new(),
        disruptions: Vec::new(),
        warnings: Vec::new(),
        blockers: Vec::new(),
    };
    let mut resets = Vec::new();
    let mut main_actions = Vec::new();
    let wanted: BTreeSet<&str> = cfg.vports.iter().map(|v| v.name.as_str()).collect();

    for ru in uplinks {
        let uplink = &cfg.uplinks[ru.index];
        let f = inv
            .pci_functions
            .iter()
            .find(|f| f.bdf == ru.bdf)
            .ok_or_else(|| PlanError::UplinkGone {
                bdf: ru.bdf.clone(),
            })?;
        let pf = f.bdf.as_str();
        let driver = f.driver.clone().unwrap_or_else(|| "the PF driver".into());
        let a = abilities(profiles, f);
        if !a.known && f.role == Role::Pf {
            p.warnings.push(format!(
                "no hardware profile matches {pf} ({}:{}); assuming every VF control works and letting the kernel decide",
                f.vendor_id, f.device_id
            ));
        }
        let pf_ifindex = ru.ifindex;
        let mut vports: Vec<&VportSpec> = cfg
            .vports
            .iter()
            .filter(|v| cfg.uplink_of(v).is_some_and(|u| std::ptr::eq(u, uplink)))
            .collect();
        vports.sort_by(|a, b| a.name.cmp(&b.name));

        let (total, current) = match &f.sriov {
            Some(s) => (s.total_vfs, s.num_vfs),
            None => (0, 0),
        };
        let cap = uplink.num_vfs.unwrap_or(total).min(total);

        // 1. Who can have a VF at all, and with which attributes.
        let mut want_vf = Vec::new();
        let mut effective: BTreeMap<String, VportSpec> = BTreeMap::new();
        for v in &vports {
            let software = |reason: String| Placement {
                vport: v.name.clone(),
                uplink: pf.to_string(),
                path: VportPath::Software,
                reason,
                vf_config: None,
            };
            if v.offload == Offload::Never {
                p.placements.push(software(
                    "offload = \"never\" asks for the software path".into(),
                ));
                continue;
            }
            let mut why_not = Vec::new();
            let mut dropped = Vec::new();
            if f.sriov.is_none() {
                why_not.push(format!("PF {pf} ({driver}) has no SR-IOV"));
            } else if pf_ifindex.is_none() {
                why_not.push(format!(
                    "PF {pf} has no netdev (is its driver bound?), so its VFs cannot be configured"
                ));
            } else {
                for (key, reason) in missing_abilities(v, &a, &driver) {
                    if v.optional.iter().any(|o| o == key) {
                        dropped.push(key);
                        p.warnings.push(format!(
                            "vport \"{}\": {key} dropped because {reason} (the config lists it as optional)",
                            v.name
                        ));
                    } else {
                        why_not.push(reason);
                    }
                }
            }
            if why_not.is_empty() {
                effective.insert(v.name.clone(), without(v, &dropped));
                want_vf.push(*v);
            } else if v.offload == Offload::Required {
                p.blockers.push(format!(
                    "vport \"{}\" requires a VF (offload = \"required\") but {}",
                    v.name,
                    why_not.join("; ")
                ));
            } else {
                p.placements.push(software(why_not.join("; ")));
            }
        }

        // 2. Stable assignment: keep what state says, then lowest free index by name.
        let held = state.vfs_on(pf);
        let mut taken: BTreeMap<u32, &str> = BTreeMap::new();
        let mut unassigned = Vec::new();
        for v in &want_vf {
            let kept = state.vports.get(&v.name).and_then(|s| match s.path {
                VportPath::Vf { index } if s.uplink == pf && index < cap => Some(index),
                _ => None,
            });
            match kept {
                Some(i) if !taken.contains_key(&i) => {
                    taken.insert(i, &v.name);
                }
                _ => unassigned.push(*v),
            }
        }
        for v in unassigned {
            // Indexes held in state by vPorts being removed are free again.
            match (0..cap).find(|i| !taken.contains_key(i)) {
                Some(i) => {
                    taken.insert(i, &v.name);
                }
                None => {
                    let reason = format!("PF {pf} has {cap} VFs, all taken");
                    if v.offload == Offload::Required {
                        p.blockers.push(format!(
                            "vport \"{}\" requires a VF (offload = \"required\") but {reason}",
                            v.name
                        ));
                    } else {
                        p.placements.push(Placement {
                            vport: v.name.clone(),
                            uplink: pf.to_string(),
                            path: VportPath::Software,
                            reason,
                            vf_config: None,
                        });
                    }
                }
            }
        }

        // 3. The VF count.
        let needed = taken.keys().next_back().map(|i| i + 1).unwrap_or(0);
        let desired = match uplink.num_vfs {
            Some(n) => n.min(total),
            None if current >= needed => current,
            None => needed,
        };
        if let Some(n) = uplink.num_vfs
            && n > total
        {
            p.blockers.push(format!(
                "uplink {pf}: num_vfs = {n} but the PF allows at most {total}"
            ));
        }
        let resized = desired != current;
        if resized {
            if current != 0 {
                let mut disrupted: BTreeSet<String> =
                    held.values().map(|s| s.to_string()).collect();
                disrupted.extend(
                    taken
                        .values()
                        .filter(|n| held.values().any(|h| h == *n))
                        .map(|s| s.to_string()),
                );
                let managed: BTreeSet<u32> = held.keys().copied().collect();
                let unmanaged = f
                    .sriov
                    .as_ref()
                    .map(|s| {
                        s.vfs
                            .iter()
                            .filter(|vf| !managed.contains(&vf.index) && vf.driver.is_some())
                            .count() as u32
                    })
                    .unwrap_or(0);
                let d = Disruption {
                    pf: pf.to_string(),
                    from: current,
                    to: desired,
                    vports: disrupted.into_iter().collect(),
                    unmanaged_vfs_in_use: unmanaged,
                };
                if !opts.allow_disruption && (!d.vports.is_empty() || d.unmanaged_vfs_in_use > 0) {
                    p.blockers.push(format!(
                        "changing {pf} from {current} to {desired} VFs goes through 0 and tears down the VFs of {}{}; rerun with --allow-disruption to do it",
                        if d.vports.is_empty() { "no vPort".to_string() } else { d.vports.join(", ") },
                        if d.unmanaged_vfs_in_use > 0 { format!(" and {} VF(s) vportd does not manage", d.unmanaged_vfs_in_use) } else { String::new() }
                    ));
                }
                p.disruptions.push(d);
                main_actions.push(Action::SetNumVfs {
                    pf: pf.to_string(),
                    pf_ifindex,
                    from: current,
                    to: 0,
                });
            }
            if desired != 0 {
                main_actions.push(Action::SetNumVfs {
                    pf: pf.to_string(),
                    pf_ifindex,
                    from: 0,
                    to: desired,
                });
            }
        }

        // 4. Releases: VFs held in state by vPorts that no longer hold them.
        for (index, holder) in &held {
            let still = taken.get(index) == Some(holder);
            if still {
                continue;
            }
            if !wanted.contains(holder) || taken.values().all(|n| n != holder) {
                // Reset only a VF that survives (a resize recreates it clean) and that
                // nobody takes over in this plan (the new holder's settings win).
                let survives = !resized && *index < current;
                if survives
                    && !taken.contains_key(index)
                    && let Some(ifx) = pf_ifindex
                {
                    resets.push(Action::ResetVf {
                        pf: pf.to_string(),
                        pf_ifindex: ifx,
                        released_from: holder.to_string(),
                        config: clean_vf_config(*index, &a),
                    });
                }
            }
        }

        // 5. Driver binding and VF settings.
        let vf_driver = uplink.vf_driver.clone().or(a.vf_driver.clone());
        for (index, name) in &taken {
            let v = vports
                .iter()
                .find(|v| v.name == *name)
                .expect("assigned from vports");
            let existing = f
                .sriov
                .as_ref()
                .and_then(|s| s.vfs.iter().find(|vf| vf.index == *index))
                .filter(|_| !resized);
            if let Some(d) = &vf_driver
                && existing.is_none_or(|e| e.driver.as_deref() != Some(d.as_str()))
            {
                main_actions.push(Action::BindVf {
                    pf: pf.to_string(),
                    vf: *index,
                    driver: d.clone(),
                });
            }
            let want = desired_vf_config(&effective[*name], *index, &a);
            let current_cfg = existing.and_then(|e| e.config.as_ref());
            if current_cfg.is_none_or(|c| !vf_matches(&want, c)) {
                main_actions.push(Action::ConfigureVf {
                    pf: pf.to_string(),
                    pf_ifindex: pf_ifindex.expect("VF candidates have a PF netdev"),
                    vport: v.name.clone(),
                    config: want.clone(),
                });
            }
            let reason = if state
                .vports
                .get(*name)
                .is_some_and(|s| s.uplink == pf && s.path == VportPath::Vf { index: *index })
            {
                format!("keeps VF {index} of {pf}")
            } else {
                format!("free VF {index} of {pf}")
            };
            p.placements.push(Placement {
                vport: v.name.clone(),
                uplink: pf.to_string(),
                path: VportPath::Vf { index: *index },
                reason,
                vf_config: Some(want),
            });
        }
    }

    // vPorts on the software path and releases are state-only changes.
    for pl in &p.placements {
        let before = state.vports.get(&pl.vport);
        if pl.path == VportPath::Software
            && before.is_none_or(|b| b.path != VportPath::Software || b.reason != pl.reason)
        {
            main_actions.push(Action::Record {
                vport: pl.vport.clone(),
                what: format!("software path: {}", pl.reason),
            });
        }
    }
    for name in state.vports.keys() {
        if !wanted.contains(name.as_str()) {
            main_actions.push(Action::Record {
                vport: name.clone(),
                what: "released: removed from the config".into(),
            });
        }
    }

    p.placements.sort_by(|a, b| a.vport.cmp(&b.vport));
    p.actions = resets;
    p.actions.extend(main_actions);
    Ok(p)
}
