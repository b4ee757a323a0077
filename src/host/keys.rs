//! The licence table: every key on this host, software or on a USB key, as one list.

use super::{blocking, Host, HostError};
use crate::hal::DeviceSlot;
use crate::licence::{self, Binding, LicenceTerms, TrustStore};
use crate::store::software_keys;
use crate::time::Timestamp;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
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
    /// Whether the superseded file's format-1 signature verifies against a trusted centre
    /// key: only then does update ask the centre about its claim.
    pub claim_signed: bool,
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
    /// Whether a superseded licence's format-1 signature verifies, as for files.
    pub claim_signed: bool,
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
    /// Whether `claim` comes with a valid format-1 signature of a trusted centre key.
    pub claim_signed: bool,
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

/// Whether `bytes` is a format 1 licence file whose old signature — RSASSA-PKCS1-v1_5 with
/// SHA-256 over the bare payload bytes — verifies against the trusted key it names. Such a
/// file is still never opened (`licence::open` refuses format 1); this only decides whether
/// update may ask the centre to re-issue it. A forged one would otherwise make every update
/// spend failed proofs at the centre, and get this host throttled there. Blocking (RSA).
pub(super) fn v1_signed(bytes: &[u8], trust: &TrustStore) -> bool {
    #[derive(serde::Deserialize)]
    struct Loose {
        format: String,
        signer: String,
        payload: String,
        signature: String,
    }
    let Ok(env) = serde_json::from_slice::<Loose>(bytes) else {
        return false;
    };
    if env.format != licence::FORMAT_V1 {
        return false;
    }
    let (Some(key), Some(payload), Some(sig)) = (
        trust.get(&env.signer),
        crate::crypto::unb64(&env.payload),
        crate::crypto::unb64(&env.signature),
    ) else {
        return false;
    };
    key.verify_raw(&payload, &sig).is_ok()
}

/// What a licence that failed to open with `e` leaves for update: its claim and whether its
/// format-1 signature verifies (superseded files only), and the error as listed.
pub(super) fn superseded(
    bytes: &[u8],
    e: &licence::LicenceError,
    trust: &TrustStore,
) -> (Option<licence::Claim>, bool, String) {
    if *e != licence::LicenceError::Superseded {
        return (None, false, e.to_string());
    }
    let signed = v1_signed(bytes, trust);
    let message = if signed {
        e.to_string()
    } else {
        format!("{e}; but its format-1 signature does not verify against a trusted centre key, so update does not ask the centre about it")
    };
    (licence::claim(bytes), signed, message)
}

impl LicenceEntry {
    pub fn workable(&self) -> bool {
        self.open_error.is_none()
    }

    /// Why this key cannot hand out a licence at `now`, if it cannot.
    pub fn unusable_reason(&self, now: Timestamp) -> Option<String> {
        unusable_reason(
            self.key_no,
            self.open_error.as_deref(),
            self.terms.as_ref(),
            now,
        )
    }
}

/// Why a key cannot hand out a licence at `now`, if it cannot; one rule for a copied entry
/// and for a borrowed [`KeyView`].
fn unusable_reason(
    key_no: u64,
    open_error: Option<&str>,
    terms: Option<&LicenceTerms>,
    now: Timestamp,
) -> Option<String> {
    if let Some(e) = open_error {
        return Some(format!("key {key_no} is not workable: {e}"));
    }
    let Some(t) = terms else {
        return Some(format!("key {key_no} is a blank USB key"));
    };
    let v = t.validity(now);
    if v.expired {
        return Some(format!("key {key_no} has expired"));
    }
    if v.not_yet_valid {
        return Some(format!("key {key_no} is not valid yet"));
    }
    None
}

const NOT_ATTACHED: &str = "the USB key is not attached";

/// A key of the table as a lookup sees it, borrowed: deciding which key serves a session
/// copies nothing but the key chosen.
pub(super) struct KeyView<'a> {
    pub key_no: u64,
    pub terms: Option<&'a LicenceTerms>,
    open_error: Option<&'a str>,
}

impl KeyView<'_> {
    pub fn usable(&self, now: Timestamp) -> bool {
        unusable_reason(self.key_no, self.open_error, self.terms, now).is_none()
    }
}

fn ids_from_file_name(path: &Path) -> Option<(String, u64)> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".licence")?;
    let (id, no) = stem.split_once('.')?;
    Some((id.to_owned(), no.parse().ok()?))
}

/// How often a full read of the software keys is retried when installs overtake it.
const RELOAD_TRIES: usize = 3;

/// The software keys as last read, and which read that was (see [`Host::software_scans`]).
#[derive(Default)]
pub(super) struct SoftwareTable {
    pub keys: Vec<SoftwareKey>,
    pub scan: u64,
}

/// Reads and opens every software key file of `data_dir`. Blocking (a directory scan and
/// file reads): async callers run it on a blocking thread.
fn scan_software_keys(
    data_dir: &Path,
    trust: &TrustStore,
    computer_id: &str,
) -> Result<Vec<SoftwareKey>, HostError> {
    let files = software_keys::list(data_dir)?;
    let binding = Binding::Computer(computer_id.to_owned());
    Ok(files
        .into_iter()
        .map(|(path, bytes)| {
            open_software_key(path, bytes.map_err(|e| e.to_string()), trust, &binding)
        })
        .collect())
}

/// Opens one software key file's bytes as the table holds it: its terms, or why it is not
/// usable. Blocking (RSA): async callers run it on a blocking thread.
fn open_software_key(
    path: PathBuf,
    bytes: Result<Vec<u8>, String>,
    trust: &TrustStore,
    binding: &Binding,
) -> SoftwareKey {
    let name_ids = ids_from_file_name(&path);
    let mut claim = None;
    let mut claim_signed = false;
    let signer = bytes.as_ref().ok().and_then(|b| envelope_signer(b));
    let opened = bytes.and_then(|b| {
        licence::open(&b, trust).map_err(|e| {
            let (c, signed, message) = superseded(&b, &e, trust);
            (claim, claim_signed) = (c, signed);
            message
        })
    });
    let (terms, open_error) = match opened {
        Ok(t) => {
            let mut err = t.check_binding(binding).err().map(|e| e.to_string());
            if err.is_none() && name_ids.as_ref() != Some(&(t.key_id.clone(), t.key_no)) {
                err = Some(format!(
                    "file name does not match the licence (expected {})",
                    software_keys::licence_path(Path::new(""), &t.key_id, t.key_no).display()
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
        claim_signed,
    }
}

impl SoftwareKey {
    fn view(&self) -> KeyView<'_> {
        KeyView {
            key_no: self.key_no(),
            terms: self.terms.as_ref(),
            open_error: self.open_error.as_deref(),
        }
    }

    fn key_no(&self) -> u64 {
        self.terms
            .as_ref()
            .map(|t| t.key_no)
            .or(self.name_ids.as_ref().map(|n| n.1))
            .unwrap_or(0)
    }

    fn entry(&self) -> LicenceEntry {
        LicenceEntry {
            kind: KeyKind::Software,
            file_name: self.path.display().to_string(),
            key_no: self.key_no(),
            key_id: self
                .terms
                .as_ref()
                .map(|t| t.key_id.clone())
                .or(self.name_ids.as_ref().map(|n| n.0.clone())),
            is_blank: false,
            open_error: self.open_error.clone(),
            version: if self.claim.is_some() {
                "1".into()
            } else {
                licence::FORMAT_VERSION.into()
            },
            blank_key_no: None,
            attached: true,
            terms: self.terms.clone(),
            claim: self.claim.clone(),
            signer: self.signer.clone(),
            claim_signed: self.claim_signed,
        }
    }
}

impl UsbKey {
    fn view(&self) -> KeyView<'_> {
        KeyView {
            key_no: self.key_no(),
            terms: self.terms.as_ref(),
            open_error: if self.slot.is_none() {
                Some(NOT_ATTACHED)
            } else {
                self.open_error.as_deref()
            },
        }
    }

    fn key_no(&self) -> u64 {
        self.terms.as_ref().map(|t| t.key_no).unwrap_or(self.serial)
    }

    fn entry(&self) -> LicenceEntry {
        LicenceEntry {
            kind: KeyKind::Usb,
            file_name: self.device_id.clone(),
            key_no: self.key_no(),
            key_id: self.terms.as_ref().map(|t| t.key_id.clone()),
            is_blank: self.blank,
            open_error: if self.slot.is_none() {
                Some(NOT_ATTACHED.into())
            } else {
                self.open_error.clone()
            },
            version: self.firmware.clone(),
            blank_key_no: Some(self.serial),
            attached: self.slot.is_some(),
            terms: self.terms.clone(),
            claim: self.claim.clone(),
            signer: self.signer.clone(),
            claim_signed: self.claim_signed,
        }
    }
}

impl Host {
    /// Re-reads the software key files of the data directory, on this thread (blocking): at
    /// start and on `systemctl reload`. A read that an install overtook (its result would miss
    /// that licence) is read again, a few times at most.
    pub fn reload_software_keys(&self) -> Result<(), HostError> {
        for _ in 0..RELOAD_TRIES {
            let scan = self.software_scans.fetch_add(1, Ordering::SeqCst) + 1;
            let keys = scan_software_keys(&self.data_dir, &self.trust, &self.computer_id)?;
            if self.set_software_keys(scan, keys) {
                break;
            }
        }
        Ok(())
    }

    /// Puts one just-written software key file into the table, reading only that file — an
    /// install costs the same with ten keys as with ten thousand. The sequence number is taken
    /// after the file is on disk, so a full read that started later sees the file, and one
    /// that started earlier is not installed over this (it reads again).
    pub(super) async fn upsert_software_key(
        &self,
        path: PathBuf,
        doc: Vec<u8>,
    ) -> Result<(), HostError> {
        let (trust, id) = (self.trust.clone(), self.computer_id.clone());
        let key = blocking(move || {
            Ok(open_software_key(
                path,
                Ok(doc),
                &trust,
                &Binding::Computer(id),
            ))
        })
        .await?;
        let seq = self.software_scans.fetch_add(1, Ordering::SeqCst) + 1;
        let mut sw = self
            .software
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match sw.keys.binary_search_by(|k| k.path.cmp(&key.path)) {
            Ok(i) => sw.keys[i] = key,
            Err(i) => sw.keys.insert(i, key),
        }
        sw.scan = sw.scan.max(seq);
        Ok(())
    }

    /// Installs the result of a read unless a later-started read has already been installed:
    /// parallel reloads finish in any order, and the later-started one has seen every file
    /// written before the earlier one started.
    fn set_software_keys(&self, scan: u64, keys: Vec<SoftwareKey>) -> bool {
        let mut sw = self
            .software
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if scan > sw.scan {
            *sw = SoftwareTable { keys, scan };
            return true;
        }
        false
    }

    /// The keys that `keep(key_no, terms)` selects, software keys first, each group in KeyNo
    /// order. Only those are copied, so a lookup does not clone the whole table.
    pub(super) fn entries_where(
        &self,
        keep: impl Fn(u64, Option<&LicenceTerms>) -> bool,
    ) -> Vec<LicenceEntry> {
        let mut out: Vec<LicenceEntry> = {
            let sw = self.software.read().unwrap_or_else(PoisonError::into_inner);
            sw.keys
                .iter()
                .filter(|k| keep(k.key_no(), k.terms.as_ref()))
                .map(SoftwareKey::entry)
                .collect()
        };
        out.sort_by_key(|e| e.key_no);
        let mut usb: Vec<LicenceEntry> = {
            let usb = self.usb.read().unwrap_or_else(PoisonError::into_inner);
            usb.iter()
                .filter(|k| keep(k.key_no(), k.terms.as_ref()))
                .map(UsbKey::entry)
                .collect()
        };
        usb.sort_by_key(|e| e.key_no);
        out.extend(usb);
        out
    }

    /// The first key `keep` selects in table order (software keys first, each group in KeyNo
    /// order), copied; the others are only looked at.
    pub(super) fn first_entry_where(
        &self,
        keep: impl Fn(&KeyView<'_>) -> bool,
    ) -> Option<LicenceEntry> {
        {
            let sw = self.software.read().unwrap_or_else(PoisonError::into_inner);
            let best = sw
                .keys
                .iter()
                .filter(|k| keep(&k.view()))
                .min_by_key(|k| k.key_no());
            if let Some(k) = best {
                return Some(k.entry());
            }
        }
        let usb = self.usb.read().unwrap_or_else(PoisonError::into_inner);
        usb.iter()
            .filter(|k| keep(&k.view()))
            .min_by_key(|k| k.key_no())
            .map(UsbKey::entry)
    }

    /// Every key, software keys first, each group in KeyNo order.
    pub fn licences(&self) -> Vec<LicenceEntry> {
        self.entries_where(|_, _| true)
    }

    pub fn licence(&self, key_no: u64) -> Result<LicenceEntry, HostError> {
        self.entries_where(|n, _| n == key_no)
            .into_iter()
            .next()
            .ok_or(HostError::KeyNotFound(key_no))
    }
}
