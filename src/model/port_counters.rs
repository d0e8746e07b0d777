//! A software switch port's counters as `status` and the metrics show them: plain data, so
//! that provisioning's status can carry them without naming the software path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One port's counters, as status and the metrics show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSnapshot {
    pub switch: String,
    /// The uplink PF's PCI address.
    pub uplink: String,
    /// The switch port: the vPort's name, or "uplink" for the trunk.
    pub port: String,
    pub vport: Option<String>,
    /// The TAP device, or the uplink's netdev.
    pub netdev: String,
    /// "tap", "af_packet", or "none" when the link is down.
    pub edge: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_flooded: u64,
    pub learn_limited: u64,
    /// Times the port's NIC vanished (its netdev deleted); the daemon reconnects it when
    /// the device is back.
    #[serde(default)]
    pub nic_lost: u64,
    /// Drops by reason (the switch's `DropReason::as_str`), every reason present.
    pub drops: BTreeMap<String, u64>,
}
