//! Device attestation: how a USB key proves it is genuine and blank before a centre binds a
//! licence to it.
//!
//! At manufacture each key gets its own RSA key pair; the manufacturer signs
//! `"keybridge-device/1" ‖ serial (u64 LE) ‖ device public key (DER)` — the certificate. Asked
//! to attest, the key signs `"keybridge-attest/1" ‖ nonce ‖ serial ‖ blank (1 byte)` with its
//! own key. The nonce is `SHA-256("keybridge-nonce/1" ‖ activation code ‖ serial)`: it ties a
//! proof to one activation of one key and needs no extra round trip, so offline requests carry
//! proofs too. A centre accepts a proof only with a certificate from a manufacturer it trusts.

use crate::crypto::PublicKey;
use crate::hal::Attestation;
use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AttestError {
    #[error("the USB key's certificate is not from a trusted manufacturer")]
    UntrustedDevice,
    #[error("the USB key's proof does not verify")]
    BadProof,
    #[error("the proof is for USB key {got}, not {expected}")]
    WrongSerial { expected: u64, got: u64 },
    #[error("the USB key is not blank")]
    NotBlank,
    #[error("the device key is malformed")]
    BadKey,
}

pub fn certificate_message(serial: u64, device_key_der: &[u8]) -> Vec<u8> {
    [
        b"keybridge-device/1".as_slice(),
        &serial.to_le_bytes(),
        device_key_der,
    ]
    .concat()
}

pub fn proof_message(nonce: &[u8; 32], serial: u64, blank: bool) -> Vec<u8> {
    [
        b"keybridge-attest/1".as_slice(),
        nonce,
        &serial.to_le_bytes(),
        &[u8::from(blank)],
    ]
    .concat()
}

pub fn nonce_for(code: &str, serial: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keybridge-nonce/1");
    h.update(code.as_bytes());
    h.update(serial.to_le_bytes());
    h.finalize().into()
}

/// Checks that `a` proves USB key `serial` genuine (by one of `manufacturers`) and blank, for
/// `nonce`.
pub fn verify(
    a: &Attestation,
    serial: u64,
    nonce: &[u8; 32],
    manufacturers: &[PublicKey],
) -> Result<(), AttestError> {
    if a.serial != serial {
        return Err(AttestError::WrongSerial {
            expected: serial,
            got: a.serial,
        });
    }
    let cert = certificate_message(a.serial, &a.device_key);
    if !manufacturers
        .iter()
        .any(|m| m.verify(&cert, &a.certificate).is_ok())
    {
        return Err(AttestError::UntrustedDevice);
    }
    let device = PublicKey::from_der(&a.device_key).map_err(|_| AttestError::BadKey)?;
    device
        .verify(&proof_message(nonce, a.serial, a.blank), &a.signature)
        .map_err(|_| AttestError::BadProof)?;
    if !a.blank {
        return Err(AttestError::NotBlank);
    }
    Ok(())
}
