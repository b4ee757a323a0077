//! Connection and migrations.

use super::CentreError;
use sqlx::any::AnyPoolOptions;

pub(super) async fn connect(url: &str) -> Result<sqlx::AnyPool, CentreError> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    let pool = AnyPoolOptions::new()
        // SQLite takes one writer at a time; one connection avoids "database is locked".
        .max_connections(if sqlite { 1 } else { 8 })
        .connect(url)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// The URL of an SQLite database file, created if missing.
pub fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}
