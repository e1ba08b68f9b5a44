//! Finishing a payment out: an invoice of the bank's own node paid inside the ledger, or
//! an external one held, sent and settled from the node's answer (send.rs writes the row;
//! the reconciler in watch.rs calls these again for payments left PENDING).

use super::send::{LnPayResult, LnPayStatus, LnPending, final_id, hold_id, internal_id};
use super::{Bank, BankError, LightningRail, hash_bytes, lightning_error};
use crate::amount::Msats;
use crate::ids::{PaymentId, TransactionId};
use crate::ledger::{
    Currency, Direction, Layer, LedgerError, PostedTransaction, Posting, PostingBuilder,
    VoidOutcome, system,
};
use crate::lightning::{LightningError, PayRequest, PaymentFailure, PaymentState};

fn pending_entry(
    b: PostingBuilder,
    account: crate::ids::LedgerAccountId,
    d: Direction,
    m: Msats,
) -> PostingBuilder {
    b.entry(account, d, Layer::Pending, Currency::Btc, m)
}

const FAILURE_INSUFFICIENT: &str = "INSUFFICIENT_BALANCE";

/// The answer for a payment whose posting went through (or had gone through before).
fn paid(id: PaymentId, posted: &PostedTransaction) -> LnPayResult {
    LnPayResult {
        status: if posted.replayed {
            LnPayStatus::AlreadyPaid
        } else {
            LnPayStatus::Success
        },
        payment_id: id,
        failure: None,
        transaction_id: Some(posted.id),
    }
}

impl Bank {
    /// Pays an invoice of the bank's own node inside the ledger, then cancels it at the
    /// node so that nobody pays it over Lightning too.
    pub(super) async fn ln_finish_internal(
        &self,
        rail: &LightningRail,
        p: &LnPending,
    ) -> Result<LnPayResult, BankError> {
        let recipient = p
            .internal_recipient
            .ok_or_else(|| BankError::Corrupt("internal payment without recipient".into()))?;
        let posting = Posting::builder(system::MAIN_JOURNAL, internal_id(p.id))
            .description(p.memo.clone())
            .metadata(serde_json::json!({
                "type": "ln_internal", "payment_id": p.id, "payment_hash": p.hash.to_string(),
            }))
            .debit(Bank::ledger_account(p.wallet), p.amount)
            .credit(Bank::ledger_account(recipient), p.amount)
            .build()
            .map_err(LedgerError::from)?;
        match self.ledger.post(posting).await {
            Ok(posted) => {
                if let Err(e) = rail.node.cancel_invoice(&p.hash).await {
                    // The reconciler does not retry this: an invoice paid at the node
                    // after this point is reported by the settlement watcher.
                    tracing::warn!(payment_hash = %p.hash, error = %e, "cancelling an invoice paid internally failed");
                }
                sqlx::query("UPDATE ln_invoices SET transaction_id = $2 WHERE payment_hash = $1")
                    .bind(hash_bytes(&p.hash))
                    .bind(posted.id.as_uuid())
                    .execute(&self.pool)
                    .await?;
                self.ln_record(
                    p.id,
                    Outcome::Success {
                        fee: Msats::ZERO,
                        preimage: None,
                        tx: posted.id,
                    },
                )
                .await?;
                Ok(paid(p.id, &posted))
            }
            Err(LedgerError::InsufficientBalance { .. }) | Err(LedgerError::Voided { .. }) => {
                match self
                    .ledger
                    .void(
                        system::MAIN_JOURNAL,
                        &internal_id(p.id),
                        "insufficient balance",
                    )
                    .await?
                {
                    VoidOutcome::Posted(tx) => {
                        self.ln_record(
                            p.id,
                            Outcome::Success {
                                fee: Msats::ZERO,
                                preimage: None,
                                tx,
                            },
                        )
                        .await?;
                        Ok(LnPayResult {
                            status: LnPayStatus::AlreadyPaid,
                            payment_id: p.id,
                            failure: None,
                            transaction_id: Some(tx),
                        })
                    }
                    VoidOutcome::Voided => {
                        // The recipient's invoice is payable again.
                        sqlx::query(
                            "UPDATE ln_invoices SET status = 'PENDING', paid_via = NULL, \
                                 paid_msats = NULL, paid_at = NULL \
                             WHERE payment_hash = $1 AND paid_via = 'INTRALEDGER' \
                               AND transaction_id IS NULL",
                        )
                        .bind(hash_bytes(&p.hash))
                        .execute(&self.pool)
                        .await?;
                        self.ln_record(p.id, Outcome::Failure(FAILURE_INSUFFICIENT))
                            .await?;
                        Err(BankError::InsufficientBalance)
                    }
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Holds the funds, calls the node, and settles what the node answers. `fresh`: this
    /// request wrote the row (a resumed payment may have been sent already: the node is
    /// asked first).
    pub(super) async fn ln_finish_external(
        &self,
        rail: &LightningRail,
        p: &LnPending,
        fresh: bool,
    ) -> Result<LnPayResult, BankError> {
        let held = p.held()?;
        let hold = pending_entry(
            pending_entry(
                Posting::builder(system::MAIN_JOURNAL, hold_id(p.id))
                    .description(p.memo.clone())
                    .metadata(serde_json::json!({
                        "type": "ln_send_hold", "payment_id": p.id,
                        "payment_hash": p.hash.to_string(),
                    })),
                Bank::ledger_account(p.wallet),
                Direction::Debit,
                held,
            ),
            system::BANK_LIGHTNING,
            Direction::Credit,
            held,
        )
        .build()
        .map_err(LedgerError::from)?;
        match self.ledger.post(hold).await {
            Ok(_) => {}
            Err(LedgerError::InsufficientBalance { .. }) | Err(LedgerError::Voided { .. }) => {
                return match self
                    .ledger
                    .void(system::MAIN_JOURNAL, &hold_id(p.id), "insufficient balance")
                    .await?
                {
                    // Another finisher held it first: carry on with the node.
                    VoidOutcome::Posted(_) => Box::pin(self.ln_after_hold(rail, p, fresh)).await,
                    VoidOutcome::Voided => {
                        self.ln_record(p.id, Outcome::Failure(FAILURE_INSUFFICIENT))
                            .await?;
                        Err(BankError::InsufficientBalance)
                    }
                };
            }
            Err(e) => return Err(e.into()),
        }
        self.ln_after_hold(rail, p, fresh).await
    }

    async fn ln_after_hold(
        &self,
        rail: &LightningRail,
        p: &LnPending,
        fresh: bool,
    ) -> Result<LnPayResult, BankError> {
        let known = if fresh {
            None
        } else {
            rail.node.payment(&p.hash).await.map_err(lightning_error)?
        };
        let state = match known {
            Some(state) => Ok(state),
            None => {
                rail.node
                    .pay(&PayRequest {
                        payment_request: p.payment_request.clone(),
                        payment_hash: p.hash,
                        amount: p.no_amount.then_some(p.amount),
                        max_fee: p.fee_reserve,
                        timeout: rail.config.pay_timeout,
                    })
                    .await
            }
        };
        let state = match state {
            Ok(s) => s,
            // Refused before anything was sent.
            Err(LightningError::NoRoute(_)) => PaymentState::Failed(PaymentFailure::NoRoute),
            Err(LightningError::Invalid(why)) => {
                tracing::info!(payment_id = %p.id, error = %why, "the node refused the payment");
                PaymentState::Failed(PaymentFailure::RecipientRejected)
            }
            Err(e) => {
                // The request may or may not have reached the node: ask it.
                match rail.node.payment(&p.hash).await {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        self.ln_settle(p, PaymentState::Failed(PaymentFailure::Other))
                            .await?;
                        return Err(lightning_error(e));
                    }
                    // Out of reach now, with the funds held and the payment perhaps
                    // taken: the outcome is unknown, so PENDING (not "nothing moved");
                    // the reconciler finishes it once the node answers again.
                    Err(again) => {
                        tracing::warn!(payment_id = %p.id, error = %e, lookup = %again, "the node went out of reach during a payment; it stays PENDING");
                        PaymentState::InFlight
                    }
                }
            }
        };
        self.ln_settle(p, state).await
    }

    /// Posts the final posting of an external payment for the node's outcome and records
    /// it. In flight: nothing yet (PENDING).
    pub(super) async fn ln_settle(
        &self,
        p: &LnPending,
        state: PaymentState,
    ) -> Result<LnPayResult, BankError> {
        let held = p.held()?;
        let release = |b: PostingBuilder| {
            pending_entry(
                pending_entry(b, Bank::ledger_account(p.wallet), Direction::Credit, held),
                system::BANK_LIGHTNING,
                Direction::Debit,
                held,
            )
        };
        let base =
            Posting::builder(system::MAIN_JOURNAL, final_id(p.id)).description(p.memo.clone());
        let (posting, outcome) = match state {
            PaymentState::InFlight => {
                return Ok(LnPayResult {
                    status: LnPayStatus::Pending,
                    payment_id: p.id,
                    failure: None,
                    transaction_id: None,
                });
            }
            PaymentState::Succeeded { preimage, fee } => {
                // A node that charged more than the reserve broke its promise; the bank
                // still books what left it.
                if fee > p.fee_reserve {
                    tracing::error!(payment_id = %p.id, fee = fee.to_msat(), reserve = p.fee_reserve.to_msat(), "routing fee above the reserve");
                }
                let spent = p
                    .amount
                    .checked_add(fee)
                    .map_err(|_| BankError::InvalidAmount)?;
                let posting = release(base.metadata(serde_json::json!({
                    "type": "ln_send", "payment_id": p.id, "payment_hash": p.hash.to_string(),
                    "fee_msat": fee.to_msat(),
                })))
                .debit(Bank::ledger_account(p.wallet), spent)
                .credit(system::BANK_LIGHTNING, spent)
                .build()
                .map_err(LedgerError::from)?;
                (posting, Some((fee, preimage)))
            }
            PaymentState::Failed(reason) => {
                // The reason is the row's, not the posting's: a replay after a crash may
                // learn another reason (NO_ROUTE from the request, OTHER from a node that
                // never saw the payment) and must post the same release, not a conflict.
                let posting = release(base.metadata(serde_json::json!({
                    "type": "ln_send_failed", "payment_id": p.id,
                    "payment_hash": p.hash.to_string(),
                })))
                .build()
                .map_err(LedgerError::from)?;
                self.ledger.post(posting).await?;
                self.ln_record(p.id, Outcome::Failure(reason.as_str()))
                    .await?;
                return Ok(LnPayResult {
                    status: LnPayStatus::Failure,
                    payment_id: p.id,
                    failure: Some(reason.as_str()),
                    transaction_id: None,
                });
            }
        };
        let posted = self.ledger.post(posting).await?;
        let (fee, preimage) = outcome.ok_or_else(|| BankError::Corrupt("outcome".into()))?;
        self.ln_record(
            p.id,
            Outcome::Success {
                fee,
                preimage: Some(preimage.0),
                tx: posted.id,
            },
        )
        .await?;
        Ok(paid(p.id, &posted))
    }

    /// Records a payment's final state on its row (idempotent: only a PENDING row changes).
    async fn ln_record(&self, id: PaymentId, outcome: Outcome) -> Result<(), BankError> {
        let done = match outcome {
            Outcome::Success { fee, preimage, tx } => sqlx::query(
                "UPDATE ln_payments SET status = 'SUCCESS', fee_msats = $2, preimage = $3, \
                     transaction_id = $4, finished_at = now() \
                 WHERE id = $1 AND status = 'PENDING'",
            )
            .bind(id.as_uuid())
            .bind(fee.to_i64())
            .bind(preimage.map(|p| p.to_vec()))
            .bind(tx.as_uuid())
            .execute(&self.pool)
            .await?
            .rows_affected(),
            Outcome::Failure(reason) => sqlx::query(
                "UPDATE ln_payments SET status = 'FAILURE', failure_reason = $2, \
                     finished_at = now() \
                 WHERE id = $1 AND status = 'PENDING'",
            )
            .bind(id.as_uuid())
            .bind(reason)
            .execute(&self.pool)
            .await?
            .rows_affected(),
        };
        if done > 0 {
            let state = match outcome {
                Outcome::Success { .. } => "success",
                Outcome::Failure(_) => "failure",
            };
            metrics::counter!("bastion_lightning_payments_finished_total", "state" => state)
                .increment(done);
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Outcome {
    Success {
        fee: Msats,
        preimage: Option<[u8; 32]>,
        tx: TransactionId,
    },
    Failure(&'static str),
}
