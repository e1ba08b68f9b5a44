//! The ledger writer of one coordinator instance: group commit of concurrent postings.
//!
//! One task owns one PostgreSQL connection. It keeps the balances of the accounts it has
//! seen in memory, takes every posting queued at the moment, applies them one after
//! another in memory (rejecting those that break a rule), and writes the accepted ones
//! with one SQL statement: transactions, entries, new balances and outbox events. The
//! statement runs in autocommit, so it is one round trip and one commit for the whole
//! batch, and it aborts itself if any balance row was not at the version the cache
//! expected. Each caller is answered only after the commit.
//!
//! Every instance runs one writer (docs/adr/0013-ledger-writer-per-instance.md): the
//! version check makes the database the arbiter. A batch that meets a balance another
//! instance moved is rolled back whole, its accounts are read again and it is planned
//! again; a refusal that depends on a balance is confirmed against the stored balance
//! before it is answered.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::error::LedgerError;
use super::posting::Posting;
use super::types::{Currency, Direction, Layer};
use super::{LedgerConfig, LedgerStats, PostedTransaction};
use crate::ids::{JournalId, LedgerAccountId, TransactionId};

/// Rounds of one batch (conflicts, replays, stale refusals) before its postings are
/// retried one by one. Each conflict means another instance committed, so the cluster
/// makes progress; the bound keeps one unlucky batch from spinning.
const MAX_ROUNDS: usize = 24;

pub(crate) struct Request {
    pub(crate) posting: Posting,
    pub(crate) fingerprint: [u8; 32],
    pub(crate) reply: oneshot::Sender<Result<PostedTransaction, LedgerError>>,
}

#[derive(Clone, Copy, Debug)]
struct CachedAccount {
    normal: Direction,
    currency: Currency,
    allow_negative: bool,
    settled: i64,
    pending: i64,
    /// The version stored in the database.
    version: i64,
}

#[derive(Clone, Copy, Debug)]
struct Touched {
    account: CachedAccount,
    last_tx: TransactionId,
}

struct Accepted {
    order: usize,
    request: Request,
    id: TransactionId,
}

struct Plan {
    accepted: Vec<Accepted>,
    rejected: Vec<(usize, Request, LedgerError)>,
    overlay: HashMap<LedgerAccountId, Touched>,
}

struct Existing {
    id: TransactionId,
    journal_id: JournalId,
    fingerprint: Vec<u8>,
    created_at: DateTime<Utc>,
    voided: bool,
}

/// Why a batch could not be completed; its requests are retried one by one.
#[derive(Clone, Debug)]
struct Failure {
    reason: String,
    /// The connection may be gone and the outcome of the last statement is unknown.
    connection_lost: bool,
}

impl Failure {
    fn from_sqlx(e: &sqlx::Error) -> Failure {
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

    fn to_error(&self) -> LedgerError {
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

pub(crate) struct Writer {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    accounts: HashMap<LedgerAccountId, CachedAccount>,
    journals: HashSet<JournalId>,
    config: LedgerConfig,
    rx: mpsc::Receiver<Request>,
    stats: Arc<LedgerStats>,
}

// `locked` takes the balance rows in account order before anything is written, so two
// instances whose batches share accounts wait for each other instead of deadlocking; the
// update's `count` sub-select makes it run first.
const WRITE_BATCH: &str = r#"
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

impl Writer {
    pub(crate) async fn new(
        options: PgConnectOptions,
        conn: PgConnection,
        config: LedgerConfig,
        rx: mpsc::Receiver<Request>,
        stats: Arc<LedgerStats>,
    ) -> Result<Writer, LedgerError> {
        let mut w = Writer {
            options,
            conn: Some(conn),
            accounts: HashMap::new(),
            journals: HashSet::new(),
            config,
            rx,
            stats,
        };
        w.reload_journals().await.map_err(|f| f.to_error())?;
        Ok(w)
    }

    pub(crate) async fn run(mut self) {
        let mut deferred: Vec<Request> = Vec::new();
        let mut last_batch = 0usize;
        loop {
            let mut batch: Vec<Request> = Vec::new();
            let take = deferred.len().min(self.config.max_batch);
            batch.extend(deferred.drain(..take));
            if batch.is_empty() {
                match self.rx.recv().await {
                    Some(r) => batch.push(r),
                    None => break,
                }
            }
            self.drain(&mut batch);
            // Under concurrency (the last batch had more than one posting), the callers
            // answered a moment ago are about to post again: let them run a little and take
            // what they post, so that one commit serves more of them. A lone caller never
            // waits for this.
            if last_batch > 1 {
                for _ in 0..self.config.gather_yields {
                    let before = batch.len();
                    tokio::task::yield_now().await;
                    self.drain(&mut batch);
                    if batch.len() == before || batch.len() >= self.config.max_batch {
                        break;
                    }
                }
            }
            last_batch = batch.len();
            let carried = self.process(batch).await;
            deferred.extend(carried);
        }
        tracing::debug!("ledger writer stopped");
    }

    /// Moves queued requests into `batch`, up to the batch size.
    fn drain(&mut self, batch: &mut Vec<Request>) {
        while batch.len() < self.config.max_batch {
            match self.rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
    }

    /// Processes one batch; returns requests deferred to the next batch (a second posting
    /// with an external id already in this batch).
    async fn process(&mut self, batch: Vec<Request>) -> Vec<Request> {
        let size = batch.len();
        match self.attempt(batch).await {
            Ok(deferred) => deferred,
            Err((failed, failure)) => {
                tracing::warn!(
                    reason = %failure.reason,
                    batch = size,
                    "ledger batch failed; retrying its postings one by one"
                );
                self.reset(&failure);
                let mut deferred = Vec::new();
                // Set when the database cannot be reached: the rest fail at once instead of
                // each waiting for a connection.
                let mut unreachable: Option<Failure> = None;
                // Each posting alone: a bad one cannot fail the others, and a posting whose
                // outcome was unknown is found by its external id if it did commit.
                for request in failed {
                    if let Some(f) = &unreachable {
                        let _ = request.reply.send(Err(f.to_error()));
                        continue;
                    }
                    match self.attempt(vec![request]).await {
                        Ok(d) => deferred.extend(d),
                        Err((failed_one, failure)) => {
                            tracing::warn!(reason = %failure.reason, "ledger posting failed");
                            self.reset(&failure);
                            if self.conn.is_none() {
                                unreachable = Some(failure.clone());
                            }
                            for r in failed_one {
                                let _ = r.reply.send(Err(failure.to_error()));
                            }
                        }
                    }
                }
                deferred
            }
        }
    }

    fn reset(&mut self, failure: &Failure) {
        self.accounts.clear();
        if failure.connection_lost {
            self.conn = None;
        }
    }

    async fn ensure_conn(&mut self) -> Result<(), Failure> {
        if self.conn.is_some() {
            return Ok(());
        }
        match connect(&self.options).await {
            Ok(c) => {
                self.conn = Some(c);
                self.accounts.clear();
                self.reload_journals().await
            }
            Err(e) => Err(Failure {
                reason: e.to_string(),
                connection_lost: true,
            }),
        }
    }

    fn conn(&mut self) -> Result<&mut PgConnection, Failure> {
        self.conn.as_mut().ok_or_else(|| Failure {
            reason: "no connection".into(),
            connection_lost: true,
        })
    }

    async fn reload_journals(&mut self) -> Result<(), Failure> {
        let conn = self.conn()?;
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM ledger_journals")
            .fetch_all(conn)
            .await
            .map_err(|e| Failure::from_sqlx(&e))?;
        self.journals = ids.into_iter().map(JournalId::from_uuid).collect();
        Ok(())
    }

    /// Loads into the cache every account and journal the batch names that it lacks.
    async fn load_missing(&mut self, batch: &[Request]) -> Result<(), Failure> {
        if batch
            .iter()
            .any(|r| !self.journals.contains(&r.posting.journal_id()))
        {
            self.reload_journals().await?;
        }
        let mut missing: HashSet<LedgerAccountId> = HashSet::new();
        for r in batch {
            for e in r.posting.entries() {
                if !self.accounts.contains_key(&e.account_id) {
                    missing.insert(e.account_id);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if self.accounts.len() + missing.len() > self.config.cache_capacity {
            // Simple bound: start again from what this batch needs.
            self.accounts.clear();
            for r in batch {
                for e in r.posting.entries() {
                    missing.insert(e.account_id);
                }
            }
        }
        self.load(missing.into_iter()).await
    }

    /// Reads the given accounts' balances into the cache, replacing what it held.
    async fn load(&mut self, ids: impl Iterator<Item = LedgerAccountId>) -> Result<(), Failure> {
        let ids: Vec<Uuid> = ids.map(|id| id.as_uuid()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let conn = self.conn()?;
        let rows = sqlx::query(
            "SELECT a.id, a.normal_balance, a.currency, b.allow_negative, b.settled, b.pending, \
             b.version FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id \
             WHERE a.id = ANY($1)",
        )
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

    /// Reads again the accounts of refusals that depend on a balance; true if any of them
    /// changed since it was cached (another instance posted to it), so the refusals must be
    /// planned again rather than answered.
    async fn refusals_stale(
        &mut self,
        rejected: &[(usize, Request, LedgerError)],
    ) -> Result<bool, Failure> {
        let accounts: HashSet<LedgerAccountId> = rejected
            .iter()
            .filter(|(_, _, e)| matches!(e, LedgerError::InsufficientBalance { .. }))
            .flat_map(|(_, r, _)| r.posting.entries().iter().map(|e| e.account_id))
            .collect();
        if accounts.is_empty() {
            return Ok(false);
        }
        let before: Vec<(LedgerAccountId, Option<i64>)> = accounts
            .iter()
            .map(|id| (*id, self.accounts.get(id).map(|a| a.version)))
            .collect();
        self.load(accounts.into_iter()).await?;
        Ok(before
            .iter()
            .any(|(id, v)| self.accounts.get(id).map(|a| a.version) != *v))
    }

    /// Applies one posting on top of the cache and the batch so far.
    fn apply(
        &self,
        posting: &Posting,
        overlay: &HashMap<LedgerAccountId, Touched>,
    ) -> Result<Vec<(LedgerAccountId, CachedAccount)>, LedgerError> {
        if !self.journals.contains(&posting.journal_id()) {
            return Err(LedgerError::UnknownJournal {
                journal_id: posting.journal_id(),
            });
        }
        // (account, state before, settled change, pending change)
        let mut local: Vec<(LedgerAccountId, CachedAccount, i64, i64)> = Vec::with_capacity(4);
        for e in posting.entries() {
            let idx = match local.iter().position(|l| l.0 == e.account_id) {
                Some(i) => i,
                None => {
                    let acc = overlay
                        .get(&e.account_id)
                        .map(|t| t.account)
                        .or_else(|| self.accounts.get(&e.account_id).copied())
                        .ok_or(LedgerError::UnknownAccount {
                            account_id: e.account_id,
                        })?;
                    local.push((e.account_id, acc, 0, 0));
                    local.len() - 1
                }
            };
            let (account_id, acc, settled_change, pending_change) = &mut local[idx];
            if acc.currency != e.currency {
                return Err(LedgerError::CurrencyMismatch {
                    account_id: *account_id,
                    account_currency: acc.currency,
                    entry_currency: e.currency,
                });
            }
            let amount = e.amount.to_i64();
            let signed = if e.direction == acc.normal {
                amount
            } else {
                -amount
            };
            let target = match e.layer {
                Layer::Settled => settled_change,
                Layer::Pending => pending_change,
            };
            *target = target.checked_add(signed).ok_or(LedgerError::Overflow {
                account_id: *account_id,
            })?;
        }
        let mut out = Vec::with_capacity(local.len());
        for (account_id, acc, settled_change, pending_change) in local {
            let overflow = LedgerError::Overflow { account_id };
            let settled = acc.settled.checked_add(settled_change).ok_or(overflow)?;
            let pending = acc
                .pending
                .checked_add(pending_change)
                .ok_or(LedgerError::Overflow { account_id })?;
            if !acc.allow_negative
                && (settled < 0 || settled.checked_add(pending).is_none_or(|v| v < 0))
            {
                return Err(LedgerError::InsufficientBalance {
                    account_id,
                    settled: acc.settled,
                    pending: acc.pending,
                    settled_change,
                    pending_change,
                });
            }
            out.push((
                account_id,
                CachedAccount {
                    settled,
                    pending,
                    ..acc
                },
            ));
        }
        Ok(out)
    }

    fn plan(&self, todo: Vec<(usize, Request)>, deferred: &mut Vec<Request>) -> Plan {
        let mut seen: HashSet<String> = HashSet::new();
        let mut plan = Plan {
            accepted: Vec::new(),
            rejected: Vec::new(),
            overlay: HashMap::new(),
        };
        for (order, request) in todo {
            if !seen.insert(request.posting.external_id().to_owned()) {
                deferred.push(request);
                continue;
            }
            match self.apply(&request.posting, &plan.overlay) {
                Ok(changes) => {
                    let id = TransactionId::new();
                    for (account_id, account) in changes {
                        plan.overlay.insert(
                            account_id,
                            Touched {
                                account,
                                last_tx: id,
                            },
                        );
                    }
                    plan.accepted.push(Accepted { order, request, id });
                }
                Err(e) => plan.rejected.push((order, request, e)),
            }
        }
        plan
    }

    async fn write(&mut self, plan: &Plan, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
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

    async fn lookup(
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

    /// One pass over a batch. Returns the requests deferred to the next batch, or on
    /// failure every request not yet answered.
    async fn attempt(
        &mut self,
        batch: Vec<Request>,
    ) -> Result<Vec<Request>, (Vec<Request>, Failure)> {
        let mut deferred = Vec::new();
        match self.attempt_inner(batch, &mut deferred).await {
            Ok(()) => Ok(deferred),
            Err((mut unanswered, f)) => {
                unanswered.extend(deferred);
                Err((unanswered, f))
            }
        }
    }

    async fn attempt_inner(
        &mut self,
        batch: Vec<Request>,
        deferred: &mut Vec<Request>,
    ) -> Result<(), (Vec<Request>, Failure)> {
        if let Err(f) = self.ensure_conn().await {
            return Err((batch, f));
        }
        if let Err(f) = self.load_missing(&batch).await {
            return Err((batch, f));
        }
        let mut todo: Vec<(usize, Request)> = batch.into_iter().enumerate().collect();
        let mut conflicts = 0u32;
        for _round in 0..MAX_ROUNDS {
            let plan = self.plan(std::mem::take(&mut todo), deferred);
            if !plan.accepted.is_empty() {
                let now = Utc::now();
                let started = std::time::Instant::now();
                let written = self.write(&plan, now).await;
                metrics::histogram!("bastion_ledger_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                match written {
                    Ok(()) => {
                        metrics::histogram!("bastion_ledger_batch_postings")
                            .record(plan.accepted.len() as f64);
                        self.stats.committed(plan.accepted.len());
                        for (id, t) in &plan.overlay {
                            self.accounts.insert(
                                *id,
                                CachedAccount {
                                    version: t.account.version + 1,
                                    ..t.account
                                },
                            );
                        }
                        for a in plan.accepted {
                            let p = &a.request.posting;
                            let posted = PostedTransaction {
                                id: a.id,
                                external_id: p.external_id().to_owned(),
                                journal_id: p.journal_id(),
                                created_at: now,
                                replayed: false,
                            };
                            let _ = a.request.reply.send(Ok(posted));
                        }
                    }
                    Err(e) if is_external_id_violation(&e) => {
                        // Nothing was written: some postings are replays. Answer those, and
                        // plan everything else again (rejections included, since a replay
                        // that was counted may have caused them).
                        let ids = plan
                            .accepted
                            .iter()
                            .map(|a| a.request.posting.external_id().to_owned())
                            .collect();
                        let existing = match self.lookup(ids).await {
                            Ok(x) => x,
                            Err(f) => return Err((all_requests(plan), f)),
                        };
                        if existing.is_empty() {
                            return Err((all_requests(plan), Failure::from_sqlx(&e)));
                        }
                        for a in plan.accepted {
                            match existing.get(a.request.posting.external_id()) {
                                Some(orig) => answer_existing(a.request, orig),
                                None => todo.push((a.order, a.request)),
                            }
                        }
                        todo.extend(plan.rejected.into_iter().map(|(o, r, _)| (o, r)));
                        todo.sort_by_key(|(o, _)| *o);
                        continue;
                    }
                    Err(e) if is_version_conflict(&e) => {
                        // Another instance moved a balance this batch touches: nothing was
                        // written. Read the batch's accounts again and plan it again.
                        metrics::counter!("bastion_ledger_conflicts_total").increment(1);
                        self.stats.conflicted();
                        conflicts += 1;
                        let accounts: HashSet<LedgerAccountId> =
                            plan.overlay.keys().copied().collect();
                        todo = all_requests_ordered(plan);
                        if let Err(f) = self.load(accounts.into_iter()).await {
                            return Err((todo.into_iter().map(|(_, r)| r).collect(), f));
                        }
                        if conflicts > 2 {
                            // Two instances on one hot account: step aside for a moment so
                            // that the other's batch commits rather than both retrying.
                            tokio::time::sleep(Duration::from_micros(
                                200 * u64::from(conflicts.min(10)),
                            ))
                            .await;
                        }
                        continue;
                    }
                    Err(e) => return Err((all_requests(plan), Failure::from_sqlx(&e))),
                }
            }
            // The accepted postings are committed (or there were none): answer rejections,
            // unless the rejected posting is a replay of an earlier one.
            if !plan.rejected.is_empty() {
                // A refusal planned on a balance another instance has since moved may be
                // wrong: plan it again on the stored balance.
                match self.refusals_stale(&plan.rejected).await {
                    Ok(false) => {}
                    Ok(true) => {
                        todo = plan.rejected.into_iter().map(|(o, r, _)| (o, r)).collect();
                        continue;
                    }
                    Err(f) => {
                        let reqs = plan.rejected.into_iter().map(|(_, r, _)| r).collect();
                        return Err((reqs, f));
                    }
                }
                let ids = plan
                    .rejected
                    .iter()
                    .map(|(_, r, _)| r.posting.external_id().to_owned())
                    .collect();
                let existing = match self.lookup(ids).await {
                    Ok(x) => x,
                    Err(f) => {
                        let reqs = plan.rejected.into_iter().map(|(_, r, _)| r).collect();
                        return Err((reqs, f));
                    }
                };
                for (_, request, error) in plan.rejected {
                    match existing.get(request.posting.external_id()) {
                        Some(orig) => answer_existing(request, orig),
                        None => {
                            let _ = request.reply.send(Err(error));
                        }
                    }
                }
            }
            return Ok(());
        }
        let reqs = todo.into_iter().map(|(_, r)| r).collect();
        Err((
            reqs,
            Failure {
                reason: "too many rounds (replays or conflicts with other instances)".into(),
                connection_lost: false,
            },
        ))
    }
}

fn all_requests(plan: Plan) -> Vec<Request> {
    all_requests_ordered(plan)
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

/// Every request of a plan with its place in the batch, in batch order.
fn all_requests_ordered(plan: Plan) -> Vec<(usize, Request)> {
    let mut all: Vec<(usize, Request)> = plan
        .accepted
        .into_iter()
        .map(|a| (a.order, a.request))
        .chain(plan.rejected.into_iter().map(|(o, r, _)| (o, r)))
        .collect();
    all.sort_by_key(|(o, _)| *o);
    all
}

fn answer_existing(request: Request, orig: &Existing) {
    let result = if orig.voided {
        Err(LedgerError::Voided {
            external_id: request.posting.external_id().to_owned(),
        })
    } else if orig.fingerprint.as_slice() == request.fingerprint.as_slice() {
        Ok(PostedTransaction {
            id: orig.id,
            external_id: request.posting.external_id().to_owned(),
            journal_id: orig.journal_id,
            created_at: orig.created_at,
            replayed: true,
        })
    } else {
        Err(LedgerError::IdempotencyConflict {
            external_id: request.posting.external_id().to_owned(),
            existing: orig.id,
        })
    };
    let _ = request.reply.send(result);
}

/// The batch statement's own abort when a balance row was not at the cached version.
fn is_version_conflict(e: &sqlx::Error) -> bool {
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

fn is_external_id_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("23505")
                && db.constraint() == Some("ledger_transactions_external_id_key")
        }
        _ => false,
    }
}
