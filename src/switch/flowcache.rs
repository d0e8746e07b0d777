//! The kernel flow cache: user space decides, the kernel repeats decisions it was given (the
//! shape of Open vSwitch's kernel datapath). The pipeline stays the only authority: a flow is
//! cached only after the pipeline itself sent a frame of it, unchanged, to exactly one port it
//! knew the destination on, and only between ports where repeating that decision cannot skip
//! anything the pipeline would have done per frame.
//!
//! This module is the pure half: which decisions may be cached, the table of cached flows,
//! their invalidation, and folding the kernel's hit counters back into the switch's own
//! counters and learning table. The kernel half (host::tcflow) sits behind [`FlowBackend`]:
//! a tc ingress program per port that redirects frames of cached flows to the destination
//! netdev, and an eBPF socket filter on the port's packet socket that keeps those frames out
//! of the switch's receive ring (packet taps see a frame before tc ingress does).
//!
//! A flow is keyed by (ingress ifindex, destination MAC, source MAC, outer VLAN TCI and TPID
//! or none): everything the pipeline's decision for an eligible port pair depends on. It is
//! cached when:
//! - both ports are kernel ports of this switch with their links up, different ports;
//! - the source port has no ingress ACL, no rate limit, no learning limit, and learns;
//! - the destination port has no egress ACL, and takes segmentation offload if the source
//!   does (otherwise the pipeline would drop super-packets the kernel would deliver);
//! - the frame left as it came (no tag pushed, popped or rewritten: access to access in one
//!   VLAN, trunk to trunk with the tag kept, a trunk's native VLAN to an access port), and its
//!   source MAC is unicast;
//! - the table still holds the destination on that port and the source on the ingress port.
//!
//! A cached flow is removed when an entry it depends on moves, ages out, is evicted or
//! flushed, when either port's configuration or link changes, or its NIC goes. Once a second
//! the switch reads the kernel's counters: hits count as received on the source port and sent
//! on the destination port, and refresh the source MAC's age (the pipeline never saw those
//! frames). Aging is therefore exact to the sweep: a cached flow's source entry is seen as
//! fresh at the sweep after its last hit, up to a second later than it was.
//!
//! Redirect. Frames of a flow into a veth whose peer is in another namespace (the usual
//! switch port: the other end in a VM's or container's namespace) are handed straight to the
//! peer's receive path (`bpf_redirect_peer`), skipping the veth's transmit and the peer's
//! backlog; frames into anything else go to the netdev's egress (`bpf_redirect`). See
//! [`choose_redirect`], and [`FlowCache::recheck_redirects`] for the window after a peer moves.
//!
//! Ordering. A flow is installed *arming*: its frames still go to the switch's ring. The
//! socket filter turns it active on the first frame that finds the port's ring holding nothing
//! the switch has not forwarded yet: the edge's receive counter compares the frames the filter
//! let in with those the switch took off the ring and sent (published by the edge when it is
//! next asked for frames, which is after the switch flushed the previous batch). Frames of the
//! flow that were in the ring are therefore out before the first one the kernel redirects. What
//! remains: frames arriving at the same moment on two CPUs are not ordered between each other
//! (as anywhere in the kernel's receive path), and the switch's own transmissions and the
//! kernel's redirects reach the destination through per-CPU backlogs, which a receiving CPU may
//! drain in either order when softirq work is deferred to ksoftirqd (with the peer redirect the
//! kernel's frames skip the backlog altogether, so the switch's last frames of the flow may
//! come after them only then too: a sent frame's backlog is normally drained before the
//! send returns, when the sender's softirqs run).

use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;

use super::PortId;
use super::counters::PortStats;
use super::fdb::Fdb;
use super::io::KernelPort;
use super::packet::TPID_8021Q;
use super::pipeline::PortState;
use crate::model::mac::Mac;

/// Slot states shared with the kernel programs.
pub const SLOT_FREE: u32 = 0;
pub const SLOT_ARMING: u32 = 1;
pub const SLOT_ACTIVE: u32 = 2;

/// 802.1ad (QinQ) outer tag.
const TPID_8021AD: u16 = 0x88a8;

/// How the kernel hands a cached flow's frames to the destination netdev (the slot's mode
/// word, shared with host::tcflow's programs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redirect {
    /// `bpf_redirect` to the destination's egress: works for every netdev, but a frame for a
    /// veth crosses its transmit path and the peer's backlog before the peer receives it.
    #[default]
    Egress = 0,
    /// `bpf_redirect_peer`: the frame goes straight into the receive path of the veth's peer,
    /// in its own namespace, with no transmit and no backlog. Only valid where the kernel
    /// takes it (see [`choose_redirect`]); anywhere else it drops the frame silently.
    Peer = 1,
}

/// What the kernel says of a destination netdev, as far as the choice of [`Redirect`] goes
/// (read by the backend, host::tcflow, from rtnetlink).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkFacts {
    /// IFLA_INFO_KIND: "veth", "tun", ...; None for a plain hardware netdev.
    pub kind: Option<String>,
    /// IFLA_LINK_NETNSID is present: the link's other end (a veth's peer) lives in another
    /// network namespace than the netdev itself.
    pub peer_elsewhere: bool,
    /// Operationally up (for a veth: its peer is up too, or it would have no carrier).
    pub up: bool,
}

/// The redirect for frames going to a netdev with these facts. The kernel takes
/// `bpf_redirect_peer` only for a device with a peer (veth, netkit), from tc ingress (where
/// our program runs), to a peer that is up and in another namespace than the receiving
/// device (all the switch's netdevs are in the switch's namespace); it drops anything else
/// after the program returned. So: a veth, up, whose peer is elsewhere. Unknown facts (the
/// backend could not ask) keep the egress redirect, which is always delivered.
pub fn choose_redirect(facts: Option<&LinkFacts>) -> Redirect {
    match facts {
        Some(f) if f.kind.as_deref() == Some("veth") && f.peer_elsewhere && f.up => Redirect::Peer,
        _ => Redirect::Egress,
    }
}

/// A flow's key, laid out exactly as the kernel programs build it on their stack: ingress
/// ifindex (u32, host order), destination MAC, source MAC, the outer tag's TCI (u16, host
/// order, 0 when untagged), its TPID (network order, 0 when untagged), four zero bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey(pub [u8; 24]);

impl FlowKey {
    /// The key of a frame as the switch's edge delivered it (its outer tag, if any, in the
    /// bytes). None for a runt.
    pub fn of_frame(ifindex: u32, frame: &[u8]) -> Option<FlowKey> {
        if frame.len() < 14 {
            return None;
        }
        let mut k = [0u8; 24];
        k[0..4].copy_from_slice(&ifindex.to_ne_bytes());
        k[4..16].copy_from_slice(&frame[0..12]);
        let tpid = u16::from_be_bytes([frame[12], frame[13]]);
        if (tpid == TPID_8021Q || tpid == TPID_8021AD) && frame.len() >= 18 {
            let tci = u16::from_be_bytes([frame[14], frame[15]]);
            k[16..18].copy_from_slice(&tci.to_ne_bytes());
            k[18..20].copy_from_slice(&tpid.to_be_bytes());
        }
        Some(FlowKey(k))
    }

    pub fn dst(&self) -> Mac {
        Mac(self.0[4..10].try_into().expect("six bytes"))
    }

    pub fn src(&self) -> Mac {
        Mac(self.0[10..16].try_into().expect("six bytes"))
    }

    /// Whether the frames carry an outer tag (which the kernel holds outside the bytes it
    /// counts: 4 bytes a frame more in the switch's counters).
    pub fn tagged(&self) -> bool {
        self.0[18..20] != [0, 0]
    }
}

/// What the kernel counted for one slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotCounters {
    pub state: u32,
    pub packets: u64,
    pub bytes: u64,
}

/// The kernel half of the cache (host::tcflow::KernelFlows; a fake in tests).
pub trait FlowBackend: Send {
    /// Starts serving `port`: tc ingress on its netdev, and a socket filter for its edge's
    /// receiving socket, returned for the edge to install ([`super::Edge::set_rx_filter`]).
    fn attach(&mut self, port: PortId, kp: &KernelPort) -> std::io::Result<RawFd>;
    /// Stops serving `port` (after its edge dropped the filter).
    fn detach(&mut self, port: PortId);
    /// Installs `key` in slot `slot`, arming, to be redirected to `out_ifindex` as `how`.
    fn insert(
        &mut self,
        key: &FlowKey,
        slot: u32,
        out_ifindex: u32,
        how: Redirect,
    ) -> std::io::Result<()>;
    /// Removes `key`; its frames go back to the ring. The slot's counters stay readable.
    fn remove(&mut self, key: &FlowKey, slot: u32);
    fn read(&self, slot: u32) -> SlotCounters;
    /// What the kernel says of netdev `ifindex` now (None: it could not be asked, or a fake
    /// without netdevs), for [`choose_redirect`].
    fn link_facts(&self, _ifindex: u32) -> Option<LinkFacts> {
        None
    }
    /// How many slots there are.
    fn slots(&self) -> u32;
    /// The kernel's ids of its links and of its maps, to show they go with the process.
    fn kernel_ids(&self) -> (Vec<u32>, Vec<u32>) {
        (Vec::new(), Vec::new())
    }
}

/// The cache's own counts, for status and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastStats {
    /// Flows cached now.
    pub flows: usize,
    pub installed: u64,
    pub removed: u64,
    /// Frames the kernel forwarded for cached flows (as of the last sweep).
    pub hits: u64,
    /// Flows not cached because every slot was taken, or the kernel refused.
    pub refused: u64,
    /// Ports whose fast path could not be attached.
    pub attach_failed: u64,
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    src: PortId,
    dst: PortId,
    vid: u16,
    slot: u32,
    tagged: bool,
    seen_packets: u64,
    seen_bytes: u64,
}

/// The cache: owned by the switch worker beside its pipeline.
pub struct FlowCache {
    backend: Box<dyn FlowBackend>,
    flows: HashMap<FlowKey, Flow>,
    free: Vec<u32>,
    /// Removed flows whose slot's last counts are read at the next sweep.
    draining: Vec<(FlowKey, Flow)>,
    /// Per port: the netdev of an attached kernel port, and how frames are redirected to it.
    ports: Vec<Option<(u32, Redirect)>>,
    stats: FastStats,
}

impl FlowCache {
    pub fn new(backend: Box<dyn FlowBackend>) -> Self {
        let free = (0..backend.slots()).rev().collect();
        FlowCache {
            backend,
            flows: HashMap::new(),
            free,
            draining: Vec::new(),
            ports: Vec::new(),
            stats: FastStats::default(),
        }
    }

    pub fn stats(&self) -> FastStats {
        FastStats {
            flows: self.flows.len(),
            ..self.stats
        }
    }

    /// Whether `port` is served (its kernel half attached).
    pub fn attached(&self, port: PortId) -> bool {
        matches!(self.ports.get(port.0), Some(Some(_)))
    }

    /// Serves `port`; returns the socket filter its edge must install.
    pub fn attach(&mut self, port: PortId, kp: &KernelPort) -> std::io::Result<RawFd> {
        self.detach(port);
        let prog = self.backend.attach(port, kp).inspect_err(|_| {
            self.stats.attach_failed += 1;
        })?;
        if self.ports.len() <= port.0 {
            self.ports.resize(port.0 + 1, None);
        }
        let how = choose_redirect(self.backend.link_facts(kp.ifindex).as_ref());
        self.ports[port.0] = Some((kp.ifindex, how));
        Ok(prog)
    }

    /// How frames of flows into `port` are redirected now (None: not attached).
    pub fn redirect_of(&self, port: PortId) -> Option<Redirect> {
        self.ports
            .get(port.0)
            .copied()
            .flatten()
            .map(|(_, how)| how)
    }

    /// Asks the kernel again about every attached port's netdev; where the redirect it calls
    /// for changed, the flows into that port go (the pipeline caches them again, the new
    /// way). This is what catches a veth's peer moving into our namespace, or out of it, or
    /// going down: nothing tells the switch about a peer's changes, and the kernel drops
    /// peer-redirected frames silently once the peer is back in our namespace or down. The
    /// switch calls it once a second, so up to a second of such a flow's frames can be lost
    /// after its peer moved in (a peer going down loses them either way).
    pub(crate) fn recheck_redirects(&mut self) {
        for port in 0..self.ports.len() {
            let Some((ifindex, how)) = self.ports[port] else {
                continue;
            };
            let now = choose_redirect(self.backend.link_facts(ifindex).as_ref());
            if now != how {
                self.ports[port] = Some((ifindex, now));
                self.remove_where(|_, f| f.dst == PortId(port));
            }
        }
    }

    /// Stops serving `port`: its flows go, both ways.
    pub fn detach(&mut self, port: PortId) {
        if !self.attached(port) {
            return;
        }
        self.forget_port(port);
        self.backend.detach(port);
        self.ports[port.0] = None;
    }

    /// Removes every flow into or out of `port` (its configuration or link changed).
    pub fn forget_port(&mut self, port: PortId) {
        self.remove_where(|_, f| f.src == port || f.dst == port);
    }

    /// Removes the flows that depend on any of these table entries.
    pub fn forget_macs(&mut self, changed: &[(Mac, u16)]) {
        if changed.is_empty() || self.flows.is_empty() {
            return;
        }
        let set: HashSet<(Mac, u16)> = changed.iter().copied().collect();
        self.remove_where(|k, f| {
            set.contains(&(k.dst(), f.vid)) || set.contains(&(k.src(), f.vid))
        });
    }

    fn remove_where(&mut self, mut doomed: impl FnMut(&FlowKey, &Flow) -> bool) {
        let keys: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(k, f)| doomed(k, f))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            let f = self.flows.remove(&k).expect("just listed");
            self.backend.remove(&k, f.slot);
            self.stats.removed += 1;
            self.draining.push((k, f));
        }
    }

    /// Offers one pipeline decision: `frame` came in on `src` and went out, unchanged, to
    /// `dst` alone, in VLAN `vid`. Caches it if every rule in the module doc allows.
    pub(crate) fn offer(
        &mut self,
        ports: &[Option<PortState>],
        fdb: &Fdb,
        src: PortId,
        dst: PortId,
        vid: u16,
        frame: &[u8],
    ) {
        if src == dst {
            return;
        }
        let (Some(Some((in_ifindex, _))), Some(Some((out_ifindex, how)))) = (
            self.ports.get(src.0).copied(),
            self.ports.get(dst.0).copied(),
        ) else {
            return;
        };
        let (Some(Some(sp)), Some(Some(dp))) = (ports.get(src.0), ports.get(dst.0)) else {
            return;
        };
        if !cacheable(sp, dp) {
            return;
        }
        let Some(key) = FlowKey::of_frame(in_ifindex, frame) else {
            return;
        };
        if key.src().is_multicast()
            || self.flows.contains_key(&key)
            || fdb.lookup(key.dst(), vid) != Some(dst)
            || fdb.lookup(key.src(), vid) != Some(src)
        {
            return;
        }
        let Some(slot) = self.free.pop() else {
            self.stats.refused += 1;
            return;
        };
        if self.backend.insert(&key, slot, out_ifindex, how).is_err() {
            self.free.push(slot);
            self.stats.refused += 1;
            return;
        }
        let c = self.backend.read(slot);
        self.flows.insert(
            key,
            Flow {
                src,
                dst,
                vid,
                slot,
                tagged: key.tagged(),
                seen_packets: c.packets,
                seen_bytes: c.bytes,
            },
        );
        self.stats.installed += 1;
    }

    /// Once a second: checks each port's redirect ([`FlowCache::recheck_redirects`]), folds
    /// the kernel's hits into the ports' counters, refreshes the source addresses of flows
    /// that saw hits, and frees the slots of removed flows.
    pub(crate) fn sweep(&mut self, stats: &mut [PortStats], fdb: &mut Fdb, now: u64) {
        self.recheck_redirects();
        let backend = &*self.backend;
        let mut fold = |f: &mut Flow| {
            let c = backend.read(f.slot);
            let packets = c.packets.wrapping_sub(f.seen_packets);
            let mut bytes = c.bytes.wrapping_sub(f.seen_bytes);
            f.seen_packets = c.packets;
            f.seen_bytes = c.bytes;
            if f.tagged {
                bytes += 4 * packets;
            }
            if packets > 0 {
                if let Some(s) = stats.get_mut(f.src.0) {
                    s.rx_packets += packets;
                    s.rx_bytes += bytes;
                }
                if let Some(s) = stats.get_mut(f.dst.0) {
                    s.tx_packets += packets;
                    s.tx_bytes += bytes;
                }
            }
            packets
        };
        let mut hits = 0;
        for (k, f) in self.flows.iter_mut() {
            let n = fold(f);
            hits += n;
            if n > 0 {
                fdb.refresh(k.src(), f.vid, f.src, now);
            }
        }
        for (_, mut f) in std::mem::take(&mut self.draining) {
            hits += fold(&mut f);
            self.free.push(f.slot);
        }
        self.stats.hits += hits;
    }

    /// Every flow: (key, source port, destination port, slot), for tests and status.
    pub fn flows(&self) -> Vec<(FlowKey, PortId, PortId, u32)> {
        self.flows
            .iter()
            .map(|(k, f)| (*k, f.src, f.dst, f.slot))
            .collect()
    }

    /// The kernel's ids of the cache's links and maps ([`FlowBackend::kernel_ids`]).
    pub fn kernel_ids(&self) -> (Vec<u32>, Vec<u32>) {
        self.backend.kernel_ids()
    }

    /// The kernel's state of a flow's slot.
    pub fn slot_state(&self, slot: u32) -> SlotCounters {
        self.backend.read(slot)
    }
}

/// Whether the pipeline's decision from `sp` to `dp` may be repeated by the kernel without
/// skipping a per-frame policy. An ingress ACL that looks only at MACs and the VLAN (a
/// vPort's spoof check) decides the same for every frame of a flow, whose key holds both
/// MACs and the outer tag: the flow exists only because the ACL let its first frames pass,
/// and a frame with another source MAC is another flow, left to the pipeline.
fn cacheable(sp: &PortState, dp: &PortState) -> bool {
    let (s, d) = (&sp.cfg, &dp.cfg);
    sp.link_up
        && dp.link_up
        && s.ingress_acl.decided_by_macs_and_vlan()
        && s.rate.is_none()
        && s.learn_limit.is_none()
        && s.learning
        && d.egress_acl.is_empty()
        && (!sp.offloads || dp.offloads)
}

#[cfg(test)]
mod tests;
