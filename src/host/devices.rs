//! USB keys coming and going, and installing licences (onto a blank or as a software key).

use super::keys::UsbKey;
use super::{blocking, Host, HostError};
use crate::hal::sim::{SimBus, SimError};
use crate::hal::{DeviceError, DeviceInfo, KeyDevice};
use crate::licence::{self, Binding, LicenceTerms};
use crate::store::software_keys;
use std::sync::PoisonError;

/// What a USB key looked like when it was probed.
#[derive(Debug, Clone)]
pub struct DeviceSummary {
    pub device_id: String,
    pub serial: Option<u64>,
    pub blank: bool,
    pub key_no: Option<u64>,
    pub open_error: Option<String>,
}

impl Host {
    /// Adds a device that has just arrived: probes it (identity, blank or not, the licence on
    /// it) and makes its licence usable. A device that fails the probe is listed as not
    /// workable with the reason.
    pub async fn attach_device(
        &self,
        device_id: String,
        driver: &str,
        device: Box<dyn KeyDevice>,
    ) -> Result<DeviceSummary, HostError> {
        let slot = self.registry.attach(device_id.clone(), device);
        let probed = slot.run(probe).await;
        let key = match probed {
            Ok((info, doc)) => {
                let signer = doc.as_deref().and_then(super::keys::envelope_signer);
                let DeviceLicence {
                    terms,
                    open_error,
                    claim,
                    claim_signed,
                } = self.open_device_licence(doc, info.serial).await;
                UsbKey {
                    device_id: device_id.clone(),
                    driver: driver.into(),
                    describe: slot.describe().into(),
                    serial: info.serial,
                    firmware: info.firmware,
                    blank: info.blank,
                    terms,
                    open_error,
                    claim,
                    signer,
                    claim_signed,
                    slot: Some(slot),
                }
            }
            Err(e) => UsbKey {
                device_id: device_id.clone(),
                driver: driver.into(),
                describe: slot.describe().into(),
                serial: 0,
                firmware: String::new(),
                blank: false,
                terms: None,
                open_error: Some(format!("probe failed: {e}")),
                claim: None,
                signer: None,
                claim_signed: false,
                slot: Some(slot),
            },
        };
        let summary = DeviceSummary {
            device_id: device_id.clone(),
            serial: (key.serial != 0).then_some(key.serial),
            blank: key.blank,
            key_no: key.terms.as_ref().map(|t| t.key_no),
            open_error: key.open_error.clone(),
        };
        let mut usb = self.usb.write().unwrap_or_else(PoisonError::into_inner);
        // The same key seen earlier (under this or another path) is replaced by what it is now.
        usb.retain(|k| k.device_id != device_id && (key.serial == 0 || k.serial != key.serial));
        usb.push(key);
        tracing::info!(device = %device_id, serial = ?summary.serial, key_no = ?summary.key_no, "USB key attached");
        Ok(summary)
    }

    /// A device has gone: its licence becomes unusable at once. It stays listed, not
    /// workable, until it comes back or the host restarts.
    pub fn detach_device(&self, device_id: &str) -> bool {
        let known = self.registry.detach(device_id).is_some();
        let mut usb = self.usb.write().unwrap_or_else(PoisonError::into_inner);
        // A device that never said who it is leaves nothing worth listing.
        usb.retain(|k| k.device_id != device_id || k.serial != 0);
        for k in usb.iter_mut().filter(|k| k.device_id == device_id) {
            k.slot = None;
        }
        if known {
            tracing::info!(device = %device_id, "USB key detached");
        }
        known
    }

    /// Opens the licence a USB key holds (if any), on the blocking pool (RSA).
    async fn open_device_licence(&self, doc: Option<Vec<u8>>, serial: u64) -> DeviceLicence {
        let Some(doc) = doc else {
            return DeviceLicence::default();
        };
        let trust = self.trust.clone();
        blocking(move || Ok(DeviceLicence::open(&doc, serial, &trust)))
            .await
            .unwrap_or_else(|e| DeviceLicence {
                open_error: Some(e.to_string()),
                ..DeviceLicence::default()
            })
    }

    /// Plugs in a simulated key (a new serial makes a blank). Plugging makes the key's
    /// device key and certificate the first time (RSA) and writes its image (fsync): on the
    /// blocking pool.
    pub async fn sim_plug(&self, serial: u64) -> Result<DeviceSummary, HostError> {
        let sim = self.sim.clone();
        let dev = blocking(move || sim.plug(serial).map_err(sim_error)).await?;
        self.attach_device(SimBus::device_id(serial), "sim", Box::new(dev))
            .await
    }

    /// Arms a fault in a plugged-in simulated key's next command (testing aid).
    pub fn sim_fault(
        &self,
        serial: u64,
        fault: crate::hal::sim::SimFault,
    ) -> Result<(), HostError> {
        self.sim.inject(serial, fault).map_err(sim_error)
    }

    /// Pulls a simulated key out.
    pub fn sim_unplug(&self, serial: u64) -> Result<(), HostError> {
        self.sim.unplug(serial).map_err(sim_error)?;
        self.detach_device(&SimBus::device_id(serial));
        Ok(())
    }

    /// Installs a signed licence: as a software key file when it is bound to this computer,
    /// onto the attached blank when it is bound to a USB key. Checked before anything is
    /// written, so a refused licence changes nothing.
    pub async fn install_licence(&self, doc: Vec<u8>) -> Result<LicenceTerms, HostError> {
        let trust = self.trust.clone();
        let (doc, terms) = blocking(move || {
            let terms = licence::open(&doc, &trust)?;
            Ok((doc, terms))
        })
        .await?;
        match terms.binding.clone() {
            Binding::Computer(_) => {
                terms.check_binding(&Binding::Computer(self.computer_id.clone()))?;
                let path = software_keys::licence_path(&self.data_dir, &terms.key_id, terms.key_no);
                let (file, bytes) = (path.clone(), doc.clone());
                blocking(move || {
                    software_keys::write_licence(&file, &bytes).map_err(HostError::from)
                })
                .await?;
                // Only this licence is read back: installing never re-reads the others.
                self.upsert_software_key(path, doc).await?;
            }
            Binding::Device(serial) => {
                let (device_id, slot, replace) = {
                    let usb = self.usb.read().unwrap_or_else(PoisonError::into_inner);
                    let k = usb
                        .iter()
                        .find(|k| k.serial == serial && k.slot.is_some())
                        .ok_or(HostError::DeviceNotAttached(serial))?;
                    // A keyed device takes only a new version of the licence it holds (or, for a
                    // superseded one, claims to hold: the new one is verified and bound to it).
                    let same_key = k
                        .terms
                        .as_ref()
                        .is_some_and(|t| t.key_id == terms.key_id && t.key_no == terms.key_no)
                        || k.claim_signed
                            && k.claim.as_ref().is_some_and(|c| {
                                c.key_id == terms.key_id && c.key_no == terms.key_no
                            });
                    if !k.blank && !same_key {
                        return Err(HostError::DeviceNotBlank(serial));
                    }
                    let slot = k.slot.clone().ok_or(HostError::DeviceNotAttached(serial))?;
                    (k.device_id.clone(), slot, !k.blank)
                };
                slot.run(move |d| {
                    if replace {
                        d.replace_licence(&doc)
                    } else {
                        d.install_licence(&doc)
                    }
                })
                .await
                .map_err(|e| HostError::device(serial, e))?;
                // Re-probe so the table shows what the key now holds.
                self.reprobe(device_id, slot).await?;
            }
        }
        Ok(terms)
    }

    async fn reprobe(
        &self,
        device_id: String,
        slot: std::sync::Arc<crate::hal::DeviceSlot>,
    ) -> Result<(), HostError> {
        let (info, doc) = slot
            .run(probe)
            .await
            .map_err(|e| HostError::Internal(e.to_string()))?;
        let signer = doc.as_deref().and_then(super::keys::envelope_signer);
        let opened = self.open_device_licence(doc, info.serial).await;
        let mut usb = self.usb.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = usb.iter_mut().find(|k| k.device_id == device_id) {
            k.blank = info.blank;
            k.terms = opened.terms;
            k.open_error = opened.open_error;
            k.claim = opened.claim;
            k.claim_signed = opened.claim_signed;
            k.signer = signer;
        }
        Ok(())
    }

    /// Plugs in every simulated key whose image is in the data directory.
    pub async fn attach_sim_images(&self) -> Vec<(u64, Result<DeviceSummary, HostError>)> {
        let mut out = Vec::new();
        let sim = self.sim.clone();
        // A directory scan: on the blocking pool.
        let images = blocking(move || Ok(sim.images())).await.unwrap_or_default();
        for serial in images {
            out.push((serial, self.sim_plug(serial).await));
        }
        out
    }
}

/// What the licence on a USB key gave when opened.
#[derive(Default)]
struct DeviceLicence {
    terms: Option<LicenceTerms>,
    open_error: Option<String>,
    /// What a superseded licence claims, for update to re-issue it …
    claim: Option<licence::Claim>,
    /// … if its format-1 signature verifies.
    claim_signed: bool,
}

impl DeviceLicence {
    /// Blocking: verifies signatures.
    fn open(doc: &[u8], serial: u64, trust: &licence::TrustStore) -> DeviceLicence {
        match licence::open(doc, trust) {
            Ok(t) => DeviceLicence {
                open_error: t
                    .check_binding(&Binding::Device(serial))
                    .err()
                    .map(|e| e.to_string()),
                terms: Some(t),
                ..DeviceLicence::default()
            },
            Err(e) => {
                let (claim, claim_signed, message) = super::keys::superseded(doc, &e, trust);
                DeviceLicence {
                    terms: None,
                    open_error: Some(message),
                    claim,
                    claim_signed,
                }
            }
        }
    }
}

/// What arrival asks a device: who it is, and the licence on it unless it is blank.
fn probe(d: &mut dyn KeyDevice) -> Result<(DeviceInfo, Option<Vec<u8>>), DeviceError> {
    let info = d.info()?;
    let doc = if info.blank { None } else { d.read_licence()? };
    Ok((info, doc))
}

fn sim_error(e: SimError) -> HostError {
    match e {
        SimError::Store(s) => HostError::Store(s),
        other => HostError::Invalid(other.to_string()),
    }
}

/// One USB key as `keybridge devices` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeviceRow {
    pub id: String,
    pub driver: String,
    pub path: String,
    pub serial: Option<u64>,
    pub attached: bool,
    pub blank: bool,
    pub key_no: Option<u64>,
    /// Why the key cannot be used, if it cannot.
    pub error: Option<String>,
}

impl DeviceRow {
    /// A word or two for people: ready, blank, not workable, unplugged.
    pub fn state(&self) -> String {
        match (&self.error, self.attached, self.blank, self.key_no) {
            (_, false, _, _) => "unplugged".into(),
            (Some(e), true, _, _) => format!("not workable: {e}"),
            (None, true, true, _) => "blank".into(),
            (None, true, false, Some(k)) => format!("ready, licence {k}"),
            (None, true, false, None) => "ready".into(),
        }
    }
}

impl Host {
    /// Every USB key (real and simulated) seen during this run, as it is now.
    pub fn devices(&self) -> Vec<DeviceRow> {
        let usb = self.usb.read().unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<DeviceRow> = usb
            .iter()
            .map(|k| DeviceRow {
                id: k.device_id.clone(),
                driver: k.driver.clone(),
                path: k.describe.clone(),
                serial: (k.serial != 0).then_some(k.serial),
                attached: k.slot.is_some(),
                blank: k.blank,
                key_no: k.terms.as_ref().map(|t| t.key_no),
                error: k.open_error.clone(),
            })
            .collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::super::HostOptions;
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Plugging in a new simulated key makes RSA keys (the simulator's factory key, then the
    /// device key) and writes its image. That runs on the blocking pool, so a runtime with a
    /// single async thread goes on running its other tasks meanwhile.
    #[test]
    fn plugging_a_key_leaves_the_async_thread_free() {
        let dir = tempfile::tempdir().expect("tmp");
        let host = Host::new(HostOptions::for_tests(dir.path())).expect("host");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let done = Arc::new(AtomicBool::new(false));
            let stop = done.clone();
            // On the one async thread: the longest it had to wait for its next turn.
            let ticker = tokio::spawn(async move {
                let mut worst = Duration::ZERO;
                let mut last = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let now = Instant::now();
                    worst = worst.max(now - last);
                    last = now;
                }
                worst
            });
            tokio::task::yield_now().await;
            let started = Instant::now();
            let plugged = host.sim_plug(4242).await.expect("plug");
            let took = started.elapsed();
            done.store(true, Ordering::SeqCst);
            let worst = ticker.await.expect("ticker");
            assert!(plugged.blank);
            assert!(
                worst < took / 2,
                "the async thread was held for {worst:?} of the {took:?} the plug took"
            );
        });
    }
}
