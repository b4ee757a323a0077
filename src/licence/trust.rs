use crate::crypto::PublicKey;
use std::collections::HashMap;
use std::path::Path;

/// The centre public keys a host accepts licences from, by fingerprint.
#[derive(Debug, Default, Clone)]
pub struct TrustStore {
    keys: HashMap<String, PublicKey>,
}

impl TrustStore {
    pub fn add(&mut self, key: PublicKey) {
        self.keys.insert(key.fingerprint().to_owned(), key);
    }

    pub fn get(&self, fingerprint: &str) -> Option<&PublicKey> {
        self.keys.get(fingerprint)
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> Vec<PublicKey> {
        self.keys.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds a PEM public key file. Errors name the file.
    pub fn add_file(&mut self, path: &Path) -> Result<(), String> {
        let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let key = PublicKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
        self.add(key);
        Ok(())
    }

    /// Adds every `*.pem` file in `dir` (a missing directory adds nothing).
    pub fn add_dir(&mut self, dir: &Path) -> Result<(), String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let mut paths: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pem"))
            .collect();
        paths.sort();
        for p in paths {
            self.add_file(&p)?;
        }
        Ok(())
    }
}
