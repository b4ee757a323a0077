//! Releases in the centre's database, and the rules of who sees which.

use super::store::StagedFile;
use super::version::Version;
use super::{ReleaseError, ReleaseMeta, ReleaseSettings, Releases};
use crate::centre::{ActivationCode, Centre, CentreError};
use crate::time::{self, Timestamp};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::sync::Arc;

/// A stored release with its files.
#[derive(Debug, Clone)]
pub struct Release {
    pub id: u64,
    pub meta: ReleaseMeta,
    pub published: Timestamp,
    pub withdrawn: Option<Timestamp>,
    pub files: Vec<ReleaseFile>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReleaseFile {
    pub name: String,
    pub size: u64,
    /// Lower-case hex.
    pub md5: String,
    pub sha256: String,
}

/// A release as the vendor's listing shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminRelease {
    pub release_id: u64,
    #[serde(rename = "type")]
    pub type_: String,
    pub version: String,
    pub name: String,
    pub lic_product_id: String,
    pub lic_feature_id: Option<u32>,
    pub conf: String,
    pub min_conf_version: String,
    pub tested_conf_versions: Vec<String>,
    pub published: String,
    /// When it was withdrawn; absent while it is listed.
    pub withdrawn: Option<String>,
    /// Completed downloads, counted once per key and UTC day.
    pub downloads: u64,
    pub files: Vec<ReleaseFile>,
}

/// What a KEY's licence grants for releases.
#[derive(Debug, Clone)]
pub struct KeyLicence {
    pub key_id: String,
    pub flags: u32,
    pub support_end: Option<Timestamp>,
}

fn n(row: &AnyRow, col: &str) -> Result<u64, ReleaseError> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| ReleaseError::Invalid(format!("stored {col} {v}")))
}

fn ts(s: &str) -> Result<Timestamp, ReleaseError> {
    time::parse_client(s).ok_or_else(|| ReleaseError::Invalid(format!("stored time {s:?}")))
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const RELEASE_COLUMNS: &str = "id, type, version, name, description, developer, changelog, promo_link, \
    lic_product_id, lic_feature_id, conf, min_conf_version, tested_conf_versions, published, withdrawn";

fn release_from_row(row: &AnyRow) -> Result<Release, ReleaseError> {
    let tested: String = row.try_get("tested_conf_versions")?;
    let feature: Option<i64> = row.try_get("lic_feature_id")?;
    let withdrawn: Option<String> = row.try_get("withdrawn")?;
    Ok(Release {
        id: n(row, "id")?,
        meta: ReleaseMeta {
            type_: row.try_get("type")?,
            version: row.try_get("version")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            developer: row.try_get("developer")?,
            changelog: row.try_get("changelog")?,
            promo_link: row.try_get("promo_link")?,
            lic_product_id: row.try_get("lic_product_id")?,
            lic_feature_id: feature.and_then(|f| u32::try_from(f).ok()),
            conf: row.try_get("conf")?,
            min_conf_version: row.try_get("min_conf_version")?,
            tested_conf_versions: serde_json::from_str(&tested)
                .map_err(|e| ReleaseError::Invalid(format!("stored tested versions: {e}")))?,
        },
        published: ts(&row.try_get::<String, _>("published")?)?,
        withdrawn: withdrawn.as_deref().map(ts).transpose()?,
        files: Vec::new(),
    })
}

impl Centre {
    /// Turns on releases: opens the file store and loads the link key (made once, in the
    /// database, so every centre sharing it makes and accepts the same links).
    pub async fn enable_releases(mut self, s: ReleaseSettings) -> Result<Centre, CentreError> {
        let store = super::BlobStore::open(s.dir.clone())
            .await
            .map_err(|e| CentreError::Invalid(format!("release store {}: {e}", s.dir.display())))?;
        let fresh = hex::encode(crate::crypto::random_bytes::<32>());
        sqlx::query(
            "INSERT INTO release_secrets (name, value) VALUES ('link_key', $1) ON CONFLICT (name) DO NOTHING",
        )
        .bind(fresh)
        .execute(&self.db)
        .await?;
        let secret: String =
            sqlx::query("SELECT value FROM release_secrets WHERE name = 'link_key'")
                .fetch_one(&self.db)
                .await?
                .try_get("value")?;
        let secret = hex::decode(secret)
            .map_err(|_| CentreError::Invalid("stored release link key is not hex".into()))?;
        self.releases = Some(Arc::new(Releases {
            settings: s,
            store,
            link: super::link::LinkKey::new(&secret),
        }));
        Ok(self)
    }

    pub fn releases(&self) -> Result<&Releases, ReleaseError> {
        self.releases.as_deref().ok_or(ReleaseError::Disabled)
    }

    /// Whether a release of this TYPE and version exists (withdrawn ones too).
    pub async fn release_exists(&self, type_: &str, version: &str) -> Result<bool, ReleaseError> {
        let want = Version::parse(version).map_err(ReleaseError::Invalid)?;
        let rows = sqlx::query("SELECT version FROM releases WHERE type = $1")
            .bind(type_.to_owned())
            .fetch_all(&self.db)
            .await?;
        Ok(rows.iter().any(|r| {
            r.try_get::<String, _>("version")
                .ok()
                .and_then(|v| Version::parse(&v).ok())
                .is_some_and(|v| v == want)
        }))
    }

    /// Checks what a release names before its files are received: the fields, that its
    /// product exists, that its version is new.
    pub async fn check_release(&self, meta: &ReleaseMeta) -> Result<(), ReleaseError> {
        meta.check()?;
        let product = sqlx::query("SELECT key_id FROM products WHERE key_id = $1")
            .bind(meta.lic_product_id.clone())
            .fetch_optional(&self.db)
            .await?;
        if product.is_none() {
            return Err(ReleaseError::UnknownProduct(meta.lic_product_id.clone()));
        }
        if self.release_exists(&meta.type_, &meta.version).await? {
            return Err(ReleaseError::Exists {
                type_: meta.type_.clone(),
                version: meta.version.clone(),
            });
        }
        Ok(())
    }

    /// Publishes a release with its received files: the files go to their addresses first,
    /// then the rows in one transaction, so a failure leaves no release (at worst whole,
    /// unreferenced files, which a later upload of the same bytes reuses).
    pub async fn publish_release(
        &self,
        meta: &ReleaseMeta,
        mut files: Vec<StagedFile>,
    ) -> Result<u64, ReleaseError> {
        let r = self.releases()?;
        self.check_release(meta).await?;
        if files.is_empty() || files.len() > super::MAX_FILES {
            return Err(ReleaseError::Invalid(format!(
                "a release has 1-{} files",
                super::MAX_FILES
            )));
        }
        for (k, f) in files.iter().enumerate() {
            if files[..k].iter().any(|g| g.name == f.name) {
                return Err(ReleaseError::Invalid(format!(
                    "file name {:?} is given twice",
                    f.name
                )));
            }
        }
        // Files first: a release row never names a file that is not whole at its address.
        r.store.install(&mut files).await?;
        let tested = serde_json::to_string(&meta.tested_conf_versions)
            .map_err(|e| ReleaseError::Invalid(e.to_string()))?;
        // Ids are MAX + 1: two centres publishing at once may pick the same one, and the
        // loser tries again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.insert_release(meta, &tested, &files).await {
                Ok(id) => return Ok(id),
                Err(ReleaseError::Db(sqlx::Error::Database(e)))
                    if e.is_unique_violation() && attempt < 5 =>
                {
                    if self.release_exists(&meta.type_, &meta.version).await? {
                        return Err(ReleaseError::Exists {
                            type_: meta.type_.clone(),
                            version: meta.version.clone(),
                        });
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn insert_release(
        &self,
        meta: &ReleaseMeta,
        tested: &str,
        files: &[StagedFile],
    ) -> Result<u64, ReleaseError> {
        let mut tx = self.db.begin().await?;
        let id: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM releases")
            .fetch_one(&mut *tx)
            .await?
            .try_get("next")?;
        sqlx::query(&format!(
            "INSERT INTO releases ({RELEASE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, NULL)"
        ))
        .bind(id)
        .bind(meta.type_.clone())
        .bind(meta.version.clone())
        .bind(meta.name.clone())
        .bind(meta.description.clone())
        .bind(meta.developer.clone())
        .bind(meta.changelog.clone())
        .bind(meta.promo_link.clone())
        .bind(meta.lic_product_id.clone())
        .bind(meta.lic_feature_id.map(i64::from))
        .bind(meta.conf.clone())
        .bind(meta.min_conf_version.clone())
        .bind(tested.to_owned())
        .bind(time::format(&time::now()))
        .execute(&mut *tx)
        .await?;
        for (pos, f) in files.iter().enumerate() {
            sqlx::query(
                "INSERT INTO release_files (release_id, position, name, size, md5, sha256) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(i(pos as u64))
            .bind(f.name.clone())
            .bind(i(f.size))
            .bind(f.md5.clone())
            .bind(f.sha256.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id.unsigned_abs())
    }

    async fn files_of(&self, id: u64) -> Result<Vec<ReleaseFile>, ReleaseError> {
        let rows = sqlx::query(
            "SELECT name, size, md5, sha256 FROM release_files WHERE release_id = $1 ORDER BY position",
        )
        .bind(i(id))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReleaseFile {
                    name: r.try_get("name")?,
                    size: n(r, "size")?,
                    md5: r.try_get("md5")?,
                    sha256: r.try_get("sha256")?,
                })
            })
            .collect()
    }

    /// Listed releases of a TYPE licensed under a series, with their files.
    pub(super) async fn listed_releases(
        &self,
        type_: &str,
        key_id: &str,
    ) -> Result<Vec<Release>, ReleaseError> {
        let rows = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases WHERE type = $1 AND lic_product_id = $2 AND withdrawn IS NULL"
        ))
        .bind(type_.to_owned())
        .bind(key_id.to_owned())
        .fetch_all(&self.db)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut r = release_from_row(row)?;
            r.files = self.files_of(r.id).await?;
            out.push(r);
        }
        Ok(out)
    }

    /// What a KEY (an activation code) grants: its licence's series, flags and support end.
    /// A code never issued, not yet activated, or revoked for releases is one answer,
    /// [`CentreError::UnknownKey`], so nobody learns which codes exist.
    pub async fn release_licence(&self, code: &ActivationCode) -> Result<KeyLicence, CentreError> {
        let row = sqlx::query(
            "SELECT c.key_id, c.support_end_date, p.flags FROM codes c \
             JOIN activations a ON a.code = c.code JOIN products p ON p.key_id = c.key_id \
             WHERE c.code = $1 AND NOT EXISTS (SELECT 1 FROM release_revoked_keys r WHERE r.code = c.code)",
        )
        .bind(code.to_string())
        .fetch_optional(&self.db)
        .await?
        .ok_or(CentreError::UnknownKey)?;
        let end: Option<String> = row.try_get("support_end_date")?;
        let flags: i64 = row.try_get("flags")?;
        Ok(KeyLicence {
            key_id: row.try_get("key_id")?,
            flags: u32::try_from(flags).unwrap_or(0),
            support_end: end
                .as_deref()
                .map(|s| ts(s).map_err(|e| CentreError::Invalid(e.to_string())))
                .transpose()?,
        })
    }

    /// Stops `code` from listing releases (a licence the vendor took back).
    pub async fn revoke_release_key(&self, code: &ActivationCode) -> Result<(), CentreError> {
        let known = sqlx::query("SELECT code FROM codes WHERE code = $1")
            .bind(code.to_string())
            .fetch_optional(&self.db)
            .await?;
        if known.is_none() {
            return Err(CentreError::UnknownCode);
        }
        sqlx::query(
            "INSERT INTO release_revoked_keys (code, revoked) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING",
        )
        .bind(code.to_string())
        .bind(time::format(&time::now()))
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// A file a link names, if its release is still listed.
    pub(super) async fn linked_file(
        &self,
        release_id: u64,
        position: u16,
    ) -> Result<ReleaseFile, ReleaseError> {
        let row = sqlx::query(
            "SELECT f.name, f.size, f.md5, f.sha256 FROM release_files f JOIN releases r ON r.id = f.release_id \
             WHERE f.release_id = $1 AND f.position = $2 AND r.withdrawn IS NULL",
        )
        .bind(i(release_id))
        .bind(i64::from(position))
        .fetch_optional(&self.db)
        .await?
        .ok_or(ReleaseError::BadLink)?;
        Ok(ReleaseFile {
            name: row.try_get("name")?,
            size: n(&row, "size")?,
            md5: row.try_get("md5")?,
            sha256: row.try_get("sha256")?,
        })
    }

    /// Counts a completed download, once per release, key and UTC day.
    pub async fn count_download(
        &self,
        release_id: u64,
        key_tag: &[u8; 16],
    ) -> Result<(), ReleaseError> {
        sqlx::query(
            "INSERT INTO release_downloads (release_id, key_tag, day) VALUES ($1, $2, $3) \
             ON CONFLICT (release_id, key_tag, day) DO NOTHING",
        )
        .bind(i(release_id))
        .bind(hex::encode(key_tag))
        .bind(time::now().format("%Y-%m-%d").to_string())
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Withdraws a release: no longer listed, its links refused. Withdrawing twice keeps the
    /// first time.
    pub async fn withdraw_release(&self, id: u64) -> Result<Timestamp, ReleaseError> {
        sqlx::query("UPDATE releases SET withdrawn = $1 WHERE id = $2 AND withdrawn IS NULL")
            .bind(time::format(&time::now()))
            .bind(i(id))
            .execute(&self.db)
            .await?;
        let row = sqlx::query("SELECT withdrawn FROM releases WHERE id = $1")
            .bind(i(id))
            .fetch_optional(&self.db)
            .await?
            .ok_or(ReleaseError::Unknown(id))?;
        let w: Option<String> = row.try_get("withdrawn")?;
        ts(w.as_deref().unwrap_or_default())
    }

    /// Every release, newest first, with its download count.
    pub async fn list_releases(&self) -> Result<Vec<AdminRelease>, ReleaseError> {
        let rows = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS}, (SELECT COUNT(*) FROM release_downloads d WHERE d.release_id = releases.id) AS downloads \
             FROM releases ORDER BY id DESC"
        ))
        .fetch_all(&self.db)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let r = release_from_row(row)?;
            out.push(AdminRelease {
                release_id: r.id,
                files: self.files_of(r.id).await?,
                type_: r.meta.type_,
                version: r.meta.version,
                name: r.meta.name,
                lic_product_id: r.meta.lic_product_id,
                lic_feature_id: r.meta.lic_feature_id,
                conf: r.meta.conf,
                min_conf_version: r.meta.min_conf_version,
                tested_conf_versions: r.meta.tested_conf_versions,
                published: time::format(&r.published),
                withdrawn: r.withdrawn.as_ref().map(time::format),
                downloads: n(row, "downloads")?,
            });
        }
        Ok(out)
    }
}
