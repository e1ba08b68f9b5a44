//! Scratch PostgreSQL databases: one per test or bench run, dropped with it.

use std::str::FromStr;

use embedded_migrations::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// Where to find PostgreSQL when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
pub fn database_url_from_env() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// A database created for one test or bench run and dropped (with its connections) when
/// this value is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
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
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        Self::create_named(admin_url, name, None).await
    }

    async fn create_named(
        admin_url: &str,
        name: String,
        template: Option<&str>,
    ) -> Result<ScratchDatabase, sqlx::Error> {
        let admin = PgConnectOptions::from_str(admin_url)?;
        let sql = match template {
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
            None => format!("CREATE DATABASE \"{name}\""),
        };
        let mut conn = PgConnection::connect_with(&admin).await?;
        conn.execute(sql.as_str()).await?;
        conn.close().await?;
        let options = admin.clone().database(&name);
        Ok(ScratchDatabase {
            admin_url: admin_url.to_owned(),
            admin,
            name,
            options,
        })
    }

    /// Creates a scratch database on the server of `DATABASE_URL` (or the default), runs
    /// `migrator` and returns it with a pool of `max_connections`.
    ///
    /// # Errors
    /// If the server cannot be reached or a migration fails.
    pub async fn migrated(
        prefix: &str,
        max_connections: u32,
        migrator: &Migrator,
    ) -> Result<(ScratchDatabase, PgPool), sqlx::Error> {
        let db = ScratchDatabase::create(&database_url_from_env(), prefix).await?;
        let pool = db.pool(max_connections).await?;
        migrator
            .run(&pool)
            .await
            .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
        Ok((db, pool))
    }

    /// A copy of this database as it is now (a backup), made with `CREATE DATABASE …
    /// TEMPLATE`. Every other connection to this database is ended first: PostgreSQL
    /// copies only a database nobody is connected to.
    ///
    /// # Errors
    /// If the server cannot be reached or refuses.
    pub async fn copy(&self) -> Result<ScratchDatabase, sqlx::Error> {
        let mut conn = PgConnection::connect_with(&self.admin).await?;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        let name = format!("{}_copy", self.name);
        Self::create_named(&self.admin_url, name, Some(&self.name)).await
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection options for the database.
    pub fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// A URL naming the database, for a subprocess: the server URL with the database
    /// name in place of its path.
    pub fn url(&self) -> String {
        database_url(&self.admin_url, &self.name)
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

/// `server_url` with `name` in place of its path (the query, if any, kept).
fn database_url(server_url: &str, name: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server_url, None),
    };
    // `scheme://authority/path`: keep everything up to the path.
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_names_the_scratch_database_and_keeps_the_rest() {
        assert_eq!(
            database_url(
                "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
                "scratch_1"
            ),
            "postgres://postgres@127.0.0.1:5432/scratch_1?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://u:p@host", "scratch_2"),
            "postgres://u:p@host/scratch_2"
        );
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_url("postgres://u:p@h/db?sslmode=disable", "y"),
            "postgres://u:p@h/y?sslmode=disable"
        );
        assert_eq!(database_url("postgres://h:1", "z"), "postgres://h:1/z");
    }
}
