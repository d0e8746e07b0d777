//! Who holds a VF through vfio: a VM (QEMU) opens `/dev/vfio/<group>` and, through it, the
//! device. While the device is open, removing the VF (a VF count change) blocks inside the
//! kernel's `sriov_numvfs` write until it is closed, so the planner must know beforehand.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::fs::KernelFs;
use crate::model::inventory::VfioHolder;

/// A function's IOMMU group number, from its `iommu_group` link; None without an IOMMU.
pub fn iommu_group(fs: &KernelFs, bdf: &str) -> Option<u32> {
    fs.link_name(&format!("/sys/bus/pci/devices/{bdf}/iommu_group"))
        .ok()
        .flatten()
        .and_then(|g| g.parse().ok())
}

/// The processes holding each of `groups` open, by group: every `/proc/<pid>/fd/<n>` that
/// links to `/dev/vfio/<group>`. Processes that vanish or hide their fds (another user's,
/// without CAP_SYS_PTRACE) are passed over: the answer is a lower bound.
pub fn holders(fs: &KernelFs, groups: &[u32]) -> BTreeMap<u32, Vec<VfioHolder>> {
    let mut found: BTreeMap<u32, Vec<VfioHolder>> = BTreeMap::new();
    if groups.is_empty() {
        return found;
    }
    let pids = fs.list("/proc").unwrap_or_default();
    for pid in pids.iter().filter_map(|p| p.parse::<u32>().ok()) {
        let fd_dir = format!("/proc/{pid}/fd");
        let mut held: Vec<u32> = Vec::new();
        for fd in fs.list(&fd_dir).unwrap_or_default() {
            let Ok(Some(target)) = fs.read_link(&format!("{fd_dir}/{fd}")) else {
                continue;
            };
            if let Some(g) = vfio_group_of(&target)
                && groups.contains(&g)
                && !held.contains(&g)
            {
                held.push(g);
            }
        }
        if held.is_empty() {
            continue;
        }
        let command = fs
            .read_lenient(&format!("/proc/{pid}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        for g in held {
            found.entry(g).or_default().push(VfioHolder {
                pid,
                command: command.clone(),
            });
        }
    }
    found
}

/// The group of a `/dev/vfio/<group>` fd target (not the container, `/dev/vfio/vfio`).
fn vfio_group_of(target: &str) -> Option<u32> {
    target.strip_prefix("/dev/vfio/")?.parse().ok()
}

/// How a bounded write ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Bounded {
    /// write(2) returned: 0 or the errno it failed with.
    Returned(i32),
    /// It had not returned when the time was up; it goes on in an orphaned process.
    Pending,
}

/// Writes `value` to the file at `host_path` in a grandchild process and waits at most
/// `limit` for the write to return. A `sriov_numvfs` write that removes a VF held through
/// vfio sleeps in the kernel, uninterruptibly, until the holder lets go; a thread of ours
/// stuck there would also keep this process from exiting, so the write runs in a process
/// of its own, orphaned (and reaped by init) when it outlives the wait.
pub fn write_bounded(
    host_path: &std::path::Path,
    value: &str,
    limit: Duration,
) -> io::Result<Bounded> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(host_path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let (read_end, write_end) = nix::unistd::pipe()?;
    // SAFETY: the children only call async-signal-safe functions (fork, open, write, close,
    // _exit) on memory prepared before the fork, as a fork of a threaded process requires.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            // SAFETY: as above; `_exit` never returns and runs no destructors.
            unsafe {
                if libc::fork() == 0 {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_TRUNC);
                    let failed = fd < 0 || libc::write(fd, value.as_ptr().cast(), value.len()) < 0;
                    let errno = if failed { *libc::__errno_location() } else { 0 };
                    let bytes = errno.to_ne_bytes();
                    libc::write(write_end.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                    libc::_exit(0);
                }
                libc::_exit(0);
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(write_end);
            // The middle process exits at once; its child is init's from then on.
            let _ = nix::sys::wait::waitpid(child, None);
            wait_for_errno(&read_end, limit)
        }
    }
}

/// Reads the grandchild's errno from the pipe, waiting at most `limit`.
fn wait_for_errno(read_end: &OwnedFd, limit: Duration) -> io::Result<Bounded> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::ZERO);
        let mut fds = [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) if left.is_zero() => return Ok(Bounded::Pending),
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let mut bytes = [0u8; 4];
    match nix::unistd::read(read_end, &mut bytes)? {
        4 => Ok(Bounded::Returned(i32::from_ne_bytes(bytes))),
        // The grandchild died without a word (killed): report it as EIO, a write not known done.
        _ => Ok(Bounded::Returned(libc::EIO)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_group_nodes_are_groups() {
        assert_eq!(vfio_group_of("/dev/vfio/12"), Some(12));
        assert_eq!(vfio_group_of("/dev/vfio/vfio"), None);
        assert_eq!(vfio_group_of("/dev/vfio/devices/vfio0"), None);
        assert_eq!(vfio_group_of("anon_inode:[vfio-device]"), None);
        assert_eq!(vfio_group_of("/dev/null"), None);
    }

    #[test]
    fn holders_are_read_from_proc_fd_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (pid, comm, links) in [
            (
                42u32,
                "qemu-system-x86",
                vec!["/dev/vfio/vfio", "/dev/vfio/7"],
            ),
            (43, "bash", vec!["/dev/null"]),
            (44, "other-vm", vec!["/dev/vfio/9", "/dev/vfio/7"]),
        ] {
            let fd = root.join(format!("proc/{pid}/fd"));
            std::fs::create_dir_all(&fd).unwrap();
            std::fs::write(root.join(format!("proc/{pid}/comm")), format!("{comm}\n")).unwrap();
            for (n, l) in links.iter().enumerate() {
                std::os::unix::fs::symlink(l, fd.join(n.to_string())).unwrap();
            }
        }
        let fs = KernelFs::at(root);
        let got = holders(&fs, &[7, 8]);
        let seven: Vec<(u32, &str)> = got[&7]
            .iter()
            .map(|h| (h.pid, h.command.as_str()))
            .collect();
        assert_eq!(seven, vec![(42, "qemu-system-x86"), (44, "other-vm")]);
        assert!(!got.contains_key(&8));
        assert!(!got.contains_key(&9), "group 9 was not asked for");
        assert!(holders(&fs, &[]).is_empty());
    }

    #[test]
    fn a_bounded_write_reports_its_errno_or_that_it_is_still_pending() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("value");
        std::fs::write(&file, "old").unwrap();
        let limit = Duration::from_secs(10);
        assert_eq!(
            write_bounded(&file, "7", limit).unwrap(),
            Bounded::Returned(0)
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "7");
        let absent = dir.path().join("absent/value");
        assert_eq!(
            write_bounded(&absent, "7", limit).unwrap(),
            Bounded::Returned(libc::ENOENT)
        );
        // A FIFO with no reader: open(2) blocks, as a held VF's removal does.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let start = Instant::now();
        let got = write_bounded(&fifo, "7", Duration::from_millis(300)).unwrap();
        assert_eq!(got, Bounded::Pending);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // Release the orphan: open the FIFO for reading, so its open(2) returns.
        let _ = std::fs::File::open(&fifo);
    }
}
