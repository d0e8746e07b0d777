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

use crate::facts::inventory::{Inventory, PciFunction, Role};
use crate::facts::profile::{self, ProfileSet};
use crate::model::queues::{Feature, QueueFacts, equal_table, weighted_table};
use crate::model::vf::VfConfig;
use crate::provision::config::{
    Config, LinkState, Offload, PathChoice, ResolvedUplink, RssSpread, VlanProto, VportSpec,
};
use crate::provision::state::{QueueMode, State, Steering, VportPath};

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
    /// Unicast filters a VF's driver has its PF hold for it (a `switch_vf` trunk's vPorts).
    unicast_filters: Option<u32>,
    family: Option<String>,
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
            unicast_filters: vf.unicast_filters,
            family: Some(m.profile.family.clone()),
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
            unicast_filters: None,
            family: None,
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

/// What the matched hwprofile says of queue steering.
struct SteeringAbilities {
    family: String,
    rss_contexts: bool,
    ntuple: bool,
    vmdq: bool,
    pf_rss_table: Option<u32>,
}

fn profile_steering(profiles: &ProfileSet, f: &PciFunction) -> Option<SteeringAbilities> {
    let id = |s: &str| u16::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let m = id(&f.vendor_id)
        .zip(id(&f.device_id))
        .and_then(|(v, d)| profiles.match_function(v, d, f.driver.as_deref()))?;
    let c = &m.profile.capabilities;
    Some(SteeringAbilities {
        family: m.profile.family.clone(),
        rss_contexts: c.steering.rss_contexts,
        ntuple: c.steering.ntuple,
        vmdq: c.sriov.vmdq_pools.is_some(),
        pf_rss_table: match c.steering.pf_rss_table {
            Some(profile::Amount::Count(n)) => Some(n),
            _ => None,
        },
    })
}

/// Plans the PF's channel count; returns the channel count after the plan and whether it
/// changes. Channels first (drivers such as igb reset the table when the queue count
/// changes), and when lowering them with a table of ours in place, the table back to the
/// default first (the kernel refuses fewer channels than a user-set table uses, EINVAL).
/// The table itself is planned by [`pf_rss_actions`], once the vPorts have their queues.
fn pf_channel_actions(
    p: &mut Plan,
    actions: &mut Vec<Action>,
    uplink: &crate::provision::config::Uplink,
    pf: &str,
    pf_ifindex: Option<u32>,
    facts: Option<&QueueFacts>,
    table_of_ours: bool,
) -> (Option<u32>, bool) {
    let current = facts.and_then(|q| q.combined);
    if uplink.channels.is_none() && uplink.rss.is_none() {
        return (current, false);
    }
    let Some(ifx) = pf_ifindex else {
        p.blockers.push(format!(
            "uplink {pf}: channels and rss need the PF's netdev, and it has none (is its driver bound?)"
        ));
        return (current, false);
    };
    let mut changed = false;
    if let Some(to) = uplink.channels {
        if let Some(max) = facts.and_then(|q| q.combined_max)
            && to > max
        {
            p.blockers.push(format!(
                "uplink {pf}: channels = {to} but the PF allows at most {max} combined channels now (ethtool -l; igb allows fewer once VFs exist)"
            ));
            return (current, false);
        }
        if current != Some(to) {
            if table_of_ours && current.is_some_and(|c| to < c) {
                actions.push(Action::SetRssTable {
                    pf: pf.into(),
                    pf_ifindex: ifx,
                    spread: "before lowering channels".into(),
                    table: Vec::new(),
                });
            }
            actions.push(Action::SetChannels {
                pf: pf.into(),
                pf_ifindex: ifx,
                from: current,
                to,
            });
            changed = true;
        }
    }
    (uplink.channels.or(current), changed)
}

/// Plans the PF's own RSS table, after the vPorts took their queues: the PF's own traffic
/// is spread over the queues that no vPort's RSS context or ntuple rule owns, so that a
/// vPort's queues carry that vPort's traffic alone (by hand: `ethtool -X DEV equal N`
/// before `ethtool -X DEV context new`). With `rss` in the config the table is that spread
/// over the PF's queues (weight on a vPort's queue is refused); without it the table is the
/// driver's, except that it is narrowed while vPorts own queues and given back to the
/// driver's default when the last of them goes (`had_owned`: the state says some did).
#[allow(clippy::too_many_arguments)]
fn pf_rss_actions(
    p: &mut Plan,
    actions: &mut Vec<Action>,
    uplink: &crate::provision::config::Uplink,
    pf: &str,
    pf_ifindex: Option<u32>,
    facts: Option<&QueueFacts>,
    steering: Option<&SteeringAbilities>,
    (channels, changed): (Option<u32>, bool),
    owned: &BTreeSet<u32>,
    had_owned: bool,
) {
    let Some(ifx) = pf_ifindex else {
        return;
    };
    let current = facts.and_then(|q| q.rss_table.as_ref());
    let size = current
        .map(|t| t.len() as u32)
        .or(steering.and_then(|s| s.pf_rss_table));
    let n = channels.unwrap_or(1);
    let own: Vec<u32> = (0..n).filter(|q| !owned.contains(q)).collect();
    if own.is_empty() {
        return;
    }
    let narrowed = own.len() < n as usize;
    let theirs = || {
        let list: Vec<String> = owned.iter().map(u32::to_string).collect();
        list.join(",")
    };
    let over = |size: u32| -> Vec<u32> { (0..size as usize).map(|i| own[i % own.len()]).collect() };
    let (table, words) = match &uplink.rss {
        None if narrowed => {
            let Some(size) = size else {
                return;
            };
            (
                over(size),
                format!(
                    "equal over the PF's {} queues (queues {} are vPorts' own)",
                    own.len(),
                    theirs()
                ),
            )
        }
        None if had_owned => {
            if size.is_none() || current.cloned() == size.map(|size| equal_table(size, 0, n)) {
                return;
            }
            // Empty: the driver's own default.
            (
                Vec::new(),
                "the driver's default: no vPort owns a queue now".into(),
            )
        }
        None => return,
        Some(spread) => {
            let Some(size) = size else {
                p.blockers.push(format!(
                    "uplink {pf}: rss is set but the PF reports no RSS indirection table"
                ));
                return;
            };
            match spread {
                RssSpread::Equal if narrowed => (
                    over(size),
                    format!(
                        "equal over the PF's {} queues (queues {} are vPorts' own)",
                        own.len(),
                        theirs()
                    ),
                ),
                RssSpread::Equal => (equal_table(size, 0, n), format!("equal over {n} queues")),
                RssSpread::Weights(w) if w.len() as u32 > n => {
                    p.blockers.push(format!(
                        "uplink {pf}: rss_weights has {} entries but the PF has {n} channels",
                        w.len()
                    ));
                    return;
                }
                RssSpread::Weights(w) => {
                    if let Some(q) = owned
                        .iter()
                        .find(|q| w.get(**q as usize).is_some_and(|x| *x > 0))
                    {
                        p.blockers.push(format!(
                            "uplink {pf}: rss_weights gives weight to queue {q}, which a vPort owns (queues {} are vPorts' own, by RSS context or ntuple rule); give those weight 0",
                            theirs()
                        ));
                        return;
                    }
                    (
                        weighted_table(size, 0, w).unwrap_or_default(),
                        format!("weights {w:?}"),
                    )
                }
            }
        }
    };
    if changed || table.is_empty() || current != Some(&table) {
        actions.push(Action::SetRssTable {
            pf: pf.into(),
            pf_ifindex: ifx,
            spread: words,
            table,
        });
    }
}

/// Picks a vPort's own queues: an RSS context with a rule into it, a VMDq pool, or one
/// ntuple queue, from the profile and what the NIC reports now. Queues for contexts and
/// ntuple come off the top of the channel range (queue 0 stays with the PF's own RSS).
/// Err: every refusal, as sentences.
fn choose_queues(
    v: &VportSpec,
    driver: &str,
    ifname: &str,
    facts: Option<&QueueFacts>,
    steering: Option<&SteeringAbilities>,
    alloc: &mut Alloc,
) -> Result<(VportPath, String), Vec<String>> {
    let mut refusals = Vec::new();
    let (path, how) =
        choose_queues_inner(v, driver, ifname, facts, steering, alloc, &mut refusals)?;
    if refusals.is_empty() {
        Ok((path, how))
    } else {
        Ok((path, format!("{}; {how}", refusals.join("; "))))
    }
}

/// Queues and ntuple slots on one PF: taken by vPorts that keep their steering first,
/// then handed out to new ones (queues from the top of the channel range, slots from 0).
struct Alloc {
    channels: u32,
    queues: BTreeSet<u32>,
    locations: BTreeSet<u32>,
}

impl Alloc {
    /// The highest free run of `n` queues above queue 0.
    fn take(&mut self, n: u32) -> Result<u32, String> {
        let mut first = self.channels.saturating_sub(n);
        while first >= 1 {
            if (first..first + n).all(|q| !self.queues.contains(&q)) {
                self.queues.extend(first..first + n);
                return Ok(first);
            }
            first -= 1;
        }
        let free = (1..self.channels)
            .filter(|q| !self.queues.contains(q))
            .count();
        Err(format!("{free} queue(s) left above queue 0, not {n}"))
    }

    fn location(&mut self) -> u32 {
        let l = (0..).find(|l| !self.locations.contains(l)).unwrap_or(0);
        self.locations.insert(l);
        l
    }
}

fn choose_queues_inner(
    v: &VportSpec,
    driver: &str,
    ifname: &str,
    facts: Option<&QueueFacts>,
    steering: Option<&SteeringAbilities>,
    alloc: &mut Alloc,
    refusals: &mut Vec<String>,
) -> Result<(VportPath, String), Vec<String>> {
    let want = v.queues.unwrap_or(1);
    let family = steering
        .map(|s| format!("{driver} ({} hwprofile)", s.family))
        .unwrap_or_else(|| format!("{driver} (no hwprofile)"));
    let feature = |f: Option<Feature>, name: &str, profile: bool| match f {
        Some(f) if f.active || f.changeable => Ok(()),
        Some(_) => Err(format!("{ifname} reports {name} off [fixed]")),
        None if profile => Ok(()),
        None => Err(format!("{family} has no {name}")),
    };
    let features = facts.map(|q| q.features).unwrap_or_default();
    let ntuple = feature(
        features.ntuple,
        "ntuple-filters",
        steering.is_some_and(|s| s.ntuple),
    );
    let take = |n: u32, alloc: &mut Alloc| -> Result<u32, String> {
        alloc.take(n).map_err(|e| format!("{ifname} has {e}"))
    };
    // RSS context + rule.
    if steering.is_some_and(|s| s.rss_contexts) {
        match &ntuple {
            Ok(()) => match take(want, alloc) {
                Ok(first) => {
                    let loc = alloc.location();
                    return Ok((
                        VportPath::Queues {
                            mode: QueueMode::RssContext,
                            first,
                            count: want,
                            location: Some(loc),
                        },
                        format!(
                            "an RSS context over queues {first}-{} with a rule on {}{} takes it",
                            first + want - 1,
                            v.mac,
                            v.vlan.map(|x| format!(" vlan {x}")).unwrap_or_default()
                        ),
                    ));
                }
                Err(e) => refusals.push(format!("no RSS context: {e}")),
            },
            Err(e) => refusals.push(format!(
                "no RSS context: {e}, so no rule can steer into one"
            )),
        }
    } else {
        refusals.push(format!("{family} has no RSS contexts"));
    }
    // VMDq pool through a macvlan.
    match (steering.is_some_and(|s| s.vmdq), features.l2_fwd_offload) {
        (true, Some(f)) if f.active || f.changeable => {
            return Ok((
                VportPath::Queues {
                    mode: QueueMode::Vmdq,
                    first: 0,
                    count: want,
                    location: None,
                },
                format!("a macvlan on {ifname} with l2-fwd-offload gets a VMDq pool"),
            ));
        }
        (true, Some(_)) => refusals.push(format!(
            "no VMDq pool: {ifname} reports l2-fwd-offload off [fixed], so a macvlan cannot have one"
        )),
        (true, None) => refusals.push(format!(
            "no VMDq pool: {ifname} does not report l2-fwd-offload"
        )),
        (false, _) => refusals.push(format!("{family} has no VMDq pools")),
    }
    // One queue through an ntuple rule.
    match ntuple {
        Ok(()) => match take(1, alloc) {
            Ok(first) => {
                let loc = alloc.location();
                return Ok((
                    VportPath::Queues {
                        mode: QueueMode::Ntuple,
                        first,
                        count: 1,
                        location: Some(loc),
                    },
                    format!("an ntuple rule on {} into queue {first} takes it", v.mac),
                ));
            }
            Err(e) => refusals.push(format!("no ntuple queue: {e}")),
        },
        Err(e) => refusals.push(format!("no ntuple queue: {e}")),
    }
    Err(std::mem::take(refusals))
}

/// The macvlan station's name for a vPort: `vq-` and the name, cut to 15 bytes with a
/// hash of the whole name when it is longer (the device is found by its MAC, the name is
/// only for people).
pub fn macvlan_name(vport: &str) -> String {
    let full = format!("vq-{vport}");
    if full.len() <= 15 {
        return full;
    }
    let hash = vport.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let head: String = vport.chars().take(7).collect();
    format!("vq-{head}-{:04x}", hash & 0xffff)
}

/// Who a `ConfigureVf` of the `[[uplink]] switch_vf` is for, in plans and journals.
pub const SWITCH_VF_HOLDER: &str = "the software switch";

/// Errors that make planning impossible (as opposed to blockers, which a plan shows).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A resolved uplink is no longer in the inventory.
    #[error("uplink {bdf} is not on this host any more; rerun discover")]
    UplinkGone { bdf: String },
}

/// The actions that remove a vPort's programmed steering from its PF: the rule before the
/// context it points into, the macvlan station by MAC.
fn release_steering(pf: &str, name: &str, st: &Steering, resets: &mut Vec<Action>) {
    let (ifx, vport) = (st.pf_ifindex, name.to_string());
    if let Some(location) = st.location {
        resets.push(Action::DeleteRule {
            pf: pf.into(),
            pf_ifindex: ifx,
            vport: vport.clone(),
            location,
        });
    }
    match st.mode {
        QueueMode::RssContext => resets.push(Action::DeleteRssContext {
            pf: pf.into(),
            pf_ifindex: ifx,
            vport,
            context: st.context,
            table: st.table.clone(),
        }),
        QueueMode::Vmdq => resets.push(Action::DeleteMacvlan {
            pf: pf.into(),
            pf_ifindex: ifx,
            vport,
            mac: st.mac.clone(),
        }),
        QueueMode::Ntuple => {}
    }
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

        // 1. Who can have a VF at all, and with which attributes. Those who cannot (or
        // ask for queues) try hardware queues in step 6, then the software path.
        let mut no_vf: Vec<(&VportSpec, String)> = Vec::new();
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
            if v.placement == Some(PathChoice::Software) {
                p.placements.push(software(
                    "placement = \"software\" asks for the software path".into(),
                ));
                continue;
            }
            if v.placement == Some(PathChoice::Queues) {
                no_vf.push((*v, "placement = \"queues\" asks for hardware queues".into()));
                continue;
            }
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
            } else if v.offload == Offload::Required || v.placement == Some(PathChoice::Vf) {
                p.blockers.push(format!(
                    "vport \"{}\" requires a VF ({}) but {}",
                    v.name,
                    if v.placement == Some(PathChoice::Vf) {
                        "placement = \"vf\""
                    } else {
                        "offload = \"required\""
                    },
                    why_not.join("; ")
                ));
            } else {
                no_vf.push((*v, format!("no VF: {}", why_not.join("; "))));
            }
        }

        // 2. Stable assignment: keep what state says, then lowest free index by name; the
        // software switch's VF (`switch_vf`) goes to no vPort.
        let switch_vf = uplink.switch_vf.filter(|_| f.sriov.is_some());
        let held = state.vfs_on(pf);
        let mut taken: BTreeMap<u32, &str> = BTreeMap::new();
        let mut unassigned = Vec::new();
        for v in &want_vf {
            let kept = state.vports.get(&v.name).and_then(|s| match s.path {
                VportPath::Vf { index }
                    if s.uplink == pf && index < cap && Some(index) != switch_vf =>
                {
                    Some(index)
                }
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
            match (0..cap).find(|i| !taken.contains_key(i) && Some(*i) != switch_vf) {
                Some(i) => {
                    taken.insert(i, &v.name);
                }
                None => {
                    let reason = format!("PF {pf} has {cap} VFs, all taken");
                    if v.offload == Offload::Required || v.placement == Some(PathChoice::Vf) {
                        p.blockers.push(format!(
                            "vport \"{}\" requires a VF (offload = \"required\") but {reason}",
                            v.name
                        ));
                    } else {
                        no_vf.push((v, format!("no VF: {reason}")));
                    }
                }
            }
        }

        // 3. The VF count.
        let needed = taken
            .keys()
            .next_back()
            .copied()
            .max(switch_vf)
            .map(|i| i + 1)
            .unwrap_or(0);
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
        // The software switch's VF first (a vPort may take over the MAC it had): the PF's
        // usual VF driver (the switch needs its netdev), no port VLAN, trusted (igb refuses
        // a VF's unicast filters when the PF set its MAC and does not trust it) and without
        // spoof checking (it sends the software vPorts' MACs). Its MAC stays what it is (the
        // VF picks one when none is set) unless a vPort's MAC was left there.
        if let (Some(index), Some(ifx)) = (switch_vf, pf_ifindex) {
            let existing = f
                .sriov
                .as_ref()
                .and_then(|s| s.vfs.iter().find(|vf| vf.index == index))
                .filter(|_| !resized);
            if let Some(d) = &a.vf_driver
                && existing.is_none_or(|e| e.driver.as_deref() != Some(d.as_str()))
            {
                main_actions.push(Action::BindVf {
                    pf: pf.to_string(),
                    vf: index,
                    driver: d.clone(),
                });
            }
            let current_cfg = existing.and_then(|e| e.config.as_ref());
            // An admin MAC a vPort left there (it held this VF, or has that MAC) goes.
            let vport_mac = |mac: &str| {
                held.contains_key(&index)
                    || cfg
                        .vports
                        .iter()
                        .any(|v| v.mac.to_string().eq_ignore_ascii_case(mac))
            };
            let want = VfConfig {
                mac: current_cfg
                    .map(|c| c.mac.clone())
                    .filter(|m| !vport_mac(m))
                    .unwrap_or_else(|| VfConfig::clean(index).mac),
                spoofchk: Some(false).filter(|_| a.spoofchk),
                trust: Some(true).filter(|_| a.trust),
                ..clean_vf_config(index, &a)
            };
            if current_cfg.is_none_or(|c| !vf_matches(&want, c)) {
                main_actions.push(Action::ConfigureVf {
                    pf: pf.to_string(),
                    pf_ifindex: ifx,
                    vport: SWITCH_VF_HOLDER.to_string(),
                    config: want,
                });
            }
        }

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

        // 6. PF queues (channels, RSS table), then the vPorts without a VF.
        let netdev = f.netdevs.iter().find(|n| Some(n.ifindex) == pf_ifindex);
        let facts = netdev.and_then(|n| n.queues.as_ref());
        let ifname = netdev.map(|n| n.name.as_str()).unwrap_or(pf);
        let steering = profile_steering(profiles, f);
        // Queues that vPorts owned after the last run (their RSS context or ntuple rule):
        // the PF's own table was narrowed away from them, and is the driver's again once
        // none is left.
        let had_owned = state.steering.iter().any(|(name, st)| {
            st.mode != QueueMode::Vmdq && state.vports.get(name).is_some_and(|s| s.uplink == pf)
        });
        let channels = pf_channel_actions(
            &mut p,
            &mut main_actions,
            uplink,
            pf,
            pf_ifindex,
            facts,
            uplink.rss.is_some() || had_owned,
        );
        let channels_after = channels.0;
        let mut alloc = Alloc {
            channels: channels_after.unwrap_or(1),
            queues: BTreeSet::new(),
            locations: BTreeSet::new(),
        };
        let table_size = facts
            .and_then(|q| q.rss_table.as_ref().map(|t| t.len() as u32))
            .or(steering.as_ref().and_then(|s| s.pf_rss_table))
            .unwrap_or(128);
        // Steering programmed earlier on this PF: kept when the vPort still wants the same
        // (same MAC and VLAN, queues still inside the channels), else removed first.
        let programmed: Vec<(&String, &Steering)> = state
            .steering
            .iter()
            .filter(|(name, _)| state.vports.get(*name).is_some_and(|s| s.uplink == pf))
            .collect();
        let mut kept: BTreeMap<String, VportPath> = BTreeMap::new();
        for (name, st) in &programmed {
            let Some(v) = no_vf.iter().map(|(v, _)| *v).find(|v| &v.name == *name) else {
                continue;
            };
            let Some(path) = state.vports.get(*name).map(|s| s.path.clone()) else {
                continue;
            };
            let same = !st.drifted
                && st.mac.eq_ignore_ascii_case(&v.mac.to_string())
                && st.vlan == v.vlan
                && Some(st.pf_ifindex) == pf_ifindex;
            let fits = match &path {
                VportPath::Queues {
                    mode: QueueMode::RssContext,
                    first,
                    count,
                    ..
                } => *count == v.queues.unwrap_or(1) && first + count <= alloc.channels,
                VportPath::Queues {
                    mode: QueueMode::Ntuple,
                    first,
                    ..
                } => *first < alloc.channels,
                VportPath::Queues { .. } => true,
                _ => false,
            };
            if same && fits {
                if let VportPath::Queues {
                    mode,
                    first,
                    count,
                    location,
                } = &path
                {
                    if *mode != QueueMode::Vmdq {
                        alloc.queues.extend(*first..first + count);
                    }
                    alloc.locations.extend(*location);
                }
                kept.insert(name.to_string(), path);
            }
        }
        let mut feature_off = false;
        for (name, st) in &programmed {
            if kept.contains_key(*name) {
                continue;
            }
            release_steering(pf, name, st, &mut resets);
            feature_off |= st.mode == QueueMode::Vmdq && st.feature_set;
        }
        let mut vmdq_left = kept.values().any(|p| {
            matches!(
                p,
                VportPath::Queues {
                    mode: QueueMode::Vmdq,
                    ..
                }
            )
        });
        let mut l2fwd_on = facts
            .and_then(|q| q.features.l2_fwd_offload)
            .is_some_and(|f| f.active);
        let mut feature_by_plan = programmed
            .iter()
            .any(|(n, st)| kept.contains_key(*n) && st.feature_set);
        no_vf.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        for (v, why) in no_vf {
            let forced = v.placement == Some(PathChoice::Queues);
            if let Some(path) = kept.get(&v.name) {
                p.placements.push(Placement {
                    vport: v.name.clone(),
                    uplink: pf.to_string(),
                    path: path.clone(),
                    reason: state.vports[&v.name].reason.clone(),
                    vf_config: None,
                });
                continue;
            }
            let choice = choose_queues(v, &driver, ifname, facts, steering.as_ref(), &mut alloc);
            let reason = match &choice {
                Ok((_, how)) => format!("{why}; {how}"),
                Err(refusals) => format!("{why}; no queues of its own: {}", refusals.join("; ")),
            };
            let path = match (choice, pf_ifindex) {
                (Ok((path, _)), Some(ifx)) => {
                    let mac = v.mac.to_string();
                    match &path {
                        VportPath::Queues {
                            mode: QueueMode::RssContext,
                            first,
                            count,
                            location,
                        } => {
                            main_actions.push(Action::CreateRssContext {
                                pf: pf.into(),
                                pf_ifindex: ifx,
                                vport: v.name.clone(),
                                first: *first,
                                count: *count,
                                table: equal_table(table_size, *first, *count),
                            });
                            main_actions.push(Action::InsertRule {
                                pf: pf.into(),
                                pf_ifindex: ifx,
                                vport: v.name.clone(),
                                mac,
                                vlan: v.vlan,
                                location: location.unwrap_or(0),
                                queue: None,
                            });
                        }
                        VportPath::Queues {
                            mode: QueueMode::Ntuple,
                            first,
                            location,
                            ..
                        } => main_actions.push(Action::InsertRule {
                            pf: pf.into(),
                            pf_ifindex: ifx,
                            vport: v.name.clone(),
                            mac,
                            vlan: v.vlan,
                            location: location.unwrap_or(0),
                            queue: Some(*first),
                        }),
                        _ => {
                            if !l2fwd_on {
                                main_actions.push(Action::SetFeature {
                                    pf: pf.into(),
                                    pf_ifindex: ifx,
                                    feature: "l2-fwd-offload".into(),
                                    on: true,
                                });
                                l2fwd_on = true;
                                feature_by_plan = true;
                            }
                            vmdq_left = true;
                            main_actions.push(Action::CreateMacvlan {
                                pf: pf.into(),
                                pf_ifindex: ifx,
                                vport: v.name.clone(),
                                name: macvlan_name(&v.name),
                                mac,
                                feature_set: feature_by_plan,
                            });
                        }
                    }
                    Some(path)
                }
                _ => None,
            };
            match path {
                Some(path) => p.placements.push(Placement {
                    vport: v.name.clone(),
                    uplink: pf.to_string(),
                    path,
                    reason,
                    vf_config: None,
                }),
                None if forced => p.blockers.push(format!("vport \"{}\": {reason}", v.name)),
                None => p.placements.push(Placement {
                    vport: v.name.clone(),
                    uplink: pf.to_string(),
                    path: VportPath::Software,
                    reason,
                    vf_config: None,
                }),
            }
        }
        pf_rss_actions(
            &mut p,
            &mut main_actions,
            uplink,
            pf,
            pf_ifindex,
            facts,
            steering.as_ref(),
            channels,
            &alloc.queues,
            had_owned,
        );
        if feature_off
            && !vmdq_left
            && let Some(ifx) = pf_ifindex
        {
            resets.push(Action::SetFeature {
                pf: pf.into(),
                pf_ifindex: ifx,
                feature: "l2-fwd-offload".into(),
                on: false,
            });
        }
    }

    // Steering on a PF whose uplink left the config: the loop above never visits that PF,
    // so its rules, contexts and macvlans are released here. When the PF (or its netdev,
    // by ifindex) is gone from the host, what was programmed went with it: the state's
    // entry is dropped, with a note in the plan.
    let visited: BTreeSet<&str> = uplinks.iter().map(|u| u.bdf.as_str()).collect();
    let mut orphans: BTreeMap<&str, Vec<(&String, &Steering)>> = BTreeMap::new();
    for (name, st) in &state.steering {
        let Some(pf) = state.vports.get(name).map(|v| v.uplink.as_str()) else {
            continue;
        };
        if !visited.contains(pf) {
            orphans.entry(pf).or_default().push((name, st));
        }
    }
    for (pf, entries) in orphans {
        let on_host = |ifx: u32| {
            inv.pci_functions
                .iter()
                .any(|f| f.bdf == pf && f.netdevs.iter().any(|n| n.ifindex == ifx))
        };
        let mut feature_off = None;
        let mut table_back = None;
        for (name, st) in entries {
            if !on_host(st.pf_ifindex) {
                main_actions.push(Action::Record {
                    vport: name.clone(),
                    what: format!(
                        "steering on {pf} dropped from the state: its uplink left the config and the PF (ifindex {}) is no longer on this host, so the {} went with it",
                        st.pf_ifindex,
                        match st.mode {
                            QueueMode::RssContext => "RSS context and rule",
                            QueueMode::Ntuple => "ntuple rule",
                            QueueMode::Vmdq => "macvlan station",
                        }
                    ),
                });
                continue;
            }
            release_steering(pf, name, st, &mut resets);
            if st.feature_set {
                feature_off = Some(st.pf_ifindex);
            }
            if st.mode != QueueMode::Vmdq {
                table_back = Some(st.pf_ifindex);
            }
        }
        // The PF's own RSS table was narrowed away from these queues (pf_rss_actions).
        if let Some(ifx) = table_back {
            resets.push(Action::SetRssTable {
                pf: pf.into(),
                pf_ifindex: ifx,
                spread: "the driver's default: its uplink left the config".into(),
                table: Vec::new(),
            });
        }
        if let Some(ifx) = feature_off {
            resets.push(Action::SetFeature {
                pf: pf.into(),
                pf_ifindex: ifx,
                feature: "l2-fwd-offload".into(),
                on: false,
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

    // A switch trunked through a VF hears a vPort only through a unicast filter its PF holds
    // for that VF; past the VF driver's count the driver programs none of the rest, and says
    // so only in the kernel log.
    for ru in uplinks {
        let (Some(vf), Some(f)) = (
            cfg.uplinks[ru.index].switch_vf,
            inv.pci_functions.iter().find(|f| f.bdf == ru.bdf),
        ) else {
            continue;
        };
        let a = abilities(profiles, f);
        let software = p
            .placements
            .iter()
            .filter(|pl| pl.uplink == ru.bdf && pl.path == VportPath::Software)
            .count() as u32;
        if let Some(max) = a.unicast_filters
            && software > max
        {
            p.warnings.push(format!(
                "uplink {}: {software} software vPorts trunk through VF {vf}, but {} ({} hwprofile) has its PF filter at most {max} unicast addresses per VF: the vPorts past that are not reachable from the wire",
                ru.bdf,
                a.vf_driver.as_deref().unwrap_or("its VF driver"),
                a.family.as_deref().unwrap_or("its"),
            ));
        }
    }

    p.placements.sort_by(|a, b| a.vport.cmp(&b.vport));
    p.actions = resets;
    p.actions.extend(main_actions);
    Ok(p)
}
