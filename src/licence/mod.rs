//! The licence document: every field the API reports about a key, plus its binding (the
//! machine or the USB key it may be used on), signed by a licensing centre's RSA key.
//!
//! The signing half ([`sign`]) is here, in the library, so the centre issues exactly what the
//! host opens ([`open`]). The file format is documented in `docs/licence-format.md`.

mod terms;
mod trust;

pub use terms::{
    user_key, AccountTerms, Binding, Flags, Iec, Itn, KeyType, LicenceTerms, SessionLimit, Validity,
};
pub use trust::TrustStore;

use crate::crypto::{self, LicenceKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `format` value of licence files this build reads and writes.
pub const FORMAT: &str = "keybridge-licence/2";
/// Licence files of format 1 were signed over the bare payload, before purpose labels; they
/// are never trusted again (a signing oracle of the past could have made them) and are
/// re-issued through update (`docs/licence-format.md`).
pub const FORMAT_V1: &str = "keybridge-licence/1";
/// The format version as `GET /api/licences` reports it in `Version`.
pub const FORMAT_VERSION: &str = "2";

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LicenceError {
    #[error("not a keybridge licence file: {0}")]
    Format(String),
    #[error("licence file format 1 is no longer accepted (its signature carries no purpose label); POST /api/licences/update re-issues it from the centre")]
    Superseded,
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
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    signer: String,
    payload: String,
    signature: String,
}

/// Signs `terms` with a centre's licence key and returns the licence file's bytes.
pub fn sign(terms: &LicenceTerms, centre: &LicenceKey) -> Result<Vec<u8>, LicenceError> {
    terms.validate()?;
    let payload = serde_json::to_vec(terms).map_err(|e| LicenceError::Signing(e.to_string()))?;
    let signature = centre
        .sign_licence(&payload)
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

/// Opens a licence file: checks the envelope, that a trusted centre signed it for this
/// purpose, and the terms. The binding is checked separately
/// ([`LicenceTerms::check_binding`]) since only the caller knows which machine or device it
/// is on.
pub fn open(bytes: &[u8], trust: &TrustStore) -> Result<LicenceTerms, LicenceError> {
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| LicenceError::Format(e.to_string()))?;
    if env.format == FORMAT_V1 {
        return Err(LicenceError::Superseded);
    }
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
    key.verify_labelled(crypto::Label::Licence, &[&payload], &sig)
        .map_err(|_| LicenceError::BadSignature)?;
    parse_terms(&payload)
}

/// Reads and validates the terms of a payload whose signature [`open`] has checked. Public
/// for the property tests and the fuzzer, which cannot sign what they make up: they reach
/// the terms parser through here. Anything else must go through [`open`].
pub fn parse_terms(payload: &[u8]) -> Result<LicenceTerms, LicenceError> {
    let terms: LicenceTerms =
        serde_json::from_slice(payload).map_err(|e| LicenceError::Invalid(e.to_string()))?;
    terms.validate()?;
    Ok(terms)
}

/// What an unverified licence file of any format claims about itself: which key it is and
/// the activation code it came from. Trusted for nothing; the host only uses it to ask the
/// centre to re-issue a superseded (format 1) file, and the centre checks the claim against
/// its own records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key_id: String,
    pub key_no: u64,
    pub activation_code: String,
    pub itn: Option<String>,
    pub iec: Option<String>,
}

pub fn claim(bytes: &[u8]) -> Option<Claim> {
    #[derive(Deserialize)]
    struct Loose {
        payload: String,
    }
    #[derive(Deserialize)]
    struct LooseTerms {
        key_id: String,
        key_no: u64,
        activation_code: String,
        itn: Option<String>,
        iec: Option<String>,
    }
    let env: Loose = serde_json::from_slice(bytes).ok()?;
    let t: LooseTerms = serde_json::from_slice(&crypto::unb64(&env.payload)?).ok()?;
    Some(Claim {
        key_id: t.key_id,
        key_no: t.key_no,
        activation_code: t.activation_code,
        itn: t.itn,
        iec: t.iec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;

    /// A licence file around `payload` exactly, signed by `key` (as a buggy or malicious
    /// issuer could make one), so `open` is tested on terms `sign` would never produce.
    fn raw_licence(key: &LicenceKey, payload: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "format": FORMAT,
            "signer": key.public_key().fingerprint(),
            "payload": crypto::b64(payload),
            "signature": crypto::b64(&key.sign_licence(payload).expect("sign")),
        }))
        .expect("json")
    }

    #[test]
    fn open_refuses_what_sign_refuses() {
        let key = LicenceKey::new(KeyPair::generate().expect("key"));
        let mut trust = TrustStore::default();
        trust.add(key.public_key().clone());
        let good = LicenceTerms::new(5, "672B", 3, Binding::Device(9));
        assert!(open(&sign(&good, &key).expect("sign"), &trust).is_ok());
        let value = serde_json::to_value(&good).expect("json");
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = value.clone();
            f(&mut v);
            raw_licence(&key, &serde_json::to_vec(&v).expect("json"))
        };
        for (what, doc) in [
            (
                "unknown field",
                with(&|v| v["licence_count_max"] = 9.into()),
            ),
            ("LicenceCount 0", with(&|v| v["licence_count"] = 0.into())),
            (
                "period overflowing a date",
                with(&|v| v["period"] = u32::MAX.into()),
            ),
            ("KeyNo past i64", with(&|v| v["key_no"] = u64::MAX.into())),
            (
                "negative count",
                with(&|v| v["licence_count"] = (-1).into()),
            ),
        ] {
            let r = open(&doc, &trust);
            assert!(matches!(r, Err(LicenceError::Invalid(_))), "{what}: {r:?}");
        }
        let mut bad = good.clone();
        bad.licence_count = 0;
        assert!(sign(&bad, &key).is_err());
        bad = LicenceTerms {
            period: u32::MAX,
            ..good
        };
        assert!(sign(&bad, &key).is_err());
    }

    #[test]
    fn format_1_is_superseded_and_claims_are_read() {
        let key = LicenceKey::new(KeyPair::generate().expect("key"));
        let mut trust = TrustStore::default();
        trust.add(key.public_key().clone());
        let doc = sign(&LicenceTerms::new(5, "672B", 3, Binding::Device(9)), &key).expect("sign");
        let mut env: serde_json::Value = serde_json::from_slice(&doc).expect("json");
        env["format"] = FORMAT_V1.into();
        let v1 = serde_json::to_vec(&env).expect("json");
        assert_eq!(open(&v1, &trust), Err(LicenceError::Superseded));
        let c = claim(&v1).expect("claim");
        assert_eq!((c.key_id.as_str(), c.key_no), ("672B", 5));
    }
}
