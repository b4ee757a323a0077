use super::{CryptoError, PublicKey};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};

/// An RSA private key that produces PKCS#1 v1.5 SHA-256 signatures.
pub struct Signer {
    pair: RsaKeyPair,
    rng: SystemRandom,
    public: PublicKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("fingerprint", &self.public.fingerprint())
            .finish()
    }
}

impl Signer {
    /// Loads a PKCS#8 PEM private key (as made by [`super::generate_private_key_pem`]).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, CryptoError> {
        use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| CryptoError::BadPrivateKey(e.to_string()))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| CryptoError::BadPrivateKey(e.to_string()))?;
        let pair = RsaKeyPair::from_pkcs8(der.as_bytes())
            .map_err(|e| CryptoError::BadPrivateKey(e.to_string()))?;
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| CryptoError::BadPrivateKey(e.to_string()))?;
        let public = PublicKey::from_pem(&public_pem)?;
        Ok(Signer {
            pair,
            rng: SystemRandom::new(),
            public,
        })
    }

    /// Signs `message` (RSASSA-PKCS1-v1_5, SHA-256).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
            .map_err(|_| CryptoError::Signing)?;
        Ok(sig)
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
}
