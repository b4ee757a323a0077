use super::firmware::Firmware;
use crate::crypto::FactoryKey;
use crate::hal::protocol::report::{split, Reassembler, Report};
use crate::hal::{ProtocolDevice, Transport, TransportError};
use crate::keymem::LockPolicy;
use crate::store::StoreError;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SimError {
    #[error("simulated key {0} is already plugged in")]
    AlreadyPlugged(u64),
    #[error("simulated key {0} is not plugged in")]
    NotPlugged(u64),
    #[error("serial number must be positive")]
    BadSerial,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A fault to inject into a simulated key's next command, for testing how the host copes
/// with hardware that misbehaves. One-shot: it applies to one command, then clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SimFault {
    /// The key takes `after_reports` reports of the command, then ignores the rest and
    /// never answers: it stopped answering mid-command.
    Silent { after_reports: u32 },
    /// The key is pulled out after `after_reports` reports of the command: it never sees
    /// the whole command.
    Unplug { after_reports: u32 },
    /// The key carries out the command, then is pulled out before it answers.
    UnplugBeforeReply,
    /// The key carries out the command and answers with a corrupted CRC.
    BadCrc,
}

/// The USB port a simulated key sits in: the firmware plus the report buffers in each
/// direction, as the device's endpoints would hold them.
struct Port {
    firmware: Firmware,
    rx: Reassembler,
    tx: VecDeque<Report>,
    plugged: bool,
    /// An armed fault, and how many reports of the faulty command have arrived.
    fault: Option<(SimFault, u32)>,
    /// Swallowing the rest of a command after a `Silent` fault.
    swallowing: bool,
}

impl Port {
    /// Applies an armed fault to the report arriving now. `true` means the report is taken
    /// no further.
    fn fault_takes(&mut self, report: &Report) -> bool {
        use crate::hal::protocol::report::LAST;
        if self.swallowing {
            if report[0] & LAST != 0 {
                self.swallowing = false;
                self.rx.reset();
            }
            return true;
        }
        let Some((fault, seen)) = self.fault.as_mut() else {
            return false;
        };
        let fault = *fault;
        match fault {
            SimFault::Silent { after_reports } | SimFault::Unplug { after_reports }
                if *seen >= after_reports =>
            {
                self.fault = None;
                self.rx.reset();
                if matches!(fault, SimFault::Unplug { .. }) {
                    self.plugged = false;
                } else if report[0] & LAST == 0 {
                    self.swallowing = true;
                }
                true
            }
            _ => {
                *seen += 1;
                false
            }
        }
    }

    /// Applies an armed fault to the reply of a command the firmware carried out.
    fn fault_on_reply(&mut self, mut reply: Vec<u8>) -> Option<Vec<u8>> {
        match self.fault {
            Some((SimFault::UnplugBeforeReply, _)) => {
                self.fault = None;
                self.plugged = false;
                None
            }
            Some((SimFault::BadCrc, _)) => {
                self.fault = None;
                if let Some(last) = reply.last_mut() {
                    *last ^= 0xFF;
                }
                Some(reply)
            }
            // A command shorter than the fault's report count: it passes; the fault waits.
            Some((SimFault::Silent { .. } | SimFault::Unplug { .. }, _)) => {
                self.fault = None;
                Some(reply)
            }
            None => Some(reply),
        }
    }
}

/// The in-process transport to one simulated key.
pub struct SimTransport {
    serial: u64,
    port: Arc<Mutex<Port>>,
}

impl Transport for SimTransport {
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError> {
        let mut p = self.port.lock().unwrap_or_else(PoisonError::into_inner);
        if !p.plugged {
            return Err(TransportError::Disconnected);
        }
        if p.fault_takes(report) {
            return if p.plugged {
                Ok(())
            } else {
                Err(TransportError::Disconnected)
            };
        }
        match p.rx.push(report) {
            Ok(Some(frame)) => {
                let reply = p.firmware.handle(&frame);
                match p.fault_on_reply(reply) {
                    // The firmware only answers with frames it could encode, which split.
                    Some(reply) => match split(&reply) {
                        Ok(reports) => p.tx.extend(reports),
                        Err(_) => p.rx.reset(),
                    },
                    None => return Err(TransportError::Disconnected),
                }
            }
            Ok(None) => {}
            // Real firmware drops a broken report stream and waits for a new first report.
            Err(_) => p.rx.reset(),
        }
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError> {
        {
            let mut p = self.port.lock().unwrap_or_else(PoisonError::into_inner);
            if !p.plugged {
                return Err(TransportError::Disconnected);
            }
            if let Some(r) = p.tx.pop_front() {
                return Ok(r);
            }
        }
        // The simulated firmware answers synchronously, so nothing queued means it will say
        // nothing: wait out the timeout as a real transport would, then say so.
        std::thread::sleep(timeout);
        Err(TransportError::Timeout)
    }

    fn describe(&self) -> String {
        format!("sim:{}", self.serial)
    }
}

/// All simulated keys of a host: their images live in one directory.
pub struct SimBus {
    dir: PathBuf,
    policy: LockPolicy,
    ports: Mutex<BTreeMap<u64, Arc<Mutex<Port>>>>,
    factory: Mutex<Option<Arc<FactoryKey>>>,
}

impl SimBus {
    pub fn new(dir: &Path, policy: LockPolicy) -> Self {
        SimBus {
            dir: dir.into(),
            policy,
            ports: Mutex::new(BTreeMap::new()),
            factory: Mutex::new(None),
        }
    }

    /// The folder holding the simulator factory's public key, for a centre to trust as a
    /// manufacturer.
    pub fn factory_public_dir(sim_dir: &Path) -> PathBuf {
        sim_dir.join("factory-public")
    }

    /// The simulated keys' manufacturer: its key certifies each key's own key at
    /// "manufacture". Made on first use.
    fn factory(&self) -> Result<Arc<FactoryKey>, SimError> {
        let mut f = self.factory.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = f.as_ref() {
            return Ok(s.clone());
        }
        let signer = Arc::new(FactoryKey::new(crate::store::keyfile::load_or_create(
            &self.dir.join("factory-key.pem"),
        )?));
        let public_dir = Self::factory_public_dir(&self.dir);
        crate::store::atomic::ensure_dir(&public_dir)?;
        let public = public_dir.join("sim-factory.pem");
        if !public.exists() {
            crate::store::atomic::write(&public, signer.public_key().pem().as_bytes(), 0o644)?;
        }
        *f = Some(signer.clone());
        Ok(signer)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn image_path(&self, serial: u64) -> PathBuf {
        self.dir.join(format!("{serial}.img"))
    }

    /// Serials of every image on disk, plugged or not.
    pub fn images(&self) -> Vec<u64> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut v: Vec<u64> = entries
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".img")?.parse().ok()
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Plugs in the key with `serial`, making a blank image for a new serial. Returns the
    /// host-side device, ready for the registry.
    pub fn plug(&self, serial: u64) -> Result<ProtocolDevice<SimTransport>, SimError> {
        if serial == 0 {
            return Err(SimError::BadSerial);
        }
        let mut ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        if ports
            .get(&serial)
            .is_some_and(|p| p.lock().unwrap_or_else(PoisonError::into_inner).plugged)
        {
            return Err(SimError::AlreadyPlugged(serial));
        }
        crate::store::atomic::ensure_dir(&self.dir)?;
        let factory = self.factory()?;
        let firmware =
            Firmware::open_or_create(&self.image_path(serial), serial, self.policy, &factory)?;
        let port = Arc::new(Mutex::new(Port {
            firmware,
            rx: Reassembler::default(),
            tx: VecDeque::new(),
            plugged: true,
            fault: None,
            swallowing: false,
        }));
        ports.insert(serial, port.clone());
        Ok(ProtocolDevice::new(SimTransport { serial, port }))
    }

    /// Pulls the key out: any command in flight or later fails with `Disconnected`.
    pub fn unplug(&self, serial: u64) -> Result<(), SimError> {
        let mut ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        let port = ports.remove(&serial).ok_or(SimError::NotPlugged(serial))?;
        port.lock().unwrap_or_else(PoisonError::into_inner).plugged = false;
        Ok(())
    }

    pub fn plugged(&self) -> Vec<u64> {
        self.ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, p)| p.lock().unwrap_or_else(PoisonError::into_inner).plugged)
            .map(|(s, _)| *s)
            .collect()
    }

    /// Arms a fault for the next command to plugged-in key `serial`.
    pub fn inject(&self, serial: u64, fault: SimFault) -> Result<(), SimError> {
        let ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        let port = ports.get(&serial).ok_or(SimError::NotPlugged(serial))?;
        let mut p = port.lock().unwrap_or_else(PoisonError::into_inner);
        if !p.plugged {
            return Err(SimError::NotPlugged(serial));
        }
        p.fault = Some((fault, 0));
        Ok(())
    }

    /// The registry id of a simulated key.
    pub fn device_id(serial: u64) -> String {
        format!("sim:{serial}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::{DeviceError, KeyDevice, PasswordChange};
    use crate::keymem::MemoryError;

    #[test]
    fn firmware_through_the_codec() {
        let d = tempfile::tempdir().expect("tempdir");
        let bus = SimBus::new(d.path(), LockPolicy::default());
        let mut dev = bus.plug(42).expect("plug");
        let info = dev.info().expect("info");
        assert_eq!((info.serial, info.blank), (42, true));
        assert_eq!(dev.read_licence().expect("read"), None);
        let doc = vec![b'x'; 3000];
        dev.install_licence(&doc).expect("install");
        assert_eq!(dev.install_licence(&doc), Err(DeviceError::NotBlank));
        assert_eq!(dev.read_licence().expect("read"), Some(doc));
        dev.write_memory("", "значение").expect("write");
        dev.set_passwords(&PasswordChange {
            new_read: "r".into(),
            new_write: "w".into(),
            ..Default::default()
        })
        .expect("passwords");
        assert!(matches!(
            dev.read_memory(""),
            Err(DeviceError::Memory(MemoryError::WrongPassword { .. }))
        ));
        assert_eq!(dev.read_memory("r").expect("read"), "значение");
        bus.unplug(42).expect("unplug");
        assert_eq!(dev.info(), Err(DeviceError::Disconnected));
        // The image kept everything.
        let mut again = bus.plug(42).expect("replug");
        assert!(!again.info().expect("info").blank);
        assert_eq!(again.read_memory("r").expect("read"), "значение");
    }
}
