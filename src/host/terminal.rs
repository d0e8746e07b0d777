//! The terminal `vportd top` draws on: whether a descriptor is one, its size (TIOCGWINSZ),
//! a key-at-a-time mode that gives the terminal back as it was however the program ends
//! (return, panic, or a signal turned into a flag), and the signals a full-screen program
//! answers (SIGWINCH: redraw; SIGINT, SIGTERM, SIGHUP: leave cleanly).

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};

/// Whether `fd` is a terminal.
pub fn is_tty(fd: impl AsFd) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// Rows and columns of the terminal on `fd` (None when it is none, or says 0 x 0, as a
/// pseudo-terminal nobody sized does).
pub fn size(fd: impl AsFd) -> Option<(u16, u16)> {
    use std::os::fd::AsRawFd;
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` into `ws`, which outlives the call;
    // the descriptor is borrowed for the call only.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// The terminal in key-at-a-time mode (no line editing, no echo; signals keys still work)
/// until this is dropped, which puts back the settings it found: on return and on a
/// panic's unwind alike.
pub struct KeyMode {
    saved: Termios,
}

impl KeyMode {
    /// Switches stdin's terminal; an error when stdin is no terminal.
    pub fn enter() -> nix::Result<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO);
        raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(Self { saved })
    }
}

impl Drop for KeyMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

static QUIT: AtomicBool = AtomicBool::new(false);
static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGWINCH {
        RESIZED.store(true, Ordering::Relaxed);
    } else {
        QUIT.store(true, Ordering::Relaxed);
    }
}

/// Turns SIGWINCH, SIGINT, SIGTERM and SIGHUP into flags ([`quit_asked`], [`resized`]),
/// so that the program leaves through its own path and restores the terminal. No
/// SA_RESTART: a signal ends the wait for a key at once.
pub fn catch_signals() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGWINCH,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
    ] {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// Whether a quitting signal came.
pub fn quit_asked() -> bool {
    QUIT.load(Ordering::Relaxed)
}

/// Whether the terminal was resized since the last call.
pub fn resized() -> bool {
    RESIZED.swap(false, Ordering::Relaxed)
}

/// The keys typed on stdin within `timeout_ms` (read straight from the descriptor, so
/// nothing waits in a buffer for the next look): empty when none came or a signal came,
/// None when stdin has ended (or failed) and will give no key again.
pub fn keys_within(timeout_ms: u16) -> Option<Vec<u8>> {
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(timeout_ms)) {
        Ok(n) if n > 0 => {}
        Ok(_) | Err(nix::errno::Errno::EINTR) => return Some(Vec::new()),
        Err(_) => return None,
    }
    let mut b = [0u8; 64];
    match nix::unistd::read(stdin.as_fd(), &mut b) {
        Ok(0) => None,
        Ok(n) => Some(b[..n].to_vec()),
        Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => Some(Vec::new()),
        Err(_) => None,
    }
}
