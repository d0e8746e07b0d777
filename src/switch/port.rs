//! A vPort's configuration on the switch. How a `[[vport]]` of the config maps onto it is the
//! software path's business (`softpath::plan::port_config`): the switch knows ports, not
//! the provisioning config.

use super::acl::Acl;
use super::qos::TokenBucket;
use super::vlan::VlanMode;
use crate::model::mac::Mac;

/// The VLAN an untagged vPort belongs to (the Linux bridge's default PVID).
pub const DEFAULT_VLAN: u16 = 1;

/// Everything the pipeline applies to a port's traffic.
#[derive(Debug, Clone)]
pub struct PortConfig {
    pub name: String,
    /// The vPort's own address, pinned in the forwarding table as a static entry.
    pub mac: Option<Mac>,
    pub vlan: VlanMode,
    /// Priority given to frames that arrive without one.
    pub default_pcp: u8,
    pub ingress_acl: Acl,
    pub egress_acl: Acl,
    /// Ingress rate limit.
    pub rate: Option<TokenBucket>,
    /// Whether source addresses are learned (off: everything to it is flooded).
    pub learning: bool,
    /// Most addresses the port may hold in the forwarding table.
    pub learn_limit: Option<usize>,
    /// Whether frames may go back out of the port they came in on.
    pub hairpin: bool,
    /// Administratively down: the port drops everything even with a NIC connected.
    pub admin_down: bool,
}

impl PortConfig {
    /// An access port on `vid`, learning, no ACL, no limit.
    pub fn access(name: &str, vid: u16) -> Self {
        PortConfig {
            name: name.to_string(),
            mac: None,
            vlan: VlanMode::Access { vid },
            default_pcp: 0,
            ingress_acl: Acl::default(),
            egress_acl: Acl::default(),
            rate: None,
            learning: true,
            learn_limit: None,
            hairpin: false,
            admin_down: false,
        }
    }

    /// A trunk port.
    pub fn trunk(name: &str, vlan: VlanMode) -> Self {
        PortConfig {
            vlan,
            ..PortConfig::access(name, DEFAULT_VLAN)
        }
    }
}
