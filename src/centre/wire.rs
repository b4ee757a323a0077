//! The centre's wire types: the JSON a host and the centre exchange. The host's client and the
//! centre's server both use these and nothing else of each other, so the trust boundary is
//! this one file. JSON here is the centre's own, snake_case; `docs/centre.md` describes it.

/// The activation code format (groups, Damm check digit) is part of the wire: hosts check a
/// code before any network call.
pub use super::code::{ActivationCode, CodeError};

use crate::hal::Attestation;
use crate::licence::Binding;
use serde::{Deserialize, Serialize};

/// A binding on the wire: `{"computer": "<ComputerID>"}` or `{"device": <serial>}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WireBinding {
    Computer(String),
    Device(u64),
}

impl From<WireBinding> for Binding {
    fn from(b: WireBinding) -> Binding {
        match b {
            WireBinding::Computer(c) => Binding::Computer(c),
            WireBinding::Device(d) => Binding::Device(d),
        }
    }
}

impl From<&Binding> for WireBinding {
    fn from(b: &Binding) -> WireBinding {
        match b {
            Binding::Computer(c) => WireBinding::Computer(c.clone()),
            Binding::Device(d) => WireBinding::Device(*d),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActivateBody {
    pub code: String,
    pub itn: Option<String>,
    pub iec: Option<String>,
    pub binding: WireBinding,
    /// Required with a `device` binding.
    #[serde(default)]
    pub device_proof: Option<WireProof>,
    /// With a `device` binding online: the challenge (64 hex digits) from
    /// `POST /centre/v1/challenge` that `device_proof` answers; used once. Absent from offline
    /// requests, whose proof answers the request-bound challenge instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
}

/// A USB key's attestation on the wire; byte fields base64.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WireProof {
    pub serial: u64,
    pub blank: bool,
    pub device_key: String,
    pub certificate: String,
    pub signature: String,
}

impl From<&Attestation> for WireProof {
    fn from(a: &Attestation) -> WireProof {
        use crate::crypto::b64;
        WireProof {
            serial: a.serial,
            blank: a.blank,
            device_key: b64(&a.device_key),
            certificate: b64(&a.certificate),
            signature: b64(&a.signature),
        }
    }
}

impl WireProof {
    pub fn to_attestation(&self) -> Result<Attestation, String> {
        let d = |s: &str, what: &str| {
            crate::crypto::unb64(s).ok_or(format!("device_proof.{what} is not base64"))
        };
        Ok(Attestation {
            serial: self.serial,
            blank: self.blank,
            device_key: d(&self.device_key, "device_key")?,
            certificate: d(&self.certificate, "certificate")?,
            signature: d(&self.signature, "signature")?,
        })
    }
}

/// The `format` of an offline activation request file.
pub const REQUEST_FORMAT: &str = "keybridge-activation-request/1";

/// An offline activation request: what a host would send online, in a file.
#[derive(Debug, Serialize, Deserialize)]
pub struct OfflineRequest {
    pub format: String,
    #[serde(flatten)]
    pub activation: ActivateBody,
}

/// `POST /centre/v1/licence`: the current version of a licence, for whoever proves they hold
/// it with the activation code it was issued from and the ITN and IEC it was activated for
/// (absent when it had none).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicenceRef {
    pub key_id: String,
    pub key_no: u64,
    pub code: String,
    #[serde(default)]
    pub itn: Option<String>,
    #[serde(default)]
    pub iec: Option<String>,
}

/// `POST /centre/v1/restore`: the licence onto a new binding, for whoever proves they own it
/// with its activation code and the ITN (and IEC, when it had one) it was activated for.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestoreBody {
    pub key_id: String,
    pub key_no: u64,
    pub code: String,
    pub itn: Option<String>,
    #[serde(default)]
    pub iec: Option<String>,
    pub binding: WireBinding,
}

/// `POST /centre/v1/challenge`'s request: the activation code about to be activated onto a
/// blank USB key. The centre answers only for a code it issued that is not yet activated, so
/// nobody without such a code can fill its table of outstanding challenges.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChallengeRequest {
    pub code: String,
}

/// `POST /centre/v1/challenge`'s answer: 32 random bytes (hex) a blank USB key signs to prove
/// itself, accepted once, until `expires`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChallengeBody {
    pub challenge: String,
    pub expires: String,
}

/// A signed licence file, base64, as every host-facing endpoint returns it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicenceBody {
    pub licence: String,
}
