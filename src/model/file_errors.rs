//! The errors of reading and writing files, kernel files (sysfs, procfs) and the user's
//! own (config, state, journal) alike: plain values with the path and the cause, shared by
//! every layer that reads or writes through a trait or an adapter, so that a discovery
//! error, a refused sysfs write and a state file that cannot be saved read the same way
//! wherever they surface.

use std::io;
use std::path::PathBuf;

/// Errors from reading kernel files.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    /// A directory exists but could not be listed.
    #[error("cannot list {path}: {source}")]
    List { path: String, source: io::Error },
    /// Symlinks loop or climb out of the root.
    #[error("cannot resolve {path}: too many symbolic links or a link that leaves the root")]
    Resolve { path: String },
    /// Writing to a recording directory failed.
    #[error("cannot record {path} into the capture directory: {source}")]
    Record { path: String, source: io::Error },
}

/// A sysfs/procfs write the kernel refused, with its errno (which callers classify:
/// EBUSY is worth a retry, EPERM never is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("writing \"{}\" to {path} failed: {}{}", value.trim(), errno.desc(), write_hint(path, *errno, *device))]
pub struct WriteFailed {
    pub path: String,
    pub value: String,
    pub errno: nix::errno::Errno,
    /// The written file's device as it was right after the refusal: a PF being removed,
    /// or one whose driver is not loaded yet, refuses with the same errno as one whose
    /// driver lacks SR-IOV, and the hint must tell them apart.
    pub device: DeviceAfter,
}

/// What the device of a refused kernel-file write looked like right after the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceAfter {
    /// Not looked at, or there with a driver.
    #[default]
    Unknown,
    /// Its sysfs directory is gone: the device was removed.
    Gone,
    /// There, with no driver bound.
    NoDriver,
}

/// The likely cause behind errnos that users otherwise find cryptic.
fn write_hint(path: &str, errno: nix::errno::Errno, device: DeviceAfter) -> &'static str {
    use nix::errno::Errno;
    match device {
        DeviceAfter::Gone => return " (the device went away: it was removed meanwhile)",
        DeviceAfter::NoDriver => {
            return " (the device has no driver bound: it is being removed, or has just \
                     arrived and its driver is not loaded yet)";
        }
        DeviceAfter::Unknown => {}
    }
    if path.ends_with("sriov_numvfs") {
        return match errno {
            Errno::ERANGE => " (more VFs than sriov_totalvfs allows)",
            Errno::EBUSY => {
                " (VFs already exist: the kernel changes a non-zero VF count only through 0)"
            }
            Errno::ENOENT => " (the PF's driver does not support SR-IOV)",
            Errno::ENOMEM | Errno::ENOSPC => {
                " (likely cause: the firmware reserved too little PCI bus or memory space \
                 for VFs; enable SR-IOV in the BIOS, or boot with pci=realloc)"
            }
            Errno::EIO | Errno::EPERM => {
                " (likely cause: SR-IOV disabled in firmware, or the IOMMU configuration)"
            }
            _ => "",
        };
    }
    if path.ends_with("drivers_probe") && matches!(errno, Errno::ENODEV | Errno::ENOENT) {
        return " (is the driver's module loaded? e.g. modprobe vfio-pci)";
    }
    if path.contains("/proc/irq/") {
        return match errno {
            Errno::EPERM | Errno::EIO => " (the kernel manages this interrupt's affinity)",
            Errno::ENOSPC => " (that CPU has no free interrupt vectors)",
            Errno::EINVAL => " (no online CPU in the mask)",
            _ => "",
        };
    }
    ""
}

/// Errors from reading or writing user files.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// A directory could not be listed.
    #[error("cannot list directory {}: {source}", path.display())]
    List { path: PathBuf, source: io::Error },
    /// A lock file could not be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },
}
