//! Sleeping until a NIC has frames, for an idle switch worker. The worker owns its thread
//! and its idle strategy; the edges hand it their descriptors (`Edge::raw_fd`), so this is
//! the one system call the switch makes for itself.

use std::os::fd::{BorrowedFd, RawFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Waits up to `timeout_ms` for any of `fds` to turn readable. Returns the positions (in
/// `fds`) of descriptors that reported an error or hang-up instead: a packet socket whose
/// netdev was deleted, a TAP whose device went away. Those stay "ready" forever, so the
/// caller must find out what happened rather than wait on them again at once. Other errors
/// (a signal) end the wait early; the caller polls its NICs either way.
pub fn readable(fds: &[RawFd], timeout_ms: u16) -> Vec<usize> {
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        // SAFETY: the descriptors belong to edges the caller owns and keeps open for the
        // duration of this call; they are only polled, never closed or kept.
        .map(|fd| PollFd::new(unsafe { BorrowedFd::borrow_raw(*fd) }, PollFlags::POLLIN))
        .collect();
    if poll(&mut polls, PollTimeout::from(timeout_ms)).unwrap_or(0) <= 0 {
        return Vec::new();
    }
    let bad = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
    polls
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents().is_some_and(|r| r.intersects(bad)))
        .map(|(i, _)| i)
        .collect()
}

/// A doorbell for a sleeping worker: the worker polls `fd()` beside its NICs, so a command
/// (or a stop) sent while it sleeps is served at once rather than when the wait times out.
/// A datagram socket pair (std, no unsafe): the ring side may ring any number of times
/// before the worker drains, each ring one byte, and a full buffer means the bell already
/// rings (the send is non-blocking and its failure is fine).
pub struct Bell {
    rx: std::os::unix::net::UnixDatagram,
    tx: std::os::unix::net::UnixDatagram,
}

/// The ringing side of a [`Bell`], for the threads that send the worker commands.
#[derive(Clone)]
pub struct Ringer(std::sync::Arc<std::os::unix::net::UnixDatagram>);

impl Bell {
    pub fn new() -> std::io::Result<Bell> {
        let (rx, tx) = std::os::unix::net::UnixDatagram::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(Bell { rx, tx })
    }

    pub fn ringer(&self) -> std::io::Result<Ringer> {
        Ok(Ringer(std::sync::Arc::new(self.tx.try_clone()?)))
    }

    /// The descriptor to poll: readable while the bell rings.
    pub fn fd(&self) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.rx)
    }

    /// Stops the ringing (every ring so far read off).
    pub fn hush(&self) {
        let mut b = [0u8; 16];
        while self.rx.recv(&mut b).is_ok() {}
    }
}

impl Ringer {
    pub fn ring(&self) {
        let _ = self.0.send(&[1]);
    }
}
