//! The NIC edge: the one interface every kind of NIC (TAP, AF_PACKET, AF_XDP, in-memory)
//! implements. Each converts its frames to one common form at the edge (an Ethernet frame with
//! its 802.1Q tag in the bytes, plus the virtio-net offload header when the NIC carries
//! segmentation offload), so the pipeline never learns what kind of NIC a frame came from.
//! The kernel-facing edges live in `host/`, the only module that touches the kernel.

pub mod mem;
pub mod wait;

use std::os::fd::RawFd;

/// Frames moved per batch (OVS's and DPDK's batch size).
pub const BATCH: usize = 32;

/// Segmentation and checksum offload state of a frame, as the kernel's virtio-net header
/// carries it (`struct virtio_net_hdr`). Opaque to the pipeline except that a VLAN tag
/// inserted or removed in front of the headers shifts the offsets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offload {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl Offload {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
    pub const NEEDS_CSUM: u8 = 1;

    /// Length of `struct virtio_net_hdr` (without the mergeable-buffers count).
    pub const VIRTIO_LEN: usize = 10;

    /// Reads a `struct virtio_net_hdr` (host byte order, as the kernel's packet and tun
    /// drivers use it). `b` holds at least [`Offload::VIRTIO_LEN`] bytes.
    pub fn from_virtio(b: &[u8]) -> Offload {
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Offload {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// Writes it back in the same form.
    pub fn to_virtio(&self) -> [u8; Self::VIRTIO_LEN] {
        let mut b = [0u8; Self::VIRTIO_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// A plain frame: nothing to segment, checksums complete.
    pub fn is_none(&self) -> bool {
        self.flags == 0 && self.gso_type == 0
    }

    /// The same offload after `delta` bytes were inserted (or removed) before the L3 header.
    pub fn shifted(self, delta: isize) -> Offload {
        if self.is_none() {
            return self;
        }
        let shift = |v: u16| {
            if v == 0 {
                0
            } else {
                v.saturating_add_signed(delta as i16)
            }
        };
        Offload {
            hdr_len: shift(self.hdr_len),
            csum_start: shift(self.csum_start),
            ..self
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    off: usize,
    len: usize,
    offload: Offload,
}

/// Up to [`BATCH`] frames in one pre-allocated buffer, reused batch after batch.
#[derive(Debug)]
pub struct Batch {
    /// Grows to its high-water mark and stays there; `used` bytes of it are live.
    data: Vec<u8>,
    used: usize,
    frames: Vec<Meta>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Self {
        Batch {
            data: vec![0; BATCH * 2048],
            used: 0,
            frames: Vec::with_capacity(BATCH),
        }
    }

    pub fn clear(&mut self) {
        self.used = 0;
        self.frames.clear();
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Whether a receiving edge should stop filling it.
    pub fn is_full(&self) -> bool {
        self.frames.len() >= BATCH
    }

    /// Appends a copy of `frame`.
    pub fn push(&mut self, frame: &[u8], offload: Offload) {
        self.push_with(frame.len(), offload, |buf| {
            buf.copy_from_slice(frame);
            Some(buf.len())
        });
    }

    /// Appends a frame written by `fill` into up to `max` bytes; `fill` returns its length, or
    /// None to append nothing (a read that found no frame).
    pub fn push_with(
        &mut self,
        max: usize,
        offload: Offload,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        let off = self.used;
        if self.data.len() < off + max {
            self.data.resize(off + max, 0);
        }
        let len = fill(&mut self.data[off..off + max])?;
        self.used += len;
        self.frames.push(Meta { off, len, offload });
        Some(len)
    }

    /// Sets the offload of the frame just pushed (edges that read the header with the frame).
    pub fn set_last_offload(&mut self, offload: Offload) {
        if let Some(m) = self.frames.last_mut() {
            m.offload = offload;
        }
    }

    pub fn frame(&self, i: usize) -> &[u8] {
        let m = self.frames[i];
        &self.data[m.off..m.off + m.len]
    }

    pub fn offload(&self, i: usize) -> Offload {
        self.frames[i].offload
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Offload)> {
        self.frames
            .iter()
            .map(|m| (&self.data[m.off..m.off + m.len], m.offload))
    }
}

/// What the kernel flow cache ([`crate::switch::flowcache`]) needs from an edge on a kernel
/// netdev whose received frames reach the edge through a packet tap, before the kernel's tc
/// ingress hook sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPort {
    /// The netdev: where cached flows come in, and where they are redirected to.
    pub ifindex: u32,
    /// The edge's receive counter map (host::tcflow::RxCounter): the frames its socket filter
    /// let into the receive path, and those the edge has handed on, so a program can tell
    /// when nothing the switch has not forwarded yet is waiting.
    pub rx_counter: RawFd,
}

/// A NIC connected to a vPort.
pub trait Edge: Send {
    /// For status and errors: "mem", "tap", "af_packet", "af_xdp".
    fn kind(&self) -> &'static str;

    /// Appends the frames waiting (until the batch is full); returns without blocking.
    fn recv(&mut self, batch: &mut Batch) -> std::io::Result<()>;

    /// Sends the batch; returns how many frames the NIC took (the rest are dropped).
    fn send(&mut self, batch: &Batch) -> std::io::Result<usize>;

    /// A descriptor that polls readable when frames wait, for an idle switch to sleep on.
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    /// Whether frames may carry segmentation offload ([`Offload`]) both ways.
    fn offloads(&self) -> bool {
        false
    }

    /// Whether the NIC behind the edge still exists. Asked when its descriptor reports an
    /// error or hang-up; an error means it is gone for good (the switch takes the port's link
    /// down and stops polling it), so a transient condition must answer `Ok`.
    fn health(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    /// Some when the edge is a kernel netdev the flow cache can serve (opened with a receive
    /// counter); None for every other kind.
    fn kernel_port(&self) -> Option<KernelPort> {
        None
    }

    /// The switch has sent (or dropped) every frame of the last batch this edge received:
    /// an edge serving the flow cache publishes that to its receive counter now rather than
    /// at its next receive, so a flow can turn active before the next frame.
    fn rx_done(&mut self) {}

    /// Puts eBPF socket filter `prog` on the edge's receiving socket, or its own counting
    /// filter back with None. Only for edges that answer [`Edge::kernel_port`].
    fn set_rx_filter(&mut self, prog: Option<RawFd>) -> std::io::Result<()> {
        let _ = prog;
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

/// Whether an error from a NIC edge means its device is gone (deleted netdev, detached TAP)
/// rather than a passing condition (a full ring, a link that is down).
pub fn nic_gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV | libc::ENXIO | libc::EBADFD | libc::EBADF)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_reuses_its_buffer() {
        let mut b = Batch::new();
        b.push(&[1, 2, 3], Offload::default());
        b.push_with(100, Offload::default(), |buf| {
            buf[..2].copy_from_slice(&[9, 9]);
            Some(2)
        });
        assert_eq!(b.push_with(10, Offload::default(), |_| None), None);
        assert_eq!(b.len(), 2);
        assert_eq!(b.frame(0), &[1, 2, 3]);
        assert_eq!(b.frame(1), &[9, 9]);
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn netdev_edge_names() {
        use crate::model::edge::NetdevEdge;
        for k in [NetdevEdge::AfPacket, NetdevEdge::AfXdp, NetdevEdge::Auto] {
            assert_eq!(k.as_str().parse::<NetdevEdge>(), Ok(k));
        }
        let e = "xdp".parse::<NetdevEdge>().unwrap_err();
        assert_eq!(
            e,
            "edge \"xdp\" is not one of \"af_packet\", \"af_xdp\" or \"auto\""
        );
    }

    #[test]
    fn offload_shifts_with_a_tag() {
        let o = Offload {
            flags: Offload::NEEDS_CSUM,
            gso_type: 1,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let s = o.shifted(4);
        assert_eq!((s.hdr_len, s.csum_start, s.csum_offset), (70, 38, 16));
        assert_eq!(Offload::default().shifted(4), Offload::default());
    }
}
