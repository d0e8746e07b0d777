//! Where provisioning keeps its own files (the config it reads, the state file, the apply
//! journal and the apply lock), as a trait the kernel layer implements over ordinary files
//! (`host::userfiles::UserFiles`): provisioning decides what to write and when, never how a
//! file is opened, so it names no module of `host`. [`MemStore`] keeps the files in memory,
//! for tests that need no directory on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::model::file_errors::FilesError;

/// What provisioning asks of the place its files live. `Send + Sync` because the daemon
/// applies from its worker threads; `Debug` so that the options holding a store print.
pub trait Store: Send + Sync + fmt::Debug {
    /// Reads one text file; a missing file is [`FilesError::Read`] with `NotFound`.
    fn read_text(&self, path: &Path) -> Result<String, FilesError>;
    /// Replaces a file so that a crash, a power loss included, leaves the old or the new
    /// content (the state file: allocations a reboot must still find).
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), FilesError>;
    /// Replaces a file so that the death of the process leaves the old or the new content,
    /// without paying for a power loss (the journal: see `apply::journal`, `Journal::save`).
    fn write_replace(&self, path: &Path, bytes: &[u8]) -> Result<(), FilesError>;
    /// Removes a file; a file already gone is fine.
    fn remove(&self, path: &Path) -> Result<(), FilesError>;
    /// Takes an exclusive lock named by `path`, waiting for whoever holds it, held until
    /// the returned [`Held`] is dropped.
    fn lock_exclusive(&self, path: &Path) -> Result<Held<'_>, FilesError>;
}

/// A lock taken through a [`Store`], released when dropped.
pub struct Held<'a> {
    _guard: Box<dyn Send + 'a>,
}

impl<'a> Held<'a> {
    /// Wraps whatever releases the lock when it is dropped.
    pub fn new(guard: impl Send + 'a) -> Held<'a> {
        Held {
            _guard: Box::new(guard),
        }
    }
}

impl fmt::Debug for Held<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Held")
    }
}

/// Files kept in memory, by path, with locks that wait as file locks do. `const`, so that
/// a test can share one as a `static` (stores in `ApplyOptions` are `'static`).
#[derive(Debug, Default)]
pub struct MemStore {
    files: Mutex<BTreeMap<PathBuf, Vec<u8>>>,
    locks: Mutex<BTreeSet<PathBuf>>,
    unlocked: Condvar,
}

impl MemStore {
    pub const fn new() -> MemStore {
        MemStore {
            files: Mutex::new(BTreeMap::new()),
            locks: Mutex::new(BTreeSet::new()),
            unlocked: Condvar::new(),
        }
    }

    fn files(&self) -> MutexGuard<'_, BTreeMap<PathBuf, Vec<u8>>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
        self.files().insert(path.to_path_buf(), bytes.to_vec());
        Ok(())
    }
}

impl Store for MemStore {
    fn read_text(&self, path: &Path) -> Result<String, FilesError> {
        let err = |source| FilesError::Read {
            path: path.to_path_buf(),
            source,
        };
        let bytes = self
            .files()
            .get(path)
            .cloned()
            .ok_or_else(|| err(io::ErrorKind::NotFound.into()))?;
        String::from_utf8(bytes).map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
        self.write(path, bytes)
    }

    fn write_replace(&self, path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
        self.write(path, bytes)
    }

    fn remove(&self, path: &Path) -> Result<(), FilesError> {
        self.files().remove(path);
        Ok(())
    }

    fn lock_exclusive(&self, path: &Path) -> Result<Held<'_>, FilesError> {
        let mut held = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        while held.contains(path) {
            held = self
                .unlocked
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        held.insert(path.to_path_buf());
        Ok(Held::new(MemLock {
            store: self,
            path: path.to_path_buf(),
        }))
    }
}

/// One path locked in a [`MemStore`], freed on drop.
struct MemLock<'a> {
    store: &'a MemStore,
    path: PathBuf,
}

impl Drop for MemLock<'_> {
    fn drop(&mut self) {
        let mut held = self
            .store
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.remove(&self.path);
        self.store.unlocked.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_missing(e: FilesError) -> bool {
        matches!(e, FilesError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    #[test]
    fn memory_files_read_back_and_go() {
        let s = MemStore::new();
        let p = Path::new("/state/state.json");
        assert!(is_missing(s.read_text(p).unwrap_err()));
        s.write_atomic(p, b"one").unwrap();
        s.write_replace(p, b"two").unwrap();
        assert_eq!(s.read_text(p).unwrap(), "two");
        s.remove(p).unwrap();
        s.remove(p).unwrap();
        assert!(is_missing(s.read_text(p).unwrap_err()));
        s.write_atomic(p, &[0xff]).unwrap();
        assert!(!is_missing(s.read_text(p).unwrap_err()));
    }

    #[test]
    fn a_memory_lock_waits_for_its_holder() {
        static S: MemStore = MemStore::new();
        let p = Path::new("/state/apply.lock");
        let first = S.lock_exclusive(p).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _second = S.lock_exclusive(p).unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(50))
                .is_err()
        );
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
    }
}
