//! Connection, migrations, and keeping an SQLite database private to the centre's user: it
//! holds every unused activation code, which is as good as a licence.

use super::CentreError;
use sqlx::any::AnyPoolOptions;
use std::path::{Path, PathBuf};

pub(super) async fn connect(url: &str) -> Result<sqlx::AnyPool, CentreError> {
    sqlx::any::install_default_drivers();
    let file = sqlite_file(url);
    if let Some(f) = file.clone() {
        // Made 0600 before SQLite creates it, so it is never readable by others, not even
        // for a moment; SQLite gives its -wal and -shm files the database file's mode.
        blocking(move || precreate_private(&f)).await?;
    }
    let pool = AnyPoolOptions::new()
        // SQLite takes one writer at a time; one connection avoids "database is locked".
        .max_connections(if file.is_some() { 1 } else { 8 })
        .connect(url)
        .await?;
    if let Some(f) = file {
        // A database made by an older version (or under a wide umask) is narrowed now.
        blocking(move || restrict_files(&f)).await?;
    }
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// The URL of an SQLite database file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// The file behind an SQLite URL (`sqlite://PATH?…` or `sqlite:PATH`); `None` for another
/// database or an in-memory one.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
}

async fn blocking(
    f: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> Result<(), CentreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CentreError::Invalid(format!("worker failed: {e}")))?
        .map_err(|e| CentreError::Invalid(format!("database file: {e}")))
}

fn precreate_private(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A missing folder: SQLite will say so in its own words.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets the database file and its `-wal`, `-shm` and `-journal` companions to 0600.
fn restrict_files(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut names = vec![file.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut n = file.as_os_str().to_owned();
        n.push(suffix);
        names.push(PathBuf::from(n));
    }
    for n in names {
        match std::fs::set_permissions(&n, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates `dir` (and its parents) readable by its owner alone, and narrows it to 0700 if it
/// exists wider: it holds the centre's private keys and, by default, its database.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;
    use std::path::PathBuf;

    #[test]
    fn sqlite_files_from_urls() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/c/centre.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/c/centre.db"))
        );
        assert_eq!(sqlite_file("sqlite:c.db"), Some(PathBuf::from("c.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }
}
