//! Payments left PENDING are finished by whichever instance claims them.
//!
//! A payment stays PENDING when its instance crashed between the steps, the ledger was
//! unreachable, or its success was not yet recorded. Every instance runs a resumer: at
//! start and then every `interval`, it claims the oldest PENDING payments older than
//! `grace` (so that it leaves alone those an instance is finishing right now) with
//! `FOR UPDATE SKIP LOCKED`, marks them claimed for `lease`, and finishes each. Finishing
//! posts again with the payment's external id, which the ledger answers as a replay when
//! the first attempt had posted: nothing is paid twice. A payment that fails to finish
//! is logged and left to a later pass (its claim lapses); the others go on.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::payments::{Pending, Settle};
use super::{Bank, BankError};

/// How the resumer works.
#[derive(Clone, Debug)]
pub struct ResumeConfig {
    /// Time between passes.
    pub interval: Duration,
    /// Age below which a PENDING payment is left to the instance that made it.
    pub grace: Duration,
    /// How long a claim keeps other instances away.
    pub lease: Duration,
    /// Payments claimed per pass at most.
    pub batch: i64,
}

impl Default for ResumeConfig {
    fn default() -> Self {
        ResumeConfig {
            interval: Duration::from_secs(5),
            grace: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            batch: 100,
        }
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResumeReport {
    /// Payments claimed.
    pub claimed: usize,
    /// Of those, finished (SUCCESS, or FAILURE for want of funds).
    pub finished: usize,
    /// Of those, left PENDING for a later pass.
    pub failed: usize,
}

/// The running resumer; stops when dropped.
#[derive(Debug)]
pub struct ResumerHandle {
    task: JoinHandle<()>,
}

impl Drop for ResumerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const CLAIM: &str = "
UPDATE intraledger_payments p
SET claimed_until = now() + make_interval(secs => $1)
FROM (
    SELECT id FROM intraledger_payments
    WHERE status = 'PENDING'
      AND created_at < now() - make_interval(secs => $2)
      AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY created_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
) c
WHERE p.id = c.id
RETURNING p.id, p.sender_wallet_id, p.recipient_wallet_id, p.amount_sats, p.memo";

impl Bank {
    /// One resumer pass: claims PENDING payments no other instance holds and finishes them.
    ///
    /// # Errors
    /// The database, when the claim itself fails; a payment that fails to finish is
    /// counted in [`ResumeReport::failed`] instead.
    pub async fn resume_claimed_payments(
        &self,
        config: &ResumeConfig,
    ) -> Result<ResumeReport, BankError> {
        let rows = sqlx::query(CLAIM)
            .bind(config.lease.as_secs_f64())
            .bind(config.grace.as_secs_f64())
            .bind(config.batch)
            .fetch_all(&self.pool)
            .await?;
        let mut report = ResumeReport {
            claimed: rows.len(),
            ..ResumeReport::default()
        };
        for r in rows {
            let p = Pending::from_row(&r)?;
            let id = p.id;
            match self.finish(p, Settle::Now).await {
                Ok(_) | Err(BankError::InsufficientBalance) => report.finished += 1,
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(payment = %id, error = %e, "pending payment not finished; a later pass retries it");
                }
            }
        }
        Ok(report)
    }

    /// Starts this instance's resumer: a pass now, then one every `config.interval`.
    pub fn spawn_payment_resumer(&self, config: ResumeConfig) -> ResumerHandle {
        let bank = self.clone();
        let task = tokio::spawn(async move {
            loop {
                match bank.resume_claimed_payments(&config).await {
                    Ok(r) if r.claimed > 0 => {
                        tracing::info!(
                            claimed = r.claimed,
                            finished = r.finished,
                            failed = r.failed,
                            "resumed pending payments"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "claiming pending payments failed"),
                }
                tokio::time::sleep(config.interval).await;
            }
        });
        ResumerHandle { task }
    }
}
