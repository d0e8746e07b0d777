//! Reads (and, for provisioning, writes) kernel files under a configurable root.
//!
//! Every path the rest of vportd asks for is a *kernel path* such as
//! `/sys/class/net/eth0/address`. It is joined under `root`, so the same code runs
//! against the live system (`root = /`), a checked-in fixture tree, or a mount
//! namespace with bind-mounted fixtures. Symlinks are resolved lexically inside the
//! root (never with `canonicalize`), so a fixture may hold dangling links such as
//! `driver -> ../../../bus/pci/drivers/igb` without the driver directory itself.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::model::file_errors::{DeviceAfter, FsError, WriteFailed};

/// The marker that keeps an otherwise empty recorded directory in git.
const KEEP: &str = ".gitkeep";

/// A view of the kernel's pseudo-filesystems below a root directory.
#[derive(Debug, Clone)]
pub struct KernelFs {
    root: PathBuf,
    /// When set, every successful read is mirrored under this directory, so that a
    /// run against a real kernel leaves behind exactly the fixture that replays it.
    record: Option<PathBuf>,
}

impl KernelFs {
    /// The live system.
    pub fn system() -> Self {
        Self::at("/")
    }

    /// The tree below `root` (a fixture, or `/` for the live system).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            record: None,
        }
    }

    /// Mirror every read into `dir`, producing a replayable fixture.
    pub fn recording_into(mut self, dir: impl Into<PathBuf>) -> Self {
        self.record = Some(dir.into());
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the kernel (following links) finds the directory holding `kpath`: then
    /// a missing `kpath` is truly absent, with no dangling fixture link to resolve.
    fn parent_is_dir(&self, kpath: &str) -> bool {
        match kpath.rsplit_once('/') {
            Some((parent, _)) if !parent.is_empty() => self.host_path(parent).is_dir(),
            _ => true,
        }
    }

    fn host_path(&self, kpath: &str) -> PathBuf {
        self.root.join(kpath.trim_start_matches('/'))
    }

    fn record_path(&self, kpath: &str) -> Option<PathBuf> {
        self.record
            .as_ref()
            .map(|r| r.join(kpath.trim_start_matches('/')))
    }

    /// Reads a small attribute file, trimmed of surrounding whitespace.
    /// `Ok(None)` when it does not exist, so optional attributes read naturally.
    pub fn read(&self, kpath: &str) -> Result<Option<String>, FsError> {
        // Fast path: let the kernel follow the links. Sysfs links are relative, so
        // they stay inside the root. Lexical resolution is needed only to record the
        // links themselves, or to get through a fixture's dangling ones.
        if self.record.is_none() {
            match read_small(&self.host_path(kpath), kpath.starts_with("/sys/")) {
                Ok(bytes) => return Ok(Some(String::from_utf8_lossy(&bytes).trim().to_string())),
                Err(e) if is_absent(&e) && self.parent_is_dir(kpath) => return Ok(None),
                Err(e) if is_absent(&e) => {}
                Err(source) => {
                    return Err(FsError::Read {
                        path: kpath.into(),
                        source,
                    });
                }
            }
        }
        let kpath = &self.resolve(kpath)?;
        match std::fs::read(self.host_path(kpath)) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if let Some(rec) = self.record_path(kpath) {
                    record_file(&rec, &bytes).map_err(|source| FsError::Record {
                        path: kpath.into(),
                        source,
                    })?;
                }
                Ok(Some(text.trim().to_string()))
            }
            Err(e) if is_absent(&e) => Ok(None),
            Err(source) => Err(FsError::Read {
                path: kpath.into(),
                source,
            }),
        }
    }

    /// Reads an attribute that some drivers refuse to report (`speed` on a down
    /// link gives EINVAL): any error becomes `None`.
    pub fn read_lenient(&self, kpath: &str) -> Option<String> {
        self.read(kpath).ok().flatten()
    }

    /// Reads and parses an attribute, `None` when absent or unparsable.
    pub fn read_parsed<T: std::str::FromStr>(&self, kpath: &str) -> Option<T> {
        self.read_lenient(kpath)?.parse().ok()
    }

    /// The target text of a symlink, `Ok(None)` if the path is not a symlink.
    pub fn read_link(&self, kpath: &str) -> Result<Option<String>, FsError> {
        // Fast path, as in `read`: the kernel resolves the parent directories.
        if self.record.is_none() {
            match std::fs::read_link(self.host_path(kpath)) {
                Ok(target) => return Ok(Some(target.to_string_lossy().into_owned())),
                Err(e) if e.raw_os_error() == Some(libc_einval()) => return Ok(None),
                Err(e) if is_absent(&e) && self.parent_is_dir(kpath) => return Ok(None),
                Err(_) => {}
            }
        }
        let kpath = &match kpath.rsplit_once('/') {
            Some((parent, name)) if !parent.is_empty() => {
                format!("{}/{}", self.resolve(parent)?.trim_end_matches('/'), name)
            }
            _ => kpath.to_string(),
        };
        self.read_link_raw(kpath)
    }

    /// `read_link` on a path whose parent is already resolved.
    fn read_link_raw(&self, kpath: &str) -> Result<Option<String>, FsError> {
        match std::fs::read_link(self.host_path(kpath)) {
            Ok(target) => {
                let target = target.to_string_lossy().into_owned();
                if let Some(rec) = self.record_path(kpath) {
                    record_link(&rec, &target).map_err(|source| FsError::Record {
                        path: kpath.into(),
                        source,
                    })?;
                }
                Ok(Some(target))
            }
            Err(e) if is_absent(&e) || e.raw_os_error() == Some(libc_einval()) => Ok(None),
            Err(source) => Err(FsError::Read {
                path: kpath.into(),
                source,
            }),
        }
    }

    /// The last component of a symlink's target: the driver name behind
    /// `.../driver`, the PF address behind `.../physfn`.
    pub fn link_name(&self, kpath: &str) -> Result<Option<String>, FsError> {
        Ok(self
            .read_link(kpath)?
            .and_then(|t| t.rsplit('/').next().map(str::to_string)))
    }

    /// Resolves every symlink in `kpath` lexically inside the root and returns the
    /// resulting kernel path, e.g. `/sys/class/net/eth0` ->
    /// `/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0`.
    pub fn resolve(&self, kpath: &str) -> Result<String, FsError> {
        if self.record.is_none()
            && let Ok(real) = std::fs::canonicalize(self.host_path(kpath))
            && let Ok(root) = std::fs::canonicalize(&self.root)
            && let Ok(inside) = real.strip_prefix(&root)
        {
            return Ok(format!("/{}", inside.to_string_lossy()));
        }
        let mut pending: Vec<String> = split(kpath).into_iter().rev().collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    if done.pop().is_none() {
                        return Err(FsError::Resolve { path: kpath.into() });
                    }
                    continue;
                }
                _ => {}
            }
            let candidate = format!("/{}/{}", done.join("/"), part).replace("//", "/");
            match self.read_link_raw(&candidate)? {
                Some(target) => {
                    hops += 1;
                    if hops > 40 {
                        return Err(FsError::Resolve { path: kpath.into() });
                    }
                    if target.starts_with('/') {
                        done.clear();
                    }
                    for p in split(&target).into_iter().rev() {
                        pending.push(p);
                    }
                }
                None => done.push(part),
            }
        }
        Ok(format!("/{}", done.join("/")))
    }

    /// Writes a value to a kernel attribute in one write(2), as the kernel expects.
    /// Never creates files: a missing attribute is ENOENT, like any other refusal.
    pub fn write(&self, kpath: &str, value: &str) -> Result<(), WriteFailed> {
        use std::io::Write;
        let fail = |e: io::Error| WriteFailed {
            path: kpath.to_string(),
            value: value.to_string(),
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc_eio())),
            device: self.device_after(kpath),
        };
        let resolved = self.resolve(kpath).map_err(|_| WriteFailed {
            path: kpath.to_string(),
            value: value.to_string(),
            errno: nix::errno::Errno::ELOOP,
            device: Default::default(),
        })?;
        // O_TRUNC, as `echo v > file` does: procfs and sysfs ignore it, and a
        // fixture file then holds exactly the value written (not "1-3" left over
        // from writing "1" over "0-3").
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.host_path(&resolved))
            .map_err(fail)?;
        f.write_all(value.as_bytes()).map_err(fail)
    }

    /// A PCI device's state right after a write to one of its attributes was refused:
    /// gone, or without a driver (a PF being removed, or one whose driver is not loaded
    /// yet); Unknown for other files.
    pub fn device_after(&self, kpath: &str) -> DeviceAfter {
        let Some(rest) = kpath.strip_prefix("/sys/bus/pci/devices/") else {
            return DeviceAfter::Unknown;
        };
        let Some((bdf, _)) = rest.split_once('/') else {
            return DeviceAfter::Unknown;
        };
        let dir = format!("/sys/bus/pci/devices/{bdf}");
        if !self.host_path(&dir).exists() {
            DeviceAfter::Gone
        } else if !self.host_path(&format!("{dir}/driver")).exists() {
            DeviceAfter::NoDriver
        } else {
            DeviceAfter::Unknown
        }
    }

    /// Names in a directory, sorted; empty when it does not exist.
    pub fn list(&self, kpath: &str) -> Result<Vec<String>, FsError> {
        // As in `read`: lexical resolution only when recording or when the kernel's
        // own resolution finds nothing.
        let kpath = &if self.record.is_none() && self.host_path(kpath).is_dir() {
            kpath.to_string()
        } else {
            self.resolve(kpath)?
        };
        let dir = self.host_path(kpath);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if is_absent(&e) => return Ok(Vec::new()),
            Err(source) => {
                return Err(FsError::List {
                    path: kpath.into(),
                    source,
                });
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| FsError::List {
                path: kpath.into(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == KEEP {
                continue;
            }
            if let Some(rec) = self.record_path(kpath) {
                let ft = entry.file_type().map_err(|source| FsError::List {
                    path: kpath.into(),
                    source,
                })?;
                let child = format!("{}/{}", kpath.trim_end_matches('/'), name);
                let recorded = if ft.is_symlink() {
                    self.read_link_raw(&child).map(|_| ())
                } else if ft.is_dir() {
                    // git keeps no empty directory, and a fixture's `queues/rx-0` is one:
                    // a marker file keeps it (and `list` never shows the marker).
                    let dir = rec.join(&name);
                    std::fs::create_dir_all(&dir)
                        .and_then(|()| record_file(&dir.join(KEEP), b""))
                        .map_err(|source| FsError::Record {
                            path: child.clone(),
                            source,
                        })
                } else {
                    // A placeholder, so that the listing replays; a later read of
                    // the file overwrites it with the real content.
                    let dest = rec.join(&name);
                    if dest.symlink_metadata().is_err() {
                        record_file(&dest, b"")
                    } else {
                        Ok(())
                    }
                    .map_err(|source| FsError::Record {
                        path: child.clone(),
                        source,
                    })
                };
                recorded?;
            }
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    /// True when the path exists (following symlinks lexically).
    pub fn exists(&self, kpath: &str) -> bool {
        match self.resolve(kpath) {
            Ok(p) => self.host_path(&p).exists(),
            Err(_) => false,
        }
    }
}

/// Reads a whole file in as few system calls as the kernel allows. A sysfs attribute
/// comes whole in one read (it is at most a page), so `sysfs` stops at the first short
/// read: open, read, close. `std::fs::read` adds a stat and a second read; on a host
/// with hundreds of attributes, or under emulation, that is a third of discovery's
/// cost. procfs files are seq_files, which return short reads before their end, so
/// they are read to EOF.
fn read_small(path: &Path, sysfs: bool) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = f.read(&mut buf[len..])?;
        len += n;
        if n == 0 || (sysfs && len < buf.len() && len > 0) {
            break;
        }
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
    buf.truncate(len);
    Ok(buf)
}

fn split(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn libc_eio() -> i32 {
    nix::errno::Errno::EIO as i32
}

fn libc_einval() -> i32 {
    nix::errno::Errno::EINVAL as i32
}

fn record_file(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(dest, bytes)
}

fn record_link(dest: &Path, target: &str) -> io::Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if dest.symlink_metadata().is_ok() {
        return Ok(());
    }
    std::os::unix::fs::symlink(target, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused sriov_numvfs write names what happened to the PF: gone, or without a
    /// driver, rather than "its driver lacks SR-IOV".
    #[test]
    fn a_refused_numvfs_write_says_whether_the_pf_went_away_or_has_no_driver() {
        let t = tempfile::tempdir().unwrap();
        let fs = KernelFs::at(t.path());
        let e = fs
            .write("/sys/bus/pci/devices/0000:05:00.0/sriov_numvfs", "2")
            .unwrap_err();
        assert_eq!(e.device, DeviceAfter::Gone);
        assert!(e.to_string().contains("the device went away"), "{e}");
        std::fs::create_dir_all(t.path().join("sys/bus/pci/devices/0000:05:00.0")).unwrap();
        let e = fs
            .write("/sys/bus/pci/devices/0000:05:00.0/sriov_numvfs", "2")
            .unwrap_err();
        assert_eq!(e.device, DeviceAfter::NoDriver);
        assert!(e.to_string().contains("has no driver bound"), "{e}");
        assert!(!e.to_string().contains("SR-IOV"), "{e}");
        std::fs::create_dir_all(t.path().join("sys/bus/pci/devices/0000:05:00.0/driver")).unwrap();
        let e = fs
            .write("/sys/bus/pci/devices/0000:05:00.0/sriov_numvfs", "2")
            .unwrap_err();
        assert_eq!(e.device, DeviceAfter::Unknown);
        assert!(e.to_string().contains("does not support SR-IOV"), "{e}");
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0"))
            .unwrap();
        std::fs::create_dir_all(r.join("sys/class/net")).unwrap();
        std::fs::create_dir_all(
            r.join("sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0/queues/rx-0"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../../devices/pci0000:00/0000:00:03.0/virtio2/net/eth0",
            r.join("sys/class/net/eth0"),
        )
        .unwrap();
        std::fs::write(
            r.join("sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0/address"),
            "52:54:00:12:34:56\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../../../bus/pci/drivers/virtio-pci",
            r.join("sys/devices/pci0000:00/0000:00:03.0/driver"),
        )
        .unwrap();
        t
    }

    #[test]
    fn resolves_relative_links_inside_the_root() {
        let t = tree();
        let fs = KernelFs::at(t.path());
        assert_eq!(
            fs.resolve("/sys/class/net/eth0/address").unwrap(),
            "/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0/address"
        );
        assert_eq!(
            fs.read("/sys/class/net/eth0/address").unwrap().as_deref(),
            Some("52:54:00:12:34:56")
        );
    }

    #[test]
    fn dangling_driver_link_still_names_the_driver() {
        let t = tree();
        let fs = KernelFs::at(t.path());
        assert_eq!(
            fs.link_name("/sys/devices/pci0000:00/0000:00:03.0/driver")
                .unwrap()
                .as_deref(),
            Some("virtio-pci")
        );
        assert_eq!(
            fs.link_name("/sys/devices/pci0000:00/0000:00:03.0/virtio2")
                .unwrap(),
            None
        );
    }

    #[test]
    fn absent_files_are_none_and_absent_dirs_are_empty() {
        let t = tree();
        let fs = KernelFs::at(t.path());
        assert_eq!(fs.read("/sys/nothing/here").unwrap(), None);
        assert!(fs.list("/sys/nothing").unwrap().is_empty());
    }

    #[test]
    fn escaping_the_root_is_an_error() {
        let t = tree();
        let fs = KernelFs::at(t.path());
        assert!(matches!(
            fs.resolve("/../../etc"),
            Err(FsError::Resolve { .. })
        ));
    }

    #[test]
    fn recording_replays_the_same_answers() {
        let t = tree();
        let rec = tempfile::tempdir().unwrap();
        let fs = KernelFs::at(t.path()).recording_into(rec.path());
        let a = fs.read("/sys/class/net/eth0/address").unwrap();
        let d = fs
            .link_name("/sys/devices/pci0000:00/0000:00:03.0/driver")
            .unwrap();
        let l = fs.list("/sys/class/net").unwrap();
        let q = fs.list("/sys/class/net/eth0/queues").unwrap();
        assert_eq!(q, ["rx-0"]);
        let replay = KernelFs::at(rec.path());
        // The empty directory survives (git would drop it without the marker) and the
        // marker never shows.
        assert_eq!(replay.list("/sys/class/net/eth0/queues").unwrap(), q);
        assert!(
            replay
                .list("/sys/class/net/eth0/queues/rx-0")
                .unwrap()
                .is_empty()
        );
        assert_eq!(replay.read("/sys/class/net/eth0/address").unwrap(), a);
        assert_eq!(
            replay
                .link_name("/sys/devices/pci0000:00/0000:00:03.0/driver")
                .unwrap(),
            d
        );
        assert_eq!(replay.list("/sys/class/net").unwrap(), l);
    }
}
