//! Software keys: `{KeyID}.{KeyNo}.licence` files (as the original server keeps them) and the
//! user memory of each, `{KeyID}.{KeyNo}.memory`, side by side in the data directory.

use super::{atomic, StoreError};
use crate::keymem::UserMemory;
use std::path::{Path, PathBuf};

pub const LICENCE_EXT: &str = "licence";

pub fn licence_path(dir: &Path, key_id: &str, key_no: u64) -> PathBuf {
    dir.join(format!("{key_id}.{key_no}.{LICENCE_EXT}"))
}

pub fn memory_path(dir: &Path, key_id: &str, key_no: u64) -> PathBuf {
    dir.join(format!("{key_id}.{key_no}.memory"))
}

/// A licence file found in the data directory: its path and its bytes, or why they could
/// not be read.
pub type FoundFile = (PathBuf, Result<Vec<u8>, StoreError>);

/// Every `*.licence` file in `dir`.
pub fn list(dir: &Path) -> Result<Vec<FoundFile>, StoreError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::list_dir(dir, e)),
    };
    for e in entries.flatten() {
        let p = e.path();
        let is_licence = p.extension().is_some_and(|x| x == LICENCE_EXT)
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if is_licence {
            let bytes = std::fs::read(&p).map_err(|err| StoreError::read(&p, err));
            out.push((p, bytes));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Saves a licence file atomically.
pub fn write_licence(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    atomic::write(path, bytes, 0o640)
}

/// Loads a key's memory; a key that never had its memory touched has the default (empty).
pub fn load_memory(path: &Path) -> Result<UserMemory, StoreError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
            path: path.into(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UserMemory::default()),
        Err(e) => Err(StoreError::read(path, e)),
    }
}

pub fn save_memory(path: &Path, mem: &UserMemory) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(mem).map_err(|e| StoreError::Corrupt {
        path: path.into(),
        message: e.to_string(),
    })?;
    atomic::write(path, &bytes, 0o600)
}
