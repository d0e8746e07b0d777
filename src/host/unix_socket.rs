//! The daemon's control socket: a Unix stream socket, one request line and one response line
//! per connection (the protocol is [`crate::daemon::protocol`]; this module moves bytes only).
//!
//! Access is checked twice. The socket file is mode 0660, owned by root (the daemon's user)
//! and the configured group, so the kernel refuses `connect` to anyone else; and each
//! accepted connection's peer credentials (SO_PEERCRED: the uid, gid and pid of the process
//! that connected, as the kernel recorded them) must be root, the daemon's own user, or a
//! member of the group. The second check holds even if someone loosens the file's mode.
//!
//! The client side is built for `vportd hotplug` under udev, which kills slow handlers:
//! connect without blocking and bounded reads and writes, and it tells "no daemon here"
//! (fall back to applying alone) from "a daemon is here but slow" (leave it to the daemon).

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr, sockopt};
use nix::unistd::{Gid, Group, Uid, User};

/// The socket's path when none is configured.
/// In the unit's `RuntimeDirectory=vportd`, the one directory under /run it may write.
pub const DEFAULT_PATH: &str = "/run/vportd/vportd.sock";
/// The socket file's mode: owner and group may connect, nobody else.
pub const MODE: u32 = 0o660;
/// The largest request line, newline included. Requests are tiny; this keeps a peer from
/// making the daemon buffer without end (the protocol refuses a longer line too).
pub const MAX_REQUEST_LEN: usize = 16 * 1024;
/// Connections served at once; more are closed at once rather than queued without end.
const MAX_CONNECTIONS: usize = 32;
/// How long a connected peer has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a daemon takes connections on `path` now.
pub fn listening(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// Errors of the control socket, on either side.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The socket could not be created, bound or given its owner and mode.
    #[error("cannot set up the control socket {}: {source}", path.display())]
    Bind { path: PathBuf, source: io::Error },
    /// Another process answers on the socket path.
    #[error("another vportd daemon already listens on {}", path.display())]
    InUse { path: PathBuf },
    /// Something that is not a socket sits at the path.
    #[error("{} exists and is not a socket; remove it or choose another --socket", path.display())]
    NotSocket { path: PathBuf },
    /// The configured group does not exist.
    #[error("the group {0:?} does not exist; create it or choose another --socket-group")]
    NoGroup(String),
    /// Nobody listens on the socket (no file, or a stale one).
    #[error("no vportd daemon listens on {}: {source}", path.display())]
    NoDaemon { path: PathBuf, source: Errno },
    /// The socket exists but this user may not connect to it.
    #[error("not allowed to talk to the daemon on {}: be root or a member of its group", path.display())]
    Denied { path: PathBuf },
    /// The daemon did not answer in time.
    #[error("the daemon on {} did not {what} within {} ms", path.display(), limit.as_millis())]
    Timeout {
        path: PathBuf,
        what: &'static str,
        limit: Duration,
    },
    /// The peer sent more than the protocol allows in one line.
    #[error("the peer sent more than {0} bytes without ending its line")]
    TooLong(usize),
    /// Reading or writing the connection failed.
    #[error("the control connection failed: {0}")]
    Io(#[from] io::Error),
}

/// Who may use the socket besides root and the daemon's own user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    pub group: Option<Gid>,
}

impl Access {
    /// Resolves a group name (`--socket-group`).
    pub fn with_group(name: &str) -> Result<Access, SocketError> {
        let group = Group::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| SocketError::NoGroup(name.to_string()))?;
        Ok(Access {
            group: Some(group.gid),
        })
    }
}

/// The process at the other end of a connection, as the kernel recorded it at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (SO_PEERGROUPS); None where the kernel cannot say (before 4.13).
    pub groups: Option<Vec<u32>>,
}

/// Whether `peer` may use the socket: root, our own user, or a process with the group as its
/// primary or a supplementary group. The kernel's record of the peer's groups decides; only
/// a kernel without SO_PEERGROUPS makes us fall back to the group database.
pub fn allowed(peer: &Peer, access: &Access) -> bool {
    if peer.uid == 0 || peer.uid == Uid::effective().as_raw() {
        return true;
    }
    let Some(group) = access.group else {
        return false;
    };
    if peer.gid == group.as_raw() {
        return true;
    }
    if let Some(groups) = &peer.groups {
        return groups.contains(&group.as_raw());
    }
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(peer.uid)) else {
        return false;
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, Gid::from_raw(peer.gid))
        .map(|groups| groups.contains(&group))
        .unwrap_or(false)
}

/// A bound control socket.
pub struct ControlListener {
    listener: UnixListener,
    path: PathBuf,
    access: Access,
}

impl ControlListener {
    /// Binds `path` with mode 0660 and, with a group, group ownership. A stale socket file
    /// (nobody answers on it: a daemon that was killed) is replaced; a live one is an error.
    pub fn bind(path: &Path, access: Access) -> Result<ControlListener, SocketError> {
        let err = |source| SocketError::Bind {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(SocketError::NotSocket {
                    path: path.to_path_buf(),
                });
            }
            Ok(_) => {
                if UnixStream::connect(path).is_ok() {
                    return Err(SocketError::InUse {
                        path: path.to_path_buf(),
                    });
                }
                std::fs::remove_file(path).map_err(err)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        // bind(2) creates the file with 0777 & ~umask; connecting needs write permission, so
        // under any usual umask only the owner can connect until the chmod below.
        let listener = UnixListener::bind(path).map_err(err)?;
        if let Some(gid) = access.group {
            nix::unistd::chown(path, None, Some(gid)).map_err(|e| err(e.into()))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE)).map_err(err)?;
        Ok(ControlListener {
            listener,
            path: path.to_path_buf(),
            access,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections on this thread until accepting fails for good. Each connection gets
    /// a thread: a refused peer gets `forbidden(peer)` and is closed without its request being
    /// read; an allowed one has its request line passed to `handle`, whose answer is sent back.
    pub fn serve<H, F>(self, handle: H, forbidden: F) -> SocketError
    where
        H: Fn(&Peer, &[u8]) -> Vec<u8> + Send + Sync + 'static,
        F: Fn(&Peer) -> Vec<u8> + Send + Sync + 'static,
    {
        let handle = Arc::new(handle);
        let forbidden = Arc::new(forbidden);
        let active = Arc::new(AtomicUsize::new(0));
        loop {
            let (stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of file descriptors and the like: wait a little instead of spinning.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e) => return SocketError::Io(e),
            };
            if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let (handle, forbidden, active, access) = (
                handle.clone(),
                forbidden.clone(),
                active.clone(),
                self.access,
            );
            std::thread::spawn(move || {
                let _ = serve_one(stream, &access, &*handle, &*forbidden);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The credentials of the process at the other end of `stream`.
pub fn peer_of(stream: &UnixStream) -> Result<Peer, SocketError> {
    let cred = socket::getsockopt(&stream.as_fd(), sockopt::PeerCredentials)
        .map_err(|e| SocketError::Io(e.into()))?;
    Ok(Peer {
        pid: cred.pid(),
        uid: cred.uid(),
        gid: cred.gid(),
        groups: peer_groups(stream)?,
    })
}

/// The peer's supplementary groups as the kernel recorded them at connect time
/// (SO_PEERGROUPS, which nix does not wrap). None when the kernel does not know the option.
fn peer_groups(stream: &UnixStream) -> Result<Option<Vec<u32>>, SocketError> {
    use std::os::fd::AsRawFd;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer is `len` bytes of initialized gid_t, valid and exclusively ours
        // for the call; the kernel writes at most `len` bytes and sets `len` to what it wrote
        // (or, with ERANGE, to what it needs).
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(count);
            return Ok(Some(groups));
        }
        match Errno::last() {
            Errno::ERANGE if count > groups.len() && count <= 65536 => groups.resize(count, 0),
            Errno::ENOPROTOOPT => return Ok(None),
            e => return Err(SocketError::Io(e.into())),
        }
    }
}

fn serve_one(
    mut stream: UnixStream,
    access: &Access,
    handle: &(dyn Fn(&Peer, &[u8]) -> Vec<u8> + Send + Sync),
    forbidden: &(dyn Fn(&Peer) -> Vec<u8> + Send + Sync),
) -> Result<(), SocketError> {
    let peer = peer_of(&stream)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    if !allowed(&peer, access) {
        stream.write_all(&forbidden(&peer))?;
        return Ok(());
    }
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let line = read_line(&mut stream, MAX_REQUEST_LEN, deadline, || {
        SocketError::TooLong(MAX_REQUEST_LEN)
    })?;
    let answer = handle(&peer, &line);
    // Replies to requests that run long (apply) may take a while to be read.
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(&answer)?;
    Ok(())
}

/// Reads up to and including the first newline (or the end of the stream), at most `limit`
/// bytes, by `deadline`.
fn read_line(
    stream: &mut UnixStream,
    limit: usize,
    deadline: Instant,
    too_long: impl Fn() -> SocketError,
) -> Result<Vec<u8>, SocketError> {
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SocketError::Io(io::ErrorKind::TimedOut.into()));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(line);
        }
        let chunk = &buf[..n];
        if let Some(nl) = chunk.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&chunk[..=nl]);
            if line.len() > limit {
                return Err(too_long());
            }
            return Ok(line);
        }
        line.extend_from_slice(chunk);
        if line.len() > limit {
            return Err(too_long());
        }
    }
}

/// Sends one request line and reads the response line.
///
/// `connect_within` bounds the connect (a Unix connect does not wait for the daemon to
/// accept; it fails at once with EAGAIN when the daemon's backlog is full, which counts as a
/// timeout), `reply_within` bounds the write and the whole read. [`SocketError::NoDaemon`]
/// means nobody listens; [`SocketError::Timeout`] means a daemon is there but slow.
pub fn request(
    path: &Path,
    line: &[u8],
    connect_within: Duration,
    reply_within: Duration,
    limit: usize,
) -> Result<Vec<u8>, SocketError> {
    let start = Instant::now();
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| SocketError::Io(e.into()))?;
    let addr = UnixAddr::new(path).map_err(|e| SocketError::Io(e.into()))?;
    let timeout = |what, limit| SocketError::Timeout {
        path: path.to_path_buf(),
        what,
        limit,
    };
    loop {
        match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => break,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                if start.elapsed() >= connect_within {
                    return Err(timeout("accept the connection", connect_within));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(Errno::EACCES | Errno::EPERM) => {
                return Err(SocketError::Denied {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(SocketError::NoDaemon {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    let mut stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(reply_within))?;
    let deadline = Instant::now() + reply_within;
    match stream.write_all(line) {
        Ok(()) => {}
        // The daemon may answer and close before reading the request (a peer it refuses on
        // its credentials): its answer is still there to read.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => {
            return Err(match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    timeout("take the request", reply_within)
                }
                _ => SocketError::Io(e),
            });
        }
    }
    let answer = read_line(&mut stream, limit, deadline, || SocketError::TooLong(limit)).map_err(
        |e| match e {
            SocketError::Io(io)
                if matches!(
                    io.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                timeout("answer", reply_within)
            }
            other => other,
        },
    )?;
    if answer.is_empty() {
        return Err(SocketError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering",
        )));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_self_are_always_allowed() {
        let me = Uid::effective().as_raw();
        let none = Access::default();
        assert!(allowed(
            &Peer {
                pid: 1,
                uid: 0,
                gid: 0,
                groups: None
            },
            &none
        ));
        assert!(allowed(
            &Peer {
                pid: 1,
                uid: me,
                gid: 12345,
                groups: None
            },
            &none
        ));
        if me != 65534 {
            assert!(!allowed(
                &Peer {
                    pid: 1,
                    uid: 65534,
                    gid: 65534,
                    groups: Some(vec![])
                },
                &none
            ));
            let group = Access {
                group: Some(Gid::from_raw(4242)),
            };
            assert!(allowed(
                &Peer {
                    pid: 1,
                    uid: 65534,
                    gid: 4242,
                    groups: Some(vec![])
                },
                &group
            ));
            assert!(allowed(
                &Peer {
                    pid: 1,
                    uid: 65534,
                    gid: 65534,
                    groups: Some(vec![7, 4242])
                },
                &group
            ));
        }
    }

    #[test]
    fn round_trip_and_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        match request(
            &path,
            b"x\n",
            Duration::from_millis(20),
            Duration::from_millis(30),
            100,
        ) {
            Err(SocketError::NoDaemon { .. }) => {}
            other => panic!("expected NoDaemon, got {other:?}"),
        }
        let listener = ControlListener::bind(&path, Access::default()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, MODE);
        assert!(matches!(
            ControlListener::bind(&path, Access::default()),
            Err(SocketError::InUse { .. })
        ));
        std::thread::spawn(move || {
            listener.serve(
                |peer, line| {
                    let mut out = format!("pid {} said ", peer.pid).into_bytes();
                    out.extend_from_slice(line);
                    out
                },
                |_| b"no\n".to_vec(),
            )
        });
        let answer = request(
            &path,
            b"hello\n",
            Duration::from_millis(200),
            Duration::from_secs(2),
            100,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(answer).unwrap(),
            format!("pid {} said hello\n", std::process::id())
        );
        let long = vec![b'a'; 200];
        assert!(matches!(
            request(
                &path,
                &[long.as_slice(), b"\n"].concat(),
                Duration::from_millis(200),
                Duration::from_secs(2),
                100
            ),
            Err(SocketError::TooLong(100))
        ));
    }

    #[test]
    fn stale_socket_is_replaced_and_other_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a dropped std listener leaves its file");
        let l = ControlListener::bind(&path, Access::default()).unwrap();
        drop(l);
        assert!(!path.exists(), "our listener removes its file");
        std::fs::write(&path, "not a socket").unwrap();
        assert!(matches!(
            ControlListener::bind(&path, Access::default()),
            Err(SocketError::NotSocket { .. })
        ));
    }
}
