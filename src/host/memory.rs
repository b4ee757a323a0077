//! User memory by KeyNo: a software key's memory file, or the USB key's own memory through
//! the HAL. Both apply the same rules (`keymem`).

use super::keys::KeyKind;
use super::{blocking, Host, HostError};
use crate::hal::{DeviceSlot, KeyDevice, PasswordChange};
use crate::keymem::{self, MemoryError, UserMemory, MAX_VALUE_BYTES};
use crate::store::software_keys;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

enum Target {
    File(PathBuf),
    Device { serial: u64, slot: Arc<DeviceSlot> },
}

impl Host {
    fn memory_target(&self, key_no: u64) -> Result<Target, HostError> {
        let entry = self.licence(key_no)?;
        match entry.kind {
            KeyKind::Software => {
                let key_id = entry.key_id.ok_or(HostError::KeyNotFound(key_no))?;
                Ok(Target::File(software_keys::memory_path(
                    &self.data_dir,
                    &key_id,
                    key_no,
                )))
            }
            KeyKind::Usb => {
                let serial = entry.blank_key_no.ok_or(HostError::KeyNotFound(key_no))?;
                let usb = self.usb.read().unwrap_or_else(PoisonError::into_inner);
                let slot = usb
                    .iter()
                    .find(|k| k.serial == serial)
                    .and_then(|k| k.slot.clone())
                    .ok_or(HostError::KeyNotAttached(key_no))?;
                Ok(Target::Device { serial, slot })
            }
        }
    }

    /// Runs one memory operation on whatever holds the key's memory.
    async fn with_memory<R: Send + 'static>(
        self: &Arc<Self>,
        key_no: u64,
        on_file: impl FnOnce(&mut UserMemory, keymem::LockPolicy, keymem::Now) -> Result<R, MemoryError>
            + Send
            + 'static,
        on_device: impl FnOnce(&mut dyn KeyDevice) -> Result<R, crate::hal::DeviceError>
            + Send
            + 'static,
    ) -> Result<R, HostError> {
        match self.memory_target(key_no)? {
            Target::File(path) => {
                let host = self.clone();
                blocking(move || {
                    let mut locks = host
                        .software_memory
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    let mut mem = software_keys::load_memory(&path)?;
                    mem.resume_lock(locks.get(&path).copied());
                    let before = mem.clone();
                    let now = keymem::Now::current();
                    let result = on_file(&mut mem, host.memory_policy, now);
                    // Keep the lock's monotonic end for the next request on this key.
                    match mem.lock_deadline(host.memory_policy, now) {
                        Some(deadline) => locks.insert(path.clone(), deadline),
                        None => locks.remove(&path),
                    };
                    // Failure counters change on refusals too; save any change at all.
                    if mem != before {
                        software_keys::save_memory(&path, &mem)?;
                    }
                    result.map_err(HostError::Memory)
                })
                .await
            }
            Target::Device { serial, slot } => {
                let result = slot.run(on_device).await;
                if let Err(crate::hal::DeviceError::Disconnected) = &result {
                    // The key is gone: unusable at once, not at the next rescan.
                    self.detach_device(slot.id());
                }
                result.map_err(|e| HostError::device(serial, e))
            }
        }
    }

    pub async fn memory_read(
        self: &Arc<Self>,
        key_no: u64,
        password: String,
    ) -> Result<String, HostError> {
        let pw = password.clone();
        self.with_memory(
            key_no,
            move |m, p, now| m.read(&pw, p, now),
            move |d| d.read_memory(&password),
        )
        .await
    }

    pub async fn memory_write(
        self: &Arc<Self>,
        key_no: u64,
        password: String,
        value: String,
    ) -> Result<(), HostError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(HostError::Memory(MemoryError::TooLarge {
                max: MAX_VALUE_BYTES,
                got: value.len(),
            }));
        }
        let (pw, v) = (password.clone(), value.clone());
        self.with_memory(
            key_no,
            move |m, p, now| m.write(&pw, &v, p, now),
            move |d| d.write_memory(&password, &value),
        )
        .await
    }

    pub async fn memory_set_passwords(
        self: &Arc<Self>,
        key_no: u64,
        change: PasswordChange,
    ) -> Result<(), HostError> {
        let c = change.clone();
        self.with_memory(
            key_no,
            move |m, p, now| m.set_passwords(&c.read, &c.write, &c.new_read, &c.new_write, p, now),
            move |d| d.set_passwords(&change),
        )
        .await
    }

    pub async fn memory_reset(self: &Arc<Self>, key_no: u64) -> Result<(), HostError> {
        self.with_memory(
            key_no,
            |m, _, _| {
                m.reset();
                Ok(())
            },
            |d| d.reset_memory(),
        )
        .await
    }
}
