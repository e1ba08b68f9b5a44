//! Internal transfers (`intraLedgerPaymentSend`) and wallet transaction history.
//!
//! A payment is a small state machine: a PENDING row is written (with the account row
//! locked, so the rolling limit cannot be raced) and committed; the ledger posting follows
//! with the external id `intraledger:<payment id>`; the row then becomes SUCCESS or
//! FAILURE. A crash between the steps leaves a PENDING row that any instance's resumer
//! (`resume.rs`) claims and finishes: the ledger posting is idempotent.
//!
//! Several finishers may work on one PENDING payment at once (a client's retry, another
//! instance's resumer). A refusal for want of funds is made final in the ledger first: the
//! payment's external id is voided, and only then is the row marked FAILURE, so a finisher
//! that posts after a credit is refused too; one that posted before the void makes the
//! payment a success.

use serde::Serialize;
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::types::{AccountStatus, Level, ParseError, Scope, Username};
use super::{Bank, BankError, Principal, sats_from_db};
use crate::amount::Sats;
use crate::ids::{PaymentId, TransactionId, WalletId};
use crate::ledger::{LedgerError, Posting, VoidOutcome, system};

/// Longest memo, in bytes.
pub const MAX_MEMO_LEN: usize = 1_000;

/// Whom to pay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// A wallet id.
    Wallet(WalletId),
    /// The default wallet of a username.
    Username(Username),
}

/// An internal transfer request.
#[derive(Clone, Debug)]
pub struct SendRequest {
    /// The paying wallet (the caller's).
    pub wallet_id: WalletId,
    /// The recipient.
    pub recipient: Recipient,
    /// The amount.
    pub amount: Sats,
    /// A memo shown to both sides.
    pub memo: Option<String>,
    /// The caller's idempotency key: sending again with it returns the first outcome.
    pub idempotency_key: Option<String>,
}

/// Outcome of a send, named as in Blink's `PaymentSendResult`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Paid now.
    Success,
    /// Paid before with the same idempotency key.
    AlreadyPaid,
    /// Written but not yet posted (the ledger was unreachable); it is finished later.
    Pending,
}

/// A completed (or pending) send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PaymentResult {
    /// What happened.
    pub status: PaymentStatus,
    /// The payment.
    pub payment_id: PaymentId,
    /// The ledger transaction, once posted.
    pub transaction_id: Option<TransactionId>,
}

const FAILURE_INSUFFICIENT: &str = "INSUFFICIENT_BALANCE";

/// The ledger external id of a payment's posting.
fn external_id(id: PaymentId) -> String {
    format!("{EXTERNAL_ID_PREFIX}{id}")
}

pub(super) const EXTERNAL_ID_PREFIX: &str = "intraledger:";

/// When a payment's success is written to its row.
#[derive(Clone, Copy, Debug)]
pub(super) enum Settle {
    /// By the settler, after the caller has its answer.
    Deferred,
    /// Before the caller gets its answer.
    Now,
}

/// Counts payments this instance finished, by final state: a counter per replica, which
/// Prometheus sums (a count over the whole table would scan it).
fn count_finished(state: &'static str, n: u64) {
    metrics::counter!("bastion_payments_finished_total", "state" => state).increment(n);
}

async fn record_success(
    pool: &PgPool,
    payments: &[Uuid],
    transactions: &[Uuid],
) -> Result<(), sqlx::Error> {
    let done = sqlx::query(
        "UPDATE intraledger_payments p SET status = 'SUCCESS', transaction_id = u.tx \
         FROM unnest($1::uuid[], $2::uuid[]) AS u(id, tx) \
         WHERE p.id = u.id AND p.status = 'PENDING'",
    )
    .bind(payments)
    .bind(transactions)
    .execute(pool)
    .await?;
    count_finished("success", done.rows_affected());
    Ok(())
}

/// Records posted payments as SUCCESS in batches, one statement per batch, so that a
/// payment costs its payer one commit of its own (the reserve) besides the ledger's group
/// commit. Losing a batch (a crash, a failed statement) loses nothing: the rows stay
/// PENDING, readers post them again (idempotent, answered as already paid) and every
/// instance's resumer (`resume.rs`) records them.
#[derive(Clone, Debug)]
pub(super) struct Settler {
    queue: mpsc::UnboundedSender<(PaymentId, TransactionId)>,
}

/// Most payments recorded by one statement.
const SETTLE_BATCH: usize = 1_000;

impl Settler {
    /// Starts the settler task on the current Tokio runtime.
    pub(super) fn spawn(pool: PgPool) -> Settler {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_settler(pool, rx));
        Settler { queue }
    }

    fn settled(&self, payment: PaymentId, transaction: TransactionId) {
        // A stopped settler leaves the row PENDING, which is safe (see above).
        let _ = self.queue.send((payment, transaction));
    }
}

async fn run_settler(pool: PgPool, mut rx: mpsc::UnboundedReceiver<(PaymentId, TransactionId)>) {
    let mut payments = Vec::with_capacity(SETTLE_BATCH);
    let mut transactions = Vec::with_capacity(SETTLE_BATCH);
    while let Some((p, t)) = rx.recv().await {
        payments.push(p.as_uuid());
        transactions.push(t.as_uuid());
        while payments.len() < SETTLE_BATCH {
            match rx.try_recv() {
                Ok((p, t)) => {
                    payments.push(p.as_uuid());
                    transactions.push(t.as_uuid());
                }
                Err(_) => break,
            }
        }
        if let Err(e) = record_success(&pool, &payments, &transactions).await {
            tracing::warn!(
                error = %e,
                payments = payments.len(),
                "recording payment successes failed; the rows stay PENDING until resumed"
            );
        }
        payments.clear();
        transactions.clear();
    }
}

pub(super) struct Pending {
    pub(super) id: PaymentId,
    pub(super) sender: WalletId,
    pub(super) recipient: WalletId,
    pub(super) amount: Sats,
    pub(super) memo: String,
}

impl Pending {
    /// A payment row's `id, sender_wallet_id, recipient_wallet_id, amount_sats, memo`.
    pub(super) fn from_row(r: &sqlx::postgres::PgRow) -> Result<Pending, BankError> {
        Ok(Pending {
            id: PaymentId::from_uuid(r.try_get("id")?),
            sender: WalletId::from_uuid(r.try_get("sender_wallet_id")?),
            recipient: WalletId::from_uuid(r.try_get("recipient_wallet_id")?),
            amount: sats_from_db(r.try_get("amount_sats")?)?,
            memo: r.try_get("memo")?,
        })
    }
}

impl Bank {
    /// Sends satoshis from one of the caller's wallets to another wallet of this bank.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without the write scope; [`BankError::NotFound`] for a
    /// wallet that is not the caller's or an unknown recipient; [`BankError::InvalidAmount`];
    /// [`BankError::SelfPayment`]; [`BankError::AccountNotActive`];
    /// [`BankError::RecipientUnavailable`]; [`BankError::LimitExceeded`];
    /// [`BankError::InsufficientBalance`]; [`BankError::IdempotencyConflict`]. Nothing
    /// moves when one is returned.
    pub async fn send_internal(
        &self,
        principal: &Principal,
        request: &SendRequest,
    ) -> Result<PaymentResult, BankError> {
        principal.require(Scope::Write)?;
        if request.amount == Sats::ZERO {
            return Err(BankError::InvalidAmount);
        }
        let memo = request.memo.clone().unwrap_or_default();
        if memo.len() > MAX_MEMO_LEN {
            return Err(BankError::Invalid(ParseError {
                what: "memo",
                why: "longer than 1000 bytes",
            }));
        }
        if let Some(key) = &request.idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            return Err(BankError::Invalid(ParseError {
                what: "idempotency key",
                why: "must be 1 to 200 characters",
            }));
        }
        let recipient = match &request.recipient {
            Recipient::Wallet(w) => *w,
            Recipient::Username(u) => self.wallet_of_username(u).await?,
        };
        if recipient == request.wallet_id {
            return Err(BankError::SelfPayment);
        }

        let id = PaymentId::new();
        let amount =
            i64::try_from(request.amount.to_sat()).map_err(|_| BankError::InvalidAmount)?;
        let limits = Level::ALL
            .iter()
            .map(|&l| i64::try_from(self.config.limits.of(l).internal_send.to_sat()))
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|_| BankError::Corrupt("internal-send limit above i64".into()))?;
        // One round trip and one commit: lock, replay check, rules and the PENDING row
        // (migrations 0004_payment_reserve.sql and 0006_reserve_fast_path.sql).
        let row = sqlx::query("SELECT * FROM intraledger_reserve($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(id.as_uuid())
            .bind(principal.account_id.as_uuid())
            .bind(request.wallet_id.as_uuid())
            .bind(recipient.as_uuid())
            .bind(amount)
            .bind(&memo)
            .bind(&request.idempotency_key)
            .bind(&limits)
            .fetch_one(&self.pool)
            .await?;
        let outcome: String = row.try_get("outcome")?;
        let pending = Pending {
            id,
            sender: request.wallet_id,
            recipient,
            amount: request.amount,
            memo,
        };
        match outcome.as_str() {
            "INSERTED" => self.finish(pending, Settle::Deferred).await,
            "EXISTING" => self.replay(&row, pending).await,
            "WALLET_NOT_FOUND" => Err(BankError::NotFound { what: "wallet" }),
            "NOT_ACTIVE" => {
                let status: AccountStatus = row.try_get::<String, _>("account_status")?.parse()?;
                Err(BankError::AccountNotActive {
                    status: status.as_str(),
                })
            }
            "RECIPIENT_NOT_FOUND" => Err(BankError::NotFound { what: "recipient" }),
            "RECIPIENT_CLOSED" => Err(BankError::RecipientUnavailable),
            "LIMIT" => Err(BankError::LimitExceeded {
                limit: sats_from_db(row.try_get("send_limit")?)?,
                used: sats_from_db(row.try_get("used")?)?,
                amount: request.amount,
            }),
            other => Err(BankError::Corrupt(format!(
                "payment reserve outcome {other}"
            ))),
        }
    }

    /// Answers a send whose idempotency key was used before: the first outcome, or
    /// [`BankError::IdempotencyConflict`] when the request differs.
    async fn replay(
        &self,
        row: &sqlx::postgres::PgRow,
        request: Pending,
    ) -> Result<PaymentResult, BankError> {
        let same = row.try_get::<Uuid, _>("existing_sender")? == request.sender.as_uuid()
            && row.try_get::<Uuid, _>("existing_recipient")? == request.recipient.as_uuid()
            && sats_from_db(row.try_get("existing_amount")?)? == request.amount
            && row.try_get::<String, _>("existing_memo")? == request.memo;
        if !same {
            return Err(BankError::IdempotencyConflict);
        }
        let id = PaymentId::from_uuid(row.try_get("existing_id")?);
        let state: String = row.try_get("existing_status")?;
        match state.as_str() {
            "SUCCESS" => Ok(PaymentResult {
                status: PaymentStatus::AlreadyPaid,
                payment_id: id,
                transaction_id: row
                    .try_get::<Option<Uuid>, _>("existing_transaction")?
                    .map(TransactionId::from_uuid),
            }),
            // Posted but not yet recorded as such, or not posted at all: posting again is
            // idempotent, and the ledger says which of the two it was.
            "PENDING" => {
                self.finish(Pending { id, ..request }, Settle::Deferred)
                    .await
            }
            _ => {
                let reason: Option<String> = row.try_get("existing_failure")?;
                Err(match reason.as_deref() {
                    Some(FAILURE_INSUFFICIENT) => BankError::InsufficientBalance,
                    _ => BankError::Corrupt("failed payment without a reason".into()),
                })
            }
        }
    }

    /// Posts a pending payment to the ledger and records the outcome. A success is
    /// recorded by the settler (`Settle::Deferred`, off the caller's path) or before
    /// returning (`Settle::Now`); until then the row stays PENDING, which every reader
    /// treats as "post it again" (idempotent) rather than as unpaid.
    pub(super) async fn finish(
        &self,
        p: Pending,
        settle: Settle,
    ) -> Result<PaymentResult, BankError> {
        let posting = Posting::builder(system::MAIN_JOURNAL, external_id(p.id))
            .description(p.memo.clone())
            .metadata(serde_json::json!({ "type": "intraledger", "payment_id": p.id }))
            .debit(Bank::ledger_account(p.sender), p.amount.to_msats())
            .credit(Bank::ledger_account(p.recipient), p.amount.to_msats())
            .build()
            .map_err(LedgerError::from)?;
        match self.ledger.post(posting).await {
            Ok(posted) => {
                match settle {
                    Settle::Deferred => self.settler.settled(p.id, posted.id),
                    Settle::Now => {
                        record_success(&self.pool, &[p.id.as_uuid()], &[posted.id.as_uuid()])
                            .await?;
                    }
                }
                Ok(PaymentResult {
                    status: if posted.replayed {
                        PaymentStatus::AlreadyPaid
                    } else {
                        PaymentStatus::Success
                    },
                    payment_id: p.id,
                    transaction_id: Some(posted.id),
                })
            }
            // Refused for want of funds: give up only once the ledger has voided the
            // payment's external id, so that a retry or another instance's resumer cannot
            // post it after a credit while the row says FAILURE. If one posted first, the
            // payment is paid.
            Err(LedgerError::InsufficientBalance { .. }) => {
                let reason = "intraledger payment refused: insufficient balance";
                match self
                    .ledger
                    .void(system::MAIN_JOURNAL, &external_id(p.id), reason)
                    .await?
                {
                    VoidOutcome::Voided => {
                        self.record_failure(p.id).await?;
                        Err(BankError::InsufficientBalance)
                    }
                    VoidOutcome::Posted(tx) => {
                        record_success(&self.pool, &[p.id.as_uuid()], &[tx.as_uuid()]).await?;
                        Ok(PaymentResult {
                            status: PaymentStatus::AlreadyPaid,
                            payment_id: p.id,
                            transaction_id: Some(tx),
                        })
                    }
                }
            }
            // Another finisher gave up on it first.
            Err(LedgerError::Voided { .. }) => {
                self.record_failure(p.id).await?;
                Err(BankError::InsufficientBalance)
            }
            // Anything else leaves the payment PENDING, to be finished later.
            Err(e) => Err(e.into()),
        }
    }

    /// Records a payment whose posting the ledger voided as FAILURE. Idempotent: the amount
    /// leaves the sender's running window (migration 0004), if it is still inside, only
    /// with the status change. The sender's account row is locked before the payment row,
    /// in the reserve's order: the other order deadlocks with a retry's reserve, which
    /// waits on the payment's unique key while holding the account.
    async fn record_failure(&self, id: PaymentId) -> Result<(), BankError> {
        let failed: i64 = sqlx::query_scalar(
            "WITH failed AS ( \
                UPDATE intraledger_payments SET status = 'FAILURE', failure_reason = $2 \
                WHERE id = $1 AND status = 'PENDING' AND sender_account_id = ( \
                    SELECT a.id FROM accounts a \
                    JOIN intraledger_payments p ON p.sender_account_id = a.id \
                    WHERE p.id = $1 FOR UPDATE OF a) \
                RETURNING sender_account_id, amount_sats, created_at), \
             freed AS ( \
                UPDATE accounts a \
                SET internal_sent_window = a.internal_sent_window - f.amount_sats \
                FROM failed f \
                WHERE a.id = f.sender_account_id AND f.created_at > a.internal_window_from) \
             SELECT count(*) FROM failed",
        )
        .bind(id.as_uuid())
        .bind(FAILURE_INSUFFICIENT)
        .fetch_one(&self.pool)
        .await?;
        count_finished("failure", u64::try_from(failed).unwrap_or(0));
        Ok(())
    }

    /// Finishes every PENDING payment (after a crash or a ledger outage). Safe to run at
    /// any time: the ledger posting of a payment is idempotent.
    ///
    /// # Errors
    /// The first error that stops a payment from finishing.
    pub async fn resume_pending_payments(&self) -> Result<usize, BankError> {
        let rows = sqlx::query(
            "SELECT id, sender_wallet_id, recipient_wallet_id, amount_sats, memo \
             FROM intraledger_payments WHERE status = 'PENDING' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut finished = 0;
        for r in rows {
            match self.finish(Pending::from_row(&r)?, Settle::Now).await {
                Ok(_) | Err(BankError::InsufficientBalance) => finished += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(finished)
    }
}
