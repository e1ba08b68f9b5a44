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
//! instance moved is rolled back whole and planned again inside a transaction that holds
//! its accounts' balance rows (so it conflicts at most once); a refusal that depends on a
//! balance is confirmed against the stored balance before it is answered.

mod plan;
mod store;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::{mpsc, oneshot};

use super::error::LedgerError;
use super::posting::Posting;
use super::{LedgerConfig, LedgerStats, PostedTransaction};
use crate::ids::{JournalId, LedgerAccountId};
use plan::{CachedAccount, all_requests, all_requests_ordered};
pub use store::WRITER_APPLICATION_NAME;
pub(crate) use store::connect;
use store::{Existing, Failure, is_external_id_violation, is_version_conflict};

/// Rounds of one batch (conflicts, replays, stale refusals) before its postings are
/// retried one by one. Each conflict means another instance committed, so the cluster
/// makes progress; the bound keeps one unlucky batch from spinning.
const MAX_ROUNDS: usize = 24;

pub(crate) struct Request {
    pub(crate) posting: Posting,
    pub(crate) fingerprint: [u8; 32],
    pub(crate) reply: oneshot::Sender<Result<PostedTransaction, LedgerError>>,
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
        // Optimistic rounds (one statement, no lock held between statements) until one
        // conflicts; then rounds under the balance rows' locks, which cannot conflict. A
        // writer that only retried would starve while another keeps committing to a hot
        // account: each retry finds a newer version.
        let mut locked = false;
        for _round in 0..MAX_ROUNDS {
            if locked && let Err(f) = self.begin_locked(&todo).await {
                return Err((todo.into_iter().map(|(_, r)| r).collect(), f));
            }
            let plan = self.plan(std::mem::take(&mut todo), deferred);
            if locked && plan.accepted.is_empty() {
                // Nothing to write: release the locks before answering.
                if let Err(e) = self.end_locked(Ok(())).await {
                    return Err((all_requests(plan), Failure::from_sqlx(&e)));
                }
            }
            if !plan.accepted.is_empty() {
                let now = Utc::now();
                let started = std::time::Instant::now();
                let mut written = self.write(&plan, now).await;
                if locked {
                    written = self.end_locked(written).await;
                }
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
                        // written. Plan it again on the balances read under their locks.
                        metrics::counter!("bastion_ledger_conflicts_total").increment(1);
                        self.stats.conflicted();
                        todo = all_requests_ordered(plan);
                        locked = true;
                        continue;
                    }
                    Err(e) => return Err((all_requests(plan), Failure::from_sqlx(&e))),
                }
            }
            // The accepted postings are committed (or there were none): answer rejections,
            // unless the rejected posting is a replay of an earlier one.
            if !plan.rejected.is_empty() {
                // A refusal planned on a balance another instance has since moved may be
                // wrong: plan it again on the stored balance. One planned under the locks
                // was right when it was made.
                let stale = if locked {
                    Ok(false)
                } else {
                    self.refusals_stale(&plan.rejected).await
                };
                match stale {
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
