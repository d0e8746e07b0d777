//! The kernel's device events (uevents) over NETLINK_KOBJECT_UEVENT, so that the daemon sees
//! PFs and VFs come and go even where no udev runs (containers, minimal hosts) or where the
//! project's udev rules are not installed.
//!
//! Only messages from the kernel itself are passed on: the sender's netlink port must be 0.
//! (udevd re-broadcasts events on another multicast group with a `libudev` header; we do not
//! join it, and [`crate::daemon::events::parse_uevent`] refuses such messages anyway.) Parsing is
//! left to the pure [`crate::daemon::events`] module.

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_KOBJECT_UEVENT};

/// The kernel's multicast group for uevents (udevd uses group 2 for its own).
const KERNEL_GROUP: u32 = 1;
/// The largest kernel uevent message accepted (the kernel's own buffer is 2048 bytes): the
/// listener reads no more, and [`crate::daemon::events::parse_uevent`] refuses a longer one.
pub const MAX_UEVENT_LEN: usize = 8192;
/// Receive buffer: a hot-plugged NIC with VFs sends a few dozen events in a burst.
const RCVBUF: libc::c_int = 1 << 20;

/// Errors of the uevent listener.
#[derive(Debug, thiserror::Error)]
pub enum UeventError {
    /// The netlink socket could not be opened or bound (needs no privilege, but a seccomp
    /// filter or a network namespace without uevents can refuse it).
    #[error("cannot listen to kernel uevents: {0}")]
    Open(io::Error),
    /// Receiving failed for a reason other than a lost burst.
    #[error("receiving a kernel uevent failed: {0}")]
    Recv(io::Error),
}

/// What the listener hands on.
#[derive(Debug)]
pub enum Uevent<'a> {
    /// One message from the kernel, as received.
    Message(&'a [u8]),
    /// The socket's buffer overflowed: some events were lost, so whoever listens should
    /// re-read the whole host instead of trusting the events it saw.
    Overrun,
}

/// A socket subscribed to the kernel's uevents.
pub struct UeventListener {
    socket: Socket,
}

impl UeventListener {
    pub fn open() -> Result<UeventListener, UeventError> {
        let mut socket = Socket::new(NETLINK_KOBJECT_UEVENT).map_err(UeventError::Open)?;
        socket
            .bind(&SocketAddr::new(0, KERNEL_GROUP))
            .map_err(UeventError::Open)?;
        // A smaller buffer than asked is fine (the kernel caps it at rmem_max); overruns
        // are reported, never silent.
        let _ = socket.set_rx_buf_sz(RCVBUF);
        Ok(UeventListener { socket })
    }

    /// Receives forever, calling `on` for every kernel message or overrun; returns only on
    /// an error that will not go away, or when `on` returns false.
    pub fn run(&self, mut on: impl FnMut(Uevent<'_>) -> bool) -> UeventError {
        let mut buf: Vec<u8> = Vec::with_capacity(MAX_UEVENT_LEN + 1);
        loop {
            buf.clear();
            match self.socket.recv_from(&mut buf, 0) {
                Ok((_, from)) => {
                    if from.port_number() != 0 {
                        continue;
                    }
                    if !on(Uevent::Message(&buf)) {
                        return UeventError::Recv(io::ErrorKind::Interrupted.into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if !on(Uevent::Overrun) {
                        return UeventError::Recv(e);
                    }
                }
                Err(e) => return UeventError::Recv(e),
            }
        }
    }
}
