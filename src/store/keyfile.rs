//! The server's signing key: made on first start, kept as PKCS#8 PEM with mode 0600.

use super::StoreError;
use crate::crypto::{self, Signer};
use std::path::Path;

pub const SERVER_KEY_FILE: &str = "server-key.pem";

/// Loads the private key at `path`, or makes and saves one if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<Signer, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => Signer::from_pkcs8_pem(&pem).map_err(|e| StoreError::Corrupt {
            path: path.into(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pem = crypto::generate_private_key_pem().map_err(|e| StoreError::Corrupt {
                path: path.into(),
                message: e.to_string(),
            })?;
            if let Some(dir) = path.parent() {
                super::atomic::ensure_dir(dir)?;
            }
            super::atomic::write(path, pem.as_bytes(), 0o600)?;
            Signer::from_pkcs8_pem(&pem).map_err(|e| StoreError::Corrupt {
                path: path.into(),
                message: e.to_string(),
            })
        }
        Err(e) => Err(StoreError::read(path, e)),
    }
}

/// Loads an existing private key without creating one.
pub fn load(path: &Path) -> Result<Signer, StoreError> {
    let pem = std::fs::read_to_string(path).map_err(|e| StoreError::read(path, e))?;
    Signer::from_pkcs8_pem(&pem).map_err(|e| StoreError::Corrupt {
        path: path.into(),
        message: e.to_string(),
    })
}
