//! The licence table: every key on this host, software or on a USB key, as one list.

use super::{Host, HostError};
use crate::hal::DeviceSlot;
use crate::licence::{self, Binding, LicenceTerms};
use crate::store::software_keys;
use crate::time::Timestamp;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

/// A software key file and what opening it gave.
pub(super) struct SoftwareKey {
    pub path: PathBuf,
    /// KeyID and KeyNo as the file name gives them, for a file whose content can't be trusted.
    pub name_ids: Option<(String, u64)>,
    pub terms: Option<LicenceTerms>,
    pub open_error: Option<String>,
    /// What a superseded (format 1) file claims to be, untrusted: update asks the centre to
    /// re-issue it, and the centre checks the claim against its own records.
    pub claim: Option<licence::Claim>,
    /// The fingerprint the envelope names as signer (untrusted): update asks a centre only
    /// about licences its licence key signed.
    pub signer: Option<String>,
}

/// A USB key the host has seen during this run.
pub(super) struct UsbKey {
    pub device_id: String,
    /// The driver that claimed it (`sim` for a simulated key).
    pub driver: String,
    /// Transport and path, as the device describes itself.
    pub describe: String,
    pub serial: u64,
    pub firmware: String,
    pub blank: bool,
    pub terms: Option<LicenceTerms>,
    pub open_error: Option<String>,
    /// What a superseded (format 1) licence on the key claims, untrusted (as for files).
    pub claim: Option<licence::Claim>,
    /// The signer its envelope names (untrusted), as for files.
    pub signer: Option<String>,
    /// The device while attached; `None` once unplugged.
    pub slot: Option<Arc<DeviceSlot>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A software key file (`Type: Virtual`).
    Software,
    /// A key on a USB device (`Type: USB`).
    Usb,
}

/// One row of `GET /api/licences`, as the host knows it.
#[derive(Debug, Clone)]
pub struct LicenceEntry {
    pub kind: KeyKind,
    /// Licence file path, or the device path of a USB key.
    pub file_name: String,
    pub key_no: u64,
    pub key_id: Option<String>,
    pub is_blank: bool,
    pub open_error: Option<String>,
    /// Licence format version for software keys, firmware version for USB keys.
    pub version: String,
    pub blank_key_no: Option<u64>,
    /// Software keys always; a USB key while plugged in.
    pub attached: bool,
    pub terms: Option<LicenceTerms>,
    /// What a superseded licence claims (never trusted; only for asking the centre).
    pub claim: Option<licence::Claim>,
    /// The signer fingerprint its envelope names (verified only when `terms` is `Some`).
    pub signer: Option<String>,
}

/// The `signer` a licence envelope names, whatever its format; trusted for nothing.
pub(super) fn envelope_signer(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Loose {
        signer: String,
    }
    serde_json::from_slice::<Loose>(bytes)
        .ok()
        .map(|l| l.signer)
}

impl LicenceEntry {
    pub fn workable(&self) -> bool {
        self.open_error.is_none()
    }

    /// Why this key cannot hand out a licence at `now`, if it cannot.
    pub fn unusable_reason(&self, now: Timestamp) -> Option<String> {
        if let Some(e) = &self.open_error {
            return Some(format!("key {} is not workable: {e}", self.key_no));
        }
        let Some(t) = &self.terms else {
            return Some(format!("key {} is a blank USB key", self.key_no));
        };
        let v = t.validity(now);
        if v.expired {
            return Some(format!("key {} has expired", self.key_no));
        }
        if v.not_yet_valid {
            return Some(format!("key {} is not valid yet", self.key_no));
        }
        None
    }
}

fn ids_from_file_name(path: &std::path::Path) -> Option<(String, u64)> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".licence")?;
    let (id, no) = stem.split_once('.')?;
    Some((id.to_owned(), no.parse().ok()?))
}

impl Host {
    /// Re-reads the software key files of the data directory.
    pub fn reload_software_keys(&self) -> Result<(), HostError> {
        let files = software_keys::list(&self.data_dir)?;
        let binding = Binding::Computer(self.computer_id.clone());
        let keys = files
            .into_iter()
            .map(|(path, bytes)| {
                let name_ids = ids_from_file_name(&path);
                let mut claim = None;
                let signer = bytes.as_ref().ok().and_then(|b| envelope_signer(b));
                let opened = bytes.map_err(|e| e.to_string()).and_then(|b| {
                    licence::open(&b, &self.trust).map_err(|e| {
                        if e == licence::LicenceError::Superseded {
                            claim = licence::claim(&b);
                        }
                        e.to_string()
                    })
                });
                let (terms, open_error) = match opened {
                    Ok(t) => {
                        let mut err = t.check_binding(&binding).err().map(|e| e.to_string());
                        if err.is_none() && name_ids.as_ref() != Some(&(t.key_id.clone(), t.key_no))
                        {
                            err = Some(format!(
                                "file name does not match the licence (expected {})",
                                software_keys::licence_path(
                                    std::path::Path::new(""),
                                    &t.key_id,
                                    t.key_no
                                )
                                .display()
                            ));
                        }
                        (Some(t), err)
                    }
                    Err(e) => (None, Some(e)),
                };
                if let Some(e) = &open_error {
                    tracing::warn!(file = %path.display(), "licence not usable: {e}");
                }
                SoftwareKey {
                    path,
                    name_ids,
                    terms,
                    open_error,
                    claim,
                    signer,
                }
            })
            .collect();
        *self
            .software
            .write()
            .unwrap_or_else(PoisonError::into_inner) = keys;
        Ok(())
    }

    /// Every key, software keys first, each group in KeyNo order.
    pub fn licences(&self) -> Vec<LicenceEntry> {
        let mut out: Vec<LicenceEntry> = {
            let sw = self.software.read().unwrap_or_else(PoisonError::into_inner);
            sw.iter()
                .map(|k| LicenceEntry {
                    kind: KeyKind::Software,
                    file_name: k.path.display().to_string(),
                    key_no: k
                        .terms
                        .as_ref()
                        .map(|t| t.key_no)
                        .or(k.name_ids.as_ref().map(|n| n.1))
                        .unwrap_or(0),
                    key_id: k
                        .terms
                        .as_ref()
                        .map(|t| t.key_id.clone())
                        .or(k.name_ids.as_ref().map(|n| n.0.clone())),
                    is_blank: false,
                    open_error: k.open_error.clone(),
                    version: if k.claim.is_some() {
                        "1".into()
                    } else {
                        licence::FORMAT_VERSION.into()
                    },
                    blank_key_no: None,
                    attached: true,
                    terms: k.terms.clone(),
                    claim: k.claim.clone(),
                    signer: k.signer.clone(),
                })
                .collect()
        };
        out.sort_by_key(|e| e.key_no);
        let mut usb: Vec<LicenceEntry> = {
            let usb = self.usb.read().unwrap_or_else(PoisonError::into_inner);
            usb.iter()
                .map(|k| LicenceEntry {
                    kind: KeyKind::Usb,
                    file_name: k.device_id.clone(),
                    key_no: k.terms.as_ref().map(|t| t.key_no).unwrap_or(k.serial),
                    key_id: k.terms.as_ref().map(|t| t.key_id.clone()),
                    is_blank: k.blank,
                    open_error: if k.slot.is_none() {
                        Some("the USB key is not attached".into())
                    } else {
                        k.open_error.clone()
                    },
                    version: k.firmware.clone(),
                    blank_key_no: Some(k.serial),
                    attached: k.slot.is_some(),
                    terms: k.terms.clone(),
                    claim: k.claim.clone(),
                    signer: k.signer.clone(),
                })
                .collect()
        };
        usb.sort_by_key(|e| e.key_no);
        out.extend(usb);
        out
    }

    pub fn licence(&self, key_no: u64) -> Result<LicenceEntry, HostError> {
        self.licences()
            .into_iter()
            .find(|e| e.key_no == key_no)
            .ok_or(HostError::KeyNotFound(key_no))
    }
}
