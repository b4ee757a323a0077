use crate::crypto::{DeviceKey, FactoryKey, KeyPair};
use crate::hal::protocol::command::{encode_attestation, encode_info, Request, Status};
use crate::hal::protocol::{Frame, Reply};
use crate::hal::{Attestation, DeviceInfo};
use crate::keymem::{self, LockPolicy, UserMemory, MAX_VALUE_BYTES};
use crate::store::{atomic, StoreError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FIRMWARE_VERSION: (u8, u8) = (1, 0);
/// Bytes of licence storage on the simulated key.
pub const LICENCE_CAPACITY: usize = 8 * 1024;
const IMAGE_FORMAT: &str = "keybridge-sim-image/1";
/// The capacities as GET_INFO and TOO_LARGE carry them; the build fails if one stops fitting
/// its field, so the casts below never cut.
const MEMORY_CAPACITY_FIELD: u16 = {
    assert!(MAX_VALUE_BYTES <= u16::MAX as usize);
    MAX_VALUE_BYTES as u16
};
const LICENCE_CAPACITY_FIELD: u16 = {
    assert!(LICENCE_CAPACITY <= u16::MAX as usize);
    LICENCE_CAPACITY as u16
};

/// What the simulated key keeps in its flash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Image {
    format: String,
    serial: u64,
    /// The installed licence, base64; `None` on a blank.
    licence: Option<String>,
    memory: UserMemory,
    /// The device's own key (PKCS#8 PEM), made at manufacture.
    #[serde(default)]
    device_key: Option<String>,
    /// The manufacturer's certificate of that key, base64 (see `crate::hal::attest`).
    #[serde(default)]
    certificate: Option<String>,
}

/// The firmware of one simulated key: decodes request frames, applies them to the image,
/// persists, and encodes the reply.
pub struct Firmware {
    path: PathBuf,
    image: Image,
    policy: LockPolicy,
    device_key: DeviceKey,
}

impl Firmware {
    /// Opens the image at `path`, or makes a blank key with `serial` there.
    /// A key made without one (an older image) is given a key and certificate by `factory`,
    /// as at manufacture.
    pub fn open_or_create(
        path: &Path,
        serial: u64,
        policy: LockPolicy,
        factory: &FactoryKey,
    ) -> Result<Self, StoreError> {
        let mut image = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice::<Image>(&b).map_err(|e| StoreError::Corrupt {
                path: path.into(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Image {
                format: IMAGE_FORMAT.into(),
                serial,
                licence: None,
                memory: UserMemory::default(),
                device_key: None,
                certificate: None,
            },
            Err(e) => return Err(StoreError::read(path, e)),
        };
        if image.format != IMAGE_FORMAT || image.serial != serial {
            return Err(StoreError::Corrupt {
                path: path.into(),
                message: format!(
                    "image is {:?} for serial {}, expected {IMAGE_FORMAT:?} for {serial}",
                    image.format, image.serial
                ),
            });
        }
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.into(),
            message,
        };
        if image.device_key.is_none() || image.certificate.is_none() {
            let key = KeyPair::generate().map_err(|e| corrupt(e.to_string()))?;
            let pem = key.to_pkcs8_pem().map_err(|e| corrupt(e.to_string()))?;
            let cert = factory
                .certify(serial, &key.public_key().der())
                .map_err(|e| corrupt(e.to_string()))?;
            image.device_key = Some(pem);
            image.certificate = Some(crate::crypto::b64(&cert));
            save(path, &image)?;
        }
        let device_key = DeviceKey::new(
            KeyPair::from_pkcs8_pem(image.device_key.as_deref().unwrap_or_default())
                .map_err(|e| corrupt(e.to_string()))?,
        );
        Ok(Firmware {
            path: path.into(),
            image,
            policy,
            device_key,
        })
    }

    pub fn serial(&self) -> u64 {
        self.image.serial
    }

    pub fn is_blank(&self) -> bool {
        self.image.licence.is_none()
    }

    /// Handles one encoded request frame and returns the encoded reply frame.
    pub fn handle(&mut self, frame: &[u8]) -> Vec<u8> {
        let (tag, reply) = match Frame::decode(frame) {
            Ok(f) => (f.tag, self.execute(&f)),
            Err(_) => {
                let tag = if frame.len() >= 6 {
                    u16::from_le_bytes([frame[4], frame[5]])
                } else {
                    0
                };
                (tag, Reply::status(Status::BadFrame))
            }
        };
        reply.to_frame(tag).encode().unwrap_or_else(|_| {
            Reply::status(Status::StorageFailure)
                .to_frame(tag)
                .encode()
                .unwrap_or_default()
        })
    }

    fn execute(&mut self, f: &Frame) -> Reply {
        let req = match Request::from_frame(f) {
            Ok(r) => r,
            Err(status) => return Reply::status(status),
        };
        let now = keymem::Now::current();
        // Work on a copy; commit it to flash, then to RAM, only if the command succeeds.
        let mut next = self.image.clone();
        let reply = match req {
            Request::GetInfo => {
                let info = DeviceInfo {
                    serial: next.serial,
                    firmware: String::new(),
                    blank: next.licence.is_none(),
                    memory_capacity: MEMORY_CAPACITY_FIELD,
                    licence_capacity: LICENCE_CAPACITY_FIELD,
                };
                Reply::ok(encode_info(&info, FIRMWARE_VERSION.0, FIRMWARE_VERSION.1))
            }
            Request::ReadLicence => match next.licence.as_deref().and_then(crate::crypto::unb64) {
                Some(doc) => Reply::ok(doc),
                None => Reply::status(Status::NoLicence),
            },
            Request::InstallLicence(doc) | Request::ReplaceLicence(doc) => {
                let replace = matches!(
                    f.code,
                    crate::hal::protocol::command::opcode::REPLACE_LICENCE
                );
                if next.licence.is_some() && !replace {
                    Reply::status(Status::NotBlank)
                } else if next.licence.is_none() && replace {
                    Reply::status(Status::NoLicence)
                } else if doc.is_empty() {
                    Reply::status(Status::BadPayload)
                } else if doc.len() > LICENCE_CAPACITY {
                    Reply {
                        status: Status::TooLarge,
                        payload: u32::from(LICENCE_CAPACITY_FIELD).to_le_bytes().to_vec(),
                    }
                } else {
                    next.licence = Some(crate::crypto::b64(&doc));
                    Reply::ok(Vec::new())
                }
            }
            Request::ReadMemory { password } => match next.memory.read(&password, self.policy, now)
            {
                Ok(v) => Reply::ok(v.into_bytes()),
                Err(e) => memory_error(&e),
            },
            Request::WriteMemory { password, value } => {
                match next.memory.write(&password, &value, self.policy, now) {
                    Ok(()) => Reply::ok(Vec::new()),
                    Err(e) => memory_error(&e),
                }
            }
            Request::SetPasswords {
                read,
                write,
                new_read,
                new_write,
            } => {
                match next.memory.set_passwords(
                    &read,
                    &write,
                    &new_read,
                    &new_write,
                    self.policy,
                    now,
                ) {
                    Ok(()) => Reply::ok(Vec::new()),
                    Err(e) => memory_error(&e),
                }
            }
            Request::ResetMemory => {
                next.memory.reset();
                Reply::ok(Vec::new())
            }
            Request::Attest { nonce } => {
                let blank = next.licence.is_none();
                let cert = next.certificate.as_deref().and_then(crate::crypto::unb64);
                match (self.device_key.attest(&nonce, next.serial, blank), cert) {
                    (Ok(signature), Some(certificate)) => match encode_attestation(&Attestation {
                        serial: next.serial,
                        blank,
                        device_key: self.device_key.public_key().der(),
                        certificate,
                        signature,
                    }) {
                        Ok(p) => Reply::ok(p),
                        Err(_) => Reply::status(Status::StorageFailure),
                    },
                    _ => Reply::status(Status::StorageFailure),
                }
            }
        };
        // Failure counters change on wrong passwords too, so persist any change at all.
        if next != self.image && save(&self.path, &next).is_err() {
            return Reply::status(Status::StorageFailure);
        }
        // Also when nothing stored changed: RAM keeps the lock's monotonic end.
        self.image = next;
        reply
    }
}

/// The reply for a memory error, or a storage failure if it cannot be encoded.
fn memory_error(e: &keymem::MemoryError) -> Reply {
    Reply::memory_error(e).unwrap_or_else(|_| Reply::status(Status::StorageFailure))
}

fn save(path: &Path, image: &Image) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(image).map_err(|e| StoreError::Corrupt {
        path: path.into(),
        message: e.to_string(),
    })?;
    atomic::write(path, &bytes, 0o600)
}
