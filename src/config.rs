//! Host configuration: `/etc/keybridge/keybridge.toml` (or `--config`), then `KEYBRIDGE_*`
//! environment variables and flags on top. `docs/configuration.md` lists every key.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/keybridge/keybridge.toml";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/keybridge";
/// Data directory of `serve --demo` when none is given: a folder beside the user.
pub const DEMO_DATA_DIR: &str = "./data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9099";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port to serve the API on.
    pub listen: Option<SocketAddr>,
    /// Data directory: server key, software keys, simulated key images.
    pub data: Option<PathBuf>,
    /// Fixed ComputerID, for containers whose machine identifiers change on restart.
    pub computer_id: Option<String>,
    pub api: ApiConfig,
    pub leases: LeaseConfig,
    pub memory: MemoryConfig,
    pub licences: LicenceConfig,
    pub centre: CentreConfig,
    pub usb: UsbConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsbConfig {
    /// `false` leaves real USB keys alone (simulated keys still work).
    pub enabled: bool,
    /// Extra driver files (`*.toml`), beside the built-in ones; a file named like a built-in
    /// driver replaces it.
    pub drivers_dir: Option<PathBuf>,
    /// How often to look for keys that came or went without an event (hosts without udev or
    /// libusb hot-plug), and to retry keys that failed; 0 turns the rescan off.
    pub rescan_seconds: f64,
    /// Listen for libusb's hot-plug events where the platform has them.
    pub libusb_hotplug: bool,
}

impl Default for UsbConfig {
    fn default() -> Self {
        UsbConfig {
            enabled: true,
            drivers_dir: None,
            rescan_seconds: 2.0,
            libusb_hotplug: true,
        }
    }
}

impl UsbConfig {
    pub fn rescan(&self) -> Option<Duration> {
        (self.rescan_seconds > 0.0)
            .then(|| Duration::from_secs_f64(self.rescan_seconds.clamp(0.05, 86_400.0)))
    }

    pub fn drivers(&self) -> Result<crate::hal::drivers::DriverSet, String> {
        crate::hal::drivers::DriverSet::load(self.drivers_dir.as_deref()).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CentreConfig {
    /// The licensing centre activations and updates go to, e.g. `http://centre.example:9100`.
    pub url: Option<String>,
    /// The centre's response key (PEM, from `keybridge centre key-public --response`): the
    /// host accepts only answers signed by it. Unset, answers are trusted on the licence
    /// signature alone (a warning says so).
    pub response_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// `false` answers every API request with 503, as the spec's "API disabled in settings".
    pub enabled: bool,
    pub user: String,
    /// `pbkdf2-sha256$…` from `keybridge auth hash`; absent means the default password `admin`.
    pub password_hash: Option<String>,
    /// Failed logins from one address within `login_window_seconds` before it is refused.
    pub max_failed_logins: u32,
    pub login_window_seconds: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            user: "admin".into(),
            password_hash: None,
            max_failed_logins: 10,
            login_window_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// Lifetime of an external session; a repeated POST with its ClientSessionID renews it.
    pub session_seconds: f64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            session_seconds: 300.0,
        }
    }
}

impl LeaseConfig {
    pub fn session(&self) -> Duration {
        Duration::from_secs_f64(self.session_seconds.clamp(0.05, 86_400.0 * 365.0))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Wrong memory passwords in a row before a key's memory locks.
    pub max_failures: u32,
    /// How long it stays locked.
    pub lock_seconds: f64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_failures: 5,
            lock_seconds: 300.0,
        }
    }
}

impl MemoryConfig {
    pub fn policy(&self) -> crate::keymem::LockPolicy {
        crate::keymem::LockPolicy {
            max_failures: self.max_failures.max(1),
            lock_for: Duration::from_secs_f64(self.lock_seconds.clamp(0.0, 86_400.0 * 30.0)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LicenceConfig {
    /// Centre public keys (PEM) whose licences this host accepts, in addition to the
    /// `trust/` folder of the data directory.
    pub trusted_centre_keys: Vec<PathBuf>,
}

impl Config {
    /// Reads `path`; with `required` false a missing file gives the defaults.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError::Read {
            path: path.into(),
            message,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| err(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(e) => Err(err(e.to_string())),
        }
    }
}
