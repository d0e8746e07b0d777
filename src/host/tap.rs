//! TAP devices, two ways round.
//!
//! - [`Tap`]: a TAP whose file side the switch itself holds, the NIC edge for a port whose
//!   other end is the TAP's netdev (tests and examples). One read or write per frame; with the
//!   virtio-net header (IFF_VNET_HDR) and TSO offloads enabled, the kernel hands over GSO
//!   super-packets instead of MTU-sized frames, which is what makes bulk TCP fast.
//! - A VM's TAP ([`create_persistent`] and below): persistent, its file side left to the VM
//!   (QEMU, libvirt), the switch on its netdev side through host::afpacket; [`VmQueue`] is that
//!   file side, as a VM (or a test standing in for one) holds it.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::switch::io::{Batch, Edge, Offload};

/// Errors creating a TAP device.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name does not fit an interface name.
    #[error("{name:?} is not a valid interface name (1 to 15 bytes, no '/' or spaces)")]
    BadName { name: String },
    /// A step of creating the device failed.
    #[error(
        "cannot {step} for TAP device {name} (creating one needs CAP_NET_ADMIN and /dev/net/tun)"
    )]
    Setup {
        name: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Standing in for a VM on a TAP ([`stand_in`]) failed at a step.
    #[error("cannot {step} for TAP {name}: {source}")]
    StandIn {
        name: String,
        step: &'static str,
        source: std::io::Error,
    },
}

impl TapError {
    fn stand_in(name: &str, step: &'static str, source: std::io::Error) -> TapError {
        TapError::StandIn {
            name: name.to_string(),
            step,
            source,
        }
    }
}

/// `struct ifreq` with the flags member of its union, the only one used here.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl IfReq {
    fn new(name: &str) -> Self {
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        r
    }
}

const VNET_HDR_LEN: usize = Offload::VIRTIO_LEN;

/// A TAP device owned by the switch: it exists while this value does.
pub struct Tap {
    fd: OwnedFd,
    name: String,
    /// The device's index, read right after creating it: how the software path tells its
    /// TAP from a device someone else later makes under the same name.
    ifindex: u32,
    vnet: bool,
}

impl Tap {
    /// Creates (or attaches to) TAP device `name` and sets it up. With `vnet_hdr`, frames carry
    /// the virtio-net header and the device accepts checksum and TSO offload.
    pub fn create(name: &str, vnet_hdr: bool) -> Result<Self, TapError> {
        let mut flags = 0;
        if vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        let fd = tun_fd(name, flags, "create the device (TUNSETIFF)")?;
        let err = |step: &'static str| TapError::Setup {
            name: name.to_string(),
            step,
            source: std::io::Error::last_os_error(),
        };
        if vnet_hdr {
            let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
            // SAFETY: TUNSETOFFLOAD takes its argument by value.
            if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, offloads) } < 0 {
                return Err(err("enable checksum and TSO offload"));
            }
        }
        // The kernel may have named it otherwise (a name with %d): ask the device itself.
        let mut req = IfReq::new("");
        // SAFETY: TUNGETIFF writes a struct ifreq into `req`, an ifreq-sized, writable IfReq
        // that outlives the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req as *mut IfReq) } < 0 {
            return Err(err("read the device's name back (TUNGETIFF)"));
        }
        let len = req
            .name
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(req.name.len());
        let actual = String::from_utf8_lossy(&req.name[..len]).into_owned();
        let ifindex =
            nix::net::if_::if_nametoindex(actual.as_str()).map_err(|e| TapError::Setup {
                name: name.to_string(),
                step: "find the device's index",
                source: e.into(),
            })?;
        let tap = Tap {
            fd,
            name: actual,
            ifindex,
            vnet: vnet_hdr,
        };
        set_flags_up(&tap.name).map_err(|source| TapError::Setup {
            name: name.to_string(),
            step: "bring the device up",
            source,
        })?;
        Ok(tap)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's interface index, as it was when created.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

/// Brings the netdev with index `ifindex` up (IFF_UP), as `ip link set ... up` does: the
/// software path's trunk on a VF, whose netdev starts down. The name is looked up from the
/// index just before the call; the flags ioctl takes nothing else.
pub fn set_link_up(ifindex: u32) -> std::io::Result<()> {
    let name = crate::host::netdev_name(ifindex)?;
    set_flags_up(&name)
}

fn set_flags_up(name: &str) -> std::io::Result<()> {
    // SAFETY: socket(2); checked and wrapped at once.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: s was just returned by socket(2).
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    let mut req = IfReq::new(name);
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write a struct ifreq; `req` has its layout
    // and lives across both calls.
    unsafe {
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req as *mut IfReq) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if req.flags & libc::IFF_UP as libc::c_short != 0 {
            return Ok(());
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req as *mut IfReq) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Edge for Tap {
    fn kind(&self) -> &'static str {
        "tap"
    }

    fn recv(&mut self, batch: &mut Batch) -> std::io::Result<()> {
        let fd = self.fd.as_raw_fd();
        let vnet = self.vnet;
        while !batch.is_full() {
            let max = if vnet { 65536 + VNET_HDR_LEN } else { 9216 };
            let mut err = None;
            let mut offload = Offload::default();
            let got = batch.push_with(max, Offload::default(), |buf| {
                // SAFETY: buf is a live, writable slice of `buf.len()` bytes.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast::<c_void>(), buf.len()) };
                if n < 0 {
                    err = Some(std::io::Error::last_os_error());
                    return None;
                }
                let n = n as usize;
                if vnet {
                    if n < VNET_HDR_LEN {
                        return None;
                    }
                    offload = Offload::from_virtio(&buf[..VNET_HDR_LEN]);
                    buf.copy_within(VNET_HDR_LEN..n, 0);
                    Some(n - VNET_HDR_LEN)
                } else {
                    Some(n)
                }
            });
            if got.is_none() {
                match err {
                    Some(e) if e.kind() != std::io::ErrorKind::WouldBlock => return Err(e),
                    _ => break,
                }
            }
            batch.set_last_offload(offload);
        }
        Ok(())
    }

    fn send(&mut self, batch: &Batch) -> std::io::Result<usize> {
        let mut sent = 0;
        for (frame, offload) in batch.iter() {
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
            // SAFETY: both iovecs point at live buffers of the given lengths; writev only
            // reads them.
            let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if n >= 0 {
                sent += 1;
            }
        }
        Ok(sent)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    /// A TAP whose device was deleted is detached from its file: TUNGETIFF then fails with
    /// EBADFD, and reads do too.
    fn health(&mut self) -> std::io::Result<()> {
        let mut req = IfReq::new("");
        // SAFETY: TUNGETIFF writes a struct ifreq (name and flags) into `req`, which is an
        // ifreq-sized, writable IfReq that outlives the call.
        let rc =
            unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TUNGETIFF, &mut req as *mut IfReq) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn offloads(&self) -> bool {
        self.vnet
    }
}

// --- TAPs that belong to a VM -------------------------------------------------------------
//
// A VM's TAP is persistent: vportd makes it and lets go of its file at once, so that QEMU or
// libvirt can open it by name (a TAP without IFF_MULTI_QUEUE has one queue, and a second
// TUNSETIFF on it fails with EBUSY while anyone holds it), and it outlives vportd, so a daemon
// restart leaves the VM's link alone. The switch serves its netdev side, as the Linux bridge
// does (host::afpacket by ifindex).

/// IFF_PERSIST and IFF_TUN_EXCL (include/uapi/linux/if_tun.h); libc has the flags TUNSETIFF
/// takes, not these.
const IFF_PERSIST: libc::c_int = 0x0800;
const IFF_TUN_EXCL: libc::c_int = 0x8000;

/// Who may open a VM's TAP besides root: `TUNSETOWNER` / `TUNSETGROUP`. None leaves that
/// check out (the kernel's default: only CAP_NET_ADMIN).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapAccess {
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

/// What the kernel says of a TAP: enough to tell a persistent TAP vportd made
/// from some other device under the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapFacts {
    pub ifindex: u32,
    /// IFF_TAP, IFF_PERSIST and IFF_MULTI_QUEUE, as the kernel's link info says them.
    pub flags: u32,
    /// None: no owner (or group) set, anyone with CAP_NET_ADMIN only.
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

impl TapFacts {
    /// A persistent, single-queue TAP: the only kind [`create_persistent`] makes.
    pub fn is_persistent_tap(&self) -> bool {
        let f = self.flags as libc::c_int;
        f & libc::IFF_TAP != 0 && f & IFF_PERSIST != 0 && f & libc::IFF_MULTI_QUEUE == 0
    }

    /// Whether whoever `want` names may open it (None asks nothing).
    pub fn grants(&self, want: TapAccess) -> bool {
        want.owner.is_none_or(|o| self.owner == Some(o))
            && want.group.is_none_or(|g| self.group == Some(g))
    }
}

/// The TAP facts of the netdev with index `ifindex`, from rtnetlink (the tun driver's link
/// info: IFLA_TUN_TYPE, _PERSIST, _MULTI_QUEUE, _OWNER, _GROUP); None when there is no such
/// device or it is no TUN/TAP. (Not sysfs: /sys/class/net shows the namespace sysfs was
/// mounted in, which need not be ours.)
pub fn facts(ifindex: u32) -> Option<TapFacts> {
    use netlink_packet_core::Nla;
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::{
        InfoData, InfoKind, LinkAttribute, LinkExtentMask, LinkInfo, LinkMessage,
    };
    // include/uapi/linux/if_link.h, enum IFLA_TUN_*.
    const OWNER: u16 = 1;
    const GROUP: u16 = 2;
    const TYPE: u16 = 3;
    const PERSIST: u16 = 6;
    const MULTI_QUEUE: u16 = 7;
    let mut get = LinkMessage::default();
    get.header.index = ifindex;
    get.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let what = format!("read link {ifindex}");
    let replies =
        super::netlink::request_blocking(&what, RouteNetlinkMessage::GetLink(get), 0).ok()?;
    let mut tun = false;
    let mut facts = TapFacts {
        ifindex,
        flags: 0,
        owner: None,
        group: None,
    };
    for m in &replies {
        let RouteNetlinkMessage::NewLink(l) = m else {
            continue;
        };
        for attr in &l.attributes {
            let LinkAttribute::LinkInfo(infos) = attr else {
                continue;
            };
            for info in infos {
                match info {
                    LinkInfo::Kind(InfoKind::Tun) => tun = true,
                    LinkInfo::Data(InfoData::Tun(nlas)) => {
                        for nla in nlas {
                            let mut v = vec![0u8; nla.value_len()];
                            nla.emit_value(&mut v);
                            let byte = v.first().copied().unwrap_or(0);
                            let word = v
                                .get(..4)
                                .map(|w| u32::from_ne_bytes(w.try_into().expect("four bytes")));
                            match nla.kind() {
                                TYPE if byte == libc::IFF_TAP as u8 => {
                                    facts.flags |= libc::IFF_TAP as u32;
                                }
                                PERSIST if byte != 0 => facts.flags |= IFF_PERSIST as u32,
                                MULTI_QUEUE if byte != 0 => {
                                    facts.flags |= libc::IFF_MULTI_QUEUE as u32;
                                }
                                OWNER => facts.owner = word,
                                GROUP => facts.group = word,
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    tun.then_some(facts)
}

/// Opens /dev/net/tun and attaches to (or creates) TAP `name` with `flags` besides
/// IFF_TAP | IFF_NO_PI; `attach_step` names the TUNSETIFF in its error.
fn tun_fd(name: &str, flags: libc::c_int, attach_step: &'static str) -> Result<OwnedFd, TapError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
        return Err(TapError::BadName {
            name: name.to_string(),
        });
    }
    let err = |step: &'static str| TapError::Setup {
        name: name.to_string(),
        step,
        source: std::io::Error::last_os_error(),
    };
    // SAFETY: open(2) with a NUL-terminated literal path; the result is checked.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(err("open /dev/net/tun"));
    }
    // SAFETY: fd was just returned by open(2) and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq::new(name);
    req.flags = (libc::IFF_TAP | libc::IFF_NO_PI | flags) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes a struct ifreq; `req` has its layout and lives
    // across the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) } < 0 {
        return Err(err(attach_step));
    }
    Ok(fd)
}

/// Sets who may open the TAP `fd` is attached to. The kernel takes no "nobody" back
/// (an invalid id is EINVAL), so None leaves that check as it is.
fn set_access(name: &str, fd: &OwnedFd, access: TapAccess) -> Result<(), TapError> {
    let err = |step: &'static str| TapError::Setup {
        name: name.to_string(),
        step,
        source: std::io::Error::last_os_error(),
    };
    if let Some(owner) = access.owner {
        // SAFETY: TUNSETOWNER takes its argument by value.
        if unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOWNER,
                libc::c_ulong::from(owner),
            )
        } < 0
        {
            return Err(err("set the owner (TUNSETOWNER)"));
        }
    }
    if let Some(group) = access.group {
        // SAFETY: TUNSETGROUP takes its argument by value.
        if unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETGROUP,
                libc::c_ulong::from(group),
            )
        } < 0
        {
            return Err(err("set the group (TUNSETGROUP)"));
        }
    }
    Ok(())
}

/// Makes TAP `name` for a VM: persistent, single-queue, opened by `access` (and root), up;
/// returns its ifindex. Fails when a device of that name exists (IFF_TUN_EXCL): the caller
/// decides whether an existing one is its own. No descriptor is kept.
pub fn create_persistent(name: &str, access: TapAccess) -> Result<u32, TapError> {
    let fd = tun_fd(name, IFF_TUN_EXCL, "attach to the device (TUNSETIFF)")?;
    set_access(name, &fd, access)?;
    // SAFETY: TUNSETPERSIST takes its argument by value.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
        return Err(TapError::Setup {
            name: name.to_string(),
            step: "make the device persistent (TUNSETPERSIST)",
            source: std::io::Error::last_os_error(),
        });
    }
    let ifindex = nix::net::if_::if_nametoindex(name).map_err(|e| TapError::Setup {
        name: name.to_string(),
        step: "find the device's index",
        source: e.into(),
    })?;
    keep_host_off(name).map_err(|source| TapError::Setup {
        name: name.to_string(),
        step: "keep the host's own addresses off it (sysctl)",
        source,
    })?;
    set_flags_up(name).map_err(|source| TapError::Setup {
        name: name.to_string(),
        step: "bring the device up",
        source,
    })?;
    Ok(ifindex)
}

/// Keeps the host's own IP stack off a VM's TAP, which is a switch port and not a host
/// interface (a bridge port gets that from the bridge, which takes its frames; an AF_PACKET
/// edge only copies them): no IPv6 on it (no link-local address, router solicitations or MLD
/// sent to the VM) and no ARP answers for the host's addresses (arp_ignore 8), so the VM
/// cannot reach the host past the switch. Per network namespace, as the device is.
pub fn keep_host_off(name: &str) -> std::io::Result<()> {
    let write = |path: String, value: &str| std::fs::write(path, value);
    write(format!("/proc/sys/net/ipv4/conf/{name}/arp_ignore"), "8")?;
    match write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1") {
        // A kernel without IPv6 has nothing to turn off.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Gives an existing persistent TAP new owners. Needs the TAP free: while a VM holds it the
/// kernel says EBUSY, and the caller says so.
pub fn change_access(name: &str, access: TapAccess) -> Result<(), TapError> {
    let fd = tun_fd(name, 0, "attach to the device (TUNSETIFF)")?;
    set_access(name, &fd, access)
}

/// Deletes the netdev with index `ifindex` (a persistent TAP goes only this way or with
/// TUNSETPERSIST 0). A VM holding it loses its link.
pub fn delete(ifindex: u32) -> Result<(), super::netlink::NetlinkError> {
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::LinkMessage;
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    super::netlink::request_blocking(
        &format!("delete TAP device ifindex {ifindex}"),
        RouteNetlinkMessage::DelLink(msg),
        0,
    )?;
    Ok(())
}

/// A user name or number, as `tap_owner` gives it, to a uid.
pub fn resolve_user(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Some(n);
    }
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

/// A group name or number, as `tap_group` gives it, to a gid.
pub fn resolve_group(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Some(n);
    }
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// The file side of a TAP, as a VM holds it (QEMU's `-netdev tap`): for tests and small
/// helpers that stand in for a VM. Frames written here arrive on the TAP's netdev; frames
/// sent out of the netdev are read here. Plain frames, no virtio-net header.
pub struct VmQueue {
    fd: OwnedFd,
}

impl VmQueue {
    /// Attaches to the existing TAP `name` (EBUSY while someone else holds it).
    pub fn open(name: &str) -> Result<Self, TapError> {
        Ok(VmQueue {
            fd: tun_fd(name, 0, "attach to the device (TUNSETIFF)")?,
        })
    }

    /// Writes one frame.
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: frame is a live slice of frame.len() bytes; write only reads it.
        let n = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast::<c_void>(),
                frame.len(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// One frame if one is waiting (the descriptor is non-blocking).
    pub fn try_recv(&self) -> std::io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 65536];
        let n = self.recv_into(&mut buf)?;
        Ok(n.map(|n| {
            buf.truncate(n);
            buf
        }))
    }

    /// One frame into `buf` if one is waiting: its length. For a loop that carries frames
    /// without allocating per frame (a 64 KiB zeroed buffer per 60-byte frame cost the
    /// stand-in more than the frame's own system calls).
    pub fn recv_into(&self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        // SAFETY: buf is a live, writable buffer of buf.len() bytes.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast::<c_void>(),
                buf.len(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(e);
        }
        Ok(Some(n as usize))
    }

    /// Every frame that arrives until the queue has been quiet for `quiet`.
    pub fn drain(&self, quiet: std::time::Duration) -> std::io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut last = std::time::Instant::now();
        while last.elapsed() < quiet {
            match self.try_recv()? {
                Some(f) => {
                    out.push(f);
                    last = std::time::Instant::now();
                }
                None => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        Ok(out)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Plays the VM on TAP `name` (a software vPort's) for a host in network namespace `netns`
/// (a file such as /var/run/netns/X): holds the TAP's file side, as QEMU would, and makes a
/// TAP `inner` in that namespace whose frames it carries both ways. The namespace then has a
/// NIC on the vPort, as a VM would. Runs until the vPort's TAP goes (or an error); `inner`
/// goes with the process.
pub fn stand_in(name: &str, netns: &std::path::Path, inner: &str) -> Result<(), TapError> {
    let setup = |step: &'static str, source: std::io::Error| TapError::stand_in(name, step, source);
    // Attaching to a missing TAP would make one: never stand in for a vPort that has none.
    let ifindex = nix::net::if_::if_nametoindex(name)
        .map_err(|e| setup("find the device (is the daemon running?)", e.into()))?;
    if facts(ifindex).is_none() {
        return Err(setup(
            "stand in for a VM",
            std::io::Error::other("the device is no TAP"),
        ));
    }
    let outer = VmQueue::open(name).map_err(|e| match e {
        TapError::Setup { source, .. } => setup(
            "open the device (TUNSETIFF: a VM holds it, or this user is not its tap_owner or tap_group)",
            source,
        ),
        other => other,
    })?;
    let ns = std::fs::File::open(netns).map_err(|e| setup("open the network namespace", e))?;
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| setup("enter the network namespace", e.into()))?;
    let inner = VmQueue::open(inner)?;
    const BURST: usize = 64;
    // One buffer for every frame: a TAP without a virtio-net header hands over at most
    // 64 KiB (its largest frame), and nothing is kept between frames.
    let mut buf = vec![0u8; 65536];
    let mut fds = [
        libc::pollfd {
            fd: outer.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: inner.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: fds is a live array of two pollfd, as its length says.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(setup("wait for frames", e));
        }
        // Both ways in turns of at most BURST frames, so a flood one way cannot starve the
        // other (TCP's ACKs); poll again only once both sides are empty.
        let mut busy = true;
        while busy {
            busy = false;
            for (from, to) in [(&outer, &inner), (&inner, &outer)] {
                for _ in 0..BURST {
                    let Some(n) = from
                        .recv_into(&mut buf)
                        .map_err(|e| setup("read a frame (the TAP is gone?)", e))?
                    else {
                        break;
                    };
                    busy = true;
                    // A frame the other side cannot take now (its link down) is lost, as
                    // on a wire.
                    let _ = to.send(&buf[..n]);
                }
            }
        }
    }
}
