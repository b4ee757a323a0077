//! Cryptography in one place: the RSA keys that sign API responses and licences, signature
//! verification, and password hashing.
//!
//! Signing uses `ring` (constant-time, ~3× faster than the `rsa` crate, which carries the
//! unfixed Marvin advisory RUSTSEC-2023-0071). The `rsa` crate is used only where no secret
//! is at stake per request: key generation, PEM handling and verification.

pub mod password;
mod signer;
mod verifier;

pub use signer::Signer;
pub use verifier::PublicKey;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("not a valid RSA private key in PKCS#8 PEM: {0}")]
    BadPrivateKey(String),
    #[error("not a valid RSA public key in PEM (SubjectPublicKeyInfo): {0}")]
    BadPublicKey(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the signature is not valid base64")]
    SignatureEncoding,
    #[error("RSA key generation failed: {0}")]
    KeyGeneration(String),
    #[error("signing failed")]
    Signing,
}

/// Makes a fresh RSA-2048 private key as PKCS#8 PEM.
pub fn generate_private_key_pem() -> Result<String, CryptoError> {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let mut rng = rand::thread_rng();
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048)
        .map_err(|e| CryptoError::KeyGeneration(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| CryptoError::KeyGeneration(e.to_string()))?;
    Ok(pem.to_string())
}

/// Standard base64, as used in `Licence-Signature` and in licence files.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64, ignoring ASCII white space (signatures get wrapped when pasted).
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
