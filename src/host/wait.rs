//! Sleeping until a packet socket can take more data. (Waiting for frames to arrive is
//! the switch worker's own business: `switch::io::wait`.)

use std::os::fd::{BorrowedFd, RawFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Waits up to `timeout_ms` for `fd` to take more data.
pub fn writable(fd: RawFd, timeout_ms: u16) {
    // SAFETY: the caller owns the descriptor and keeps it open for the duration of this
    // call; it is only polled, never closed or kept.
    let mut polls = [PollFd::new(
        unsafe { BorrowedFd::borrow_raw(fd) },
        PollFlags::POLLOUT,
    )];
    let _ = poll(&mut polls, PollTimeout::from(timeout_ms));
}
