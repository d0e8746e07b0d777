//! AF_PACKET on an existing netdev (veth, PF, VF): the switch's NIC edge for devices it does
//! not create. Receive and transmit go through TPACKET_V2 rings shared with the kernel (about
//! 30 % faster than recvmmsg on veth; V3's block timeout would add latency). With the
//! virtio-net header on (PACKET_VNET_HDR), GSO super-packets and partial checksums pass
//! through untouched, which is what keeps TCP alive through a user-space switch on veth.
//!
//! The kernel strips a received 802.1Q tag into the ring's metadata; the edge puts it back in
//! the frame, so the pipeline sees tags where they were on the wire.
//!
//! Slots are small (2 KiB) even with the virtio-net header: a 64-byte frame then touches one
//! slot of a dense ring, and a ring of 8,192 slots rides out the worker being descheduled for
//! tens of milliseconds on a busy host (slots sized for 64 KiB super-packets held 512 frames in
//! 35 MiB, and lost most of a 64-byte flood). A frame too big for a slot takes the socket's
//! side door both ways: on receive the kernel queues the whole packet on the socket and marks
//! its (truncated) slot TP_STATUS_COPY (PACKET_COPY_THRESH), and the edge reads it with
//! recvmsg in ring order; on send the edge kicks the ring first, then sends the frame with
//! sendmsg, so order is kept.
//!
//! [`RawSocket`] is the plain socket flavour, one frame per call, for test peers and tools.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::switch::io::{Batch, Edge, Offload};
use crate::switch::packet::TPID_8021Q;

/// Errors opening a packet socket.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// No such interface in this network namespace.
    #[error("there is no network interface {ifname} (in this network namespace)")]
    NoInterface { ifname: String },
    /// A step of setting the socket up failed.
    #[error("cannot {step} for AF_PACKET on {ifname} (AF_PACKET needs CAP_NET_RAW)")]
    Setup {
        ifname: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// `struct virtio_net_hdr`, as the kernel puts it in front of each frame.
const VNET_HDR_LEN: usize = Offload::VIRTIO_LEN;

fn setsockopt<T>(fd: RawFd, level: i32, opt: i32, val: &T) -> std::io::Result<()> {
    // SAFETY: `val` points to a live, initialized T for the duration of the call, and the
    // length passed is exactly its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (val as *const T).cast::<c_void>(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A non-blocking AF_PACKET socket bound to `ifindex` for every protocol, not yet receiving
/// until bound (protocol 0 at creation, so no frame of another interface slips in first).
fn open_socket(ifname: &str) -> Result<(OwnedFd, i32), AfPacketError> {
    let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(|_| AfPacketError::NoInterface {
        ifname: ifname.to_string(),
    })? as i32;
    new_socket(ifname, ifindex)
}

/// The socket of [`open_socket`] for an interface already known by index.
fn new_socket(ifname: &str, ifindex: i32) -> Result<(OwnedFd, i32), AfPacketError> {
    // SAFETY: plain socket(2) call; the result is checked before it is wrapped.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(AfPacketError::Setup {
            ifname: ifname.to_string(),
            step: "create the socket",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, ifindex))
}

fn bind_all(fd: RawFd, ifindex: i32) -> std::io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value to fill in.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: sll is a fully initialized sockaddr_ll and the length is its size.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The send-only socket of an edge: bound to the interface with protocol 0, so the kernel
/// delivers nothing to it, with the edge's virtio-net header setting and qdisc bypass.
fn direct_socket(ifname: &str, ifindex: i32, vnet_hdr: bool) -> Result<OwnedFd, AfPacketError> {
    let (fd, _) = new_socket(ifname, ifindex)?;
    let raw = fd.as_raw_fd();
    let step = |step: &'static str| {
        move |source| AfPacketError::Setup {
            ifname: ifname.to_string(),
            step,
            source,
        }
    };
    if vnet_hdr {
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &1i32)
            .map_err(step("enable the virtio-net header on the send socket"))?;
    }
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &1i32)
        .map_err(step("bypass the qdisc on the send socket"))?;
    let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &(32i32 << 20));
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value to fill in.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex;
    // SAFETY: sll is a fully initialized sockaddr_ll and the length is its size.
    let rc = unsafe {
        libc::bind(
            raw,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(step("bind the send socket")(std::io::Error::last_os_error()));
    }
    Ok(fd)
}

fn promisc(fd: RawFd, ifindex: i32) -> std::io::Result<()> {
    let mreq = libc::packet_mreq {
        mr_ifindex: ifindex,
        mr_type: libc::PACKET_MR_PROMISC as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
}

/// Ring geometry.
#[derive(Debug, Clone, Copy)]
pub struct RingSize {
    pub frames: u32,
    pub frame_size: u32,
}

impl RingSize {
    /// Plain frames up to a 1,500-byte MTU (and a tag). Frame sizes are powers of two below
    /// 64 KiB or whole pages.
    pub const SMALL: RingSize = RingSize {
        frames: 1024,
        frame_size: 2048,
    };
    /// With the virtio-net header (GSO super-packets up to 64 KiB): MTU-sized slots, deep
    /// (16 MiB per ring); bigger frames go through the socket queue (see the module doc).
    pub const GSO: RingSize = RingSize {
        frames: 8192,
        frame_size: 2048,
    };
}

/// The ring-based edge.
pub struct AfPacket {
    fd: OwnedFd,
    /// A second socket without rings, bound for sending only: a socket with a TX ring sends
    /// only its ring's slots, so frames too big for a slot go out through this one.
    direct: OwnedFd,
    map: *mut u8,
    map_len: usize,
    size: RingSize,
    rx_head: u32,
    tx_head: u32,
    vnet: bool,
    /// The netdev the rings are bound to, to tell a deleted device from a passing error.
    ifindex: i32,
    /// For the kernel flow cache (host::tcflow): the receive counter whose filter saw every
    /// frame before the ring did, slots handed back, and frames the kernel dropped for want
    /// of a slot (PACKET_STATISTICS, read when a slot says TP_STATUS_LOSING).
    counter: Option<crate::host::tcflow::RxCounter>,
    rx_slots: u64,
    rx_lost: u64,
}

// SAFETY: the mapping is owned by this value alone and only touched through &mut self; moving
// it to another thread moves that exclusive ownership with it.
unsafe impl Send for AfPacket {}

/// Rings made by [`AfPacket::spare`], waiting for their netdev.
pub struct SpareRing(AfPacket);

impl SpareRing {
    /// The edge on the netdev `ifindex`, as [`AfPacket::open_index`] (or `_counted`, as the
    /// spare was made) would have opened it.
    pub fn bind(self, ifindex: u32) -> Result<AfPacket, AfPacketError> {
        let ifname = crate::host::netdev_name(ifindex).map_err(|_| AfPacketError::NoInterface {
            ifname: format!("with index {ifindex}"),
        })?;
        let mut edge = self.0;
        edge.direct = direct_socket(&ifname, ifindex as i32, edge.vnet)?;
        edge.bound(ifindex as i32, &ifname)
    }
}

/// The slot's frame did not fit; the whole packet waits on the socket's receive queue.
const TP_STATUS_COPY: u32 = 1 << 1;
/// `PACKET_COPY_THRESH`: turns the receive queue side door on.
const PACKET_COPY_THRESH: i32 = 7;
/// Largest frame read through the side door: a 64 KiB super-packet, its header and a tag.
const MAX_COPY: usize = 65536 + 64;

/// Where a transmitted frame's data starts in its slot (TPACKET2_HDRLEN minus the address).
const TX_DATA_OFF: usize = libc::TPACKET2_HDRLEN - std::mem::size_of::<libc::sockaddr_ll>();

/// A setup step that failed: what it was, and the kernel's answer.
type StepFailure = (&'static str, std::io::Error);

/// The socket's options before its rings: TPACKET_V2, the virtio-net header when asked,
/// PACKET_LOSS, PACKET_COPY_THRESH, and big socket buffers (best effort).
fn socket_options(raw: RawFd, vnet_hdr: bool) -> Result<(), StepFailure> {
    setsockopt(
        raw,
        libc::SOL_PACKET,
        libc::PACKET_VERSION,
        &(libc::tpacket_versions::TPACKET_V2 as i32),
    )
    .map_err(|e| ("select TPACKET_V2", e))?;
    if vnet_hdr {
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &1i32)
            .map_err(|e| ("enable the virtio-net header", e))?;
    }
    // Frames the kernel cannot send are skipped instead of stalling the TX ring.
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_LOSS, &1i32)
        .map_err(|e| ("set PACKET_LOSS", e))?;
    // Frames bigger than a slot come whole through the socket queue, which needs room
    // for a burst of super-packets (the forced variant needs CAP_NET_ADMIN).
    setsockopt(raw, libc::SOL_PACKET, PACKET_COPY_THRESH, &1i32)
        .map_err(|e| ("set PACKET_COPY_THRESH", e))?;
    let big = 32i32 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        let _ = setsockopt(raw, libc::SOL_SOCKET, opt, &big);
    }
    Ok(())
}

/// Sets up the receive and transmit rings of `size` and maps both, back to back: the
/// mapping and its length.
fn map_rings(raw: RawFd, size: RingSize) -> Result<(*mut u8, usize), StepFailure> {
    // Blocks are whole pages holding whole frames, so the slots lie back to back.
    let block = if size.frame_size.is_multiple_of(4096) {
        size.frame_size
    } else {
        65536
    };
    let req = libc::tpacket_req {
        tp_block_size: block,
        tp_block_nr: size.frames * size.frame_size / block,
        tp_frame_size: size.frame_size,
        tp_frame_nr: size.frames,
    };
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
        .map_err(|e| ("set up the receive ring", e))?;
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_TX_RING, &req)
        .map_err(|e| ("set up the transmit ring", e))?;
    let map_len = 2 * size.frames as usize * size.frame_size as usize;
    // SAFETY: mapping the socket's rings as the packet(7) ABI prescribes: shared,
    // read-write, the exact size of both rings; the result is checked for MAP_FAILED.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            raw,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(("map the rings", std::io::Error::last_os_error()));
    }
    Ok((map.cast(), map_len))
}

/// Loads the flow cache's receive counter and attaches it to the socket before it is bound,
/// so that it counts every frame the ring gets.
fn attach_counter(
    raw: RawFd,
    ifname: &str,
) -> Result<crate::host::tcflow::RxCounter, AfPacketError> {
    let counter = crate::host::tcflow::RxCounter::new().map_err(|e| AfPacketError::Setup {
        ifname: ifname.to_string(),
        step: "load the receive counter",
        source: std::io::Error::other(e),
    })?;
    setsockopt(
        raw,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_BPF,
        &counter.count_prog(),
    )
    .map_err(|source| AfPacketError::Setup {
        ifname: ifname.to_string(),
        step: "attach the receive counter",
        source,
    })?;
    Ok(counter)
}

/// The last steps: our own transmissions kept off the receive ring, the qdisc bypassed,
/// the interface promiscuous, the socket bound to it.
fn bind_edge(raw: RawFd, ifindex: i32) -> Result<(), StepFailure> {
    // Our own transmissions would otherwise come back on the receive ring.
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32)
        .map_err(|e| ("ignore outgoing frames", e))?;
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &1i32)
        .map_err(|e| ("bypass the qdisc", e))?;
    promisc(raw, ifindex).map_err(|e| ("make the interface promiscuous", e))?;
    bind_all(raw, ifindex).map_err(|e| ("bind to the interface", e))
}

impl AfPacket {
    /// Opens rings on `ifname`. With `vnet_hdr`, frames carry segmentation offload both ways
    /// (use [`RingSize::GSO`]); the interface should be up.
    pub fn open(ifname: &str, vnet_hdr: bool, size: RingSize) -> Result<Self, AfPacketError> {
        let (fd, ifindex) = open_socket(ifname)?;
        Self::setup(fd, ifindex, ifname, vnet_hdr, size, false)
    }

    /// Opens rings on the netdev with index `ifindex`: how the daemon opens an uplink it
    /// found by PCI address, so a rename between discovery and opening cannot redirect it.
    pub fn open_index(ifindex: u32, vnet_hdr: bool, size: RingSize) -> Result<Self, AfPacketError> {
        let ifname = crate::host::netdev_name(ifindex).map_err(|_| AfPacketError::NoInterface {
            ifname: format!("with index {ifindex}"),
        })?;
        let (fd, _) = new_socket(&ifname, ifindex as i32)?;
        Self::setup(fd, ifindex as i32, &ifname, vnet_hdr, size, false)
    }

    /// [`AfPacket::open_index`] for a port the kernel flow cache may serve: a counting socket
    /// filter (host::tcflow::RxCounter) is attached before the socket is bound, so the cache
    /// can tell when the ring holds nothing the switch has not forwarded.
    pub fn open_index_counted(
        ifindex: u32,
        vnet_hdr: bool,
        size: RingSize,
    ) -> Result<Self, AfPacketError> {
        let ifname = crate::host::netdev_name(ifindex).map_err(|_| AfPacketError::NoInterface {
            ifname: format!("with index {ifindex}"),
        })?;
        let (fd, _) = new_socket(&ifname, ifindex as i32)?;
        Self::setup(fd, ifindex as i32, &ifname, vnet_hdr, size, true)
    }

    fn setup(
        fd: OwnedFd,
        ifindex: i32,
        ifname: &str,
        vnet_hdr: bool,
        size: RingSize,
        counted: bool,
    ) -> Result<Self, AfPacketError> {
        let direct = direct_socket(ifname, ifindex, vnet_hdr)?;
        let edge = Self::rings(fd, direct, ifname, vnet_hdr, size, counted)?;
        edge.bound(ifindex, ifname)
    }

    /// Rings made ahead of their netdev, for [`SpareRing::bind`]: setting up a ring waits
    /// for an RCU grace period (the kernel's `packet_set_ring` calls `synchronize_net`, once
    /// per ring), tens of milliseconds on a loaded host, which a spare pays before anyone
    /// waits for it. Unbound (protocol 0), the socket receives nothing meanwhile.
    pub fn spare(
        vnet_hdr: bool,
        size: RingSize,
        counted: bool,
    ) -> Result<SpareRing, AfPacketError> {
        let (fd, _) = new_socket("a spare ring", 0)?;
        // A stand-in for the send socket, replaced by the netdev's own when bound: not a
        // packet socket, whose close would wait for a grace period again.
        let direct = std::os::unix::net::UnixDatagram::unbound()
            .map(OwnedFd::from)
            .map_err(|source| AfPacketError::Setup {
                ifname: "a spare ring".into(),
                step: "create the send socket's stand-in",
                source,
            })?;
        Self::rings(fd, direct, "a spare ring", vnet_hdr, size, counted).map(SpareRing)
    }

    /// Binds finished rings to `ifindex`.
    fn bound(mut self, ifindex: i32, ifname: &str) -> Result<Self, AfPacketError> {
        bind_edge(self.fd.as_raw_fd(), ifindex).map_err(|(step, source)| AfPacketError::Setup {
            ifname: ifname.to_string(),
            step,
            source,
        })?;
        self.ifindex = ifindex;
        Ok(self)
    }

    /// The socket's options, rings and (when `counted`) receive counter, not yet bound.
    fn rings(
        fd: OwnedFd,
        direct: OwnedFd,
        ifname: &str,
        vnet_hdr: bool,
        size: RingSize,
        counted: bool,
    ) -> Result<Self, AfPacketError> {
        let raw = fd.as_raw_fd();
        let step = |step: &'static str| {
            move |source| AfPacketError::Setup {
                ifname: ifname.to_string(),
                step,
                source,
            }
        };
        let failed = |(what, source)| step(what)(source);
        socket_options(raw, vnet_hdr).map_err(failed)?;
        let (map, map_len) = map_rings(raw, size).map_err(failed)?;
        let mut edge = AfPacket {
            fd,
            direct,
            map,
            map_len,
            size,
            rx_head: 0,
            tx_head: 0,
            vnet: vnet_hdr,
            ifindex: 0,
            counter: None,
            rx_slots: 0,
            rx_lost: 0,
        };
        if counted {
            edge.counter = Some(attach_counter(raw, ifname)?);
        }
        Ok(edge)
    }

    fn slot(&self, tx: bool, i: u32) -> *mut u8 {
        let ring = if tx { self.size.frames as usize } else { 0 };
        // SAFETY: i < frames, so the offset stays inside the mapping of 2 * frames slots.
        unsafe {
            self.map
                .add((ring + i as usize) * self.size.frame_size as usize)
        }
    }
}

impl AfPacket {
    /// Asks the kernel to transmit the slots marked SEND_REQUEST: one system call per batch.
    fn kick(&self) -> std::io::Result<()> {
        // SAFETY: a zero-length send on our own socket: it asks the kernel to transmit
        // the slots marked SEND_REQUEST and touches no user memory.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends a frame too big for a slot (a GSO super-packet) through the socket itself, with
    /// its virtio-net header in front. False when the kernel would not take it now.
    fn send_direct(&self, frame: &[u8], offload: Offload) -> bool {
        let hdr = offload.to_virtio();
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut c_void,
                iov_len: if self.vnet { VNET_HDR_LEN } else { 0 },
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: msghdr is plain old data, zeroed then pointed at `iov`, whose two buffers
        // live across the call; sendmsg only reads them.
        let rc = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = 2;
            libc::sendmsg(self.direct.as_raw_fd(), &msg, libc::MSG_DONTWAIT)
        };
        rc >= 0
    }

    /// Reads the packet of a TP_STATUS_COPY slot from the socket queue (the kernel queued it
    /// before publishing the slot, so it is there, in ring order), putting back its VLAN tag.
    fn recv_copy(&mut self, batch: &mut Batch, vlan: Option<(u16, u16)>) {
        let fd = self.fd.as_raw_fd();
        let vnet = self.vnet;
        let mut hdr = [0u8; VNET_HDR_LEN];
        let mut offload = Offload::default();
        let got = batch.push_with(MAX_COPY, Offload::default(), |buf| {
            // With a tag to restore, the frame lands 4 bytes in, and only its 12 address
            // bytes move to make room for the tag.
            let at = if vlan.is_some() { 4 } else { 0 };
            let iov = [
                libc::iovec {
                    iov_base: hdr.as_mut_ptr().cast(),
                    iov_len: if vnet { VNET_HDR_LEN } else { 0 },
                },
                libc::iovec {
                    iov_base: buf[at..].as_mut_ptr().cast(),
                    iov_len: buf.len() - at,
                },
            ];
            // SAFETY: msghdr is plain old data, zeroed then pointed at `iov`, whose buffers
            // (`hdr` and the batch's slice) are live and writable for their lengths.
            let n = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = 2;
                libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT)
            };
            let vlen = if vnet { VNET_HDR_LEN } else { 0 };
            if n < (vlen + 12) as isize {
                return None;
            }
            let len = n as usize - vlen;
            if vnet {
                offload = Offload::from_virtio(&hdr);
            }
            match vlan {
                Some((tpid, tci)) => {
                    buf.copy_within(4..16, 0);
                    buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                    buf[14..16].copy_from_slice(&tci.to_be_bytes());
                    offload = offload.shifted(4);
                    Some(len + 4)
                }
                None => Some(len),
            }
        });
        if got.is_some() {
            batch.set_last_offload(offload);
        }
    }
}

/// Frames the kernel dropped for want of a ring slot since the last call (reading resets them).
fn take_drops(fd: RawFd) -> u64 {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `st`, a live tpacket_stats.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if rc == 0 { u64::from(st.tp_drops) } else { 0 }
}

/// Reads a slot's status with acquire ordering: the kernel hands the slot over by writing it.
fn status(hdr: *mut u8) -> u32 {
    // SAFETY: hdr points at a tpacket2_hdr at the start of a slot inside the live mapping;
    // tp_status is its first field, 4-byte aligned (slots are 16-byte aligned).
    let s = unsafe { &*(hdr as *const std::sync::atomic::AtomicU32) };
    s.load(std::sync::atomic::Ordering::Acquire)
}

fn set_status(hdr: *mut u8, v: u32) {
    // SAFETY: as in `status`.
    let s = unsafe { &*(hdr as *const std::sync::atomic::AtomicU32) };
    s.store(v, std::sync::atomic::Ordering::Release);
}

impl Edge for AfPacket {
    fn kind(&self) -> &'static str {
        "af_packet"
    }

    fn recv(&mut self, batch: &mut Batch) -> std::io::Result<()> {
        self.rx_done(); // everything handed out before this call has been forwarded by now
        while !batch.is_full() {
            let slot = self.slot(false, self.rx_head);
            let st = status(slot);
            if st & libc::TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the kernel handed this slot to user space (TP_STATUS_USER, acquired
            // above); it holds a tpacket2_hdr and, at tp_mac, tp_snaplen frame bytes, all
            // inside the slot. The slot is not handed back until we are done reading.
            let (hdr, data, vnet) = unsafe {
                let hdr = std::ptr::read(slot as *const libc::tpacket2_hdr);
                let data = std::slice::from_raw_parts(
                    slot.add(usize::from(hdr.tp_mac)),
                    hdr.tp_snaplen as usize,
                );
                let vnet = self.vnet.then(|| {
                    Offload::from_virtio(std::slice::from_raw_parts(
                        slot.add(usize::from(hdr.tp_mac) - VNET_HDR_LEN),
                        VNET_HDR_LEN,
                    ))
                });
                (hdr, data, vnet)
            };
            let vlan = (st & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
                let tpid = if st & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    hdr.tp_vlan_tpid
                } else {
                    TPID_8021Q
                };
                (tpid, hdr.tp_vlan_tci)
            });
            self.rx_slots += 1;
            if st & libc::TP_STATUS_LOSING != 0 && self.counter.is_some() {
                self.rx_lost += take_drops(self.fd.as_raw_fd());
            }
            if st & TP_STATUS_COPY != 0 {
                // Hand the slot back first: its data is truncated, the packet is queued.
                set_status(slot, libc::TP_STATUS_KERNEL);
                self.rx_head = (self.rx_head + 1) % self.size.frames;
                self.recv_copy(batch, vlan);
                continue;
            }
            if hdr.tp_snaplen == hdr.tp_len && data.len() >= 12 {
                let mut offload = vnet.unwrap_or_default();
                if let Some((tpid, tci)) = vlan {
                    offload = offload.shifted(4);
                    batch.push_with(data.len() + 4, offload, |buf| {
                        buf[..12].copy_from_slice(&data[..12]);
                        buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                        buf[14..16].copy_from_slice(&tci.to_be_bytes());
                        buf[16..].copy_from_slice(&data[12..]);
                        Some(data.len() + 4)
                    });
                } else {
                    batch.push(data, offload);
                }
            }
            set_status(slot, libc::TP_STATUS_KERNEL);
            self.rx_head = (self.rx_head + 1) % self.size.frames;
        }
        Ok(())
    }

    fn send(&mut self, batch: &Batch) -> std::io::Result<usize> {
        let room = self.size.frame_size as usize - TX_DATA_OFF;
        let mut queued = 0;
        let mut pending = 0;
        for (frame, offload) in batch.iter() {
            let vlen = if self.vnet { VNET_HDR_LEN } else { 0 };
            if frame.len() + vlen > room {
                // What the ring holds goes first, so the big frame keeps its place.
                if pending > 0 {
                    self.kick()?;
                    pending = 0;
                }
                if self.send_direct(frame, offload) {
                    queued += 1;
                }
                continue;
            }
            let slot = self.slot(true, self.tx_head);
            if status(slot) != libc::TP_STATUS_AVAILABLE {
                break; // ring full: the rest of the batch is dropped
            }
            // SAFETY: the slot is ours (TP_STATUS_AVAILABLE); we write the frame at the TX
            // data offset, inside the slot (checked against `room` above), then the length,
            // then hand it to the kernel with a release store of the status.
            unsafe {
                let data =
                    std::slice::from_raw_parts_mut(slot.add(TX_DATA_OFF), vlen + frame.len());
                if self.vnet {
                    data[..VNET_HDR_LEN].copy_from_slice(&offload.to_virtio());
                }
                data[vlen..].copy_from_slice(frame);
                let hdr = slot as *mut libc::tpacket2_hdr;
                (*hdr).tp_len = (vlen + frame.len()) as u32;
            }
            set_status(slot, libc::TP_STATUS_SEND_REQUEST);
            self.tx_head = (self.tx_head + 1) % self.size.frames;
            queued += 1;
            pending += 1;
        }
        if pending > 0 {
            self.kick()?;
        }
        Ok(queued)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn offloads(&self) -> bool {
        self.vnet
    }

    fn rx_done(&mut self) {
        if let Some(c) = &self.counter {
            c.set_consumed(self.rx_slots + self.rx_lost);
        }
    }

    fn kernel_port(&self) -> Option<crate::switch::io::KernelPort> {
        self.counter
            .as_ref()
            .map(|c| crate::switch::io::KernelPort {
                ifindex: self.ifindex as u32,
                rx_counter: c.map_fd(),
            })
    }

    /// Replaces the socket's filter (SO_ATTACH_BPF swaps it atomically: every frame passes
    /// one or the other, and both count what they let in).
    fn set_rx_filter(&mut self, prog: Option<RawFd>) -> std::io::Result<()> {
        let Some(c) = &self.counter else {
            return Err(std::io::Error::from(std::io::ErrorKind::Unsupported));
        };
        let fd = prog.unwrap_or(c.count_prog());
        setsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_BPF,
            &fd,
        )
    }

    /// A packet socket whose netdev is deleted reports ENETDOWN once and keeps its rings;
    /// taking the error clears it, and whether the ifindex still names a device tells a
    /// deleted netdev (gone) from one that went down (it may come back up).
    fn health(&mut self) -> std::io::Result<()> {
        let _ = nix::sys::socket::getsockopt(&self.fd, nix::sys::socket::sockopt::SocketError);
        let _ = nix::sys::socket::getsockopt(&self.direct, nix::sys::socket::sockopt::SocketError);
        let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into `name`, which has that
        // many; it returns NULL when no device has the index. (nix's wrapper reads the
        // buffer even then and answers an empty name.)
        let found = unsafe { libc::if_indextoname(self.ifindex as u32, name.as_mut_ptr()) };
        if found.is_null() {
            return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
        }
        Ok(())
    }
}

impl Drop for AfPacket {
    fn drop(&mut self) {
        // SAFETY: map/map_len are exactly what mmap returned; nothing borrows the mapping
        // once we are being dropped.
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

/// A plain AF_PACKET socket on one interface: one frame per call, 802.1Q tags restored from
/// the kernel's auxiliary data. For test peers and tools, not the data path.
pub struct RawSocket {
    fd: OwnedFd,
}

impl RawSocket {
    pub fn open(ifname: &str) -> Result<Self, AfPacketError> {
        let (fd, ifindex) = open_socket(ifname)?;
        let raw = fd.as_raw_fd();
        let step = |step: &'static str| {
            move |source| AfPacketError::Setup {
                ifname: ifname.to_string(),
                step,
                source,
            }
        };
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_AUXDATA, &1i32)
            .map_err(step("ask for auxiliary data"))?;
        // Room for bursts of a few hundred frames between reads; the forced variant needs
        // CAP_NET_ADMIN, and the ordinary one is the fallback.
        let big = 8i32 << 20;
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &big).is_err() {
            let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &big);
        }
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32)
            .map_err(step("ignore outgoing frames"))?;
        promisc(raw, ifindex).map_err(step("make the interface promiscuous"))?;
        bind_all(raw, ifindex).map_err(step("bind to the interface"))?;
        Ok(RawSocket { fd })
    }

    /// Sends one frame as is.
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        loop {
            // SAFETY: frame is a live slice and its length is passed with it.
            let rc =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if rc >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                crate::host::wait::writable(self.fd.as_raw_fd(), 10);
                continue;
            }
            return Err(e);
        }
    }

    /// The next frame, waiting up to `timeout` for one.
    pub fn recv(&self, timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 65536 + 4];
        let mut cmsg = [0u64; 16];
        let deadline = std::time::Instant::now() + timeout;
        loop {
            // SAFETY: msghdr/iovec are plain old data; zeroed then filled with pointers to
            // `buf` and `cmsg`, which outlive the recvmsg call.
            let (n, aux) = unsafe {
                let mut iov = libc::iovec {
                    iov_base: buf.as_mut_ptr().add(4).cast(),
                    iov_len: buf.len() - 4,
                };
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = cmsg.as_mut_ptr().cast();
                msg.msg_controllen = std::mem::size_of_val(&cmsg);
                let n = libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0);
                let mut aux = None;
                if n >= 0 {
                    let mut c = libc::CMSG_FIRSTHDR(&msg);
                    while !c.is_null() {
                        if (*c).cmsg_level == libc::SOL_PACKET
                            && (*c).cmsg_type == libc::PACKET_AUXDATA
                        {
                            aux = Some(std::ptr::read_unaligned(
                                libc::CMSG_DATA(c) as *const libc::tpacket_auxdata
                            ));
                        }
                        c = libc::CMSG_NXTHDR(&msg, c);
                    }
                }
                (n, aux)
            };
            if n >= 0 {
                let n = n as usize;
                let frame = match aux {
                    Some(a) if a.tp_status & libc::TP_STATUS_VLAN_VALID != 0 && n >= 12 => {
                        let tpid = if a.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                            a.tp_vlan_tpid
                        } else {
                            TPID_8021Q
                        };
                        let mut f = Vec::with_capacity(n + 4);
                        f.extend_from_slice(&buf[4..16]);
                        f.extend(tpid.to_be_bytes());
                        f.extend(a.tp_vlan_tci.to_be_bytes());
                        f.extend_from_slice(&buf[16..4 + n]);
                        f
                    }
                    _ => buf[4..4 + n].to_vec(),
                };
                return Ok(Some(frame));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(e);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            crate::switch::io::wait::readable(
                &[self.fd.as_raw_fd()],
                left.as_millis().min(100) as u16,
            );
        }
    }

    /// Every frame that arrives until none has for `quiet`.
    pub fn drain(&self, quiet: Duration) -> std::io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        while let Some(f) = self.recv(quiet)? {
            out.push(f);
        }
        Ok(out)
    }
}

/// Unicast MACs a netdev accepts besides its own, held by a packet socket that receives
/// nothing (protocol 0): PACKET_MR_UNICAST makes the kernel add each to the device's unicast
/// list, and a driver with unicast filters programs them (igbvf asks its PF for one MAC filter
/// per address). This is how a switch trunk on a VF hears its vPorts' frames, where unicast
/// promiscuous mode is not granted. The addresses belong to the socket: dropping this value
/// or the process dying removes them, and the kernel forgets them when the netdev goes.
pub struct UnicastFilter {
    fd: OwnedFd,
    ifindex: i32,
    macs: std::collections::BTreeSet<[u8; 6]>,
}

impl UnicastFilter {
    /// A filter set, still empty, for the netdev with index `ifindex`.
    pub fn open(ifindex: u32) -> Result<Self, AfPacketError> {
        let ifname = format!("with index {ifindex}");
        let (fd, ifindex) = new_socket(&ifname, ifindex as i32)?;
        Ok(UnicastFilter {
            fd,
            ifindex,
            macs: Default::default(),
        })
    }

    fn request(&self, op: i32, mac: [u8; 6]) -> std::io::Result<()> {
        let mut mreq = libc::packet_mreq {
            mr_ifindex: self.ifindex,
            mr_type: libc::PACKET_MR_UNICAST as u16,
            mr_alen: 6,
            mr_address: [0; 8],
        };
        mreq.mr_address[..6].copy_from_slice(&mac);
        setsockopt(self.fd.as_raw_fd(), libc::SOL_PACKET, op, &mreq)
    }

    /// Adds `mac` to the netdev's unicast list (once, however often it is asked).
    pub fn add(&mut self, mac: [u8; 6]) -> std::io::Result<()> {
        if self.macs.contains(&mac) {
            return Ok(());
        }
        self.request(libc::PACKET_ADD_MEMBERSHIP, mac)?;
        self.macs.insert(mac);
        Ok(())
    }

    /// Takes `mac` off the netdev's unicast list again.
    pub fn remove(&mut self, mac: [u8; 6]) -> std::io::Result<()> {
        if !self.macs.remove(&mac) {
            return Ok(());
        }
        self.request(libc::PACKET_DROP_MEMBERSHIP, mac)
    }

    /// The MACs held now.
    pub fn macs(&self) -> impl Iterator<Item = &[u8; 6]> {
        self.macs.iter()
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex as u32
    }
}
