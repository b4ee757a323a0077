//! The licence document: every field the API reports about a key, plus its binding (the
//! machine or the USB key it may be used on), signed by a licensing centre's RSA key.
//!
//! The signing half ([`sign`]) is here, in the library, so the centre issues exactly what the
//! host opens ([`open`]). The file format is documented in `docs/licence-format.md`.

mod terms;
mod trust;

pub use terms::{Binding, Flags, Iec, Itn, KeyType, LicenceTerms, Validity};
pub use trust::TrustStore;

use crate::crypto::{self, Signer};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `format` value of licence files this build reads and writes.
pub const FORMAT: &str = "keybridge-licence/1";
/// The format version as `GET /api/licences` reports it in `Version`.
pub const FORMAT_VERSION: &str = "1";

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LicenceError {
    #[error("not a keybridge licence file: {0}")]
    Format(String),
    #[error("signed by an untrusted key (fingerprint {0}); add the centre's public key to the host's trusted keys")]
    UntrustedSigner(String),
    #[error("the licence signature does not verify: the file was altered or damaged")]
    BadSignature,
    #[error("the licence is bound to {found}, not to {expected}")]
    WrongBinding { expected: String, found: String },
    #[error("the licence content is invalid: {0}")]
    Invalid(String),
    #[error("signing the licence failed: {0}")]
    Signing(String),
}

/// The outer envelope of a licence file. The payload is kept as the exact bytes that were
/// signed, so no JSON canonicalisation is needed to check it.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    format: String,
    signer: String,
    payload: String,
    signature: String,
}

/// Signs `terms` with a centre key and returns the licence file's bytes.
pub fn sign(terms: &LicenceTerms, centre: &Signer) -> Result<Vec<u8>, LicenceError> {
    terms.validate()?;
    let payload = serde_json::to_vec(terms).map_err(|e| LicenceError::Signing(e.to_string()))?;
    let signature = centre
        .sign(&payload)
        .map_err(|e| LicenceError::Signing(e.to_string()))?;
    let env = Envelope {
        format: FORMAT.into(),
        signer: centre.public_key().fingerprint().into(),
        payload: crypto::b64(&payload),
        signature: crypto::b64(&signature),
    };
    let mut out =
        serde_json::to_vec_pretty(&env).map_err(|e| LicenceError::Signing(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// Opens a licence file: checks the envelope, that a trusted centre signed it, and the terms.
/// The binding is checked separately ([`LicenceTerms::check_binding`]) since only the caller
/// knows which machine or device it is on.
pub fn open(bytes: &[u8], trust: &TrustStore) -> Result<LicenceTerms, LicenceError> {
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| LicenceError::Format(e.to_string()))?;
    if env.format != FORMAT {
        return Err(LicenceError::Format(format!(
            "format {:?}, expected {FORMAT:?}",
            env.format
        )));
    }
    let key = trust
        .get(&env.signer)
        .ok_or_else(|| LicenceError::UntrustedSigner(env.signer.clone()))?;
    let payload = crypto::unb64(&env.payload)
        .ok_or_else(|| LicenceError::Format("payload is not base64".into()))?;
    let sig = crypto::unb64(&env.signature)
        .ok_or_else(|| LicenceError::Format("signature is not base64".into()))?;
    key.verify(&payload, &sig)
        .map_err(|_| LicenceError::BadSignature)?;
    let terms: LicenceTerms =
        serde_json::from_slice(&payload).map_err(|e| LicenceError::Invalid(e.to_string()))?;
    terms.validate()?;
    Ok(terms)
}
