//! The pipeline: ingress (the source port's VLAN mode, ACL, rate limit, learning), forwarding
//! (the VLAN-aware table, flooding within the VLAN, no hairpin), egress (each destination's ACL
//! and tagging). It sees batches of frames in the common edge form and writes each destination
//! its own copy, tagged as that port wants; it never knows what NIC a frame came from.

use super::PortId;
use super::counters::{DropReason, PortStats};
use super::fdb::{Fdb, Learned};
use super::io::{Batch, Offload};
use super::packet::{EthFrame, write_retagged};
use super::port::PortConfig;

pub(crate) struct PortState {
    pub cfg: PortConfig,
    /// A NIC is connected and the port is not administratively down.
    pub link_up: bool,
    /// The connected NIC takes segmentation offload.
    pub offloads: bool,
}

/// A frame the pipeline sent, unchanged, to exactly one port it knew its destination on: what
/// the kernel flow cache may take over ([`crate::switch::flowcache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unicast {
    /// The frame's place in the batch.
    pub index: usize,
    pub dst: PortId,
    pub vid: u16,
}

/// The pure part of the switch: ports, table, counters. One owner, no locks.
pub struct Pipeline {
    pub(crate) ports: Vec<Option<PortState>>,
    pub(crate) fdb: Fdb,
    pub(crate) stats: Vec<PortStats>,
    /// Filled by `process` when Some (the flow cache is on): known-unicast frames that went
    /// out byte for byte as they came in.
    pub(crate) unicast: Option<Vec<Unicast>>,
}

impl Pipeline {
    pub fn new(fdb: Fdb) -> Self {
        Pipeline {
            ports: Vec::new(),
            fdb,
            stats: Vec::new(),
            unicast: None,
        }
    }

    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }

    pub fn stats(&self, port: PortId) -> PortStats {
        self.stats.get(port.0).copied().unwrap_or_default()
    }

    /// Adds a port in the first free slot; its link starts down.
    pub fn add_port(&mut self, cfg: PortConfig) -> PortId {
        let slot = self.ports.iter().position(Option::is_none);
        let id = slot.unwrap_or(self.ports.len());
        if let Some(mac) = cfg.mac {
            for vid in 1..=4094u16 {
                if cfg.vlan.carries(vid) {
                    self.fdb.add_static(mac, vid, PortId(id));
                }
            }
        }
        let state = PortState {
            cfg,
            link_up: false,
            offloads: false,
        };
        if slot.is_some() {
            self.ports[id] = Some(state);
        } else {
            self.ports.push(Some(state));
            self.stats.push(PortStats::default());
        }
        PortId(id)
    }

    pub fn remove_port(&mut self, port: PortId) -> Option<PortConfig> {
        let state = self.ports.get_mut(port.0)?.take()?;
        self.fdb.flush_port(port, true);
        self.stats[port.0] = PortStats::default();
        Some(state.cfg)
    }

    /// Replaces a port's configuration in place; the caller sets its link again (admin down
    /// may have changed). A changed address or VLAN mode forgets what the port learned and
    /// pins the address anew. False when there is no such port.
    pub fn set_port_config(&mut self, port: PortId, cfg: PortConfig) -> bool {
        let Some(Some(p)) = self.ports.get_mut(port.0) else {
            return false;
        };
        let moved = p.cfg.mac != cfg.mac || p.cfg.vlan != cfg.vlan;
        p.cfg = cfg;
        if moved {
            let (mac, vlan) = (p.cfg.mac, p.cfg.vlan.clone());
            self.fdb.flush_port(port, true);
            if let Some(mac) = mac {
                for vid in 1..=4094u16 {
                    if vlan.carries(vid) {
                        self.fdb.add_static(mac, vid, port);
                    }
                }
            }
        }
        true
    }

    /// Whether the port's NIC takes segmentation offload.
    pub(crate) fn offloads(&self, port: PortId) -> bool {
        matches!(self.ports.get(port.0), Some(Some(p)) if p.offloads)
    }

    pub fn port_config(&self, port: PortId) -> Option<&PortConfig> {
        self.ports.get(port.0)?.as_ref().map(|p| &p.cfg)
    }

    /// Link up (a NIC was connected) or down (disconnected). Down forgets what the port learned.
    pub fn set_link(&mut self, port: PortId, up: bool, offloads: bool) {
        if let Some(Some(p)) = self.ports.get_mut(port.0) {
            p.link_up = up && !p.cfg.admin_down;
            p.offloads = offloads;
            if !up {
                self.fdb.flush_port(port, false);
            }
        }
    }

    pub fn link_up(&self, port: PortId) -> bool {
        matches!(self.ports.get(port.0), Some(Some(p)) if p.link_up)
    }

    /// Runs one batch from `src` through the pipeline, appending each frame's copies to the
    /// destinations' batches in `tx` (indexed by port; at least as many as ports). `now` is
    /// nanoseconds on a monotonic clock.
    pub fn process(&mut self, src: PortId, rx: &Batch, now: u64, tx: &mut [Batch]) {
        let Pipeline {
            ports,
            fdb,
            stats,
            unicast,
        } = self;
        if !matches!(ports.get(src.0), Some(Some(_))) {
            return;
        }
        for (index, (bytes, offload)) in rx.iter().enumerate() {
            let sp = ports[src.0].as_mut().expect("checked above");
            let Some((frame, vid, pcp)) = ingress(sp, &mut stats[src.0], fdb, src, bytes, now)
            else {
                continue;
            };
            let hop = Hop {
                src,
                hairpin: sp.cfg.hairpin,
                frame,
                vid,
                pcp,
                offload,
            };
            let dmac = frame.dst();
            let known = if dmac.is_multicast() {
                None
            } else {
                fdb.lookup(dmac, vid)
            };
            match known {
                Some(dst) => {
                    if forward(ports, stats, tx, dst, &hop)
                        && let Some(list) = unicast.as_mut()
                        && sent_unchanged(&tx[dst.0], bytes, offload)
                    {
                        list.push(Unicast { index, dst, vid });
                    }
                }
                None => flood(ports, stats, tx, &hop),
            }
        }
    }
}

/// One admitted frame on its way out: where it came from and how ingress classified it.
struct Hop<'a> {
    src: PortId,
    /// The source port sends frames back out of itself.
    hairpin: bool,
    frame: EthFrame<'a>,
    vid: u16,
    pcp: u8,
    offload: Offload,
}

/// The source port's half: counts the frame, then checks it in order (link, form, VLAN
/// mode, ACL, rate limit; a refusal is counted as its drop reason) and learns its source
/// address. The frame with its VLAN and priority when it may go on.
#[inline]
fn ingress<'a>(
    sp: &mut PortState,
    st: &mut PortStats,
    fdb: &mut Fdb,
    src: PortId,
    bytes: &'a [u8],
    now: u64,
) -> Option<(EthFrame<'a>, u16, u8)> {
    st.rx_packets += 1;
    st.rx_bytes += bytes.len() as u64;
    let (frame, vid, pcp) = match admit(sp, bytes, now) {
        Ok(admitted) => admitted,
        Err(reason) => {
            st.drop(reason);
            return None;
        }
    };
    let smac = frame.src();
    if sp.cfg.learning
        && !smac.is_multicast()
        && fdb.learn(smac, vid, src, now, sp.cfg.learn_limit) == Learned::LimitReached
    {
        st.learn_limited += 1;
    }
    Some((frame, vid, pcp))
}

/// Ingress's checks, in the order their drops are counted.
#[inline]
fn admit<'a>(
    sp: &mut PortState,
    bytes: &'a [u8],
    now: u64,
) -> Result<(EthFrame<'a>, u16, u8), DropReason> {
    if !sp.link_up {
        return Err(DropReason::LinkDown);
    }
    let Ok(frame) = EthFrame::new_checked(bytes) else {
        return Err(DropReason::Malformed);
    };
    if frame.is_service_tagged() {
        return Err(DropReason::Vlan);
    }
    let Some((vid, pcp)) = sp.cfg.vlan.ingress(frame.tag(), sp.cfg.default_pcp) else {
        return Err(DropReason::Vlan);
    };
    if !sp.cfg.ingress_acl.allows(&frame, vid) {
        return Err(DropReason::AclIngress);
    }
    if let Some(bucket) = sp.cfg.rate.as_mut()
        && !bucket.admit(bytes.len(), now)
    {
        return Err(DropReason::RateLimit);
    }
    Ok((frame, vid, pcp))
}

/// A known destination: its egress, unless it is the source (without hairpin), gone, or
/// down. True when the frame went into its batch.
#[inline]
fn forward(
    ports: &[Option<PortState>],
    stats: &mut [PortStats],
    tx: &mut [Batch],
    dst: PortId,
    hop: &Hop<'_>,
) -> bool {
    if dst == hop.src && !hop.hairpin {
        stats[hop.src.0].drop(DropReason::NoDestination);
        return false;
    }
    let Some(Some(dp)) = ports.get(dst.0) else {
        stats[hop.src.0].drop(DropReason::NoDestination);
        return false;
    };
    if !dp.link_up {
        stats[dst.0].drop(DropReason::LinkDown);
        return false;
    }
    let out = &mut tx[dst.0];
    egress(
        dp,
        &mut stats[dst.0],
        out,
        &hop.frame,
        hop.vid,
        hop.pcp,
        hop.offload,
        false,
    )
}

/// Whether the copy just put last into `out` is the frame as it came in (`bytes`, `offload`):
/// then the kernel flow cache may repeat it. write_retagged copies everything after the tag
/// verbatim, so the same length and the same first 18 bytes mean the same frame.
#[inline]
fn sent_unchanged(out: &Batch, bytes: &[u8], offload: Offload) -> bool {
    let copy = out.frame(out.len() - 1);
    let head = bytes.len().min(18);
    copy.len() == bytes.len()
        && copy[..head] == bytes[..head]
        && out.offload(out.len() - 1) == offload
}

/// An unknown or multicast destination: a copy to every other port up in the frame's VLAN
/// (and back to the source with hairpin); no such port is a drop at the source.
#[inline]
fn flood(ports: &[Option<PortState>], stats: &mut [PortStats], tx: &mut [Batch], hop: &Hop<'_>) {
    let mut any = false;
    for (i, dp) in ports.iter().enumerate() {
        let Some(dp) = dp else { continue };
        if (i == hop.src.0 && !hop.hairpin) || !dp.link_up || !dp.cfg.vlan.carries(hop.vid) {
            continue;
        }
        any = true;
        let (frame, vid, pcp, offload) = (&hop.frame, hop.vid, hop.pcp, hop.offload);
        egress(
            dp,
            &mut stats[i],
            &mut tx[i],
            frame,
            vid,
            pcp,
            offload,
            true,
        );
    }
    if !any {
        stats[hop.src.0].drop(DropReason::NoDestination);
    }
}

/// The destination's half: its egress ACL, its tagging, the copy into its batch. True when
/// the frame went into the batch. (The frame's facts come as arguments, not as the `Hop`:
/// read through a reference they cost egress 12% more instructions, by callgrind.)
#[allow(clippy::too_many_arguments)]
#[inline]
fn egress(
    dp: &PortState,
    st: &mut PortStats,
    out: &mut Batch,
    frame: &EthFrame<'_>,
    vid: u16,
    pcp: u8,
    offload: Offload,
    flooded: bool,
) -> bool {
    if !dp.cfg.egress_acl.allows(frame, vid) {
        st.drop(DropReason::AclEgress);
        return false;
    }
    if !offload.is_none() && !dp.offloads {
        st.drop(DropReason::Offload);
        return false;
    }
    let tag = dp.cfg.vlan.egress(vid, pcp);
    let delta = (tag.is_some() as isize - frame.tag().is_some() as isize) * 4;
    let len = frame.bytes().len() + 4;
    out.push_with(len, offload.shifted(delta), |buf| {
        Some(write_retagged(*frame, tag, buf))
    });
    if flooded {
        st.tx_flooded += 1;
    }
    true
}
