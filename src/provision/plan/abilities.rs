//! What a PF's driver can do for its VFs and queues, from the matched hwprofile, and the VF
//! settings a vPort gets given those abilities.

use super::{PciFunction, ProfileSet, profile};
use crate::model::vf::{self, VfConfig};
use crate::provision::config::{LinkState, VlanProto, VportSpec};

/// What the PF's driver can do for its VFs, from its profile; with no profile,
/// everything is assumed possible and the kernel has the last word.
#[derive(Debug, Clone)]
pub(super) struct VfAbilities {
    pub(super) known: bool,
    pub(super) min_rate: bool,
    pub(super) max_rate: bool,
    pub(super) trust: bool,
    pub(super) spoofchk: bool,
    pub(super) link_state: bool,
    dot1ad: bool,
    pub(super) vf_driver: Option<String>,
    /// Unicast filters a VF's driver has its PF hold for it (a `switch_vf` trunk's vPorts).
    pub(super) unicast_filters: Option<u32>,
    pub(super) family: Option<String>,
}

pub(super) fn abilities(profiles: &ProfileSet, f: &PciFunction) -> VfAbilities {
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
pub(super) fn missing_abilities(
    v: &VportSpec,
    a: &VfAbilities,
    driver: &str,
) -> Vec<(&'static str, String)> {
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
pub(super) fn without(v: &VportSpec, dropped: &[&str]) -> VportSpec {
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
pub(super) fn desired_vf_config(v: &VportSpec, vf: u32, a: &VfAbilities) -> VfConfig {
    VfConfig {
        vf,
        mac: v.mac,
        vlan: v.vlan.map(u32::from).unwrap_or(0),
        qos: if v.vlan.is_some() {
            u32::from(v.qos)
        } else {
            0
        },
        vlan_proto: Some(match (v.vlan.is_some(), v.vlan_proto) {
            (true, VlanProto::Dot1Ad) => vf::VlanProto::Dot1Ad,
            _ => vf::VlanProto::Dot1Q,
        }),
        min_tx_rate: (a.min_rate || v.min_tx_rate_mbps.unwrap_or(0) > 0)
            .then(|| v.min_tx_rate_mbps.unwrap_or(0))
            .filter(|_| a.min_rate || a.max_rate),
        max_tx_rate: (a.max_rate || v.max_tx_rate_mbps.unwrap_or(0) > 0)
            .then(|| v.max_tx_rate_mbps.unwrap_or(0)),
        spoofchk: (a.spoofchk || !v.spoofchk).then_some(v.spoofchk),
        trust: (a.trust || v.trust).then_some(v.trust),
        link_state: (a.link_state || v.link_state != LinkState::Auto).then_some(
            match v.link_state {
                LinkState::Auto => vf::LinkState::Auto,
                LinkState::Enable => vf::LinkState::Enable,
                LinkState::Disable => vf::LinkState::Disable,
            },
        ),
    }
}

/// The clean state a released VF returns to, leaving out what the driver cannot
/// set (it refuses even the default).
pub(super) fn clean_vf_config(vf: u32, a: &VfAbilities) -> VfConfig {
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
    let proto = |c: &VfConfig| c.vlan_proto.unwrap_or(vf::VlanProto::Dot1Q);
    want.mac == current.mac
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
pub(super) struct SteeringAbilities {
    pub(super) family: String,
    pub(super) rss_contexts: bool,
    pub(super) ntuple: bool,
    /// Whether the profile says the family has VMDq pools; None when it does not say.
    pub(super) vmdq: Option<bool>,
    pub(super) pf_rss_table: Option<u32>,
}

pub(super) fn profile_steering(
    profiles: &ProfileSet,
    f: &PciFunction,
) -> Option<SteeringAbilities> {
    let id = |s: &str| u16::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let m = id(&f.vendor_id)
        .zip(id(&f.device_id))
        .and_then(|(v, d)| profiles.match_function(v, d, f.driver.as_deref()))?;
    let c = &m.profile.capabilities;
    Some(SteeringAbilities {
        family: m.profile.family.clone(),
        rss_contexts: c.steering.rss_contexts,
        ntuple: c.steering.ntuple,
        vmdq: c.sriov.has_vmdq(),
        pf_rss_table: match c.steering.pf_rss_table {
            Some(profile::Amount::Count(n)) => Some(n),
            _ => None,
        },
    })
}
