//! The writer's side of the database: its connection, reading balances and journals into
//! the cache, the one statement that commits a batch, and telling its failures apart.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor, Row};
use uuid::Uuid;

use super::plan::{CachedAccount, Plan};
use super::{Request, Writer};
use crate::ids::{JournalId, LedgerAccountId, TransactionId};
use crate::ledger::error::LedgerError;

pub(super) struct Existing {
    pub(super) id: TransactionId,
    pub(super) journal_id: JournalId,
    pub(super) fingerprint: Vec<u8>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) voided: bool,
}

/// Why a batch could not be completed; its requests are retried one by one.
#[derive(Clone, Debug)]
pub(super) struct Failure {
    pub(super) reason: String,
    /// The connection may be gone and the outcome of the last statement is unknown.
    pub(super) connection_lost: bool,
}

impl Failure {
    pub(super) fn from_sqlx(e: &sqlx::Error) -> Failure {
        let connection_lost = match e {
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57")),
            _ => true,
        };
        Failure {
            reason: e.to_string(),
            connection_lost,
        }
    }

    pub(super) fn to_error(&self) -> LedgerError {
        if self.connection_lost {
            LedgerError::OutcomeUnknown {
                reason: self.reason.clone(),
            }
        } else {
            LedgerError::StorageRejected {
                reason: self.reason.clone(),
            }
        }
    }
}

/// The `application_name` of every writer's connection, for operators (and tests).
pub const WRITER_APPLICATION_NAME: &str = "bastion-ledger-writer";

/// Opens the writer's connection.
pub(crate) async fn connect(options: &PgConnectOptions) -> Result<PgConnection, LedgerError> {
    let options = options.clone().application_name(WRITER_APPLICATION_NAME);
    let mut conn = PgConnection::connect_with(&options).await?;
    // The batch statement has array parameters: one generic plan avoids re-planning it.
    // A statement that hangs (a stuck disk, a lock held by hand) fails after 30 s instead of
    // stopping every posting for ever.
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut conn)
        .await?;
    sqlx::query("SET statement_timeout = '30s'")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

// `locked` takes the balance rows in account order before anything is written, so two
// instances whose batches share accounts wait for each other instead of deadlocking; the
// update's `count` sub-select makes it run first.
pub(super) const WRITE_BATCH: &str = r#"
WITH locked AS (
    SELECT account_id FROM ledger_balances
    WHERE account_id = ANY($15::uuid[])
    ORDER BY account_id
    FOR UPDATE
), tx AS (
    INSERT INTO ledger_transactions
        (id, journal_id, external_id, fingerprint, description, metadata, created_at)
    SELECT t.id, t.journal_id, t.external_id, t.fingerprint, t.description, t.metadata, $7
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::text[], $6::jsonb[])
        AS t(id, journal_id, external_id, fingerprint, description, metadata)
    RETURNING id, journal_id, external_id
), en AS (
    INSERT INTO ledger_entries
        (transaction_id, seq, account_id, direction, layer, currency, amount)
    SELECT * FROM unnest($8::uuid[], $9::int2[], $10::uuid[], $11::text[], $12::text[],
                         $13::text[], $14::int8[])
    RETURNING 1
), bal AS (
    UPDATE ledger_balances b
    SET settled = u.settled, pending = u.pending, version = b.version + 1,
        last_transaction_id = u.last_tx, updated_at = $7
    FROM unnest($15::uuid[], $16::int8[], $17::int8[], $18::int8[], $19::uuid[])
        AS u(account_id, settled, pending, version, last_tx)
    WHERE b.account_id = u.account_id AND b.version = u.version
      AND (SELECT count(*) FROM locked) >= 0
    RETURNING 1
), ob AS (
    INSERT INTO ledger_outbox (event_type, transaction_id, payload, created_at)
    SELECT 'ledger.transaction_posted', tx.id,
           jsonb_build_object('transaction_id', tx.id, 'journal_id', tx.journal_id,
                              'external_id', tx.external_id),
           $7
    FROM tx
    RETURNING 1
)
SELECT ledger_assert((SELECT count(*) FROM bal) = cardinality($15::uuid[]),
                     'a balance was not at the expected version')
"#;

/// The cached fields of the accounts named by `$1`.
macro_rules! load_balances {
    () => {
        "SELECT a.id, a.normal_balance, a.currency, b.allow_negative, b.settled, b.pending, \
         b.version FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id \
         WHERE a.id = ANY($1)"
    };
}

const LOAD: &str = load_balances!();

/// The same, with the balance rows locked in account order (as the batch statement takes
/// them).
const LOAD_LOCKED: &str = concat!(load_balances!(), " ORDER BY a.id FOR UPDATE OF b");

impl Writer {
    pub(super) async fn reload_journals(&mut self) -> Result<(), Failure> {
        let conn = self.conn()?;
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM ledger_journals")
            .fetch_all(conn)
            .await
            .map_err(|e| Failure::from_sqlx(&e))?;
        self.journals = ids.into_iter().map(JournalId::from_uuid).collect();
        Ok(())
    }

    /// Reads the given accounts' balances into the cache, replacing what it held.
    pub(super) async fn load(
        &mut self,
        ids: impl Iterator<Item = LedgerAccountId>,
    ) -> Result<(), Failure> {
        self.read_balances(ids, LOAD).await
    }

    /// Opens a transaction, locks the balance rows of every account the requests name (in
    /// account order, as the batch statement does) and reads them into the cache: a batch
    /// planned on them and written before [`Writer::end_locked`] cannot conflict.
    pub(super) async fn begin_locked(
        &mut self,
        requests: &[(usize, Request)],
    ) -> Result<(), Failure> {
        let ids: HashSet<LedgerAccountId> = requests
            .iter()
            .flat_map(|(_, r)| r.posting.entries().iter().map(|e| e.account_id))
            .collect();
        let conn = self.conn()?;
        conn.execute("BEGIN")
            .await
            .map_err(|e| Failure::from_sqlx(&e))?;
        let read = self.read_balances(ids.into_iter(), LOAD_LOCKED).await;
        if read.is_err()
            && let Some(conn) = self.conn.as_mut()
        {
            // Leave no transaction open (aborted, it would refuse every later statement);
            // a connection that cannot even roll back is dropped by the failure.
            let _ = conn.execute("ROLLBACK").await;
        }
        read
    }

    /// Ends the transaction of [`Writer::begin_locked`]: commits what `written` wrote, or
    /// rolls back after its error (which is returned as it was).
    pub(super) async fn end_locked(
        &mut self,
        written: Result<(), sqlx::Error>,
    ) -> Result<(), sqlx::Error> {
        let conn = self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        match written {
            Ok(()) => conn.execute("COMMIT").await.map(|_| ()),
            Err(e) => {
                conn.execute("ROLLBACK").await?;
                Err(e)
            }
        }
    }

    async fn read_balances(
        &mut self,
        ids: impl Iterator<Item = LedgerAccountId>,
        query: &'static str,
    ) -> Result<(), Failure> {
        let ids: Vec<Uuid> = ids.map(|id| id.as_uuid()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let conn = self.conn()?;
        let rows = sqlx::query(query)
            .bind(&ids)
            .fetch_all(conn)
            .await
            .map_err(|e| Failure::from_sqlx(&e))?;
        for row in rows {
            let parsed = (|| -> Result<(LedgerAccountId, CachedAccount), String> {
                let id: Uuid = row.try_get("id").map_err(|e| e.to_string())?;
                let normal: String = row.try_get("normal_balance").map_err(|e| e.to_string())?;
                let currency: String = row.try_get("currency").map_err(|e| e.to_string())?;
                Ok((
                    LedgerAccountId::from_uuid(id),
                    CachedAccount {
                        normal: normal.parse().map_err(|e| format!("{e}"))?,
                        currency: currency.parse().map_err(|e| format!("{e}"))?,
                        allow_negative: row.try_get("allow_negative").map_err(|e| e.to_string())?,
                        settled: row.try_get("settled").map_err(|e| e.to_string())?,
                        pending: row.try_get("pending").map_err(|e| e.to_string())?,
                        version: row.try_get("version").map_err(|e| e.to_string())?,
                    },
                ))
            })();
            match parsed {
                Ok((id, acc)) => {
                    self.accounts.insert(id, acc);
                }
                Err(reason) => {
                    return Err(Failure {
                        reason,
                        connection_lost: false,
                    });
                }
            }
        }
        Ok(())
    }

    pub(super) async fn write(
        &mut self,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let n = plan.accepted.len();
        let mut tx_ids = Vec::with_capacity(n);
        let mut journals = Vec::with_capacity(n);
        let mut externals = Vec::with_capacity(n);
        let mut fingerprints: Vec<Vec<u8>> = Vec::with_capacity(n);
        let mut descriptions = Vec::with_capacity(n);
        let mut metadata: Vec<Option<serde_json::Value>> = Vec::with_capacity(n);
        let mut e_tx = Vec::with_capacity(n * 2);
        let mut e_seq: Vec<i16> = Vec::with_capacity(n * 2);
        let mut e_account = Vec::with_capacity(n * 2);
        let mut e_direction = Vec::with_capacity(n * 2);
        let mut e_layer = Vec::with_capacity(n * 2);
        let mut e_currency = Vec::with_capacity(n * 2);
        let mut e_amount = Vec::with_capacity(n * 2);
        for a in &plan.accepted {
            let p = &a.request.posting;
            tx_ids.push(a.id.as_uuid());
            journals.push(p.journal_id().as_uuid());
            externals.push(p.external_id());
            fingerprints.push(a.request.fingerprint.to_vec());
            descriptions.push(p.description());
            metadata.push(p.metadata().cloned());
            for (seq, e) in p.entries().iter().enumerate() {
                e_tx.push(a.id.as_uuid());
                // At most MAX_ENTRIES (64) entries.
                e_seq.push(i16::try_from(seq).unwrap_or(i16::MAX));
                e_account.push(e.account_id.as_uuid());
                e_direction.push(e.direction.as_str());
                e_layer.push(e.layer.as_str());
                e_currency.push(e.currency.code());
                e_amount.push(e.amount.to_i64());
            }
        }
        let m = plan.overlay.len();
        let mut b_account = Vec::with_capacity(m);
        let mut b_settled = Vec::with_capacity(m);
        let mut b_pending = Vec::with_capacity(m);
        let mut b_version = Vec::with_capacity(m);
        let mut b_last = Vec::with_capacity(m);
        for (id, t) in &plan.overlay {
            b_account.push(id.as_uuid());
            b_settled.push(t.account.settled);
            b_pending.push(t.account.pending);
            b_version.push(t.account.version);
            b_last.push(t.last_tx.as_uuid());
        }
        let conn = self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        sqlx::query(WRITE_BATCH)
            .bind(&tx_ids)
            .bind(&journals)
            .bind(&externals)
            .bind(&fingerprints)
            .bind(&descriptions)
            .bind(&metadata)
            .bind(now)
            .bind(&e_tx)
            .bind(&e_seq)
            .bind(&e_account)
            .bind(&e_direction)
            .bind(&e_layer)
            .bind(&e_currency)
            .bind(&e_amount)
            .bind(&b_account)
            .bind(&b_settled)
            .bind(&b_pending)
            .bind(&b_version)
            .bind(&b_last)
            .execute(conn)
            .await?;
        Ok(())
    }

    pub(super) async fn lookup(
        &mut self,
        external_ids: Vec<String>,
    ) -> Result<HashMap<String, Existing>, Failure> {
        let conn = self.conn()?;
        let rows = sqlx::query(
            "SELECT external_id, id, journal_id, fingerprint, created_at, voided \
             FROM ledger_transactions WHERE external_id = ANY($1)",
        )
        .bind(&external_ids)
        .fetch_all(conn)
        .await
        .map_err(|e| Failure::from_sqlx(&e))?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let get = || -> Result<(String, Existing), sqlx::Error> {
                Ok((
                    row.try_get("external_id")?,
                    Existing {
                        id: TransactionId::from_uuid(row.try_get("id")?),
                        journal_id: JournalId::from_uuid(row.try_get("journal_id")?),
                        fingerprint: row.try_get("fingerprint")?,
                        created_at: row.try_get("created_at")?,
                        voided: row.try_get("voided")?,
                    },
                ))
            };
            let (k, v) = get().map_err(|e| Failure::from_sqlx(&e))?;
            out.insert(k, v);
        }
        Ok(out)
    }
}

/// The batch statement's own abort when a balance row was not at the cached version.
pub(super) fn is_version_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("P0001")
                && db
                    .message()
                    .contains("a balance was not at the expected version")
        }
        _ => false,
    }
}

pub(super) fn is_external_id_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("23505")
                && db.constraint() == Some("ledger_transactions_external_id_key")
        }
        _ => false,
    }
}
