//! Ordinary files the user hands us (configs, hardware profiles). Kept here so that
//! no module outside `host/` opens files itself.

use std::io;
use std::path::{Path, PathBuf};

/// Errors from reading user-supplied files.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// A directory could not be listed.
    #[error("cannot list directory {}: {source}", path.display())]
    List { path: PathBuf, source: io::Error },
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
