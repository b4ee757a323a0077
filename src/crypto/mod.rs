//! Cryptography in one place: RSA keys, what each of them may sign, signature checks, and
//! password hashing — all on `aws-lc-rs` (rustls's default provider; constant-time, and
//! about twice `ring`'s RSA signing rate on CPUs with AVX-512 IFMA).
//!
//! Where each key is used is visible from the types: a private key is only ever held inside
//! one purpose type of [`keys`] ([`LicenceKey`], [`CentreResponseKey`], [`HostResponseKey`],
//! [`FactoryKey`], [`DeviceKey`]), and each of them signs one kind of message. Every message of
//! our own formats starts with a fixed [`Label`] naming its purpose and version, so no
//! signature of one kind verifies as another (domain separation; `docs/security.md`). The one
//! exception is the host's API response, whose bytes the СЛК spec fixes (QueryID ‖ body); that
//! key signs nothing else.

pub mod keys;
mod label;
pub mod password;
mod rsa;

pub use keys::{CentreResponseKey, DeviceKey, FactoryKey, HostResponseKey, LicenceKey};
pub use label::{labelled, Label};
pub use rsa::{KeyPair, PublicKey};

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
    #[error("RSA key generation failed")]
    KeyGeneration,
    #[error("signing failed")]
    Signing,
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
    hex::encode(sha256(bytes))
}

/// SHA-256.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `n` bytes from the system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The system RNG does not fail on Linux once the kernel has seeded it; if it ever did,
    // fall back to `rand`'s thread RNG (itself OS-seeded) rather than hand out zeros.
    if aws_lc_rs::rand::fill(&mut out).is_err() {
        use rand::RngCore;
        rand::thread_rng().fill_bytes(&mut out);
    }
    out
}
