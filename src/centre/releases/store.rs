//! The content-addressed file store: each file once, at `sha256/<2 hex>/<64 hex>` under the
//! store directory, whatever releases list it. An upload is written to a temporary file in the
//! store's own `tmp/` (same file system, so the final rename is atomic), hashed (MD5 and
//! SHA-256) while it streams, fsynced, and only then renamed to its address; a file at an
//! address is therefore always whole. A temporary file is removed when its upload breaks off
//! (its [`StagedFile`] or [`Staging`] is dropped). All file work runs on the blocking pool.

use axum::body::Bytes;
use md5::Digest;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The store directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// A file being received.
pub struct Staging {
    path: PathBuf,
    state: Option<(File, md5::Md5, aws_lc_rs::digest::Context)>,
    /// Bytes not yet written: chunks are gathered to [`BATCH`] so each trip to the blocking
    /// pool carries a useful amount (network chunks are often a few KiB).
    buf: Vec<u8>,
    size: u64,
}

/// Bytes written per trip to the blocking pool.
const BATCH: usize = 256 * 1024;

/// A file received whole and fsynced, not yet at its address.
pub struct StagedFile {
    path: PathBuf,
    pub name: String,
    pub size: u64,
    /// Lower-case hex.
    pub md5: String,
    pub sha256: String,
    installed: bool,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("worker failed: {e}")))?
}

/// Removes a temporary file on the blocking pool (or here, outside a runtime).
fn remove_later(path: PathBuf) {
    let rm = move || {
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("could not remove {}: {e}", path.display());
            }
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn_blocking(rm);
        }
        Err(_) => rm(),
    }
}

fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl BlobStore {
    /// Opens (creating) the store; removes temporary files older than a day, which only a
    /// killed process leaves (a live upload's are younger).
    pub async fn open(dir: PathBuf) -> std::io::Result<BlobStore> {
        let d = dir.clone();
        blocking(move || {
            private_dir(&d.join("sha256"))?;
            private_dir(&d.join("tmp"))?;
            let day = std::time::Duration::from_secs(86_400);
            for e in std::fs::read_dir(d.join("tmp"))? {
                let e = e?;
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|a| a > day);
                if old {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            Ok(())
        })
        .await?;
        Ok(BlobStore { dir })
    }

    /// Where the file with this SHA-256 (lower-case hex) lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("xx");
        self.dir.join("sha256").join(prefix).join(sha256)
    }

    /// Starts receiving a file.
    pub async fn stage(&self) -> std::io::Result<Staging> {
        let name = format!(
            "upload-{}",
            hex::encode(crate::crypto::random_bytes::<16>())
        );
        let path = self.dir.join("tmp").join(name);
        let p = path.clone();
        let file = blocking(move || {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
        })
        .await?;
        Ok(Staging {
            path,
            state: Some((
                file,
                md5::Md5::new(),
                aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            )),
            buf: Vec::with_capacity(BATCH),
            size: 0,
        })
    }

    /// Moves received files to their addresses (a file already there has the same bytes:
    /// the temporary copy is dropped) and makes the renames durable.
    pub async fn install(&self, files: &mut [StagedFile]) -> std::io::Result<()> {
        let jobs: Vec<(PathBuf, PathBuf)> = files
            .iter()
            .map(|f| (f.path.clone(), self.path(&f.sha256)))
            .collect();
        blocking(move || {
            for (from, to) in jobs {
                let parent = to.parent().map(Path::to_path_buf).unwrap_or_default();
                private_dir(&parent)?;
                if to.exists() {
                    std::fs::remove_file(&from)?;
                } else {
                    std::fs::rename(&from, &to)?;
                }
                File::open(&parent)?.sync_all()?;
            }
            Ok(())
        })
        .await?;
        for f in files {
            f.installed = true;
        }
        Ok(())
    }
}

impl Staging {
    /// Appends a chunk; written and hashed in batches.
    pub async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.size += chunk.len() as u64;
        self.buf.extend_from_slice(&chunk);
        if self.buf.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let (mut file, mut md5, mut sha) = self
            .state
            .take()
            .ok_or_else(|| std::io::Error::other("a failed upload was written to"))?;
        let buf = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH));
        let state = blocking(move || {
            md5.update(&buf);
            sha.update(&buf);
            file.write_all(&buf)?;
            Ok((file, md5, sha))
        })
        .await?;
        self.state = Some(state);
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file, fsynced, with its digests.
    pub async fn finish(mut self, name: String) -> std::io::Result<StagedFile> {
        self.flush().await?;
        let (file, md5, sha) = self
            .state
            .take()
            .ok_or_else(|| std::io::Error::other("a failed upload was finished"))?;
        let (md5, sha256) = blocking(move || {
            file.sync_all()?;
            Ok((
                hex::encode(md5.finalize()),
                hex::encode(sha.finish().as_ref()),
            ))
        })
        .await?;
        let path = std::mem::take(&mut self.path);
        Ok(StagedFile {
            path,
            name,
            size: self.size,
            md5,
            sha256,
            installed: false,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            remove_later(std::mem::take(&mut self.path));
        }
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.installed {
            remove_later(std::mem::take(&mut self.path));
        }
    }
}
