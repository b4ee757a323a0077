use super::firmware::Firmware;
use crate::crypto::Signer;
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

/// The USB port a simulated key sits in: the firmware plus the report buffers in each
/// direction, as the device's endpoints would hold them.
struct Port {
    firmware: Firmware,
    rx: Reassembler,
    tx: VecDeque<Report>,
    plugged: bool,
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
        match p.rx.push(report) {
            Ok(Some(frame)) => {
                let reply = p.firmware.handle(&frame);
                p.tx.extend(split(&reply));
            }
            Ok(None) => {}
            // Real firmware drops a broken report stream and waits for a new first report.
            Err(_) => p.rx.reset(),
        }
        Ok(())
    }

    fn read_report(&mut self, _timeout: Duration) -> Result<Report, TransportError> {
        let mut p = self.port.lock().unwrap_or_else(PoisonError::into_inner);
        if !p.plugged {
            return Err(TransportError::Disconnected);
        }
        // The simulated firmware answers synchronously; nothing queued means it has nothing
        // to say, which a real transport would see as a timeout.
        p.tx.pop_front().ok_or(TransportError::Timeout)
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
    factory: Mutex<Option<Arc<Signer>>>,
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
    fn factory(&self) -> Result<Arc<Signer>, SimError> {
        let mut f = self.factory.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = f.as_ref() {
            return Ok(s.clone());
        }
        let signer = Arc::new(crate::store::keyfile::load_or_create(
            &self.dir.join("factory-key.pem"),
        )?);
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
            .keys()
            .copied()
            .collect()
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
