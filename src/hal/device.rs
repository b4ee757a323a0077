//! The host side of the protocol: a [`KeyDevice`] over any [`Transport`].

use super::protocol::command::{decode_info, Request};
use super::protocol::report::{split, Reassembler};
use super::protocol::{Frame, Reply};
use super::{DeviceError, DeviceInfo, KeyDevice, PasswordChange, Transport};
use std::time::{Duration, Instant};

/// How long one command may take before the device is declared unresponsive.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct ProtocolDevice<T: Transport> {
    transport: T,
    tag: u16,
    timeout: Duration,
}

impl<T: Transport> ProtocolDevice<T> {
    pub fn new(transport: T) -> Self {
        ProtocolDevice {
            transport,
            tag: 0,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The transport underneath, for wrapping (tests record a device's conversation this way).
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Sends one request and waits for the reply with the same tag.
    fn transact(&mut self, req: &Request) -> Result<Vec<u8>, DeviceError> {
        self.tag = self.tag.wrapping_add(1);
        let bytes = req.to_frame(self.tag)?.encode()?;
        for r in split(&bytes)? {
            self.transport.write_report(&r)?;
        }
        let deadline = Instant::now() + self.timeout;
        let mut re = Reassembler::default();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DeviceError::Timeout);
            }
            let report = self.transport.read_report(left)?;
            let Some(frame) = re
                .push(&report)
                .map_err(|e| DeviceError::Protocol(e.to_string()))?
            else {
                continue;
            };
            let frame = Frame::decode(&frame).map_err(|e| DeviceError::Protocol(e.to_string()))?;
            if frame.tag != self.tag {
                // A late reply to an earlier, timed-out command: not ours.
                continue;
            }
            return Reply::from_frame(&frame)?.into_result();
        }
    }
}

fn utf8(bytes: Vec<u8>) -> Result<String, DeviceError> {
    String::from_utf8(bytes).map_err(|_| DeviceError::Protocol("memory value is not UTF-8".into()))
}

impl<T: Transport> KeyDevice for ProtocolDevice<T> {
    fn describe(&self) -> String {
        self.transport.describe()
    }

    fn info(&mut self) -> Result<DeviceInfo, DeviceError> {
        decode_info(&self.transact(&Request::GetInfo)?)
    }

    fn read_licence(&mut self) -> Result<Option<Vec<u8>>, DeviceError> {
        match self.transact(&Request::ReadLicence) {
            Ok(doc) => Ok(Some(doc)),
            Err(DeviceError::NoLicence) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn install_licence(&mut self, licence: &[u8]) -> Result<(), DeviceError> {
        self.transact(&Request::InstallLicence(licence.to_vec()))
            .map(drop)
    }

    fn replace_licence(&mut self, licence: &[u8]) -> Result<(), DeviceError> {
        self.transact(&Request::ReplaceLicence(licence.to_vec()))
            .map(drop)
    }

    fn read_memory(&mut self, password: &str) -> Result<String, DeviceError> {
        utf8(self.transact(&Request::ReadMemory {
            password: password.into(),
        })?)
    }

    fn write_memory(&mut self, password: &str, value: &str) -> Result<(), DeviceError> {
        self.transact(&Request::WriteMemory {
            password: password.into(),
            value: value.into(),
        })
        .map(drop)
    }

    fn set_passwords(&mut self, change: &PasswordChange) -> Result<(), DeviceError> {
        self.transact(&change.to_request()).map(drop)
    }

    fn reset_memory(&mut self) -> Result<(), DeviceError> {
        self.transact(&Request::ResetMemory).map(drop)
    }

    fn attest(&mut self, nonce: &[u8; 32]) -> Result<super::Attestation, DeviceError> {
        super::protocol::command::decode_attestation(
            &self.transact(&Request::Attest { nonce: *nonce })?,
        )
    }
}
