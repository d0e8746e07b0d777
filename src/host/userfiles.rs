//! Ordinary files the user hands us (configs, hardware profiles). Kept here so that
//! no module outside `host/` opens files itself.

use std::io;
use std::path::{Path, PathBuf};

use crate::model::file_errors::FilesError;
use crate::provision::store::{Held, Store};

/// The user's files as provisioning's [`Store`]: ordinary files, through the functions below.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserFiles;

impl Store for UserFiles {
    fn read_text(&self, path: &Path) -> Result<String, FilesError> {
        read_text(path)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
        write_atomic(path, bytes)
    }

    fn write_replace(&self, path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
        write_replace(path, bytes)
    }

    fn remove(&self, path: &Path) -> Result<(), FilesError> {
        remove(path)
    }

    fn lock_exclusive(&self, path: &Path) -> Result<Held<'_>, FilesError> {
        lock_exclusive(path).map(Held::new)
    }
}

/// Reads one text file.
pub fn read_text(path: &Path) -> Result<String, FilesError> {
    std::fs::read_to_string(path).map_err(|source| FilesError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every file in `dir` whose name ends in `.{ext}`, sorted by path.
pub fn read_dir_texts(dir: &Path, ext: &str) -> Result<Vec<(PathBuf, String)>, FilesError> {
    let entries = std::fs::read_dir(dir).map_err(|source| FilesError::List {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| FilesError::List {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some(ext) {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| read_text(&p).map(|t| (p, t)))
        .collect()
}

/// Writes a file atomically: a temporary file in the same directory, fsync, rename,
/// then fsync of the directory, so a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
    write_replacing(path, bytes, true)
}

/// Replaces a file atomically against the death of the process (a temporary file, then
/// rename), without fsync. A killed process leaves the old or the new content, since both
/// live in the page cache, which outlives the process; only a power loss or a kernel crash
/// can lose the write, and is for what fsync would be paid. For apply's journal, that case
/// needs no fsync: it describes kernel state (VFs, RSS contexts, rules) that a power loss
/// or kernel crash resets too (src/provision/apply/journal.rs, `Journal::save`).
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
    write_replacing(path, bytes, false)
}

fn write_replacing(path: &Path, bytes: &[u8], sync: bool) -> Result<(), FilesError> {
    use std::io::Write;
    let err = |source| FilesError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    if sync {
        f.sync_all().map_err(err)?;
    }
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if sync {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

/// Removes a file; a file already gone is fine.
pub fn remove(path: &Path) -> Result<(), FilesError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FilesError::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// An exclusive lock on a file (flock), held until dropped. The kernel releases it when the
/// process dies, so a killed apply never leaves a stale lock behind.
pub struct FileLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Takes an exclusive lock on `path` (created if missing), waiting for whoever holds it:
/// two applies (the daemon's and a manual `vportd apply`) must not interleave their steps.
pub fn lock_exclusive(path: &Path) -> Result<FileLock, FilesError> {
    let err = |source| FilesError::Lock {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(err)?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| err(errno.into()))?;
    Ok(FileLock { _lock: lock })
}
