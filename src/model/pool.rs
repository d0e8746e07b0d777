//! VF pools: VFs of one uplink set aside for attachments (containers through CNI, the
//! control socket) instead of the config's vPorts. The config names a pool's uplink and
//! size ([`PoolSpec`]); the planner picks the VF indexes once and keeps them ([`Pool`]),
//! and the daemon's attachment book hands them out.

use serde::{Deserialize, Serialize};

use super::mac::Mac;

/// How a pool names its PF: by identities that survive renaming.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolUplink {
    /// Normalized: `0000:01:00.0`.
    Pci(String),
    Mac(Mac),
}

/// The vPort attributes of a VF (or a software port): what an attachment asks for, or a
/// pool's defaults. None leaves the value to the layer below (the pool's default, else the
/// kernel's clean VF: no VLAN, no rate limit, spoof checking on, not trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub struct VfAttributes {
    pub vlan: Option<u16>,
    pub qos: Option<u8>,
    pub max_tx_rate_mbps: Option<u32>,
    pub min_tx_rate_mbps: Option<u32>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    pub mtu: Option<u32>,
}

impl VfAttributes {
    /// These attributes where set, `defaults` where not.
    pub fn or(self, defaults: VfAttributes) -> VfAttributes {
        VfAttributes {
            vlan: self.vlan.or(defaults.vlan),
            qos: self.qos.or(defaults.qos),
            max_tx_rate_mbps: self.max_tx_rate_mbps.or(defaults.max_tx_rate_mbps),
            min_tx_rate_mbps: self.min_tx_rate_mbps.or(defaults.min_tx_rate_mbps),
            spoofchk: self.spoofchk.or(defaults.spoofchk),
            trust: self.trust.or(defaults.trust),
            mtu: self.mtu.or(defaults.mtu),
        }
    }
}

/// One `[[pool]]` of the host config, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// What a CNI network's `"pool"` names.
    pub name: String,
    pub uplink: PoolUplink,
    /// How many VFs the pool holds.
    pub count: u32,
    /// The driver its VFs are bound to; None: the PF's usual VF driver (a container needs
    /// a netdev, so a kernel driver, not vfio-pci).
    pub driver: Option<String>,
    /// What an attachment gets where it asks for nothing.
    pub defaults: VfAttributes,
}

/// A pool as the planner resolved it: the PF's PCI address and the VF indexes it holds,
/// which no vPort of the config is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    /// The PF's PCI address.
    pub pf: String,
    /// VF indexes on `pf`, ascending.
    pub vfs: Vec<u32>,
    pub driver: Option<String>,
    pub defaults: VfAttributes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attachments_attributes_win_over_the_pools_defaults() {
        let asked = VfAttributes {
            vlan: Some(100),
            mtu: Some(9000),
            ..VfAttributes::default()
        };
        let defaults = VfAttributes {
            vlan: Some(7),
            max_tx_rate_mbps: Some(1000),
            spoofchk: Some(true),
            ..VfAttributes::default()
        };
        assert_eq!(
            asked.or(defaults),
            VfAttributes {
                vlan: Some(100),
                max_tx_rate_mbps: Some(1000),
                spoofchk: Some(true),
                mtu: Some(9000),
                ..VfAttributes::default()
            }
        );
    }
}
