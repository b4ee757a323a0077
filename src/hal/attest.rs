//! Device attestation: how a USB key proves it is genuine and blank before a centre binds a
//! licence to it.
//!
//! At manufacture each key gets its own RSA key pair, and the manufacturer certifies it
//! ([`crate::crypto::FactoryKey::certify`]). Asked to attest, the key signs a 32-byte
//! challenge with its serial and whether it is blank
//! ([`crate::crypto::DeviceKey::attest`], label `keybridge-attest/2`). The challenge is either
//! fresh — issued by the centre for one online activation and accepted once — or, for an
//! offline request, bound to that request ([`offline_challenge`]), so a recorded proof serves
//! no other activation. A centre accepts a proof only with a certificate from a manufacturer
//! it trusts.

use crate::crypto::{self, keys, Label, PublicKey};
use crate::hal::Attestation;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AttestError {
    #[error("the USB key's certificate is not from a trusted manufacturer")]
    UntrustedDevice,
    #[error("the USB key's proof does not verify (a stale or replayed proof, or a forged one)")]
    BadProof,
    #[error("the proof is for USB key {got}, not {expected}")]
    WrongSerial { expected: u64, got: u64 },
    #[error("the USB key is not blank")]
    NotBlank,
    #[error("the device key is malformed")]
    BadKey,
}

/// The challenge an offline activation request binds its proof to: the request's code, ITN,
/// IEC and USB key serial under the `keybridge-offline-request/1` label.
pub fn offline_challenge(
    code: &str,
    itn: Option<&str>,
    iec: Option<&str>,
    serial: u64,
) -> [u8; 32] {
    let serial = serial.to_le_bytes();
    crypto::sha256(&crypto::labelled(
        Label::OfflineRequest,
        &[
            code.as_bytes(),
            itn.unwrap_or("").as_bytes(),
            iec.unwrap_or("").as_bytes(),
            &serial,
        ],
    ))
}

/// Checks that `a` proves USB key `serial` genuine (by one of `manufacturers`) and blank, in
/// answer to `challenge`.
pub fn verify(
    a: &Attestation,
    serial: u64,
    challenge: &[u8; 32],
    manufacturers: &[PublicKey],
) -> Result<(), AttestError> {
    if a.serial != serial {
        return Err(AttestError::WrongSerial {
            expected: serial,
            got: a.serial,
        });
    }
    let cert = keys::device_certificate_message(a.serial, &a.device_key);
    if !manufacturers
        .iter()
        .any(|m| m.verify_raw(&cert, &a.certificate).is_ok())
    {
        return Err(AttestError::UntrustedDevice);
    }
    let device = PublicKey::from_der(&a.device_key).map_err(|_| AttestError::BadKey)?;
    let (s, b) = (a.serial.to_le_bytes(), [u8::from(a.blank)]);
    device
        .verify_labelled(
            Label::DeviceAttestation,
            &keys::attestation_fields(challenge, &s, &b),
            &a.signature,
        )
        .map_err(|_| AttestError::BadProof)?;
    if !a.blank {
        return Err(AttestError::NotBlank);
    }
    Ok(())
}
