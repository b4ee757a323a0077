//! The byte transport under the protocol: fixed-size reports in, reports out.

use super::protocol::report::Report;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TransportError {
    #[error("device disconnected")]
    Disconnected,
    #[error("timed out waiting for the device")]
    Timeout,
    #[error("{0}")]
    Io(String),
}

/// Moves 64-byte reports to and from one device. Implemented by the simulator here and by
/// the hidapi and rusb transports.
pub trait Transport: Send {
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError>;
    fn read_report(&mut self, timeout: Duration) -> Result<Report, TransportError>;
    /// Transport name and device path, for logs and `keybridge devices`.
    fn describe(&self) -> String;
}
