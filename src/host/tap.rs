//! TAP devices the switch creates for a VM (or the host) to attach to: the NIC edge for ports
//! whose other end is a file descriptor rather than an existing netdev. One read or write per
//! frame; with the virtio-net header (IFF_VNET_HDR) and TSO offloads enabled, the kernel hands
//! over GSO super-packets instead of MTU-sized frames, which is what makes bulk TCP fast.

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
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
        if vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        req.flags = flags as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes a struct ifreq; `req` has its layout and lives
        // across the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) } < 0 {
            return Err(err("create the device (TUNSETIFF)"));
        }
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
    let name = nix::net::if_::if_indextoname(ifindex)?;
    set_flags_up(&name.to_string_lossy())
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
