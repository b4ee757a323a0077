//! Files in the host's data directory. Everything here is written atomically (temp file,
//! fsync, rename, fsync of the directory) so a crash or kill leaves the old or the new
//! content, never a mix.

pub mod atomic;
pub mod keyfile;
pub mod software_keys;

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
