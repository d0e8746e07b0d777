//! A VF's settings as its PF reports them and as provisioning asks for them: the one
//! shape the planner, apply, the state file and the kernel layer all speak.

use serde::{Deserialize, Serialize};

/// A VF's configuration as its PF reports it (`ip -d link show PF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfConfig {
    pub vf: u32,
    /// The administratively set MAC; all zeros when none was set.
    pub mac: String,
    pub vlan: u32,
    pub qos: u32,
    /// "802.1Q" or "802.1ad", when the kernel reports a VLAN list.
    pub vlan_proto: Option<String>,
    pub min_tx_rate: Option<u32>,
    pub max_tx_rate: Option<u32>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    /// "auto", "enable" or "disable".
    pub link_state: Option<String>,
}

impl VfConfig {
    /// A VF as the kernel creates it, and as a released VF is returned: no admin
    /// MAC, no VLAN, no rate limit, spoof checking on, not trusted, link auto.
    pub fn clean(vf: u32) -> VfConfig {
        VfConfig {
            vf,
            mac: "00:00:00:00:00:00".into(),
            vlan: 0,
            qos: 0,
            vlan_proto: Some("802.1Q".into()),
            min_tx_rate: Some(0),
            max_tx_rate: Some(0),
            spoofchk: Some(true),
            trust: Some(false),
            link_state: Some("auto".into()),
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` as `ip link` and the VF's own admin MAC spell it (single
/// hex digits per byte are accepted, as the kernel's tools do).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}
