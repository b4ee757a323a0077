//! The devices attached right now, by device id (transport and path, e.g. `sim:90000001`).
//! Hot-plug sources add and remove entries; each entry serialises its own I/O.

use super::KeyDevice;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One attached device. Its mutex is the per-device I/O queue: commands to one key run one
/// at a time, while other keys go on in parallel.
pub struct DeviceSlot {
    id: String,
    io: Mutex<Box<dyn KeyDevice>>,
}

impl DeviceSlot {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs `f` with exclusive access to the device. Blocking: call off the async executor.
    pub fn with<R>(&self, f: impl FnOnce(&mut dyn KeyDevice) -> R) -> R {
        let mut dev = self.io.lock().unwrap_or_else(PoisonError::into_inner);
        f(dev.as_mut())
    }
}

#[derive(Default)]
pub struct DeviceRegistry {
    slots: Mutex<BTreeMap<String, Arc<DeviceSlot>>>,
}

impl DeviceRegistry {
    /// Adds a device, replacing any previous one at the same id.
    pub fn attach(&self, id: String, device: Box<dyn KeyDevice>) -> Arc<DeviceSlot> {
        let slot = Arc::new(DeviceSlot {
            id: id.clone(),
            io: Mutex::new(device),
        });
        self.lock().insert(id, slot.clone());
        slot
    }

    pub fn detach(&self, id: &str) -> Option<Arc<DeviceSlot>> {
        self.lock().remove(id)
    }

    pub fn get(&self, id: &str) -> Option<Arc<DeviceSlot>> {
        self.lock().get(id).cloned()
    }

    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<DeviceSlot>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
