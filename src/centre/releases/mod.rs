//! Licensed releases (`docs/releases.md`): the vendor publishes versions of a distribution
//! with their files; a customer's installation asks, with its licence's activation code as
//! `KEY`, which newer releases its licence covers, and downloads them over short-lived links
//! bound to that key. Metadata lives in the centre's database, files once each in a
//! content-addressed store ([`store`]) that several centres may share.

mod db;
pub mod http;
mod link;
pub mod store;
pub mod version;

pub use db::{AdminRelease, ReleaseFile};
pub use http::{routes, upload_routes};
pub use store::{BlobStore, StagedFile};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use version::Version;

/// What can go wrong with a release; mapped to HTTP in [`http`] (one place).
#[derive(Debug, Error)]
pub enum ReleaseError {
    #[error("{0}")]
    Invalid(String),
    #[error("release {type_} {version} already exists")]
    Exists { type_: String, version: String },
    #[error("no release {0}")]
    Unknown(u64),
    #[error("unknown product series {0}")]
    UnknownProduct(String),
    /// One answer for a forged, altered, expired or withdrawn link: it never says which.
    #[error("this download link is not valid (expired, altered, or for a withdrawn release); ask for the release list again")]
    BadLink,
    #[error("releases are not enabled on this centre")]
    Disabled,
    #[error("the requested range is not satisfiable (the file has {size} bytes)")]
    Range { size: u64 },
    #[error("file store: {0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// How a centre runs its releases.
#[derive(Debug, Clone)]
pub struct ReleaseSettings {
    /// The content-addressed file store (shared by every centre behind one load balancer).
    pub dir: PathBuf,
    /// How long a download link stays valid.
    pub link_ttl: Duration,
    /// Largest upload (the whole multipart body), in bytes.
    pub max_upload: u64,
    /// Time an upload may take, from its head to the answer.
    pub upload_timeout: Duration,
    /// The centre's URL as customers reach it (`https://centre.example`), for absolute
    /// download links; without it, links are built from the request's `Host` and `scheme`.
    pub public_url: Option<String>,
    /// `http` or `https`, for links built from `Host`.
    pub scheme: &'static str,
}

impl ReleaseSettings {
    pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(3600);
    pub const DEFAULT_MAX_UPLOAD: u64 = 8 * 1024 * 1024 * 1024;
    pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

    pub fn new(dir: PathBuf) -> ReleaseSettings {
        ReleaseSettings {
            dir,
            link_ttl: Self::DEFAULT_LINK_TTL,
            max_upload: Self::DEFAULT_MAX_UPLOAD,
            upload_timeout: Self::DEFAULT_UPLOAD_TIMEOUT,
            public_url: None,
            scheme: "http",
        }
    }
}

/// A centre's release subsystem: its settings, file store and link key.
pub struct Releases {
    pub settings: ReleaseSettings,
    pub store: BlobStore,
    link: link::LinkKey,
}

impl Releases {
    pub fn link_key(&self) -> &link::LinkKey {
        &self.link
    }
}

/// Most files one release may have.
pub const MAX_FILES: usize = 64;

/// A release as the vendor publishes it (`centre release-add`, or the `release` part of an
/// upload). Text is UTF-8; versions are dot-separated numbers (`4.0.4.11`).
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseMeta {
    /// The distribution (`TYPE`), e.g. PT40_UT_CRM3: 1-64 of A-Z a-z 0-9 _ . -
    #[serde(rename = "type")]
    #[arg(long = "type", value_name = "TYPE")]
    #[schema(example = "PT40_UT_CRM3")]
    pub type_: String,
    /// The release's version, e.g. 4.0.4.11.
    #[arg(long)]
    #[schema(example = "4.0.4.11")]
    pub version: String,
    /// Technical name of the module.
    #[arg(long)]
    pub name: String,
    #[serde(default)]
    #[arg(long, default_value = "")]
    pub description: String,
    #[serde(default)]
    #[arg(long, default_value = "")]
    pub developer: String,
    #[serde(default)]
    #[arg(long, default_value = "")]
    pub changelog: String,
    /// An http(s) URL, or empty.
    #[serde(default)]
    #[arg(long, default_value = "")]
    pub promo_link: String,
    /// The product series (KeyID) whose licences this release is for.
    #[arg(long)]
    #[schema(example = "672B")]
    pub lic_product_id: String,
    /// A functionality flag (0-31) the licence must have, if any.
    #[serde(default)]
    #[arg(long)]
    pub lic_feature_id: Option<u32>,
    /// The configuration (`CONF`) it is for, e.g. КомплекснаяАвтоматизация_CRM.
    #[arg(long)]
    pub conf: String,
    /// Configuration versions it was tested with.
    #[serde(default)]
    #[arg(long = "tested", value_delimiter = ',', value_name = "VERSION")]
    pub tested_conf_versions: Vec<String>,
    /// The lowest configuration version it works with (empty: any).
    #[serde(default)]
    #[arg(long, default_value = "")]
    pub min_conf_version: String,
}

fn text(field: &str, v: &str, min: usize, max: usize) -> Result<(), ReleaseError> {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(ReleaseError::Invalid(format!(
            "{field} must be {min}-{max} characters"
        )));
    }
    Ok(())
}

/// Text shown on one line (names, TYPE, CONF): no control characters.
fn line(field: &str, v: &str, min: usize, max: usize) -> Result<(), ReleaseError> {
    text(field, v, min, max)?;
    if v.chars().any(char::is_control) {
        return Err(ReleaseError::Invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// Whether `t` is a distribution identifier (`TYPE`): 1-64 of A-Z a-z 0-9 _ . -
pub fn type_ok(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl ReleaseMeta {
    /// Checks every field; the error names the field.
    pub fn check(&self) -> Result<(), ReleaseError> {
        if !type_ok(&self.type_) {
            return Err(ReleaseError::Invalid(
                "type must be 1-64 of A-Z, a-z, 0-9, '_', '.' and '-'".into(),
            ));
        }
        Version::parse(&self.version)
            .map_err(|e| ReleaseError::Invalid(format!("version: {e}")))?;
        line("name", &self.name, 1, 200)?;
        text("description", &self.description, 0, 10_000)?;
        line("developer", &self.developer, 0, 200)?;
        text("changelog", &self.changelog, 0, 100_000)?;
        line("promo_link", &self.promo_link, 0, 2_000)?;
        let p = &self.promo_link;
        if !(p.is_empty() || p.starts_with("https://") || p.starts_with("http://")) {
            return Err(ReleaseError::Invalid(
                "promo_link must be an http or https URL".into(),
            ));
        }
        line("lic_product_id", &self.lic_product_id, 1, 16)?;
        if self.lic_feature_id.is_some_and(|f| f > 31) {
            return Err(ReleaseError::Invalid(
                "lic_feature_id is a functionality flag, 0-31".into(),
            ));
        }
        line("conf", &self.conf, 1, 200)?;
        if self.tested_conf_versions.len() > 200 {
            return Err(ReleaseError::Invalid(
                "tested_conf_versions has at most 200 versions".into(),
            ));
        }
        for v in &self.tested_conf_versions {
            Version::parse(v)
                .map_err(|e| ReleaseError::Invalid(format!("tested_conf_versions: {e}")))?;
        }
        if !self.min_conf_version.is_empty() {
            Version::parse(&self.min_conf_version)
                .map_err(|e| ReleaseError::Invalid(format!("min_conf_version: {e}")))?;
        }
        Ok(())
    }
}

/// Whether `name` is a file name a release may carry: 1-255 bytes, no path separators, no
/// control characters, not `.` or `..` — it ends up in a URL and in `Content-Disposition`.
pub fn file_name_ok(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}
