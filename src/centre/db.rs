//! Connection, migrations, and keeping an SQLite database private to the centre's user: it
//! holds every unused activation code, which is as good as a licence.

use super::CentreError;
use sqlx::any::AnyPoolOptions;
use std::path::{Path, PathBuf};

pub(super) async fn connect(url: &str) -> Result<sqlx::AnyPool, CentreError> {
    sqlx::any::install_default_drivers();
    if let Some(w) = postgres_tls_warning(url) {
        tracing::warn!("{w}");
    }
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

/// What is wrong with how a PostgreSQL URL protects its connection, if anything: off this
/// machine, anything short of `sslmode=verify-full` can be read or impersonated on the way —
/// sqlx's default `prefer` falls back to plain text, `require` and `verify-ca` do not check
/// the server's name. Existing deployments keep working; they are told at every start. The
/// URL is read as sqlx reads it (`PGSSLMODE`, `PGHOST` included), and never appears in the
/// text (it may carry a password).
pub fn postgres_tls_warning(url: &str) -> Option<String> {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    use std::str::FromStr;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return None;
    }
    let opts = PgConnectOptions::from_str(url).ok()?;
    if opts.get_socket().is_some() || is_loopback_host(opts.get_host()) {
        return None;
    }
    let (name, what) = match opts.get_ssl_mode() {
        PgSslMode::VerifyFull => return None,
        PgSslMode::Disable => ("disable", "travels unencrypted"),
        PgSslMode::Allow => ("allow", "may travel unencrypted"),
        PgSslMode::Prefer => (
            "prefer (the default)",
            "may travel unencrypted (whoever is on the path can make it fall back to plain text)",
        ),
        PgSslMode::Require => (
            "require",
            "is encrypted, but to whoever answers: the server's certificate is not checked",
        ),
        PgSslMode::VerifyCa => (
            "verify-ca",
            "is encrypted, but the server's certificate is not checked against its name",
        ),
    };
    Some(format!(
        "the PostgreSQL connection to {host} uses sslmode={name}: it {what}. It carries every \
         activation code and licence; put sslmode=verify-full&sslrootcert=/path/to/ca.pem in \
         the database URL (docs/centre.md)",
        host = opts.get_host(),
    ))
}

/// A host name or address that never leaves this machine.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
    use super::{postgres_tls_warning, sqlite_file};
    use std::path::PathBuf;

    #[test]
    fn postgres_off_this_machine_without_verify_full_is_warned_about() {
        for url in [
            "postgres://centre@db.example/centre",
            "postgresql://centre:secret@10.0.0.5:5432/centre?sslmode=prefer",
            "postgres://centre@db.example/centre?sslmode=disable",
            "postgres://centre@db.example/centre?sslmode=require",
            "postgres://centre@db.example/centre?sslmode=verify-ca&sslrootcert=/etc/ca.pem",
            "postgres://centre@[2001:db8::1]/centre?sslmode=require",
        ] {
            let w = postgres_tls_warning(url).unwrap_or_else(|| panic!("no warning for {url}"));
            assert!(w.contains("verify-full"), "{w}");
            assert!(
                !w.contains("secret"),
                "the URL's password is not repeated: {w}"
            );
        }
        for url in [
            "postgres://centre@db.example/centre?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            "postgres://centre@localhost/centre",
            "postgres://centre@127.0.0.1:5433/centre?sslmode=disable",
            "postgres://centre@[::1]/centre",
            "postgres:///centre?host=/var/run/postgresql",
            "postgres://%2Fvar%2Frun%2Fpostgresql/centre",
            "sqlite:///var/lib/c/centre.db?mode=rwc",
        ] {
            assert_eq!(postgres_tls_warning(url), None, "{url}");
        }
    }

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
