//! Files in the host's data directory. Everything here is written atomically (temp file,
//! fsync, rename, fsync of the directory) so a crash or kill leaves the old or the new
//! content, never a mix.

pub mod atomic;
pub mod keyfile;
pub mod software_keys;

use std::path::PathBuf;
use thiserror::Error;

/// A failure of the data directory. Its `Display` names the path, for logs and the CLI (which
/// run on this machine); [`StoreError::public_message`] says the same without any path, for
/// answers to network clients.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        op: StoreOp,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// What was being done when an I/O error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Read,
    Write,
    ListDir,
    CreateDir,
}

impl StoreError {
    /// Reading `path` failed.
    pub fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op: StoreOp::Read,
            path: path.into(),
            source,
        }
    }

    /// Writing (or creating) `path` failed.
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op: StoreOp::Write,
            path: path.into(),
            source,
        }
    }

    /// Listing the directory `path` failed.
    pub fn list_dir(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op: StoreOp::ListDir,
            path: path.into(),
            source,
        }
    }

    /// Creating the directory `path` failed.
    pub fn create_dir(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op: StoreOp::CreateDir,
            path: path.into(),
            source,
        }
    }

    /// The failure without any path: which kind of file, reading or writing, and the OS
    /// error's kind. Paths tell a remote client how this host is laid out, and the operator
    /// finds the full error in the log.
    pub fn public_message(&self) -> String {
        match self {
            StoreError::Io { op, path, source } => {
                let (doing, what) = match op {
                    StoreOp::Read => ("reading", file_kind(path)),
                    StoreOp::Write => ("writing", file_kind(path)),
                    StoreOp::ListDir => ("listing", "a directory of the host's data"),
                    StoreOp::CreateDir => ("creating", "a directory of the host's data"),
                };
                format!("storage error while {doing} {what}: {}", source.kind())
            }
            StoreError::Corrupt { path, .. } => format!(
                "storage error: {} is damaged (the host log has the details)",
                file_kind(path)
            ),
        }
    }
}

/// What a file of the data directory is, from its name.
fn file_kind(path: &std::path::Path) -> &'static str {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let in_sim = path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|p| p == "sim");
    match ext {
        _ if name == keyfile::SERVER_KEY_FILE => "the server's signing key",
        software_keys::LICENCE_EXT => "the licence file",
        "memory" => "the key's memory file",
        "img" if in_sim => "the simulated key's image",
        _ => "a file of the host's data",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_messages_name_no_path() {
        let dir = "/srv/secret-place/keybridge";
        let is_dir = || std::io::Error::from(std::io::ErrorKind::IsADirectory);
        for (e, want) in [
            (
                StoreError::write(format!("{dir}/672B.5.licence"), is_dir()),
                "storage error while writing the licence file: is a directory",
            ),
            (
                StoreError::read(format!("{dir}/672B.5.memory"), is_dir()),
                "storage error while reading the key's memory file: is a directory",
            ),
            (
                StoreError::Corrupt {
                    path: format!("{dir}/server-key.pem").into(),
                    message: format!("bad PEM in {dir}"),
                },
                "storage error: the server's signing key is damaged (the host log has the details)",
            ),
        ] {
            assert_eq!(e.public_message(), want);
            assert!(e.to_string().contains(dir), "the log keeps the path: {e}");
        }
    }
}
