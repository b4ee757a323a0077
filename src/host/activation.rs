//! Getting licences from the licensing centre: activation by code, and update/restore of the
//! licences this host holds. Everything the centre sends is installed through
//! [`Host::install_licence`], which verifies it before writing anything.

use super::centre_client::Held;
use super::keys::KeyKind;
use super::{Host, HostError, LicenceEntry};
use crate::centre::wire::ActivateBody;
use crate::centre::wire::ActivationCode;
use crate::hal::Attestation;
use crate::licence::{Binding, Iec, Itn};
use std::sync::PoisonError;

/// `POST /api/licences`, validated.
#[derive(Debug, Clone)]
pub struct ActivationInput {
    pub code: String,
    pub itn: Option<Itn>,
    pub iec: Option<Iec>,
    /// Install onto this blank USB key instead of as a software key.
    pub blank_key_no: Option<u64>,
}

/// What [`Host::update_licences`] did: every licence now, and how many the centre refused.
#[derive(Debug, Clone)]
pub struct Updated {
    pub licences: Vec<LicenceEntry>,
    /// Licences the centre refused to update or restore (each logged at WARN with its reason).
    pub failed: usize,
}

/// An activation onto a blank USB key under way; dropping it (success, error, or the request
/// going away) ends it.
struct BlankClaim<'a> {
    host: &'a Host,
    serial: u64,
}

impl Drop for BlankClaim<'_> {
    fn drop(&mut self) {
        self.host
            .activating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.serial);
    }
}

impl Host {
    fn centre(&self) -> Result<&super::centre_client::CentreClient, HostError> {
        self.centre.as_ref().ok_or(HostError::CentreNotConfigured)
    }

    /// Activates a code at the centre and installs the licence it gives.
    pub async fn activate(&self, input: ActivationInput) -> Result<LicenceEntry, HostError> {
        // A typo is caught here, before any network call.
        let code =
            ActivationCode::parse(&input.code).map_err(|e| HostError::Invalid(e.to_string()))?;
        let centre = self.centre()?;
        // Held until the licence is installed: a second activation onto the same blank would
        // bind its code at the centre too, and then find the key taken — the code lost.
        let _claimed = match input.blank_key_no {
            Some(serial) => Some(self.claim_blank(serial)?),
            None => None,
        };
        let (binding, proof, challenge) = match input.blank_key_no {
            None => (Binding::Computer(self.computer_id.clone()), None, None),
            Some(serial) => {
                // The key is checked first, so no challenge is spent on a missing one.
                self.blank_binding(serial)?;
                // A fresh challenge from the centre, used once: a recorded proof is worthless.
                let challenge = centre.challenge(&code.to_string()).await?;
                (
                    Binding::Device(serial),
                    Some(self.attest_blank(serial, challenge).await?),
                    Some(hex::encode(challenge)),
                )
            }
        };
        let body = ActivateBody {
            code: code.to_string(),
            itn: input.itn.map(String::from),
            iec: input.iec.map(String::from),
            binding: (&binding).into(),
            device_proof: proof.as_ref().map(Into::into),
            challenge,
        };
        let doc = centre.activate(&body).await?;
        let terms = self.install_licence(doc).await?;
        self.licence(terms.key_no)
    }

    /// Marks an activation onto blank `serial` as under way, until the guard is dropped; a
    /// second one meanwhile is refused.
    fn claim_blank(&self, serial: u64) -> Result<BlankClaim<'_>, HostError> {
        let mut a = self
            .activating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !a.insert(serial) {
            return Err(HostError::ActivationInProgress(serial));
        }
        Ok(BlankClaim { host: self, serial })
    }

    /// The binding for a licence onto blank USB key `serial`, which must be attached and blank.
    pub fn blank_binding(&self, serial: u64) -> Result<Binding, HostError> {
        let usb = self.usb.read().unwrap_or_else(PoisonError::into_inner);
        let k = usb
            .iter()
            .find(|k| k.serial == serial && k.slot.is_some())
            .ok_or(HostError::DeviceNotAttached(serial))?;
        if !k.blank {
            return Err(HostError::DeviceNotBlank(serial));
        }
        Ok(Binding::Device(serial))
    }

    /// The proof from blank USB key `serial` that it is genuine and blank, answering
    /// `challenge` (`hal::attest`).
    pub async fn attest_blank(
        &self,
        serial: u64,
        challenge: [u8; 32],
    ) -> Result<Attestation, HostError> {
        self.blank_binding(serial)?;
        let slot = {
            let usb = self.usb.read().unwrap_or_else(PoisonError::into_inner);
            usb.iter()
                .find(|k| k.serial == serial)
                .and_then(|k| k.slot.clone())
                .ok_or(HostError::DeviceNotAttached(serial))?
        };
        slot.run(move |d| d.attest(&challenge))
            .await
            .map_err(|e| HostError::device(serial, e))
    }

    /// Asks the centre for the current version of every licence, restoring onto this machine
    /// those whose ComputerID changed, and re-issuing superseded (format 1) files whose old
    /// signature a trusted centre key made (a forged one is skipped, never sent). Each
    /// request carries the proof the centre asks for, taken from the licence itself: its
    /// activation code (and, for a restore, its ITN and IEC). Every answer is gathered before
    /// anything is installed, so an unreachable centre changes nothing. Only licences the
    /// centre's licence key signed are asked about: asking about another centre's would count
    /// as failed proofs and get this host throttled. One it does not know (a forged claim) is
    /// left as it is. A licence the centre refused is left as it is too, logged at WARN with
    /// the centre's reason and counted in [`Updated::failed`], so the caller can say so.
    pub async fn update_licences(&self) -> Result<Updated, HostError> {
        let centre = self.centre()?;
        let ours = centre.licence_key_fingerprint().await?;
        let mut docs = Vec::new();
        let mut failed = 0;
        for e in self.licences() {
            if e.signer.as_deref() != Some(ours.as_str()) {
                continue;
            }
            let actual = match e.kind {
                KeyKind::Software => Binding::Computer(self.computer_id.clone()),
                // An unplugged key cannot take an update now.
                KeyKind::Usb if !e.attached => continue,
                KeyKind::Usb => match e.blank_key_no {
                    Some(serial) => Binding::Device(serial),
                    None => continue,
                },
            };
            let answer = if let Some(t) = &e.terms {
                let held = Held {
                    key_id: &t.key_id,
                    key_no: t.key_no,
                    code: &t.activation_code,
                    itn: t.itn.as_ref().map(Itn::as_str),
                    iec: t.iec.as_ref().map(Iec::as_str),
                };
                if t.binding == actual {
                    centre.current(&held).await
                } else {
                    centre.restore(&held, &actual).await
                }
            } else if let Some(c) = &e.claim {
                if !e.claim_signed {
                    // A forgery (or damage): asking would only spend failed proofs at the
                    // centre, which then throttles this host.
                    tracing::warn!(
                        "licence {}.{} ({}) not sent to the centre for re-issue: its format-1 signature does not verify against a trusted centre key",
                        c.key_id,
                        c.key_no,
                        e.file_name
                    );
                    continue;
                }
                self.reissue(centre, c, &actual).await
            } else {
                continue;
            };
            let what = e
                .terms
                .as_ref()
                .map(|t| format!("{}.{}", t.key_id, t.key_no))
                .or_else(|| {
                    e.claim
                        .as_ref()
                        .map(|c| format!("{}.{}", c.key_id, c.key_no))
                })
                .unwrap_or_default();
            match answer {
                Ok(doc) => docs.push(doc),
                Err(HostError::CentreRefused {
                    status,
                    reason,
                    message,
                }) => {
                    failed += 1;
                    tracing::warn!(
                        "licence {what} not updated: the centre refused ({status} {reason}): {message}"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        for doc in docs {
            self.install_licence(doc).await?;
        }
        Ok(Updated {
            licences: self.licences(),
            failed,
        })
    }

    /// The current version of a superseded licence, asked for with what its file claims (the
    /// centre checks the claim); restored onto `actual` if it is bound elsewhere.
    async fn reissue(
        &self,
        centre: &super::centre_client::CentreClient,
        c: &crate::licence::Claim,
        actual: &Binding,
    ) -> Result<Vec<u8>, HostError> {
        let held = Held {
            key_id: &c.key_id,
            key_no: c.key_no,
            code: &c.activation_code,
            itn: c.itn.as_deref(),
            iec: c.iec.as_deref(),
        };
        let doc = centre.current(&held).await?;
        // What came back is verified like any licence before its binding is looked at.
        let trust = self.trust.clone();
        let (doc, terms) = super::blocking(move || {
            let t = crate::licence::open(&doc, &trust)?;
            Ok((doc, t))
        })
        .await?;
        if terms.binding == *actual {
            return Ok(doc);
        }
        centre.restore(&held, actual).await
    }
}
