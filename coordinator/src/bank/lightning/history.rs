//! What a wallet's history shows of Lightning postings: one line per payment, with its
//! hash, request and preimage (Blink's `InitiationViaLn` and `SettlementViaLn`).
//!
//! A payment out posts a hold (pending), then a final posting that releases the hold and,
//! on success, debits what was spent. The history shows the hold while the payment is
//! PENDING, the spent amount (with its fee) once it succeeded, and a FAILURE line in
//! place of the release when it failed.

use std::collections::HashMap;

use sqlx::Row;
use uuid::Uuid;

use super::{Bank, BankError, hash_from_db, msats_from_db};
use crate::amount::{Msats, Sats};
use crate::ids::WalletId;
use crate::ledger::{HistoryLine, Layer};
use crate::lightning::{PaymentHash, Preimage};

/// The Lightning side of a history line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LnLine {
    /// Payment hash.
    pub payment_hash: PaymentHash,
    /// BOLT 11 request.
    pub payment_request: String,
    /// Proof of payment, once settled.
    pub preimage: Option<Preimage>,
}

/// How a history line of a Lightning posting is shown.
#[derive(Clone, Debug)]
pub(crate) enum LnShow {
    /// Not at all (a hold of a finished payment, a release of a paid one).
    Hide,
    /// As a line with this status, amount, fee and other party.
    Line {
        status: &'static str,
        amount: Sats,
        fee: Sats,
        counterparty: Option<WalletId>,
        ln: LnLine,
    },
}

struct Payment {
    hash: PaymentHash,
    request: String,
    status: String,
    amount: Msats,
    fee: Option<Msats>,
    preimage: Option<Preimage>,
    wallet: Uuid,
    recipient: Option<Uuid>,
}

fn preimage_of(v: Option<Vec<u8>>) -> Option<Preimage> {
    v.and_then(|p| <[u8; 32]>::try_from(p.as_slice()).ok())
        .map(Preimage)
}

impl Bank {
    /// How each Lightning line of `lines` is shown, by (transaction, seq); lines of other
    /// postings are absent.
    pub(crate) async fn ln_history(
        &self,
        lines: &[HistoryLine],
    ) -> Result<HashMap<(crate::ids::TransactionId, i16), LnShow>, BankError> {
        let mut payment_ids = Vec::new();
        let mut hashes = Vec::new();
        for l in lines {
            if let Some(rest) = l.external_id.strip_prefix("lnsend:")
                && let Some(id) = rest.split(':').next().and_then(|i| i.parse::<Uuid>().ok())
            {
                payment_ids.push(id);
            } else if let Some(h) = l.external_id.strip_prefix("lnrecv:")
                && let Ok(h) = h.parse::<PaymentHash>()
            {
                hashes.push(h.0.to_vec());
            }
        }
        let mut shows = HashMap::new();
        if payment_ids.is_empty() && hashes.is_empty() {
            return Ok(shows);
        }
        let mut payments = HashMap::new();
        for r in sqlx::query(
            "SELECT id, payment_hash, payment_request, status, amount_msats, fee_msats, preimage, \
                    wallet_id, internal_recipient \
             FROM ln_payments WHERE id = ANY($1)",
        )
        .bind(&payment_ids)
        .fetch_all(&self.pool)
        .await?
        {
            payments.insert(
                r.try_get::<Uuid, _>("id")?,
                Payment {
                    hash: hash_from_db(&r.try_get::<Vec<u8>, _>("payment_hash")?)?,
                    request: r.try_get("payment_request")?,
                    status: r.try_get("status")?,
                    amount: msats_from_db(r.try_get("amount_msats")?)?,
                    fee: r
                        .try_get::<Option<i64>, _>("fee_msats")?
                        .map(msats_from_db)
                        .transpose()?,
                    preimage: preimage_of(r.try_get("preimage")?),
                    wallet: r.try_get("wallet_id")?,
                    recipient: r.try_get("internal_recipient")?,
                },
            );
        }
        let mut invoices = HashMap::new();
        for r in sqlx::query(
            "SELECT payment_hash, payment_request, preimage FROM ln_invoices \
             WHERE payment_hash = ANY($1)",
        )
        .bind(&hashes)
        .fetch_all(&self.pool)
        .await?
        {
            let hash = hash_from_db(&r.try_get::<Vec<u8>, _>("payment_hash")?)?;
            invoices.insert(
                hash,
                (
                    r.try_get::<String, _>("payment_request")?,
                    preimage_of(r.try_get("preimage")?),
                ),
            );
        }
        for l in lines {
            let key = (l.transaction_id, l.seq);
            if let Some(rest) = l.external_id.strip_prefix("lnsend:") {
                let mut parts = rest.split(':');
                let Some(p) = parts
                    .next()
                    .and_then(|i| i.parse::<Uuid>().ok())
                    .and_then(|id| payments.get(&id))
                else {
                    continue;
                };
                let ln = LnLine {
                    payment_hash: p.hash,
                    payment_request: p.request.clone(),
                    preimage: p.preimage.clone(),
                };
                let fee = p.fee.unwrap_or(Msats::ZERO).to_sats_floor();
                let line = |status, fee, counterparty| LnShow::Line {
                    status,
                    amount: p.amount.to_sats_floor(),
                    fee,
                    counterparty,
                    ln: ln.clone(),
                };
                let show = match (parts.next(), l.layer, p.status.as_str()) {
                    (Some("hold"), _, "PENDING") => line("PENDING", Sats::ZERO, None),
                    (Some("hold"), _, _) => LnShow::Hide,
                    (Some("final"), Layer::Settled, _) => line("SUCCESS", fee, None),
                    (Some("final"), Layer::Pending, "FAILURE") => line("FAILURE", Sats::ZERO, None),
                    (Some("final"), Layer::Pending, _) => LnShow::Hide,
                    (Some("internal"), _, _) => {
                        let mine = l.direction == crate::ledger::Direction::Debit;
                        let other = if mine { p.recipient } else { Some(p.wallet) };
                        line("SUCCESS", Sats::ZERO, other.map(WalletId::from_uuid))
                    }
                    _ => continue,
                };
                shows.insert(key, show);
            } else if let Some(h) = l.external_id.strip_prefix("lnrecv:")
                && let Ok(hash) = h.parse::<PaymentHash>()
                && let Some((request, preimage)) = invoices.get(&hash)
            {
                shows.insert(
                    key,
                    LnShow::Line {
                        status: "SUCCESS",
                        amount: l.amount.to_sats_floor(),
                        fee: Sats::ZERO,
                        counterparty: None,
                        ln: LnLine {
                            payment_hash: hash,
                            payment_request: request.clone(),
                            preimage: preimage.clone(),
                        },
                    },
                );
            }
        }
        Ok(shows)
    }

    /// The lines of one wallet's history that belong to the Lightning payment or invoice
    /// with this hash, newest first (Blink's `transactionsByPaymentHash`). The caller
    /// checks that the viewer may read the wallet.
    ///
    /// # Errors
    /// [`BankError::Database`], [`BankError::Ledger`].
    pub async fn ln_wallet_transactions(
        &self,
        wallet: WalletId,
        hash: &PaymentHash,
    ) -> Result<Vec<crate::bank::WalletTransaction>, BankError> {
        let mut ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT transaction_id FROM ln_invoices \
             WHERE payment_hash = $1 AND wallet_id = $2 AND transaction_id IS NOT NULL \
             UNION ALL \
             SELECT transaction_id FROM ln_payments \
             WHERE payment_hash = $1 AND wallet_id = $2 AND transaction_id IS NOT NULL",
        )
        .bind(hash.0.to_vec())
        .bind(wallet.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        // Payments without a final posting show their hold (pending) or their release
        // (failed).
        let open: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM ln_payments \
             WHERE payment_hash = $1 AND wallet_id = $2 AND transaction_id IS NULL",
        )
        .bind(hash.0.to_vec())
        .bind(wallet.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        for id in open {
            let id = crate::ids::PaymentId::from_uuid(id);
            for ext in [super::send::final_id(id), super::send::hold_id(id)] {
                if let Some(t) = self.ledger.transaction_by_external_id(&ext).await?
                    && !t.voided
                {
                    ids.push(t.id.as_uuid());
                    break;
                }
            }
        }
        let mut lines = Vec::new();
        for id in ids {
            if let Some(l) = self
                .sender_transaction(wallet, crate::ids::TransactionId::from_uuid(id))
                .await?
            {
                lines.push(l);
            }
        }
        lines.sort_by_key(|l| std::cmp::Reverse(l.created_at));
        Ok(lines)
    }
}
