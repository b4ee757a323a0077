//! The licensing centre: products, activation codes, and the rules that turn an activation
//! into a signed licence, update it, and restore it onto a new binding. Storage is SQL through
//! `sqlx`'s `Any` driver — an SQLite file by default, PostgreSQL for a `postgres://` URL — with
//! one set of migrations (`migrations/`) for both.

pub mod accounts;
pub mod code;
mod db;
pub use db::{ensure_private_dir, sqlite_url};
pub mod http;
// Issue 10: licensed releases and the OpenAPI description.
pub mod openapi;
pub mod releases;
mod rules;
pub mod wire;

pub use code::{ActivationCode, CodeError};
pub use rules::{
    ActivationRequest, CodeSpec, CodeState, DeviceChallenge, LicenceProof, Product, RestoreRequest,
};

use crate::crypto::LicenceKey;
use crate::licence::LicenceError;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CentreError {
    #[error("{0}")]
    Code(#[from] CodeError),
    /// Never names the code: error texts are logged and answered.
    #[error("unknown activation code")]
    UnknownCode,
    #[error("unknown product series {0}")]
    UnknownProduct(String),
    #[error("product series {0} already exists")]
    ProductExists(String),
    /// The one answer to activating an activated code from anywhere but the binding, ITN and
    /// IEC it was activated for: it names neither the binding nor the code, so holding a code
    /// teaches nothing about whose it is.
    #[error("this activation code is already activated; it activates only once (asking again with the same ComputerID or USB key, ITN and IEC returns the same licence)")]
    AlreadyActivated,
    #[error("this activation code is reserved for another ITN")]
    ItnMismatch,
    /// The one answer to every unproven request for a licence — unknown licence, wrong code,
    /// wrong ITN or IEC alike — so nobody learns which licences exist by asking.
    #[error("no licence issued by this centre matches this series, KeyNo and proof (activation code; for a restore also the ITN and IEC it was activated for)")]
    NotProven,
    #[error("no licence {key_id}.{key_no} was issued by this centre")]
    UnknownLicence { key_id: String, key_no: u64 },
    #[error("licence {key_id}.{key_no} was activated without an ITN, so it cannot be restored here; the vendor can move it")]
    RestoreNeedsVendor { key_id: String, key_no: u64 },
    #[error(
        "licence {key_id}.{key_no} has been restored {limit} time(s), its limit; ask the vendor"
    )]
    RestoreLimit {
        key_id: String,
        key_no: u64,
        limit: u64,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("USB key refused: {0}")]
    Device(String),
    #[error("attestation challenge refused: {0}")]
    Challenge(String),
    #[error("too many attestation challenges are outstanding; try again in a few minutes")]
    ChallengesFull,
    /// Asked for a challenge with a code the centre never issued or one already activated:
    /// one answer for both, counted as a failed proof.
    #[error("no challenge for this activation code: it is unknown or already activated")]
    NoChallenge,
    /// The code already has `max_challenges_per_code` challenges outstanding.
    #[error("too many attestation challenges are outstanding for this activation code; try again in {retry_after} s")]
    ChallengesForCode { retry_after: u64 },
    /// The one answer to a release KEY that is not an activated, unrevoked activation code of
    /// this centre: it never says which of those it is.
    #[error("KEY is not valid for releases: it must be the activation code of a licence this centre issued and activated")]
    UnknownKey,
    #[error("{0}")]
    Licence(#[from] LicenceError),
    /// The vendor's account administration (accounts, servants, tariffs, definitions).
    #[error("{0}")]
    Account(#[from] accounts::AccountError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl CentreError {
    /// Whether this refusal means the asker failed to prove a right (a code, an ITN, being
    /// the binding a code was activated for): such failures are throttled, so none of them
    /// can be guessed by trying.
    pub fn is_failed_proof(&self) -> bool {
        matches!(
            self,
            CentreError::NotProven
                | CentreError::UnknownCode
                | CentreError::ItnMismatch
                | CentreError::AlreadyActivated
                | CentreError::NoChallenge
                | CentreError::UnknownKey
        )
    }
}

/// How long an attestation challenge stays valid.
pub const CHALLENGE_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// Most attestation challenges outstanding at once.
pub const MAX_CHALLENGES: u64 = 10_000;
/// Most attestation challenges outstanding for one activation code: an activation needs one,
/// a retry or two may need more.
pub const MAX_CHALLENGES_PER_CODE: u64 = 3;

/// A centre: its database and its licence-issuing key.
pub struct Centre {
    db: sqlx::AnyPool,
    licence_key: Arc<LicenceKey>,
    /// Public keys (`*.pem`) of the USB key manufacturers whose devices this centre binds
    /// licences to; read at each activation so a vendor can add one without a restart.
    manufacturers_dir: Option<std::path::PathBuf>,
    challenge_ttl: std::time::Duration,
    max_challenges: u64,
    max_challenges_per_code: u64,
    /// Licensed releases, once [`Centre::enable_releases`] has run.
    releases: Option<Arc<releases::Releases>>,
}

impl Centre {
    /// Opens (creating if needed) the database at `url` — `sqlite:///path/centre.db` or
    /// `postgres://…` — and brings its schema up to date.
    pub async fn open(url: &str, licence_key: LicenceKey) -> Result<Centre, CentreError> {
        let db = db::connect(url).await?;
        Ok(Centre {
            db,
            licence_key: Arc::new(licence_key),
            manufacturers_dir: None,
            challenge_ttl: CHALLENGE_TTL,
            max_challenges: MAX_CHALLENGES,
            max_challenges_per_code: MAX_CHALLENGES_PER_CODE,
            releases: None,
        })
    }

    /// How long a challenge stays valid and how many may be outstanding at once.
    pub fn with_challenge_limits(mut self, ttl: std::time::Duration, max: u64) -> Centre {
        self.challenge_ttl = ttl;
        self.max_challenges = max.max(1);
        self
    }

    /// How many challenges may be outstanding for one activation code (at least 1).
    pub fn with_challenges_per_code(mut self, max: u64) -> Centre {
        self.max_challenges_per_code = max.max(1);
        self
    }

    /// Trusts the USB key manufacturers whose public keys are in `dir`.
    pub fn with_manufacturers(mut self, dir: std::path::PathBuf) -> Centre {
        self.manufacturers_dir = Some(dir);
        self
    }

    /// Reads the manufacturers' keys (file I/O: call on the blocking pool).
    fn manufacturers(dir: Option<&std::path::Path>) -> Vec<crate::crypto::PublicKey> {
        let mut trust = crate::licence::TrustStore::default();
        if let Some(d) = dir {
            if let Err(e) = trust.add_dir(d) {
                tracing::warn!("manufacturer keys: {e}");
            }
        }
        trust.keys()
    }

    /// The key licences are signed with; hosts trust its public half.
    pub fn licence_key(&self) -> &Arc<LicenceKey> {
        &self.licence_key
    }
}
