//! RSA-2048 keys on aws-lc-rs: PKCS#8 PEM private keys, SubjectPublicKeyInfo PEM public keys,
//! RSASSA-PKCS1-v1_5 with SHA-256 signatures.

use super::label::{labelled, Label};
use super::CryptoError;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeySize, PublicEncryptingKey};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};

const PRIVATE_PEM_TAG: &str = "PRIVATE KEY";
const PUBLIC_PEM_TAG: &str = "PUBLIC KEY";

/// An RSA private key. Only the purpose types in [`super::keys`] hold one, and only they can
/// sign with it: `sign_*` are crate-private.
pub struct KeyPair {
    pair: aws_lc_rs::rsa::KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("fingerprint", &self.public.fingerprint())
            .finish()
    }
}

impl KeyPair {
    /// A fresh RSA-2048 key.
    pub fn generate() -> Result<KeyPair, CryptoError> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| CryptoError::KeyGeneration)?;
        Self::from_pair(pair).map_err(|_| CryptoError::KeyGeneration)
    }

    fn from_pair(pair: aws_lc_rs::rsa::KeyPair) -> Result<KeyPair, CryptoError> {
        let spki: PublicKeyX509Der = pair
            .public_key()
            .as_der()
            .map_err(|_| CryptoError::BadPrivateKey("no public key".into()))?;
        let public = PublicKey::from_der(spki.as_ref())?;
        Ok(KeyPair { pair, public })
    }

    /// Reads a `-----BEGIN PRIVATE KEY-----` (PKCS#8) PEM.
    pub fn from_pkcs8_pem(text: &str) -> Result<KeyPair, CryptoError> {
        let block =
            pem::parse(text.trim()).map_err(|e| CryptoError::BadPrivateKey(e.to_string()))?;
        if block.tag() != PRIVATE_PEM_TAG {
            return Err(CryptoError::BadPrivateKey(format!(
                "a {:?} PEM block, expected {PRIVATE_PEM_TAG:?}",
                block.tag()
            )));
        }
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(block.contents())
            .map_err(|e| CryptoError::BadPrivateKey(e.to_string()))?;
        if pair.public_modulus_len() < 256 {
            return Err(CryptoError::BadPrivateKey(
                "the key is shorter than 2048 bits".into(),
            ));
        }
        Self::from_pair(pair)
    }

    /// The PKCS#8 PEM text, for the key file.
    pub fn to_pkcs8_pem(&self) -> Result<String, CryptoError> {
        let der: Pkcs8V1Der = self.pair.as_der().map_err(|_| CryptoError::KeyGeneration)?;
        Ok(pem::encode(&pem::Pem::new(
            PRIVATE_PEM_TAG,
            der.as_ref().to_vec(),
        )))
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs exactly `message`. Only [`super::keys::HostResponseKey`] signs unlabelled bytes.
    pub(super) fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
            .map_err(|_| CryptoError::Signing)?;
        Ok(sig)
    }

    /// Signs a labelled message (see [`labelled`]).
    pub(super) fn sign_labelled(
        &self,
        label: Label,
        fields: &[&[u8]],
    ) -> Result<Vec<u8>, CryptoError> {
        self.sign_raw(&labelled(label, fields))
    }
}

/// An RSA public key that checks PKCS#1 v1.5 SHA-256 signatures.
#[derive(Clone)]
pub struct PublicKey {
    der: Vec<u8>,
    pem: String,
    fingerprint: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl PublicKey {
    /// Reads a `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) PEM.
    pub fn from_pem(text: &str) -> Result<Self, CryptoError> {
        let block =
            pem::parse(text.trim()).map_err(|e| CryptoError::BadPublicKey(e.to_string()))?;
        if block.tag() != PUBLIC_PEM_TAG {
            return Err(CryptoError::BadPublicKey(format!(
                "a {:?} PEM block, expected {PUBLIC_PEM_TAG:?}",
                block.tag()
            )));
        }
        Self::from_der(block.contents())
    }

    /// Reads a DER SubjectPublicKeyInfo; only RSA keys of 2048 bits or more are accepted.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let key = PublicEncryptingKey::from_der(der)
            .map_err(|_| CryptoError::BadPublicKey("not an RSA SubjectPublicKeyInfo".into()))?;
        if key.key_size_bits() < 2048 {
            return Err(CryptoError::BadPublicKey(
                "the key is shorter than 2048 bits".into(),
            ));
        }
        let pem = pem::encode_config(
            &pem::Pem::new(PUBLIC_PEM_TAG, der.to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        Ok(PublicKey {
            der: der.to_vec(),
            pem,
            fingerprint: super::sha256_hex(der),
        })
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn der(&self) -> Vec<u8> {
        self.der.clone()
    }

    /// The PEM text, normalised.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo, lower-case hex: how licences name their signer.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Checks a signature over exactly `message` (the host's СЛК response bytes).
    pub fn verify_raw(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.der)
            .verify(message, signature)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// Checks a signature of kind `label` over `fields`.
    pub fn verify_labelled(
        &self,
        label: Label,
        fields: &[&[u8]],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.verify_raw(&labelled(label, fields), signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_sign_verify() {
        let k = KeyPair::generate().expect("key");
        let again = KeyPair::from_pkcs8_pem(&k.to_pkcs8_pem().expect("pem")).expect("parse");
        assert_eq!(again.public_key(), k.public_key());
        let p = PublicKey::from_pem(k.public_key().pem()).expect("public");
        let sig = again.sign_labelled(Label::Licence, &[b"x"]).expect("sign");
        assert!(p.verify_labelled(Label::Licence, &[b"x"], &sig).is_ok());
        assert!(p
            .verify_labelled(Label::CentreResponse, &[b"x"], &sig)
            .is_err());
        assert!(p.verify_raw(b"x", &sig).is_err());
        assert!(PublicKey::from_pem(&k.to_pkcs8_pem().expect("pem")).is_err());
    }
}
