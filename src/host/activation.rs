//! Getting licences from the licensing centre: activation by code, and update/restore of the
//! licences this host holds. Everything the centre sends is installed through
//! [`Host::install_licence`], which verifies it before writing anything.

use super::keys::KeyKind;
use super::{Host, HostError, LicenceEntry};
use crate::centre::wire::ActivateBody;
use crate::centre::ActivationCode;
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

impl Host {
    fn centre(&self) -> Result<&super::centre_client::CentreClient, HostError> {
        self.centre.as_ref().ok_or(HostError::CentreNotConfigured)
    }

    /// Activates a code at the centre and installs the licence it gives.
    pub async fn activate(&self, input: ActivationInput) -> Result<LicenceEntry, HostError> {
        // A typo is caught here, before any network call.
        let code =
            ActivationCode::parse(&input.code).map_err(|e| HostError::Invalid(e.to_string()))?;
        let (binding, proof) = match input.blank_key_no {
            None => (Binding::Computer(self.computer_id.clone()), None),
            Some(serial) => {
                let challenge = crate::hal::attest::offline_challenge(
                    &code.to_string(),
                    input.itn.as_ref().map(Itn::as_str),
                    input.iec.as_ref().map(Iec::as_str),
                    serial,
                );
                (
                    Binding::Device(serial),
                    Some(self.attest_blank(serial, challenge).await?),
                )
            }
        };
        let body = ActivateBody {
            code: code.to_string(),
            itn: input.itn.map(String::from),
            iec: input.iec.map(String::from),
            binding: (&binding).into(),
            device_proof: proof.as_ref().map(Into::into),
        };
        let doc = self.centre()?.activate(&body).await?;
        let terms = self.install_licence(doc).await?;
        self.licence(terms.key_no)
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
    /// or key those whose binding changed. Every answer is gathered before anything is
    /// installed, so an unreachable centre changes nothing. A licence the centre does not know
    /// (issued elsewhere) is left as it is.
    pub async fn update_licences(&self) -> Result<Vec<LicenceEntry>, HostError> {
        let centre = self.centre()?;
        let targets: Vec<(String, u64, Binding, Binding)> = self
            .licences()
            .into_iter()
            .filter_map(|e| {
                let t = e.terms?;
                let actual = match e.kind {
                    KeyKind::Software => Binding::Computer(self.computer_id.clone()),
                    // An unplugged key cannot take an update now.
                    KeyKind::Usb if !e.attached => return None,
                    KeyKind::Usb => Binding::Device(e.blank_key_no?),
                };
                Some((t.key_id, t.key_no, t.binding, actual))
            })
            .collect();
        let mut docs = Vec::new();
        for (key_id, key_no, bound, actual) in targets {
            let answer = if bound == actual {
                centre.current(&key_id, key_no).await
            } else {
                centre.restore(&key_id, key_no, &actual).await
            };
            match answer {
                Ok(doc) => docs.push(doc),
                Err(HostError::CentreRefused { message, .. }) => {
                    tracing::warn!("licence {key_id}.{key_no} not updated: {message}");
                }
                Err(e) => return Err(e),
            }
        }
        for doc in docs {
            self.install_licence(doc).await?;
        }
        Ok(self.licences())
    }
}
