//! AF_XDP on an existing netdev (veth, PF, VF): the switch's NIC edge through XDP sockets, in
//! copy mode (works on every driver; zero-copy needs driver support this project cannot test).
//!
//! Written here with raw syscalls (no XDP crate: licensing): a six-instruction XDP program that
//! redirects every frame to the XDP socket bound to the frame's receive queue (an XSKMAP keyed
//! by `rx_queue_index`) and lets it pass to the kernel stack when no socket is there; the map;
//! one socket per receive queue, each with its own UMEM of 2 KiB chunks and four rings.
//!
//! The program is attached through a BPF link (BPF_LINK_CREATE, attach type BPF_XDP), not
//! through rtnetlink's IFLA_XDP: a link lives as long as its descriptor, so the kernel detaches
//! the program when the edge closes *and* when the process dies, kill -9 included. No program
//! of ours can outlive its run, so a new start never finds a stale one to clean up; a program
//! attached by anything else makes the open fail (EBUSY) and is left alone. Native (driver)
//! mode is tried first, generic (SKB) mode after it.
//!
//! Frames bigger than a chunk: the program is loaded frags-aware (BPF_F_XDP_HAS_FRAGS) and the
//! sockets bound with XDP_USE_SG, so a frame spans several descriptors (XDP_PKT_CONTD) both
//! ways, up to [`MAX_SEGS`] chunks. On kernels without multi-buffer AF_XDP the edge falls back
//! to one chunk per frame, and an MTU that does not fit is refused at open.
//!
//! GSO and checksums: an XDP socket carries no offload metadata ([`Edge::offloads`] is false).
//! In native mode on veth the kernel turns segmentation offload off on the peer while the
//! program is attached (veth_xdp_set), so a sender's TCP arrives in MTU-sized segments; their
//! checksums may still be partial (the peer's checksum offload), which the edge completes
//! ([`complete_partial_checksum`]). In generic mode the peer keeps TSO, super-packets arrive
//! whole, bigger than the edge carries, and bulk TCP collapses (measured: 0.35 Mbit/s against
//! 1.5 Gbit/s native on this machine), so `ModeChoice::Auto` only falls back to generic for
//! drivers without native XDP, where frames come from a real wire (segmented, checksummed).
//! The program's licence string is vportd's own (`bpf::PROGRAM_LICENSE`): bpf_redirect_map is
//! not a GPL-only helper, and the kernel accepting the load says so.
//!
//! Rings (see the kernel's Documentation/networking/af_xdp.rst): each is a power-of-two array
//! with a free-running producer and consumer index shared with the kernel. The kernel produces
//! RX and completion entries and consumes fill and TX entries; we do the opposite. Ordering:
//! a consumer loads the producer index with Acquire before reading the entries it covers (pairs
//! with the producer's Release store after writing them), and stores its consumer index with
//! Release after it is done reading (so the producer may not reuse an entry still being read);
//! a producer loads the consumer index with Acquire before overwriting entries, writes them,
//! then publishes with a Release store of the producer index. Indices wrap at 2^32.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::bpf::{self, BPF_PSEUDO_MAP_FD, Insn, insn};
use crate::host::afpacket::{AfPacket, AfPacketError, RingSize};
use crate::model::edge::NetdevEdge;
use crate::switch::io::{Batch, Edge, Offload};

/// Bytes per UMEM chunk: one frame of a 1,500-byte MTU (plus a tag) after the kernel's
/// XDP headroom; the smallest chunk the kernel accepts, so a 64-byte frame touches little.
pub const CHUNK: usize = 2048;
/// Headroom the kernel leaves in front of a received frame in its chunk (XDP_PACKET_HEADROOM).
const XDP_HEADROOM: usize = 256;
/// Entries in each ring (RX, fill, TX, completion); chunks per socket are twice this.
const RING: u32 = 2048;
/// Most chunks one frame may span: the kernel builds a transmitted multi-buffer frame into
/// one skb of at most MAX_SKB_FRAGS (17) fragments; 16 keeps a margin.
pub const MAX_SEGS: usize = 16;
/// The program's name, as `bpftool prog` shows it (at most 15 bytes).
pub const PROG_NAME: &str = "vportd_xsk";

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;

/// Errors opening an AF_XDP edge. Nothing is left attached or allocated after any of them.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error("there is no network interface {ifname} (in this network namespace)")]
    NoInterface { ifname: String },
    #[error(
        "this kernel does not allow AF_XDP here: cannot {step} ({source}); AF_XDP needs \
         CONFIG_XDP_SOCKETS, CONFIG_BPF_SYSCALL and CAP_NET_ADMIN + CAP_BPF"
    )]
    Unsupported {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {step} for AF_XDP on {ifname} (ifindex {ifindex})")]
    Setup {
        ifname: String,
        ifindex: u32,
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another XDP program is attached to {ifname} (ifindex {ifindex}); vportd leaves it \
         alone: detach it (ip link set dev {ifname} xdp off) or use the af_packet edge"
    )]
    Busy { ifname: String, ifindex: u32 },
    #[error(
        "queue {queue} of {ifname} (ifindex {ifindex}) already has an AF_XDP socket bound \
         (another edge or program uses it); vportd leaves it alone"
    )]
    QueueBusy {
        ifname: String,
        ifindex: u32,
        queue: u32,
    },
    #[error(
        "{ifname} (ifindex {ifindex}) has MTU {mtu}, but AF_XDP here carries frames of at \
         most {max} bytes; lower the MTU or use the af_packet edge"
    )]
    Mtu {
        ifname: String,
        ifindex: u32,
        mtu: u32,
        max: usize,
    },
}

/// Where the program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before an skb exists (veth supports it).
    Native,
    /// After the skb is built (every driver).
    Generic,
}

impl XdpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// Which mode to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeChoice {
    /// Native where the driver supports it, else generic.
    #[default]
    Auto,
    Only(XdpMode),
}

/// The program, for the XSKMAP `map_fd`:
///   r2 = ctx->rx_queue_index            (struct xdp_md offset 16)
///   r1 = map                            (a 64-bit immediate: two instructions)
///   r3 = XDP_PASS                       (bpf_redirect_map's result when the slot is empty)
///   r0 = bpf_redirect_map(r1, r2, r3)
///   exit
fn program(map_fd: RawFd) -> [Insn; 6] {
    [
        insn(0x61, 2, 1, 16, 0),                     // BPF_LDX | BPF_MEM | BPF_W
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // BPF_LD | BPF_DW | BPF_IMM
        insn(0, 0, 0, 0, 0),                         // its upper half
        insn(0xb7, 3, 0, 0, XDP_PASS),               // BPF_ALU64 | BPF_MOV | BPF_K
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),  // BPF_JMP | BPF_CALL
        insn(0x95, 0, 0, 0, 0),                      // BPF_JMP | BPF_EXIT
    ]
}

fn create_map(entries: u32) -> std::io::Result<OwnedFd> {
    bpf::create_map("vportd_xsks", BPF_MAP_TYPE_XSKMAP, 4, 4, entries, 0)
}

fn map_update(map: &OwnedFd, key: u32, value: RawFd) -> std::io::Result<()> {
    let value = value as u32;
    let flags = 0; // BPF_ANY
    bpf::map_elem(
        bpf::BPF_MAP_UPDATE_ELEM,
        map,
        &key.to_ne_bytes(),
        Some(&value.to_ne_bytes()),
        flags,
    )
}

/// Loads the program (see [`bpf`] on its licence).
fn load_program(map: &OwnedFd, frags: bool) -> Result<OwnedFd, (std::io::Error, String)> {
    let flags = if frags { BPF_F_XDP_HAS_FRAGS } else { 0 };
    bpf::load(
        PROG_NAME,
        BPF_PROG_TYPE_XDP,
        flags,
        &program(map.as_raw_fd()),
    )
}

fn attach(prog: &OwnedFd, ifindex: u32, mode: XdpMode) -> std::io::Result<OwnedFd> {
    let flags = match mode {
        XdpMode::Native => XDP_FLAGS_DRV_MODE,
        XdpMode::Generic => XDP_FLAGS_SKB_MODE,
    };
    bpf::link_create(prog, ifindex, BPF_XDP, flags)
}

fn setsockopt<T>(fd: RawFd, opt: i32, val: &T) -> std::io::Result<()> {
    // SAFETY: `val` is a live, initialized T and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
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

/// One mapped ring. `T` is `u64` (fill, completion: chunk addresses) or `xdp_desc`.
struct Ring<T> {
    map: *mut u8,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    desc: *mut T,
    mask: u32,
    /// Our side's index (the producer for fill/TX, the consumer for RX/completion).
    head: u32,
    /// The last seen value of the kernel's index.
    other: u32,
}

impl<T> Ring<T> {
    /// Maps the ring at page offset `pgoff` of `fd`, laid out as `off` says.
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, pgoff: u64) -> std::io::Result<Ring<T>> {
        let map_len = off.desc as usize + RING as usize * std::mem::size_of::<T>();
        // SAFETY: mapping an XDP socket's ring as if_xdp.h prescribes: shared, read-write,
        // its descriptor array's end as length, at the ring's page offset; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let map = map.cast::<u8>();
        // SAFETY: the kernel's offsets lie inside the mapping; producer and consumer are
        // 4-byte aligned u32s the kernel also accesses atomically.
        unsafe {
            Ok(Ring {
                map,
                map_len,
                producer: map.add(off.producer as usize).cast(),
                consumer: map.add(off.consumer as usize).cast(),
                desc: map.add(off.desc as usize).cast(),
                mask: RING - 1,
                head: 0,
                other: 0,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (see `map`), which outlives &self.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`.
        unsafe { &*self.consumer }
    }

    /// Consumer side: entries ready to read (refreshing the producer index when empty).
    fn ready(&mut self) -> u32 {
        if self.other == self.head {
            self.other = self.producer().load(Ordering::Acquire);
        }
        self.other.wrapping_sub(self.head)
    }

    /// Producer side: free entries (refreshing the consumer index when short of `want`).
    fn room(&mut self, want: u32) -> u32 {
        let free = RING - self.head.wrapping_sub(self.other);
        if free >= want {
            return free;
        }
        self.other = self.consumer().load(Ordering::Acquire);
        RING - self.head.wrapping_sub(self.other)
    }

    fn at(&self, i: u32) -> *mut T {
        // SAFETY: masked index < RING, inside the descriptor array of the mapping.
        unsafe { self.desc.add((i & self.mask) as usize) }
    }

    fn read(&self, i: u32) -> T {
        // SAFETY: entry `i` is ours to read (between our head and the acquired producer).
        unsafe { std::ptr::read_volatile(self.at(i)) }
    }

    fn write(&self, i: u32, v: T) {
        // SAFETY: entry `i` is ours to write (between our head and consumer + RING).
        unsafe { std::ptr::write_volatile(self.at(i), v) }
    }

    /// Consumer side: hands entries up to `head` back.
    fn release_consumed(&self) {
        self.consumer().store(self.head, Ordering::Release);
    }

    /// Producer side: publishes entries up to `head`.
    fn publish(&self) {
        self.producer().store(self.head, Ordering::Release);
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`; nothing borrows it past this point.
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

/// One XDP socket on one receive queue, with its own UMEM.
struct Xsk {
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    /// Chunks free for transmission (the other half of the UMEM is lent to the fill ring).
    free: Vec<u64>,
    umem: *mut u8,
    umem_len: usize,
    /// Declared last: closed after the rings are unmapped.
    fd: OwnedFd,
}

impl Drop for Xsk {
    fn drop(&mut self) {
        // SAFETY: the UMEM mapping made in `Xsk::open`; the kernel holds its own pin on the
        // pages until the socket closes, so unmapping our view first is safe.
        unsafe {
            libc::munmap(self.umem.cast(), self.umem_len);
        }
    }
}

fn errno_step(
    ifname: &str,
    ifindex: u32,
    step: impl Into<String>,
) -> impl FnOnce(std::io::Error) -> AfXdpError {
    let (ifname, step) = (ifname.to_string(), step.into());
    move |source| AfXdpError::Setup {
        ifname,
        ifindex,
        step,
        source,
    }
}

/// An AF_XDP socket.
fn xdp_socket() -> Result<OwnedFd, AfXdpError> {
    // SAFETY: plain socket(2); the result is checked before it is wrapped.
    let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(AfXdpError::Unsupported {
            step: "create an AF_XDP socket",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: raw was just returned by socket(2) and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A UMEM mapping not yet handed to an [`Xsk`]: unmapped on an early return.
struct UmemGuard(*mut c_void, usize);

impl UmemGuard {
    /// An anonymous, populated mapping of `len` bytes.
    fn map(len: usize) -> std::io::Result<UmemGuard> {
        // SAFETY: an anonymous private mapping, checked for MAP_FAILED.
        let umem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if umem == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(UmemGuard(umem, len))
    }

    /// The mapping, now owned by the caller (an [`Xsk`] unmaps it when dropped).
    fn release(self) -> (*mut c_void, usize) {
        let (addr, len) = (self.0, self.1);
        std::mem::forget(self);
        (addr, len)
    }
}

impl Drop for UmemGuard {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `UmemGuard::map`, not yet handed to an Xsk.
        unsafe {
            libc::munmap(self.0, self.1);
        }
    }
}

/// Registers the UMEM with the socket, sizes its four rings and maps them: fill,
/// completion, RX, TX. A failure says which step it was.
fn rings(fd: &OwnedFd, umem: &UmemGuard) -> Result<Rings, (&'static str, std::io::Error)> {
    let raw = fd.as_raw_fd();
    let reg = libc::xdp_umem_reg {
        addr: umem.0 as u64,
        len: umem.1 as u64,
        chunk_size: CHUNK as u32,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    setsockopt(raw, libc::XDP_UMEM_REG, &reg).map_err(|e| ("register the UMEM", e))?;
    for (opt, what) in [
        (libc::XDP_UMEM_FILL_RING, "size the fill ring"),
        (libc::XDP_UMEM_COMPLETION_RING, "size the completion ring"),
        (libc::XDP_RX_RING, "size the RX ring"),
        (libc::XDP_TX_RING, "size the TX ring"),
    ] {
        setsockopt(raw, opt, &RING).map_err(|e| (what, e))?;
    }
    let off = mmap_offsets(raw).map_err(|e| ("read the ring offsets", e))?;
    Ok(Rings {
        fill: Ring::map(raw, &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING)
            .map_err(|e| ("map the fill ring", e))?,
        comp: Ring::map(raw, &off.cr, libc::XDP_UMEM_PGOFF_COMPLETION_RING)
            .map_err(|e| ("map the completion ring", e))?,
        rx: Ring::map(raw, &off.rx, libc::XDP_PGOFF_RX_RING as u64)
            .map_err(|e| ("map the RX ring", e))?,
        tx: Ring::map(raw, &off.tx, libc::XDP_PGOFF_TX_RING as u64)
            .map_err(|e| ("map the TX ring", e))?,
    })
}

/// A socket's four rings, mapped.
struct Rings {
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
}

/// Where the kernel put each ring's indexes and descriptors in the socket's mappings.
fn mmap_offsets(raw: RawFd) -> std::io::Result<libc::xdp_mmap_offsets> {
    // SAFETY: xdp_mmap_offsets is plain old data; getsockopt fills at most `len` bytes.
    let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: `off` and `len` are live and writable; len is off's size.
    let rc = unsafe {
        libc::getsockopt(
            raw,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&mut off as *mut libc::xdp_mmap_offsets).cast(),
            &mut len,
        )
    };
    if rc != 0 || len as usize != std::mem::size_of::<libc::xdp_mmap_offsets>() {
        return Err(std::io::Error::last_os_error());
    }
    Ok(off)
}

/// Binds the socket to `queue` of `ifindex` in copy mode. A socket closed a moment ago still
/// holds its queue until the kernel's deferred release has run (EBUSY): that gets a second
/// before the queue counts as taken (`Err(None)`).
fn bind_queue(
    raw: RawFd,
    ifindex: u32,
    queue: u32,
    sg: bool,
) -> Result<(), Option<std::io::Error>> {
    let sxdp = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: libc::XDP_COPY | if sg { libc::XDP_USE_SG } else { 0 },
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        // SAFETY: sxdp is a fully initialized sockaddr_xdp and the length is its size.
        let rc = unsafe {
            libc::bind(
                raw,
                (&sxdp as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(Some(e));
        }
        if std::time::Instant::now() >= deadline {
            return Err(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

impl Xsk {
    /// One queue's socket: its UMEM (2 * RING chunks, the first half primed in the fill
    /// ring), its four rings, bound to `queue` of `ifindex` in copy mode.
    fn open(ifname: &str, ifindex: u32, queue: u32, sg: bool) -> Result<Xsk, AfXdpError> {
        let step = |s: &str| errno_step(ifname, ifindex, format!("{s} (queue {queue})"));
        let fd = xdp_socket()?;
        let chunks = 2 * RING as usize;
        let umem = UmemGuard::map(chunks * CHUNK).map_err(step("allocate the UMEM"))?;
        let Rings { fill, comp, rx, tx } = rings(&fd, &umem).map_err(|(what, e)| step(what)(e))?;
        let (umem, umem_len) = umem.release();
        let mut xsk = Xsk {
            fill,
            comp,
            rx,
            tx,
            free: (RING as usize..chunks)
                .rev()
                .map(|c| (c * CHUNK) as u64)
                .collect(),
            umem: umem.cast(),
            umem_len,
            fd,
        };
        xsk.prime_fill();
        match bind_queue(xsk.fd.as_raw_fd(), ifindex, queue, sg) {
            Ok(()) => Ok(xsk),
            Err(None) => Err(AfXdpError::QueueBusy {
                ifname: ifname.to_string(),
                ifindex,
                queue,
            }),
            Err(Some(e)) => Err(step("bind the socket")(e)),
        }
    }

    /// The first half of the chunks waits in the fill ring for received frames.
    fn prime_fill(&mut self) {
        for c in 0..RING {
            self.fill.write(self.fill.head, c as u64 * CHUNK as u64);
            self.fill.head = self.fill.head.wrapping_add(1);
        }
        self.fill.publish();
    }

    fn chunk(&self, addr: u64, len: usize) -> &[u8] {
        let addr = addr as usize;
        assert!(addr + len <= self.umem_len, "a descriptor beyond the UMEM");
        // SAFETY: inside the UMEM (checked above); the kernel handed this chunk to us through
        // the RX ring and does not write it until it comes back through the fill ring.
        unsafe { std::slice::from_raw_parts(self.umem.add(addr), len) }
    }

    /// Reads received frames into `batch`; returns chunks to the fill ring.
    fn recv(&mut self, batch: &mut Batch) {
        let ready = self.rx.ready();
        let mut taken = 0u32;
        while taken < ready && !batch.is_full() {
            // A frame is its descriptors up to the first without XDP_PKT_CONTD; the kernel
            // publishes them together, but stop short of a frame not wholly visible.
            let mut n = 0u32;
            let mut total = 0usize;
            let complete = loop {
                if taken + n >= ready {
                    break false;
                }
                let d = self.rx.read(self.rx.head.wrapping_add(n));
                n += 1;
                total += d.len as usize;
                if d.options & libc::XDP_PKT_CONTD == 0 {
                    break true;
                }
            };
            if !complete {
                break;
            }
            let head = self.rx.head;
            batch.push_with(total, Offload::default(), |buf| {
                let mut at = 0;
                for k in 0..n {
                    let d = self.rx.read(head.wrapping_add(k));
                    let part = self.chunk(d.addr, d.len as usize);
                    buf[at..at + part.len()].copy_from_slice(part);
                    at += part.len();
                }
                complete_partial_checksum(&mut buf[..at]);
                Some(at)
            });
            // Every chunk goes back to the fill ring: it has room, since chunks leave it
            // only to come through the RX ring.
            for k in 0..n {
                let d = self.rx.read(head.wrapping_add(k));
                let base = d.addr - d.addr % CHUNK as u64;
                self.fill.write(self.fill.head, base);
                self.fill.head = self.fill.head.wrapping_add(1);
            }
            self.rx.head = head.wrapping_add(n);
            taken += n;
        }
        if taken > 0 {
            self.rx.release_consumed();
            self.fill.publish();
        }
    }

    /// Takes back the chunks the kernel has finished sending.
    fn reclaim(&mut self) {
        let n = self.comp.ready();
        for k in 0..n {
            let addr = self.comp.read(self.comp.head.wrapping_add(k));
            let base = addr - addr % CHUNK as u64;
            debug_assert!(
                !self.free.contains(&base),
                "chunk {base:#x} completed twice"
            );
            self.free.push(base);
        }
        if n > 0 {
            self.comp.head = self.comp.head.wrapping_add(n);
            self.comp.release_consumed();
        }
    }

    /// Asks the kernel to transmit what the TX ring holds (copy mode always needs the
    /// call). False when it could not take everything now.
    fn kick(&self) -> std::io::Result<bool> {
        // SAFETY: a zero-length send on our own socket; touches no user memory.
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
        if rc >= 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS) => Ok(false),
            _ => Err(e),
        }
    }

    /// Whether the kernel has taken every descriptor we published to the TX ring.
    fn tx_drained(&mut self) -> bool {
        self.tx.other = self.tx.consumer().load(Ordering::Acquire);
        self.tx.other == self.tx.head
    }
}

/// One's-complement sum of big-endian 16-bit words (an odd last byte padded with zero).
fn sum16(mut acc: u64, b: &[u8]) -> u64 {
    let mut it = b.chunks_exact(2);
    for w in &mut it {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = it.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Fills in a TCP or UDP checksum the sender left for offload. A veth peer with checksum
/// offload on hands its frames over with CHECKSUM_PARTIAL: the checksum field holds only the
/// folded pseudo-header sum, and the rest was to be done by "hardware". AF_PACKET's
/// virtio-net header says so (NEEDS_CSUM); an XDP socket has no such metadata, so the edge
/// recognises the pattern itself: when the field equals the pseudo-header sum, the real
/// checksum is computed and written. A frame whose checksum is already right is left as it
/// is (recomputing a correct checksum gives the same value), and nothing else is touched.
/// IPv4 (unfragmented) and IPv6 without extension headers, behind up to two VLAN tags.
pub fn complete_partial_checksum(f: &mut [u8]) {
    let mut l3 = 12;
    while f.len() >= l3 + 2 && matches!(u16::from_be_bytes([f[l3], f[l3 + 1]]), 0x8100 | 0x88a8) {
        l3 += 4;
        if l3 > 20 {
            return;
        }
    }
    if f.len() < l3 + 2 {
        return;
    }
    let ethertype = u16::from_be_bytes([f[l3], f[l3 + 1]]);
    let ip = l3 + 2;
    let (proto, l4, l4_len, pseudo) = match ethertype {
        0x0800 if f.len() >= ip + 20 && f[ip] >> 4 == 4 => {
            let ihl = usize::from(f[ip] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([f[ip + 2], f[ip + 3]]));
            let frag = u16::from_be_bytes([f[ip + 6], f[ip + 7]]) & 0x3fff;
            if ihl < 20 || frag != 0 || total < ihl || f.len() < ip + total {
                return;
            }
            let l4_len = total - ihl;
            let acc = sum16(0, &f[ip + 12..ip + 20]);
            (f[ip + 9], ip + ihl, l4_len, acc)
        }
        0x86dd if f.len() >= ip + 40 && f[ip] >> 4 == 6 => {
            let l4_len = usize::from(u16::from_be_bytes([f[ip + 4], f[ip + 5]]));
            if f.len() < ip + 40 + l4_len {
                return;
            }
            let acc = sum16(0, &f[ip + 8..ip + 40]);
            (f[ip + 6], ip + 40, l4_len, acc)
        }
        _ => return,
    };
    let at = match proto {
        6 if l4_len >= 20 => l4 + 16,
        17 if l4_len >= 8 => l4 + 6,
        _ => return,
    };
    let pseudo = fold(pseudo + u64::from(proto) + l4_len as u64);
    let field = u16::from_be_bytes([f[at], f[at + 1]]);
    if field != pseudo && !(field == 0 && pseudo == 0xffff) {
        return;
    }
    f[at] = 0;
    f[at + 1] = 0;
    let pseudo_sum = u64::from(pseudo);
    let mut sum = !fold(sum16(pseudo_sum, &f[l4..l4 + l4_len]));
    if proto == 17 && sum == 0 {
        sum = 0xffff; // UDP: zero means "no checksum"
    }
    f[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Counters of frames the edge or the kernel dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Frames the switch gave us that span more than the edge can carry.
    pub tx_oversize: u64,
    /// Frames the switch gave us when the TX ring or the free chunks ran out.
    pub tx_ring_full: u64,
    /// Descriptors the kernel refused on transmit.
    pub tx_invalid: u64,
    /// Frames the kernel dropped on receive (too big for the chunks, or other reasons).
    pub rx_dropped: u64,
    /// Frames the kernel dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_empty: u64,
}

/// The AF_XDP edge: one socket per receive queue, transmitting through the first.
pub struct AfXdp {
    /// Declared first so it is dropped first: closing it detaches the program before the
    /// sockets go (frames then pass to the kernel stack instead of a half-closed socket).
    _link: OwnedFd,
    queues: Vec<Xsk>,
    /// An epoll set of every queue's socket when there are several (else None: the socket).
    epoll: Option<OwnedFd>,
    _map: OwnedFd,
    _prog: OwnedFd,
    mode: XdpMode,
    segs: usize,
    /// The queue whose turn it is to be read first (fairness between queues).
    next: usize,
    tx_oversize: u64,
    tx_ring_full: u64,
    ifindex: u32,
}

// SAFETY: the mappings are owned by this value alone and only touched through &mut self;
// moving it to another thread moves that exclusive ownership with it.
unsafe impl Send for AfXdp {}

fn ifname_of(ifindex: u32) -> Result<String, AfXdpError> {
    crate::host::netdev_name(ifindex).map_err(|_| AfXdpError::NoInterface {
        ifname: format!("with index {ifindex}"),
    })
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default)]
struct Channels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// The interface's MTU and number of receive queues, through ioctls on a socket of the
/// caller's network namespace (sysfs shows the namespace it was mounted in, which need not
/// be ours). A driver without channel counts has one queue.
fn mtu_and_queues(ifname: &str, ifindex: u32) -> Result<(u32, u32), AfXdpError> {
    let step = |s: &'static str| errno_step(ifname, ifindex, s);
    // SAFETY: plain socket(2); checked before wrapping.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(step("open a socket for interface ioctls")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a new descriptor owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the name and writes ifru_mtu inside the live `ifr`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) } != 0 {
        return Err(step("read the MTU")(std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel filled the mtu member of the union.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu } as u32;
    let mut ch = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    ifr.ifr_ifru.ifru_data = (&mut ch as *mut Channels).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GCHANNELS writes one ethtool_channels at ifru_data,
    // which points at the live `ch`.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut ifr) };
    let queues = if rc == 0 {
        ch.rx_count + ch.combined_count
    } else {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(step("read the channel counts")(e));
        }
        1
    };
    Ok((mtu, queues.max(1)))
}

/// A socket per receive queue, each in the XSKMAP at its queue's key. None when a
/// multi-buffer (`sg`) socket is refused, for the caller to start over without.
fn open_queues(
    ifname: &str,
    ifindex: u32,
    nq: u32,
    sg: bool,
    map: &OwnedFd,
) -> Result<Option<Vec<Xsk>>, AfXdpError> {
    let mut queues = Vec::with_capacity(nq as usize);
    for q in 0..nq {
        let xsk = match Xsk::open(ifname, ifindex, q, sg) {
            Err(AfXdpError::Setup { source, .. })
                if sg && source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
            {
                return Ok(None);
            }
            r => r?,
        };
        map_update(map, q, xsk.fd.as_raw_fd()).map_err(errno_step(
            ifname,
            ifindex,
            format!("insert the socket of queue {q} into the XSKMAP"),
        ))?;
        queues.push(xsk);
    }
    Ok(Some(queues))
}

/// Attaches the program in the first mode `mode` allows that the driver takes (native
/// before generic). Another XDP program there already is [`AfXdpError::Busy`].
fn attach_first(
    prog: &OwnedFd,
    ifname: &str,
    ifindex: u32,
    mode: ModeChoice,
) -> Result<(OwnedFd, XdpMode), AfXdpError> {
    let tries: &[XdpMode] = match mode {
        ModeChoice::Auto => &[XdpMode::Native, XdpMode::Generic],
        ModeChoice::Only(m) => match m {
            XdpMode::Native => &[XdpMode::Native],
            XdpMode::Generic => &[XdpMode::Generic],
        },
    };
    let mut last = None;
    for m in tries {
        match attach(prog, ifindex, *m) {
            Ok(l) => return Ok((l, *m)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) => {
                return Err(AfXdpError::Busy {
                    ifname: ifname.to_string(),
                    ifindex,
                });
            }
            Err(e) => last = Some((e, *m)),
        }
    }
    let (e, m) = last.expect("at least one mode was tried");
    Err(errno_step(
        ifname,
        ifindex,
        format!("attach the XDP program in {} mode", m.as_str()),
    )(e))
}

impl AfXdp {
    /// Opens the edge on `ifname` (looked up once, then used by index).
    pub fn open(ifname: &str, mode: ModeChoice) -> Result<Self, AfXdpError> {
        let ifindex =
            nix::net::if_::if_nametoindex(ifname).map_err(|_| AfXdpError::NoInterface {
                ifname: ifname.to_string(),
            })?;
        Self::open_index(ifindex, mode)
    }

    /// Opens the edge on the netdev with index `ifindex`. Native mode is tried first unless
    /// `mode` says otherwise.
    pub fn open_index(ifindex: u32, mode: ModeChoice) -> Result<Self, AfXdpError> {
        Self::open_with(ifindex, mode, true)
    }

    /// The open, with multi-buffer frames (`sg`) when the kernel has them.
    fn open_with(ifindex: u32, mode: ModeChoice, sg: bool) -> Result<Self, AfXdpError> {
        let ifname = ifname_of(ifindex)?;
        let (mtu, nq) = mtu_and_queues(&ifname, ifindex)?;
        let map = create_map(nq.max(1)).map_err(|source| AfXdpError::Unsupported {
            step: "create an XSKMAP",
            source,
        })?;
        // Frags-aware first (frames bigger than a chunk), plain on kernels without it.
        let (prog, sg) = match load_program(&map, sg) {
            Ok(p) => (p, sg),
            Err(_) if sg => return Self::open_with(ifindex, mode, false),
            Err((source, log)) => {
                return Err(errno_step(
                    &ifname,
                    ifindex,
                    format!("load the XDP program (verifier: {log})"),
                )(source));
            }
        };
        let segs = if sg { MAX_SEGS } else { 1 };
        let max = Self::max_frame_for(segs);
        // The MTU plus an Ethernet header and one 802.1Q tag must fit.
        if mtu as usize + 18 > max {
            return Err(AfXdpError::Mtu {
                ifname,
                ifindex,
                mtu,
                max,
            });
        }
        let Some(queues) = open_queues(&ifname, ifindex, nq, sg, &map)? else {
            // A kernel with frags-aware programs but no multi-buffer sockets.
            drop((prog, map));
            return Self::open_with(ifindex, mode, false);
        };
        let (link, mode) = attach_first(&prog, &ifname, ifindex, mode)?;
        let epoll = if queues.len() > 1 {
            Some(epoll_of(&queues).map_err(errno_step(
                &ifname,
                ifindex,
                "make an epoll set of the queues' sockets",
            ))?)
        } else {
            None
        };
        Ok(AfXdp {
            _link: link,
            queues,
            epoll,
            _map: map,
            _prog: prog,
            mode,
            segs,
            next: 0,
            tx_oversize: 0,
            tx_ring_full: 0,
            ifindex,
        })
    }

    fn max_frame_for(segs: usize) -> usize {
        if segs == 1 {
            CHUNK - XDP_HEADROOM
        } else {
            segs * CHUNK - XDP_HEADROOM
        }
    }

    /// Largest frame the edge carries both ways.
    pub fn max_frame(&self) -> usize {
        Self::max_frame_for(self.segs)
    }

    /// The mode the program runs in.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Receive queues bound (one socket each).
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// Drop counters: ours, plus the kernel's XDP_STATISTICS summed over the sockets.
    pub fn stats(&self) -> XdpStats {
        let mut s = kernel_stats(self.queues.iter().map(|q| q.fd.as_raw_fd()));
        s.tx_oversize = self.tx_oversize;
        s.tx_ring_full = self.tx_ring_full;
        s
    }

    /// A handle that reads the kernel's counters of these sockets after the edge has been
    /// handed to a switch (tools print them when they stop).
    pub fn kernel_stats_probe(&self) -> std::io::Result<KernelStatsProbe> {
        Ok(KernelStatsProbe {
            fds: self
                .queues
                .iter()
                .map(|q| q.fd.try_clone())
                .collect::<Result<_, _>>()?,
        })
    }
}

/// See [`AfXdp::kernel_stats_probe`].
pub struct KernelStatsProbe {
    fds: Vec<OwnedFd>,
}

impl KernelStatsProbe {
    /// The kernel's counters (the edge's own, tx_oversize and tx_ring_full, read 0 here).
    pub fn read(&self) -> XdpStats {
        kernel_stats(self.fds.iter().map(|f| f.as_raw_fd()))
    }
}

/// XDP_STATISTICS summed over sockets.
fn kernel_stats(fds: impl Iterator<Item = RawFd>) -> XdpStats {
    let mut s = XdpStats::default();
    for fd in fds {
        // SAFETY: xdp_statistics is plain old data; getsockopt fills at most `len`.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` and `len` are live and writable; len is st's size.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            s.rx_dropped += st.rx_dropped;
            s.tx_invalid += st.tx_invalid_descs;
            s.rx_ring_full += st.rx_ring_full;
            s.rx_fill_empty += st.rx_fill_ring_empty_descs;
        }
    }
    s
}

fn epoll_of(queues: &[Xsk]) -> std::io::Result<OwnedFd> {
    // SAFETY: plain epoll_create1; checked before wrapping.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nothing else.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    for (i, q) in queues.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: both descriptors are live; `ev` is a live epoll_event.
        let rc = unsafe {
            libc::epoll_ctl(
                ep.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                q.fd.as_raw_fd(),
                &mut ev,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(ep)
}

impl Edge for AfXdp {
    fn kind(&self) -> &'static str {
        "af_xdp"
    }

    fn recv(&mut self, batch: &mut Batch) -> std::io::Result<()> {
        let n = self.queues.len();
        for k in 0..n {
            if batch.is_full() {
                break;
            }
            self.queues[(self.next + k) % n].recv(batch);
        }
        self.next = (self.next + 1) % n;
        Ok(())
    }

    fn send(&mut self, batch: &Batch) -> std::io::Result<usize> {
        let max = self.max_frame();
        let q = &mut self.queues[0];
        q.reclaim();
        let mut queued = 0;
        for (frame, _) in batch.iter() {
            if frame.len() > max {
                self.tx_oversize += 1;
                continue;
            }
            let need = frame.len().div_ceil(CHUNK).max(1);
            if q.free.len() < need || q.tx.room(need as u32) < need as u32 {
                q.reclaim();
                if q.free.len() < need || q.tx.room(need as u32) < need as u32 {
                    self.tx_ring_full += 1;
                    continue;
                }
            }
            for (k, part) in frame.chunks(CHUNK).enumerate() {
                let addr = q.free.pop().expect("counted above");
                assert!(
                    addr as usize + CHUNK <= q.umem_len,
                    "a free chunk beyond the UMEM: {addr:#x}"
                );
                // SAFETY: a free chunk (not in any ring), inside the UMEM; part fits in it.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        part.as_ptr(),
                        q.umem.add(addr as usize),
                        part.len(),
                    );
                }
                let last = k + 1 == need;
                q.tx.write(
                    q.tx.head,
                    libc::xdp_desc {
                        addr,
                        len: part.len() as u32,
                        options: if last { 0 } else { libc::XDP_PKT_CONTD },
                    },
                );
                q.tx.head = q.tx.head.wrapping_add(1);
            }
            queued += 1;
        }
        if queued > 0 {
            q.tx.publish();
        }
        // Copy mode sends at most 32 descriptors per call: kick until the ring is drained
        // or the kernel pushes back (the rest goes on the next send).
        for _ in 0..64 {
            if q.tx_drained() {
                break;
            }
            let took = q.kick()?;
            q.reclaim();
            if !took && !q.tx_drained() {
                // Busy: try again once the completions are back.
                std::thread::yield_now();
            }
        }
        Ok(queued)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(match &self.epoll {
            Some(ep) => ep.as_raw_fd(),
            None => self.queues[0].fd.as_raw_fd(),
        })
    }
}

/// Opens the edge `kind` on the netdev with index `ifindex`; for AF_PACKET with the
/// virtio-net header when `vnet` (GSO: see host::afpacket). `Auto` takes AF_XDP when this
/// kernel allows it on this netdev and AF_PACKET otherwise, saying why on `note`.
pub fn open_netdev_edge(
    ifindex: u32,
    kind: NetdevEdge,
    vnet: bool,
    note: &mut dyn FnMut(&str),
) -> Result<Box<dyn Edge>, OpenEdgeError> {
    let size = if vnet { RingSize::GSO } else { RingSize::SMALL };
    match kind {
        NetdevEdge::AfPacket => Ok(Box::new(AfPacket::open_index(ifindex, vnet, size)?)),
        NetdevEdge::AfXdp => Ok(Box::new(AfXdp::open_index(ifindex, ModeChoice::Auto)?)),
        NetdevEdge::Auto => match AfXdp::open_index(ifindex, ModeChoice::Auto) {
            Ok(e) => Ok(Box::new(e)),
            Err(e) => {
                note(&format!("AF_XDP not used, AF_PACKET instead: {e}"));
                Ok(Box::new(AfPacket::open_index(ifindex, vnet, size)?))
            }
        },
    }
}

/// Errors of [`open_netdev_edge`].
#[derive(Debug, thiserror::Error)]
pub enum OpenEdgeError {
    #[error(transparent)]
    AfPacket(#[from] AfPacketError),
    #[error(transparent)]
    AfXdp(#[from] AfXdpError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 TCP or UDP frame (optionally tagged) with a correct checksum.
    fn frame(proto: u8, tagged: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        if tagged {
            f.extend([0x81, 0x00, 0x00, 0x0a]);
        }
        f.extend([0x08, 0x00]);
        let l4_len = if proto == 6 { 20 } else { 8 } + payload.len();
        let total = (20 + l4_len) as u16;
        let ip = f.len();
        f.extend([0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0]);
        f[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
        f.extend([10, 0, 0, 1, 10, 0, 0, 2]);
        let l4 = f.len();
        if proto == 6 {
            f.extend([
                0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff,
            ]);
            f.extend([0, 0, 0, 0]);
        } else {
            f.extend([0x30, 0x39, 0x00, 0x35]);
            f.extend((l4_len as u16).to_be_bytes());
            f.extend([0, 0]);
        }
        f.extend_from_slice(payload);
        let at = l4 + if proto == 6 { 16 } else { 6 };
        let pseudo = sum16(0, &f[ip + 12..ip + 20]) + u64::from(proto) + l4_len as u64;
        let c = !fold(sum16(pseudo, &f[l4..]));
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// What Linux hands over with CHECKSUM_PARTIAL: the folded pseudo-header sum.
    fn partial(f: &[u8], ip: usize, at: usize) -> Vec<u8> {
        let mut p = f.to_vec();
        let total = u16::from_be_bytes([p[ip + 2], p[ip + 3]]) as u64;
        let l4_len = total - 20;
        let s = fold(sum16(0, &p[ip + 12..ip + 20]) + u64::from(p[ip + 9]) + l4_len);
        p[at..at + 2].copy_from_slice(&s.to_be_bytes());
        p
    }

    #[test]
    fn partial_checksums_are_completed_and_good_ones_left_alone() {
        for (proto, tagged, off) in [(6u8, false, 16usize), (17, false, 6), (6, true, 16)] {
            for payload in [&b""[..], b"x", b"hello, checksum"] {
                let good = frame(proto, tagged, payload);
                let ip = if tagged { 18 } else { 14 };
                let at = ip + 20 + off;
                let mut p = partial(&good, ip, at);
                assert_ne!(p, good);
                complete_partial_checksum(&mut p);
                assert_eq!(p, good, "proto {proto} tagged {tagged} payload {payload:?}");
                let mut same = good.clone();
                complete_partial_checksum(&mut same);
                assert_eq!(same, good);
                // A wrong checksum that is not the offload pattern stays wrong.
                let mut bad = good.clone();
                bad[at] ^= 0x55;
                let before = bad.clone();
                complete_partial_checksum(&mut bad);
                assert_eq!(bad, before);
            }
        }
    }

    #[test]
    fn short_and_foreign_frames_are_untouched() {
        for mut f in [
            vec![],
            vec![0; 13],
            vec![0xff; 60],
            frame(6, false, b"abc")[..40].to_vec(),
        ] {
            let before = f.clone();
            complete_partial_checksum(&mut f);
            assert_eq!(f, before);
        }
    }

    #[test]
    fn the_program_redirects_by_queue_with_pass_as_fallback() {
        let p = program(7);
        assert_eq!((p[0].code, p[0].regs, p[0].off), (0x61, 0x12, 16));
        assert_eq!((p[1].code, p[1].regs, p[1].imm), (0x18, 0x11, 7));
        assert_eq!((p[3].code, p[3].regs, p[3].imm), (0xb7, 3, XDP_PASS));
        assert_eq!((p[4].code, p[4].imm), (0x85, BPF_FUNC_REDIRECT_MAP));
        assert_eq!(p[5].code, 0x95);
        assert!(PROG_NAME.len() <= 15, "a kernel object name holds 15 bytes");
    }
}
