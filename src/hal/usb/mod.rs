//! Real USB keys: finding them (by the VID:PID lists in `drivers/`) and opening them over
//! the transport their driver names. Both transports carry the same 64-byte reports, so
//! the protocol above them ([`crate::hal::ProtocolDevice`]) is the simulator's.

pub mod hid;
pub mod libusb;

use super::drivers::{Driver, DriverSet, TransportKind, UsbId};
use super::{DeviceError, KeyDevice, ProtocolDevice, Transport, TransportError};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A device on the bus that a driver claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Registry id: transport and device node, e.g. `hid:/dev/hidraw0`.
    pub id: String,
    pub driver: Driver,
    pub usb_id: UsbId,
    pub place: Place,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Hidraw { path: String },
    Usb { bus: u8, address: u8 },
}

impl Place {
    /// The device node, as udev names it.
    pub fn devnode(&self) -> String {
        match self {
            Place::Hidraw { path } => path.clone(),
            Place::Usb { bus, address } => format!("/dev/bus/usb/{bus:03}/{address:03}"),
        }
    }
}

/// The registry id of the device at a device node, as the hot-plug helper reports it.
pub fn device_id(devnode: &str) -> String {
    let kind = if devnode.starts_with("/dev/bus/usb/") {
        TransportKind::Usb
    } else {
        TransportKind::Hid
    };
    format!("{kind}:{devnode}")
}

/// The USB side of the host: the drivers, and the hidapi and libusb contexts, each made
/// only when some driver uses it.
pub struct UsbBackend {
    drivers: DriverSet,
    hid: Mutex<Option<hidapi::HidApi>>,
    /// A second hidapi context for opening devices, so an open that hangs on a broken device
    /// never holds up the scans that notice other keys coming and going.
    hid_open: Mutex<Option<hidapi::HidApi>>,
    usb: Option<rusb::Context>,
}

/// One scan's result: what was found, and what could not be looked at (each transport
/// fails on its own; the other's devices are still found).
#[derive(Debug, Default)]
pub struct Scan {
    pub found: Vec<Found>,
    pub errors: Vec<String>,
}

impl UsbBackend {
    pub fn new(drivers: DriverSet) -> UsbBackend {
        let wants = |k| drivers.iter().any(|d| d.transport == k);
        let usb = if wants(TransportKind::Usb) {
            match rusb::Context::new() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(
                        "libusb is unavailable, usb-transport keys will not be found: {e}"
                    );
                    None
                }
            }
        } else {
            None
        };
        UsbBackend {
            drivers,
            hid: Mutex::new(None),
            hid_open: Mutex::new(None),
            usb,
        }
    }

    pub fn drivers(&self) -> &DriverSet {
        &self.drivers
    }

    /// The libusb context, for hot-plug callbacks.
    pub fn usb_context(&self) -> Option<&rusb::Context> {
        self.usb.as_ref()
    }

    /// Every device some driver claims, right now. Reads sysfs; does not open devices.
    pub fn scan(&self) -> Scan {
        let mut scan = Scan::default();
        if self
            .drivers
            .iter()
            .any(|d| d.transport == TransportKind::Hid)
        {
            match self.scan_hid() {
                Ok(f) => scan.found.extend(f),
                Err(e) => scan.errors.push(format!("hidraw: {e}")),
            }
        }
        if let Some(ctx) = &self.usb {
            match self.scan_usb(ctx) {
                Ok(f) => scan.found.extend(f),
                Err(e) => scan.errors.push(format!("libusb: {e}")),
            }
        }
        scan.found.sort_by(|a, b| a.id.cmp(&b.id));
        scan
    }

    fn scan_hid(&self) -> Result<Vec<Found>, String> {
        // No hidraw class (module not loaded, a container): nothing to find, not an error.
        if !std::path::Path::new("/sys/class/hidraw").exists() {
            return Ok(Vec::new());
        }
        let mut guard = self.hid.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(hidapi::HidApi::new().map_err(|e| e.to_string())?);
        }
        let api = guard.as_mut().ok_or("hidapi is unavailable")?;
        api.refresh_devices().map_err(|e| e.to_string())?;
        let mut out: Vec<Found> = Vec::new();
        for info in api.device_list() {
            let usb_id = UsbId {
                vid: info.vendor_id(),
                pid: info.product_id(),
            };
            let Some(driver) = self.drivers.find(TransportKind::Hid, usb_id) else {
                continue;
            };
            let Ok(path) = info.path().to_str() else {
                continue;
            };
            let place = Place::Hidraw { path: path.into() };
            let id = device_id(&place.devnode());
            // hidapi lists a node once per top-level usage; one device is one key.
            if out.iter().any(|f| f.id == id) {
                continue;
            }
            out.push(Found {
                id,
                driver: driver.clone(),
                usb_id,
                place,
            });
        }
        Ok(out)
    }

    fn scan_usb(&self, ctx: &rusb::Context) -> Result<Vec<Found>, String> {
        use rusb::UsbContext;
        let mut out = Vec::new();
        for dev in ctx.devices().map_err(|e| e.to_string())?.iter() {
            let Ok(desc) = dev.device_descriptor() else {
                continue;
            };
            let usb_id = UsbId {
                vid: desc.vendor_id(),
                pid: desc.product_id(),
            };
            let Some(driver) = self.drivers.find(TransportKind::Usb, usb_id) else {
                continue;
            };
            let place = Place::Usb {
                bus: dev.bus_number(),
                address: dev.address(),
            };
            out.push(Found {
                id: device_id(&place.devnode()),
                driver: driver.clone(),
                usb_id,
                place,
            });
        }
        Ok(out)
    }

    /// Opens a found device over its driver's transport. Blocking.
    pub fn open(&self, found: &Found) -> Result<Box<dyn KeyDevice>, DeviceError> {
        let timeout = found
            .driver
            .quirks
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(super::device::DEFAULT_TIMEOUT);
        if found.driver.quirks.settle_ms > 0 {
            std::thread::sleep(Duration::from_millis(found.driver.quirks.settle_ms));
        }
        fn boxed<T: Transport + 'static>(t: T, timeout: Duration) -> Box<dyn KeyDevice> {
            Box::new(ProtocolDevice::new(t).with_timeout(timeout))
        }
        match &found.place {
            Place::Hidraw { path } => {
                let mut guard = self.hid_open.lock().unwrap_or_else(PoisonError::into_inner);
                if guard.is_none() {
                    *guard = Some(
                        hidapi::HidApi::new().map_err(|e| DeviceError::Transport(e.to_string()))?,
                    );
                }
                let api = guard
                    .as_ref()
                    .ok_or_else(|| DeviceError::Transport("hidapi is unavailable".into()))?;
                Ok(boxed(hid::HidTransport::open(api, path)?, timeout))
            }
            Place::Usb { bus, address } => {
                let ctx = self
                    .usb
                    .as_ref()
                    .ok_or_else(|| DeviceError::Transport("libusb is unavailable".into()))?;
                Ok(boxed(
                    libusb::UsbTransport::open(ctx, *bus, *address, &found.driver)?,
                    timeout,
                ))
            }
        }
    }
}

/// Stands in the registry for a device that could not be opened, so it is listed with the
/// reason (permissions, a claimed interface) and retried like any failing device.
pub struct Unopened {
    pub describe: String,
    pub error: TransportError,
}

impl KeyDevice for Unopened {
    fn describe(&self) -> String {
        self.describe.clone()
    }
    fn info(&mut self) -> Result<super::DeviceInfo, DeviceError> {
        Err(self.error.clone().into())
    }
    fn read_licence(&mut self) -> Result<Option<Vec<u8>>, DeviceError> {
        Err(self.error.clone().into())
    }
    fn install_licence(&mut self, _: &[u8]) -> Result<(), DeviceError> {
        Err(self.error.clone().into())
    }
    fn replace_licence(&mut self, _: &[u8]) -> Result<(), DeviceError> {
        Err(self.error.clone().into())
    }
    fn read_memory(&mut self, _: &str) -> Result<String, DeviceError> {
        Err(self.error.clone().into())
    }
    fn write_memory(&mut self, _: &str, _: &str) -> Result<(), DeviceError> {
        Err(self.error.clone().into())
    }
    fn set_passwords(&mut self, _: &super::PasswordChange) -> Result<(), DeviceError> {
        Err(self.error.clone().into())
    }
    fn reset_memory(&mut self) -> Result<(), DeviceError> {
        Err(self.error.clone().into())
    }
    fn attest(&mut self, _: &[u8; 32]) -> Result<super::Attestation, DeviceError> {
        Err(self.error.clone().into())
    }
}
