//! The double-entry ledger.
//!
//! [`Ledger::post`] hands a [`Posting`] to the single writer task (see the crate front page
//! for the design), which answers after the batch holding the posting has committed.
//! Reads ([`Ledger::balance`], [`Ledger::history`], ...) go straight to PostgreSQL and see
//! only committed data. [`verify`] checks the invariants over the whole store.

mod error;
mod outbox;
mod posting;
mod types;
mod verify;
mod writer;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use error::LedgerError;
pub use outbox::{OutboxEvent, TRANSACTION_POSTED, outbox_held_back, read_outbox};
pub use posting::{
    EntryInput, MAX_DESCRIPTION_LEN, MAX_ENTRIES, MAX_EXTERNAL_ID_LEN, Posting, PostingBuilder,
    PostingError,
};
pub use types::{
    AccountKind, Balance, Currency, Direction, Layer, LedgerAccount, UnknownVariant, system,
};
pub use verify::{VerifyReport, Violation, verify};
pub use writer::WRITER_APPLICATION_NAME;

use crate::amount::Msats;
use crate::ids::{JournalId, LedgerAccountId, TransactionId};

/// Tuning of the ledger writer.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// Most postings written by one statement.
    pub max_batch: usize,
    /// Most account balances kept in the writer's memory.
    pub cache_capacity: usize,
    /// Postings that may wait for the writer before callers are slowed down.
    pub queue_depth: usize,
    /// Under concurrency, how many times the writer yields to let answered callers post
    /// again before it writes the next batch (0 to turn off).
    pub gather_yields: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            max_batch: 512,
            cache_capacity: 1_000_000,
            queue_depth: 16_384,
            gather_yields: 2,
        }
    }
}

/// The result of a posting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PostedTransaction {
    /// The transaction.
    pub id: TransactionId,
    /// The caller's idempotency key.
    pub external_id: String,
    /// The journal.
    pub journal_id: JournalId,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// True when this external id had already been posted with the same content: the
    /// original transaction is returned and nothing changed.
    pub replayed: bool,
}

/// A new account to create.
#[derive(Clone, Debug)]
pub struct NewAccount {
    /// Its id (a fresh one if `None`).
    pub id: Option<LedgerAccountId>,
    /// Well-known code for a system or omnibus account.
    pub code: Option<String>,
    /// Human-readable name.
    pub name: String,
    /// What it is for.
    pub kind: AccountKind,
    /// The side on which it grows.
    pub normal_balance: Direction,
    /// Its currency.
    pub currency: Currency,
}

impl NewAccount {
    /// A customer's BTC wallet: credit-normal (a liability of the bank), never negative.
    pub fn user_wallet(name: impl Into<String>) -> NewAccount {
        NewAccount {
            id: None,
            code: None,
            name: name.into(),
            kind: AccountKind::User,
            normal_balance: Direction::Credit,
            currency: Currency::Btc,
        }
    }
}

/// One entry of a stored transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredEntry {
    /// Position in the transaction.
    pub seq: i16,
    /// The account.
    pub account_id: LedgerAccountId,
    /// Debit or credit.
    pub direction: Direction,
    /// Settled or pending.
    pub layer: Layer,
    /// Currency.
    pub currency: Currency,
    /// Amount.
    pub amount: Msats,
}

/// A stored transaction with its entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredTransaction {
    /// Its id.
    pub id: TransactionId,
    /// The journal.
    pub journal_id: JournalId,
    /// The caller's idempotency key.
    pub external_id: String,
    /// Description (memo).
    pub description: String,
    /// Metadata.
    pub metadata: Option<serde_json::Value>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// A void ([`Ledger::void`]): it holds the external id and has no entries.
    pub voided: bool,
    /// Its entries in order.
    pub entries: Vec<StoredEntry>,
}

/// What [`Ledger::void`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoidOutcome {
    /// The external id is void, now or from before: nothing will post it.
    Voided,
    /// A posting holds the external id, and it stands.
    Posted(TransactionId),
}

/// One line of an account's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryLine {
    /// The transaction.
    pub transaction_id: TransactionId,
    /// The entry within it.
    pub seq: i16,
    /// The transaction's external id.
    pub external_id: String,
    /// The transaction's description.
    pub description: String,
    /// Debit or credit on this account.
    pub direction: Direction,
    /// Settled or pending.
    pub layer: Layer,
    /// Amount.
    pub amount: Msats,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// Position in an account's history: lines strictly older than this are returned next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryCursor {
    /// The transaction of the last line seen.
    pub transaction_id: TransactionId,
    /// The entry of the last line seen.
    pub seq: i16,
}

impl HistoryLine {
    /// The cursor just after this line.
    pub fn cursor(&self) -> HistoryCursor {
        HistoryCursor {
            transaction_id: self.transaction_id,
            seq: self.seq,
        }
    }
}

/// Counters of the writer, for metrics and the bench.
#[derive(Debug, Default)]
pub struct LedgerStats {
    batches: std::sync::atomic::AtomicU64,
    postings: std::sync::atomic::AtomicU64,
    conflicts: std::sync::atomic::AtomicU64,
}

impl LedgerStats {
    /// Batch statements committed.
    pub fn batches(&self) -> u64 {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// New postings committed (replays not counted).
    pub fn postings(&self) -> u64 {
        self.postings.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Batches rolled back because another instance had moved one of their balances.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn conflicted(&self) {
        self.conflicts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn committed(&self, postings: usize) {
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.postings
            .fetch_add(postings as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Handle to the ledger; cheap to clone. The writer task stops when the last handle is
/// dropped.
#[derive(Clone, Debug)]
pub struct Ledger {
    pool: PgPool,
    tx: mpsc::Sender<writer::Request>,
    stats: std::sync::Arc<LedgerStats>,
}

fn corrupt(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt(e.to_string())
}

fn parse_msats(v: i64) -> Result<Msats, LedgerError> {
    let v = u64::try_from(v).map_err(corrupt)?;
    Msats::new(v).map_err(corrupt)
}

impl Ledger {
    /// Opens this instance's writer connection and starts the writer task. Any number of
    /// instances may run one each on the same database. Migrations must have run.
    ///
    /// # Errors
    /// [`LedgerError::Database`] if PostgreSQL fails.
    pub async fn start(pool: PgPool, config: LedgerConfig) -> Result<Ledger, LedgerError> {
        let options = (*pool.connect_options()).clone();
        let conn = writer::connect(&options).await?;
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let stats = std::sync::Arc::new(LedgerStats::default());
        let w = writer::Writer::new(options, conn, config, rx, stats.clone()).await?;
        tokio::spawn(w.run());
        Ok(Ledger { pool, tx, stats })
    }

    /// The writer's counters.
    pub fn stats(&self) -> &LedgerStats {
        &self.stats
    }

    /// False once the writer task has stopped (postings then fail with
    /// [`LedgerError::WriterStopped`]); for readiness.
    pub fn writer_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// The connection pool used for reads.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Posts a transaction, or returns the original one if its external id was already
    /// posted with the same content (`replayed: true`, nothing changes).
    ///
    /// # Errors
    /// A rule the posting breaks (unknown account or journal, currency mismatch,
    /// insufficient balance, idempotency conflict); nothing is written then.
    /// [`LedgerError::OutcomeUnknown`] if the database connection broke: post again with
    /// the same external id.
    pub async fn post(&self, posting: Posting) -> Result<PostedTransaction, LedgerError> {
        let fingerprint = posting.fingerprint();
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(writer::Request {
                posting,
                fingerprint,
                reply,
            })
            .await
            .map_err(|_| LedgerError::WriterStopped)?;
        answer.await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// Voids an external id that no posting holds yet, so that none takes it later: for a
    /// caller that gives up on a posting (a payment refused for want of funds) while a
    /// retry or another instance may still send it. The external id's unique constraint
    /// orders the void against any such posting, and the answer says which came first. A
    /// posting of a void external id is answered [`LedgerError::Voided`].
    ///
    /// # Errors
    /// [`LedgerError::Database`] if PostgreSQL fails (the journal unknown, say).
    pub async fn void(
        &self,
        journal: JournalId,
        external_id: &str,
        reason: &str,
    ) -> Result<VoidOutcome, LedgerError> {
        // A void is no posting's content, so its fingerprint is none's either: all zeros.
        let inserted = sqlx::query_scalar!(
            "INSERT INTO ledger_transactions \
                 (id, journal_id, external_id, fingerprint, description, created_at, voided) \
             VALUES ($1, $2, $3, $4, $5, now(), true) \
             ON CONFLICT (external_id) DO NOTHING RETURNING id",
            TransactionId::new().as_uuid(),
            journal.as_uuid(),
            external_id,
            &[0u8; 32][..],
            reason,
        )
        .fetch_optional(&self.pool)
        .await?;
        if inserted.is_some() {
            return Ok(VoidOutcome::Voided);
        }
        // Taken: a new statement sees the row whose commit the insert waited for.
        let held = sqlx::query!(
            "SELECT id, voided FROM ledger_transactions WHERE external_id = $1",
            external_id
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| corrupt(format!("external id {external_id} taken but not found")))?;
        Ok(if held.voided {
            VoidOutcome::Voided
        } else {
            VoidOutcome::Posted(TransactionId::from_uuid(held.id))
        })
    }

    /// Creates an account with zero balances.
    ///
    /// # Errors
    /// [`LedgerError::Database`], for example when the code is taken.
    pub async fn create_account(&self, new: NewAccount) -> Result<LedgerAccount, LedgerError> {
        create_account_in(&self.pool, new).await
    }

    /// Creates a journal.
    ///
    /// # Errors
    /// [`LedgerError::Database`], for example when the code is taken.
    pub async fn create_journal(&self, code: &str, name: &str) -> Result<JournalId, LedgerError> {
        let id = JournalId::new();
        sqlx::query("INSERT INTO ledger_journals (id, code, name) VALUES ($1, $2, $3)")
            .bind(id.as_uuid())
            .bind(code)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    /// An account by id.
    ///
    /// # Errors
    /// [`LedgerError::NotFound`] if there is none.
    pub async fn account(&self, id: LedgerAccountId) -> Result<LedgerAccount, LedgerError> {
        let row = sqlx::query(
            "SELECT id, code, name, kind, normal_balance, currency FROM ledger_accounts \
             WHERE id = $1",
        )
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| LedgerError::NotFound {
            what: format!("account {id}"),
        })?;
        account_from_row(&row)
    }

    /// An account by its well-known code (for example `bank.onchain`).
    ///
    /// # Errors
    /// [`LedgerError::NotFound`] if there is none.
    pub async fn account_by_code(&self, code: &str) -> Result<LedgerAccount, LedgerError> {
        let row = sqlx::query(
            "SELECT id, code, name, kind, normal_balance, currency FROM ledger_accounts \
             WHERE code = $1",
        )
        .bind(code)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| LedgerError::NotFound {
            what: format!("account {code:?}"),
        })?;
        account_from_row(&row)
    }

    /// An account's committed balances.
    ///
    /// # Errors
    /// [`LedgerError::NotFound`] if there is no such account.
    pub async fn balance(&self, id: LedgerAccountId) -> Result<Balance, LedgerError> {
        let row = sqlx::query(
            "SELECT currency, settled, pending, version FROM ledger_balances \
             WHERE account_id = $1",
        )
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| LedgerError::NotFound {
            what: format!("balance of account {id}"),
        })?;
        let currency: String = row.try_get("currency")?;
        Ok(Balance {
            account_id: id,
            currency: currency.parse().map_err(corrupt)?,
            settled: row.try_get("settled")?,
            pending: row.try_get("pending")?,
            version: row.try_get("version")?,
        })
    }

    /// A transaction with its entries.
    ///
    /// # Errors
    /// [`LedgerError::NotFound`] if there is none.
    pub async fn transaction(&self, id: TransactionId) -> Result<StoredTransaction, LedgerError> {
        self.transaction_where(TxKey::Id(id))
            .await?
            .ok_or_else(|| LedgerError::NotFound {
                what: format!("transaction {id}"),
            })
    }

    /// The transaction posted with an external id, if any.
    ///
    /// # Errors
    /// [`LedgerError::Database`] if PostgreSQL fails.
    pub async fn transaction_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<StoredTransaction>, LedgerError> {
        self.transaction_where(TxKey::External(external_id)).await
    }

    async fn transaction_where(
        &self,
        key: TxKey<'_>,
    ) -> Result<Option<StoredTransaction>, LedgerError> {
        const COLUMNS: &str = "SELECT id, journal_id, external_id, description, metadata, \
             created_at, voided FROM ledger_transactions";
        let row = match key {
            TxKey::Id(id) => {
                sqlx::query(&format!("{COLUMNS} WHERE id = $1"))
                    .bind(id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await?
            }
            TxKey::External(ext) => {
                sqlx::query(&format!("{COLUMNS} WHERE external_id = $1"))
                    .bind(ext)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let id: Uuid = row.try_get("id")?;
        let entries = sqlx::query(
            "SELECT seq, account_id, direction, layer, currency, amount FROM ledger_entries \
             WHERE transaction_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(outbox::entry_from_row)
        .collect::<Result<Vec<_>, LedgerError>>()?;
        Ok(Some(StoredTransaction {
            id: TransactionId::from_uuid(id),
            journal_id: JournalId::from_uuid(row.try_get("journal_id")?),
            external_id: row.try_get("external_id")?,
            description: row.try_get("description")?,
            metadata: row.try_get("metadata")?,
            created_at: row.try_get("created_at")?,
            voided: row.try_get("voided")?,
            entries,
        }))
    }

    /// An account's entries, newest first, at most `limit`, strictly after `after` (the
    /// cursor of the last line of the previous page).
    ///
    /// # Errors
    /// [`LedgerError::Database`] if PostgreSQL fails.
    pub async fn history(
        &self,
        account_id: LedgerAccountId,
        limit: u32,
        after: Option<HistoryCursor>,
    ) -> Result<Vec<HistoryLine>, LedgerError> {
        let (cursor_tx, cursor_seq) = match after {
            Some(c) => (Some(c.transaction_id.as_uuid()), c.seq),
            None => (None, 0),
        };
        let rows = sqlx::query(
            "SELECT e.transaction_id, e.seq, t.external_id, t.description, e.direction, \
                    e.layer, e.amount, t.created_at \
             FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id \
             WHERE e.account_id = $1 \
               AND ($2::uuid IS NULL OR (e.transaction_id, e.seq) < ($2, $3)) \
             ORDER BY e.transaction_id DESC, e.seq DESC LIMIT $4",
        )
        .bind(account_id.as_uuid())
        .bind(cursor_tx)
        .bind(cursor_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let direction: String = r.try_get("direction")?;
                let layer: String = r.try_get("layer")?;
                Ok(HistoryLine {
                    transaction_id: TransactionId::from_uuid(r.try_get("transaction_id")?),
                    seq: r.try_get("seq")?,
                    external_id: r.try_get("external_id")?,
                    description: r.try_get("description")?,
                    direction: direction.parse().map_err(corrupt)?,
                    layer: layer.parse().map_err(corrupt)?,
                    amount: parse_msats(r.try_get("amount")?)?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Checks every ledger invariant over the whole store.
    ///
    /// # Errors
    /// [`LedgerError::Database`] if PostgreSQL fails (violations are in the report).
    pub async fn verify(&self) -> Result<VerifyReport, LedgerError> {
        verify(&self.pool).await
    }
}

/// Creates an account with zero balances through `executor`, for example inside a
/// transaction that also creates the records that refer to it.
///
/// # Errors
/// [`LedgerError::Database`], for example when the code is taken.
pub async fn create_account_in<'e, E>(
    executor: E,
    new: NewAccount,
) -> Result<LedgerAccount, LedgerError>
where
    E: sqlx::PgExecutor<'e>,
{
    let id = new.id.unwrap_or_else(LedgerAccountId::new);
    sqlx::query(
        "WITH a AS (INSERT INTO ledger_accounts \
           (id, code, name, kind, normal_balance, currency, allow_negative) \
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, currency, allow_negative) \
         INSERT INTO ledger_balances (account_id, currency, allow_negative) \
         SELECT id, currency, allow_negative FROM a",
    )
    .bind(id.as_uuid())
    .bind(&new.code)
    .bind(&new.name)
    .bind(new.kind.as_str())
    .bind(new.normal_balance.as_str())
    .bind(new.currency.code())
    .bind(new.kind.allows_negative())
    .execute(executor)
    .await?;
    Ok(LedgerAccount {
        id,
        code: new.code,
        name: new.name,
        kind: new.kind,
        normal_balance: new.normal_balance,
        currency: new.currency,
    })
}

enum TxKey<'a> {
    Id(TransactionId),
    External(&'a str),
}

fn account_from_row(row: &PgRow) -> Result<LedgerAccount, LedgerError> {
    let kind: String = row.try_get("kind")?;
    let normal: String = row.try_get("normal_balance")?;
    let currency: String = row.try_get("currency")?;
    Ok(LedgerAccount {
        id: LedgerAccountId::from_uuid(row.try_get("id")?),
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        kind: kind.parse().map_err(corrupt)?,
        normal_balance: normal.parse().map_err(corrupt)?,
        currency: currency.parse().map_err(corrupt)?,
    })
}
