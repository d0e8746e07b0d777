//! Where vportd's log lines go, with their priority: the `log` facade's one logger.
//!
//! - stderr is systemd's journal stream (`JOURNAL_STREAM` names stderr's device and inode,
//!   systemd.exec(5)): each line goes to stderr with an sd-daemon `<N>` priority prefix,
//!   which journald reads as the line's priority (`journalctl -p warning` finds warnings).
//!   The simplest correct choice: no socket of our own, and the unit's stderr is the journal.
//! - asked for the journal (`vportd hotplug`: under udev stderr goes nowhere) and the
//!   journal's socket exists: each record is also sent to /run/systemd/journal/socket in its
//!   native protocol (`PRIORITY=`, `SYSLOG_IDENTIFIER=vportd`, `MESSAGE=`), and to stderr as
//!   plain text.
//! - otherwise: plain `vportd: message` lines on stderr, as vportd always wrote them.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The journal's native socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// A record's target that prints without the `vportd: ` prefix on a plain stderr: a
/// command's own lines (`warning: ...` under `vportd apply`'s progress) keep their text.
pub const BARE: &str = "vportd::bare";

/// How records are written.
#[derive(Debug)]
pub enum Sink {
    /// `vportd: message` on stderr.
    Plain,
    /// `<N>message` on stderr, which is the journal's stream.
    Prefixed,
    /// Native datagrams to the journal, and plain lines on stderr.
    Journal(UnixDatagram),
}

/// The logger installed by [`init`]; the level is the `log` facade's max level.
pub struct Logger {
    sink: Sink,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger once per process (a second call keeps the first sink, with the new
/// level). `journal`: also send to the journal's socket when stderr is not the journal.
pub fn init(level: LevelFilter, journal: bool) {
    let logger = LOGGER.get_or_init(|| Logger {
        sink: choose(journal),
    });
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}

/// Changes the level after [`init`] (a config's `[daemon] log_level`).
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// The sink the environment asks for.
fn choose(journal: bool) -> Sink {
    if stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref()) {
        return Sink::Prefixed;
    }
    // VPORTD_JOURNAL_SOCKET: another socket in its place, for tests (tests/daemon_notify.rs).
    let path = std::env::var_os("VPORTD_JOURNAL_SOCKET")
        .map_or_else(|| Path::new(JOURNAL_SOCKET).to_path_buf(), Into::into);
    if journal
        && path.exists()
        && let Ok(sock) = UnixDatagram::unbound()
        && sock.connect(&path).is_ok()
    {
        return Sink::Journal(sock);
    }
    Sink::Plain
}

/// Whether `JOURNAL_STREAM` (`DEV:INODE`) names the file stderr is now: a child whose
/// stderr was redirected inherits the variable but not the stream.
pub fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// syslog's priority of a level.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `<N>` before every line, so that a message with a hint under it keeps its priority.
pub fn prefixed(level: Level, message: &str) -> String {
    let p = priority(level);
    let mut out = String::new();
    for line in message.lines() {
        out.push_str(&format!("<{p}>{line}\n"));
    }
    out
}

/// One native journal record (systemd's "Native Journal Protocol"): `KEY=value` lines, and
/// a value holding a newline as `KEY\n`, its length as 64-bit little endian, the bytes, `\n`.
pub fn native_record(level: Level, target: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut field = |key: &str, value: &str| {
        if value.contains('\n') {
            out.extend_from_slice(key.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        } else {
            out.extend_from_slice(format!("{key}={value}\n").as_bytes());
        }
    };
    field("PRIORITY", &priority(level).to_string());
    field("SYSLOG_IDENTIFIER", "vportd");
    field("CODE_MODULE", target);
    field("MESSAGE", message);
    out
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        write_record(&self.sink, record.level(), record.target(), &message);
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

fn write_record(sink: &Sink, level: Level, target: &str, message: &str) {
    let mut err = std::io::stderr().lock();
    match sink {
        Sink::Plain if target == BARE => {
            let _ = writeln!(err, "{message}");
        }
        Sink::Plain => {
            let _ = writeln!(err, "vportd: {message}");
        }
        Sink::Prefixed => {
            let _ = err.write_all(prefixed(level, message).as_bytes());
        }
        Sink::Journal(sock) => {
            let _ = sock.send(&native_record(level, target, message));
            let _ = writeln!(err, "vportd: {message}");
        }
    }
}

/// A command's final failure, said the way the user always read it (`vportd: message` on a
/// plain stderr, unchanged), and at error priority where a journal takes it.
pub fn failure(message: &str) {
    match LOGGER.get().map(|l| &l.sink) {
        None | Some(Sink::Plain) => eprintln!("vportd: {message}"),
        Some(sink) => write_record(sink, Level::Error, "vportd", message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_priority() {
        assert_eq!(
            prefixed(Level::Warn, "one\n  hint: two"),
            "<4>one\n<4>  hint: two\n"
        );
        let r = native_record(Level::Error, "vportd::x", "a\nb");
        let mut want =
            b"PRIORITY=3\nSYSLOG_IDENTIFIER=vportd\nCODE_MODULE=vportd::x\nMESSAGE\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n");
        assert_eq!(r, want);
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("1:2")));
        assert!(!stderr_is_journal(Some("garbage")));
    }
}
