//! The `hid` transport: the kernel's hidraw node, through hidapi (its pure-Rust Linux
//! backend, so no libudev is needed to build or run).

use crate::hal::protocol::report::{Report, REPORT_SIZE};
use crate::hal::{Transport, TransportError};
use hidapi::{HidApi, HidDevice, HidError};
use std::ffi::CString;
use std::time::Duration;

pub struct HidTransport {
    dev: HidDevice,
    path: String,
}

impl HidTransport {
    /// Opens the hidraw node at `path` (e.g. `/dev/hidraw0`).
    pub fn open(api: &HidApi, path: &str) -> Result<HidTransport, TransportError> {
        let c = CString::new(path).map_err(|_| TransportError::Io("bad device path".into()))?;
        let dev = api.open_path(&c).map_err(|e| open_error(path, e))?;
        Ok(HidTransport {
            dev,
            path: path.into(),
        })
    }
}

fn open_error(path: &str, e: HidError) -> TransportError {
    let text = e.to_string();
    if text.contains("Permission denied") {
        TransportError::Io(format!(
            "{path}: permission denied (is the udev rule installed and the service user in its group?)"
        ))
    } else if text.contains("No such file") || text.contains("No such device") {
        TransportError::Disconnected
    } else {
        TransportError::Io(format!("{path}: {text}"))
    }
}

/// hidapi reports a vanished device as an error string; name it.
fn io_error(e: HidError) -> TransportError {
    let text = e.to_string();
    if text.contains("disconnected")
        || text.contains("No such device")
        || text.contains("ENODEV")
        || text.contains("EIO")
    {
        TransportError::Disconnected
    } else {
        TransportError::Io(text)
    }
}

impl Transport for HidTransport {
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError> {
        // hidraw takes the report number first; our device has none, so 0.
        let mut buf = [0u8; REPORT_SIZE + 1];
        buf[1..].copy_from_slice(report);
        let n = self.dev.write(&buf).map_err(io_error)?;
        if n != buf.len() {
            return Err(TransportError::Io(format!(
                "short write: {n} of {} bytes",
                buf.len()
            )));
        }
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError> {
        let mut report = [0u8; REPORT_SIZE];
        let ms = i32::try_from(timeout.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        let n = self.dev.read_timeout(&mut report, ms).map_err(io_error)?;
        match n {
            0 => Err(TransportError::Timeout),
            REPORT_SIZE => Ok(report),
            short => Err(TransportError::Io(format!(
                "short report: {short} of {REPORT_SIZE} bytes"
            ))),
        }
    }

    fn describe(&self) -> String {
        format!("hid:{}", self.path)
    }
}
