//! An independent check of licence files (docs/licence-format.md), for tests that read what a
//! host left on disk: the envelope, the signer's fingerprint and the labelled signature are
//! checked here with the `rsa` and `sha2` crates, not with the library's own code.
#![allow(dead_code)]

use base64::Engine;
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const LICENCE_FORMAT: &str = "keybridge-licence/2";

/// SHA-256 of the key's DER SubjectPublicKeyInfo, hex: how an envelope names its signer.
pub fn fingerprint(pem: &str) -> String {
    let key = rsa::RsaPublicKey::from_public_key_pem(pem).expect("public key PEM");
    let der = key.to_public_key_der().expect("DER");
    hex::encode(Sha256::digest(der.as_bytes()))
}

/// The terms of a licence file (the payload, as JSON) if its envelope is format 2, names one
/// of `centres` (public keys, PEM) as signer, and carries that key's signature over the
/// labelled payload; otherwise why not.
pub fn verify_licence(bytes: &[u8], centres: &[&str]) -> Result<Value, String> {
    let env: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let field = |k: &str| {
        env[k]
            .as_str()
            .ok_or_else(|| format!("no {k} in the envelope"))
    };
    if field("format")? != LICENCE_FORMAT {
        return Err(format!("format {:?}", env["format"]));
    }
    let signer = field("signer")?.to_ascii_lowercase();
    let pem = centres
        .iter()
        .find(|p| fingerprint(p) == signer)
        .ok_or_else(|| format!("signer {signer} is none of the given keys"))?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(field("payload")?)
        .map_err(|e| format!("payload not base64: {e}"))?;
    let len = u32::try_from(payload.len()).map_err(|_| "payload too long".to_owned())?;
    let mut signed = LICENCE_FORMAT.as_bytes().to_vec();
    signed.push(0);
    signed.extend_from_slice(&len.to_be_bytes());
    signed.extend_from_slice(&payload);
    if !super::rsa_verify(pem, &signed, field("signature")?) {
        return Err("the signature does not verify".into());
    }
    serde_json::from_slice(&payload).map_err(|e| format!("payload not JSON: {e}"))
}
