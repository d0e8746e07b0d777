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
