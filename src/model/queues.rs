//! What the planner knows of a PF's queues and the steering rules it asks for: plain
//! data read by the kernel layer (`host::ethtool`) and judged by the planner, plus the
//! indirection-table arithmetic both sides share.

use serde::{Deserialize, Serialize};

/// An RSS indirection table as the device reports it (`ethtool -x`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RssTable {
    /// 0 for the device's main table.
    pub context: u32,
    /// Queue index per hash bucket.
    pub indir: Vec<u32>,
    pub key_size: u32,
}

/// Where an ntuple rule sends matching frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum FlowTarget {
    /// One receive queue (Flow Director style).
    Queue { index: u64 },
    /// An RSS context, which spreads the matching flows over its queues.
    Context { id: u32 },
}

/// A steering rule on a vPort's destination MAC (and VLAN id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRule {
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    /// The rule's slot in the device's table.
    pub location: u32,
    pub target: FlowTarget,
}

/// A feature's state as `ethtool -k` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    pub active: bool,
    /// False for `[fixed]`: the driver does not let it change.
    pub changeable: bool,
}

/// The features that decide which queue placement a NIC can give, read at runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueFeatures {
    /// `ntuple-filters` (`rx-ntuple-filter`).
    pub ntuple: Option<Feature>,
    /// `l2-fwd-offload`: macvlan stations in VMDq pools.
    pub l2_fwd_offload: Option<Feature>,
}

/// What the planner needs to know of a PF's queues at runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueFacts {
    /// Combined channels now and at most (`ethtool -l`); None when the driver has no
    /// channel control.
    pub combined: Option<u32>,
    pub combined_max: Option<u32>,
    /// The main RSS indirection table (`ethtool -x`); None when the device has none.
    pub rss_table: Option<Vec<u32>>,
    pub features: QueueFeatures,
}

// Tables: the same arithmetic as ethtool's fill_indir_table, so that `rss = "equal"` and
// `rss_weights` give what `ethtool -X equal N` and `ethtool -X weight ...` would.

/// Every bucket to queues `start..start+n` in turn (`ethtool -X DEV [start S] equal N`).
pub fn equal_table(size: u32, start: u32, n: u32) -> Vec<u32> {
    (0..size).map(|i| start + i % n.max(1)).collect()
}

/// Buckets in proportion to `weights`, queue `start + j` for weight j (`ethtool -X DEV
/// weight W0 W1 ...`). Returns None when every weight is 0.
pub fn weighted_table(size: u32, start: u32, weights: &[u32]) -> Option<Vec<u32>> {
    let sum: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if sum == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(size as usize);
    let mut partial: u64 = 0;
    let mut j: i64 = -1;
    for i in 0..u64::from(size) {
        while i >= u64::from(size) * partial / sum {
            j += 1;
            partial += u64::from(weights[j as usize]);
        }
        out.push(start + j as u32);
    }
    Some(out)
}
