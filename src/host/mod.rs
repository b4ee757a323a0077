//! The licence host: the table of keys (software keys from files, keys on USB devices),
//! sessions and connections with leases, and user memory. Knows licences and sessions,
//! never HTTP.

mod activation;
mod centre_client;
mod computer_id;
mod devices;
mod error;
mod hotplug;
mod keys;
mod leases;
mod memory;
pub mod sysinfo;

pub use activation::{ActivationInput, Updated};
pub use computer_id::computer_id;
pub use devices::DeviceRow;
pub use error::HostError;
pub use hotplug::{HotplugEvent, UsbWatchOptions};
pub use keys::{KeyKind, LicenceEntry};
pub use leases::{
    Connection, LeasePolicy, Opened, Session, SessionRequest, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_SESSIONS,
};

use crate::hal::sim::SimBus;
use crate::hal::DeviceRegistry;
use crate::keymem::LockPolicy;
use crate::licence::TrustStore;
use crate::time::Timestamp;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError, RwLock};

/// What a host is built from; the CLI fills it from config and flags.
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub data_dir: PathBuf,
    pub computer_id: String,
    pub trust: TrustStore,
    /// Session lease length and the caps on sessions and connections.
    pub session_lease: LeasePolicy,
    pub memory_policy: LockPolicy,
    /// Base URL of the licensing centre (`http://host:9100`), if any.
    pub centre_url: Option<String>,
    /// CA certificates (PEM) trusted for an `https://` centre, besides the system's.
    pub centre_ca_file: Option<PathBuf>,
    /// The centre's response key: its answers are accepted only signed by it. `None` trusts
    /// them on the licence signature alone (a warning at start-up says so).
    pub centre_response_key: Option<crate::crypto::PublicKey>,
}

pub struct Host {
    data_dir: PathBuf,
    computer_id: String,
    /// Shared with the blocking pool, where licences are verified.
    trust: std::sync::Arc<TrustStore>,
    lease_policy: LeasePolicy,
    memory_policy: LockPolicy,
    started: Timestamp,
    software: RwLock<keys::SoftwareTable>,
    /// Numbers reads of the software key files, so a slow read never replaces a newer one.
    software_scans: AtomicU64,
    usb: RwLock<Vec<keys::UsbKey>>,
    registry: DeviceRegistry,
    /// Shared with the blocking pool, where plugging a key in (key generation, fsync) runs.
    sim: std::sync::Arc<SimBus>,
    leases: Mutex<leases::Leases>,
    /// Serialises read-modify-write of software-key memory files, and holds the monotonic end
    /// of each software key's memory lock (the files store it in wall-clock time).
    software_memory: Mutex<HashMap<PathBuf, std::time::Instant>>,
    centre: Option<centre_client::CentreClient>,
    /// Serials of blank USB keys an activation is under way for (one at a time per key).
    activating: Mutex<std::collections::HashSet<u64>>,
    /// Real USB keys, once [`Host::start_usb`] has run.
    usb_watch: std::sync::OnceLock<hotplug::UsbWatch>,
}

#[cfg(test)]
impl HostOptions {
    /// A host with no trusted centre, no centre URL and tables of ten, for unit tests.
    pub(crate) fn for_tests(data_dir: &Path) -> HostOptions {
        HostOptions {
            data_dir: data_dir.into(),
            computer_id: "0".repeat(40),
            trust: TrustStore::default(),
            session_lease: LeasePolicy {
                session: std::time::Duration::from_secs(300),
                max_sessions: 10,
                max_connections: 10,
            },
            memory_policy: crate::keymem::LockPolicy::default(),
            centre_url: None,
            centre_ca_file: None,
            centre_response_key: None,
        }
    }
}

/// The simulator's image folder inside a data directory.
pub fn sim_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("sim")
}

/// The folder of trusted centre public keys inside a data directory.
pub fn trust_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("trust")
}

impl Host {
    /// Builds the host and loads the software keys in the data directory.
    pub fn new(opts: HostOptions) -> Result<Host, HostError> {
        crate::store::atomic::ensure_dir(&opts.data_dir)?;
        crate::store::atomic::sweep_temp_files(&opts.data_dir);
        crate::store::atomic::sweep_temp_files(&sim_dir(&opts.data_dir));
        let host = Host {
            sim: std::sync::Arc::new(SimBus::new(&sim_dir(&opts.data_dir), opts.memory_policy)),
            data_dir: opts.data_dir,
            computer_id: opts.computer_id,
            trust: std::sync::Arc::new(opts.trust),
            lease_policy: opts.session_lease,
            memory_policy: opts.memory_policy,
            started: crate::time::now(),
            software: RwLock::new(keys::SoftwareTable::default()),
            software_scans: AtomicU64::new(0),
            usb: RwLock::new(Vec::new()),
            registry: DeviceRegistry::default(),
            leases: Mutex::new(leases::Leases::default()),
            software_memory: Mutex::new(HashMap::new()),
            centre: opts
                .centre_url
                .as_deref()
                .map(|url| {
                    centre_client::CentreClient::new(
                        url,
                        opts.centre_ca_file.as_deref(),
                        opts.centre_response_key.clone(),
                    )
                })
                .transpose()?,
            activating: Mutex::new(std::collections::HashSet::new()),
            usb_watch: std::sync::OnceLock::new(),
        };
        host.reload_software_keys()?;
        Ok(host)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn computer_id(&self) -> &str {
        &self.computer_id
    }

    pub fn started(&self) -> Timestamp {
        self.started
    }

    pub fn sim(&self) -> &SimBus {
        &self.sim
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, leases::Leases> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs blocking work (device I/O, fsync) off the async executor.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, HostError> + Send + 'static,
) -> Result<R, HostError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HostError::Internal(format!("worker failed: {e}")))?
}
