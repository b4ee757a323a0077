//! Simulated USB keys: the device side of the protocol (firmware logic) behind an in-process
//! transport. Each key persists to an image file, `{serial}.img` in the simulator directory,
//! written atomically before the firmware acknowledges a change — as real firmware commits to
//! flash before answering — so a crash or an unplug mid-command leaves the old or new state.

mod bus;
mod firmware;

pub use bus::{SimBus, SimError, SimFault, SimTransport};
pub use firmware::{Firmware, FIRMWARE_VERSION, LICENCE_CAPACITY};
