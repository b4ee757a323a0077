//! keybridge: an open licence host that speaks the 1C СЛК 3.0 external HTTP API.
//!
//! The crate is laid out by domain, top to bottom in the order requests flow
//! (see `docs/architecture.md`):
//!
//! * [`api`] — the HTTP surface: routing, authentication, parameters, error mapping, signing.
//! * [`host`] — licences, sessions and connections with leases, key memory dispatch.
//! * [`store`] — files in the data directory, always written atomically.
//! * [`hal`] — USB keys: the `KeyDevice` trait, the wire protocol, transports, the simulator.
//! * [`licence`] — the signed licence document shared by the host and the centre.
//! * [`keymem`] — user-memory semantics (passwords, lockout) shared by the software-key store
//!   and the simulated firmware.
//! * [`crypto`] — server signing key, licence signatures, password hashing.
//! * [`web`] — what both HTTP services share: the login gate and response signing.
//! * [`console`] — the web console at `/`: server-rendered pages over the host library.
//! * [`control`] — the local Unix socket through which CLI commands reach a running host.

pub mod api;
pub mod centre;
pub mod cli;
pub mod config;
pub mod console;
pub mod control;
pub mod crypto;
pub mod hal;
pub mod host;
pub mod keymem;
pub mod licence;
pub mod metrics;
pub mod store;
pub mod time;
pub mod web;

/// The version reported in `GET /api`, `serverinfo` and `Licence-ServerVersion`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
