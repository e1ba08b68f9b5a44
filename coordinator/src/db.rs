//! Connecting to PostgreSQL, migrations, and scratch databases for tests and benches.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// Where to find PostgreSQL when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The embedded migrations of this crate.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
pub fn database_url_from_env() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

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
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// A database created for one test or bench run and dropped (with its connections) when
/// this value is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin: PgConnectOptions,
    name: String,
    options: PgConnectOptions,
}

impl ScratchDatabase {
    /// Creates an empty database named `<prefix>_<uuid>` on the server of `admin_url`.
    ///
    /// # Errors
    /// If the server cannot be reached or refuses.
    pub async fn create(admin_url: &str, prefix: &str) -> Result<ScratchDatabase, sqlx::Error> {
        let admin = PgConnectOptions::from_str(admin_url)?;
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect_with(&admin).await?;
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await?;
        conn.close().await?;
        let options = admin.clone().database(&name);
        Ok(ScratchDatabase {
            admin,
            name,
            options,
        })
    }

    /// Creates a scratch database on the server of `DATABASE_URL` (or the default), runs the
    /// migrations and returns it with a pool of `max_connections`.
    ///
    /// # Errors
    /// If the server cannot be reached or a migration fails.
    pub async fn migrated(
        prefix: &str,
        max_connections: u32,
    ) -> Result<(ScratchDatabase, PgPool), sqlx::Error> {
        let db = ScratchDatabase::create(&database_url_from_env(), prefix).await?;
        let pool = db.pool(max_connections).await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
        Ok((db, pool))
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection options for the database.
    pub fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// A pool on the database.
    ///
    /// # Errors
    /// If the server cannot be reached.
    pub async fn pool(&self, max_connections: u32) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(self.options.clone())
            .await
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = std::mem::take(&mut self.name);
        // Drop runs inside or outside a runtime: use a thread with its own small runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let mut conn = PgConnection::connect_with(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            tracing::warn!(error = %e, "could not drop scratch database");
        }
    }
}
