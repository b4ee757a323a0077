//! Hardware-abstraction layer for USB keys.
//!
//! One trait, [`KeyDevice`], is all the host knows of a key. It is implemented once, by
//! [`ProtocolDevice`], which speaks the project's dongle protocol ([`protocol`], documented
//! in `docs/protocol.md`) over any [`Transport`] that moves 64-byte reports. The simulated
//! key ([`sim`]) is the device side of that same protocol, so tests drive the real codec.
//! The hal knows devices, never licence rules: a licence is opaque bytes here.

pub mod attest;
pub mod device;
pub mod drivers;
pub mod protocol;
pub mod registry;
pub mod sim;
pub mod transport;
pub mod udev_rules;
pub mod usb;

pub use device::ProtocolDevice;
pub use registry::{DeviceRegistry, DeviceSlot};
pub use transport::{Transport, TransportError};

use crate::keymem::MemoryError;
use thiserror::Error;

/// What a key says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub serial: u64,
    /// Firmware version, e.g. "1.0".
    pub firmware: String,
    /// No software key installed yet.
    pub blank: bool,
    pub memory_capacity: u16,
    pub licence_capacity: u16,
}

/// A device's proof that it is genuine (its key is certified by a manufacturer) and whether
/// it is blank, bound to a nonce. See [`crate::attest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    pub serial: u64,
    pub blank: bool,
    /// The device's public key, DER SubjectPublicKeyInfo.
    pub device_key: Vec<u8>,
    /// The manufacturer's signature over the serial and the device key.
    pub certificate: Vec<u8>,
    /// The device's signature over the nonce, serial and blank state.
    pub signature: Vec<u8>,
}

/// The current and new memory passwords, as one request carries them.
#[derive(Debug, Clone, Default)]
pub struct PasswordChange {
    pub read: String,
    pub write: String,
    pub new_read: String,
    pub new_write: String,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("the USB key was unplugged")]
    Disconnected,
    #[error("the USB key did not answer in time")]
    Timeout,
    #[error("the USB key is busy: too many commands are waiting for it")]
    Busy,
    #[error("transport error: {0}")]
    Transport(String),
    #[error("the USB key sent a malformed answer: {0}")]
    Protocol(String),
    #[error("{0}")]
    Memory(MemoryError),
    #[error("the USB key already holds a licence (it is not blank)")]
    NotBlank,
    #[error("the USB key holds no licence (it is blank)")]
    NoLicence,
    #[error("the data is too large for the USB key (at most {max} bytes)")]
    TooLarge { max: u32 },
    #[error("the USB key could not store the data")]
    Storage,
    #[error("the USB key refused the command: {0}")]
    Refused(String),
    /// The host would not send the command: a field does not fit the protocol.
    #[error("the command cannot be sent to the USB key: {0}")]
    Encode(#[from] protocol::FrameError),
}

impl From<TransportError> for DeviceError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Disconnected => DeviceError::Disconnected,
            TransportError::Timeout => DeviceError::Timeout,
            TransportError::Io(m) => DeviceError::Transport(m),
        }
    }
}

/// A USB key as the host uses it. Calls block; callers serialise them per device (see
/// [`DeviceSlot`]) and run them off the async executor.
pub trait KeyDevice: Send {
    /// Where the device is, for people: transport and path.
    fn describe(&self) -> String;
    fn info(&mut self) -> Result<DeviceInfo, DeviceError>;
    /// The installed licence document, or `None` on a blank.
    fn read_licence(&mut self) -> Result<Option<Vec<u8>>, DeviceError>;
    /// Installs a licence onto a blank. Fails with [`DeviceError::NotBlank`] otherwise.
    fn install_licence(&mut self, licence: &[u8]) -> Result<(), DeviceError>;
    /// Replaces the installed licence (an updated or restored version of it).
    fn replace_licence(&mut self, licence: &[u8]) -> Result<(), DeviceError>;
    fn read_memory(&mut self, password: &str) -> Result<String, DeviceError>;
    fn write_memory(&mut self, password: &str, value: &str) -> Result<(), DeviceError>;
    fn set_passwords(&mut self, change: &PasswordChange) -> Result<(), DeviceError>;
    fn reset_memory(&mut self) -> Result<(), DeviceError>;
    /// Proves the device genuine, signing `nonce`.
    fn attest(&mut self, nonce: &[u8; 32]) -> Result<Attestation, DeviceError>;
}
