use super::CryptoError;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::signature::Verifier;
use sha2::Sha256;

/// An RSA public key that checks PKCS#1 v1.5 SHA-256 signatures.
#[derive(Clone)]
pub struct PublicKey {
    key: rsa::RsaPublicKey,
    pem: String,
    fingerprint: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint)
    }
}

impl PublicKey {
    /// Reads a `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) PEM.
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let key = rsa::RsaPublicKey::from_public_key_pem(pem.trim())
            .map_err(|e| CryptoError::BadPublicKey(e.to_string()))?;
        let der = key
            .to_public_key_der()
            .map_err(|e| CryptoError::BadPublicKey(e.to_string()))?;
        let pem = key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| CryptoError::BadPublicKey(e.to_string()))?;
        let fingerprint = super::sha256_hex(der.as_bytes());
        Ok(PublicKey {
            key,
            pem,
            fingerprint,
        })
    }

    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let key = rsa::RsaPublicKey::from_public_key_der(der)
            .map_err(|e| CryptoError::BadPublicKey(e.to_string()))?;
        let pem = key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| CryptoError::BadPublicKey(e.to_string()))?;
        Self::from_pem(&pem)
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn der(&self) -> Vec<u8> {
        self.key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// The PEM text, normalised.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo, lower-case hex: how licences name their signer.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Checks an RSASSA-PKCS1-v1_5 SHA-256 signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        // `VerifyingKey::new` uses the DigestInfo prefix; `From<RsaPublicKey>` would not, and
        // would reject every standard PKCS#1 v1.5 signature.
        let vk = VerifyingKey::<Sha256>::new(self.key.clone());
        let sig = Signature::try_from(signature).map_err(|_| CryptoError::BadSignature)?;
        vk.verify(message, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}
