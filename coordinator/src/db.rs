//! Connecting to PostgreSQL and migrations (scratch databases for tests live in the
//! `test-support` crate).

use std::str::FromStr;
use std::sync::LazyLock;

use embedded_migrations::{MigrateError, Migrator};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Where to find PostgreSQL when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The embedded migrations of this crate (`migrations/`, listed by build.rs).
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    embedded_migrations::migrator(include!(concat!(env!("OUT_DIR"), "/migrations.rs")))
});

/// A pool of at most `max_connections` connections to `url`.
///
/// # Errors
/// If the URL is malformed or the server cannot be reached.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
}

/// A one-connection pool for a `LISTEN`ing task: the same server and credentials as
/// `pool`, outside its limit, named `application_name` so operators can find it. Lazy:
/// nothing connects until the listener does.
pub fn listener_pool(pool: &PgPool, application_name: &str) -> PgPool {
    let options = (*pool.connect_options())
        .clone()
        .application_name(application_name);
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_lazy_with(options)
}

/// Runs the migrations.
///
/// # Errors
/// If a migration fails or a stored one was changed.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await
}

#[cfg(test)]
mod tests {
    use super::MIGRATOR;

    /// Databases migrated by `sqlx::migrate!` before must keep validating: the embedded
    /// migrations are the files sqlx reads, with the checksums it computes.
    #[test]
    fn the_embedded_migrations_are_the_files_as_sqlx_reads_them() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let files = sqlx_core::migrate::resolve_blocking(&dir).expect("sqlx reads migrations/");
        assert_eq!(MIGRATOR.iter().count(), files.len());
        for (ours, (theirs, _)) in MIGRATOR.iter().zip(&files) {
            assert_eq!(ours.version, theirs.version);
            assert_eq!(ours.description, theirs.description);
            assert_eq!(ours.checksum, theirs.checksum, "{}", ours.description);
            assert_eq!(ours.no_tx, theirs.no_tx);
        }
    }
}
