//! Readiness: a list of named checks, each answering within a deadline. `/readyz` runs
//! them all and names every one that fails and why; a load balancer then sends this
//! instance no traffic. Further dependencies (the signer, a Lightning node) are checks
//! added with [`Readiness::with`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

use crate::chain::ChainSource;
use crate::ledger::Ledger;
use crate::lightning::LightningNode;

/// The longest one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency this instance needs to serve.
#[async_trait::async_trait]
pub trait ReadinessCheck: Send + Sync + std::fmt::Debug {
    /// Its name in the report (`database`, `migrations`, ...).
    fn name(&self) -> &'static str;

    /// `Err(why)` when the dependency cannot be used now. Must be cheap: it runs for every
    /// probe. Idempotent (a read).
    async fn check(&self) -> Result<(), String>;
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CheckOutcome {
    /// The check.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReadinessReport {
    /// True when every check passed.
    pub ready: bool,
    /// Every check, in order.
    pub checks: Vec<CheckOutcome>,
}

/// The checks of an instance.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Vec<Arc<dyn ReadinessCheck>>,
}

impl Readiness {
    /// The checks every instance has: the database, its migrations and the ledger writer.
    pub fn standard(ledger: &Ledger) -> Readiness {
        let pool = ledger.pool().clone();
        Readiness::default()
            .with(Arc::new(DatabaseCheck { pool: pool.clone() }))
            .with(Arc::new(MigrationsCheck { pool }))
            .with(Arc::new(LedgerCheck {
                ledger: ledger.clone(),
            }))
    }

    /// These checks and `check`.
    pub fn with(mut self, check: Arc<dyn ReadinessCheck>) -> Readiness {
        self.checks.push(check);
        self
    }

    /// Runs every check at once, each within [`CHECK_TIMEOUT`].
    pub async fn run(&self) -> ReadinessReport {
        let mut set = tokio::task::JoinSet::new();
        for (i, c) in self.checks.iter().enumerate() {
            let c = c.clone();
            set.spawn(async move {
                let result = match tokio::time::timeout(CHECK_TIMEOUT, c.check()).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
                };
                (i, c.name(), result)
            });
        }
        let mut outcomes = Vec::with_capacity(self.checks.len());
        while let Some(joined) = set.join_next().await {
            let (i, name, result) = match joined {
                Ok(r) => r,
                Err(e) => (usize::MAX, "internal", Err(format!("check panicked: {e}"))),
            };
            outcomes.push((
                i,
                CheckOutcome {
                    name,
                    ok: result.is_ok(),
                    error: result.err(),
                },
            ));
        }
        outcomes.sort_by_key(|(i, _)| *i);
        let checks: Vec<CheckOutcome> = outcomes.into_iter().map(|(_, o)| o).collect();
        ReadinessReport {
            ready: checks.iter().all(|c| c.ok),
            checks,
        }
    }
}

/// PostgreSQL answers a query.
#[derive(Debug)]
pub struct DatabaseCheck {
    /// The pool.
    pub pool: PgPool,
}

#[async_trait::async_trait]
impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Every migration this binary has is applied (a newer schema is fine: during a rolling
/// upgrade, the old instances still serve).
#[derive(Debug)]
pub struct MigrationsCheck {
    /// The pool.
    pub pool: PgPool,
}

/// The binary's migrations the database lacks, by version; `Err` if it cannot be read.
///
/// # Errors
/// The database cannot be queried.
pub async fn missing_migrations(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let applied: BTreeSet<i64> = if exists {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect()
    } else {
        BTreeSet::new()
    };
    Ok(crate::db::MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect())
}

#[async_trait::async_trait]
impl ReadinessCheck for MigrationsCheck {
    fn name(&self) -> &'static str {
        "migrations"
    }

    async fn check(&self) -> Result<(), String> {
        let missing = missing_migrations(&self.pool)
            .await
            .map_err(|e| format!("cannot read the applied migrations: {e}"))?;
        if missing.is_empty() {
            return Ok(());
        }
        let list = missing
            .iter()
            .map(|v| format!("{v:04}"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(format!(
            "the database lacks {} migration(s) of this binary ({list}); run `coordinator migrate`",
            missing.len()
        ))
    }
}

/// The ledger writer takes postings.
#[derive(Debug)]
pub struct LedgerCheck {
    /// The ledger.
    pub ledger: Ledger,
}

#[async_trait::async_trait]
impl ReadinessCheck for LedgerCheck {
    fn name(&self) -> &'static str {
        "ledger"
    }

    async fn check(&self) -> Result<(), String> {
        if self.ledger.writer_running() {
            Ok(())
        } else {
            Err("the ledger writer has stopped".to_owned())
        }
    }
}

/// Not started yet: what an instance answers while it waits for its migrations.
#[derive(Debug)]
pub struct NotStarted(pub &'static str);

#[async_trait::async_trait]
impl ReadinessCheck for NotStarted {
    fn name(&self) -> &'static str {
        self.0
    }

    async fn check(&self) -> Result<(), String> {
        Err("not started: waiting for the migrations".to_owned())
    }
}

/// The chain source answered its last call.
#[derive(Debug)]
pub struct ChainCheck {
    /// The source.
    pub chain: Arc<dyn ChainSource>,
}

#[async_trait::async_trait]
impl ReadinessCheck for ChainCheck {
    fn name(&self) -> &'static str {
        "chain"
    }

    async fn check(&self) -> Result<(), String> {
        let h = self.chain.health();
        if h.is_up() {
            return Ok(());
        }
        Err(match (&h.last_success, &h.last_error) {
            (_, Some(e)) => format!(
                "{} at {}: {} failure(s) since the last success: {e}",
                h.backend, h.endpoint, h.consecutive_failures
            ),
            (None, None) => format!("{} at {}: no call has succeeded yet", h.backend, h.endpoint),
            (Some(_), None) => format!("{} at {}: failing", h.backend, h.endpoint),
        })
    }
}

/// The Lightning node answers with our credentials and is synced to the chain, so that
/// invoices can be made and payments sent. One `GetInfo` per probe.
#[derive(Debug)]
pub struct LightningCheck {
    /// The node.
    pub node: Arc<dyn LightningNode>,
}

#[async_trait::async_trait]
impl ReadinessCheck for LightningCheck {
    fn name(&self) -> &'static str {
        "lightning"
    }

    async fn check(&self) -> Result<(), String> {
        let info = self.node.info().await.map_err(|e| e.to_string())?;
        if info.synced {
            Ok(())
        } else {
            Err(format!(
                "node {} not synced to the chain (at height {})",
                info.pubkey, info.block_height
            ))
        }
    }
}
