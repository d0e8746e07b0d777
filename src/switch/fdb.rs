//! The forwarding database: a VLAN-aware MAC learning table keyed by (MAC, VLAN), as the
//! Linux bridge and Open vSwitch keep it. Bounded (8,192 entries by default); when full, the
//! entry evicted is the oldest one of the port holding the most entries, so one port flooding
//! source MACs cannot push out everyone else's. Entries not seen for the aging time (300 s)
//! expire; static entries never do. Time is an input (nanoseconds on any monotonic clock).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use super::PortId;
use crate::model::mac::Mac;

/// Entries the table holds by default (OVS's and Hyper-V's default).
pub const DEFAULT_CAPACITY: usize = 8192;
/// Seconds an entry lives without being seen (the Linux bridge's and OVS's default).
pub const DEFAULT_AGING_NS: u64 = 300 * 1_000_000_000;

/// A multiplicative hash for the packed (MAC, VLAN) key: the key is already well spread and
/// never attacker-chosen beyond what a MAC flood can do, which eviction bounds anyway.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, k: u64) {
        let h = (k ^ (k >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        self.0 = h ^ (h >> 32);
    }
}

fn key(mac: Mac, vid: u16) -> u64 {
    mac.to_u64() | (u64::from(vid) << 48)
}

fn unkey(k: u64) -> (Mac, u16) {
    let b = k.to_be_bytes();
    (Mac([b[2], b[3], b[4], b[5], b[6], b[7]]), (k >> 48) as u16)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortId,
    last_seen: u64,
    /// Insertion number, to tell a live entry from a stale line in a port's eviction queue.
    serial: u64,
    is_static: bool,
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Already known on this port (refreshed).
    Known,
    /// New entry.
    New,
    /// Was on another port and moved here.
    Moved { from: PortId },
    /// Not learned: the port is at its learning limit.
    LimitReached,
    /// Not learned: a static entry holds the address on another port.
    Static,
}

/// The table. Owned by one switch worker: no locks.
pub struct Fdb {
    map: HashMap<u64, Entry, BuildHasherDefault<KeyHasher>>,
    capacity: usize,
    aging_ns: u64,
    serial: u64,
    /// Per port: how many dynamic entries it holds, and its entries in insertion order (with
    /// stale lines skipped lazily), for fair eviction.
    per_port: Vec<PortEntries>,
    evictions: u64,
    /// Keys whose entry moved or went away since the last `take_changes`, recorded only while
    /// someone (the kernel flow cache) depends on entries staying put.
    changes: Option<Vec<u64>>,
}

#[derive(Default)]
struct PortEntries {
    count: usize,
    order: VecDeque<(u64, u64)>,
}

impl Fdb {
    pub fn new(capacity: usize, aging_ns: u64) -> Self {
        Fdb {
            map: HashMap::with_capacity_and_hasher(capacity + 1, Default::default()),
            capacity,
            aging_ns,
            serial: 0,
            per_port: Vec::new(),
            evictions: 0,
            changes: None,
        }
    }

    /// Starts (or stops) recording which entries move or go away.
    pub fn track_changes(&mut self, on: bool) {
        self.changes = on.then(Vec::new);
    }

    /// The (MAC, VLAN) entries that moved, aged out, were evicted or flushed since the last
    /// call (empty when not tracking).
    pub fn take_changes(&mut self) -> Vec<(Mac, u16)> {
        match &mut self.changes {
            Some(c) if !c.is_empty() => std::mem::take(c).into_iter().map(unkey).collect(),
            _ => Vec::new(),
        }
    }

    fn changed(changes: &mut Option<Vec<u64>>, k: u64) {
        if let Some(c) = changes {
            c.push(k);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Dynamic entries held by `port`.
    pub fn port_count(&self, port: PortId) -> usize {
        self.per_port.get(port.0).map_or(0, |p| p.count)
    }

    /// Entries evicted because the table was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    fn port_mut(&mut self, port: PortId) -> &mut PortEntries {
        if self.per_port.len() <= port.0 {
            self.per_port.resize_with(port.0 + 1, Default::default);
        }
        &mut self.per_port[port.0]
    }

    /// The port that `mac` on `vid` was last seen on.
    #[inline]
    pub fn lookup(&self, mac: Mac, vid: u16) -> Option<PortId> {
        self.map.get(&key(mac, vid)).map(|e| e.port)
    }

    /// Marks `mac` on `vid` seen at `now` if it is still learned on `port` (frames the kernel
    /// flow cache forwarded for it, which the pipeline never saw). False when it is not.
    pub fn refresh(&mut self, mac: Mac, vid: u16, port: PortId, now: u64) -> bool {
        match self.map.get_mut(&key(mac, vid)) {
            Some(e) if e.port == port => {
                e.last_seen = e.last_seen.max(now);
                true
            }
            _ => false,
        }
    }

    /// Pins `mac` on `vid` to `port`; static entries never age and do not count toward the
    /// port's learning limit.
    pub fn add_static(&mut self, mac: Mac, vid: u16, port: PortId) {
        let k = key(mac, vid);
        if let Some(old) = self.map.get(&k).copied() {
            Self::changed(&mut self.changes, k);
            if !old.is_static {
                self.port_mut(old.port).count -= 1;
            }
        }
        self.serial += 1;
        let serial = self.serial;
        self.map.insert(
            k,
            Entry {
                port,
                last_seen: 0,
                serial,
                is_static: true,
            },
        );
    }

    /// Records that `mac` on `vid` was seen on `port` at `now`. `limit` is the port's learning
    /// limit (None for none).
    #[inline]
    pub fn learn(
        &mut self,
        mac: Mac,
        vid: u16,
        port: PortId,
        now: u64,
        limit: Option<usize>,
    ) -> Learned {
        let k = key(mac, vid);
        if let Some(e) = self.map.get_mut(&k) {
            if e.port == port {
                e.last_seen = now;
                return Learned::Known;
            }
            if e.is_static {
                return Learned::Static;
            }
            let from = e.port;
            if limit.is_some_and(|l| self.port_count(port) >= l) {
                return Learned::LimitReached;
            }
            self.serial += 1;
            let serial = self.serial;
            let e = self.map.get_mut(&k).expect("just found");
            e.port = port;
            e.last_seen = now;
            e.serial = serial;
            self.port_mut(from).count -= 1;
            self.push_order(port, k, serial);
            Self::changed(&mut self.changes, k);
            return Learned::Moved { from };
        }
        if limit.is_some_and(|l| self.port_count(port) >= l) {
            return Learned::LimitReached;
        }
        if self.map.len() >= self.capacity {
            self.evict_one();
        }
        self.serial += 1;
        let serial = self.serial;
        self.map.insert(
            k,
            Entry {
                port,
                last_seen: now,
                serial,
                is_static: false,
            },
        );
        self.push_order(port, k, serial);
        Learned::New
    }

    fn push_order(&mut self, port: PortId, k: u64, serial: u64) {
        let p = self.port_mut(port);
        p.count += 1;
        p.order.push_back((k, serial));
        // Moves and aging leave stale lines behind; keep the queue proportional to the count.
        if p.order.len() > 2 * p.count + 64 {
            let mut order = std::mem::take(&mut self.per_port[port.0].order);
            order.retain(|(k, s)| {
                self.map
                    .get(k)
                    .is_some_and(|e| e.serial == *s && e.port == port)
            });
            self.per_port[port.0].order = order;
        }
    }

    /// Evicts the oldest dynamic entry of the port holding the most.
    fn evict_one(&mut self) {
        let Some((port, _)) = self
            .per_port
            .iter()
            .enumerate()
            .filter(|(_, p)| p.count > 0)
            .max_by_key(|(i, p)| (p.count, std::cmp::Reverse(*i)))
        else {
            return; // only static entries: the new one goes over capacity by one
        };
        while let Some((k, serial)) = self.per_port[port].order.pop_front() {
            if self
                .map
                .get(&k)
                .is_some_and(|e| e.serial == serial && e.port.0 == port && !e.is_static)
            {
                self.map.remove(&k);
                self.per_port[port].count -= 1;
                self.evictions += 1;
                Self::changed(&mut self.changes, k);
                return;
            }
        }
    }

    /// Removes entries not seen for the aging time. Returns how many expired.
    pub fn expire(&mut self, now: u64) -> usize {
        let aging = self.aging_ns;
        let before = self.map.len();
        let per_port = &mut self.per_port;
        let changes = &mut self.changes;
        self.map.retain(|k, e| {
            let keep = e.is_static || now.saturating_sub(e.last_seen) < aging;
            if !keep {
                per_port[e.port.0].count -= 1;
                Self::changed(changes, *k);
            }
            keep
        });
        before - self.map.len()
    }

    /// Forgets every dynamic entry learned on `port` (its link went down), and with
    /// `with_static` its static entries too (it was removed).
    pub fn flush_port(&mut self, port: PortId, with_static: bool) {
        let per_port = &mut self.per_port;
        let changes = &mut self.changes;
        self.map.retain(|k, e| {
            let keep = e.port != port || (e.is_static && !with_static);
            if !keep {
                Self::changed(changes, *k);
                if !e.is_static {
                    per_port[e.port.0].count -= 1;
                }
            }
            keep
        });
        if let Some(p) = self.per_port.get_mut(port.0) {
            p.order.clear();
        }
    }

    /// Every entry, for display: (MAC, VLAN, port, static).
    pub fn entries(&self) -> Vec<(Mac, u16, PortId, bool)> {
        self.map
            .iter()
            .map(|(k, e)| {
                let (mac, vid) = unkey(*k);
                (mac, vid, e.port, e.is_static)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn mac(n: u32) -> Mac {
        let b = n.to_be_bytes();
        Mac([2, 0, b[0], b[1], b[2], b[3]])
    }

    #[test]
    fn learns_refreshes_moves_and_ages() {
        let mut f = Fdb::new(16, 300 * S);
        let (a, b) = (PortId(0), PortId(1));
        assert_eq!(f.learn(mac(1), 10, a, 0, None), Learned::New);
        assert_eq!(f.lookup(mac(1), 10), Some(a));
        assert_eq!(f.lookup(mac(1), 20), None, "keyed by VLAN too");
        assert_eq!(f.learn(mac(1), 10, a, 100 * S, None), Learned::Known);
        assert_eq!(
            f.learn(mac(1), 10, b, 200 * S, None),
            Learned::Moved { from: a }
        );
        assert_eq!((f.port_count(a), f.port_count(b)), (0, 1));
        assert_eq!(f.expire(499 * S), 0);
        assert_eq!(f.expire(500 * S), 1);
        assert_eq!(f.lookup(mac(1), 10), None);
        assert_eq!(f.port_count(b), 0);
    }

    #[test]
    fn static_entries_survive_aging_and_do_not_move() {
        let mut f = Fdb::new(16, 300 * S);
        f.add_static(mac(1), 1, PortId(0));
        assert_eq!(f.learn(mac(1), 1, PortId(1), 5, None), Learned::Static);
        assert_eq!(f.expire(10_000 * S), 0);
        assert_eq!(f.lookup(mac(1), 1), Some(PortId(0)));
    }

    #[test]
    fn learning_limit_per_port() {
        let mut f = Fdb::new(16, 300 * S);
        for i in 0..3 {
            assert_eq!(f.learn(mac(i), 1, PortId(0), 0, Some(3)), Learned::New);
        }
        assert_eq!(
            f.learn(mac(9), 1, PortId(0), 0, Some(3)),
            Learned::LimitReached
        );
        assert_eq!(f.learn(mac(9), 1, PortId(1), 0, Some(3)), Learned::New);
    }

    #[test]
    fn overflow_evicts_from_the_biggest_port() {
        let mut f = Fdb::new(100, 300 * S);
        for i in 0..10 {
            f.learn(mac(i), 1, PortId(0), 0, None);
        }
        for i in 1000..1090 {
            f.learn(mac(i), 1, PortId(1), 0, None);
        }
        assert_eq!(f.len(), 100);
        // A flood of new MACs on port 1 only ever evicts port 1's own, oldest first.
        for i in 2000..2500 {
            f.learn(mac(i), 1, PortId(1), 1, None);
        }
        assert_eq!(f.len(), 100);
        assert_eq!(f.port_count(PortId(0)), 10);
        for i in 0..10 {
            assert_eq!(f.lookup(mac(i), 1), Some(PortId(0)));
        }
        assert_eq!(f.lookup(mac(1000), 1), None);
        assert_eq!(f.lookup(mac(2499), 1), Some(PortId(1)));
        assert_eq!(f.evictions(), 500);
        // A third port learning evicts from the biggest (port 1), not port 0.
        f.learn(mac(5000), 1, PortId(2), 2, None);
        assert_eq!(f.port_count(PortId(0)), 10);
        assert_eq!(f.port_count(PortId(1)), 89);
    }

    #[test]
    fn flush_port_forgets_dynamic_entries() {
        let mut f = Fdb::new(16, 300 * S);
        f.learn(mac(1), 1, PortId(0), 0, None);
        f.learn(mac(2), 1, PortId(1), 0, None);
        f.flush_port(PortId(0), false);
        assert_eq!(f.lookup(mac(1), 1), None);
        assert_eq!(f.lookup(mac(2), 1), Some(PortId(1)));
        assert_eq!(f.port_count(PortId(0)), 0);
    }
}
