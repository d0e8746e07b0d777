//! The service manager's notification protocol (sd_notify(3)), written here rather than
//! taken from a crate: one datagram of `KEY=value` lines to the unix socket named by
//! `NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`). Without the
//! variable (not started by systemd as `Type=notify`) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Errors of talking to the service manager.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// NOTIFY_SOCKET names neither a path nor an abstract socket.
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an @abstract name")]
    BadAddress(String),
    /// The datagram could not be sent.
    #[error("cannot notify the service manager on {socket}: {source}")]
    Send {
        socket: String,
        source: std::io::Error,
    },
}

/// Where to send notifications; `None` inside when there is no manager to tell.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(String, SocketAddr, UnixDatagram)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the process's environment (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID).
    pub fn from_env() -> Result<Notifier, NotifyError> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self::from_values(
            get("NOTIFY_SOCKET").as_deref(),
            get("WATCHDOG_USEC").as_deref(),
            get("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// As [`Notifier::from_env`], with the values given. The watchdog applies when its PID
    /// is ours or not given (sd_watchdog_enabled(3)).
    pub fn from_values(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Result<Notifier, NotifyError> {
        let target = match socket {
            None => None,
            Some(s) => {
                let addr = address(s)?;
                let sock = UnixDatagram::unbound().map_err(|source| NotifyError::Send {
                    socket: s.to_string(),
                    source,
                })?;
                Some((s.to_string(), addr, sock))
            }
        };
        let ours = watchdog_pid.is_none_or(|p| p.trim().parse::<u32>().ok() == Some(pid));
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Ok(Notifier { target, watchdog })
    }

    /// A notifier that tells nobody.
    pub fn none() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// Whether a service manager listens.
    pub fn active(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog's timeout when the manager asked for one (`WatchdogSec=`): `WATCHDOG=1`
    /// must come more often than this, half of it being the usual pace.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `state` (newline-separated `KEY=value` lines) as one datagram.
    pub fn send(&self, state: &str) -> Result<(), NotifyError> {
        let Some((name, addr, sock)) = &self.target else {
            return Ok(());
        };
        sock.send_to_addr(state.as_bytes(), addr)
            .map(|_| ())
            .map_err(|source| NotifyError::Send {
                socket: name.clone(),
                source,
            })
    }

    /// `READY=1` with a `STATUS=` line.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// `STATUS=` alone.
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` now, as sd_notify(3) asks of a
    /// `Type=notify-reload` or `ExecReload=` service starting a reload.
    pub fn reloading(&self) -> Result<(), NotifyError> {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the config",
            monotonic_usec()
        ))
    }

    /// `WATCHDOG=1`: the daemon's loop is alive.
    pub fn watchdog_ping(&self) -> Result<(), NotifyError> {
        self.send("WATCHDOG=1")
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send("STOPPING=1\nSTATUS=stopping")
    }
}

/// A socket address from NOTIFY_SOCKET's text.
fn address(s: &str) -> Result<SocketAddr, NotifyError> {
    let bad = || NotifyError::BadAddress(s.to_string());
    if let Some(name) = s.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes()).map_err(|_| bad())
    } else if s.starts_with('/') {
        SocketAddr::from_pathname(s).map_err(|_| bad())
    } else {
        Err(bad())
    }
}

/// A status line cannot hold a newline: it would start another assignment.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares reload times with.
pub fn monotonic_usec() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes one timespec into `t`, which outlives the call;
    // CLOCK_MONOTONIC always exists on Linux, so it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
}

/// Whether the host was booted with systemd (sd_booted(3): `/run/systemd/system/` exists).
pub fn booted() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_values(Some(path.to_str().unwrap()), None, None, 1).unwrap();
        n.ready("serving 0 vPorts").unwrap();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving 0 vPorts");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("vportd-test-{}", std::process::id());
        let abs = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        let n = Notifier::from_values(Some(&format!("@{name}")), None, None, 1).unwrap();
        n.status("a\nb").unwrap();
        let len = abs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=a b");
    }

    #[test]
    fn the_watchdog_is_ours_only_for_our_pid_and_nothing_is_sent_without_a_socket() {
        let n = Notifier::from_values(None, Some("20000000"), Some("42"), 42).unwrap();
        assert_eq!(n.watchdog(), Some(Duration::from_secs(20)));
        assert!(!n.active());
        n.watchdog_ping().unwrap();
        let n = Notifier::from_values(None, Some("20000000"), Some("43"), 42).unwrap();
        assert_eq!(n.watchdog(), None);
        assert!(matches!(
            Notifier::from_values(Some("relative"), None, None, 1),
            Err(NotifyError::BadAddress(_))
        ));
    }
}
