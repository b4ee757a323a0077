//! The devices attached right now, by device id (transport and path, e.g. `sim:90000001`,
//! `hid:/dev/hidraw0`). Hot-plug sources add and remove entries.
//!
//! Each device has its own worker thread that owns it and runs its commands one at a time,
//! so a slow or dead key holds up only the requests for that key: callers wait on a channel,
//! not on a lock or a shared thread pool.

use super::{DeviceError, KeyDevice};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

/// Commands queued for one device beyond which new ones are refused with
/// [`DeviceError::Busy`]: a key that takes 2 s to time out would otherwise collect an
/// unbounded backlog of waiting requests.
pub const MAX_QUEUED: usize = 64;

type Job = Box<dyn FnOnce(Result<&mut dyn KeyDevice, DeviceError>) + Send>;

/// One attached device and its worker.
pub struct DeviceSlot {
    id: String,
    describe: String,
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    state: Arc<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// Set on detach: queued commands fail without touching the device.
    gone: AtomicBool,
    queued: AtomicUsize,
}

impl DeviceSlot {
    fn spawn(id: String, mut device: Box<dyn KeyDevice>) -> Arc<DeviceSlot> {
        let (tx, rx) = mpsc::channel::<Job>();
        let state = Arc::new(SlotState::default());
        let describe = device.describe();
        let worker_state = state.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("key {id}"))
            .spawn(move || {
                for job in rx {
                    worker_state.queued.fetch_sub(1, Ordering::SeqCst);
                    let arg = if worker_state.gone.load(Ordering::SeqCst) {
                        Err(DeviceError::Disconnected)
                    } else {
                        Ok(device.as_mut() as &mut dyn KeyDevice)
                    };
                    // A panicking driver fails its own command, not the worker.
                    if std::panic::catch_unwind(AssertUnwindSafe(|| job(arg))).is_err() {
                        tracing::error!("device worker: a command panicked");
                    }
                }
                // The channel closed: the device was detached; dropping it here closes it.
            });
        let queue = match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::error!(device = %id, "cannot start a device worker: {e}");
                None
            }
        };
        Arc::new(DeviceSlot {
            id,
            describe,
            queue: Mutex::new(queue),
            state,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Transport and path, as the device describes itself.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    fn submit(&self, job: Job) -> Result<(), DeviceError> {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = queue.as_ref().ok_or(DeviceError::Disconnected)?;
        if self.state.queued.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED {
            self.state.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(DeviceError::Busy);
        }
        tx.send(job).map_err(|_| {
            self.state.queued.fetch_sub(1, Ordering::SeqCst);
            DeviceError::Disconnected
        })
    }

    /// Runs `f` on the device's worker and waits for it without blocking the executor.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn KeyDevice) -> Result<R, DeviceError> + Send + 'static,
    ) -> Result<R, DeviceError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move |d| {
            let _ = tx.send(d.and_then(f));
        }))?;
        rx.await.unwrap_or(Err(DeviceError::Disconnected))
    }

    /// Runs `f` on the device's worker and blocks until it is done. For threads that are not
    /// async tasks (benchmarks, the CLI).
    pub fn run_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn KeyDevice) -> Result<R, DeviceError> + Send + 'static,
    ) -> Result<R, DeviceError> {
        let (tx, rx) = mpsc::channel();
        self.submit(Box::new(move |d| {
            let _ = tx.send(d.and_then(f));
        }))?;
        rx.recv().unwrap_or(Err(DeviceError::Disconnected))
    }

    /// Stops taking commands; the worker drains what is queued (failing it) and closes the
    /// device.
    fn close(&self) {
        self.state.gone.store(true, Ordering::SeqCst);
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

#[derive(Default)]
pub struct DeviceRegistry {
    slots: Mutex<BTreeMap<String, Arc<DeviceSlot>>>,
}

impl DeviceRegistry {
    /// Adds a device with its own worker, replacing (and closing) any previous one at the
    /// same id.
    pub fn attach(&self, id: String, device: Box<dyn KeyDevice>) -> Arc<DeviceSlot> {
        let slot = DeviceSlot::spawn(id.clone(), device);
        if let Some(old) = self.lock().insert(id, slot.clone()) {
            old.close();
        }
        slot
    }

    /// Removes a device: commands queued for it fail with `Disconnected`.
    pub fn detach(&self, id: &str) -> Option<Arc<DeviceSlot>> {
        let slot = self.lock().remove(id);
        if let Some(s) = &slot {
            s.close();
        }
        slot
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::sim::SimBus;
    use crate::keymem::LockPolicy;

    #[tokio::test]
    async fn detach_fails_queued_commands_and_closes_the_worker() {
        let d = tempfile::tempdir().expect("tempdir");
        let bus = SimBus::new(d.path(), LockPolicy::default());
        let reg = DeviceRegistry::default();
        let slot = reg.attach("sim:7".into(), Box::new(bus.plug(7).expect("plug")));
        let info = slot.run(|d| d.info()).await.expect("info");
        assert_eq!(info.serial, 7);
        reg.detach("sim:7");
        assert_eq!(slot.run(|d| d.info()).await, Err(DeviceError::Disconnected));
        assert!(reg.get("sim:7").is_none());
    }
}
