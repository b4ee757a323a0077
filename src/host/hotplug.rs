//! Real USB keys coming and going. Three sources feed one loop: the udev helper
//! (`keybridge hotplug add|remove`, through the control socket), libusb's hot-plug callbacks
//! where the platform has them, and a periodic rescan for hosts with neither. The loop owns
//! the bookkeeping (what is attached, what is being probed, what to retry), so events from
//! different sources never race each other.

use super::Host;
use crate::hal::usb::{self, Found, Unopened, UsbBackend};
use crate::hal::{KeyDevice, TransportError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Something happened on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotplugEvent {
    /// A device node appeared (udev `add`).
    Add { devnode: String },
    /// A device node went away (udev `remove`).
    Remove { devnode: String },
    /// Look again at everything (libusb callback, the timer, `keybridge hotplug rescan`).
    Rescan,
}

/// How the USB watcher runs.
#[derive(Debug, Clone)]
pub struct UsbWatchOptions {
    pub rescan: Option<Duration>,
    pub libusb_hotplug: bool,
}

/// The running watcher, as the host holds it.
pub(super) struct UsbWatch {
    pub events: mpsc::UnboundedSender<HotplugEvent>,
}

/// A hot-plug event arrives often before the device's other nodes settle (the hidraw node
/// follows the USB device by some milliseconds); one more look this long after catches it.
const FOLLOW_UP: Duration = Duration::from_millis(200);
/// Retry delays for a device that failed its probe: 1 s, 2 s, 4 s … up to 30 s.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long one scan of the bus may take before the loop goes on without it.
const SCAN_LIMIT: Duration = Duration::from_secs(10);

fn retry_delay(attempt: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1u32 << attempt.min(5))
        .min(RETRY_MAX)
}

impl Host {
    /// Starts watching USB with these drivers: a first scan now, then events. Call once,
    /// inside the runtime.
    pub fn start_usb(
        self: &Arc<Self>,
        backend: UsbBackend,
        opts: UsbWatchOptions,
    ) -> Result<(), super::HostError> {
        let backend = Arc::new(backend);
        let (tx, rx) = mpsc::unbounded_channel();
        if self.usb_watch.set(UsbWatch { events: tx.clone() }).is_err() {
            return Err(super::HostError::Internal(
                "USB watching already started".into(),
            ));
        }
        if opts.libusb_hotplug {
            start_libusb_hotplug(&backend, tx.clone());
        }
        let _ = tx.send(HotplugEvent::Rescan);
        tokio::spawn(Watcher::new(self.clone(), backend).run(rx, opts.rescan));
        Ok(())
    }

    /// Passes a hot-plug event to the watcher. Returns at once; the device is probed in the
    /// background (udev wants its helpers to exit quickly).
    pub fn hotplug(&self, event: HotplugEvent) -> Result<(), super::HostError> {
        let w = self.usb_watch.get().ok_or_else(|| {
            super::HostError::Invalid("this host does not watch USB ([usb] enabled = false)".into())
        })?;
        w.events
            .send(event)
            .map_err(|_| super::HostError::Internal("the USB watcher has stopped".into()))
    }
}

struct Watcher {
    host: Arc<Host>,
    backend: Arc<UsbBackend>,
    /// Devices the watcher attached (probed or being probed).
    known: HashSet<String>,
    /// Probes in flight: a second event for the device waits for the first probe.
    probing: HashSet<String>,
    /// Devices whose probe failed: attempt number and when to try again.
    retry: HashMap<String, (u32, Instant)>,
    done_tx: mpsc::UnboundedSender<(String, bool)>,
    done_rx: mpsc::UnboundedReceiver<(String, bool)>,
}

impl Watcher {
    fn new(host: Arc<Host>, backend: Arc<UsbBackend>) -> Watcher {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Watcher {
            host,
            backend,
            known: HashSet::new(),
            probing: HashSet::new(),
            retry: HashMap::new(),
            done_tx,
            done_rx,
        }
    }

    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<HotplugEvent>,
        every: Option<Duration>,
    ) {
        let mut next_scan = every.map(|d| Instant::now() + d);
        loop {
            let next_retry = self.retry.values().map(|r| r.1).min();
            let wake = match (next_scan, next_retry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = events.recv() => match ev {
                    None => return,
                    Some(HotplugEvent::Remove { devnode }) => self.remove(&usb::device_id(&devnode)),
                    Some(HotplugEvent::Add { .. }) => {
                        self.scan(false).await;
                        next_scan = Some(soonest(next_scan, Instant::now() + FOLLOW_UP));
                    }
                    Some(HotplugEvent::Rescan) => self.scan(true).await,
                },
                Some((id, workable)) = self.done_rx.recv() => {
                    self.probing.remove(&id);
                    if workable || !self.known.contains(&id) {
                        self.retry.remove(&id);
                    } else {
                        let attempt = self.retry.get(&id).map_or(0, |r| r.0 + 1);
                        self.retry.insert(id, (attempt, Instant::now() + retry_delay(attempt)));
                    }
                }
                _ = sleep => {
                    let now = Instant::now();
                    if next_scan.is_some_and(|t| t <= now) {
                        next_scan = every.map(|d| now + d);
                        self.scan(true).await;
                    }
                    let due: Vec<String> = self
                        .retry
                        .iter()
                        .filter(|(_, r)| r.1 <= now)
                        .map(|(id, _)| id.clone())
                        .collect();
                    if !due.is_empty() {
                        self.retry_now(due).await;
                    }
                }
            }
        }
    }

    /// What is on the bus now; `None` when it cannot be told (then nothing is let go).
    async fn look(&self) -> Option<Vec<Found>> {
        let backend = self.backend.clone();
        let scan = tokio::task::spawn_blocking(move || backend.scan());
        // A scan only reads sysfs; one that hangs must not stop removals from being handled.
        let Ok(scanned) = tokio::time::timeout(SCAN_LIMIT, scan).await else {
            tracing::error!("USB scan did not finish in {SCAN_LIMIT:?}; skipped");
            return None;
        };
        match scanned {
            Ok(scan) => {
                for e in &scan.errors {
                    tracing::warn!("USB scan: {e}");
                }
                Some(scan.found)
            }
            Err(e) => {
                tracing::error!("USB scan failed: {e}");
                None
            }
        }
    }

    /// Probes what is new; with `full`, also lets go of what is gone.
    async fn scan(&mut self, full: bool) {
        let Some(found) = self.look().await else {
            return;
        };
        if full {
            let present: HashSet<&str> = found.iter().map(|f| f.id.as_str()).collect();
            let gone: Vec<String> = self
                .known
                .iter()
                .filter(|id| !present.contains(id.as_str()) && !self.probing.contains(*id))
                .cloned()
                .collect();
            for id in gone {
                self.remove(&id);
            }
        }
        for f in found {
            if !self.known.contains(&f.id) {
                self.probe(f);
            }
        }
    }

    async fn retry_now(&mut self, due: Vec<String>) {
        let Some(found) = self.look().await else {
            // Try again later rather than spin on a bus that cannot be read.
            let later = Instant::now() + RETRY_FIRST;
            for id in &due {
                if let Some(r) = self.retry.get_mut(id) {
                    r.1 = later;
                }
            }
            return;
        };
        for id in due {
            if self.probing.contains(&id) {
                continue;
            }
            match found.iter().find(|f| f.id == id) {
                Some(f) => {
                    tracing::info!(device = %id, "retrying a USB key that failed its probe");
                    self.host.detach_device(&id);
                    self.probe(f.clone());
                }
                None => self.remove(&id),
            }
        }
    }

    fn remove(&mut self, id: &str) {
        self.known.remove(id);
        self.retry.remove(id);
        self.host.detach_device(id);
    }

    /// Opens and probes one device in its own task, so a slow one holds up nothing else.
    fn probe(&mut self, found: Found) {
        self.known.insert(found.id.clone());
        self.probing.insert(found.id.clone());
        let host = self.host.clone();
        let backend = self.backend.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let id = found.id.clone();
            let driver = found.driver.id.clone();
            let describe = format!("{}:{}", found.driver.transport, found.place.devnode());
            let opened = tokio::task::spawn_blocking(move || backend.open(&found)).await;
            let device: Box<dyn KeyDevice> = match opened {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => Box::new(Unopened {
                    describe,
                    error: TransportError::Io(e.to_string()),
                }),
                Err(e) => Box::new(Unopened {
                    describe,
                    error: TransportError::Io(format!("open failed: {e}")),
                }),
            };
            let workable = match host.attach_device(id.clone(), &driver, device).await {
                Ok(s) => {
                    if let Some(e) = &s.open_error {
                        tracing::warn!(device = %id, "USB key is not workable: {e}");
                    }
                    s.open_error.is_none()
                }
                Err(e) => {
                    tracing::warn!(device = %id, "USB key probe failed: {e}");
                    false
                }
            };
            let _ = done.send((id, workable));
        });
    }
}

fn soonest(a: Option<Instant>, b: Instant) -> Instant {
    a.map_or(b, |a| a.min(b))
}

/// libusb's hot-plug callbacks, where the platform has them: any arrival or departure of a
/// device some driver lists asks the watcher to look again.
fn start_libusb_hotplug(backend: &Arc<UsbBackend>, tx: mpsc::UnboundedSender<HotplugEvent>) {
    use rusb::UsbContext;
    let Some(ctx) = backend.usb_context().cloned() else {
        return;
    };
    if !rusb::has_hotplug() {
        tracing::info!("libusb has no hot-plug support here; relying on udev and the rescan");
        return;
    }
    struct Callback {
        backend: Arc<UsbBackend>,
        tx: mpsc::UnboundedSender<HotplugEvent>,
    }
    impl Callback {
        fn notify(&self, device: &rusb::Device<rusb::Context>) {
            let Ok(d) = device.device_descriptor() else {
                return;
            };
            let id = crate::hal::drivers::UsbId {
                vid: d.vendor_id(),
                pid: d.product_id(),
            };
            if self.backend.drivers().iter().any(|dr| dr.matches(id)) {
                let _ = self.tx.send(HotplugEvent::Add {
                    devnode: String::new(),
                });
                let _ = self.tx.send(HotplugEvent::Rescan);
            }
        }
    }
    impl rusb::Hotplug<rusb::Context> for Callback {
        fn device_arrived(&mut self, device: rusb::Device<rusb::Context>) {
            self.notify(&device);
        }
        fn device_left(&mut self, device: rusb::Device<rusb::Context>) {
            self.notify(&device);
        }
    }
    let registration = rusb::HotplugBuilder::new().enumerate(false).register(
        &ctx,
        Box::new(Callback {
            backend: backend.clone(),
            tx,
        }),
    );
    let registration = match registration {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("libusb hot-plug registration failed: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("libusb events".into())
        .spawn(move || {
            let _keep = registration;
            loop {
                if let Err(e) = ctx.handle_events(Some(Duration::from_secs(1))) {
                    tracing::warn!("libusb event handling stopped: {e}");
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the libusb event thread: {e}");
    }
}
