//! A VF's settings as its PF reports them and as provisioning asks for them: the one
//! shape the planner, apply, the state file and the kernel layer all speak.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::mac::Mac;

/// A VF's configuration as its PF reports it (`ip -d link show PF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfConfig {
    pub vf: u32,
    /// The administratively set MAC; all zeros when none was set.
    pub mac: Mac,
    pub vlan: u32,
    pub qos: u32,
    /// Present when the kernel reports a VLAN list.
    pub vlan_proto: Option<VlanProto>,
    pub min_tx_rate: Option<u32>,
    pub max_tx_rate: Option<u32>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    pub link_state: Option<LinkState>,
}

impl VfConfig {
    /// A VF as the kernel creates it, and as a released VF is returned: no admin
    /// MAC, no VLAN, no rate limit, spoof checking on, not trusted, link auto.
    pub fn clean(vf: u32) -> VfConfig {
        VfConfig {
            vf,
            mac: Mac([0; 6]),
            vlan: 0,
            qos: 0,
            vlan_proto: Some(VlanProto::Dot1Q),
            min_tx_rate: Some(0),
            max_tx_rate: Some(0),
            spoofchk: Some(true),
            trust: Some(false),
            link_state: Some(LinkState::Auto),
        }
    }
}

/// The tag protocol of a VF's port VLAN, spelled as `ip link` spells it (and as state
/// files and `vportd discover --json` have always carried it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VlanProto {
    /// The customer tag, TPID 0x8100.
    #[serde(rename = "802.1Q")]
    Dot1Q,
    /// The service tag, TPID 0x88a8 (QinQ).
    #[serde(rename = "802.1ad")]
    Dot1Ad,
}

impl fmt::Display for VlanProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VlanProto::Dot1Q => "802.1Q",
            VlanProto::Dot1Ad => "802.1ad",
        })
    }
}

/// A VF's link state (`ip link set PF vf N state ...`). `Other` keeps a value a newer
/// kernel may report, written as its number, as it always was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Follows the PF's link.
    Auto,
    /// Up regardless of the PF.
    Enable,
    Disable,
    Other(u32),
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkState::Auto => f.write_str("auto"),
            LinkState::Enable => f.write_str("enable"),
            LinkState::Disable => f.write_str("disable"),
            LinkState::Other(n) => write!(f, "{n}"),
        }
    }
}

/// As text, so that state files and JSON read as they did when the field was a string.
impl Serialize for LinkState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LinkState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<LinkState, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "auto" => Ok(LinkState::Auto),
            "enable" => Ok(LinkState::Enable),
            "disable" => Ok(LinkState::Disable),
            other => other.parse().map(LinkState::Other).map_err(|_| {
                serde::de::Error::invalid_value(
                    serde::de::Unexpected::Str(other),
                    &"auto, enable, disable or a number",
                )
            }),
        }
    }
}

/// [`Mac::parse_lenient`] as bytes; kept for callers not yet moved to it.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    Mac::parse_lenient(s).map(|m| m.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of state files and `discover --json` from when every field was text.
    #[test]
    fn serializes_as_it_did_as_text() {
        let mut c = VfConfig::clean(3);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"vf":3,"mac":"00:00:00:00:00:00","vlan":0,"qos":0,"vlan_proto":"802.1Q","min_tx_rate":0,"max_tx_rate":0,"spoofchk":true,"trust":false,"link_state":"auto"}"#
        );
        c.mac = Mac([2, 0, 0, 0, 0xab, 1]);
        c.vlan_proto = Some(VlanProto::Dot1Ad);
        c.link_state = Some(LinkState::Other(7));
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains(r#""mac":"02:00:00:00:ab:01""#), "{text}");
        assert!(text.contains(r#""vlan_proto":"802.1ad""#), "{text}");
        assert!(text.contains(r#""link_state":"7""#), "{text}");
        assert_eq!(serde_json::from_str::<VfConfig>(&text).unwrap(), c);
    }
}
