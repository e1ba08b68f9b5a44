//! Keeping the ledger in step with the node, on every instance:
//!
//! - the **settlement watcher** reads the node's settled invoices from the cursor stored
//!   in `ln_settle_cursor`, credits each (receive.rs: once, by payment hash), and moves
//!   the cursor after the credit. Several instances may read the same settlements; each
//!   credit is taken once and the cursor only moves forward. A lost stream is opened
//!   again from the stored cursor.
//! - the **reconciler** claims PENDING payments past their grace with
//!   `FOR UPDATE SKIP LOCKED` (a lease in `next_check_at` keeps other instances off) and
//!   finishes each from the node's record: paid, failed, still in flight, or never sent
//!   (a crash before the node was called: the hold is released). It runs continuously,
//!   not only at start. A payment it leaves PENDING (still in flight, or the node out of
//!   reach) is looked at again after a tenth of its age, between one reconciler interval
//!   and the lease: a payment that fails after a long wait (a held HTLC released) is
//!   finished within about a tenth of that wait, and long-held payments do not keep the
//!   node busy.

use std::time::Duration;

use async_graphql::futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::send::{LnPending, PENDING_COLUMNS};
use super::{Bank, BankError, lightning_error};
use crate::lightning::{PaymentFailure, PaymentState, SettleCursor};

/// What one reconciler pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Payments claimed.
    pub claimed: usize,
    /// Of those, finished (SUCCESS or FAILURE).
    pub finished: usize,
    /// Of those, still in flight or not finished for an error (a later pass retries).
    pub pending: usize,
}

/// The running watcher and reconciler; they stop when this is dropped.
#[derive(Debug)]
pub struct LightningTasks {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for LightningTasks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How long a claimed payment stays away from other instances' reconcilers.
const LEASE: Duration = Duration::from_secs(60);
/// Payments per reconciler pass.
const BATCH: i64 = 50;

impl Bank {
    /// The stored settlement cursor of the bank's node.
    async fn ln_settle_cursor(&self, pubkey: &str) -> Result<SettleCursor, BankError> {
        let c: Option<i64> =
            sqlx::query_scalar("SELECT cursor FROM ln_settle_cursor WHERE node_pubkey = $1")
                .bind(pubkey)
                .fetch_optional(&self.pool)
                .await?;
        Ok(SettleCursor(
            c.and_then(|c| u64::try_from(c).ok()).unwrap_or(0),
        ))
    }

    async fn ln_store_cursor(&self, pubkey: &str, cursor: SettleCursor) -> Result<(), BankError> {
        let c = i64::try_from(cursor.0).map_err(|_| BankError::Corrupt("cursor".into()))?;
        sqlx::query(
            "INSERT INTO ln_settle_cursor (node_pubkey, cursor) VALUES ($1, $2) \
             ON CONFLICT (node_pubkey) DO UPDATE \
             SET cursor = GREATEST(ln_settle_cursor.cursor, EXCLUDED.cursor), updated_at = now()",
        )
        .bind(pubkey)
        .bind(c)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reads settlements from the stored cursor until the stream ends or fails.
    ///
    /// # Errors
    /// The first error; the caller opens the stream again after a pause.
    pub async fn ln_watch_settlements_once(&self) -> Result<(), BankError> {
        let rail = self.rail()?;
        let cursor = self.ln_settle_cursor(rail.pubkey()).await?;
        let mut stream = rail
            .node
            .settled_invoices(cursor)
            .await
            .map_err(lightning_error)?;
        while let Some(item) = stream.next().await {
            let s = item.map_err(lightning_error)?;
            self.ln_credit_settlement(&s).await?;
            self.ln_store_cursor(rail.pubkey(), s.cursor).await?;
        }
        Ok(())
    }

    /// One reconciler pass.
    ///
    /// # Errors
    /// The database, when the claim fails; a payment that fails to finish is counted in
    /// [`ReconcileReport::pending`].
    pub async fn ln_reconcile(&self) -> Result<ReconcileReport, BankError> {
        let rail = self.rail()?;
        let rows = sqlx::query(&format!(
            "UPDATE ln_payments p SET next_check_at = now() + make_interval(secs => $1) \
             FROM (SELECT id FROM ln_payments \
                   WHERE status = 'PENDING' AND next_check_at <= now() \
                   ORDER BY next_check_at LIMIT $2 FOR UPDATE SKIP LOCKED) c \
             WHERE p.id = c.id RETURNING {}",
            PENDING_COLUMNS
                .split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(LEASE.as_secs_f64())
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        let mut report = ReconcileReport {
            claimed: rows.len(),
            ..ReconcileReport::default()
        };
        for r in rows {
            let p = LnPending::from_row(&r, rail.config.network)?;
            let outcome = if p.internal_recipient.is_some() {
                self.ln_finish_internal(rail, &p).await.map(|r| r.status)
            } else {
                self.ln_reconcile_external(&p).await
            };
            match outcome {
                Ok(super::LnPayStatus::Pending) => report.pending += 1,
                Ok(_) | Err(BankError::InsufficientBalance) => {
                    report.finished += 1;
                    continue;
                }
                Err(e) => {
                    report.pending += 1;
                    tracing::warn!(payment = %p.id, error = %e, "Lightning payment not reconciled; a later pass retries it");
                }
            }
            self.ln_next_check(p.id, rail.config.reconcile_interval)
                .await?;
        }
        Ok(report)
    }

    /// Gives up the lease on a payment left PENDING: the next look after a tenth of its
    /// age, at least `interval`, at most the lease.
    async fn ln_next_check(
        &self,
        id: crate::ids::PaymentId,
        interval: Duration,
    ) -> Result<(), BankError> {
        sqlx::query!(
            "UPDATE ln_payments SET next_check_at = now() + GREATEST( \
                 make_interval(secs => $2), \
                 LEAST(make_interval(secs => $3), (now() - created_at) / 10)) \
             WHERE id = $1 AND status = 'PENDING'",
            id.as_uuid(),
            interval.as_secs_f64(),
            LEASE.as_secs_f64(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Finishes an external payment from the node's record of it.
    async fn ln_reconcile_external(&self, p: &LnPending) -> Result<super::LnPayStatus, BankError> {
        let rail = self.rail()?;
        let held = self
            .ledger
            .transaction_by_external_id(&super::send::hold_id(p.id))
            .await?;
        let known = rail.node.payment(&p.hash).await.map_err(lightning_error)?;
        let result = match (held, known) {
            // The hold never posted: the request stopped before calling the node, so the
            // node cannot have paid it. Finish it the way the request would have.
            (None, None) => self.ln_finish_external(rail, p, false).await?,
            // Held (or voided), and the node never saw it (a crash between the hold and
            // the call): nothing was sent, the hold is released.
            (Some(t), None) if !t.voided => {
                self.ln_settle(p, PaymentState::Failed(PaymentFailure::Other))
                    .await?
            }
            (Some(_), None) => self.ln_finish_external(rail, p, false).await?,
            (_, Some(state)) => self.ln_settle(p, state).await?,
        };
        Ok(result.status)
    }

    /// Starts this instance's settlement watcher and reconciler.
    pub fn spawn_lightning_tasks(&self) -> Result<LightningTasks, BankError> {
        let interval = self.rail()?.config.reconcile_interval;
        let watcher = {
            let bank = self.clone();
            tokio::spawn(async move {
                let mut pause = Duration::from_millis(200);
                loop {
                    match bank.ln_watch_settlements_once().await {
                        Ok(()) => pause = Duration::from_millis(200),
                        Err(e) => {
                            tracing::warn!(error = %e, "settlement stream lost; reopening from the stored cursor");
                            pause = (pause * 2).min(Duration::from_secs(10));
                        }
                    }
                    tokio::time::sleep(pause).await;
                }
            })
        };
        let reconciler = {
            let bank = self.clone();
            tokio::spawn(async move {
                loop {
                    match bank.ln_reconcile().await {
                        Ok(r) if r.claimed > 0 => tracing::info!(
                            claimed = r.claimed,
                            finished = r.finished,
                            pending = r.pending,
                            "reconciled Lightning payments"
                        ),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "reconciling Lightning payments failed")
                        }
                    }
                    tokio::time::sleep(interval).await;
                }
            })
        };
        Ok(LightningTasks {
            tasks: vec![watcher, reconciler],
        })
    }
}
