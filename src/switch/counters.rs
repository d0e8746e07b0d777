//! Per-port counters, kept per worker (one shard per switch thread, cache-line aligned) and
//! summed on read. A worker counts into plain integers during a batch and publishes them with
//! relaxed stores afterwards, so the packet path has no locks and no contended atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why the switch dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Malformed,
    /// The port's VLAN mode refused it (tagged on access, VLAN not allowed on the trunk).
    Vlan,
    /// The source port's ingress ACL denied it.
    AclIngress,
    /// Over the source port's rate limit.
    RateLimit,
    /// A destination port's egress ACL denied it.
    AclEgress,
    /// The source or destination port's link is down (no NIC connected).
    LinkDown,
    /// The NIC edge could not take it (ring full, write failed).
    TxError,
    /// The frame carries segmentation offload and the destination NIC cannot take it.
    Offload,
    /// Its only destination was the port it came from (no hairpin).
    NoDestination,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::Malformed,
        DropReason::Vlan,
        DropReason::AclIngress,
        DropReason::RateLimit,
        DropReason::AclEgress,
        DropReason::LinkDown,
        DropReason::TxError,
        DropReason::Offload,
        DropReason::NoDestination,
    ];

    /// The name used in metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Vlan => "vlan",
            DropReason::AclIngress => "acl_ingress",
            DropReason::RateLimit => "rate_limit",
            DropReason::AclEgress => "acl_egress",
            DropReason::LinkDown => "link_down",
            DropReason::TxError => "tx_error",
            DropReason::Offload => "offload",
            DropReason::NoDestination => "no_destination",
        }
    }
}

const NUM_REASONS: usize = DropReason::ALL.len();

/// One port's counts as one worker sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames flooded out of this port (unknown unicast, broadcast, multicast).
    pub tx_flooded: u64,
    /// Source addresses not learned because the port is at its learning limit.
    pub learn_limited: u64,
    /// Times the port's NIC vanished under it (netdev deleted, TAP detached): the port went
    /// link down until its NIC is connected again.
    pub nic_lost: u64,
    pub drops: [u64; NUM_REASONS],
}

impl PortStats {
    #[inline]
    pub fn drop(&mut self, why: DropReason) {
        self.drops[why as usize] += 1;
    }

    pub fn drops_for(&self, why: DropReason) -> u64 {
        self.drops[why as usize]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    fn add(&mut self, o: &PortStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_flooded += o.tx_flooded;
        self.learn_limited += o.learn_limited;
        self.nic_lost += o.nic_lost;
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
    }
}

const FIELDS: usize = 7 + NUM_REASONS;

#[repr(align(64))]
#[derive(Default)]
struct Slot([AtomicU64; FIELDS]);

/// The published counters of one switch: `shards` workers by `ports` port slots.
pub struct Counters {
    shards: Vec<Vec<Slot>>,
}

impl Counters {
    pub fn new(shards: usize, ports: usize) -> Self {
        Counters {
            shards: (0..shards)
                .map(|_| (0..ports).map(|_| Slot::default()).collect())
                .collect(),
        }
    }

    pub fn ports(&self) -> usize {
        self.shards.first().map_or(0, Vec::len)
    }

    /// Publishes a worker's running totals for its shard. Only that worker writes the shard.
    pub fn publish(&self, shard: usize, stats: &[PortStats]) {
        for (slot, s) in self.shards[shard].iter().zip(stats) {
            let vals = [
                s.rx_packets,
                s.rx_bytes,
                s.tx_packets,
                s.tx_bytes,
                s.tx_flooded,
                s.learn_limited,
                s.nic_lost,
            ];
            for (a, v) in slot.0.iter().zip(vals.iter().chain(s.drops.iter())) {
                a.store(*v, Ordering::Relaxed);
            }
        }
    }

    /// One port's counts summed over the shards.
    pub fn port(&self, port: usize) -> PortStats {
        let mut total = PortStats::default();
        for shard in &self.shards {
            let Some(slot) = shard.get(port) else {
                continue;
            };
            let v: Vec<u64> = slot.0.iter().map(|a| a.load(Ordering::Relaxed)).collect();
            let mut s = PortStats {
                rx_packets: v[0],
                rx_bytes: v[1],
                tx_packets: v[2],
                tx_bytes: v[3],
                tx_flooded: v[4],
                learn_limited: v[5],
                nic_lost: v[6],
                drops: [0; NUM_REASONS],
            };
            s.drops.copy_from_slice(&v[7..]);
            total.add(&s);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_on_read() {
        let c = Counters::new(2, 3);
        let mut a = vec![PortStats::default(); 3];
        a[1].rx_packets = 5;
        a[1].drop(DropReason::RateLimit);
        let mut b = vec![PortStats::default(); 3];
        b[1].rx_packets = 7;
        b[1].drop(DropReason::RateLimit);
        c.publish(0, &a);
        c.publish(1, &b);
        let s = c.port(1);
        assert_eq!(s.rx_packets, 12);
        assert_eq!(s.drops_for(DropReason::RateLimit), 2);
        assert_eq!(c.port(0), PortStats::default());
    }
}
