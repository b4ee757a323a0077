//! Private key files: made on first start, kept as PKCS#8 PEM with mode 0600. Which key a file
//! holds is the caller's business (each wraps it in its purpose type, `crypto::keys`).

use super::StoreError;
use crate::crypto::KeyPair;
use std::path::Path;

/// The host's response-signing key in its data directory.
pub const SERVER_KEY_FILE: &str = "server-key.pem";

fn corrupt(path: &Path, e: impl ToString) -> StoreError {
    StoreError::Corrupt {
        path: path.into(),
        message: e.to_string(),
    }
}

/// Loads the private key at `path`, or makes and saves one if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<KeyPair, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => KeyPair::from_pkcs8_pem(&pem).map_err(|e| corrupt(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate().map_err(|e| corrupt(path, e))?;
            let pem = key.to_pkcs8_pem().map_err(|e| corrupt(path, e))?;
            if let Some(dir) = path.parent() {
                super::atomic::ensure_dir(dir)?;
            }
            super::atomic::write(path, pem.as_bytes(), 0o600)?;
            Ok(key)
        }
        Err(e) => Err(StoreError::read(path, e)),
    }
}

/// Loads an existing private key without creating one.
pub fn load(path: &Path) -> Result<KeyPair, StoreError> {
    let pem = std::fs::read_to_string(path).map_err(|e| StoreError::read(path, e))?;
    KeyPair::from_pkcs8_pem(&pem).map_err(|e| corrupt(path, e))
}
