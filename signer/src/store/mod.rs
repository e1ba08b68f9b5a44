//! The signer's own PostgreSQL store: clients, registered policies, signing
//! requests, the velocity ledger and the audit log's tables.
//!
//! Methods that must commit together take an open [`Tx`] (the `_in_tx`
//! functions); the signing flow opens one transaction per decision so that the
//! decision, the velocity update and the audit records commit at once, before a
//! signature leaves the service.

pub mod approvals;
pub mod clients;
pub mod policies;
pub mod policy_changes;
pub mod requests;
pub mod velocity;

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use clients::{Client, ClientId, NewClientToken};
pub use requests::{RequestId, RequestStatus, SigningRequestRecord};

/// An open transaction on the signer's database.
///
/// Files that add tables (approvals, policy changes) write through one of these
/// so that their rows commit with the decision they belong to.
pub type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// The embedded migrations of the signer (`signer/migrations`).
pub static MIGRATOR: std::sync::LazyLock<embedded_migrations::Migrator> =
    std::sync::LazyLock::new(|| {
        embedded_migrations::migrator(include!(concat!(env!("OUT_DIR"), "/migrations.rs")))
    });

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("store: database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("store: migration: {0}")]
    Migrate(#[from] embedded_migrations::MigrateError),
    /// A stored value does not parse (the database was edited by hand, or a bug).
    #[error("store: corrupt {what}: {detail}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why it does not parse.
        detail: String,
    },
    /// A value was refused before it reached the database.
    #[error("store: invalid {what}: {detail}")]
    Invalid {
        /// Which value.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

/// The signer's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects to `url` with at most `max_connections` connections and runs the migrations.
    ///
    /// # Errors
    /// If the URL is malformed, the server cannot be reached or a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// A store over an existing pool (migrations not run).
    pub fn from_pool(pool: PgPool) -> Store {
        Store { pool }
    }

    /// Runs the embedded migrations.
    ///
    /// # Errors
    /// If a migration fails or a stored one was changed.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Opens a transaction.
    ///
    /// # Errors
    /// If no connection can be had.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Whether the database answers (for health checks).
    ///
    /// # Errors
    /// If it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use bitcoin::hashes::{Hash as _, sha256};
    sha256::Hash::hash(bytes).to_byte_array()
}
