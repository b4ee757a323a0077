//! The keybridge dongle protocol: messages framed with a CRC-32, carried in 64-byte reports.
//! Both the host ([`crate::hal::ProtocolDevice`]) and the simulated firmware
//! ([`crate::hal::sim`]) use this one implementation. `docs/protocol.md` is the reference.

pub mod command;
pub mod crc;
pub mod frame;
pub mod report;

pub use command::{Reply, Request, Status};
pub use frame::{Frame, FrameError};

/// Protocol version carried in every frame.
pub const PROTOCOL_VERSION: u8 = 1;
