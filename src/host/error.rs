use crate::hal::DeviceError;
use crate::keymem::MemoryError;
use crate::licence::LicenceError;
use crate::store::StoreError;
use thiserror::Error;

/// Everything the host layer can refuse or fail with. The API maps these to HTTP in one
/// place (`api::error`).
#[derive(Debug, Error)]
pub enum HostError {
    #[error("no key with KeyNo {0} on this host")]
    KeyNotFound(u64),
    #[error("the USB key holding KeyNo {0} is not attached")]
    KeyNotAttached(u64),
    #[error("no session with ID {0:?}")]
    SessionNotFound(String),
    #[error("no connection with ID {0:?}")]
    ConnectionNotFound(String),
    #[error("no usable key matches the request: {0}")]
    NoMatchingKey(String),
    #[error("every licence of the matching keys is in use: {0}")]
    NoFreeLicence(String),
    /// The session's user already holds the sessions their account allows them.
    #[error("user {user:?} already holds {limit} session(s), the most account {account} allows them (account/users/set_session_restriction); a session must end first")]
    SessionRestricted {
        user: String,
        account: u64,
        limit: u32,
    },
    #[error("the host holds its maximum of {0} sessions ([leases] max_sessions); try again when one ends")]
    TooManySessions(usize),
    #[error("the host holds its maximum of {0} connections, each with a live session ([leases] max_connections); try again when one ends")]
    TooManyConnections(usize),
    #[error("{0}")]
    Memory(#[from] MemoryError),
    #[error("USB key {serial}: {error}")]
    Device { serial: u64, error: DeviceError },
    #[error("{0}")]
    Licence(#[from] LicenceError),
    #[error("USB key {0} is not attached")]
    DeviceNotAttached(u64),
    #[error("USB key {0} is not blank: it already holds a licence")]
    DeviceNotBlank(u64),
    /// Another activation onto this blank is under way: both would bind a code at the
    /// centre, and the one installed second would find the key no longer blank.
    #[error("an activation onto USB key {0} is already in progress; wait for it to finish")]
    ActivationInProgress(u64),
    #[error("{0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotImplemented(&'static str),
    #[error("no licensing centre is configured ([centre] url)")]
    CentreNotConfigured,
    #[error("the licensing centre at {url} cannot be reached: {message}")]
    CentreUnreachable { url: String, message: String },
    #[error("the answer from the licensing centre at {url} is not signed by its response key ([centre] response_key): {message}; refused")]
    CentreUnverified { url: String, message: String },
    #[error("the licensing centre refused: {message}")]
    CentreRefused {
        status: u16,
        reason: String,
        message: String,
    },
    /// The centre throttled this host or is overloaded (its 429 or 503): not a refusal of
    /// the request's proof, so it must not read as one.
    #[error("the licensing centre is busy or throttling this host: {message}")]
    CentreBusy { retry_after: u64, message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl HostError {
    /// Whether this is the centre refusing an activation as unproven (an unknown code, an ITN
    /// that does not match, a code activated for another binding): the refusals the centre
    /// counts against this host's address, which the API therefore throttles per client.
    pub fn is_unproven_activation(&self) -> bool {
        matches!(self, HostError::CentreRefused { reason, .. }
            if matches!(reason.as_str(), "unknown_code" | "unknown_licence" | "itn_mismatch" | "already_activated"))
    }

    /// Device errors that are really memory-password answers become memory errors, so a
    /// wrong password reads the same on a USB key as on a software key.
    pub fn device(serial: u64, error: DeviceError) -> HostError {
        match error {
            DeviceError::Memory(m) => HostError::Memory(m),
            DeviceError::TooLarge { max } => HostError::Memory(MemoryError::TooLarge {
                max: max as usize,
                got: 0,
            }),
            DeviceError::NotBlank => HostError::DeviceNotBlank(serial),
            error => HostError::Device { serial, error },
        }
    }
}
