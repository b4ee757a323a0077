//! The `usb` transport: the HID interface's interrupt endpoints, through libusb (rusb, built
//! from source by its `vendored` feature). For systems where hidraw is missing or the
//! kernel's HID driver must be kept off the device.

use crate::hal::drivers::Driver;
use crate::hal::protocol::report::{Report, REPORT_SIZE};
use crate::hal::{Transport, TransportError};
use rusb::{Context, DeviceHandle, Direction, TransferType, UsbContext};
use std::time::Duration;

pub struct UsbTransport {
    handle: DeviceHandle<Context>,
    interface: u8,
    ep_in: u8,
    ep_out: u8,
    path: String,
}

fn usb_error(e: rusb::Error) -> TransportError {
    match e {
        rusb::Error::NoDevice | rusb::Error::NotFound => TransportError::Disconnected,
        rusb::Error::Timeout => TransportError::Timeout,
        rusb::Error::Access => TransportError::Io(
            "permission denied (is the udev rule installed and the service user in its group?)"
                .into(),
        ),
        other => TransportError::Io(other.to_string()),
    }
}

impl UsbTransport {
    /// Opens the device at `bus`/`address`, finds the driver's interface and its interrupt
    /// IN and OUT endpoints, and claims the interface.
    pub fn open(
        ctx: &Context,
        bus: u8,
        address: u8,
        driver: &Driver,
    ) -> Result<UsbTransport, TransportError> {
        let path = format!("/dev/bus/usb/{bus:03}/{address:03}");
        let device = ctx
            .devices()
            .map_err(usb_error)?
            .iter()
            .find(|d| d.bus_number() == bus && d.address() == address)
            .ok_or(TransportError::Disconnected)?;
        let config = device.active_config_descriptor().map_err(usb_error)?;
        let mut endpoints = None;
        for iface in config.interfaces() {
            for alt in iface.descriptors() {
                if alt.interface_number() != driver.interface {
                    continue;
                }
                let find = |dir: Direction| {
                    alt.endpoint_descriptors()
                        .find(|e| {
                            e.transfer_type() == TransferType::Interrupt && e.direction() == dir
                        })
                        .map(|e| e.address())
                };
                if let (Some(i), Some(o)) = (find(Direction::In), find(Direction::Out)) {
                    endpoints = Some((i, o));
                }
            }
        }
        let (ep_in, ep_out) = endpoints.ok_or_else(|| {
            TransportError::Io(format!(
                "{path}: interface {} has no interrupt IN and OUT endpoints",
                driver.interface
            ))
        })?;
        let handle = device.open().map_err(usb_error)?;
        if driver.quirks.detach_kernel_driver {
            handle
                .set_auto_detach_kernel_driver(true)
                .map_err(usb_error)?;
        }
        handle
            .claim_interface(driver.interface)
            .map_err(|e| match e {
                rusb::Error::Busy => TransportError::Io(format!(
                    "{path}: interface {} is held by another driver (set quirk detach_kernel_driver)",
                    driver.interface
                )),
                other => usb_error(other),
            })?;
        Ok(UsbTransport {
            handle,
            interface: driver.interface,
            ep_in,
            ep_out,
            path,
        })
    }
}

impl Drop for UsbTransport {
    fn drop(&mut self) {
        let _ = self.handle.release_interface(self.interface);
    }
}

/// How long a write may wait for the device to take a report.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

impl Transport for UsbTransport {
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError> {
        let n = self
            .handle
            .write_interrupt(self.ep_out, report, WRITE_TIMEOUT)
            .map_err(usb_error)?;
        if n != REPORT_SIZE {
            return Err(TransportError::Io(format!(
                "short write: {n} of {REPORT_SIZE} bytes"
            )));
        }
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError> {
        let mut report = [0u8; REPORT_SIZE];
        let n = self
            .handle
            .read_interrupt(
                self.ep_in,
                &mut report,
                timeout.max(Duration::from_millis(1)),
            )
            .map_err(usb_error)?;
        if n != REPORT_SIZE {
            return Err(TransportError::Io(format!(
                "short report: {n} of {REPORT_SIZE} bytes"
            )));
        }
        Ok(report)
    }

    fn describe(&self) -> String {
        format!("usb:{}", self.path)
    }
}
